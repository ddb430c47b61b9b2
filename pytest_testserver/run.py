"""Who a run is, where its processes keep their files, and the locks they share.

The run id is made once, by the xdist controller or the lone pytest process, and labels everything
the run makes, together with what tells a later run whether its owner is *known* dead: host name,
PID namespace, boot id, pid and the process's start time.

Files live in a per-user folder under the temp dir. Another local user may have made that name
first, world-writable, with symlinks planted inside: the folder is used only when it is a real
directory of ours that nobody else may write to, and everything in it is opened relative to it,
never through a link. When it is not safe, a fresh private folder is made instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LockTimeout, UnsafeFolder

LABEL_PREFIX = "pytest-testserver."
LABEL_RUN = LABEL_PREFIX + "run"
LABEL_SERVER = LABEL_PREFIX + "server"
LABEL_PID = LABEL_PREFIX + "pid"
LABEL_HOST = LABEL_PREFIX + "host"
LABEL_PIDNS = LABEL_PREFIX + "pidns"
LABEL_BOOT = LABEL_PREFIX + "boot"
LABEL_STARTED = LABEL_PREFIX + "started"
LABEL_KEPT = LABEL_PREFIX + "kept"
LABEL_LEASE_TTL = LABEL_PREFIX + "lease-ttl"
LABEL_LEASE = LABEL_PREFIX + "lease"

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
MAX_STATE_FILE = 1 << 20
DEFAULT_LEASE_TTL = 90
LEASE_TTL_ENV = "TESTSERVER_LEASE_TTL"
LOCK_POLL_FIRST = 0.005
LOCK_POLL_MAX = 0.05


def new_run_id() -> str:
    # What secrets.token_hex does, without importing hmac and OpenSSL's hashlib at start-up.
    return os.urandom(5).hex()


def project_digest(root: str) -> str:
    """Names a project by its root folder, however reached (symlinks, relative paths): built
    images carry it, so --testserver-prune touches only this project's."""
    import hashlib  # not at start-up: see new_run_id

    return hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:16]


def lease_ttl() -> int:
    """Seconds a run's lease counts as alive: 90, or ``$TESTSERVER_LEASE_TTL`` (tests use a few)."""
    number = plain_number(os.environ.get(LEASE_TTL_ENV, ""), 86400)
    return max(number, 3) if number is not None else DEFAULT_LEASE_TTL


def plain_number(text: str, limit: int) -> int | None:
    """An ASCII decimal number below ``limit`` (labels can be forged: "²" or 2**70 is None)."""
    if not (text.isascii() and text.isdecimal()) or len(text) > len(str(limit)):
        return None
    number = int(text)
    return number if number < limit else None


