"""Unit tests of the validators' and the port entries' edges that mutation testing
(``nox -s mutants``) found unchecked: a limit one past its end, a bad value that must be a
``testserver:``-style one-line error naming its key (never an ``AttributeError``), a message that
must name the value, a port entry's range flag.

Pure logic, no engine, no pytester (test_validate.py and test_config.py hold the rest).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_testserver import validate as v
from pytest_testserver.errors import ConfigError
from pytest_testserver.portspec import Port, describe_ports, parse_ports
from pytest_testserver.validate import Where

WHERE = Where("testservers.yaml", "servers.web.field")
PREFIX = "testservers.yaml: servers.web.field: "


def error_of(func: Callable[..., Any], value: object, *args: Any) -> str:
    with pytest.raises(ConfigError) as excinfo:
        func(value, WHERE, *args)
    message = str(excinfo.value)
    assert message.startswith(PREFIX), message
    return message[len(PREFIX) :]


# --- a bad value is a ConfigError naming the key, from every validator ----------------------------


@pytest.mark.parametrize(
    ("func", "args"),
    [
        (v.apt_package, ()),
        (v.choice, (("tcp", "udp"),)),
        (v.container_path, ()),
        (v.domain, ()),
        (v.regex, ()),
        (v.url_path, ()),
        (v.tcp_port, ()),
    ],
)
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_key(
    func: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    assert error_of(func, 5.5, *args).startswith(("must be a string", "5.5 is not a port"))


# --- url_path ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["health", "/a b", "/caf\u00e9", "/a\x7fb", "/a\tb"])
def test_a_url_path_must_start_with_a_slash_be_ascii_and_printable(path: str) -> None:
    assert error_of(v.url_path, path) == (
        f"{path!r} is not a URL path (it starts with /, is ASCII, has no spaces)".replace(
            "\u00e9", "\\xe9"
        )
    )


def test_a_plain_url_path_is_kept() -> None:
    assert v.url_path("/health?full=1", WHERE) == "/health?full=1"


# --- tcp_port ------------------------------------------------------------------------------------


def test_a_udp_port_cannot_be_checked_and_the_message_names_it() -> None:
    assert error_of(v.tcp_port, "53/udp") == "'53/udp': only TCP ports can be checked"


def test_a_tcp_port_written_with_its_protocol_is_its_number() -> None:
    assert v.tcp_port("8080/tcp", WHERE) == 8080


# --- domain --------------------------------------------------------------------------------------


def test_a_domain_of_253_characters_is_accepted_and_254_is_refused() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(longest) == 253
    assert v.domain(longest, WHERE) == longest
    message = error_of(v.domain, longest + "e")
    assert message.endswith("is not a valid domain name (RFC 1123)"), message
    assert message.startswith("'aaaa"), message


# --- copy_size: the build context's cap ----------------------------------------------------------


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no room on disk."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_a_copy_of_exactly_the_cap_is_accepted_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    assert v.MAX_COPY_BYTES == 256 << 20
    exact = sparse(tmp_path / "exact", v.MAX_COPY_BYTES)
    assert v.copy_size(exact, WHERE) == v.MAX_COPY_BYTES
    over = sparse(tmp_path / "over", v.MAX_COPY_BYTES + 1)
    assert error_of(v.copy_size, over) == "256 MiB is more than 256 MiB to copy into an image"


def test_a_folder_counts_the_files_of_its_subfolders_and_names_its_size(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "deep" / "deeper").mkdir(parents=True)
    sparse(folder / "top", 200 << 20)
    sparse(folder / "deep" / "deeper" / "bottom", 300 << 20)
    assert error_of(v.copy_size, folder) == "500 MiB is more than 256 MiB to copy into an image"


def test_a_symlink_in_a_folder_is_not_counted(tmp_path: Path) -> None:
    big = sparse(tmp_path / "big", 300 << 20)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "small").write_bytes(b"12345")
    os.symlink(big, folder / "link")
    assert v.copy_size(folder, WHERE) == 5


# --- relative_path: a symlink loop ---------------------------------------------------------------


def test_a_symlink_loop_is_named_the_same_on_every_python(tmp_path: Path) -> None:
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    assert error_of(v.relative_path, "a", tmp_path) == "'a' cannot be resolved (a symlink loop)"


def test_unresolvable_names_the_reason() -> None:
    assert v.unresolvable(RuntimeError("loop")) == "a symlink loop"
    assert v.unresolvable(OSError(40, "Too many levels of symbolic links")) == "a symlink loop"
    assert v.unresolvable(OSError(36, "File name too long")) == "File name too long"
    assert v.unresolvable(ValueError("embedded null byte")) == "ValueError"


# --- show, did_you_mean, regex: what a message says ----------------------------------------------


def test_show_cuts_a_long_value_to_exactly_the_limit() -> None:
    value = ["x" * 20, "y" * 50]  # each item short enough to be shown whole, the list is not
    assert v.show(value) == repr(value)[:57] + "..."
    assert v.show(value, limit=70) == repr(value)[:67] + "..."
    assert v.show(["z" * 54]) == repr(["z" * 54])  # 60 characters: fits


def test_show_of_a_number_too_long_to_print_says_so() -> None:
    assert v.show(10**5000) == "<a number too long to show>"


def test_show_keeps_a_long_number_to_40_characters() -> None:
    assert v.show(10**39) == str(10**39)  # 40 digits: shown whole
    assert v.show(10**40) != str(10**40)


def test_did_you_mean_offers_one_name() -> None:
    assert v.did_you_mean("prot", ["port", "ports", "porta"]) == " (did you mean 'port'?)"
    assert v.did_you_mean("zzz", ["port"]) == ""


def test_a_bad_regex_names_the_reason_and_the_position() -> None:
    assert error_of(v.regex, "ab(") == (
        "'ab(' is not a regular expression: missing ), unterminated subpattern at position 2"
    )


# --- ports: entries -------------------------------------------------------------------------------

PORTS = Where("testservers.yaml", "servers.web.ports")


def test_a_mapping_with_one_target_is_not_a_range_and_a_target_range_is() -> None:
    """A range's ports are left out of the default readiness check: a single target is not."""
    single, ranged = parse_ports([{"target": 21}, {"target": "30000-30001"}], PORTS)[:2]
    assert (single, single.ranged) == (Port(21), False)
    assert (ranged, ranged.ranged) == (Port(30000), True)
    assert parse_ports([{"target": "2121"}], PORTS)[0].ranged is False


def test_a_bad_published_port_names_its_key() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_ports([{"target": 21, "published": 70000}], PORTS)
    assert str(excinfo.value) == (
        "testservers.yaml: servers.web.ports[0].published: 70000 is not a port (1-65535)"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("0-3", "0 is not a port (1-65535)"),
        (70000, "70000 is not a port (1-65535)"),
        ("9-3", "9-3 is not a range: it must go from low to high"),
    ],
)
def test_a_bad_target_names_its_key(target: object, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_ports([80, {"target": target}], PORTS)
    assert str(excinfo.value) == f"testservers.yaml: servers.web.ports[1].target: {message}"


def test_each_entry_is_described_as_written() -> None:
    ports = parse_ports(
        [8080, "53/udp", "2121:21", {"target": "30000-30002", "published": "40000-40002"}], PORTS
    )
    assert describe_ports(ports) == [
        "8080/tcp",
        "53/udp",
        "2121:21/tcp",
        "40000-40002:30000-30002/tcp",
    ]
