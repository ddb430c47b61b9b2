"""Reports, progress, listing and the Python API, as a user sees them through pytest."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

import pytest

from tests.conftest import HTTPD, servers_yaml

UNREACHABLE = "unix:///nonexistent/docker.sock"

ECHOING = """
    image: busybox:stable
    command: ["sh", "-c", "echo serving with token=$API_TOKEN; exec httpd -f -p 8080 -h /"]
    ports: [8080]
    secret_env: [API_TOKEN]
"""


@pytest.mark.usefixtures("engine")
def test_a_failed_test_gets_the_log_of_each_server_it_used_with_secrets_masked(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "tok-3141592653")
    suite(
        servers_yaml(echo=ECHOING, other=HTTPD),
        """
        import pytest

        @pytest.mark.testserver("echo")
        def test_fails(testserver, testservers):
            testservers["other"]
            assert False, "the test itself failed"

        @pytest.mark.testserver("echo")
        def test_passes(testserver):
            pass
        """,
    )
    result = pytester.runpytest("-rA", "--junitxml=report.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- testserver echo: last 50 log lines -*",
            "serving with token=***",
            "*- testserver other: last 50 log lines -*",
            "(the server printed nothing)",
        ]
    )
    output = result.stdout.str()
    assert output.count("testserver echo: last 50 log lines") == 1  # not for the passing test
    assert "tok-3141592653" not in output
    junit = (pytester.path / "report.xml").read_text()
    assert "serving with token=***" in junit
    assert "tok-3141592653" not in junit


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize(
    ("args", "shown", "hidden"),
    [
        pytest.param(
            [],
            [
                "testserver: engine * at *",
                # the user's steps as written, not the builder's count (FROM, labels);
                # "[[]" is fnmatch's "["
                "testserver: building web: before_install[[]0] (step 1 of 2): mkdir -p /www",
                "testserver: building web: run[[]0] (step 2 of 2): echo * > /www/index.html",
                "testserver: web ready in *s",
            ],
            [
                "*Successfully built*",
                "*LABEL pytest-testserver.*",
                "*[Ss][Tt][Ee][Pp] [0-9]*/[0-9]*",  # Docker's "Step 1/4 :", Podman's "STEP 1/4:"
            ],
            id="default",
        ),
        pytest.param(
            ["-v"],
            [
                "testserver: building web: [Ss][Tt][Ee][Pp] 1/*: FROM busybox:stable",
                "testserver: building web: before_install[[]0] (step 1 of 2): mkdir -p /www",
                "testserver: building web: run[[]0] (step 2 of 2): echo * > /www/index.html",
                "testserver: building web: *Successfully *",  # built (Docker), tagged (Podman)
            ],
            [],
            id="verbose-streams-the-build",
        ),
        pytest.param(["-q"], [], ["testserver: *"], id="quiet"),
    ],
)
def test_progress_lines(
    pytester: pytest.Pytester, suite: Any, args: list[str], shown: list[str], hidden: list[str]
) -> None:
    fresh = uuid.uuid4().hex  # a new image: its build is shown
    suite(
        servers_yaml(
            web=f"""
            from: busybox:stable
            before_install: ["mkdir -p /www"]
            run: ["echo {fresh} > /www/index.html"]
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            ports: [8080]
            """
        ),
        """
        def test_it(testservers):
            testservers["web"]
        """,
    )
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    if shown:
        result.stdout.fnmatch_lines(shown)
    for pattern in hidden:
        result.stdout.no_fnmatch_line(pattern)


def test_header_says_servers_engine_and_bind_mode_without_contacting_it(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)
    monkeypatch.delenv("TESTSERVER_BIND_ADDRESS", raising=False)
    suite(servers_yaml(web=HTTPD), "def test_x(): pass")
    result = pytester.runpytest("--testserver-bind-local")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"testserver: 1 server(s) from testservers.yaml; engine {UNREACHABLE} (DOCKER_HOST); "
            "published on 127.0.0.1, same numbers as inside (bind-local)"
        ]
    )


def test_list_prints_the_servers_and_exits_without_the_engine(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)
    suite(
        servers_yaml(
            web=HTTPD + "    wait: {http: {port: 8080, path: /health}}\n",
            client="image: busybox:stable\ncommand: [sleep, '60']\nlinks: [web]\nwait: false",
            fresh="image: busybox:stable\ncommand: [sleep, '60']\nscope: class",
            apt="from: debian:bookworm-slim\nbefore_install: ['true', [touch, /x]]\n"
            "install: [curl, ca-certificates]",
        ),
        "def test_never_run(): assert False",
    )
    result = pytester.runpytest("--testserver-list")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "testserver: 4 server(s) from testservers.yaml",
            "web",
            "    image:   from busybox:stable; 1 run step(s)",
            "    command: ['httpd', '-f', '-p', '8080', '-h', '/www']",
            "    ports:   8080/tcp",
            "    links:   -",
            "    ready:   http 8080/health -> 200 (timeout 120s; image 900s)",
            "    share:   run",
            "client",
            "    image:   image busybox:stable",
            "    links:   web",
            "    ready:   running (timeout 120s; image 900s)",
            "    share:   run",
            "    scope:   session",
            "fresh",
            "    share:   worker",
            "    scope:   class",
            "apt",
            "    image:   from debian:bookworm-slim; 2 before_install step(s); "
            "install curl ca-certificates",
        ]
    )
    assert "test_never_run" not in result.stdout.str()


def test_list_shows_ranges_and_fixed_host_ports_as_written(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)
    suite(
        servers_yaml(
            ftp="""
            image: busybox:stable
            ports:
              - 21
              - "2121:2100"
              - "30000-30009"
              - "40000-40009:40000-40009"
              - {target: 53, published: 5353, protocol: udp}
            """
        ),
        "def test_never_run(): assert False",
    )
    result = pytester.runpytest("--testserver-list")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "ftp",
            "    ports:   21/tcp, 2121:2100/tcp, 30000-30009/tcp, 40000-40009:40000-40009/tcp, "
            "5353:53/udp",
            "    ready:   tcp 21, tcp 2100 (timeout 120s; image 900s)",
        ]
    )


def test_list_reports_a_bad_config_as_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "testservers.yaml").write_text(
        "servers:\n  web:\n    image: busybox\n    wait: {tcp: 0}\n"
    )
    result = pytester.runpytest("--testserver-list")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: testservers.yaml: servers.web.wait.tcp: 0 is not a port (1-65535)"]
    )


CONFTEST_API = """
def pytest_testserver_servers(config):
    return {
        "defaults": {"domain": "test.local"},
        "servers": {
            "api": {
                "from": "busybox:stable",
                "copy": [{"src": "files/index.html", "dst": "/www/index.html", "mode": "0644"}],
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "ports": [8080],
                "links": ["web"],
            },
        },
    }
