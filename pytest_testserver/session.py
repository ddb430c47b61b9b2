"""One run's servers on the pytest side: the session object the plugin registers once servers
are declared (as pytest's junitxml registers its ``LogXML``, and xdist its ``DSession``).

Its hooks are methods and its state is fields: the pool, the run's settings and context, the
test plan, the test running now and the next one, the progress lines, the problems met at
teardown and the note about kept containers, and what SIGTERM changed. Imported by the plugin
at start-up, so kept light: the pool and its engine are imported when a test needs a server.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Generator
from contextlib import nullcontext
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from .errors import EngineUnavailable, Terminated, TestserverError
from .settings import RunSettings
from .terminal import Progress, relay_from, worker_events

if TYPE_CHECKING:
    from .config import ServerConfig
    from .handle import ServerHandle
    from .identity import RunContext
    from .lifetimes import Plan, ScopeKeys
    from .pool import ServerPool
    from .runowner import RunOwner

used_key = pytest.StashKey[set[str]]()  # on an item: the servers it used
scope_keys_key = pytest.StashKey[dict[str, str]]()  # on an item: its key for each scope
REPORT_LOG_LINES = 50


class TestserverSession:
    """The run's servers, from ``pytest_configure`` to the last cleanup."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, config: pytest.Config, settings: RunSettings, servers: ServerConfig):
        self.config = config
        self.settings = settings
        self.servers = servers
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.run = run_context(workerinput, settings)
        self.pool: ServerPool | None = None
        self.progress: Progress | None = None
        self.owner: RunOwner | None = None  # on the xdist controller only
        self.plan: Plan | None = None  # which selected tests need which servers
        self.current: pytest.Item | None = None  # the test being run
        self.next: pytest.Item | None = None  # the test after it (all a worker knows)
        self.problems: list[str] = []  # teardown's, for the terminal summary
        self.kept: str | None = None  # the --testserver-keep note of the xdist controller
        self.terminated = False  # SIGTERM arrived
        self.restarts: dict[str, int] = {}  # server -> fresh starts after deaths (all workers)
        self._restarts_seen: dict[str, int] = {}  # this process's pool's, as of the last test
        self._previous_sigterm: Any = None

    # --- the pool, and what it says as it goes

    def get_pool(self) -> ServerPool:
        if self.pool is None:
            from .pool import ServerPool

            worker = self.run.worker is not None
            if not worker and self.progress is None:
                self.progress = self.new_progress()
            self.pool = ServerPool(
                self.servers,
                self.settings,
                self.run,
                shared=worker,
                on_event=self.progress if self.progress is not None else self.worker_events(),
            )
        return self.pool

    def new_progress(self) -> Progress:
        return Progress(
            self.config.get_verbosity(),
            write=self.write_line,
            warn=lambda text: warn(self.config, text),
        )

    def worker_events(self) -> Any:
        workerinput: dict[str, Any] = getattr(self.config, "workerinput", None) or {}
        return worker_events(workerinput.get("testserver_progress"), self.config.get_verbosity())

    def write_line(self, line: str) -> None:
        """One line on the terminal, outside of any captured output."""
        config = self.config
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capture = config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else nullcontext():
            reporter.ensure_newline()
            writer = config.get_terminal_writer()
            if writer.width_of_current_line:  # xdist's progress dots do not end their line
                writer.line()
            reporter.write_line(line)

    def flush_progress(self) -> None:
        if self.progress is not None:
            self.progress.flush()

    # --- starting servers for a test

    def setup(self, item: pytest.Item, names: list[str]) -> None:
        """Before ``item``'s fixtures (``current`` already): the servers its markers name start
        now, independent ones concurrently, and spares for the tests after it."""
        if names:
            self.start(names, f"@pytest.mark.testserver on {item.nodeid}", item)
        self.prepare_spares(item)

    def start(
        self, names: list[str], asked_by: str, item: pytest.Item | None = None
    ) -> dict[str, ServerHandle]:
        if self.pool is not None:
            started = self.pool.ready_now(names)  # the common case, at every test: a lookup
            if started is not None:
                return started
        from .config import require_server

        try:
            for name in names:
                require_server(self.servers, name, asked_by)
            pool = self.get_pool()
            test, keys = (item.nodeid, scope_keys(item)) if item is not None else (None, None)
            with self.progress.waiting() if self.progress is not None else nullcontext():
                return pool.get_many(names, test=test, keys=keys)
        except (KeyboardInterrupt, pytest.exit.Exception):
            raise  # Ctrl-C, SIGTERM, pytest.exit(): the run ends, through teardown
        except TestserverError as exc:
            error: TestserverError | str = exc
        except Exception as exc:
            # A bug of ours or the SDK's: show the traceback, but as redacted text — pytest's
            # own rendering would print the frames' locals with --showlocals, secrets included.
            import traceback

            text = "".join(traceback.format_exception(exc))
            error = f"testserver: unexpected error starting {', '.join(names)}:\n{text}"
        # Outside the except blocks: no "during handling of the above exception" in the report.
        if isinstance(error, TestserverError):
            self.fail(error)
        pytest.fail(self.redacted(error), pytrace=False)

    def redacted(self, text: str) -> str:
        return self.get_pool().redact(text)

    def fail(self, exc: TestserverError) -> NoReturn:
        message = self.redacted(str(exc))
        if isinstance(exc, EngineUnavailable) and self.settings.unavailable == "skip":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)

    # --- the plan: session servers start early, spares ahead of the tests that need them

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Start, in the background, every session server a selected test that runs needs, and
        a first spare of each scoped one: starting overlaps collection's end and the other
        tests."""
        if self.config.option.collectonly or not session.items:
            return
        from .lifetimes import Plan, PlannedTest

        declared = self.servers.servers
        tests = []
        planned: set[str] = set()  # session servers a test that will run already needs
        for item in session.items:
            # Once per test, at most a walk of its markers: a test that names no server, or
            # only session servers another test already needs, changes nothing in the plan
            # whether it runs or not (pytest's skip evaluation costs ~20 us a test).
            names = planned_servers(item)
            if not names:
                tests.append(PlannedTest(item.nodeid))
                continue
            scoped = any(n in declared and declared[n].scope != "session" for n in names)
            if not scoped and planned.issuperset(names):
                tests.append(PlannedTest(item.nodeid, tuple(names)))
            elif will_run(item):
                planned.update(names)
                keys = scope_keys(item) if scoped else {}
                tests.append(PlannedTest(item.nodeid, tuple(names), keys))
        self.plan = plan = Plan(tests, worker=self.run.worker is not None)
        needed = plan.needed(self.servers.servers)
        if not needed:
            return
        pool = self.get_pool()
        pool.prestart(needed)
        if not plan.worker:
            self.prepare_spares(None)

    def prepare_spares(self, item: pytest.Item | None) -> None:
        """Spares for the tests after ``item`` (from the first test when None)."""
        plan, pool = self.plan, self.pool
        if plan is None or pool is None or not pool.scoped:
            return
        after = item.nodeid if item is not None else None
        next_test = self.next.nodeid if self.next is not None else None
        for name, keys in plan.spares(pool.scoped, after, next_test).items():
            pool.prepare_spares(name, keys)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        self.next = nextitem  # under xdist, the only test known to come next

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        # Outermost: a scoped server's container goes once every fixture using it is torn down.
        try:
            return (yield)
        finally:
            pool = self.pool
            if pool is not None and pool.scoped:
                pool.release_scopes(scope_keys(nextitem) if nextitem is not None else None)
            self.flush_progress()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        used = item.stash.get(used_key, set())
        pool = self.pool
        if pool is not None and call.when == "setup":
            self.note_restarts(item, pool)
            for name in sorted(used):  # what a pulled image's tag resolved to
                if digest := pool.launcher.digests.get(name):
                    item.user_properties.append((f"testserver {name} image", digest))
        if report.failed and used and pool is not None:
            for death in pool.died_during(sorted(used)):  # it died while this test ran
                title = f"testserver {death.server}: died during this test"
                report.sections.append((title, str(death)))
                item.user_properties.append((title, str(death)))
            started = pool.started()
            for name in sorted(used & started.keys()):
                try:
                    tail = started[name].logs(tail=REPORT_LOG_LINES)
                except Exception as exc:  # a report must never fail because a log is unavailable
                    tail = f"(log unavailable: {exc})"
                title = f"testserver {name}: last {REPORT_LOG_LINES} log lines"
                report.sections.append((title, tail or "(the server printed nothing)"))
                item.user_properties.append((title, tail))  # junitxml writes these as properties
        return report

    def note_restarts(self, item: pytest.Item, pool: ServerPool) -> None:
        """Servers started afresh for this test (a death before it): a junit property of it."""
        now = pool.restarts()
        if now == self._restarts_seen:
            return
        for name, count in sorted(now.items()):
            if count != self._restarts_seen.get(name, 0):
                item.user_properties.append((f"testserver {name} restarts", str(count)))
        self._restarts_seen = now

    # --- the end of the run

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, None, None]:
        # trylast makes this the innermost wrapper: the code after yield runs right after
        # session fixtures are torn down, before the terminal summary (which reports what went
        # wrong).
        finished = (
            pytest.ExitCode.OK,
            pytest.ExitCode.TESTS_FAILED,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        )
        if self.owner is not None and exitstatus not in finished:
            # Ctrl-C or SIGTERM on the xdist controller: remove the servers now, not after
            # xdist has waited for its workers to stop; finish() sweeps once more when they have.
            self.record(self.owner.sweep(force=True))
        try:
            yield
        finally:
            if self.run.worker:
                # A worker finishes before the controller sweeps the run: no removal in flight.
                workeroutput: dict[str, Any] | None = getattr(self.config, "workeroutput", None)
                if workeroutput is not None:
                    workeroutput["testserver_used"] = (
                        self.pool is not None and self.pool.used_engine
                    )
                    if self.pool is not None:
                        workeroutput["testserver_restarts"] = self.pool.restarts()
                if self.pool is not None:
                    self.problems.extend(self.pool.redact(p) for p in self.pool.close())
            elif self.pool is not None:
                self.pool.begin_close()
            owner, self.owner = self.owner, None
            if owner is not None:  # the xdist controller: every worker is done (or dead) now
                self.record(owner.finish())
            if self.terminated:
                session.exitstatus = 128 + signal.SIGTERM  # whatever pytest made of it

    def record(self, outcome: tuple[list[str], str | None]) -> None:
        """Teardown problems and a --testserver-keep note, for the terminal summary."""
        problems, kept = outcome
        self.problems.extend(problems)
        if kept:
            self.kept = kept

    def add_restarts(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            self.restarts[name] = self.restarts.get(name, 0) + count

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        message = self.pool.keep_message() if self.pool is not None else None
        message = message or self.kept
        if self.pool is not None and not self.run.worker:
            self.add_restarts(self.pool.restarts())
        if not self.problems and not message and not self.restarts:
            return
        terminalreporter.section("testserver")
        for name, count in sorted(self.restarts.items()):
            terminalreporter.write_line(
                f"testserver: {name} died during the run and was started afresh "
                f"{count} time{'s' if count != 1 else ''}",
                yellow=True,
            )
        for problem in self.problems:
            terminalreporter.write_line(f"testserver: warning: teardown: {problem}", yellow=True)
        if message:
            terminalreporter.write_line(message)

    def unconfigure(self) -> None:
        """A safety net for runs that never reached sessionfinish (an error during startup);
        ``finish_teardown``, the last cleanup, waits for the removal."""
        if self.pool is not None:
            self.pool.begin_close()
        owner, self.owner = self.owner, None
        if owner is not None:
            self.record(owner.finish())
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def finish_teardown(self) -> None:
        """Wait for the removal; what went wrong is told after the summary it missed."""
        pool = self.pool
        problems = [pool.redact(p) for p in pool.finish_close()] if pool is not None else []
        if not problems:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        for problem in problems:
            line = f"testserver: warning: teardown: {problem}"
            if reporter is not None:
                reporter.write_line(line, yellow=True)
            else:
                print(line, file=sys.stderr)

    def install_sigterm_handler(self) -> None:
        """SIGTERM ends the run like Ctrl-C does: through teardown, so containers are removed.

        The handler raises ``Terminated``, a ``KeyboardInterrupt``: pytest stops the session
        for it wherever it lands (a build, a lock wait, an engine call, a test), and no
        ``except Exception`` can swallow it. The exit status becomes 143 at the end of the
        session. Once teardown has begun, a further SIGTERM only marks the status: the removal
        runs to its end.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # someone else handles it; do not take it away

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            first = not self.terminated
            self.terminated = True
            if first and not (self.pool is not None and self.pool.closing):
                raise Terminated("testserver: terminated by SIGTERM")

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)


