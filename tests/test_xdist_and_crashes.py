"""xdist sharing, build-once, and cleanup after crashes, kills and concurrent runs (real engine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HTTPD, servers_yaml, wait_for, written
from tests.events import Events, container_creations

pytestmark = pytest.mark.usefixtures("engine")

# The promise for a killed run: everything labelled with its run id is gone within this.
REAP_WITHIN = 10.0

RECORDING_TESTS = """
import os
from pathlib import Path
from urllib.request import urlopen
import pytest

@pytest.mark.parametrize("i", range({count}))
@pytest.mark.testserver("web")
def test_uses_web(testserver, i):
    assert urlopen(testserver.url(8080)).read() == b"ok\\n"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(Path(__file__).parent / "seen.txt", "a") as f:
        f.write(f"{{worker}} {{testserver.container_id}} {{testserver.port(8080)}}\\n")
"""


def seen(pytester: pytest.Pytester) -> list[tuple[str, str, str]]:
    lines = (pytester.path / "seen.txt").read_text().split("\n")
    return [tuple(line.split()) for line in lines if line]  # type: ignore[misc]


@pytest.mark.parametrize("workers", [2, 4])
def test_one_container_for_the_whole_run_under_xdist(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, workers: int
) -> None:
    suite(servers_yaml(web=HTTPD), RECORDING_TESTS.format(count=8))
    created = container_creations(docker_api, "web")
    result = pytester.runpytest("-n", str(workers), "--dist", "each")
    result.assert_outcomes(passed=8 * workers)
    assert len(created.stop()) == 1
    records = seen(pytester)
    assert len({worker for worker, _, _ in records}) == workers
    assert len({container for _, container, _ in records}) == 1


def test_share_worker_gives_each_worker_its_own_container(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(servers_yaml(web=HTTPD + "    share: worker\n"), RECORDING_TESTS.format(count=2))
    result = pytester.runpytest("-n", "2", "--dist", "each")
    result.assert_outcomes(passed=4)
    by_worker = {worker: (container, port) for worker, container, port in seen(pytester)}
    assert len(by_worker) == 2
    containers = {container for container, _ in by_worker.values()}
    ports = {port for _, port in by_worker.values()}
    assert len(containers) == 2
    assert len(ports) == 2


def test_an_image_is_built_once_by_many_workers_and_not_again(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    # Fresh content, so the image's hash (and tag) is new to this engine.
    marker = uuid.uuid4().hex
    suite(
        servers_yaml(
            web=f"""
            from: busybox:stable
            run: ["mkdir -p /www && echo {marker} > /www/index.html"]
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            ports: [8080]
            share: worker
            """
        ),
        """
        def test_it(testservers):
            testservers["web"]
        """,
    )

    from pytest_testserver.config import parse_config
    from pytest_testserver.image import resolve

    yaml = (pytester.path / "testservers.yaml").read_text()
    spec = parse_config(__import__("yaml").safe_load(yaml), base=pytester.path, source="t").servers[
        "web"
    ]
    tag = resolve(spec).ref  # this test's own image: nobody else builds this content

    podman = "podman" in str(docker_api.version().get("Components", "")).lower()
    if podman:  # Podman reports a build, not a tag, naming the image it made by id only
        made = Events(docker_api, {"type": "image", "event": ["build", "tag"]})
    else:
        made = Events(
            docker_api,
            {"type": "image", "event": "tag"},
            where=lambda e: e.get("Actor", {}).get("Attributes", {}).get("name") == tag,
        )

    def tags_made(*args: str) -> int:
        before = len(made.until_now())
        pytester.runpytest(*args).assert_outcomes(passed=int(args[1]) if args else 1)
        events = made.until_now()[before:]
        if not podman:
            return len(events)
        image = str(docker_api.inspect_image(tag)["Id"]).removeprefix("sha256:")
        names = [
            e.get("Actor", {}).get("Attributes", {}).get("name", "")
            for e in events
            if e.get("Action") == "build"
        ]
        return sum(1 for name in names if name.removeprefix("sha256:") == image)

    # The same reader sees the one build (its positive control), then none.
    assert tags_made("-n", "4", "--dist", "each") == 1
    assert tags_made("-n", "4", "--dist", "each") == 0
    made.stop()


def test_a_crashed_worker_does_not_take_the_shared_server_down_or_leak_it(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(web=HTTPD),
        """
        import os
        import time
        from urllib.request import urlopen
        import pytest

        @pytest.mark.testserver("web")
        def test_crash(testserver):
            os._exit(3)

        @pytest.mark.parametrize("i", range(6))
        @pytest.mark.testserver("web")
        def test_keeps_working(testserver, i):
            time.sleep(0.2)
            assert urlopen(testserver.url(8080)).read() == b"ok\\n"
        """,
    )
    result = pytester.runpytest("-n", "2")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*crashed while running*test_crash*"])  # xdist 3.5 to 3.8
    # the `engine` fixture asserts that nothing labelled by this run is left


# Forces the race of the test below, whatever the machine's speed: gw0 wins the start of "slow"
# (gw1 waits for its container before starting anything), skips its own test and ends while
# its start waits for readiness and gw1 waits on that start (gw0's end waits for both).
FORCED_RACE = """
import os
import time
from pathlib import Path

