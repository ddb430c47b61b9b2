"""Lifetimes: ``reset:`` between the tests that share a server, on the real engine through
pytester (its parsing is in test_config.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_testserver.errors import StartError
from pytest_testserver.lifetimes import LOOKAHEAD, Instances, Plan, PlannedTest
from tests.conftest import servers_yaml, wait_for, written
from tests.events import container_creations, server_of
from tests.test_xdist_and_crashes import REAP_WITHIN, nothing_left, run_of

RESETTABLE = """
    image: busybox:stable
    command: ["sleep", "600"]
    reset: ["sh", "-c", "rm -f /dirty; echo reset >> /resets"]
    post_startup: ["true"]
    """


@pytest.mark.usefixtures("engine")
def test_reset_runs_before_each_test_that_uses_the_server_except_the_first(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(box=RESETTABLE),
        """
        import pytest

        def resets(server):
            code, out = server.exec(["cat", "/resets"])
            return out.count("reset") if code == 0 else 0

        @pytest.mark.testserver("box")
        def test_first(testserver):
            assert resets(testserver) == 0
            testserver.exec(["touch", "/dirty"])

        @pytest.mark.testserver("box")
        def test_second(testserver):
            assert testserver.exec(["test", "-e", "/dirty"])[0] != 0
            assert resets(testserver) == 1
            testserver.exec(["touch", "/dirty"])

        def test_asks_twice(testservers):
            assert resets(testservers["box"]) == 2
            assert resets(testservers["box"]) == 2  # once per test, however often it asks

        def test_without_it():
            pass

        @pytest.mark.testserver("box")
        def test_last(testserver):
            assert resets(testserver) == 3
        """,
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=5)


@pytest.mark.usefixtures("engine")
def test_reset_under_xdist_runs_before_every_test_but_the_first_of_the_run(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(box=RESETTABLE),
        """
        import os
        import pytest

        @pytest.mark.parametrize("i", range(12))
        @pytest.mark.testserver("box")
        def test_it(testserver, i):
            code, out = testserver.exec(["cat", "/resets"])
            with open(f"seen-{os.environ['PYTEST_XDIST_WORKER']}.txt", "a") as seen:
                seen.write(f"{out.count('reset') if code == 0 else 0}\\n")
        """,
    )
    pytester.runpytest("-n", "4").assert_outcomes(passed=12)
    counts = {
        path.name: [int(n) for n in path.read_text().split()]
        for path in pytester.path.glob("seen-*.txt")
    }
    assert len(counts) > 1, counts  # the server was shared by workers
    seen = [n for values in counts.values() for n in values]
    assert seen.count(0) <= 1, counts  # only the run's first test finds it unreset
    for values in counts.values():  # each test of a worker resets: a worker sees more each time
        assert values == sorted(set(values)), counts
    assert max(seen) >= 11 - len(counts), counts


@pytest.mark.usefixtures("engine")
def test_a_failing_reset_fails_that_test_in_setup_with_its_output_masked(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(
            box="""
            image: busybox:stable
            command: ["sleep", "600"]
            env: {DB_PASSWORD: hunter2-pw}
            reset: ["sh", "-c", "echo pw=$DB_PASSWORD; exit 3"]
            post_startup: ["true"]
            """
        ),
        """
        import pytest

        @pytest.mark.testserver("box")
        def test_first(testserver):
            pass

        @pytest.mark.testserver("box")
        def test_second(testserver):
            pass
        """,
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    output = result.stdout.str()
    assert (
        "testserver: server 'box': reset ['sh', '-c', 'echo pw=$DB_PASSWORD; exit 3'] "
        "exited with code 3\n--- its last output ---\npw=***\n"
    ) in output
    assert "hunter2-pw" not in output
    result.stdout.fnmatch_lines(["ERROR *test_second*"])


# -- scope: a fresh container per module, class or test -------------------------------------------

SLEEPER = """
    image: busybox:stable
    command: ["sleep", "600"]
    post_startup: ["true"]
    scope: {scope}
    """

RECORD = """
import json, time
from pathlib import Path

def record(request, *handles):
    with Path("seen.jsonl").open("a") as out:
        for handle in handles:
            line = {"test": request.node.nodeid, "server": handle.name,
                    "id": handle.container_id, "began": time.time()}
            out.write(json.dumps(line) + "\\n")
