"""Every readiness check kind against real containers, including ones that never pass."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import servers_yaml

pytestmark = pytest.mark.usefixtures("engine")

LATE_HTTPD = """
    from: busybox:stable
    run: ["mkdir -p /www && echo ok > /www/index.html && echo fine > /www/health"]
    command:
      - sh
      - -c
      - echo starting; sleep 1; echo READY-TO-SERVE; exec httpd -f -p 8080 -h /www
    ports: [8080]
"""

FETCH_AT_ONCE = """
from urllib.request import urlopen
import pytest

@pytest.mark.testserver("web")
def test_fetch(testserver):
    # no retry here: ready must mean ready
    assert urlopen(testserver.url(8080), timeout=5).read() == b"ok\\n"
"""


@pytest.mark.parametrize(
    "wait",
    [
        pytest.param("", id="default-tcp-on-published-ports"),
        pytest.param("wait: {tcp: 8080}", id="tcp"),
        pytest.param("wait: {http: {port: 8080, path: /health, status: 200}}", id="http"),
        pytest.param("wait: {http: 8080}", id="http-shorthand"),
        pytest.param("wait: {log: 'READY-TO-\\w+'}", id="log"),
        pytest.param("wait: {tcp: [8080], http: {port: 8080}}", id="combined"),
    ],
)
def test_a_late_server_is_ready_when_the_check_says(
    pytester: pytest.Pytester, suite: Any, wait: str
) -> None:
    suite(servers_yaml(web=LATE_HTTPD + f"    {wait}\n"), FETCH_AT_ONCE)
    pytester.runpytest().assert_outcomes(passed=1)


def test_healthcheck_of_the_image(pytester: pytest.Pytester, suite: Any) -> None:
    suite(
        servers_yaml(
            web="""
            build: web
            ports: [8080]
            wait: {healthcheck: true}
            """
        ),
        FETCH_AT_ONCE,
        {
            "web/Dockerfile": """
            FROM busybox:stable
            RUN mkdir -p /www && echo ok > /www/index.html
            HEALTHCHECK --interval=100ms --timeout=1s CMD ["wget", "-q", "--spider", "http://127.0.0.1:8080/"]
            CMD ["sh", "-c", "sleep 1; exec httpd -f -p 8080 -h /www"]
            """
        },
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("wait", "unmet"),
    [
        pytest.param(
            # refused at the container's own address; through a published port (remote,
            # rootless, ssh), the engine's proxy takes the connection and hangs up
            "wait: {tcp: 9999}",
            "wait.tcp 9999 was still unmet (*)*",
            id="tcp",
        ),
        pytest.param(
            "wait: {http: {port: 8080, path: /missing}}",
            "wait.http 8080/missing (expecting 200) was still unmet (status 404)",
            id="http",
        ),
        pytest.param(
            "wait: {log: NEVER-PRINTED}",
            "wait.log 'NEVER-PRINTED' was still unmet (no matching line yet)",
            id="log",
        ),
        pytest.param(
            "wait: {tcp: 8080, log: NEVER-PRINTED}",
            "wait.log 'NEVER-PRINTED' was still unmet (no matching line yet)",
            id="combined-says-which",
        ),
    ],
)
def test_a_check_that_never_passes_says_which_and_shows_the_log(
    pytester: pytest.Pytester, suite: Any, wait: str, unmet: str
) -> None:
    suite(
        servers_yaml(
            web=f"""
            from: busybox:stable
            run: ["mkdir -p /www && echo ok > /www/index.html"]
            command: ["sh", "-c", "echo LOG-LINE-42; exec httpd -f -p 8080 -h /www"]
            ports: [8080, 9999]
            timeout: 3
            {wait}
            """
        ),
        FETCH_AT_ONCE,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    # 3 s, not less: the budget counts from the container's creation, and a rootless engine on a
    # busy CI host once took over 2 s to start it (two ports through rootlesskit).
    result.stdout.fnmatch_lines(
        [
            f"testserver: server 'web': not ready within 3s: {unmet}",
            "--- last lines of the log of 'web' ---",
            "LOG-LINE-42",
        ]
    )
    if "tcp: 9999" in wait:
        out = result.stdout.str()
        assert "(Connection refused)" in out or "(the engine's proxy hung up)" in out, out


@pytest.mark.parametrize("wait", ["wait: {tcp: 8080}", "wait: {log: NEVER}", ""])
def test_a_dying_server_fails_at_once_whatever_the_check(
    pytester: pytest.Pytester, suite: Any, wait: str
) -> None:
    suite(
        servers_yaml(
            web=f"""
            image: busybox:stable
            command: ["sh", "-c", "echo FATAL-MARKER; sleep 0.5; exit 3"]
            ports: [8080]
            timeout: 100
            {wait}
            """
        ),
        FETCH_AT_ONCE,
    )
    result = pytester.runpytest("--durations=0")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "testserver: server 'web': the container exited with code 3 before it was ready",
            "--- last lines of the log of 'web' ---",
            "FATAL-MARKER",
        ]
    )


def test_wait_false_means_ready_once_running(pytester: pytest.Pytester, suite: Any) -> None:
    suite(
        servers_yaml(
            web="""
            image: busybox:stable
            command: ["sleep", "60"]
            ports: [8080]
            wait: false
            """
        ),
        """
        def test_it(testservers):
            assert testservers["web"].port(8080)
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)
