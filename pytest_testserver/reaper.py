"""Nothing survives a run: sweeping by label, the run's lease, and a watchdog for killed runs.

The watchdog (watchdog.py) is a small Python process (no image) started with the run's first
container. It holds the read end of a pipe whose write end only the run's owner has: when the owner
exits normally it writes ``done``; when the owner dies (SIGKILL included) the watchdog sees the
pipe close or the owner's pid go, and removes everything labelled with the run id.

When pytest and its watchdog die together (a CI job container killed), the lease is what tells:
while a run lives it re-makes a small labelled volume on the engine; any later run on the same
engine, from any host or PID namespace, reaps the leftovers of a run whose lease ran out
(liveness.py decides who is dead).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .identity import DEFAULT_LEASE_TTL, LABEL_LEASE, LABEL_RUN, Owner, RunContext
from .liveness import Found, dead_runs, removal_order

if TYPE_CHECKING:
    from .engine import Engine
    from .folders import StateDir

# After an abnormal end, orphaned xdist workers may still be creating containers for a moment.
RESWEEP_AFTER = (1.0, 2.0, 3.0)


SWEEP_DEADLINE = 30.0  # one sweep's engine calls, each: a stalled engine must not hold a run
LEASE_PERIODS = 4  # renewals within one time-to-live: three may fail before the run looks dead


def remove_all(engine: Engine, objects: Iterable[Found]) -> list[str]:
    """Remove each object on its own (containers concurrently, then networks, then volumes).

    Any failure, of any type (a timeout, paramiko's ChannelException over ssh://), is a
    problem reported for that object; it never stops the removal of the others.
    """
    problems: list[str] = []

    def remove(item: Found) -> None:
        try:
            engine.remove(item)
        except Exception as exc:
            if "already in progress" not in str(exc):
                problems.append(f"could not remove {item.kind} {item.id[:12]}: {exc}")

    for wave in removal_order(objects):
        threads = [engine.thread(remove, item) for item in wave]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return problems


def sweep(engine: Engine, run_id: str) -> list[str]:
    """Remove what is labelled with ``run_id`` (never what the run kept); returns problems."""
    with engine.deadline(time.monotonic() + SWEEP_DEADLINE):
        try:
            objects = engine.objects({LABEL_RUN: run_id})
        except Exception as exc:
            return [f"could not list what run {run_id} left: {exc}"]
        return remove_all(engine, [item for item in objects if not item.kept])


def sweep_dead_runs(engine: Engine, own_run: str) -> list[str]:
    """Remove what runs known to be dead left; live runs (and kept objects) are not touched."""
    with engine.deadline(time.monotonic() + SWEEP_DEADLINE):
        everything = engine.objects()
        now = engine.now()
    problems: list[str] = []
    for objects in dead_runs(everything, now, Owner.this_process(), exclude=own_run).values():
        with engine.deadline(time.monotonic() + SWEEP_DEADLINE):
            problems += remove_all(engine, objects)
    return problems


class Lease:
    """Keeps the run alive in others' eyes: a labelled volume re-made every ttl/4 seconds.

    One per process that makes things on the engine (the lone pytest process, each xdist worker,
    the controller once a worker is done). Between renewals it sweeps runs known to be dead, so a
    long run reaps what a killed job left while it runs; a shorter one leaves that sweep to its
    watchdog, after the run (``sweep_is_due``).
    """

    def __init__(self, engine: Engine, context: RunContext, holder: str) -> None:
        self._engine = engine
        self._context = context
        self._prefix = f"testserver-lease-{context.run_id}-{holder}"
        self._period = sweep_period(context.lease_ttl)
        self._stop = threading.Event()
        self._current: str | None = None
        self._count = 0
        self.swept = False  # dead runs were swept in this process: its watchdog need not
        self._thread = threading.Thread(target=self._run, name="testserver-lease", daemon=True)

    def start(self) -> Lease:
        self._thread.start()
        return self

    def _run(self) -> None:
        # The first lease one period after the run's first container: until then, another run
        # judges ours alive by that container's age (younger than the time-to-live), so a run
        # shorter than a period makes no lease at all, and its start pays for none.
        if self._stop.wait(self._period):
            return
        while True:
            deadline = self._engine.deadline(time.monotonic() + self._period)
            with deadline, contextlib.suppress(Exception):  # the next renewal tries again
                self.renew()
            if self._stop.is_set():
                return
            with contextlib.suppress(Exception):  # housekeeping: the next period tries again
                sweep_dead_runs(self._engine, self._context.run_id)
            self.swept = True
            if self._stop.wait(self._period):
                return

    def renew(self) -> None:
        """Make the next lease, then remove the one before (there is always one)."""
        self._count += 1
        name = f"{self._prefix}-{self._count}"
        labels = {**self._context.labels(), LABEL_LEASE: "1"}
        self._engine.create_volume(name, labels)
        previous, self._current = self._current, name
        if previous is not None:
            self._engine.remove_volume(previous)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop renewing; the last lease stays until ``release`` or the run's final sweep."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def release(self) -> None:
        """Remove the current lease: the run ended and nothing of it is left."""
        self.stop()
        current, self._current = self._current, None
        if current is not None:
            self._engine.remove_volume(current)


SWEPT_STAMP = "dead-runs-swept"  # in the user's private folder: when a run of theirs last swept


def sweep_period(lease_ttl: int) -> float:
    """How often a user's runs sweep dead runs: a lease period (one of its time-to-live)."""
    return max(1.0, (lease_ttl or DEFAULT_LEASE_TTL) / LEASE_PERIODS)


def sweep_is_due(state: StateDir | None, period: float) -> bool:
    """Whether a run that never swept should have its watchdog sweep dead runs after it.

    Not when another run of this user asked for that within ``period`` (a suite of many short
    runs sweeps every period, not every run); the stamp is renewed here when it is due. Without
    a private folder (or with a stamp not ours), always.
    """
    if state is None:
        return True
    try:
        info = state.stat(SWEPT_STAMP)
        ours = stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()
        if ours and 0 <= time.time() - info.st_mtime < period:
            return False
    except OSError:
        pass  # none yet, or not readable: due
    with contextlib.suppress(OSError):  # a link planted there: refused, and the sweep is due
        fd = state.open_file(SWEPT_STAMP, os.O_WRONLY | os.O_CREAT)
        try:
            os.utime(fd)
        finally:
            os.close(fd)
    return True


def watchdog_should_sweep(lease: Lease | None, state: StateDir | None, lease_ttl: int) -> bool:
    """Whether a run ending cleanly asks its watchdog to sweep dead runs after it: not when its
    lease's rounds swept already (it lasted a lease period), else when ``sweep_is_due``."""
    if lease is not None and lease.swept:
        return False
    return sweep_is_due(state, sweep_period(lease_ttl))


def sweep_dead_runs_once(own_run: str) -> None:
    """The watchdog's sweep after a short run: the runs known to be dead, then nothing."""
    from .engine import Engine

    engine = Engine.connect()
    try:
        sweep_dead_runs(engine, own_run)
    finally:
        engine.close()


def watchdog_command() -> list[str]:
    """How to run watchdog.py: as a file without ``site`` (fast), else as a module."""
    script = Path(__file__).with_name("watchdog.py")
    if script.is_file():
        return ["-S", str(script)]
    return ["-m", "pytest_testserver.watchdog"]  # installed where files have no paths (a zip)


class Watchdog:
    """The owner's side of the watchdog process."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: IO[bytes]) -> None:
        self.process = process
        self._pipe = pipe

    @classmethod
    def start(cls, run_id: str, engine_env: Mapping[str, str] | None = None) -> Watchdog:
        """``engine_env``: DOCKER_HOST and its TLS settings, so that the watchdog sweeps the
        engine this run used, whatever Docker contexts say when it wakes."""
        env = None
        if engine_env:
            env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
            env.update(engine_env)
        process = subprocess.Popen(
            [sys.executable, *watchdog_command(), run_id, str(os.getpid())],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C to pytest's process group must not reach it
            close_fds=True,
        )
        assert process.stdin is not None
        return cls(process, process.stdin)

    def _finish(self, message: bytes) -> None:
        try:
            self._pipe.write(message)
            self._pipe.close()
        except OSError:
            pass

    def done(self, *, sweep_dead_runs: bool = False) -> None:
        """The run ended and cleaned up: the watchdog exits without touching anything of it
        (``sweep_dead_runs``: after sweeping the runs known to be dead, in its own time).

        Not waited for here (it may still be starting up): a daemon thread reaps it.
        """
        self._finish(b"done sweep\n" if sweep_dead_runs else b"done\n")
        threading.Thread(target=self.process.wait, daemon=True).start()

    def abandon(self) -> None:
        """The run was interrupted: let the watchdog sweep for stragglers, in the background."""
        self._finish(b"")
        threading.Thread(target=self.process.wait, daemon=True).start()


def sweep_abandoned_run(run_id: str) -> None:
    """The owner died without cleaning up: sweep now, and again while orphans may still create."""
    from .engine import Engine

    engine = Engine.connect()
    try:
        sweep(engine, run_id)
        started = time.monotonic()
        for at in RESWEEP_AFTER:
            time.sleep(max(0.0, started + at - time.monotonic()))
            sweep(engine, run_id)
    finally:
        engine.close()


def keep_message(
    run_id: str, count: int | None, networks: list[str], volumes: list[str] | None = None
) -> str:
    label = f"label={LABEL_RUN}={run_id}"
    what = f"{count} container(s)" if count is not None else "the containers"
    text = (
        f"testserver: kept {what} of run {run_id} (--testserver-keep); later runs leave them "
        f"alone; remove them with: docker rm -f $(docker ps -aq --filter {label})"
    )
    if networks:
        text += f" && docker network rm {' '.join(networks)}"
    if volumes:
        text += f" && docker volume rm {' '.join(volumes)}"
    return text


def leftover_hint(run_id: str) -> str:
    """What a user runs to remove what a run could not."""
    label = f"label={LABEL_RUN}={run_id}"
    return (
        f"run {run_id} left these behind; remove them with: "
        f"docker rm -f $(docker ps -aq --filter {label}); "
        f"docker network rm $(docker network ls -q --filter {label}); "
        f"docker volume rm $(docker volume ls -q --filter {label})"
    )