class XdistHooks:
    """The controller's side of xdist: registered only when pytest-xdist is installed (its
    hooks are unknown otherwise)."""

    def __init__(self, session: TestserverSession) -> None:
        self.session = session

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        session = self.session
        context = session.run
        owner = session.owner
        if owner is None:
            from .runowner import RunOwner

            owner = session.owner = RunOwner(context)
            if owner.warning:
                warn(session.config, owner.warning)
        node.workerinput["testserver_run_id"] = context.run_id
        node.workerinput["testserver_owner"] = context.owner.labels()
        node.workerinput["testserver_lease_ttl"] = context.lease_ttl
        node.workerinput["testserver_state_dir"] = owner.state_path
        if session.progress is None:
            session.progress = session.new_progress()
        worker = str(node.workerinput.get("workerid", node.gateway.id))
        channel = relay_from(session.progress, worker, node.gateway.newchannel())
        node.workerinput["testserver_progress"] = channel

    @pytest.hookimpl
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        owner = self.session.owner
        output = getattr(node, "workeroutput", None) or {}
        if owner is not None:
            owner.worker_done(bool(output.get("testserver_used")), crashed=error is not None)
        restarts = output.get("testserver_restarts")
        if isinstance(restarts, dict):
            self.session.add_restarts({str(k): int(v) for k, v in restarts.items()})


