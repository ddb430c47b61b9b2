"""A server that dies during the run, on the real engine: the error says how it died (signal,
OOM killer, exit code, log tail), the test after it gets a fresh container unless
``restart: never``, and nothing is left — also when the server is shared by xdist workers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.conftest import HTTPD, servers_yaml, wait_for

# The test kills its server with the engine's own API (as an OOM killer, a segfault or an
# operator would), waits until the engine says it stopped, then asks the server something.
KILLING = """
import time

import docker
import pytest

from pytest_testserver import ServerDied


def record(handle):
    with open("ids.txt", "a") as ids:
        ids.write(handle.container_id + "\\n")


def kill(handle, signal):
    client = docker.from_env()
    container = handle.container_id
    try:
        if signal == "SIGSEGV":
            # As a server that crashes on its own: the engine's init (PID 1) passes on the
            # signals an operator sends, but not a fault's.
            run = client.api.exec_create(container, ["kill", "-SEGV", "-1"])  # all but PID 1
            client.api.exec_start(run["Id"])  # it may not outlive the server it stops
        else:
            client.api.kill(container, signal=signal)
        deadline = time.monotonic() + 60
        while client.api.inspect_container(container)["State"]["Running"]:
            assert time.monotonic() < deadline, "the container did not stop"
            time.sleep(0.05)
    finally:
        client.close()


@pytest.mark.testserver("web")
def test_1_dies(testserver):
    record(testserver)
    kill(testserver, "{signal}")
    with pytest.raises(ServerDied) as caught:
        testserver.exec(["true"])
    with open("died.txt", "w") as died:
        died.write(str(caught.value))


@pytest.mark.testserver("web")
def test_2_after(testserver):
    record(testserver)
    assert testserver.exec(["cat", "/www/index.html"]) == (0, "ok\\n")


@pytest.mark.testserver("web")
def test_3_later(testserver):
    record(testserver)
    assert testserver.exec(["cat", "/www/index.html"]) == (0, "ok\\n")
"""


def ids(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "ids.txt").read_text().split()


def gone(api: Any, container: str) -> bool:
    return not api.containers(all=True, filters={"id": container})


@pytest.mark.parametrize(
    ("signal", "how"),
    [
        ("SIGKILL", "the container exited with code 137 (killed by SIGKILL) at "),
        ("SIGSEGV", "the container exited with code 139 (killed by SIGSEGV) at "),
    ],
)
def test_a_killed_server_says_how_it_died_and_the_next_test_gets_a_fresh_one(
    pytester: pytest.Pytester, suite: Any, engine: Any, signal: str, how: str
) -> None:
    # init: the engine's init is PID 1 and passes the signal on, as to any process in a
    # container (a bare PID 1 ignores signals it has no handler for).
    suite(servers_yaml(web=HTTPD + "    init: true\n"), KILLING.replace("{signal}", signal))
    result = pytester.runpytest("-p", "no:randomly", "--junitxml=junit.xml")
    result.assert_outcomes(passed=3)
    died = (pytester.path / "died.txt").read_text()
    assert died.startswith(f"testserver: server 'web' died during the run: {how}"), died
    first, second, third = ids(pytester)
    assert first != second == third  # one fresh container, then it serves the later tests
    result.stdout.fnmatch_lines(
        [f"testserver: web died ({how}*); starting afresh for test_suite.py::test_2_after"]
    )
    result.stdout.fnmatch_lines(
        ["testserver: web died during the run and was started afresh 1 time"]
    )
    junit = ElementTree.parse(pytester.path / "junit.xml")
    properties = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in junit.iter("testcase")
    }
    assert properties["test_2_after"] == {"testserver web restarts": "1"}
    assert properties["test_3_later"] == {}
    assert gone(engine, first)
    assert gone(engine, second)


def test_the_test_running_when_its_server_dies_is_reported_with_the_death(
    pytester: pytest.Pytester, suite: Any, engine: Any
) -> None:
    tests = KILLING.replace("{signal}", "SIGKILL").replace(
        """    with pytest.raises(ServerDied) as caught:
        testserver.exec(["true"])
    with open("died.txt", "w") as died:
        died.write(str(caught.value))""",
        """    import urllib.request
    urllib.request.urlopen(testserver.url(8080), timeout=10)  # fails: the server is dead""",
    )
    suite(servers_yaml(web=HTTPD + "    init: true\n"), tests)
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- testserver web: died during this test -*",
            "testserver: server 'web' died during the run: the container exited with code 137 "
            "(killed by SIGKILL) at *",
        ]
    )