def _read_small(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("ascii", "replace").strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """The inode of this process's PID namespace ("" where there is none to read)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def boot_id() -> str:
    return _read_small("/proc/sys/kernel/random/boot_id")


def process_start(pid: int) -> str:
    """When ``pid`` started, in clock ticks since boot: a reused pid has another ("" unknown)."""
    text = _read_small(f"/proc/{pid}/stat")
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = text[text.rfind(")") + 1 :].split()
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True)
class Owner:
    """The process that owns a run, described well enough to know, from anywhere, if it died."""

    host: str
    pid: int
    pidns: str
    boot: str
    started: str

    @classmethod
    def this_process(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, pid_namespace(), boot_id(), process_start(pid))

    def labels(self) -> dict[str, str]:
        return {
            LABEL_HOST: self.host,
            LABEL_PID: str(self.pid),
            LABEL_PIDNS: self.pidns,
            LABEL_BOOT: self.boot,
            LABEL_STARTED: self.started,
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        pid = plain_number(labels.get(LABEL_PID, ""), 1 << 31)
        if pid is None:
            return None
        return cls(
            labels.get(LABEL_HOST, ""),
            pid,
            labels.get(LABEL_PIDNS, ""),
            labels.get(LABEL_BOOT, ""),
            labels.get(LABEL_STARTED, ""),
        )

    def known_dead(self, here: Owner | None = None) -> bool:
        """True only when this machine can see for sure that the owner is gone.

        Same host name, PID namespace and boot as this process (a job container sharing the
        engine, another PID namespace, another host: not ours to judge), and the pid gone or now
        a different process (its start time changed).
        """
        here = here or Owner.this_process()
        same_place = (self.host, self.pidns, self.boot) == (here.host, here.pidns, here.boot)
        if not (same_place and self.pidns and self.boot and self.started):
            return False
        if not pid_alive(self.pid):
            return True
        started = process_start(self.pid)
        return bool(started) and started != self.started


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False  # gone, or a number no process can have
    except PermissionError:
        return True  # someone else's live process
    return True


@dataclass(frozen=True)
class RunContext:
    """The identity of one test run, as seen from one of its processes."""

    run_id: str
    owner: Owner = field(default_factory=Owner.this_process)  # the controller, or this process
    worker: str | None = None  # xdist worker id ("gw0"); None outside workers
    kept: bool = False  # --testserver-keep: what the run makes outlives it, never reaped
    lease_ttl: int = 0  # seconds a lease of this run counts as alive (0: no lease)
    state_dir: str | None = None  # the run's private folder, as the controller chose it

    def labels(self, server: str | None = None) -> dict[str, str]:
        labels = {LABEL_RUN: self.run_id, **self.owner.labels()}
        if self.lease_ttl:
            labels[LABEL_LEASE_TTL] = str(self.lease_ttl)
        if self.kept:
            labels[LABEL_KEPT] = "1"
        if server is not None:
            labels[LABEL_SERVER] = server
        return labels

    def scoped(self, share: str) -> str:
        """The name prefix for a server of this ``share`` mode: per run, or per worker."""
        if share == "worker" and self.worker:
            return f"testserver-{self.run_id}-{self.worker}"
        return f"testserver-{self.run_id}"


def reason(exc: OSError | UnsafeFolder) -> str:
    """Why a folder could not be used, in a few words."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def user_name() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def _check(fd: int, shown: str) -> None:
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"{shown} is not a directory")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise UnsafeFolder(f"{shown} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o022:
        raise UnsafeFolder(f"{shown} may be written by other users (mode {info.st_mode & 0o777:o})")


def _open_dir(name: str | Path, parent: int | None, shown: str) -> int:
    """Make ``name`` (private) if missing, open it without following a link, and check it."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent)
    try:
        fd = os.open(name, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFolder(f"{shown} is a symlink or not a directory") from None
        raise UnsafeFolder(f"{shown} cannot be used: {exc.strerror or exc}") from None
    try:
        _check(fd, shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


class StateDir:
    """A private folder, held open: every name in it is resolved relative to it, links refused."""

    def __init__(self, path: Path, fd: int, *, fresh: bool = False) -> None:
        self.path = path
        self.fd = fd
        self.fresh = fresh  # made for this run (the usual one was not safe): removed at its end

    @classmethod
    def open(cls, path: str | Path) -> StateDir:
        return cls(Path(path), _open_dir(path, None, str(path)))

    def child(self, name: str) -> StateDir:
        return StateDir(self.path / name, _open_dir(name, self.fd, str(self.path / name)))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def open_file(self, name: str, flags: int, mode: int = 0o600) -> int:
        return os.open(name, flags | NOFOLLOW | CLOEXEC, mode, dir_fd=self.fd)

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def stat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def read_text(self, name: str) -> str | None:
        """A small file of ours, or None if missing; a link or someone else's file is an error."""
        try:
            fd = self.open_file(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFolder(f"{self.path / name} is a symlink") from None
            raise
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or (
                hasattr(os, "getuid") and info.st_uid != os.getuid()
            ):
                raise UnsafeFolder(f"{self.path / name} is not a file of this user")
            return f.read(MAX_STATE_FILE).decode("utf-8", "replace")

    def read_json(self, name: str) -> Any:
        """The JSON in ``name`` (None if missing); an unreadable one is a one-line error."""
        try:
            text = self.read_text(name)
            return None if text is None else json.loads(text)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UnsafeFolder(f"{self.path / name} cannot be read: {reason}") from None

    def write_json(self, name: str, data: object) -> None:
        """Write ``name`` whole or not at all: a temporary file of ours, renamed over it."""
        tmp = f".{name}.{os.getpid()}.tmp"
        fd = self.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.unlink(tmp)
            raise

    def touch(self, name: str) -> None:
        os.close(self.open_file(name, os.O_WRONLY | os.O_CREAT))

    def exists(self, name: str) -> bool:
        try:
            self.stat(name)
        except FileNotFoundError:
            return False
        return True

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)  # a link is removed itself, never what it points to

    def remove_tree(self, name: str) -> None:
        """Remove folder ``name`` and what is in it; links inside are removed, never followed."""
        try:
            fd = os.open(name, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                self.unlink(name)  # a link or a file where a folder was: remove the entry itself
                return
            raise
        inner = StateDir(self.path / name, fd)
        try:
            for entry in inner.names():
                if stat.S_ISDIR(inner.stat(entry).st_mode):
                    inner.remove_tree(entry)
                else:
                    inner.unlink(entry)
        finally:
            inner.close()
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(name, dir_fd=self.fd)


def temp_base() -> tuple[Path, str | None]:
    """The temp dir, and a note when ``$TMPDIR`` was set but Python had to use another one."""
    base = Path(tempfile.gettempdir())
    wanted = os.environ.get("TMPDIR")
    if wanted and Path(wanted) != base:
        return (
            base,
            f"TMPDIR={wanted!r} is not usable (missing, full or not writable); using {base}",
        )
    return base, None


def user_state_dir(
    path: str | None = None, *, fallback: bool = True
) -> tuple[StateDir, str | None]:
    """The per-user folder (or ``path``, the controller's choice), and a warning to show once.

    When the usual folder is not safe, a fresh private one is made beside it and used instead
    (unless not ``fallback``: then UnsafeFolder); a folder handed over by the controller is used
    as it is or not at all.
    """
    if path is not None:
        return StateDir.open(path), None
    base, note = temp_base()
    usual = base / f"pytest-testserver-{user_name()}"
    try:
        return StateDir.open(usual), note
    except UnsafeFolder as exc:
        if not fallback:
            raise
        why = str(exc)
    fresh = Path(tempfile.mkdtemp(prefix=f"pytest-testserver-{user_name()}-", dir=base))
    state = StateDir(fresh, _open_dir(fresh, None, str(fresh)), fresh=True)
    warning = f"{why}; using a fresh private folder {fresh} for this run"
    return state, f"{note}; {warning}" if note else warning


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


def discard(state: StateDir) -> None:
    """Close the folder; a fresh one (made because the usual one was not safe) is removed."""
    state.close()
    if not state.fresh:
        return
    with contextlib.suppress(OSError, UnsafeFolder):
        parent = StateDir(state.path.parent, os.open(state.path.parent, os.O_RDONLY | DIRECTORY))
        try:
            parent.remove_tree(state.path.name)
        finally:
            parent.close()


def file_name(tag: str) -> str:
    """An image tag as a plain file name."""
    return tag.replace("/", "_").replace(":", "_")