"""


def seen(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (pytester.path / "seen.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def ids_of(records: list[dict[str, Any]], server: str) -> list[str]:
    return [r["id"] for r in records if r["server"] == server]


@pytest.mark.usefixtures("engine")
def test_each_scope_gets_a_fresh_container_and_none_is_left(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(
            fn=SLEEPER.format(scope="function"),
            cls=SLEEPER.format(scope="class"),
            mod=SLEEPER.format(scope="module"),
            ses=SLEEPER.format(scope="session"),
        ),
        RECORD
        + """
import pytest
pytestmark = pytest.mark.testserver("fn", "cls", "mod", "ses")

def test_a(request, testservers):
    record(request, *(testservers[n] for n in ("fn", "cls", "mod", "ses")))

class TestOne:
    def test_b(self, request, testservers):
        record(request, *(testservers[n] for n in ("fn", "cls", "mod", "ses")))

    @pytest.mark.parametrize("i", [1, 2])
    def test_c(self, request, testservers, i):
        record(request, *(testservers[n] for n in ("fn", "cls", "mod", "ses")))

class TestTwo:
    def test_d(self, request, testservers):
        record(request, *(testservers[n] for n in ("fn", "cls", "mod", "ses")))
""",
        files={
            "test_other.py": RECORD
            + """
import pytest

@pytest.mark.testserver("mod", "ses")
def test_e(request, testservers):
    record(request, testservers["mod"], testservers["ses"])
"""
        },
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=6)
    records = seen(pytester)
    assert len(set(ids_of(records, "fn"))) == 5  # one per test, parameters included
    # test_a alone (outside a class, a class-scoped server is the test's own), TestOne, TestTwo
    assert len(set(ids_of(records, "cls"))) == 3
    assert ids_of(records, "cls")[1] == ids_of(records, "cls")[2] == ids_of(records, "cls")[3]
    assert len(set(ids_of(records, "mod"))) == 2  # one per module
    assert len(set(ids_of(records, "ses"))) == 1
    # the `engine` fixture and the autouse leak check of tests/conftest.py then find no
    # container of this run left


@pytest.mark.usefixtures("engine")
def test_reset_runs_between_the_tests_of_one_container_not_before_a_fresh_one(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(box=RESETTABLE + "scope: class\n"),
        """
        import pytest

        def resets(server):
            code, out = server.exec(["cat", "/resets"])
            return out.count("reset") if code == 0 else 0

        @pytest.mark.testserver("box")
        class TestOne:
            def test_a(self, testserver):
                assert resets(testserver) == 0

            def test_b(self, testserver):
                assert resets(testserver) == 1

        @pytest.mark.testserver("box")
        class TestTwo:
            def test_c(self, testserver):
                assert resets(testserver) == 0  # a fresh container: nothing to reset
        """,
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=3)


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("spares", ["1", "0"])
def test_a_warm_spare_is_started_before_its_test_begins(
    pytester: pytest.Pytester, suite: Any, spares: str
) -> None:
    suite(
        servers_yaml(fn=SLEEPER.format(scope="function")),
        RECORD
        + """
import os
import pytest
from pytest_testserver.engine import engine_time
from tests.conftest import engine_api, inspect, wait_for

def started_at(container):
    return engine_time(inspect(container)["State"]["StartedAt"])

USED = set()

def a_spare_runs(server):  # a running container of server that no test has had yet
    api = engine_api()
    try:
        mine = [f"pytest-testserver.server={server}", f"pytest-testserver.pid={os.getpid()}"]
        found = api.containers(filters={"label": mine, "status": "running"})
        return any(c["Id"] not in USED for c in found)
    finally:
        api.close()

@pytest.mark.parametrize("i", range(3))
@pytest.mark.testserver("fn")
def test_busy(request, testservers, i):
    server = testservers["fn"]
    USED.add(server.container_id)
    record(request, server)
    if SPARES and i < 2:  # the next test's container is started while this one runs
        wait_for(lambda: a_spare_runs("fn"), 60, "the spare")
    with open("started.txt", "a") as out:
        out.write(f"{i} {started_at(server.container_id):.3f} {engine_time_now():.3f}\\n")

def engine_time_now():
    api = engine_api()
    try:
        return engine_time(api.info()["SystemTime"])
    finally:
        api.close()
