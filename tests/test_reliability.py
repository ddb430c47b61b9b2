"""Real CI conditions (real engine): -n 4 with links, skips, kept runs, signals, budgets, stalls,
killed jobs, other PID namespaces and planted folders. Each test reproduces one reported failure.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    HTTPD,
    everything_of,
    remove_run,
    require_command,
    require_root,
    servers_yaml,
    wait_for,
    written,
)
from tests.events import Events, container_creations, server_of
from tests.stallproxy import StallProxy

pytestmark = pytest.mark.usefixtures("engine")

SLEEPER = "image: busybox:stable\ncommand: [sleep, '600']\nwait: false"
USE_WEB = """
import pytest

@pytest.mark.testserver("web")
def test_it(testserver):
    pass
"""


def labelled(api: Any, label: str) -> list[dict[str, Any]]:
    return list(api.containers(all=True, filters={"label": label}))


def pytest_process(
    path: Path, *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def write(pytester: pytest.Pytester, yaml: str, tests: str) -> None:
    (pytester.path / "testservers.yaml").write_text(yaml)
    pytester.makepyfile(test_suite=textwrap.dedent(tests))


# 1. -n 4 with linked servers: one run network, found by id
LINKED_PAIRS = "\n".join(
    f"  web{i}:\n    from: busybox:stable\n"
    '    run: ["mkdir -p /www && echo ok > /www/index.html"]\n'
    "    command: [httpd, -f, -p, '8080', -h, /www]\n    ports: [8080]\n"
    f"  client{i}:\n    image: busybox:stable\n    command: [sleep, '600']\n"
    f"    links: [web{i}]\n    wait: false\n"
    for i in range(4)
)

LINKED_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_pair(testservers, i):
    client = testservers[f"client{i}"]
    code, out = client.exec(["wget", "-q", "-O", "-", f"http://web{i}:8080/"])
    assert (code, out) == (0, "ok\\n")
"""


# Each worker writes down the networks labelled with its run while its test runs.
NETWORKS_SEEN = """
from pathlib import Path
import pytest
from pytest_testserver.engine import Engine  # (tests/ is not importable from this folder)

@pytest.fixture(autouse=True)
def run_networks(request, testservers):
    yield
    client = testservers[f"client{request.node.callspec.params['i']}"]
    api = Engine.connect().api
    try:
        labels = api.inspect_container(client.container_id)["Config"]["Labels"]
        run = labels["pytest-testserver.run"]
        nets = api.networks(filters={"label": f"pytest-testserver.run={run}"})
    finally:
        api.close()
    with open(Path(__file__).parent / "networks.txt", "a") as f:
        f.write(f"{run} {','.join(sorted(n['Id'] for n in nets))}\\n")
"""


def test_linked_servers_at_n4_share_one_run_network(pytester: pytest.Pytester) -> None:
    write(pytester, f"servers:\n{LINKED_PAIRS}", LINKED_TESTS)
    pytester.makeconftest(NETWORKS_SEEN)
    seen = pytester.path / "networks.txt"
    for _ in range(3):
        seen.unlink(missing_ok=True)
        result = pytester.runpytest_subprocess("-n", "4", "-p", "no:randomly")
        result.assert_outcomes(passed=4)
        lines = [line.split() for line in seen.read_text().splitlines()]
        assert len(lines) == 4, lines  # one per test, each on its worker
        assert len({run for run, _ in lines}) == 1, lines  # one run
        # exactly one network labelled with the run, the same for every worker
        assert len({nets for _, nets in lines}) == 1, lines
        assert all(len(nets.split(",")) == 1 for _, nets in lines), lines


def test_a_server_called_network_does_not_lock_out_the_run_network(
    pytester: pytest.Pytester,
) -> None:
    # Its claim lock and the run network's lock live in the same folder: names must not meet.
    write(
        pytester,
        servers_yaml(network=HTTPD, client=f"{SLEEPER}\nlinks: [network]"),
        """
        def test_client(testservers):
            code, out = testservers["client"].exec(["wget", "-q", "-O", "-", "http://network:8080/"])
            assert (code, out) == (0, "ok\\n")
        """,
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=1)


