"""Unit tests of pytest_testserver.validate: one validator per kind of input field.

Every validator returns the normalized value, or raises ``ConfigError`` with a single line that
names the source and the key path, such as
``testservers.yaml: servers.web.ports[1]: 70000 is not a port (1-65535)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_testserver import validate as v
from pytest_testserver.errors import ConfigError, TestserverError
from pytest_testserver.settings import flag
from pytest_testserver.validate import Where

SOURCE = "testservers.yaml"
WHERE = Where(SOURCE, "servers.web.field")
PREFIX = f"{SOURCE}: servers.web.field: "
HEX64 = "0123456789abcdef" * 4


def error_of(func: Callable[..., Any], value: object, *args: Any, **kwargs: Any) -> str:
    """The message of the ConfigError that ``func(value, WHERE, ...)`` raises, checked one line."""
    with pytest.raises(ConfigError) as excinfo:
        func(value, WHERE, *args, **kwargs)
    message = str(excinfo.value)
    assert "\n" not in message, message
    assert "\r" not in message, message
    assert message.startswith(PREFIX), message
    return message[len(PREFIX) :]


# --- Where: how an origin is rendered -------------------------------------------------------------


def test_where_key_and_index_build_a_dotted_path() -> None:
    where = Where(SOURCE).key("servers").key("web").key("ports").index(1)
    assert where == Where(SOURCE, "servers.web.ports[1]")


def test_where_fail_names_source_and_path() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Where(SOURCE, "servers.web.ports[1]").fail("70000 is not a port (1-65535)")
    assert str(excinfo.value) == f"{SOURCE}: servers.web.ports[1]: 70000 is not a port (1-65535)"


def test_where_fail_without_path_names_only_the_source() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Where("--testserver-config").fail("must be a mapping, not list")
    assert str(excinfo.value) == "--testserver-config: must be a mapping, not list"


def test_config_error_is_a_testserver_error() -> None:
    assert issubclass(ConfigError, TestserverError)


# --- show and did_you_mean -----------------------------------------------------------------------


def test_show_renders_short_values_as_repr() -> None:
    assert v.show("a\nb") == "'a\\nb'"
    assert v.show(70000) == "70000"


def test_show_truncates_long_values_to_the_limit() -> None:
    text = v.show("x" * 200)
    assert len(text) <= 60
    assert "..." in text
    assert text.startswith("'xxx")
    assert text.endswith("xxx'")


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        pytest.param("prots", " (did you mean 'ports'?)", id="typo"),
        pytest.param("zzzzzz", "", id="nothing-close"),
    ],
)
def test_did_you_mean(word: str, expected: str) -> None:
    assert v.did_you_mean(word, ["ports", "image", "env"]) == expected


# --- mapping and known_keys ----------------------------------------------------------------------


def test_mapping_returns_the_dict_itself() -> None:
    value = {"a": 1}
    assert v.mapping(value, WHERE) is value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param([1], "must be a mapping, not list", id="list"),
        pytest.param("x", "must be a mapping, not str", id="string"),
        pytest.param(None, "must be a mapping, not NoneType", id="none"),
        pytest.param({1: "a"}, "keys must be strings, not 1", id="int-key"),
        pytest.param({True: "a"}, "keys must be strings, not True", id="bool-key"),
    ],
)
def test_mapping_refuses(value: object, message: str) -> None:
    assert error_of(v.mapping, value) == message


def test_known_keys_accepts_known_keys() -> None:
    v.known_keys({"ports": [], "image": "x"}, ("image", "ports"), WHERE)


def test_known_keys_names_the_unknown_key_and_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError) as excinfo:
        v.known_keys({"image": "x", "prots": [80]}, ("image", "ports", "env"), Where(SOURCE, "web"))
    assert str(excinfo.value) == (
        f"{SOURCE}: web.prots: unknown key (did you mean 'ports'?); known keys: image, ports, env"
    )


def test_known_keys_without_a_close_match_lists_the_known_keys() -> None:
    with pytest.raises(ConfigError) as excinfo:
        v.known_keys({"zzzzzz": 1}, ("image", "ports"), Where(SOURCE, "web"))
    assert str(excinfo.value) == f"{SOURCE}: web.zzzzzz: unknown key; known keys: image, ports"


def test_known_keys_message_is_one_line_even_for_a_key_with_a_newline() -> None:
    with pytest.raises(ConfigError) as excinfo:
        v.known_keys({"pr\nots": 1}, ("ports",), Where(SOURCE, "web"))
    assert "\n" not in str(excinfo.value)


# --- strings -------------------------------------------------------------------------------------


def test_string_accepts_a_string() -> None:
    assert v.string("hello", WHERE) == "hello"


def test_string_allows_empty_only_when_asked() -> None:
    assert v.string("", WHERE, allow_empty=True) == ""
    assert error_of(v.string, "") == "must not be empty"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(5, "must be a string, not int 5", id="int"),
        pytest.param(None, "must be a string, not NoneType None", id="none"),
        pytest.param(["a"], "must be a string, not list ['a']", id="list"),
        pytest.param("a\x00b", "must not contain a NUL character", id="nul"),
    ],
)
def test_string_refuses(value: object, message: str) -> None:
    assert error_of(v.string, value) == message


def test_single_line_refuses_line_breaks() -> None:
    assert v.single_line("one line", WHERE) == "one line"
    assert error_of(v.single_line, "a\nb") == "must be a single line: 'a\\nb'"
    assert error_of(v.single_line, "a\rb") == "must be a single line: 'a\\rb'"


def test_string_list_returns_a_tuple() -> None:
    assert v.string_list(["a", 1], WHERE) == ("a", 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("a", "must be a list, not str 'a'", id="string"),
        pytest.param({"a": 1}, "must be a list, not dict {'a': 1}", id="mapping"),
        pytest.param(("a",), "must be a list, not tuple ('a',)", id="tuple"),
    ],
)
def test_string_list_refuses(value: object, message: str) -> None:
    assert error_of(v.string_list, value) == message


# --- argv ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(["httpd", "-f"], ("httpd", "-f"), id="two-args"),
        pytest.param(["sh", "-c", "echo $HOME; ls"], ("sh", "-c", "echo $HOME; ls"), id="kept-raw"),
        pytest.param(["printf", ""], ("printf", ""), id="empty-argument"),
    ],
)
def test_argv_accepts_a_list_of_strings(value: object, expected: tuple[str, ...]) -> None:
    assert v.argv(value, WHERE) == expected


def test_argv_refuses_a_string_with_a_hint_that_no_shell_is_involved() -> None:
    message = error_of(v.argv, "httpd -f")
    assert message == (
        'must be a list of arguments such as ["httpd", "-f"], not the string \'httpd -f\''
        " (no shell is involved)"
    )


def test_argv_refuses_an_empty_list() -> None:
    assert error_of(v.argv, []) == "must not be empty"


def test_argv_names_the_index_of_a_bad_item() -> None:
    with pytest.raises(ConfigError) as excinfo:
        v.argv(["httpd", 8080], Where(SOURCE, "servers.web.command"))
    assert str(excinfo.value) == f"{SOURCE}: servers.web.command[1]: must be a string, not int 8080"


# --- names: servers, hosts, domains --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("web", id="plain"),
        pytest.param("web-1", id="inner-hyphen"),
        pytest.param("a", id="one-char"),
        pytest.param("123", id="digits"),
        pytest.param("Web", id="uppercase"),
        pytest.param("a" * 63, id="63-chars"),
    ],
)
def test_hostname_accepts_rfc1123_labels(name: str) -> None:
    assert v.hostname(name, WHERE) == name
    assert v.server_name(name, WHERE) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("-web", id="leading-hyphen"),
        pytest.param("web-", id="trailing-hyphen"),
        pytest.param("web_1", id="underscore"),
        pytest.param("web.local", id="dot"),
        pytest.param("a" * 64, id="64-chars"),
        pytest.param("wéb", id="non-ascii"),
        pytest.param("web 1", id="space"),
        pytest.param("web\n", id="newline"),
    ],
)
def test_hostname_refuses_what_is_not_an_rfc1123_label(name: str) -> None:
    assert error_of(v.hostname, name).endswith("is not a valid host name (RFC 1123 label)")
    assert error_of(v.server_name, name).endswith(
        "is not a valid server name (letters, digits and inner hyphens, at most 63 characters)"
    )


def test_hostname_message_shows_the_value() -> None:
    assert error_of(v.hostname, "web_1") == "'web_1' is not a valid host name (RFC 1123 label)"


def test_hostname_refuses_a_non_string() -> None:
    assert error_of(v.hostname, 5) == "must be a string, not int 5"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("example.com", id="two-labels"),
        pytest.param("db", id="one-label"),
        pytest.param("a-1.b-2.test", id="hyphens"),
        pytest.param(".".join(["a" * 63] * 3) + ".abcdefghi", id="253-chars"),
    ],
)
def test_domain_accepts(name: str) -> None:
    assert v.domain(name, WHERE) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a..b", id="empty-label"),
        pytest.param("example.com.", id="trailing-dot"),
        pytest.param(".example.com", id="leading-dot"),
        pytest.param("ex_ample.com", id="underscore"),
        pytest.param("-a.com", id="leading-hyphen"),
        pytest.param(".".join(["a" * 63] * 4), id="255-chars"),
    ],
)
def test_domain_refuses(name: str) -> None:
    assert error_of(v.domain, name).endswith("is not a valid domain name (RFC 1123)")


# --- build stages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("final", id="plain"),
        pytest.param("build_stage.2-x", id="underscore-dot-hyphen"),
        pytest.param("Final", id="uppercase"),
        pytest.param("s" * 128, id="128-chars"),
    ],
)
def test_build_stage_accepts(name: str) -> None:
    assert v.build_stage(name, WHERE) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("my stage", id="space"),
        pytest.param("-final", id="leading-hyphen"),
        pytest.param(".final", id="leading-dot"),
        pytest.param("final;id", id="semicolon"),
        pytest.param("s" * 129, id="129-chars"),
        pytest.param("final\n", id="newline"),
    ],
)
def test_build_stage_refuses(name: str) -> None:
    assert error_of(v.build_stage, name) == (
        f"{v.show(name)} is not a build stage name (letters, digits, _ . -)"
    )


def test_build_stage_refuses_empty_and_non_strings() -> None:
    assert error_of(v.build_stage, "") == "must not be empty"
    assert error_of(v.build_stage, 1) == "must be a string, not int 1"


# --- image references ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param("busybox", id="bare-name"),
        pytest.param("busybox:stable", id="name-tag"),
        pytest.param("library/busybox:1.36.1", id="path"),
        pytest.param("registry:5000/a/b:tag", id="registry-port-path-tag"),
        pytest.param("localhost:5000/app", id="localhost-port"),
        pytest.param("ghcr.io/owner/my-app_x:v1.2-rc.3", id="dotted-domain"),
        pytest.param("MyRegistry.example/app", id="uppercase-domain"),
        pytest.param("[::1]:5000/app:tag", id="ipv6-domain"),
        pytest.param("my__app", id="double-underscore"),
        pytest.param("my---app", id="hyphens"),
        pytest.param(f"busybox@sha256:{HEX64}", id="digest"),
        pytest.param(f"busybox:stable@sha256:{HEX64}", id="tag-and-digest"),
        pytest.param("busybox:" + "t" * 128, id="128-char-tag"),
        pytest.param("busybox:_tag", id="tag-underscore-first"),
    ],
)
def test_image_ref_accepts_docker_references(ref: str) -> None:
    assert v.image_ref(ref, WHERE) == ref


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param("Busybox", id="uppercase-repo"),
        pytest.param("library/BusyBox:stable", id="uppercase-path"),
        pytest.param("busybox:", id="empty-tag"),
        pytest.param("busybox:.tag", id="tag-starts-with-dot"),
        pytest.param("busybox:-tag", id="tag-starts-with-hyphen"),
        pytest.param("busybox:" + "t" * 129, id="129-char-tag"),
        pytest.param("busybox@sha256:abc", id="short-digest"),
        pytest.param("busybox@sha256", id="digest-without-hex"),
        pytest.param("busybox;rm -rf /", id="semicolon"),
        pytest.param("busybox && id", id="and"),
        pytest.param("busybox|sh", id="pipe"),
        pytest.param("busybox$(id)", id="command-substitution"),
        pytest.param("busybox`id`", id="backticks"),
        pytest.param("busy box", id="space"),
        pytest.param(" busybox", id="leading-space"),
        pytest.param("-busybox", id="leading-hyphen"),
        pytest.param("busybox/", id="trailing-slash"),
        pytest.param("a//b", id="empty-component"),
        pytest.param("a" * 256, id="name-over-255"),
        pytest.param("busybox:stable\nRUN id", id="newline"),
    ],
)
def test_image_ref_refuses_what_is_not_a_reference(ref: str) -> None:
    message = error_of(v.image_ref, ref)
    assert re.search(r"is not a valid image reference \(such as busybox:stable\)$", message) or (
        message.startswith("must be a single line")
    ), message


def test_image_ref_message_shows_the_value() -> None:
    assert error_of(v.image_ref, "Busybox") == (
        "'Busybox' is not a valid image reference (such as busybox:stable)"
    )


def test_image_ref_refuses_a_newline_as_not_single_line() -> None:
    assert error_of(v.image_ref, "busybox\nRUN id") == "must be a single line: 'busybox\\nRUN id'"


@pytest.mark.parametrize("ref", ["busybox:é", "busybox:٣"], ids=["latin-letter", "arabic-digit"])
def test_image_ref_refuses_non_ascii_tags(ref: str) -> None:
    error_of(v.image_ref, ref)


# --- environment ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["PATH", "_x", "DB_PASSWORD", "a1", "A_1_B"])
def test_env_key_accepts(key: str) -> None:
    assert v.env_key(key, WHERE) == key


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("1A", id="leading-digit"),
        pytest.param("A-B", id="hyphen"),
        pytest.param("A B", id="space"),
        pytest.param("A=B", id="equals"),
        pytest.param("A.B", id="dot"),
        pytest.param("É", id="non-ascii"),
    ],
)
def test_env_key_refuses(key: str) -> None:
    assert error_of(v.env_key, key) == (
        f"{key!a} is not a valid variable name (letters, digits, underscore)"
    )


def test_env_key_refuses_empty_and_non_strings() -> None:
    assert error_of(v.env_key, "") == "must not be empty"
    assert error_of(v.env_key, 1) == "must be a string, not int 1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(True, "true", id="true"),
        pytest.param(False, "false", id="false"),
        pytest.param(0, "0", id="zero"),
        pytest.param(8080, "8080", id="int"),
        pytest.param(-3, "-3", id="negative"),
        pytest.param(1.5, "1.5", id="float"),
        pytest.param("", "", id="empty-string"),
        pytest.param("a b\nc", "a b\nc", id="any-string"),
    ],
)
def test_env_value_normalizes_to_a_string(value: object, expected: str) -> None:
    assert v.env_value(value, WHERE) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # env values may be secrets: the message names the kind, never the value
        pytest.param(None, "must be a string, a number or a boolean, not null", id="none"),
        pytest.param(float("nan"), "must be a finite number of sensible size", id="nan"),
        pytest.param(math.inf, "must be a finite number of sensible size", id="inf"),
        pytest.param([1], "must be a string, a number or a boolean, not a list", id="list"),
        pytest.param("a\x00", "must not contain a NUL character", id="nul"),
    ],
)
def test_env_value_refuses(value: object, message: str) -> None:
    assert error_of(v.env_value, value) == message


# --- ports ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(8080, (8080, "tcp"), id="int"),
        pytest.param("8080", (8080, "tcp"), id="string"),
        pytest.param("53/udp", (53, "udp"), id="udp"),
        pytest.param("80/tcp", (80, "tcp"), id="explicit-tcp"),
        pytest.param(1, (1, "tcp"), id="lowest"),
        pytest.param("65535/udp", (65535, "udp"), id="highest"),
    ],
)
def test_port_accepts(value: object, expected: tuple[int, str]) -> None:
    assert v.port(value, WHERE) == expected


def test_port_message_matches_the_documented_example() -> None:
    with pytest.raises(ConfigError) as excinfo:
        v.port(70000, Where(SOURCE, "servers.web.ports[1]"))
    assert (
        str(excinfo.value)
        == "testservers.yaml: servers.web.ports[1]: 70000 is not a port (1-65535)"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(0, "0 is not a port (1-65535)", id="zero"),
        pytest.param(-1, "-1 is not a port (1-65535)", id="negative"),
        pytest.param(65536, "65536 is not a port (1-65535)", id="too-big"),
        pytest.param("70000/udp", "70000 is not a port (1-65535)", id="too-big-string"),
        pytest.param(True, "True is not a port (1-65535)", id="bool"),
    ],
)
def test_port_refuses_out_of_range(value: object, message: str) -> None:
    assert error_of(v.port, value) == message


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("53/sctp", id="sctp"),
        pytest.param("53/UDP", id="uppercase-protocol"),
        pytest.param("http", id="word"),
        pytest.param("80-90", id="range"),
        pytest.param("127.0.0.1:80", id="address"),
        pytest.param(" 80", id="space"),
        pytest.param("123456", id="six-digits"),
        pytest.param(80.0, id="float"),
        pytest.param(None, id="none"),
    ],
)
def test_port_refuses_what_is_not_a_port(value: object) -> None:
    assert error_of(v.port, value) == (
        f"{v.show(value)} is not a port (a number 1-65535, optionally /tcp or /udp)"
    )


# --- file modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0755", 0o755, id="leading-zero"),
        pytest.param("755", 0o755, id="three-digits"),
        pytest.param("0o755", 0o755, id="python-octal"),
        pytest.param("0644", 0o644, id="0644"),
        pytest.param("600", 0o600, id="600"),
        pytest.param("4755", 0o4755, id="setuid"),
        pytest.param("0000", 0, id="zero"),
    ],
)
def test_mode_accepts_octal_strings(value: str, expected: int) -> None:
    assert v.mode(value, WHERE) == expected


def test_mode_refuses_an_int_as_ambiguous() -> None:
    # YAML reads an unquoted 0755 as the decimal 755 (or as 493): a bare int is never trusted.
    assert error_of(v.mode, 755) == '755 is ambiguous as a mode: quote it in octal, such as "0755"'
    assert error_of(v.mode, 493).startswith("493 is ambiguous as a mode")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("0855", id="digit-8"),
        pytest.param("75", id="two-digits"),
        pytest.param("077777", id="too-long"),
        pytest.param("0x1ed", id="hex"),
        pytest.param("rwxr-xr-x", id="symbolic"),
        pytest.param("0o", id="prefix-only"),
        pytest.param("u+x", id="chmod-symbolic"),
    ],
)
def test_mode_refuses_what_is_not_octal(value: str) -> None:
    assert error_of(v.mode, value) == (
        f'{value!r} is not an octal file mode (such as "0644" or "0755")'
    )


def test_mode_refuses_a_bool_as_not_a_string() -> None:
    assert error_of(v.mode, True) == "must be a string, not bool True"


# --- durations and counts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1, 1.0, id="int"),
        pytest.param(0.25, 0.25, id="float"),
        pytest.param(86400, 86400.0, id="exactly-a-day"),
    ],
)
def test_duration_accepts_seconds(value: object, expected: float) -> None:
    result = v.duration(value, WHERE)
    assert result == expected
    assert type(result) is float


def test_duration_zero_only_when_allowed() -> None:
    assert v.duration(0, WHERE, allow_zero=True) == 0.0
    assert error_of(v.duration, 0) == "0 is not a positive number of seconds"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(float("nan"), "nan is not a positive number of seconds", id="nan"),
        pytest.param(math.inf, "inf is not a positive number of seconds", id="inf"),
        pytest.param(-math.inf, "-inf is not a positive number of seconds", id="minus-inf"),
        pytest.param(-1, "-1 is not a positive number of seconds", id="negative"),
        pytest.param(-0.5, "-0.5 is not a positive number of seconds", id="negative-float"),
        pytest.param(86400.5, "86400.5 seconds is more than a day", id="over-a-day"),
        pytest.param(10**6, "1000000 seconds is more than a day", id="a-million"),
        pytest.param(True, "must be a number of seconds, not True", id="true"),
        pytest.param(False, "must be a number of seconds, not False", id="false"),
        pytest.param("10", "must be a number of seconds, not '10'", id="string"),
        pytest.param("10s", "must be a number of seconds, not '10s'", id="unit"),
        pytest.param(None, "must be a number of seconds, not None", id="none"),
    ],
)
def test_duration_refuses(value: object, message: str) -> None:
    assert error_of(v.duration, value) == message


def test_duration_negative_is_refused_even_when_zero_is_allowed() -> None:
    assert error_of(v.duration, -1, allow_zero=True) == "-1 is not a positive number of seconds"


def test_duration_refuses_a_huge_int_as_more_than_a_day() -> None:
    assert error_of(v.duration, 10**400).endswith("seconds is more than a day")


@pytest.mark.parametrize("value", [1, 5, v.MAX_COUNT])
def test_count_accepts(value: int) -> None:
    assert v.count(value, WHERE) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(0, "0 is out of range (1-1000000)", id="zero"),
        pytest.param(-2, "-2 is out of range (1-1000000)", id="negative"),
        pytest.param(v.MAX_COUNT + 1, "1000001 is out of range (1-1000000)", id="too-many"),
        pytest.param(True, "must be a whole number, not True", id="bool"),
        pytest.param(2.0, "must be a whole number, not 2.0", id="float"),
        pytest.param("3", "must be a whole number, not '3'", id="string"),
    ],
)
def test_count_refuses(value: object, message: str) -> None:
    assert error_of(v.count, value) == message


# --- apt packages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("curl", id="plain"),
        pytest.param("libc6", id="digits"),
        pytest.param("g++", id="plus"),
        pytest.param("python3.11-venv", id="dot-hyphen"),
        pytest.param("curl=7.88.1-10+deb12u5", id="version"),
        pytest.param("tzdata=2024a-0+deb12u1", id="version-letters"),
        pytest.param("nginx=1:1.22.1~bpo", id="epoch-tilde"),
        pytest.param("libc6:amd64", id="arch"),
    ],
)
def test_apt_package_accepts(name: str) -> None:
    assert v.apt_package(name, WHERE) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("-y", id="option"),
        pytest.param("--allow-unauthenticated", id="long-option"),
        pytest.param("Curl", id="uppercase"),
        pytest.param("c", id="one-char"),
        pytest.param("curl wget", id="two-names"),
        pytest.param("curl;id", id="semicolon"),
        pytest.param("curl$(id)", id="substitution"),
        pytest.param("curl=", id="empty-version"),
        pytest.param("curl/bookworm", id="release-slash"),
        pytest.param("curl\n", id="newline"),
    ],
)
def test_apt_package_refuses(name: str) -> None:
    assert error_of(v.apt_package, name) == f"{name!r} is not a Debian package name"


def test_apt_package_accepts_arch_then_version() -> None:
    assert v.apt_package("libc6:amd64=2.36-9", WHERE) == "libc6:amd64=2.36-9"


# --- container paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/etc/nginx/nginx.conf",
        "/srv/www/",
        "/opt/app-1.2/bin_x",
        "/a/b@c+d=e:f,g",
        "/a/./b",
        "/a/.hidden",
        "/a/..b",
    ],
)
def test_container_path_accepts(path: str) -> None:
    assert v.container_path(path, WHERE) == path


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("etc/x", id="relative"),
        pytest.param("./x", id="dot-relative"),
        pytest.param("/etc/$HOME", id="dollar"),
        pytest.param("/etc/${X}", id="braces"),
        pytest.param("/etc/x\n", id="newline"),
        pytest.param("/etc/x y", id="space"),
        pytest.param("/etc/*", id="glob"),
        pytest.param('/etc/"x"', id="quote"),
        pytest.param("/etc\\x", id="backslash"),
        pytest.param("/étc", id="non-ascii"),
    ],
)
def test_container_path_refuses_what_is_not_plain_absolute(path: str) -> None:
    assert error_of(v.container_path, path) == (
        f"{path!a} is not an absolute path of plain characters "
        "(letters, digits, and . _ / @ + = : , -)"
    )


@pytest.mark.parametrize("path", ["/..", "/etc/../root", "/a/b/.."])
def test_container_path_refuses_dot_dot(path: str) -> None:
    assert error_of(v.container_path, path) == f"{path!r} must not contain '..'"


# --- relative paths ------------------------------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A config folder with a file, a subfolder, and a sibling folder outside it."""
    folder = tmp_path / "config"
    (folder / "sub").mkdir(parents=True)
    (folder / "app.conf").write_text("x")
    (folder / "sub" / "page.html").write_text("y")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    return folder