""".replace("SPARES", spares),
    )
    pytester.runpytest("-p", "no:randomly", "-o", f"testserver_spares={spares}").assert_outcomes(
        passed=3
    )
    assert len({r["id"] for r in seen(pytester)}) == 3
    lines = (pytester.path / "started.txt").read_text().splitlines()
    started, ended = {}, {}
    for line in lines:
        i, start, end = line.split()
        started[int(i)], ended[int(i)] = float(start), float(end)
    # Order, by the engine's clock: with a spare, each next container started before the test
    # before it ended; without, only after (in its own test's setup).
    for i in (1, 2):
        if spares == "0":
            assert started[i] > ended[i - 1], (started, ended)
        else:
            assert started[i] < ended[i - 1], (started, ended)


@pytest.mark.usefixtures("engine")
def test_a_fresh_container_per_test_under_xdist(pytester: pytest.Pytester, suite: Any) -> None:
    suite(
        servers_yaml(fn=SLEEPER.format(scope="function")),
        RECORD
        + """
import pytest

@pytest.mark.parametrize("i", range(6))
@pytest.mark.testserver("fn")
def test_it(request, testserver, i):
    record(request, testserver)
""",
    )
    pytester.runpytest("-n", "2").assert_outcomes(passed=6)
    assert len({r["id"] for r in seen(pytester)}) == 6


@pytest.mark.usefixtures("engine")
def test_spares_are_removed_after_a_failing_test_and_a_failing_run(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(fn=SLEEPER.format(scope="function")),
        """
import pytest

@pytest.mark.parametrize("i", range(4))
@pytest.mark.testserver("fn")
def test_it(testserver, i):
    assert i != 1  # a failure in the middle: the next container is already warm
""",
    )
    created = container_creations(docker_api, "fn")
    pytester.runpytest("-p", "no:randomly", "-x").assert_outcomes(passed=1, failed=1)
    made = created.stop()
    assert len(made) >= 2  # -x stopped the run with a spare warm for the third test
    mine = {"label": f"pytest-testserver.pid={os.getpid()}"}
    assert docker_api.containers(all=True, filters=mine) == []


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_spares_are_removed_when_the_run_is_interrupted_or_killed(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, how: str
) -> None:
    suite(
        servers_yaml(fn=SLEEPER.format(scope="function")),
        """
import faulthandler
import os
import signal
import time
from pathlib import Path
import pytest

STACKS = open("stacks.txt", "w")  # every thread's stack on SIGUSR1: where a run hangs
faulthandler.register(signal.SIGUSR1, file=STACKS, all_threads=True)

@pytest.mark.parametrize("i", range(2))
@pytest.mark.testserver("fn")
def test_hold(testserver, i):
    Path("started.tmp").write_text(testserver.container_id)
    os.replace("started.tmp", "started.txt")  # whole or not at all
    time.sleep(120)
""",
    )
    log = (pytester.path / "run.log").open("wb")  # a file: a full pipe would stall the run
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=pytester.path,
        stdout=log,
        stderr=subprocess.STDOUT,
        # A job started in the background by a shell without job control (as a CI runner may
        # start this suite) ignores SIGINT, and so would this pytest: Ctrl-C must reach it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        run = run_of(docker_api, written(pytester.path / "started.txt", 60, "the first test"))
        mine = {"label": f"pytest-testserver.run={run}"}
        wait_for(lambda: len(docker_api.containers(filters=mine)) == 2, 60, "the spare")
        process.send_signal(getattr(signal, how))
        bound = REAP_WITHIN if how == "SIGKILL" else 60
        try:
            wait_for(nothing_left(docker_api, run), bound, f"the run's containers after {how}")
        except AssertionError:
            left = docker_api.containers(all=True, filters=mine)
            stacks = pytester.path / "stacks.txt"
            if process.poll() is None:
                process.send_signal(signal.SIGUSR1)
                wait_for(lambda: stacks.stat().st_size > 0, 10, "the run's stacks")
            output = (pytester.path / "run.log").read_text()
            raise AssertionError(
                f"left: {left}\n--- the run's output ---\n{output}\n"
                f"--- its threads ---\n{stacks.read_text()}"
            ) from None
    finally:
        process.kill()
        process.wait(30)
        log.close()


@pytest.mark.usefixtures("engine")
def test_a_session_server_starts_when_collection_ends_if_a_selected_test_that_runs_needs_it(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    sleeper = SLEEPER.format(scope="session")
    suite(
        servers_yaml(late=sleeper, deselected=sleeper, skipped=sleeper),
        RECORD
        + """