# 2. skipped tests never start their servers
def test_a_test_pytest_will_not_run_never_starts_its_server(
    pytester: pytest.Pytester, docker_api: Any
) -> None:
    # "broken" cannot be pulled: a start would say so at setup. "box" would start quietly in
    # the background (a failed background start prints nothing): its creations are counted, by
    # the same reader that sees "ran" start for the test that does run.
    write(
        pytester,
        servers_yaml(
            broken="image: pytest-testserver-test/no-such-image:never",
            box=SLEEPER,
            ran=SLEEPER,
        ),
        """
        import pytest

        @pytest.mark.skip(reason="not today")
        @pytest.mark.testserver("broken", "box")
        def test_skipped(testserver):
            pass

        @pytest.mark.skipif(True, reason="not here")
        @pytest.mark.testserver("broken", "box")
        def test_skipif(testserver):
            pass

        @pytest.mark.xfail(run=False, reason="known")
        @pytest.mark.testserver("broken", "box")
        def test_xfail_not_run(testserver):
            pass

        @pytest.mark.testserver("ran")
        def test_runs(testserver):
            pass
        """,
    )
    created = container_creations(docker_api)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert "cannot be pulled" not in result.stdout.str()
    assert sorted(server_of(event) for event in created.stop()) == ["ran"]


# 3. --testserver-keep survives later runs' sweeps
def test_kept_containers_survive_the_next_runs_sweep(
    pytester: pytest.Pytester, docker_api: Any
) -> None:
    write(pytester, servers_yaml(web=HTTPD), USE_WEB)
    kept = pytest_process(pytester.path, "--testserver-keep")
    output = kept.communicate(timeout=120)[0].decode()
    assert kept.returncode == 0, output
    run = output.split("kept 1 container(s) of run ")[1].split()[0]
    try:
        assert everything_of(docker_api, run)
        # The next run sweeps dead runs from its lease thread at every lease period (1 s with
        # this time-to-live); it lasts three: the kept run's pid is gone, its objects must stay.
        sweeper = pytester.path / "sweeper"
        sweeper.mkdir()
        (sweeper / "testservers.yaml").write_text(servers_yaml(other=HTTPD))
        (sweeper / "test_sweeps.py").write_text(
            "import time\n\n"
            "def test_sweeps(testservers):\n    testservers['other']\n    time.sleep(3)\n"
        )
        second = pytest_process(sweeper, env={"TESTSERVER_LEASE_TTL": "4"})
        output = second.communicate(timeout=120)[0].decode()
        assert second.returncode == 0, output
        assert len(labelled(docker_api, f"pytest-testserver.run={run}")) == 1
    finally:
        remove_run(docker_api, run)


def watchdog_of(pid: int) -> int:
    """The watchdog process the pytest ``pid`` spawned (its child running watchdog.py)."""
    found: list[int] = []

    def spawned() -> bool:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid and b"watchdog" in argv:
                found.append(int(entry.name))
                return True
        return False

    wait_for(spawned, 30, "the run's watchdog")
    return found[0]


# A run that writes its server's container id to started.txt, then holds it for two minutes.
HOLDS_ITS_SERVER = """
import os, time
from pathlib import Path

def test_hold(testservers):
    Path("started.tmp").write_text(testservers["web"].container_id)
    os.replace("started.tmp", "started.txt")  # whole or not at all
    time.sleep(120)
"""


