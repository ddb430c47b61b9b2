"""Locks the processes of a host share, in a private folder: bounded waits that name the holder.

One build per image tag on the host (``build_lock``), one start of a shared server per run, one
run network: each an exclusive ``flock`` on a file of the private folder, waited for at most a
given time, with its holder written inside so that a timeout says who held it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import LockTimeout, UnsafeFolder
from .folders import StateDir, file_name

LOCK_POLL_FIRST = 0.005
LOCK_POLL_MAX = 0.05


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its holder wrote it down."""

    pid: int
    host: str
    run: str
    since: float

    def describe(self) -> str:
        age = max(0.0, time.time() - self.since)
        return f"pid {self.pid} on {self.host} (run {self.run}, for {age:.0f}s)"


def _holder(text: str | None) -> Holder | None:
    try:
        data = json.loads(text or "")
        return Holder(int(data["pid"]), str(data["host"]), str(data["run"]), float(data["since"]))
    except (ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def hold_lock(
    folder: StateDir, name: str, *, what: str, run: str, timeout: float | None
) -> Iterator[None]:
    """An exclusive lock on ``folder/name`` across processes, waited for at most ``timeout``.

    ``flock`` on a file of ours (never through a link); the holder writes who it is into the
    file, so a waiter that gives up can say whom it waited for. A lock file removed while we
    waited (litter removal) is noticed by its inode, and the new one is locked instead.
    """
    import fcntl

    started = time.monotonic()
    pause = LOCK_POLL_FIRST
    while True:
        fd = folder.open_file(name, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            waited = time.monotonic() - started
            if timeout is not None and waited + pause > timeout:
                raise LockTimeout(
                    what, folder.path / name, waited, _holder(read_quietly(folder, name))
                ) from None
            time.sleep(pause)
            pause = min(pause * 1.5, LOCK_POLL_MAX)
            continue
        except BaseException:
            os.close(fd)
            raise
        try:
            now = folder.stat(name)
        except FileNotFoundError:
            now = None
        mine = os.fstat(fd)
        if now is None or (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
            os.close(fd)  # unlinked while we waited: lock the file that has the name now
            continue
        break
    try:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run": run,
            "since": time.time(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def read_quietly(folder: StateDir, name: str) -> str | None:
    try:
        return folder.read_text(name)
    except (OSError, UnsafeFolder):
        return None


def try_remove_lock(folder: StateDir, name: str) -> bool:
    """Remove an unheld lock file (taken first, so no one holds or is about to hold it)."""
    import fcntl

    try:
        fd = folder.open_file(name, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    try:
        folder.unlink(name)
    finally:
        os.close(fd)
    return True


LOCKS = "locks"
MAX_LOCK_FILES = 64
LOCK_FILE_AGE = 7 * 24 * 3600


def build_lock(
    state: StateDir, tag: str, run: str, timeout: float | None
) -> contextlib.AbstractContextManager[None]:
    """Held while an image is looked up and, if missing, built: one build per tag on the host."""
    locks = state.child(LOCKS)
    name = f"build-{file_name(tag)}.lock"

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        try:
            with hold_lock(locks, name, what=f"build ({tag})", run=run, timeout=timeout):
                yield
        finally:
            locks.close()

    return held()


def tidy_locks(state: StateDir) -> None:
    """One lock file per image tag piles up: keep the newest few, none unused for a week."""
    try:
        locks = state.child(LOCKS)
    except (OSError, UnsafeFolder):
        return
    try:
        found = []
        for name in locks.names():
            with contextlib.suppress(OSError):
                found.append((locks.stat(name).st_mtime, name))
        found.sort(reverse=True)
        now = time.time()
        for i, (mtime, name) in enumerate(found):
            if i >= MAX_LOCK_FILES or now - mtime > LOCK_FILE_AGE:
                try_remove_lock(locks, name)
    finally:
        locks.close()
