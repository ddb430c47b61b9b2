"""The xdist controller's part of a run: its folder, the watchdog, and the final sweep.

The controller makes the run id and chooses the run's private folder; workers get both through
``workerinput``, so that every process of a run uses the same folder even when ``$TMPDIR`` is full
or planted. Workers tell the controller whether they made anything on the engine through
``workeroutput`` (a crashed worker counts as having made something): the final sweep never
depends on a file that could not be written.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import reaper
from .connection import connect_engine, engine_env
from .errors import TestserverError, UnsafeFolder
from .folders import StateDir, discard, reason, user_state_dir
from .identity import RunContext
from .locks import tidy_locks
from .runfolder import dead_run_folders, make_run_folder, remove_run_folder

if TYPE_CHECKING:
    from .engine import Engine


class RunOwner:
    """The controller's side: it outlives every worker and removes what they made."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.used = False
        self.warning: str | None = None
        self.state: StateDir | None = None
        self._lock = threading.Lock()
        self._lease: reaper.Lease | None = None
        self._lease_engine: Engine | None = None
        self._finished = False  # a lease still connecting when the run ends must not start
        try:
            self.state, self.warning = user_state_dir()
            make_run_folder(self.state, context.run_id, context.owner)
        except (OSError, UnsafeFolder) as exc:
            self.warning = f"no private folder for the run's state ({reason(exc)}); "
            self.warning += "servers with share: run cannot be shared by the workers"
        else:
            threading.Thread(target=self._tidy, daemon=True).start()
        self.watchdog = (
            None if context.kept else reaper.Watchdog.start(context.run_id, engine_env())
        )

    @property
    def state_path(self) -> str | None:
        return str(self.state.path) if self.state is not None else None

    def _tidy(self) -> None:
        """Folders of controllers that were killed, and lock files nobody used for long."""
        state = self.state
        if state is None:
            return
        for run in list(dead_run_folders(state)):
            remove_run_folder(state, run)
        tidy_locks(state)

    def worker_done(self, used_engine: bool, crashed: bool) -> None:
        """A worker finished (or died): if it made anything, keep the run's lease from now on."""
        if not (used_engine or crashed):
            return
        with self._lock:
            self.used = True
            start = (
                self._lease is None
                and not self._finished
                and not self.context.kept
                and self.context.lease_ttl
            )
        if start:
            threading.Thread(target=self._hold_lease, daemon=True).start()

    def _hold_lease(self) -> None:
        # The workers' leases end with them; the controller holds the run's until its sweep.
        try:
            engine = connect_engine()
        except TestserverError:
            return
        with self._lock:
            if self._finished or self._lease is not None:
                # The run ended (or another lease began) while this one connected: starting
                # now would renew a lease after the final sweep, for as long as the process
                # lives (found by the engine fixture's volume check, an in-process -n 2 run).
                engine.close()
                return
            self._lease_engine = engine
            self._lease = reaper.Lease(engine, self.context, "controller").start()

    def sweep(self, *, force: bool = False) -> tuple[list[str], str | None]:
        """Remove the run's containers and networks: (problems, --testserver-keep note)."""
        if not (self.used or force):
            return [], None
        if self.context.kept:
            return [], reaper.keep_message(self.context.run_id, None, [])
        try:
            engine = connect_engine()
        except TestserverError as exc:
            return [str(exc)], None
        try:
            problems = reaper.sweep(engine, self.context.run_id)
        finally:
            engine.close()
        if problems:
            problems.append(reaper.leftover_hint(self.context.run_id))
        return problems, None

    def finish(self) -> tuple[list[str], str | None]:
        """After every worker is done: sweep, forget the shared state, dismiss the watchdog.

        The watchdog is told ``done`` only when nothing is left; otherwise it is let go without
        it, and sweeps once more on its own.
        """
        with self._lock:
            self._finished = True
            lease, engine = self._lease, self._lease_engine
        if lease is not None:
            lease.stop()
        outcome = self.sweep()
        if engine is not None:
            engine.close()
        sweep_dead_runs = self.used and reaper.watchdog_should_sweep(
            lease, self.state, self.context.lease_ttl
        )
        if self.state is not None:
            remove_run_folder(self.state, self.context.run_id)
            discard(self.state)
        if self.watchdog is not None:
            if outcome[0]:
                self.watchdog.abandon()
            else:
                self.watchdog.done(sweep_dead_runs=sweep_dead_runs)
        return outcome