# 3b. a run shorter than a lease period leaves the sweep of dead runs to its watchdog
def test_a_short_run_has_its_watchdog_sweep_dead_runs_after_it(
    pytester: pytest.Pytester, docker_api: Any
) -> None:
    write(pytester, servers_yaml(web=HTTPD), HOLDS_ITS_SERVER)
    victim = pytest_process(pytester.path)
    container = written(pytester.path / "started.txt", 60, "the victim's server")
    run = docker_api.inspect_container(container)["Config"]["Labels"]["pytest-testserver.run"]
    # pytest and its watchdog die together: the run is dead (its pid is gone), and nobody
    # of its own is left to remove what it made
    os.kill(watchdog_of(victim.pid), signal.SIGKILL)
    victim.kill()
    victim.communicate()
    short = pytester.path / "short"
    short.mkdir()
    (short / "testservers.yaml").write_text(servers_yaml(other=HTTPD))
    (short / "test_short.py").write_text("def test_short(testservers):\n    testservers['other']\n")
    # a private folder of its own: no stamp of another run says a sweep was just made
    state = pytester.path / "tmp"
    state.mkdir()
    try:
        assert everything_of(docker_api, run), "the victim's objects should be left at first"
        second = pytest_process(short, env={"TMPDIR": str(state)})
        output = second.communicate(timeout=120)[0].decode()
        assert second.returncode == 0, output
        # the short run made no lease (so never swept in its own process) and asked its
        # watchdog to sweep once it was over: the stamp says it asked
        stamps = list(state.glob("pytest-testserver-*/dead-runs-swept"))
        assert stamps, sorted(p.name for p in state.iterdir())
        wait_for(lambda: not everything_of(docker_api, run), 30, "the short run's watchdog")
    finally:
        remove_run(docker_api, run)


def start_never_ready(
    pytester: pytest.Pytester, docker_api: Any, *, interval: float, timeout: float
) -> tuple[subprocess.Popen[bytes], str]:
    """A pytest whose server never gets ready, once its container exists; and its pid label."""
    write(
        pytester,
        servers_yaml(
            slow="image: busybox:stable\ncommand: [sleep, '600']\n"
            f"post_startup: {{command: ['false'], interval: {interval}}}\ntimeout: {timeout}"
        ),
        "import pytest\n\n@pytest.mark.testserver('slow')\ndef test_it(testserver):\n    pass\n",
    )
    process = pytest_process(pytester.path)
    mine = f"pytest-testserver.pid={process.pid}"
    wait_for(lambda: bool(labelled(docker_api, mine)), 60, "the server's container")
    return process, mine


# 4. SIGTERM during a server start: 143 and full teardown, wherever it lands
def test_sigterm_while_a_server_gets_ready_ends_the_run_with_143(
    pytester: pytest.Pytester, docker_api: Any
) -> None:
    process, mine = start_never_ready(pytester, docker_api, interval=0.2, timeout=120)
    runs = {c["Labels"]["pytest-testserver.run"] for c in labelled(docker_api, mine)}
    time.sleep(0.5)  # inside the readiness wait now
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    print(f"SIGTERM during readiness: pytest exited after {time.monotonic() - signalled:.2f}s")
    assert process.returncode == 143, output
    assert "terminated by SIGTERM" in output
    for run in runs:
        assert not everything_of(docker_api, run), output


def test_sigterm_while_waiting_for_a_build_lock_ends_the_run_with_143(
    pytester: pytest.Pytester,
) -> None:
    from pytest_testserver.config import parse_config
    from pytest_testserver.folders import file_name, user_state_dir
    from pytest_testserver.identity import new_run_id
    from pytest_testserver.image import resolve
    from pytest_testserver.locks import LOCKS, build_lock

    yaml = servers_yaml(web=HTTPD.replace("echo ok", f"echo {new_run_id()}"))
    write(pytester, yaml, USE_WEB)
    import yaml as pyyaml

    spec = parse_config(pyyaml.safe_load(yaml), base=pytester.path, source="t").servers["web"]
    state, _ = user_state_dir()
    tag = resolve(spec).ref
    with build_lock(state, tag, "holder-test", timeout=5):
        lock = state.path / LOCKS / f"build-{file_name(tag)}.lock"
        with OpenWatch(lock.parent) as opened:
            process = pytest_process(pytester.path, "-s")
            # collection, engine contact, the create that finds no image: then the lock, which
            # the run tries again and again (each try opens its file)
            wait_for(lambda: opened(lock.name) >= 2, 60, "the run to wait on the build lock")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    state.close()
    print(f"SIGTERM in a lock wait: pytest exited after {time.monotonic() - signalled:.2f}s")
    assert process.returncode == 143, output


