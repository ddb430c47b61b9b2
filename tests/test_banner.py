"""Banner readiness (``wait.tcp: {port, expect}``) and ``wait.http`` status lists, on real servers.

A banner server here is busybox ``nc -ll -e echo TEXT``: every connection is greeted with TEXT.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_testserver.checks import BannerCheck, HttpCheck
from pytest_testserver.config import parse_config
from pytest_testserver.errors import ConfigError
from pytest_testserver.listing import describe
from pytest_testserver.readiness import Target, banner_ready, show_bytes
from pytest_testserver.redact import Redactor
from tests.conftest import HTTPD, servers_yaml

SOURCE = "testservers.yaml"
SECRET = "bannertok-7c1d9e"


# A budget for a server that gets ready (a busy machine may take seconds to start one), and a
# short one where the test expects "not ready" and waits it out.
READY_WITHIN = 60
NEVER_READY_WITHIN = 4


def banner_server(text: str, wait: str, extra: str = "", timeout: int = READY_WITHIN) -> str:
    return f"""
image: busybox:stable
command: [nc, -ll, -p, "2100", -e, echo, "{text}"]
ports: [2100]
timeout: {timeout}
wait: {wait}
{extra}
"""


USE = """
import pytest

@pytest.mark.testserver("ftp")
def test_it(testserver):
    assert testserver.port(2100)
"""


def wait_of(wait: object) -> Any:
    data = {"servers": {"web": {"image": "busybox:stable", "wait": wait}}}
    return parse_config(data, base=Path(), source=SOURCE).servers["web"].checks


def error_of(wait: object) -> str:
    with pytest.raises(ConfigError) as excinfo:
        wait_of(wait)
    return str(excinfo.value)


# --- parsing ------------------------------------------------------------------------------------


def test_tcp_takes_ports_and_banner_checks_mixed() -> None:
    checks = wait_of({"tcp": [8080, {"port": 21, "expect": "220 "}]})
    assert checks.tcp == (8080,)
    assert checks.banners == (BannerCheck(21, "220 "),)
    assert wait_of({"tcp": {"port": 21, "expect": "220"}}).banners == (BannerCheck(21, "220"),)


@pytest.mark.parametrize(
    ("wait", "message"),
    [
        pytest.param(
            {"tcp": {"port": 21}},
            'wait.tcp: needs expect (a TCP check with expect: {port: 21, expect: "220 "})',
            id="no-expect",
        ),
        pytest.param(
            {"tcp": [{"expect": "220"}]},
            'wait.tcp[0]: needs port (a TCP check with expect: {port: 21, expect: "220 "})',
            id="no-port",
        ),
        pytest.param({"tcp": {"port": 21, "expect": ""}}, "wait.tcp.expect: must not be empty"),
        pytest.param(
            {"tcp": {"port": 21, "expect": 220}}, "wait.tcp.expect: must be a string, not int 220"
        ),
        pytest.param(
            {"tcp": {"port": 21, "expect": "x" * 201}},
            "wait.tcp.expect: is longer than 200 characters: a banner's first bytes",
            id="too-long",
        ),
        pytest.param(
            {"tcp": {"port": "21/udp", "expect": "x"}},
            "wait.tcp.port: '21/udp': only TCP ports can be checked",
            id="udp",
        ),
        pytest.param(
            {"tcp": {"port": 21, "expect": "x", "regex": "y"}},
            "wait.tcp.regex: unknown key; known keys: port, expect",
            id="unknown-key",
        ),
        pytest.param(
            {"http": {"port": 80, "status": []}},
            "wait.http.status: must not be an empty list",
            id="status-empty",
        ),
        pytest.param(
            {"http": {"port": 80, "status": [200, "401"]}},
            "wait.http.status[1]: '401' is not an HTTP status (100-599)",
            id="status-string",
        ),
    ],
)
def test_bad_checks_are_one_line_errors(wait: object, message: str) -> None:
    assert error_of(wait) == f"{SOURCE}: servers.web.{message}"


def test_http_status_may_be_one_or_a_list() -> None:
    assert wait_of({"http": {"port": 80, "status": 204}}).http == (HttpCheck(80, "/", (204,)),)
    checks = wait_of({"http": {"port": 80, "status": [200, 401, 200]}})
    assert checks.http == (HttpCheck(80, "/", (200, 401)),)


def test_listing_shows_expect_and_statuses() -> None:
    data = {
        "servers": {
            "web": {
                "image": "busybox:stable",
                "wait": {
                    "tcp": [{"port": 21, "expect": "220 "}],
                    "http": {"port": 80, "status": [200, 401]},
                },
            }
        }
    }
    text = describe(parse_config(data, base=Path(), source=SOURCE))
    assert "ready:   tcp 21 expect '220 ', http 80/ -> 200 or 401 (timeout" in text


def test_an_answer_is_shown_masked_cut_and_escaped() -> None:
    redact = Redactor([SECRET])
    assert show_bytes(b"500 OOPS\r\n\x1b[2J", redact) == r"'500 OOPS\r\n\x1b[2J'"
    assert show_bytes(f"530 {SECRET}\n".encode(), redact) == r"'530 ***\n'"
    # masked before it is cut: a secret across the cut does not leak its first half
    text = show_bytes(("x" * 75 + SECRET).encode(), redact)
    assert text == "'" + "x" * 75 + "***'"
    assert show_bytes(b"y" * 500, redact) == "'" + "y" * 80 + "'..."
    assert show_bytes("caf\u00e9 \xff".encode("latin-1"), redact) == r"'caf\ufffd \ufffd'"


# --- through a published port: a real local socket stands for the engine's proxy ----------------


@pytest.fixture
def listener() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Serve each connection with ``answer`` on a local port; the port."""
    servers: list[socket.socket] = []

    def serve(answer: Callable[[socket.socket], None]) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def loop() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    answer(conn)

        threading.Thread(target=loop, daemon=True).start()
        return int(server.getsockname()[1])

    yield serve
    for server in servers:
        server.close()


