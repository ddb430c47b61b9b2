"""xdist sharing, build-once, and cleanup after crashes, kills and concurrent runs (real engine)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HTTPD, servers_yaml, wait_for, written

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


class Events:
    """The engine's events for this test's own runs, received live while the run happens.

    Live, not replayed from the engine's history afterwards: on a shared engine that history is
    a short buffer other runs overrun. Filtered to what carries this process's pid (the owner of
    its in-process pytester runs) or names an exact tag: other runs' events are not counted.
    """

    def __init__(self, api: Any, filters: dict[str, Any]) -> None:
        import threading

        self.seen: list[dict[str, Any]] = []
        self._stream = api.events(decode=True, filters=filters)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            # Podman 4 tails its events file and rotates it at 1 MB: after a rotation, events
            # already sent can come again. One event is one moment of one object's action.
            # (Two real events differ at least in their timeNano.)
            sent: set[str] = set()
            for event in self._stream:
                key = json.dumps(event, sort_keys=True)
                if key not in sent:
                    sent.add(key)
                    self.seen.append(event)
        except Exception:
            pass

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.5)  # events of the run's last moments are still on their way
        with contextlib.suppress(Exception):  # docker-py cannot cancel a stream over ssh://
            self._stream.close()
        # and the response: its file object would keep the socket open until collected
        self._stream._response.close()
        self._thread.join(5)
        return self.seen


def container_creations(api: Any, server: str) -> Events:
    return Events(
        api,
        {
            "type": "container",
            "event": "create",
            "label": [f"pytest-testserver.server={server}", f"pytest-testserver.pid={os.getpid()}"],
        },
    )


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

    def tags_made(*args: str) -> int:
        if not podman:
            made = Events(docker_api, {"type": "image", "event": "tag", "image": tag})
            pytester.runpytest(*args).assert_outcomes(passed=int(args[1]) if args else 1)
            return len(made.stop())
        # Podman reports a build, not a tag, naming the image it made by id only
        built = Events(docker_api, {"type": "image", "event": "build"})
        pytester.runpytest(*args).assert_outcomes(passed=int(args[1]) if args else 1)
        image = str(docker_api.inspect_image(tag)["Id"]).removeprefix("sha256:")
        names = [e.get("Actor", {}).get("Attributes", {}).get("name", "") for e in built.stop()]
        return sum(1 for name in names if name.removeprefix("sha256:") == image)

    assert tags_made("-n", "4", "--dist", "each") == 1
    assert tags_made("-n", "4", "--dist", "each") == 0


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


def test_a_worker_that_ends_while_it_starts_a_shared_server_does_not_fail_it_for_the_others(
    pytester: pytest.Pytester, suite: Any
) -> None:
    """Every worker starts the marked session servers when collection ends; three of four have
    only a quick test and end at once. One of them usually wins the start of ``slow`` and its
    end removes the container under it: that must not be published as the server's failure
    (it was, and the one test needing it failed with "exited with code 137"). Before the fix
    this failed in about one run of three: only when a quick worker won the start."""
    slow = HTTPD + '    post_startup: ["sleep", "2"]\n'
    suite(
        servers_yaml(slow=slow),
        """
        from urllib.request import urlopen
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_quick(i):
            pass

        @pytest.mark.testserver("slow")
        def test_slow(testserver):
            assert urlopen(testserver.url(8080)).read() == b"ok\\n"
        """,
    )
    pytester.runpytest("-n", "4").assert_outcomes(passed=4)


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
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    from pytest_testserver.run import Owner, process_start

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
        wait_for(
            lambda: not docker_api.containers(all=True, filters={"id": dead_one}), 10, "reaping"
        )
        assert docker_api.containers(all=True, filters={"id": live_one})
    finally:
        docker_api.remove_container(live_one, force=True)
        if docker_api.containers(all=True, filters={"id": dead_one}):
            docker_api.remove_container(dead_one, force=True)


def test_two_concurrent_runs_in_one_project_do_not_disturb_each_other(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(web=HTTPD),
        """
        import os, time
        from pathlib import Path
        from urllib.request import urlopen

        def test_long(testservers):
            web = testservers["web"]
            Path(f"run-{os.getpid()}.txt").write_text(web.container_id)
            time.sleep(3)  # the other run starts and ends meanwhile
            assert urlopen(web.url(8080)).read() == b"ok\\n"
        """,
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    first = subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE)
    time.sleep(1)
    second = subprocess.Popen(command, cwd=pytester.path, stdout=subprocess.PIPE)
    outputs = [p.communicate(timeout=120)[0].decode() for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    ids = {p.read_text() for p in Path(pytester.path).glob("run-*.txt")}
    assert len(ids) == 2


@pytest.mark.parametrize("said", [b"done\n", b""], ids=["done", "owner-died"])
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
    if said:
        assert not {"site", "pytest_testserver"} & imported
    else:  # the sweep needs the SDK and this package, from site-packages or the checkout
        assert {"site", "docker", "pytest_testserver.reaper"} <= imported
