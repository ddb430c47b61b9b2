"""What differs between engines: how the plugin finds one, how it probes, what it tells users.

These run in every engine's CI job (.ci/engine_suites): each test asserts what is right for the
engine it finds, so the same test proves the local engine, Podman, rootless, TLS and SSH paths.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_testserver import engine as engine_module
from pytest_testserver.engine import Engine
from pytest_testserver.locate import Location, context_id, locate
from tests.conftest import (
    HTTPD,
    engine_facts,
    expected_host,
    require_command,
    servers_yaml,
    wait_for,
)

SLEEPER = """
    image: busybox:stable
    command: ["sleep", "600"]
    ports: [8080]
    wait: false
"""

ENGINE_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")


def write_context(config: Path, name: str, location: Location) -> None:
    """A Docker CLI context named ``name`` for ``location``, stored as the CLI stores it."""
    meta = config / "contexts" / "meta" / context_id(name)
    meta.mkdir(parents=True)
    endpoint = {"Host": location.address, "SkipTLSVerify": location.tls and not location.tls_verify}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    if location.tls and location.cert_path:
        tls = config / "contexts" / "tls" / context_id(name) / "docker"
        tls.mkdir(parents=True)
        for file in ("ca.pem", "cert.pem", "key.pem"):
            if (Path(location.cert_path) / file).is_file():
                shutil.copy(Path(location.cert_path) / file, tls / file)


@pytest.fixture
def context_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This run's engine, reachable only through a Docker context: no DOCKER_* variables."""
    location = locate()
    config = tmp_path / "docker-config"
    write_context(config, "ci-engine", location)
    for key in ENGINE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