def test_restart_never_fails_every_later_test_with_the_death(
    pytester: pytest.Pytester, suite: Any, engine: Any
) -> None:
    suite(
        servers_yaml(web=HTTPD + "    init: true\n    restart: never\n"),
        KILLING.replace("{signal}", "SIGKILL"),
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*testserver: server 'web' died during the run: the container exited with code 137 "
            "(killed by SIGKILL) at *",
        ]
    )
    assert "starting afresh" not in result.stdout.str()
    listed = pytester.runpytest("--testserver-list")
    listed.stdout.fnmatch_lines(["    restart: never (a death fails every later test)"])
    (first,) = ids(pytester)
    assert gone(engine, first)


def test_an_oom_killed_server_says_so(pytester: pytest.Pytester, suite: Any, engine: Any) -> None:
    """A server that outgrows its memory: the kernel's OOM killer, as the engine reports it."""
    server = """
        image: busybox:stable
        command:
          - sh
          - -c
          - echo up; while [ ! -e /grow ]; do sleep 0.05; done; exec tail /dev/zero
        wait: {log: up}
    """
    tests = """
        import time

        import docker
        import pytest

        from pytest_testserver import ServerDied


        @pytest.mark.testserver("hog")
        def test_grows(testserver):
            client = docker.from_env()
            try:
                # A small limit, set on the running container: the server's own memory, not a
                # test's, is what the kernel kills for.
                client.api.update_container(
                    testserver.container_id, mem_limit="16m", memswap_limit="16m"
                )
                assert testserver.exec(["touch", "/grow"])[0] == 0
                deadline = time.monotonic() + 60
                while client.api.inspect_container(testserver.container_id)["State"]["Running"]:
                    assert time.monotonic() < deadline, "the server did not die"
                    time.sleep(0.05)
            finally:
                client.close()
            with pytest.raises(ServerDied) as caught:
                testserver.exec(["true"])
            with open("died.txt", "w") as died:
                died.write(str(caught.value))
    """
    suite(servers_yaml(hog=server), textwrap.dedent(tests))
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    died = (pytester.path / "died.txt").read_text()
    assert died.startswith(
        "testserver: server 'hog' died during the run: the container exited with code 137 "
        "(killed for lack of memory: OOMKilled) at "
    ), died
    assert "--- last lines of the log of 'hog' ---\nup" in died


XDIST = """
import os
import pathlib
import time

import docker
import pytest


def record(handle):
    with open("ids.txt", "a") as ids:
        ids.write(handle.container_id + "\\n")


@pytest.mark.testserver("web")
def test_1_dies(testserver):
    record(testserver)
    client = docker.from_env()
    try:
        client.api.kill(testserver.container_id, signal="SIGKILL")
        deadline = time.monotonic() + 60
        while client.api.inspect_container(testserver.container_id)["State"]["Running"]:
            assert time.monotonic() < deadline, "the container did not stop"
            time.sleep(0.05)
    finally:
        client.close()
    pathlib.Path("killed.tmp").write_text("")
    os.replace("killed.tmp", "killed")


@pytest.fixture
def after_the_death():
    # The first test sent to a worker is test_1_dies: the others ask for the server only once
    # it died, so none of them is running when it dies.
    deadline = time.monotonic() + 120
    while not pathlib.Path("killed").exists():
        assert time.monotonic() < deadline, "test_1_dies never killed the server"
        time.sleep(0.05)


@pytest.mark.parametrize("n", range(8))
def test_after(after_the_death, testservers, n):
    web = testservers["web"]
    record(web)
    assert web.exec(["cat", "/www/index.html"]) == (0, "ok\\n")
"""