import pytest

from pytest_testserver.engine import Engine

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def engine_api():
    # the engine the plugin finds, as tests.conftest's (not importable from this folder)
    return Engine.connect().api
HERE = Path(__file__).parent


def until(condition, what):
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{WORKER}: timed out waiting for {what}")
        time.sleep(0.05)


def slow(**filters):
    api = engine_api()
    try:  # this run's (its owner is the controller, our parent)
        mine = ["pytest-testserver.server=slow", f"pytest-testserver.pid={os.getppid()}"]
        return bool(api.containers(all=True, filters={"label": mine, **filters}))
    finally:
        api.close()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):  # before the plugin starts the marked servers
    if WORKER == "gw1":
        until(slow, "gw0 to win the start of slow")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):  # before the plugin's setup, which waits for the server
    if WORKER == "gw0":
        pytest.skip("gw0 only starts slow, then ends")
    (HERE / "gw1-waits").touch()


def pytest_sessionfinish(session):  # inside the plugin's wrapper: before its teardown
    if WORKER == "gw0":  # its start is in the readiness wait (post_startup), gw1 waits on it
        until(lambda: slow(status="running"), "slow's container to run")
        until((HERE / "gw1-waits").exists, "gw1 to wait on slow")
        (HERE / "gw0-ends").touch()
"""


def test_a_worker_that_ends_while_it_starts_a_shared_server_does_not_fail_it_for_the_others(
    pytester: pytest.Pytester, suite: Any
) -> None:
    """Every worker starts the marked session servers when collection ends. A worker that
    has won the start of ``slow`` and ends (its tests done) while another waits on that
    start removed the container under it: that must not be published as the server's failure
    (it was, and the one test needing it failed with "exited with code 137"). It once failed
    in about one run of three, when a quick worker happened to win: the conftest above makes
    that happen every time."""
    slow = HTTPD + '    post_startup: ["sleep", "3"]\n'
    suite(
        servers_yaml(slow=slow),
        """
        from urllib.request import urlopen
        import pytest

        @pytest.mark.testserver("slow")
        def test_slow(testserver):
            assert urlopen(testserver.url(8080)).read() == b"ok\\n"
        """,
    )
    pytester.makeconftest(FORCED_RACE)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "each", "-p", "no:randomly")
    result.assert_outcomes(passed=1, skipped=1)
    assert (pytester.path / "gw0-ends").exists()  # the race happened as forced


def test_bind_local_is_shared_by_workers(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    suite(
        servers_yaml(
            web=f"""
            from: busybox:stable
            run: ["mkdir -p /www && echo ok > /www/index.html"]
            command: ["httpd", "-f", "-p", "{port}", "-h", "/www"]
            ports: [{port}]
            """
        ),
        f"""
        import pytest

        @pytest.mark.parametrize("i", range(4))
        @pytest.mark.testserver("web")
        def test_same_port(testserver, i):
            assert testserver.port({port}) == {port}
        """,
    )
    monkeypatch.setenv("TESTSERVER_BIND_LOCAL", "1")
    pytester.runpytest("-n", "2", "--dist", "each").assert_outcomes(passed=8)


# -- killed runs: pytest in a subprocess ---------------------------------------------------------

HOLDING_TESTS = """
import os
import time
from pathlib import Path

def test_hold(testservers):
    web = testservers["client"]
    Path("started.tmp").write_text(testservers["web"].container_id)
    os.replace("started.tmp", "started.txt")  # whole or not at all
    time.sleep(120)
