"""Where a run's processes keep their files: a private per-user folder, links refused.

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
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import UnsafeFolder

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
MAX_STATE_FILE = 1 << 20


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