import os
import pytest
from tests.conftest import engine_api, wait_for

def running(server):
    api = engine_api()
    try:
        mine = [f"pytest-testserver.server={server}", f"pytest-testserver.pid={os.getpid()}"]
        return bool(api.containers(filters={"label": mine, "status": "running"}))
    finally:
        api.close()

@pytest.mark.parametrize("i", range(4))
def test_other(i):
    if i == 0:  # before any test asked for it
        wait_for(lambda: running("late"), 60, "'late' to start when collection ended")

@pytest.mark.testserver("deselected")
def test_unwanted():
    pass

@pytest.mark.skipif(True, reason="not here")
@pytest.mark.testserver("skipped")
def test_skipped():
    pass

@pytest.mark.testserver("late")
def test_late(testserver):
    pass
""",
    )
    created = container_creations(docker_api)  # one reader: "late" is its positive control
    result = pytester.runpytest("-p", "no:randomly", "-k", "not unwanted")
    result.assert_outcomes(passed=5, skipped=1, deselected=1)
    made = [server_of(event) for event in created.stop()]
    counts = {name: made.count(name) for name in ("late", "deselected", "skipped")}
    assert counts == {"late": 1, "deselected": 0, "skipped": 0}
    # and it was running while the first test ran, before its own test asked (test_other[0])


@pytest.mark.usefixtures("engine")
def test_collect_only_starts_nothing(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(box=SLEEPER.format(scope="session"), fn=SLEEPER.format(scope="function")),
        """
import pytest

@pytest.mark.testserver("box", "fn")
def test_it():
    pass