"""


def start_holding_run(pytester: pytest.Pytester, suite: Any, *args: str) -> subprocess.Popen[bytes]:
    suite(
        servers_yaml(
            web=HTTPD, client="image: busybox:stable\ncommand: [sleep, '600']\nlinks: [web]"
        ),
        HOLDING_TESTS,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    written(pytester.path / "started.txt", 60, "the server to start")
    return process


def run_of(api: Any, container: str) -> str:
    return str(api.inspect_container(container)["Config"]["Labels"]["pytest-testserver.run"])


def nothing_left(api: Any, run: str) -> Callable[[], bool]:
    label = {"label": f"pytest-testserver.run={run}"}
    return lambda: not api.containers(all=True, filters=label) and not api.networks(filters=label)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist-controller"])
def test_sigkill_of_pytest_is_cleaned_up_by_the_watchdog(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, xdist: list[str]
) -> None:
    process = start_holding_run(pytester, suite, *xdist)
    run = run_of(docker_api, (pytester.path / "started.txt").read_text())
    killed = time.monotonic()
    process.send_signal(signal.SIGKILL)
    wait_for(nothing_left(docker_api, run), REAP_WITHIN, "the watchdog to remove the run")
    print(f"cleanup after SIGKILL ({xdist or 'no xdist'}): {time.monotonic() - killed:.2f}s")
    process.communicate()


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist-controller"])
def test_sigterm_removes_everything_before_pytest_exits(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, xdist: list[str]
) -> None:
    process = start_holding_run(pytester, suite, *xdist)
    run = run_of(docker_api, (pytester.path / "started.txt").read_text())
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    removed = wait_for(nothing_left(docker_api, run), 60, "the run to remove its servers")
    output = process.communicate(timeout=60)[0].decode()
    print(f"SIGTERM ({xdist or 'no xdist'}): removed after {removed:.2f}s, ", end="")
    print(f"pytest exited after {time.monotonic() - started:.2f}s")
    assert process.returncode != 0
    assert nothing_left(docker_api, run)(), output
    assert "terminated by SIGTERM" in output


def test_leftovers_of_dead_runs_are_reaped_and_live_runs_are_not_touched(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_testserver.identity import Owner, process_start

    # A private folder of its own: no stamp of another run of the suite says dead runs were
    # swept a moment ago (reaper.sweep_is_due), so this short run's watchdog sweeps after it.
    state = pytester.path / "tmp"
    state.mkdir()
    monkeypatch.setenv("TMPDIR", str(state))
    monkeypatch.setattr(tempfile, "tempdir", str(state))

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    here = Owner.this_process()

    def leftover(pid: int, run: str) -> str:
        # Same host, PID namespace and boot as this process: its pid tells whether it lives.
        started = process_start(pid) or "1"  # the dead one's was something once
        owner = Owner(here.host, pid, here.pidns, here.boot, started)
        labels = {"pytest-testserver.run": run, **owner.labels()}
        return str(
            docker_api.create_container("busybox:stable", ["sleep", "60"], labels=labels)["Id"]
        )

    dead_one = leftover(dead.pid, "deadrun0001")
    live_one = leftover(1, "liverun0001")  # pid 1 is alive for as long as this machine is
    try:
        suite(servers_yaml(web=HTTPD), "def test_it(testservers):\n    testservers['web']\n")
        pytester.runpytest().assert_outcomes(passed=1)
        assert list(state.glob("pytest-testserver-*/dead-runs-swept")), "no sweep was asked"
        wait_for(  # by the run's watchdog, once the run is over
            lambda: not docker_api.containers(all=True, filters={"id": dead_one}), 30, "reaping"
        )
        assert docker_api.containers(all=True, filters={"id": live_one})
    finally:
        docker_api.remove_container(live_one, force=True)
        if docker_api.containers(all=True, filters={"id": dead_one}):
            docker_api.remove_container(dead_one, force=True)


def test_two_concurrent_runs_in_one_project_do_not_disturb_each_other(
    pytester: pytest.Pytester, suite: Any
) -> None:
    """The second run starts, runs and ends (teardown, sweep) while the first holds its server;
    the first's server still answers after. Ordered by files, not by sleeps."""
    suite(
        servers_yaml(web=HTTPD),
        """
        import os, time
        from pathlib import Path
        from urllib.request import urlopen

        def test_long(testservers):
            web = testservers["web"]
            Path(f"run-{os.getpid()}.txt").write_text(web.container_id)
            if os.environ.get("ROLE") == "first":  # until the second run has ended
                deadline = time.monotonic() + 120
                while not Path("second-ended").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert Path("second-ended").exists()
            assert urlopen(web.url(8080)).read() == b"ok\\n"
        """,
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]

    def run(role: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "ROLE": role}
        return subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE, env=env)

    first = run("first")
    try:
        wait_for(lambda: any(pytester.path.glob("run-*.txt")), 60, "the first run's server")
        second = run("second")
        second_out = second.communicate(timeout=120)[0].decode()
    finally:
        (pytester.path / "second-ended").touch()
    first_out = first.communicate(timeout=120)[0].decode()
    assert [first.returncode, second.returncode] == [0, 0], [first_out, second_out]
    ids = {p.read_text() for p in Path(pytester.path).glob("run-*.txt")}
    assert len(ids) == 2


@pytest.mark.parametrize(
    "said", [b"done\n", b"", b"done sweep\n"], ids=["done", "owner-died", "done-sweep"]
)
def test_the_watchdog_starts_without_site_packages_until_it_must_sweep(said: bytes) -> None:
    # It starts beside the run's first container: a full interpreter start there costs ~90 ms CPU.
    from pytest_testserver.reaper import watchdog_command

    command = [
        sys.executable,
        "-X",
        "importtime",
        *watchdog_command(),
        f"no-such-run-{uuid.uuid4()}",
    ]
    result = subprocess.run(command, input=said, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    imported = {line.split("|")[-1].strip() for line in result.stderr.decode().splitlines()}
    if said == b"done\n":
        assert not {"site", "pytest_testserver"} & imported
    else:  # a sweep needs the SDK and this package, from site-packages or the checkout
        assert {"site", "docker", "pytest_testserver.reaper"} <= imported