class OpenWatch:
    """Counts the opens of files in a folder, by name, as they happen (Linux inotify)."""

    IN_OPEN = 0x20

    def __init__(self, folder: Path) -> None:
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self._libc.inotify_add_watch(self._fd, str(folder).encode(), self.IN_OPEN) < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
        self._counts: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        import struct

        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return self._counts.get(name, 0)
            at = 0
            while at < len(data):  # struct inotify_event: wd, mask, cookie, len, name[len]
                _, mask, _, length = struct.unpack_from("iIII", data, at)
                found = data[at + 16 : at + 16 + length].rstrip(b"\0").decode()
                if mask & self.IN_OPEN:
                    self._counts[found] = self._counts.get(found, 0) + 1
                at += 16 + length

    def __enter__(self) -> OpenWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


# 5. the image has its own budget, and not-ready messages say what it took
def test_a_slow_build_does_not_eat_the_readiness_budget(pytester: pytest.Pytester) -> None:
    marker = os.urandom(6).hex()
    write(
        pytester,
        servers_yaml(
            web=f"""
            from: busybox:stable
            run: ["sleep 3 && mkdir -p /www && echo {marker} > /www/index.html"]
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            ports: [8080]
            timeout: 2
            """,
            never=f"""
            from: busybox:stable
            run: ["echo {marker}"]
            command: [sleep, '600']
            post_startup: {{command: ['false']}}
            timeout: 1
            """,
        ),
        """
        import pytest

        @pytest.mark.testserver("web")
        def test_web(testserver):
            pass

        @pytest.mark.testserver("never")
        def test_never(testserver):
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*testserver: server 'never': post_startup * did not succeed within 1s "
            "(after *s for the image, which has its own image_timeout of 900s)*"
        ]
    )


# 6. a container that vanishes during readiness is reported as such, with the server's name
def test_a_container_removed_while_getting_ready_reads_as_removed(
    pytester: pytest.Pytester, docker_api: Any
) -> None:
    process, mine = start_never_ready(pytester, docker_api, interval=0.05, timeout=60)
    time.sleep(0.3)
    for c in labelled(docker_api, mine):
        docker_api.remove_container(c["Id"], force=True)
    output = process.communicate(timeout=60)[0].decode()
    # Removal kills first: depending on when the checks look, it exited (137) or is gone.
    assert re.search(
        r"testserver: server 'slow': the container (was removed|exited with code 137 \(killed "
        r"by SIGKILL\)) before it was ready",
        output,
    ), output
    assert "No such exec instance" not in output
    assert "Removal In Progress" not in output


# 7. the build lock wait is bounded and names its holder
def test_a_held_build_lock_is_waited_for_only_within_the_image_budget(
    pytester: pytest.Pytester,
) -> None:
    import yaml as pyyaml

    from pytest_testserver.config import parse_config
    from pytest_testserver.folders import user_state_dir
    from pytest_testserver.identity import new_run_id
    from pytest_testserver.image import resolve
    from pytest_testserver.locks import build_lock

    yaml = servers_yaml(
        web=HTTPD.replace("echo ok", f"echo {new_run_id()}") + "    image_timeout: 2\n"
    )
    write(pytester, yaml, USE_WEB)
    spec = parse_config(pyyaml.safe_load(yaml), base=pytester.path, source="t").servers["web"]
    state, _ = user_state_dir()
    try:
        with build_lock(state, resolve(spec).ref, "holder-test", timeout=5):
            result = pytester.runpytest_subprocess()
    finally:
        state.close()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*testserver: server 'web': waited *s for the build (pytest-testserver/web:*) lock "
            f"*build-pytest-testserver_web_*.lock, held by pid {os.getpid()} on * "
            "(run holder-test, for *s)*"
        ]
    )


# 8 and 9. a stalled engine: the run ends in bounded time, and says what it left
@pytest.fixture
def proxy() -> Iterator[StallProxy]:
    with StallProxy() as p:
        yield p


def test_a_stalled_engine_ends_the_run_in_bounded_time(
    pytester: pytest.Pytester, docker_api: Any, proxy: StallProxy
) -> None:
    write(pytester, servers_yaml(web=HTTPD + "    timeout: 5\n"), USE_WEB)
    proxy.stall(r"^GET /v[\d.]+/containers/[0-9a-f]+/json")
    started = time.monotonic()
    process = pytest_process(pytester.path, env={"DOCKER_HOST": proxy.docker_host})
    output = process.communicate(timeout=120)[0].decode()
    took = time.monotonic() - started
    print(f"stalled engine (inspect): the run ended after {took:.1f}s")
    assert process.returncode == 1, output
    assert "testserver: server 'web': the Docker engine at" in output
    assert "stopped answering" in output
    assert took < 60


def test_a_stalled_removal_is_reported_with_the_command_to_remove_it(
    pytester: pytest.Pytester, docker_api: Any, proxy: StallProxy
) -> None:
    write(pytester, servers_yaml(web=HTTPD), USE_WEB)
    proxy.stall(r"^DELETE /v[\d.]+/containers/")
    process = pytest_process(pytester.path, env={"DOCKER_HOST": proxy.docker_host})
    output = process.communicate(timeout=180)[0].decode()
    run = output.split("pytest-testserver.run=")[1].split(")")[0] if "run=" in output else ""
    try:
        assert "testserver: warning: teardown: could not remove the container of 'web'" in output
        assert "stopped answering" in output
        assert f"docker rm -f $(docker ps -aq --filter label=pytest-testserver.run={run})" in output
    finally:
        proxy.release()
        if run:
            remove_run(docker_api, run)


# 10. a forked child holding the watchdog's pipe does not blind it
def test_sigkill_with_a_forked_child_alive_is_still_reaped(
    pytester: pytest.Pytester, docker_api: Any
) -> None:
    write(
        pytester,
        servers_yaml(web=HTTPD),
        """
        import os, time
        from pathlib import Path

        def test_fork_then_hang(testservers):
            web = testservers["web"]
            child = os.fork()
            if child == 0:  # inherits every descriptor, the watchdog's pipe included
                time.sleep(60)
                os._exit(0)
            Path("child.txt").write_text(str(child))  # before started.txt appears
            Path("started.tmp").write_text(web.container_id)
            os.replace("started.tmp", "started.txt")  # whole or not at all
            time.sleep(120)
        """,
    )
    process = pytest_process(pytester.path)
    container = written(pytester.path / "started.txt", 60, "the server")
    run = docker_api.inspect_container(container)["Config"]["Labels"]["pytest-testserver.run"]
    child = int((pytester.path / "child.txt").read_text())
    try:
        process.send_signal(signal.SIGKILL)
        took = wait_for(lambda: not everything_of(docker_api, run), 10, "the watchdog")
        print(f"SIGKILL with a forked child alive: reaped after {took:.2f}s")
    finally:
        os.kill(child, signal.SIGKILL)
        process.communicate()


# 11. controller and workers use one folder, the controller's
def test_workers_use_the_controllers_folder_whatever_their_tmpdir(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    other = tmp_path / "workers-tmp"
    other.mkdir()
    write(pytester, servers_yaml(web=HTTPD), USE_WEB)
    (pytester.path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import os, tempfile

            def pytest_configure(config):
                if hasattr(config, "workerinput"):  # a worker sees another temp dir
                    os.environ["TMPDIR"] = {str(other)!r}
                    tempfile.tempdir = None
            """
        )
    )
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    assert not list(other.iterdir())  # nothing went to the workers' own temp dir