@pytest.mark.parametrize(
    ("text", "relative"),
    [
        pytest.param("app.conf", "app.conf", id="file"),
        pytest.param("sub", "sub", id="folder"),
        pytest.param("sub/page.html", "sub/page.html", id="nested"),
        pytest.param("sub/../app.conf", "app.conf", id="dot-dot-inside"),
        pytest.param("./app.conf", "app.conf", id="dot-slash"),
        pytest.param(".", ".", id="the-folder-itself"),
    ],
)
def test_relative_path_resolves_inside_base(base: Path, text: str, relative: str) -> None:
    result = v.relative_path(text, WHERE, base)
    assert result == (base / relative).resolve()
    assert result.is_absolute()


def test_relative_path_refuses_dot_dot_escape(base: Path) -> None:
    message = error_of(v.relative_path, "../outside/secret.txt", base)
    assert message == f"'../outside/secret.txt' leads outside {base}"


def test_relative_path_refuses_deep_dot_dot_escape(base: Path) -> None:
    message = error_of(v.relative_path, "sub/../../outside", base)
    assert message == f"'sub/../../outside' leads outside {base}"


def test_relative_path_refuses_a_symlink_pointing_outside(base: Path) -> None:
    (base / "innocent.conf").symlink_to(base.parent / "outside" / "secret.txt")
    message = error_of(v.relative_path, "innocent.conf", base)
    assert message == f"'innocent.conf' leads outside {base}"