def published(port: int) -> Target:
    return Target(ip="", host="127.0.0.1", published={21: port}, direct=False)


def check(target: Target, expect: bytes) -> tuple[bool, str]:
    return banner_ready(target, BannerCheck(21, "x"), expect, time.monotonic() + 5, Redactor())


def test_a_banner_in_pieces_is_read_until_it_can_be_judged(listener: Any) -> None:
    def slow(conn: socket.socket) -> None:
        for piece in (b"2", b"20", b" ready\r\n"):
            conn.sendall(piece)
            time.sleep(0.02)

    target = published(listener(slow))
    assert check(target, b"220 ") == (True, "")
    assert target.proven  # an answer came through the published port


def test_a_hang_up_before_any_byte_is_not_ready(listener: Any) -> None:
    target = published(listener(lambda conn: None))  # accepts and closes, as a proxy does
    assert check(target, b"220 ") == (False, "the connection was closed before anything was sent")
    assert not target.proven


def test_a_wrong_answer_is_judged_at_its_first_byte_and_shown_whole(listener: Any) -> None:
    target = published(listener(lambda conn: conn.sendall(b"500 OOPS\r\n")))
    assert check(target, b"220 ") == (False, r"it answered '500 OOPS\r\n'")


def test_nothing_on_a_port_that_is_not_published() -> None:
    ready, why = check(Target(ip="", host="127.0.0.1", published={}, direct=False), b"220")
    assert not ready
    assert why.startswith("port 21 is not in ports:")


# --- real servers -------------------------------------------------------------------------------


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize(
    "wait",
    [
        pytest.param('{tcp: {port: 2100, expect: "220 "}}', id="one"),
        pytest.param('{tcp: [{port: 2100, expect: "220 ready"}]}', id="list"),
        pytest.param('{tcp: [2100, {port: 2100, expect: "220"}]}', id="mixed"),
    ],
)
def test_a_server_answering_the_expected_banner_is_ready(
    pytester: pytest.Pytester, suite: Any, wait: str
) -> None:
    suite(servers_yaml(ftp=banner_server("220 ready", wait)), USE)
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.usefixtures("engine")
def test_a_server_answering_something_else_is_not_ready_and_the_answer_is_shown(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTP_TOKEN", SECRET)
    server = banner_server(
        "500 OOPS ${FTP_TOKEN}",
        '{tcp: {port: 2100, expect: "220 "}}',
        "secret_env: [FTP_TOKEN]",
        timeout=NEVER_READY_WITHIN,
    )
    suite(servers_yaml(ftp=server), USE)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    text = result.stdout.str() + result.stderr.str()
    assert SECRET not in text
    assert (
        "testserver: server 'ftp': not ready within 4s: wait.tcp 2100 (expecting an answer "
        "starting '220 ') was still unmet (it answered '500 OOPS ***\\n')"
    ) in text


@pytest.mark.usefixtures("engine")
def test_a_server_that_sends_nothing_is_not_ready(pytester: pytest.Pytester, suite: Any) -> None:
    server = """
image: busybox:stable
command: [nc, -ll, -p, "2100", -e, sleep, "60"]
ports: [2100]
timeout: 4
wait: {tcp: {port: 2100, expect: "220 "}}
"""
    suite(servers_yaml(ftp=server), USE)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*wait.tcp 2100 (expecting an answer starting '220 ') was still unmet (connected, but *"]
    )


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        pytest.param("[200, 404]", "passed", id="any-passes"),
        pytest.param("[200, 401]", "errors", id="none-matches"),
    ],
)
def test_an_http_status_list(
    pytester: pytest.Pytester, suite: Any, status: str, outcome: str
) -> None:
    server = (
        HTTPD
        + f"    timeout: {READY_WITHIN if outcome == 'passed' else NEVER_READY_WITHIN}\n"
        + f"    wait: {{http: {{port: 8080, path: /missing, status: {status}}}}}\n"
    )
    suite(
        servers_yaml(web=server),
        """
        import pytest

        @pytest.mark.testserver("web")
        def test_it(testserver):
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(**{outcome: 1})
    if outcome == "errors":
        result.stdout.fnmatch_lines(
            [
                "testserver: server 'web': not ready within 4s: wait.http 8080/missing "
                "(expecting 200 or 401) was still unmet (status 404)"
            ]
        )