"""


@pytest.mark.usefixtures("engine")
def test_servers_declared_in_conftest_work_beside_the_yaml_file(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(web=HTTPD),
        """
        from urllib.request import urlopen
        import pytest

        @pytest.mark.testserver("api")
        def test_api_reaches_web(testserver):
            assert urlopen(testserver.url(8080)).read() == b"from conftest\\n"
            code, out = testserver.exec(["wget", "-qO-", "http://web.test.local:8080/"])
            assert (code, out) == (0, "ok\\n")
        """,
        {"files/index.html": "from conftest\n"},
    )
    pytester.makeconftest(CONFTEST_API)
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("conftest", "message"),
    [
        pytest.param(
            CONFTEST_API.replace('"api"', '"web"').replace('"links": ["web"],', ""),
            "ERROR: conftest.py::pytest_testserver_servers: servers.web: already declared in "
            "testservers.yaml",
            id="declared-twice",
        ),
        pytest.param(
            CONFTEST_API.replace('"ports": [8080]', '"ports": ["8080/sctp"]'),
            "ERROR: conftest.py::pytest_testserver_servers: servers.api.ports[[]0]: '8080/sctp' "
            "is not a port*",
            id="same-validation",
        ),
        pytest.param(
            CONFTEST_API.replace('"links": ["web"]', '"links": ["wbe"]'),
            "ERROR: conftest.py::pytest_testserver_servers: servers.api.links[[]0]: 'wbe' is not a "
            "declared server (did you mean 'web'?)",
            id="links-across-sources",
        ),
    ],
)
def test_conftest_declarations_are_validated_like_yaml(
    pytester: pytest.Pytester, suite: Any, conftest: str, message: str
) -> None:
    suite(servers_yaml(web=HTTPD), "def test_x(): pass", {"files/index.html": "x\n"})
    pytester.makeconftest(textwrap.dedent(conftest))
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