def warn(config: pytest.Config, text: str) -> None:
    """A line the user must see, whatever the verbosity, outside any captured output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    line = f"testserver: warning: {text}"
    if reporter is None:
        print(line, file=sys.stderr)
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line, yellow=True)


def run_context(workerinput: dict[str, Any] | None, settings: RunSettings) -> RunContext:
    """Workers take the run id, owner and folder from the controller; anyone else starts a run."""
    from .identity import Owner, RunContext, lease_ttl, new_run_id

    kept = settings.keep
    if workerinput and "testserver_run_id" in workerinput:
        owner = Owner.from_labels(workerinput["testserver_owner"]) or Owner.this_process()
        return RunContext(
            run_id=str(workerinput["testserver_run_id"]),
            owner=owner,
            worker=str(workerinput.get("workerid", "gw")),
            kept=kept,
            lease_ttl=0 if kept else int(workerinput["testserver_lease_ttl"]),
            state_dir=workerinput.get("testserver_state_dir"),
        )
    return RunContext(new_run_id(), kept=kept, lease_ttl=0 if kept else lease_ttl())


def scope_keys(item: pytest.Item) -> ScopeKeys:
    """The test's key for each scope, as pytest's fixtures scope them: outside a class, a
    class-scoped server is the test's own. Worked out once per test."""
    keys = item.stash.get(scope_keys_key, None)
    if keys is None:
        module = item.getparent(pytest.Module)
        cls = item.getparent(pytest.Class)
        keys = item.stash[scope_keys_key] = {
            "function": item.nodeid,
            "class": (cls or item).nodeid,
            "module": (module or item).nodeid,
        }
    return keys


