"""One run's servers as the plugin asks for them: get, start before asked, reset, release, close.

The pool decides which container a server gets — kept from an earlier run (kept.py), another
xdist worker's (sharing.py) or a fresh one (launcher.py) — and when: on first use, before a test
asks (``prestart``), per scope (lifetimes.py). A server's links start before it; independent
servers start concurrently. Whatever happens, ``close`` removes what the run made (cleanup.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from . import exits, variables
from .cleanup import Cleanup
from .config import ServerConfig, ServerSpec, secret_values
from .connection import Connection
from .deaths import DeathWatch
from .errors import (
    EngineError,
    EngineUnavailable,
    ResetError,
    ServerDied,
    ServerError,
    StartError,
    TestserverError,
)
from .folders import StateDir
from .handle import ServerHandle
from .identity import RunContext
from .kept import KeptServers
from .launcher import Launcher
from .lifetimes import Instances, ScopeKeys
from .reach import Reach
from .redact import Redactor
from .settings import RunSettings
from .sharing import WorkerSharing

if TYPE_CHECKING:
    from .engine import Engine
    from .runfolder import SharedServers


class ServerPool:
    """The servers one process uses, started on first use and removed by ``close``."""

    def __init__(
        self,
        config: ServerConfig,
        settings: RunSettings,
        context: RunContext,
        *,
        shared: bool = False,
        connect: Callable[[], Engine] | None = None,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.context = context
        self.shared = shared  # in xdist workers: share: run servers are the run's, not ours
        self.redact = Redactor(secret_values(config, os.environ))
        self._on_event = on_event
        self.connection = Connection(
            context, shared=shared, keep=settings.keep, connect=connect, event=self._event
        )
        self.cleanup = Cleanup(self.connection, run_id=context.run_id, keep=settings.keep)
        reach = Reach(settings, override=settings.reach)  # published ports, or a sibling's
        self.sharing = WorkerSharing(
            context,
            connection=self.connection,
            cleanup=self.cleanup,
            redact=self.redact,
            settings=settings,
            reach=reach,
        )
        self.launcher = Launcher(
            config,
            settings,
            context,
            connection=self.connection,
            cleanup=self.cleanup,
            redact=self.redact,
            event=self._event,
            run_network=self.sharing.network if shared else None,
            first_rebuild=self.sharing.first_rebuild if shared else None,
            reach=reach,
        )
        self.kept = KeptServers(
            config,
            settings,
            connection=self.connection,
            cleanup=self.cleanup,
            launcher=self.launcher,
            event=self._event,
        )
        self._lock = threading.Lock()
        self._server_locks = {name: threading.Lock() for name in config.servers}
        self._handles: dict[str, ServerHandle] = {}
        self._orders: dict[str, tuple[str, ...]] = {}  # each server's start order, links first
        self._failures: dict[str, TestserverError] = {}
        self._last_test: dict[str, str] = {}  # container id -> the last test that used it
        self._deaths = DeathWatch(context.run_id)
        self._restarts: dict[str, int] = {}  # server -> how often it died and started afresh
        self._scoped = {
            name: Instances(
                name,
                start=functools.partial(self._start_instance, spec),
                remove=self.cleanup.remove_instance,
                spares=settings.spares if self._may_have_spares(spec) else 0,
                background_removal=name not in config.linked,
            )
            for name, spec in config.servers.items()
            if spec.scope != "session"
        }

    @property
    def run_id(self) -> str:
        return self.context.run_id

    @property
    def closing(self) -> bool:
        """Teardown has begun: a further SIGTERM must not interrupt it."""
        return self.cleanup.closed

    @property
    def used_engine(self) -> bool:
        """Told to the xdist controller at the end (workeroutput): it sweeps what we made."""
        return self.connection.used_engine

    def engine(self) -> Engine:
        return self.connection.engine()

    def state_dir(self) -> StateDir:
        return self.connection.state_dir()

    def shared_servers(self) -> SharedServers:
        return self.sharing.servers()

    def started(self) -> dict[str, ServerHandle]:
        """The servers started so far: each session server, each other one's current container."""
        with self._lock:
            handles = dict(self._handles)
        for name, instances in self._scoped.items():
            current = instances.current()
            if current is not None:
                handles[name] = current
        return handles

    # getting servers
    def get(
        self, name: str, keys: ScopeKeys | None = None, *, test: str | None = None
    ) -> ServerHandle:
        """The handle of ``name``, starting it (and its links) on first use.

        ``keys`` are the asking test's scope keys: a server of a shorter scope than the session
        gets a fresh container when its scope's key changes.
        """
        handle = None
        for dependency in self._start_order(name):
            handle = self._handle_of(dependency, keys, test)
        assert handle is not None
        return handle

    def _start_order(self, name: str) -> tuple[str, ...]:
        order = self._orders.get(name)
        if order is None:  # the config is frozen: the order is worked out once per server
            order = self._orders[name] = tuple(self.config.start_order(name))
        return order

    def _handle_of(self, name: str, keys: ScopeKeys | None, test: str | None) -> ServerHandle:
        spec = self.config.servers[name]
        if spec.scope == "session":
            handle = self._handles.get(name)  # started: no lock to take, no engine request
            if handle is None:
                self._ensure(name, test)
                handle = self._handles[name]
            # a dict lookup, no engine request (a one-shot's exit is no death)
            if spec.oneshot or self._alive(handle):
                return handle
            return self._after_death(spec, handle, test)
        if keys is None:
            raise StartError(
                name,
                f"has scope: {spec.scope}, so only a test (or a fixture of scope {spec.scope} "
                "or shorter) can ask for it",
            )
        return self._scoped[name].acquire(keys[spec.scope])

    def get_many(
        self, names: Iterable[str], *, test: str | None = None, keys: ScopeKeys | None = None
    ) -> dict[str, ServerHandle]:
        """Start several servers concurrently (each after its links); the first error wins.

        For ``test`` (a test's id), each server's ``reset`` runs first, unless ``test`` is the
        first to use that server's container.
        """
        wanted = list(dict.fromkeys(names))
        handles = self._start_many(wanted, keys, test)
        if test is not None:
            self._reset_for(test, handles)
        return handles

    def _start_many(
        self, wanted: list[str], keys: ScopeKeys | None, test: str | None = None
    ) -> dict[str, ServerHandle]:
        if len(wanted) <= 1:
            return {name: self.get(name, keys, test=test) for name in wanted}
        errors: list[BaseException] = []
        handles: dict[str, ServerHandle] = {}

        def start(name: str) -> None:
            try:
                handles[name] = self.get(name, keys, test=test)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in wanted]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return {name: handles[name] for name in wanted}

    def prestart(self, names: Iterable[str]) -> threading.Thread:
        """Start session servers in the background, before a test asks (at collection's end).

        A failure is kept for the first test that asks; a test asking meanwhile waits only for
        what is left of the start.
        """
        servers = self.config.servers
        needed = (link for name in names for link in self.config.start_order(name))
        wanted = [n for n in dict.fromkeys(needed) if servers[n].scope == "session"]

        def run() -> None:
            with contextlib.suppress(BaseException):  # each failure is kept per server
                self._start_many(wanted, None)

        thread = threading.Thread(target=run, name="testserver-prestart", daemon=True)
        thread.start()
        return thread

    @functools.cached_property
    def scoped(self) -> dict[str, str]:
        """Each server whose scope is shorter than the session, and its scope (asked around
        every test: worked out once)."""
        return {name: self.config.servers[name].scope for name in self._scoped}

    def prepare_spares(self, name: str, keys: list[str]) -> None:
        """Fresh containers of a scoped server, starting now for the scopes (``keys``) to come."""
        instances = self._scoped.get(name)
        if instances is not None and not self.cleanup.closed:
            instances.prepare(keys)

    def release_scopes(self, keys: ScopeKeys | None) -> None:
        """After a test: each scoped server's container whose scope the next test leaves
        (``keys`` are the next test's; None at the end) is removed in the background."""
        for name, instances in self._scoped.items():
            scope = self.config.servers[name].scope
            instances.release_unless(keys[scope] if keys is not None else None)

    def _may_have_spares(self, spec: ServerSpec) -> bool:
        """A spare starts before the scope it serves: only a server that links to session
        servers alone, and that no other server links to (its name must resolve to one
        container on the run network), can have one."""
        links = (self.config.servers[link] for link in spec.links)
        return spec.name not in self.config.linked and all(s.scope == "session" for s in links)

    # reset
    def _reset_for(self, test: str, handles: Mapping[str, ServerHandle]) -> None:
        for name, handle in handles.items():
            spec = self.config.servers[name]
            if spec.reset is None:
                continue  # nothing to run between tests: who used it last does not matter
            with self._lock:
                last = self._last_test.get(handle.container_id)
                self._last_test[handle.container_id] = test
            if spec.reset is not None and last is not None and last != test:
                self._reset(spec, handle)

    def _used_before(self, container: str, by: str) -> None:
        """Tests outside this process used ``container``: reset it before our first test."""
        with self._lock:
            self._last_test[container] = by

    def _reset(self, spec: ServerSpec, handle: ServerHandle) -> None:
        """Exec ``reset``; anything but exit code 0 fails the test about to run, with the output."""
        assert spec.reset is not None
        argv = list(spec.reset)  # as written, for the messages: a secret in it stays ${NAME}
        engine = self.engine()
        expanded = list(variables.expand_argv(spec.reset, self.launcher.environment(spec)))
        with engine.deadline(time.monotonic() + spec.timeout):
            try:
                code, output = engine.exec(handle.container_id, expanded)
            except EngineError as exc:
                why = self.redact(str(exc))
                raise ResetError(spec.name, f"reset {argv} could not run: {why}") from None
        text = self.redact(output.decode("utf-8", "replace"))
        if code is None:
            raise ResetError(spec.name, f"reset {argv} could not run: the server is not running")
        if code != 0:
            raise ResetError(spec.name, f"reset {argv} exited with code {code}", output=text)

    # starting: which container a server gets
    def _ensure(self, name: str, test: str | None = None) -> None:
        with self._server_locks[name]:
            if name in self._handles:
                return
            if name in self._failures:
                raise self._failures[name]
            spec = self.config.servers[name]
            try:
                with self._as_server_error(spec):
                    handle = (
                        self._shared(spec, test) if self._is_shared(spec) else self._start(spec)
                    )
            except TestserverError as exc:
                self._failures[name] = exc
                raise
            with self._lock:
                self._handles[name] = handle
        self._deaths.start(self.connection.engine())  # once: from now on, deaths are seen

    def _is_shared(self, spec: ServerSpec) -> bool:
        return self.shared and spec.share == "run"

    def _shared(
        self,
        spec: ServerSpec,
        test: str | None,
        replacing: str | None = None,
        start: Callable[[ServerSpec], ServerHandle] | None = None,
    ) -> ServerHandle:
        """The run's container of a share: run server: another worker's, or started here
        (``start``; a dead one another worker published is replaced here too)."""
        restart = None
        if spec.restart == "fresh":
            restart = functools.partial(self._restart, spec, test)
        handle, elsewhere = self.sharing.handle(
            spec,
            start or self._start,
            self.kept.held_by_worker,
            replacing=replacing,
            restart=restart,
        )
        if elsewhere:  # other workers' tests may have used it: reset before ours
            self._used_before(handle.container_id, "(another xdist worker)")
        return handle

    # a server that died during the run
    def ready_now(self, names: Iterable[str]) -> dict[str, ServerHandle] | None:
        """The handles of ``names`` when each is a session server started already (its links
        too), with no death seen and no ``reset`` to run: what ``get_many`` would return, for
        the price of a dict lookup. None: ask ``get_many``."""
        handles: dict[str, ServerHandle] = {}
        for name in names:
            spec = self.config.servers.get(name)
            if spec is None or spec.reset is not None:
                return None
            for dependency in self._start_order(name):  # the links, then the server itself
                handle = self._handles.get(dependency)
                if handle is None or self._deaths.died(handle.container_id) is not False:
                    return None
                handles[dependency] = handle
        return {name: handles[name] for name in names}

    def _alive(self, handle: ServerHandle) -> bool:
        died = self._deaths.died(handle.container_id)
        if died is None:  # the event stream is down: only the engine can tell
            state = exits.container_state(self.engine(), handle.container_id)
            return bool(state and state.get("Running"))
        return not died

    def _after_death(
        self, spec: ServerSpec, handle: ServerHandle, test: str | None
    ) -> ServerHandle:
        """A fresh container for a session server that died (``restart: fresh``), or its
        death as every later test's error (``restart: never``)."""
        name = spec.name
        with self._server_locks[name]:
            with self._lock:
                current = self._handles.get(name)
            if current is not handle:  # another thread saw the death first
                if current is None:
                    raise self._failures[name]
                return current
            with self._lock:
                del self._handles[name]
            self._deaths.forget(handle.container_id)
            try:
                with self._as_server_error(spec):
                    if spec.restart == "never":
                        raise self._death_of(spec, handle.container_id)
                    dead = handle.container_id
                    if self._is_shared(spec):  # another worker may have replaced it already
                        fresh = self._shared(
                            spec, test, dead, lambda spec: self._restart(spec, test, dead)
                        )
                    else:
                        fresh = self._restart(spec, test, dead)
            except TestserverError as exc:
                self._failures[name] = exc
                raise
            with self._lock:
                self._handles[name] = fresh
            return fresh

    def _restart(self, spec: ServerSpec, test: str | None, dead: str) -> ServerHandle:
        """Say how ``dead`` died, and start the server afresh (its dead container goes: its
        name is the fresh one's)."""
        death = self._death_of(spec, dead)
        who = test or "the next test"
        self._event("ready", f"{spec.name} died ({death.why}); starting afresh for {who}")
        self.cleanup.remove_quietly(spec.name)
        handle = self._start(spec)
        with self._lock:
            self._restarts[spec.name] = self._restarts.get(spec.name, 0) + 1
        return handle

    def _death_of(self, spec: ServerSpec, container: str) -> ServerDied:
        engine = self.engine()
        with engine.deadline(time.monotonic() + spec.timeout):
            return exits.died_error(
                engine, spec.name, container, self.redact, self._deaths.engine_lost()
            )

    def died_during(self, names: Iterable[str]) -> list[ServerDied]:
        """The deaths, as the engine reported them, of these session servers' current
        containers: for the report of the test that was running when they died."""
        deaths = []
        for name in names:
            with self._lock:
                handle = self._handles.get(name)
            if handle is None:
                continue
            spec = self.config.servers[name]
            if not spec.oneshot and self._deaths.died(handle.container_id):  # exit 0 is no death
                deaths.append(self._death_of(spec, handle.container_id))
        return deaths

    def restarts(self) -> dict[str, int]:
        """How often each server died during the run and was started afresh."""
        if not self._restarts:  # the common case, asked at every test's setup: no lock
            return {}
        with self._lock:
            return dict(self._restarts)

    def _start_instance(self, spec: ServerSpec, instance: str) -> ServerHandle:
        """One fresh container of a server whose scope is shorter than the session."""
        with self._as_server_error(spec):
            return self._start(spec, instance)

    def _start(self, spec: ServerSpec, instance: str | None = None) -> ServerHandle:
        """Start ``spec`` as ``instance`` (its own name for a session server) until it is
        ready: the kept container when reuse allows, else a fresh one."""
        launch = self.launcher.launch(spec, instance)
        step = self.launcher.image_step(launch)
        if self.kept.reusable(spec) and not spec.oneshot:
            kept = self.kept.start(launch, step)
            if kept is not None:
                handle, earlier = kept
                if earlier:  # reset before this run's first test
                    self._used_before(handle.container_id, "(an earlier run)")
                return handle
        return self.launcher.start(launch, step)

    @contextlib.contextmanager
    def _as_server_error(self, spec: ServerSpec) -> Iterator[None]:
        """Every error on the start path is a ``testserver:`` message naming the server."""
        try:
            yield
        except ServerError:
            raise
        except EngineUnavailable as exc:
            raise exc.for_server(spec.name) from None
        except TestserverError as exc:
            text = str(exc)
            text = text.removeprefix("testserver: ")
            if text.startswith(f"server {spec.name!r}: "):
                raise
            raise StartError(spec.name, text) from None

    def _event(self, kind: str, text: str) -> None:
        """Progress for the terminal: kind is "engine", "build-step", "build-output", "progress"
        (a build context's size, a pull's end), "heartbeat" (a long step, a pull under way: a
        later one replaces it), "ready", "instance" or "warning"."""
        if self._on_event is not None:
            self._on_event(kind, text)

    # the end of the run
    def close(self) -> list[str]:
        """Remove this process's containers and networks; returns the problems met."""
        self.begin_close()
        return self.finish_close()

    def begin_close(self) -> None:
        """Start removing everything in the background; ``finish_close`` waits for it."""
        if not self.cleanup.begin_close():
            return  # sessionfinish began it; unconfigure is only a safety net
        self._deaths.close()  # our own removals are not deaths
        for instances in self._scoped.values():
            instances.close()  # no more spares
        self.cleanup.start_removal(self._before_removal, self.sharing.close)

    def _before_removal(self, deadline: float) -> list[str]:
        problems = self.kept.release()
        if not self.settings.keep:
            for instances in self._scoped.values():
                instances.wait_released(deadline)
        return problems

    def finish_close(self) -> list[str]:
        """Wait for the removal ``begin_close`` started; its problems, reported once."""
        return self.cleanup.finish_close()

    def keep_message(self) -> str | None:
        return self.cleanup.keep_message()
