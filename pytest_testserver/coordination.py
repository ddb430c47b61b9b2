"""Who a run is, and how the processes of one run (xdist workers) share its servers.

The run id is made once, by the xdist controller or the lone pytest process, and labels everything
the run makes. Servers with ``share: run`` are started once per run: the first worker that needs
one starts it under a file lock and publishes where it is; the others read that.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL_PREFIX = "pytest-testserver."
LABEL_RUN = LABEL_PREFIX + "run"
LABEL_SERVER = LABEL_PREFIX + "server"
LABEL_PID = LABEL_PREFIX + "pid"
LABEL_HOST = LABEL_PREFIX + "host"
USED_MARK = "engine-used"


def new_run_id() -> str:
    # What secrets.token_hex does, without importing hmac and OpenSSL's hashlib at start-up.
    return os.urandom(5).hex()


@dataclass(frozen=True)
class RunContext:
    """The identity of one test run, as seen from one of its processes."""

    run_id: str
    owner_pid: int = field(default_factory=os.getpid)  # the controller, or this process
    worker: str | None = None  # xdist worker id ("gw0"); None outside workers

    def labels(self, server: str | None = None) -> dict[str, str]:
        labels = {
            LABEL_RUN: self.run_id,
            LABEL_PID: str(self.owner_pid),
            LABEL_HOST: socket.gethostname(),
        }
        if server is not None:
            labels[LABEL_SERVER] = server
        return labels

    def scoped(self, share: str) -> str:
        """The name prefix for a server of this ``share`` mode: per run, or per worker."""
        if share == "worker" and self.worker:
            return f"testserver-{self.run_id}-{self.worker}"
        return f"testserver-{self.run_id}"


def shared_dir() -> Path:
    """A per-user folder every run on this machine sees: build locks live here, by image tag.

    Not pytest's base temp dir: that is per run, and a build lock must hold across runs.
    """
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    path = Path(tempfile.gettempdir()) / f"pytest-testserver-{user}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@contextmanager
def file_lock(path: Path, timeout: float = -1) -> Iterator[None]:
    from filelock import FileLock

    with FileLock(str(path), timeout=timeout):
        yield


def file_name(tag: str) -> str:
    """An image tag as a plain file name."""
    return tag.replace("/", "_").replace(":", "_")


def build_lock(tag: str) -> Any:
    """Held while an image is looked up and, if missing, built: one build per tag."""
    locks = shared_dir() / "locks"
    locks.mkdir(exist_ok=True)
    return file_lock(locks / f"build-{file_name(tag)}.lock")


class SharedServers:
    """File-backed state of a run's ``share: run`` servers, read and written under locks."""

    def __init__(self, run_id: str) -> None:
        self.directory = shared_dir() / "runs" / run_id
        self.directory.mkdir(parents=True, exist_ok=True)

    def claimed(self, name: str) -> Any:
        return file_lock(self.directory / f"{name}.lock")

    def read(self, name: str) -> dict[str, Any] | None:
        try:
            with (self.directory / f"{name}.json").open(encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
                return data
        except FileNotFoundError:
            return None

    def write(self, name: str, data: dict[str, Any]) -> None:
        tmp = self.directory / f".{name}.json.{os.getpid()}"
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.directory / f"{name}.json")

    def first_rebuild(self, tag: str) -> bool:
        """True once per run and tag (called under the tag's build lock)."""
        mark = self.directory / f"rebuilt-{file_name(tag)}"
        if mark.exists():
            return False
        mark.touch()
        return True

    def mark_used(self) -> None:
        (self.directory / USED_MARK).touch()

    def used(self) -> bool:
        return (self.directory / USED_MARK).exists()

    def remove(self) -> None:
        for path in self.directory.iterdir():
            path.unlink(missing_ok=True)
        self.directory.rmdir()


class RunOwner:
    """The xdist controller's part: the watchdog, and removing the run's servers at the end."""

    def __init__(self, context: RunContext, keep: bool) -> None:
        from .reaper import Watchdog

        self.context = context
        self.keep = keep
        self.shared = SharedServers(context.run_id)
        self.watchdog = None if keep else Watchdog.start(context.run_id)

    def sweep(self) -> tuple[list[str], str | None]:
        """Remove the run's containers and networks if a worker made any: (problems, kept note)."""
        if not self.shared.used():
            return [], None
        from .server import keep_message

        if self.keep:
            return [], keep_message(self.context.run_id, None, [])
        from . import reaper
        from .errors import TestserverError
        from .server import connect_engine

        try:
            engine = connect_engine()
        except TestserverError as exc:
            return [str(exc)], None
        try:
            return reaper.sweep(engine, self.context.run_id), None
        except TestserverError as exc:
            return [str(exc)], None
        finally:
            engine.close()

    def finish(self) -> tuple[list[str], str | None]:
        """After every worker is done: sweep, forget the shared state, dismiss the watchdog."""
        outcome = self.sweep()
        self.shared.remove()
        if self.watchdog is not None:
            self.watchdog.done()
        return outcome