def test_relative_path_refuses_a_file_under_a_symlinked_folder_outside(base: Path) -> None:
    (base / "linked").symlink_to(base.parent / "outside", target_is_directory=True)
    message = error_of(v.relative_path, "linked/secret.txt", base)
    assert message == f"'linked/secret.txt' leads outside {base}"


def test_relative_path_follows_a_symlink_that_stays_inside(base: Path) -> None:
    (base / "alias.conf").symlink_to("app.conf")
    assert v.relative_path("alias.conf", WHERE, base) == (base / "app.conf").resolve()


def test_relative_path_refuses_an_absolute_path(base: Path) -> None:
    absolute = str(base / "app.conf")
    assert (
        error_of(v.relative_path, absolute, base)
        == f"{v.show(absolute)} must be relative to {base}"
    )


def test_relative_path_refuses_a_missing_file(base: Path) -> None:
    assert error_of(v.relative_path, "nope.conf", base) == f"'nope.conf' does not exist in {base}"


def test_relative_path_refuses_non_strings_and_empty(base: Path) -> None:
    assert error_of(v.relative_path, 3, base) == "must be a string, not int 3"
    assert error_of(v.relative_path, "", base) == "must not be empty"


# --- choice and flag -----------------------------------------------------------------------------


def test_choice_accepts_a_listed_word() -> None:
    assert v.choice("skip", WHERE, ("error", "skip")) == "skip"