@pytest.mark.usefixtures("engine")
def test_the_current_docker_context_is_used_when_docker_host_is_unset(
    pytester: pytest.Pytester, suite: Any, context_only: Path
) -> None:
    (context_only / "config.json").write_text(json.dumps({"currentContext": "ci-engine"}))
    suite(
        servers_yaml(web=HTTPD),
        """
        from urllib.request import urlopen
        import pytest

        @pytest.mark.testserver("web")
        def test_page(testserver):
            assert urlopen(testserver.url(8080), timeout=5).read() == b"ok\\n"
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "testserver: 1 server(s) *; engine * (current Docker context 'ci-engine' "
            f"({context_only}*"
        ]
    )


@pytest.mark.usefixtures("engine")
def test_docker_context_wins_over_the_current_context(
    pytester: pytest.Pytester, suite: Any, context_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The current context names an engine that is not there: DOCKER_CONTEXT must be used.
    write_context(context_only, "gone", Location("unix:///nonexistent/docker.sock", "test"))
    (context_only / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    monkeypatch.setenv("DOCKER_CONTEXT", "ci-engine")
    suite(
        servers_yaml(web=HTTPD),
        """
        import pytest

        @pytest.mark.testserver("web")
        def test_up(testserver):
            assert testserver.port(8080)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*engine * (Docker context 'ci-engine' (DOCKER_CONTEXT))*"])


def test_a_missing_context_is_one_line_naming_it(
    pytester: pytest.Pytester, suite: Any, context_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONTEXT", "nope")
    result = start_fails(pytester, suite)
    result.stdout.fnmatch_lines(
        [
            "testserver: server 'web': cannot reach the Docker engine at context 'nope': "
            "Docker context 'nope' (DOCKER_CONTEXT) names a context that does not exist (no "
            f"{context_only}/contexts/meta/*/meta.json); fix it, choose another (docker context "
            "use NAME), or set DOCKER_CONTEXT or DOCKER_HOST"
        ]
    )


def start_fails(pytester: pytest.Pytester, suite: Any) -> pytest.RunResult:
    """A run whose one test needs a server that cannot start: its output."""
    suite(
        servers_yaml(web=HTTPD),
        """
        import pytest

        @pytest.mark.testserver("web")
        def test_up(testserver):
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    return result


@pytest.fixture
def plain_tcp_listener() -> Iterator[int]:
    """A TCP port that answers like a plain-HTTP server: a TLS handshake with it fails."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(5)
    server.close()


def test_a_tls_failure_has_its_own_message(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch, plain_tcp_listener: int
) -> None:
    certs = pytester.path / "certs"
    certs.mkdir()
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    (certs / "ca.pem").write_bytes(bundle.read_bytes() if bundle.is_file() else b"")
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{plain_tcp_listener}")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    result = start_fails(pytester, suite)
    result.stdout.fnmatch_lines(
        [
            f"testserver: server 'web': cannot reach the Docker engine at "
            f"tcp://127.0.0.1:{plain_tcp_listener}: TLS with the engine failed (*); check the "
            f"engine's CA and this client's certificate in {certs} (DOCKER_CERT_PATH, "
            "DOCKER_TLS_VERIFY)"
        ]
    )
    assert "start Docker or set DOCKER_HOST" not in result.stdout.str()


@pytest.fixture
def sleeper(engine: Any) -> Iterator[tuple[Engine, str]]:
    """A running busybox container of this test (labelled with this process's pid)."""
    connected = Engine.connect()
    container = connected.create_container(
        image="busybox:stable",
        name=f"testserver-engines-{os.getpid()}-{threading.get_ident()}",
        command=["sleep", "600"],
        env={},
        ports=["8080/tcp"],
        port_bindings={"8080/tcp": ("127.0.0.1", None)},
        hostname="sleeper",
        domain=None,
        labels={"pytest-testserver.run": "engines-test", "pytest-testserver.pid": str(os.getpid())},
        network=None,
        aliases=(),
    )
    try:
        connected.start(container)
        yield connected, container
    finally:
        connected.remove_container(container)
        connected.close()


@pytest.mark.usefixtures("engine")
def test_the_plugin_sees_the_engine_as_it_describes_itself_and_as_ci_started_it(
    docker_api: Any, pytester: pytest.Pytester, suite: Any
) -> None:
    """Rootless and Podman detection and the handles' host, against an oracle of the test's
    own: the engine's /info and /version read here, and in CI the engine the job started."""
    facts = engine_facts(docker_api)
    connected = Engine.connect()
    try:
        assert (connected.kind, connected.rootless) == (facts.kind, facts.rootless)
        assert connected.sets_domainname == (facts.kind == "docker" and not facts.rootless)
    finally:
        connected.close()
    suite(
        servers_yaml(sleeper=SLEEPER),
        """
        import pytest

        @pytest.mark.testserver("sleeper")
        def test_host(testserver):
            print(f"handle host: {testserver.host}")
        """,
    )
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"handle host: {expected_host()}"])


def test_concurrent_calls_stay_within_what_the_engine_transport_allows(
    sleeper: tuple[Engine, str],
) -> None:
    """20 execs of half a second at once: over ssh:// each call is an SSH session, and a
    default sshd refuses the 11th of one connection (paramiko's ChannelException)."""
    engine, container = sleeper
    results: list[tuple[int | None, bytes] | BaseException] = []

    def one() -> None:
        try:
            results.append(engine.exec(container, ["sleep", "0.5"]))
        except BaseException as exc:  # collected and asserted on below
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [(0, b"")] * 20


SEQ = "".join(f"{n}\n" for n in range(1, 20001)).encode()  # ~108 kB: many frames


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["echo", "ok"], (0, b"ok\n")),
        (["seq", "1", "20000"], (0, SEQ)),
        (["ls", "/no-such-file"], (1, b"ls: /no-such-file: No such file or directory\n")),
    ],
    ids=["short", "long", "stderr"],
)
def test_exec_output_that_comes_with_the_response_headers_is_kept(
    sleeper: tuple[Engine, str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    expected: tuple[int, bytes],
) -> None:
    """A client slow to read the exec's response headers (a loaded machine) finds the output
    already in the socket behind them: http.client's buffered reader takes it in with the
    headers. docker-py's exec_start read past that buffer and lost it (exit 0, no output)."""
    engine, container = sleeper
    started: list[str] = []
    exec_output = engine_module.exec_output

    def recorded(api: Any, exec_id: str) -> bytes:
        started.append(exec_id)
        return exec_output(api, exec_id)

    begin = http.client.HTTPResponse.begin

    def late_begin(self: http.client.HTTPResponse) -> None:
        if started and self._method == "POST":  # type: ignore[attr-defined]  # the exec's start
            wait_for(ended, 30, "the exec to end before its response is read")
        begin(self)

    def ended() -> bool:
        return not engine.api.exec_inspect(started[-1])["Running"]

    monkeypatch.setattr(engine_module, "exec_output", recorded)
    monkeypatch.setattr(http.client.HTTPResponse, "begin", late_begin)
    assert engine.exec(container, argv) == expected
    assert started


def test_probes_go_to_container_addresses_only_on_a_local_rootful_engine(
    sleeper: tuple[Engine, str],
) -> None:
    from pytest_testserver.ports import container_network

    engine, container = sleeper
    ip, gateway = container_network(engine.inspect(container))
    # from the engine's own /info, read by the test (and CI's knowledge), not the plugin's guess
    local_rootful = engine.location.is_local_socket and not engine_facts(engine.api).rootless
    routes = engine.routes_directly(ip, gateway)
    assert routes == (local_rootful and _routable_here(ip, gateway)), (
        engine.location,
        engine.rootless,
        ip,
        gateway,
    )
    if not engine.location.is_local_socket:
        assert not routes  # a remote engine's container addresses are never probed


def _routable_here(ip: str, gateway: str) -> bool:
    """Whether this machine has the network's gateway address (its bridge) on an interface."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((gateway, 0))
        return True
    except OSError:
        return False


@pytest.mark.usefixtures("engine")
def test_domain_is_set_or_said_once_where_the_engine_cannot(
    pytester: pytest.Pytester, suite: Any
) -> None:
    connected = Engine.connect()
    facts = engine_facts(connected.api)
    connected.close()
    sets = facts.kind == "docker" and not facts.rootless  # Podman ignores it, rootless refuses
    suite(
        servers_yaml(
            web=HTTPD,
            other=HTTPD,
            client="image: busybox:stable\ncommand: [sleep, '600']\nlinks: [web, other]\n"
            "wait: false",
        ),
        """
        import pytest

        @pytest.mark.testserver("client")
        def test_names(testserver):
            code, out = testserver.exec(["wget", "-qO-", "http://web.test.local:8080/"])
            assert (code, out) == (0, "ok\\n")
            code, out = testserver.exec(["cat", "/proc/sys/kernel/domainname"])
            assert out.strip() in EXPECTED
        """.replace("EXPECTED", repr(("test.local",) if sets else ("", "(none)"))),
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    said = result.stdout.str().count("testserver: this engine is")
    assert said == (0 if sets else 1)


@pytest.mark.usefixtures("engine")
@pytest.mark.needs_root_and_local_engine
def test_ports_that_do_not_answer_from_here_are_named_with_the_remedy(
    pytester: pytest.Pytester, suite: Any
) -> None:
    """pytest in a network namespace of its own, the engine's socket still reachable: like an
    engine through a tunnel, the container is ready but its published ports are elsewhere."""
    require_command("unshare", "util-linux's unshare runs pytest in a network namespace")
    suite(
        servers_yaml(
            byexec=HTTPD + '    wait: false\n    post_startup: {command: ["true"]}\n',
            bytcp=HTTPD + "    wait: {tcp: 8080}\n    timeout: 3\n",
        ),
        """
        import pytest

        @pytest.mark.testserver("byexec")
        def test_by_exec(testserver):
            pass

        @pytest.mark.testserver("bytcp")
        def test_by_tcp(testserver):
            pass
        """,
    )
    result = pytester.run(
        "unshare", "--net", "--", sys.executable, "-m", "pytest", "-p", "no:cacheprovider"
    )
    out = result.stdout.str()
    assert "2 errors" in out, out
    assert "server 'byexec': ready inside the engine, but its port 8080 published at " in out
    assert "does not answer from this machine" in out
    assert "server 'bytcp': not ready within 3s" in out
    assert (
        "wait.tcp 8080 was still unmet (Network is unreachable); if the server does listen, its "
        "published port at 127.0.0.1 may not be reachable from here: the engine at unix://"
    ) in out


def test_a_closed_log_stream_closes_its_socket(docker_api: Any) -> None:
    # docker-py's close() of a log stream shuts its socket down but leaves the response's file
    # object holding it: the descriptor stayed open until garbage collection, whose
    # ResourceWarning then failed whatever test was running at that moment.
    import uuid

    engine = Engine.connect()
    container = docker_api.create_container(
        "busybox:stable",
        ["sh", "-c", "echo hello; sleep 60"],
        labels={"pytest-testserver.run": f"test-{uuid.uuid4().hex[:10]}"},
    )["Id"]
    try:
        docker_api.start(container)
        stream = engine.follow_logs(container)
        assert b"hello" in next(iter(stream))
        response = stream._stream._response  # type: ignore[attr-defined]
        sock = getattr(getattr(response.raw._fp.fp, "raw", None), "_sock", None)
        stream.close()
        assert response.raw.closed
        if isinstance(sock, socket.socket):  # not over SSH, where it is a channel
            assert sock.fileno() == -1, "the socket is still open under the closed stream"
    finally:
        docker_api.remove_container(container, force=True)
        engine.close()
