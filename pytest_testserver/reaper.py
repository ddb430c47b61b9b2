"""Nothing survives a run: sweeping by label, a watchdog for killed runs, and dead runs' leftovers.

The watchdog (watchdog.py) is a small Python process (no image) started with the run's first
container. It holds the read end of a pipe whose write end only the run's owner has: when the owner
exits normally it writes ``done``; when the owner is killed (SIGKILL included) the OS closes the
pipe, the watchdog reads EOF without ``done``, and removes everything labelled with the run id.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .coordination import LABEL_HOST, LABEL_PID, LABEL_RUN
from .errors import TestserverError

if TYPE_CHECKING:
    from .engine import Engine

# After an abnormal end, orphaned xdist workers may still be creating containers for a moment.
RESWEEP_AFTER = (1.0, 2.0, 3.0)


def sweep(engine: Engine, run_id: str) -> list[str]:
    """Remove every container, then every network, labelled with ``run_id``; returns problems."""
    problems: list[str] = []

    def remove(container: str) -> None:
        try:
            engine.remove_container(container)
        except TestserverError as exc:
            if "already in progress" not in str(exc):
                problems.append(f"could not remove container {container[:12]}: {exc}")

    containers = engine.list_containers({LABEL_RUN: run_id})
    threads = [threading.Thread(target=remove, args=(c,)) for c in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for network in engine.list_networks({LABEL_RUN: run_id}):
        try:
            engine.remove_network(network)
        except TestserverError as exc:
            problems.append(f"could not remove network {network[:12]}: {exc}")
    return problems


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def dead_runs(engine: Engine, host: str, alive: Callable[[int], bool] = pid_alive) -> set[str]:
    """Run ids on this host whose owning process is gone."""
    runs: set[str] = set()
    for labels in engine.labels_of_everything({LABEL_HOST: host}):
        run, pid = labels.get(LABEL_RUN), labels.get(LABEL_PID, "")
        if run and pid.isdigit() and not alive(int(pid)):
            runs.add(run)
    return runs


def sweep_dead_runs(engine: Engine, host: str) -> list[str]:
    """Remove what runs of this host left when they were killed; live runs are not touched."""
    problems: list[str] = []
    for run in sorted(dead_runs(engine, host)):
        problems += sweep(engine, run)
    return problems


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
    def start(cls, run_id: str) -> Watchdog:
        process = subprocess.Popen(
            [sys.executable, *watchdog_command(), run_id],
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

    def done(self) -> None:
        """The run ended and cleaned up: the watchdog exits without touching anything.

        Not waited for here (it may still be starting up): a daemon thread reaps it.
        """
        self._finish(b"done\n")
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
