"""Unit tests of pytest_testserver.checks: ``wait:`` and ``post_startup:`` parsed into values.

The pytester and fuzz tests (test_banner.py, test_hostile_input.py) drive these through pytest;
these call the parsers directly, so that mutation testing (``nox -s mutants``) can run them: the
HTTP status range and its default, the banner's length limit, and the key each error names.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_testserver import checks
from pytest_testserver.checks import BannerCheck, HttpCheck, PostStartup, Wait
from pytest_testserver.errors import ConfigError
from pytest_testserver.validate import Where

WHERE = Where("testservers.yaml", "servers.web.wait")
PREFIX = "testservers.yaml: servers.web.wait"


def error_of(value: object, names: frozenset[str] = frozenset()) -> str:
    with pytest.raises(ConfigError) as excinfo:
        checks.parse_wait(value, WHERE, names)
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# --- wait.http -----------------------------------------------------------------------------------


def test_an_http_check_by_port_alone_asks_for_200_at_the_root() -> None:
    assert checks.parse_wait({"http": 8080}, WHERE) == Wait(http=(HttpCheck(8080, "/", (200,)),))


def test_an_http_mapping_without_status_expects_200() -> None:
    wait = checks.parse_wait({"http": {"port": 80, "path": "/health"}}, WHERE)
    assert wait.http == (HttpCheck(80, "/health", (200,)),)


@pytest.mark.parametrize("status", [100, 204, 599])
def test_every_http_status_from_100_to_599_is_accepted(status: int) -> None:
    wait = checks.parse_wait({"http": {"port": 80, "status": status}}, WHERE)
    assert wait.http[0].status == (status,)


@pytest.mark.parametrize("status", [99, 600, 0, -200, True, "200", 200.0])
def test_a_status_outside_100_599_is_refused_naming_the_key_and_value(status: object) -> None:
    assert error_of({"http": {"port": 80, "status": status}}) == (
        f"{PREFIX}.http.status: {status!r} is not an HTTP status (100-599)"
    )


def test_a_status_list_keeps_its_order_without_repeats() -> None:
    wait = checks.parse_wait({"http": {"port": 80, "status": [204, 200, 204]}}, WHERE)
    assert wait.http[0].status == (204, 200)


def test_a_bad_status_in_a_list_is_named_by_its_index() -> None:
    assert error_of({"http": {"port": 80, "status": [200, 700]}}) == (
        f"{PREFIX}.http.status[1]: 700 is not an HTTP status (100-599)"
    )


def test_an_empty_status_list_is_refused() -> None:
    assert error_of({"http": {"port": 80, "status": []}}) == (
        f"{PREFIX}.http.status: must not be an empty list"
    )


def test_an_http_mapping_without_a_port_is_refused() -> None:
    assert error_of({"http": {"path": "/"}}) == f"{PREFIX}.http: needs port"


@pytest.mark.parametrize(
    ("http", "where"),
    [
        (0, "http"),
        ({"port": 70000}, "http.port"),
        ([80, {"port": 0}], "http[1].port"),
    ],
)
def test_a_bad_http_port_is_named_by_its_key(http: object, where: str) -> None:
    assert error_of({"http": http}).startswith(f"{PREFIX}.{where}: ")


def test_an_unknown_http_key_is_named() -> None:
    assert error_of({"http": {"port": 80, "stauts": 200}}) == (
        f"{PREFIX}.http.stauts: unknown key (did you mean 'status'?); known keys: port, path, "
        "status"
    )


def test_an_http_path_must_be_a_url_path() -> None:
    assert error_of({"http": {"port": 80, "path": "health"}}).startswith(f"{PREFIX}.http.path: ")


# --- wait.tcp with expect (a banner) -------------------------------------------------------------


def test_a_tcp_mapping_is_a_banner_check() -> None:
    wait = checks.parse_wait({"tcp": [21, {"port": 2121, "expect": "220 "}]}, WHERE)
    assert wait.tcp == (21,)
    assert wait.banners == (BannerCheck(2121, "220 "),)


@pytest.mark.parametrize("missing", ["port", "expect"])
def test_a_banner_check_needs_port_and_expect(missing: str) -> None:
    banner = {"port": 21, "expect": "220 "}
    del banner[missing]
    assert error_of({"tcp": banner}) == (
        f'{PREFIX}.tcp: needs {missing} (a TCP check with expect: {{port: 21, expect: "220 "}})'
    )


def test_an_expect_of_the_limit_is_accepted_and_one_more_is_refused() -> None:
    longest = "x" * checks.MAX_EXPECT
    wait = checks.parse_wait({"tcp": {"port": 21, "expect": longest}}, WHERE)
    assert wait.banners == (BannerCheck(21, longest),)
    assert error_of({"tcp": {"port": 21, "expect": longest + "x"}}) == (
        f"{PREFIX}.tcp.expect: is longer than 200 characters: a banner's first bytes"
    )


def test_the_banner_limit_is_200() -> None:
    assert checks.MAX_EXPECT == 200


@pytest.mark.parametrize(
    ("banner", "where"),
    [
        ({"port": 0, "expect": "220"}, "tcp.port"),
        ({"port": 21, "expect": 220}, "tcp.expect"),
        ({"port": 21, "expect": "220", "send": "x"}, "tcp.send"),
        ([{"port": 21, "expect": "${NOPE}"}], "tcp[0].expect"),
    ],
)
def test_a_bad_banner_value_is_named_by_its_key(banner: object, where: str) -> None:
    assert error_of({"tcp": banner}).startswith(f"{PREFIX}.{where}: ")


def test_an_expect_may_use_a_known_variable() -> None:
    wait = checks.parse_wait(
        {"tcp": {"port": 21, "expect": "220 ${HOST}"}}, WHERE, frozenset({"HOST"})
    )
    assert wait.banners == (BannerCheck(21, "220 ${HOST}"),)


# --- wait.log, wait.healthcheck, the empty wait --------------------------------------------------


@pytest.mark.parametrize("value", [False, None])
def test_wait_false_or_null_is_no_check(value: object) -> None:
    wait = checks.parse_wait(value, WHERE)
    assert wait == Wait()
    assert not wait


def test_a_wait_that_names_no_check_is_refused() -> None:
    assert error_of({}) == (
        f"{PREFIX}: names no check: use tcp, http, log or healthcheck (or wait: false for none)"
    )
    assert error_of({"healthcheck": False}).startswith(f"{PREFIX}: names no check")


def test_each_check_alone_makes_a_wait_true() -> None:
    assert Wait(tcp=(1,))
    assert Wait(http=(HttpCheck(1),))
    assert Wait(log="x")
    assert Wait(healthcheck=True)
    assert Wait(banners=(BannerCheck(1, "x"),))


def test_log_and_healthcheck_are_read() -> None:
    wait = checks.parse_wait(
        {"log": "ready ${PORT}", "healthcheck": True}, WHERE, frozenset({"PORT"})
    )
    assert wait == Wait(log="ready ${PORT}", healthcheck=True)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"log": "("}, "log"),
        ({"log": 3}, "log"),
        ({"healthcheck": "yes please"}, "healthcheck"),
        ({"tcp": "http"}, "tcp"),
        ({"tpc": 80}, "tpc"),
    ],
)
def test_a_bad_wait_value_is_named_by_its_key(value: dict[str, Any], where: str) -> None:
    prefix = f"{PREFIX}.{where}: " if where else f"{PREFIX}: "
    assert error_of(value).startswith(prefix)


# --- post_startup --------------------------------------------------------------------------------

POST = Where("testservers.yaml", "servers.web.post_startup")


def post_error(value: object) -> str:
    with pytest.raises(ConfigError) as excinfo:
        checks.parse_post_startup(value, POST, frozenset())
    return str(excinfo.value)


def test_post_startup_as_a_list_is_its_command() -> None:
    assert checks.parse_post_startup(["true"], POST, frozenset()) == PostStartup(("true",))


def test_post_startup_retries_and_interval_are_read_and_default_to_none() -> None:
    parsed = checks.parse_post_startup(
        {"command": ["true"], "retries": 3, "interval": 0.5}, POST, frozenset()
    )
    assert parsed == PostStartup(("true",), 3, 0.5)
    assert checks.parse_post_startup({"command": ["true"]}, POST, frozenset()) == PostStartup(
        ("true",), None, None
    )


def test_post_startup_without_command_is_refused() -> None:
    assert post_error({"retries": 3}) == (
        "testservers.yaml: servers.web.post_startup: needs command: the argv to run inside the "
        "container"
    )


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"command": "true"}, "command"),
        ({"command": ["true"], "retries": -1}, "retries"),
        ({"command": ["true"], "interval": "soon"}, "interval"),
        ({"command": ["echo", "${NOPE}"]}, "command"),
    ],
)
def test_a_bad_post_startup_value_is_named_by_its_key(value: object, where: str) -> None:
    assert post_error(value).startswith(f"testservers.yaml: servers.web.post_startup.{where}")