def test_a_shared_server_that_dies_under_xdist_is_started_afresh_once(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    """Two workers share one server; one kills it. The next test to ask, on either worker,
    gets the fresh container that one worker started; every test passes and nothing is left."""
    suite(servers_yaml(web=HTTPD + "    init: true\n"), XDIST)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly", timeout=300)
    result.assert_outcomes(passed=9)
    seen = ids(pytester)
    assert len(seen) == 9
    assert len(set(seen)) == 2, seen  # the first container, and exactly one fresh one
    assert seen.count(seen[0]) == 1  # only the test that killed it used the first
    assert result.stdout.str().count("web died (") == 1  # one worker started it afresh
    result.stdout.fnmatch_lines(
        ["testserver: web died during the run and was started afresh 1 time"]
    )
    for container in set(seen):
        assert gone(docker_api, container), container


RESTARTED = """
import os
import pathlib
import time

import pytest


@pytest.mark.testserver("web")
def test_1_before(testserver):
    with open("ids.txt", "a") as ids:
        ids.write(testserver.container_id + "\\n")
    pathlib.Path("up.tmp").write_text("")
    os.replace("up.tmp", "up")
    deadline = time.monotonic() + 180
    while not pathlib.Path("restarted").exists():  # the engine is restarted meanwhile
        assert time.monotonic() < deadline, "the engine was never restarted"
        time.sleep(0.05)


@pytest.mark.testserver("web")
def test_2_after(testserver):
    with open("ids.txt", "a") as ids:
        ids.write(testserver.container_id + "\\n")
    assert testserver.exec(["cat", "/www/index.html"]) == (0, "ok\\n")
"""


def restart_engine() -> None:
    """Stop the engine this machine runs (CI's dockerd, found by its pid file) and start it
    again with the same command line, detached: it outlives this test, as CI's engine.

    Only where the machine's engine is the suite's alone to restart: CI says so (.ci/run sets
    TESTSERVER_MAY_RESTART_ENGINE=1). Elsewhere — a developer's engine, or one that other runs
    share — restarting it would kill everyone's containers.
    """
    if os.environ.get("TESTSERVER_MAY_RESTART_ENGINE") != "1":
        why = (
            "restarts the machine's dockerd: set TESTSERVER_MAY_RESTART_ENGINE=1 only where "
            "nothing else uses that engine (.ci/run does)"
        )
        if os.environ.get("CI"):
            pytest.fail(why)  # under CI, never a silent skip
        pytest.skip(why)
    pid = int(Path("/var/run/docker.pid").read_text())
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    assert os.path.basename(argv[0]) == "dockerd", argv
    executable = shutil.which(argv[0]) or argv[0]
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 90, "dockerd to stop")
    log = os.open("/tmp/dockerd.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        quiet = [(os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
        os.posix_spawn(executable, argv, dict(os.environ), file_actions=quiet, setsid=True)
    finally:
        os.close(log)
    wait_for(answers, 90, "dockerd to answer again")


def answers() -> bool:
    """The engine answers a ping (a socket of our own: docker-py's leaks one per refused
    connect, a ResourceWarning here)."""
    host = os.environ.get("DOCKER_HOST", "")
    path = host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(5)
        try:
            probe.connect(path)
            probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"OK" in probe.recv(4096)
        except OSError:
            return False


@pytest.mark.needs_root_and_local_engine
def test_an_engine_restart_under_the_run_is_said_and_the_server_started_afresh(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, run_births: Any
) -> None:
    suite(servers_yaml(web=HTTPD + "    init: true\n"), RESTARTED)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: (pytester.path / "up").exists(), 120, "the first test to hold its server")
        restart_engine()
        run_births.reopen()  # the session's leak check reads on, past the restart
        (pytester.path / "restarted").write_text("")
        output = run.communicate(timeout=300)[0]
    finally:
        run.kill()
        run.communicate(timeout=60)
    assert run.returncode == 0, output
    said = [line for line in output.splitlines() if line.startswith("testserver: web died (")]
    assert len(said) == 1, output
    assert "the container exited with code " in said[0]
    assert (
        "the engine stopped, restarted or dropped its connection during the run (its event "
        "stream ended at " in said[0]
    )
    assert said[0].endswith("starting afresh for test_suite.py::test_2_after")
    first, second = ids(pytester)
    assert first != second
    assert gone(docker_api, first), first
    assert gone(docker_api, second), second
