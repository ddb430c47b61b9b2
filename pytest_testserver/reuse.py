"""Warm reuse across runs (``--testserver-reuse``): which kept container a server may adopt.

A kept container carries no run label, so no run's teardown, sweep or leak check touches it. It
carries who keeps it (uid and host), for which project (its root folder), and the digest of its
whole definition: a run adopts it only when its own definition has the same digest, so a change
of image, command, environment, ports or bind mode gives a fresh container (and the stale one
goes). While a run uses it, that run holds a shared lock on it in the user's private folder; it
is removed (as stale, idle or by ``--testserver-reuse-clean``) only under the exclusive lock.
After each run that used it, a detached idle watch removes it once it has gone unused for the
idle time; a later run that adopts it takes that duty over.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .folders import StateDir
from .identity import LABEL_PREFIX, LABEL_SERVER

LABEL_REUSE = LABEL_PREFIX + "reuse"  # the definition's digest
LABEL_REUSE_OWNER = LABEL_PREFIX + "reuse-owner"  # uid@host
LABEL_REUSE_PROJECT = LABEL_PREFIX + "reuse-project"
FOLDER = "reuse"
FORMAT = 2  # bumped when what a definition covers changes: old containers stop matching
DEFAULT_IDLE = 1800.0


@dataclass(frozen=True)
class Keeper:
    """Who keeps containers for reuse: this user on this host, for one project."""

    owner: str
    project: str

    @classmethod
    def for_project(cls, root: str) -> Keeper:
        owner = owner_here()
        digest = hashlib.sha256(f"{owner}\0{os.path.realpath(root)}".encode()).hexdigest()
        return cls(owner, digest[:16])

    def selector(self, server: str | None = None) -> dict[str, str]:
        labels = {LABEL_REUSE_OWNER: self.owner, LABEL_REUSE_PROJECT: self.project}
        if server is not None:
            labels[LABEL_SERVER] = server
        return labels

    def labels(self, server: str, digest: str) -> dict[str, str]:
        return {**self.selector(server), LABEL_REUSE: digest}

    def name(self, server: str) -> str:
        """One kept container per server, user and project (the engine refuses a second)."""
        return f"testserver-kept-{self.project[:12]}-{os.getuid()}-{server}"


def owner_here() -> str:
    return f"{os.getuid()}@{socket.gethostname()}"


def definition_digest(parts: Mapping[str, object]) -> str:
    """The digest of everything that makes the container what it is (image id, command, env,
    ports and bind mode, names, init and the container options): equal digests,
    interchangeable containers."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Hold:
    """A lock on one kept container: shared while a run uses it, exclusive to remove it."""

    def __init__(self, folder: StateDir, name: str, fd: int) -> None:
        self.folder = folder
        self.name = name
        self._fd = fd

    @classmethod
    def take(cls, folder: StateDir, name: str, *, exclusive: bool) -> Hold | None:
        """The lock, or None at once when another run holds it the other way."""
        fd = folder.open_file(f"{name}.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return cls(folder, name, fd)

    @classmethod
    def take_alone(cls, folder: StateDir, name: str) -> Hold | Busy:
        """The shared lock of a run that uses the kept container alone: taken only when no
        other run holds it (``IN_USE``) and nobody is removing it (``REMOVING``).

        Two runs at once must not share one kept container: neither would reset it for the
        other's tests. Runs take it under a short mutex, exclusive first (proving nobody else
        holds it) and then shared (so that an idle watch or a clean sees it in use); a worker
        of the same run adopts it with a plain shared ``take``.
        """
        mutex = folder.open_file(f"{name}.claim", os.O_RDWR | os.O_CREAT)
        try:
            if not _lock_within(mutex, fcntl.LOCK_EX, CLAIM_WAIT):
                return IN_USE  # another run is taking it this very moment
            alone = cls.take(folder, name, exclusive=True)
            if alone is None:
                other = cls.take(folder, name, exclusive=False)
                if other is None:
                    return REMOVING
                other.release()
                return IN_USE
            try:  # not atomic: a remover may slip in between, and then it is being removed
                fcntl.flock(alone._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                alone.release()
                return REMOVING
            return alone
        finally:
            os.close(mutex)  # closing the file drops the mutex

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class Busy(str):
    """Why a kept container could not be taken."""


IN_USE = Busy("in use by another run")
REMOVING = Busy("being removed")
CLAIM_WAIT = 5.0  # the mutex is held for two flock calls: any wait longer is a stuck holder


def _lock_within(fd: int, operation: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def remember_use(
    folder: StateDir, name: str, container: str, idle: float, watcher: str | None = None
) -> None:
    """When the kept container was last used, and which idle watch answers for it (``None``:
    the one that does already)."""
    if watcher is None:
        record = folder.read_json(f"{name}.json")
        watcher = record.get("watcher") if isinstance(record, dict) else None
        if not isinstance(watcher, str):
            return  # no watch answers for it (cleaned meanwhile): nothing to tell
    folder.write_json(
        f"{name}.json",
        {"container": container, "last_used": time.time(), "idle": idle, "watcher": watcher},
    )


def watch_idle(
    folder: StateDir, name: str, container: str, idle: float, environ: Mapping[str, str] | None
) -> None:
    """Start the idle watch of a kept container a run has just taken (its lock held): the
    watch waits while any run holds it, so a run killed outright still gets its idle end."""
    token = uuid.uuid4().hex
    remember_use(folder, name, container, idle, token)
    start_idle_watch(folder, name, token, environ)


def forget(folder: StateDir, name: str) -> None:
    with contextlib.suppress(OSError):
        folder.unlink(f"{name}.json")


def start_idle_watch(
    folder: StateDir, name: str, token: str, engine_env: Mapping[str, str] | None
) -> int:
    """A detached process that removes the kept container once it has been idle long enough.

    Spawned, not a ``Popen``: it is meant to outlive the run, and an unwaited ``Popen`` is a
    ResourceWarning when collected. Its own session: Ctrl-C to pytest must not reach it.
    """
    env = dict(os.environ)
    if engine_env:
        env.pop("DOCKER_CONTEXT", None)
        env.update(engine_env)
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    return os.posix_spawn(
        sys.executable,
        [sys.executable, "-m", "pytest_testserver.idle", str(folder.path), name, token],
        env,
        file_actions=quiet,
        setsid=True,
    )


def idle_left(record: object, now: float) -> float | None:
    """Seconds until a kept container's idle time is up (<= 0: up); None for a bad record."""
    if not isinstance(record, dict):
        return None
    last, idle = record.get("last_used"), record.get("idle")
    if not isinstance(last, (int, float)) or not isinstance(idle, (int, float)):
        return None
    return float(last) + float(idle) - now


def clean(root: str) -> str:
    """``--testserver-reuse-clean``: remove this project's kept containers (not those in use)."""
    from .engine import Engine
    from .folders import user_state_dir

    keeper = Keeper.for_project(root)
    state, _ = user_state_dir(fallback=False)
    folder = state.child(FOLDER)
    removed: list[str] = []
    busy: list[str] = []
    engine = Engine.connect()
    try:
        with engine.deadline(time.monotonic() + 60):
            for found in engine.objects(keeper.selector()):
                if found.kind != "container":
                    continue
                name = keeper.name(found.labels.get(LABEL_SERVER, ""))
                hold = Hold.take(folder, name, exclusive=True)
                if hold is None:
                    busy.append(name)
                    continue
                try:
                    engine.remove_container(found.id)
                    forget(folder, name)
                    removed.append(name)
                finally:
                    hold.release()
        forget_orphans(folder, keeper)
    finally:
        engine.close()
        folder.close()
        state.close()
    return describe_removed(removed, busy)


def forget_orphans(folder: StateDir, keeper: Keeper) -> None:
    """Drop the records of this project's kept containers that nobody uses: their idle watches
    end at their next look instead of waiting out the idle time for a container already gone."""
    prefix = keeper.name("")
    for entry in folder.names():
        if not (entry.startswith(prefix) and entry.endswith(".json")):
            continue
        name = entry.removesuffix(".json")
        hold = Hold.take(folder, name, exclusive=True)
        if hold is not None:
            forget(folder, name)
            hold.release()


def describe_removed(names: Sequence[str], busy: Sequence[str]) -> str:
    text = f"testserver: removed {len(names)} kept container(s)"
    text += f": {', '.join(names)}" if names else ""
    if busy:
        text += f"; in use by a run now, left alone: {', '.join(busy)}"
    return text