# 12 and 14. a job container killed with its watchdog: reaped by the lease, from anywhere
def in_own_pid_namespace() -> list[str]:
    """Run the command as a child of a fresh PID namespace's init, at a pid near 1500.

    A job container's pytest has pids of its own namespace; near 1500, none of this machine's
    long-lived processes has it, so a sweep that wrongly asked ``kill(pid, 0)`` here would call
    the run dead (and remove it) at once, instead of waiting for its lease to run out.
    """
    require_command("unshare", "util-linux's unshare runs pytest in its own PID namespace")
    burn = 'i=0; while [ $i -lt 1500 ]; do /bin/true; i=$((i+1)); done; "$@"'
    return ["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "sh", "-c", burn, "sh"]


def lease_expiry(api: Any, run: str) -> float:
    """When every object of ``run`` is older than its time-to-live (the engine's clock)."""
    from pytest_testserver.engine import engine_time

    label = {"label": f"pytest-testserver.run={run}"}
    created = [
        *((float(c["Created"]), c["Labels"]) for c in api.containers(all=True, filters=label)),
        *((engine_time(n["Created"]), n["Labels"]) for n in api.networks(filters=label)),
        *(
            (engine_time(v["CreatedAt"]), v["Labels"])
            for v in api.volumes(filters=label).get("Volumes") or []
        ),
    ]
    return max(at + int(labels["pytest-testserver.lease-ttl"]) for at, labels in created)


def test_a_run_killed_in_another_pid_namespace_is_reaped_by_its_lease(
    pytester: pytest.Pytester, docker_api: Any
) -> None:
    write(pytester, servers_yaml(web=HTTPD), HOLDS_ITS_SERVER)
    ttl = {"TESTSERVER_LEASE_TTL": "6"}
    victim = pytest_process(pytester.path, env=ttl, prefix=in_own_pid_namespace())
    container = written(pytester.path / "started.txt", 60, "the victim's server")
    run = docker_api.inspect_container(container)["Config"]["Labels"]["pytest-testserver.run"]
    removals = Events(
        docker_api,
        {
            "type": "container",
            "event": "destroy",
            "label": [f"pytest-testserver.run={run}"],
        },
    )
    # unshare is the namespace's init: killing it kills pytest and its watchdog together.
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    reaper_dir = pytester.path / "reaper"
    reaper_dir.mkdir()
    (reaper_dir / "testservers.yaml").write_text(servers_yaml(other=HTTPD))
    (reaper_dir / "test_wait.py").write_text(
        textwrap.dedent(
            f"""
            import time, docker

            def test_waits_for_the_reaping(testservers):
                testservers["other"]
                api = docker.APIClient()
                label = {{"label": "pytest-testserver.run={run}"}}
                deadline = time.monotonic() + 30
                while api.containers(all=True, filters=label) and time.monotonic() < deadline:
                    time.sleep(0.1)
                open("reaped.txt", "w").write(str(time.time()))
                api.close()
            """
        )
    )
    try:
        assert everything_of(docker_api, run), "the victim's objects should be left at first"
        expiry = lease_expiry(docker_api, run)  # what it left does not change any more
        reaper = pytest_process(reaper_dir, env=ttl)
        output = reaper.communicate(timeout=120)[0].decode()
        assert reaper.returncode == 0, output
        wait_for(lambda: not everything_of(docker_api, run), 30, "the lease to run out")
        removed = min(event["timeNano"] for event in removals.stop()) / 1e9
        # Not at once (its pid says nothing here): only once its newest lease ran out. Both
        # times by the engine's clock: an order, not a duration.
        print(f"killed in another PID namespace: reaped {removed - expiry:.1f}s after its lease")
        assert removed >= expiry, (removed, expiry)
    finally:
        remove_run(docker_api, run)


def test_a_live_run_in_another_pid_namespace_is_never_reaped(
    pytester: pytest.Pytester, docker_api: Any
) -> None:
    write(
        pytester,
        servers_yaml(web=HTTPD),
        """
        import os, time
        from pathlib import Path
        from urllib.request import urlopen

        def test_hold(testservers):
            web = testservers["web"]
            Path("started.tmp").write_text(web.container_id)
            os.replace("started.tmp", "started.txt")  # whole or not at all
            # alive until another run has swept for two lease periods and more, and ended
            deadline = time.monotonic() + 120
            while not Path("other-done").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert Path("other-done").exists()
            assert urlopen(web.url(8080)).read() == b"ok\\n"
        """,
    )
    ttl = {"TESTSERVER_LEASE_TTL": "4"}
    live = pytest_process(pytester.path, env=ttl, prefix=in_own_pid_namespace())
    container = written(pytester.path / "started.txt", 60, "the live run's server")
    other_dir = pytester.path / "other"
    other_dir.mkdir()
    (other_dir / "testservers.yaml").write_text(servers_yaml(other=HTTPD))
    (other_dir / "test_other.py").write_text(
        "import time\n\n"
        "def test_sweeps(testservers):\n    testservers['other']\n    time.sleep(6)\n"
    )
    other = pytest_process(other_dir, env=ttl)
    try:
        swept = other.communicate(timeout=120)[0].decode()
        assert other.returncode == 0, swept
        # the other run swept for 6 s (two lease periods and more): the live run's server stayed
        assert docker_api.inspect_container(container)["State"]["Running"], swept
    finally:
        (pytester.path / "other-done").touch()
    output = live.communicate(timeout=120)[0].decode()
    assert live.returncode == 0, output


# 13. a planted per-user folder: another local user's symlinks are never followed
@pytest.fixture
def other_user() -> Iterator[str]:
    """A second local user, made for this test (and removed after it) when it did not exist."""
    require_root("it creates a second local user")
    name = "tsother"
    try:
        pwd.getpwnam(name)
        made = False
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", name], check=True, capture_output=True)
        made = True
    yield name
    if made:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def test_a_planted_user_folder_is_not_trusted(
    pytester: pytest.Pytester, tmp_path: Path, other_user: str
) -> None:
    shared_tmp = tmp_path / "sharedtmp"
    shared_tmp.mkdir()
    shared_tmp.chmod(0o1777)
    victim_home = tmp_path / "victim-home"
    victim_home.mkdir()
    (victim_home / "precious.txt").write_text("keep me")
    planted = shared_tmp / f"pytest-testserver-{os.getuid()}"
    # What the other user made: their folder, world-writable, with links into the victim's home.
    other = pwd.getpwnam(other_user)
    planted.mkdir()
    planted.chmod(0o777)
    for name in ("runs", "locks", "yaml-cache"):
        (planted / name).symlink_to(victim_home)
        os.lchown(planted / name, other.pw_uid, other.pw_gid)
    os.chown(planted, other.pw_uid, other.pw_gid)
    write(pytester, servers_yaml(web=HTTPD), USE_WEB)
    process = pytest_process(pytester.path, "-n", "2", env={"TMPDIR": str(shared_tmp)})
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 0, output
    assert (
        f"belongs to uid {other.pw_uid}, not to this user; using a fresh private folder" in output
    )
    assert sorted(p.name for p in victim_home.iterdir()) == ["precious.txt"]
    assert (victim_home / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in planted.iterdir()) == ["locks", "runs", "yaml-cache"]
    # the fresh folder was this run's alone, and is gone with it
    assert [p.name for p in shared_tmp.iterdir()] == [planted.name]