def test_choice_refuses_with_a_suggestion() -> None:
    assert error_of(v.choice, "skp", ("error", "skip")) == (
        "'skp' is not one of error, skip (did you mean 'skip'?)"
    )


def test_choice_is_case_sensitive() -> None:
    assert error_of(v.choice, "SKIP", ("error", "skip")).startswith("'SKIP' is not one of")


@pytest.mark.parametrize("word", ["1", "true", "yes", "on", "TRUE", " On ", "anything"])
def test_flag_true(word: str) -> None:
    assert flag(word) is True


@pytest.mark.parametrize("word", ["", "0", "false", "no", "off", "False", " OFF ", "  "])
def test_flag_false(word: str) -> None:
    assert flag(word) is False


# --- every error is one line that starts with source and path ------------------------------------


@pytest.mark.parametrize(
    ("func", "value"),
    [
        pytest.param(v.string, "a\x00", id="string"),
        pytest.param(v.single_line, "a\nb\nc", id="single_line"),
        pytest.param(v.argv, "echo hi\nid", id="argv"),
        pytest.param(v.image_ref, "a\nb", id="image_ref"),
        pytest.param(v.hostname, "a\nb", id="hostname"),
        pytest.param(v.domain, "a.\nb", id="domain"),
        pytest.param(v.build_stage, "a\nb", id="build_stage"),
        pytest.param(v.env_key, "A\nB", id="env_key"),
        pytest.param(v.port, "80\n", id="port"),
        pytest.param(v.mode, "07\n55", id="mode"),
        pytest.param(v.duration, "1\n", id="duration"),
        pytest.param(v.count, "1\n", id="count"),
        pytest.param(v.apt_package, "curl\nwget", id="apt_package"),
        pytest.param(v.container_path, "/a\n/b", id="container_path"),
        pytest.param(v.mapping, "a\nb", id="mapping"),
        pytest.param(v.string_list, "a\nb", id="string_list"),
    ],
)
def test_errors_are_one_line_even_for_values_with_newlines(
    func: Callable[..., Any], value: object
) -> None:
    error_of(func, value)  # checks: one line, starts with "<source>: <path>: "
