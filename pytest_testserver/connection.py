"""One process's link to the engine and what lives as long as it: the watchdog, the run's lease
and the private state folder.

Everything here is made on first need: a run whose tests ask for no server never connects, never
spawns a watchdog and never makes a folder. Where the engine is comes from ``locate``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import reaper
from .errors import EngineUnavailable, TestserverError, UnsafeFolder
from .folders import StateDir, discard, reason, user_state_dir
from .identity import RunContext
from .locks import tidy_locks

if TYPE_CHECKING:
    from .engine import Engine

Event = Callable[[str, str], None]


def connect_engine() -> Engine:
    from .engine import Engine  # the Docker SDK is imported only when a server is needed

    return Engine.connect()


def engine_env() -> dict[str, str] | None:
    """The engine's location for the watchdog (None: it finds the engine itself, or fails)."""
    from .locate import locate

    try:
        return locate().environ()
    except EngineUnavailable:
        return None


class Connection:
    """The engine (connected once), the watchdog, the lease and the state folder of one process.

    ``shared``: an xdist worker, whose run's watchdog and sweep are the controller's. ``keep``:
    --testserver-keep, where nothing is removed, so nothing watches or leases.
    """

    def __init__(
        self,
        context: RunContext,
        *,
        shared: bool,
        keep: bool,
        connect: Callable[[], Engine] | None = None,
        event: Event,
    ) -> None:
        self.context = context
        self.shared = shared
        self.keep = keep
        self._connect = connect
        self._event = event
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._engine_error: TestserverError | None = None
        self._watchdog: reaper.Watchdog | None = None
        self._watchdog_started: threading.Thread | None = None
        self._lease: reaper.Lease | None = None
        self._state: StateDir | None = None
        self._state_error: UnsafeFolder | None = None
        self._stopped = False
        self.used_engine = False  # told to the xdist controller at the end (workeroutput)

    @property
    def connected(self) -> Engine | None:
        """The engine if this process connected to it (teardown never connects)."""
        with self._lock:
            return self._engine

    def engine(self) -> Engine:
        with self._lock:
            if self._engine_error is not None:
                raise self._engine_error
            if self._engine is None:
                try:
                    self._engine = (self._connect or connect_engine)()
                except TestserverError as exc:
                    self._engine_error = exc
                    raise
                self._on_connect(self._engine)
            return self._engine

    def _on_connect(self, engine: Engine) -> None:
        self._event("engine", f"engine {engine.version} at {engine.address}")
        self.used_engine = True  # the controller sweeps what the workers made
        if not self.shared and not self.keep:
            # Spawning a process costs milliseconds: do it beside the first server's start.
            self._watchdog_started = threading.Thread(
                target=self._start_watchdog, args=(engine,), daemon=True
            )
            self._watchdog_started.start()

    def _start_watchdog(self, engine: Engine) -> None:
        self._watchdog = reaper.Watchdog.start(self.context.run_id, engine.location.environ())

    def hold_lease(self) -> None:
        """The run's lease, one period after the first container's start (see reaper.Lease).

        Until then nothing needs it: another run judges an object without a lease by the
        object's own age, and ours are younger than their time-to-live. Its rounds also sweep
        runs known to be dead; this user's folder is tidied now, in the background.
        """
        with self._lock:
            engine = self._engine
            if engine is None or self._lease is not None or self._stopped or self.keep:
                return
            if not self.context.lease_ttl:
                return
            holder = self.context.worker or "main"
            self._lease = reaper.Lease(engine, self.context, holder).start()
        if not self.shared:
            threading.Thread(target=self._tidy_folder, daemon=True).start()

    def _tidy_folder(self) -> None:
        with contextlib.suppress(OSError, UnsafeFolder):
            tidy_locks(self.state_dir())

    def state_dir(self) -> StateDir:
        """This run's private folder: the controller's choice, or this user's (made safe)."""
        with self._lock:
            if self._state_error is not None:
                raise self._state_error
            if self._state is None:
                try:
                    self._state, warning = user_state_dir(self.context.state_dir)
                except (OSError, UnsafeFolder) as exc:
                    why = reason(exc)
                    self._state_error = UnsafeFolder(f"no private folder for the run: {why}")
                    raise self._state_error from None
                if warning:
                    self._event("warning", warning)
            return self._state

    # the end of the run
    def stop(self) -> None:
        """No new lease from now on; the running one stops renewing; the watchdog is up."""
        with self._lock:
            self._stopped = True
            lease = self._lease
        if lease is not None:
            lease.stop()
        if self._watchdog_started is not None:
            self._watchdog_started.join()

    def release_lease(self) -> None:
        """The lone run's lease (a worker's stays for the controller's sweep)."""
        lease = self._lease
        if lease is not None and not self.shared:
            lease.release()

    @property
    def has_lease_to_release(self) -> bool:
        return self._lease is not None and not self.shared

    def finish(self, *, clean: bool) -> None:
        """Tell the watchdog whether anything is left (it sweeps the run itself if so)."""
        if self._watchdog is None:
            return
        if clean:
            self._watchdog.done(sweep_dead_runs=self._sweep_is_due())
        else:
            self._watchdog.abandon()

    def _sweep_is_due(self) -> bool:
        """The runs known to be dead are swept by every run: by its lease's rounds when it
        lasted a lease period, else by its watchdog once it is over (sparingly, see reaper)."""
        try:
            state: StateDir | None = self.state_dir()
        except UnsafeFolder:
            state = None
        return reaper.watchdog_should_sweep(self._lease, state, self.context.lease_ttl)

    def close(self) -> None:
        engine = self.connected
        if engine is not None:
            engine.close()
        self.discard_state()

    def discard_state(self) -> None:
        with self._lock:
            state, self._state = self._state, None
        if state is not None:
            discard(state)