def planned_servers(item: pytest.Item) -> list[str]:
    names = (a for m in item.iter_markers("testserver") for a in m.args if isinstance(a, str))
    return list(dict.fromkeys(names))


def will_run(item: pytest.Item) -> bool:
    """Whether the test will run: no skip or xfail(run=False) marker keeps it from running.

    pytest's own evaluation (conditions as strings, ``pytest_markeval_namespace``), which only
    its private ``_pytest.skipping`` offers; a condition that cannot be evaluated is pytest's
    error, at setup. If a pytest release moves that API, unconditional markers are still read
    (then test_will_run_reads_skip_and_xfail_marks_as_pytest_does fails, on purpose).
    """
    try:
        from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks
    except ImportError:  # pragma: no cover - a pytest without the private API
        return not _unconditionally_kept_from_running(item)
    try:
        if evaluate_skip_marks(item) is not None:
            return False
        xfail = evaluate_xfail_marks(item)
        return xfail is None or xfail.run or bool(item.config.option.runxfail)
    except (Exception, pytest.fail.Exception):  # pytest fails a bad condition with fail()
        return False


def _unconditionally_kept_from_running(item: pytest.Item) -> bool:
    """Public API only: a ``skip`` marker, a ``skipif``/``xfail(run=False)`` whose conditions
    are all plain true values; a string condition is taken as false (the test is planned)."""
    if item.get_closest_marker("skip") is not None:
        return True

    def holds(mark: pytest.Mark) -> bool:
        kwargs = mark.kwargs  # as pytest reads them: condition=... wins over the arguments
        conditions = (kwargs["condition"],) if "condition" in kwargs else mark.args
        return all(not isinstance(c, str) and bool(c) for c in conditions)

    if any(holds(mark) for mark in item.iter_markers("skipif")):
        return True
    runxfail = bool(item.config.option.runxfail)
    return not runxfail and any(
        not mark.kwargs.get("run", True) and holds(mark) for mark in item.iter_markers("xfail")
    )