""",
    )
    created = container_creations(docker_api)
    pytester.runpytest("--collect-only").assert_outcomes()
    assert created.until_now() == []
    # the positive control: the same reader sees both start when the test runs
    pytester.runpytest().assert_outcomes(passed=1)
    assert sorted(server_of(event) for event in created.stop()) == ["box", "fn"]


# -- the instances of one scoped server, without an engine ----------------------------------------


class FakeServers:
    """Starts and removes pretend containers, recording the order of events."""

    def __init__(self, fail: set[str] | None = None, delay: float = 0.0) -> None:
        self.events: list[tuple[str, str]] = []
        self.fail = fail or set()
        self.delay = delay
        self.lock = threading.Lock()

    def start(self, instance: str) -> Any:
        time.sleep(self.delay)
        with self.lock:
            self.events.append(("start", instance))
        if instance in self.fail:
            raise StartError("web", f"{instance} could not start")
        return SimpleNamespace(name="web", container_id=f"id-{instance}")

    def remove(self, instance: str) -> None:
        with self.lock:
            self.events.append(("remove", instance))

    def instances(self, spares: int = 1, background: bool = False) -> Instances:
        return Instances(
            "web",
            start=self.start,
            remove=self.remove,
            spares=spares,
            background_removal=background,
        )


def test_one_container_per_scope_key_and_the_previous_is_removed_first() -> None:
    fake = FakeServers()
    web = fake.instances(spares=0)
    first = web.acquire("mod_a")
    assert web.acquire("mod_a") is first
    second = web.acquire("mod_b")
    assert second.container_id == "id-web.2"
    assert fake.events == [("start", "web.1"), ("remove", "web.1"), ("start", "web.2")]
    web.release_unless("mod_b")  # the next test is in the same scope: kept
    assert web.current() is second
    web.release_unless(None)  # the last test
    assert web.current() is None
    assert fake.events[-1] == ("remove", "web.2")


def test_spares_are_planned_for_the_scopes_to_come_but_not_the_current_one() -> None:
    fake = FakeServers()
    web = fake.instances(spares=2)
    web.acquire("t1")
    web.prepare(["t1", "t2", "t2", "t3", "t4"])  # t1 is current; at most 2 ahead
    assert web.acquire("t2").container_id == "id-web.2"
    assert web.acquire("t3").container_id == "id-web.3"
    web.prepare(["t3"])  # nothing to come but the current scope: no spare
    assert web.acquire("t4").container_id == "id-web.4"  # started when asked
    started = sorted(i for event, i in fake.events if event == "start")  # spares start at once
    assert started == ["web.1", "web.2", "web.3", "web.4"]


def test_a_spare_that_failed_fails_the_test_that_takes_it_and_the_next_one_tries_again() -> None:
    fake = FakeServers(fail={"web.2"})
    web = fake.instances(spares=1)
    web.acquire("t1")
    web.prepare(["t2"])
    with pytest.raises(StartError, match=r"web\.2 could not start"):
        web.acquire("t2")
    assert web.acquire("t3").container_id == "id-web.3"


def test_no_spare_after_close_and_removal_in_the_background_is_waited_for() -> None:
    fake = FakeServers()
    web = fake.instances(spares=1, background=True)
    web.acquire("t1")
    web.release()
    web.wait_released(time.monotonic() + 5)
    assert ("remove", "web.1") in fake.events
    web.close()
    web.prepare(["t2"])
    assert web.acquire("t2").container_id == "id-web.2"  # started when asked, not a spare
    assert [e for e in fake.events if e[0] == "start"] == [("start", "web.1"), ("start", "web.2")]


def test_two_servers_linking_to_one_scoped_server_get_one_container() -> None:
    fake = FakeServers(delay=0.2)
    web = fake.instances(spares=0)
    handles: list[Any] = []
    threads = [threading.Thread(target=lambda: handles.append(web.acquire("t1"))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert handles[0] is handles[1]
    assert fake.events == [("start", "web.1")]


# -- the plan: which session servers start ahead, which scopes get spares ------------------------


def planned(nodeid: str, *servers: str) -> PlannedTest:
    module = nodeid.partition("::")[0]
    keys = {"function": nodeid, "class": nodeid, "module": module}
    return PlannedTest(nodeid, servers, keys if servers else {})


def test_the_plan_starts_ahead_only_declared_servers_a_test_names() -> None:
    plan = Plan(
        [planned("a.py::t1", "web", "db"), planned("a.py::t2"), planned("b.py::t3", "ghost")],
        worker=False,
    )
    assert plan.needed(["db", "web", "cache"]) == ["db", "web"]
    assert Plan([planned("a.py::t1")], worker=False).needed(["web"]) == []


def test_spares_are_planned_for_the_tests_after_the_current_one_in_order() -> None:
    tests = [
        planned("a.py::t1", "web"),
        planned("a.py::t2"),
        planned("b.py::t3", "web", "db"),
        planned("c.py::t4", "web"),
    ]
    plan = Plan(tests, worker=False)
    scoped = {"web": "module", "db": "function"}
    assert plan.spares(scoped, None) == {
        "web": ["a.py", "b.py", "c.py"],
        "db": ["b.py::t3"],
    }
    assert plan.spares(scoped, "a.py::t2") == {"web": ["b.py", "c.py"], "db": ["b.py::t3"]}
    assert plan.spares(scoped, "c.py::t4") == {}  # the last test: nothing to come
    assert plan.spares(scoped, "x.py::not_planned") == {}  # a test the plan does not hold


def test_spares_look_only_lookahead_tests_ahead() -> None:
    tests = [planned(f"m{i}.py::t", "web") for i in range(LOOKAHEAD + 10)]
    plan = Plan(tests, worker=False)
    keys = plan.spares({"web": "module"}, None)["web"]
    assert keys == [f"m{i}.py" for i in range(LOOKAHEAD)]
    after = plan.spares({"web": "module"}, "m5.py::t")["web"]
    assert after[0] == "m6.py"
    assert len(after) == LOOKAHEAD


def test_a_worker_plans_spares_only_for_its_next_test() -> None:
    tests = [planned("a.py::t1", "web"), planned("b.py::t2", "web"), planned("c.py::t3", "web")]
    plan = Plan(tests, worker=True)
    assert plan.spares({"web": "module"}, "a.py::t1", "c.py::t3") == {"web": ["c.py"]}
    assert plan.spares({"web": "module"}, "a.py::t1", None) == {}
    # a next test that will not run (skipped: not in the plan) needs no spare
    assert plan.spares({"web": "module"}, "a.py::t1", "d.py::skipped") == {}
    assert plan.spares({"web": "module"}, None) == {"web": ["a.py", "b.py", "c.py"]}
