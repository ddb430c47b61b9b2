"""Servers that live for less than the session: a fresh container per module, class or test.

Each such server has one current container, bound to the scope it was handed to (a module's,
a class's or a test's node id), and warm spares: containers already started and readied in the
background, so that the next scope gets a fresh server without waiting for its start. Nothing
here talks to the engine: the pool gives each ``Instances`` how to start and remove one. The
``Plan`` says which tests come next, so that spares are started for the scopes they will need.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .errors import TestserverError
from .handle import ServerHandle

# A scope key per scope, for one test: its module's node id, its class's, its own.
ScopeKeys = dict[str, str]


def instance_name(server: str, number: int) -> str:
    """``web.3``: server names hold no dots, so no instance can take another server's name."""
    return f"{server}.{number}"


class Spare:
    """One container being started (or already ready) in the background."""

    def __init__(self, instance: str, start: Callable[[str], ServerHandle]) -> None:
        self.instance = instance
        self._handle: ServerHandle | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(start,), name=f"testserver-spare-{instance}", daemon=True
        )
        self._thread.start()

    def _run(self, start: Callable[[str], ServerHandle]) -> None:
        try:
            self._handle = start(self.instance)
        except BaseException as exc:  # kept for the test that takes this spare
            self._error = exc

    def wait(self) -> ServerHandle:
        """The ready handle; the start's own deadlines bound the wait."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._handle is not None
        return self._handle


class Instances:
    """The containers of one server whose scope is module, class or function."""

    def __init__(
        self,
        server: str,
        *,
        start: Callable[[str], ServerHandle],
        remove: Callable[[str], None],
        spares: int,
        background_removal: bool,
    ) -> None:
        self.server = server
        self._start = start  # instance name -> a ready handle, or a TestserverError
        self._remove = remove  # instance name -> removed (its container is the pool's)
        self._spares_wanted = spares
        self._background_removal = background_removal
        self._lock = threading.Lock()
        self._acquiring = threading.Lock()
        self._count = 0
        self._current: tuple[str, str, ServerHandle] | None = None  # scope key, instance, handle
        self._spares: deque[Spare] = deque()
        self._releases: list[threading.Thread] = []
        self._closed = False

    def current(self) -> ServerHandle | None:
        with self._lock:
            return self._current[2] if self._current else None

    def acquire(self, key: str) -> ServerHandle:
        """The container of scope ``key``: the current one, a spare, or one started now."""
        with self._acquiring:  # two servers linking to this one ask at once: one container
            with self._lock:
                if self._current is not None and self._current[0] == key:
                    return self._current[2]
            self.release()
            with self._lock:
                spare = self._spares.popleft() if self._spares else None
                instance = spare.instance if spare else self._next_instance()
            handle = spare.wait() if spare else self._start(instance)
            with self._lock:
                self._current = (key, instance, handle)
            return handle

    def prepare(self, keys: list[str]) -> None:
        """Spares for the scopes to come (``keys``, in the order the tests ask): one per scope
        other than the current one, at most as many as the ini allows."""
        with self._lock:
            current = self._current[0] if self._current else None
            fresh = [key for key in dict.fromkeys(keys) if key != current]
            missing = min(len(fresh), self._spares_wanted) - len(self._spares)
            for _ in range(missing if not self._closed else 0):
                self._spares.append(Spare(self._next_instance(), self._start))

    def release_unless(self, key: str | None) -> None:
        """The current container is done with, unless the next test's scope is still ``key``."""
        with self._lock:
            keep = self._current is not None and key is not None and self._current[0] == key
        if not keep:
            self.release()

    def release(self) -> None:
        with self._lock:
            current, self._current = self._current, None
        if current is None:
            return
        instance = current[1]
        if not self._background_removal:
            self._remove(instance)  # a linked server's name must point at one container only
            return
        thread = threading.Thread(
            target=self._remove_quietly,
            args=(instance,),
            name=f"testserver-release-{instance}",
            daemon=True,  # the end of the run waits for it (wait_released), boundedly
        )
        with self._lock:
            self._releases = [t for t in self._releases if t.is_alive()] + [thread]
        thread.start()

    def wait_released(self, deadline: float) -> None:
        """Wait (until ``deadline``, a monotonic time) for the removals in the background."""
        with self._lock:
            releases = list(self._releases)
        for thread in releases:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _remove_quietly(self, instance: str) -> None:
        # On failure the container stays registered: the end of the run removes or reports it.
        with contextlib.suppress(TestserverError):
            self._remove(instance)

    def close(self) -> None:
        """No more spares; the containers themselves are removed with the pool's."""
        with self._lock:
            self._closed = True
            self._current = None
            self._spares.clear()

    def _next_instance(self) -> str:
        self._count += 1
        return instance_name(self.server, self._count)


# How far ahead of the running test warm spares are planned (without xdist: under xdist a worker
# knows only its next test).
LOOKAHEAD = 100


@dataclass(frozen=True)
class PlannedTest:
    """A selected test that will run: its node id, the servers its markers name, and its key
    for each scope (only for a test that names some server)."""

    nodeid: str
    servers: tuple[str, ...] = ()
    keys: ScopeKeys = field(default_factory=dict)


class Plan:
    """The selected tests that will run, in order, and the servers their markers name: which
    session servers to start ahead, and for which scopes to come each scoped server needs a
    spare."""

    def __init__(self, tests: list[PlannedTest], *, worker: bool) -> None:
        self._order = [test.nodeid for test in tests]
        self._position = {nodeid: i for i, nodeid in enumerate(self._order)}
        self._tests = {test.nodeid: test for test in tests if test.servers}
        self.worker = worker  # an xdist worker runs an unknown part of the tests, in any order

    def needed(self, declared: Iterable[str]) -> list[str]:
        """The declared servers some test of the plan names, sorted."""
        names = set(declared)
        return sorted({n for test in self._tests.values() for n in test.servers if n in names})

    def upcoming(self, after: str | None, next_test: str | None = None) -> list[str]:
        """The node ids of the tests to come after ``after`` (from the first test when None).

        A worker knows only its next test (``next_test``); without xdist it is the plan's next
        ``LOOKAHEAD`` tests, and none after a test the plan does not hold.
        """
        if after is None:
            return self._order[:LOOKAHEAD]
        if self.worker:
            return [next_test] if next_test is not None else []
        start = self._position.get(after, -1) + 1
        return self._order[start : start + LOOKAHEAD] if start else []

    def spares(
        self, scoped: Mapping[str, str], after: str | None, next_test: str | None = None
    ) -> dict[str, list[str]]:
        """For each scoped server (name -> its scope), the scope keys of the tests to come that
        name it, in order; servers no upcoming test names are left out."""
        upcoming = [self._tests[n] for n in self.upcoming(after, next_test) if n in self._tests]
        wanted: dict[str, list[str]] = {}
        for name, scope in scoped.items():
            keys = [test.keys[scope] for test in upcoming if name in test.servers]
            if keys:
                wanted[name] = keys
        return wanted
