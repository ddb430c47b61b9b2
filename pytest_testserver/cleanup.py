"""What one process must remove, and the bounded removal at the end of its run.

A container is registered the moment it exists, before anything waits on it; once the run is
closing, registration is refused and the new container goes at once. Networks and volumes this
process made are registered too, and go after the containers that use them. Removal runs in the
background (``begin_close``) while pytest finishes its own end of run, and ``finish_close`` waits
for it, bounded: a stalled engine cannot hold the end of the run for long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import reaper
from .errors import StartError, TestserverError

if TYPE_CHECKING:
    from .connection import Connection
    from .engine import Engine

# Teardown has its own bound: a stalled engine must not hold the end of the run for long.
TEARDOWN_BOUND = 30.0


class Closing(StartError):
    """The run ended (Ctrl-C, SIGTERM) while a server was starting."""

    def __init__(self, server: str) -> None:
        super().__init__(server, "the test run ended while the server was starting")


class Cleanup:
    """The containers, networks and volumes of one process, and their removal.

    ``keep`` (--testserver-keep): nothing is removed; what is left is reported instead.
    """

    def __init__(self, connection: Connection, *, run_id: str, keep: bool) -> None:
        self._connection = connection
        self.run_id = run_id
        self.keep = keep
        self._lock = threading.Lock()
        # instance ("web", or "web.3" for a scope shorter than the session) -> container id
        self._containers: dict[str, str] = {}
        self._releasing: set[str] = set()  # instances being removed in the background
        self._networks: dict[str, str] = {}  # name -> id: the networks this process made
        self._volumes: set[str] = set()  # engine names of the named volumes this process made
        self._closed = False
        self._closing: threading.Thread | None = None
        self._problems: list[str] = []

    @property
    def closed(self) -> bool:
        """Teardown has begun: nothing new is registered, a further SIGTERM must wait."""
        with self._lock:
            return self._closed

    # registration
    def register(self, server: str, instance: str, container: str) -> None:
        """``container`` now exists: it is removed at the end, or at once if the run is ending
        (then ``Closing`` is raised: the start that made it stops here)."""
        with self._lock:
            self._containers[instance] = container
            closed = self._closed
        if closed:
            self.remove_quietly(instance)
            raise Closing(server)

    def disown(self, instance: str, container: str | None = None) -> bool:
        """Not ours to remove any more (kept for reuse, or published to the other workers);
        False when the run is closing: then it stays ours, and goes with the rest."""
        with self._lock:
            if self._closed:
                return False
            if container is None or self._containers.get(instance) == container:
                self._containers.pop(instance, None)
            return True

    def network(self, name: str, make: Callable[[], str]) -> str:
        """The id of network ``name``, made once by ``make`` and removed at the end."""
        with self._lock:
            if name not in self._networks:
                self._networks[name] = make()
            return self._networks[name]

    def volume(self, name: str) -> None:
        with self._lock:  # registered before anything mounts it
            self._volumes.add(name)

    # removal during the run
    def remove_quietly(self, instance: str) -> None:
        """Remove a container whose start failed; left to the end of the run if that fails."""
        with self._lock:
            container = self._containers.pop(instance, None)
        engine = self._connection.connected
        if container is None or engine is None:
            return
        try:
            engine.remove_container(container)
        except TestserverError:
            with self._lock:  # the end of the run reports what it cannot remove
                self._containers[instance] = container

    def remove_instance(self, instance: str) -> None:
        """A scoped server's container whose scope ended; registered until it is really gone,
        so that a run ending meanwhile still removes (or reports) it."""
        engine = self._connection.connected
        with self._lock:
            container = self._containers.get(instance)
            if container is None or engine is None or self.keep or self._closed:
                return
            self._releasing.add(instance)
        try:
            with engine.deadline(time.monotonic() + TEARDOWN_BOUND):
                engine.remove_container(container)
            with self._lock:
                if self._containers.get(instance) == container:
                    del self._containers[instance]
        finally:
            with self._lock:
                self._releasing.discard(instance)

    # the end of the run
    def begin_close(self) -> bool:
        """Refuse new registrations from now on; False when closing had begun already
        (sessionfinish began it; unconfigure is only a safety net)."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        return True

    def start_removal(
        self, before: Callable[[float], list[str]], after: Callable[[], None]
    ) -> None:
        """Remove everything in the background; ``finish_close`` waits for it.

        ``before(deadline)`` runs first in that thread (the kept containers' release, the
        scoped servers' removals in flight) and returns its problems; ``after`` last. The
        engine takes ~140 ms to remove a container: pytest's own end of run (summary,
        unconfigure, its garbage collection passes) runs meanwhile instead of after.
        """
        engine = self._connection.connected
        if engine is None:
            after()
            self._connection.discard_state()
            return
        # Not a daemon: even if waiting for it is interrupted, the interpreter waits at exit
        # (every engine call in it is bounded by TEARDOWN_BOUND).
        thread = threading.Thread(
            target=self._remove_all, args=(engine, before, after), name="testserver-teardown"
        )
        with self._lock:
            self._closing = thread
        thread.start()

    def finish_close(self) -> list[str]:
        """Wait for the removal ``begin_close`` started; its problems, reported once."""
        with self._lock:
            thread = self._closing
        if thread is None:
            return []
        thread.join(TEARDOWN_BOUND + 10)
        with self._lock:
            problems, self._problems = self._problems, []
        if thread.is_alive():
            problems += [
                f"the removal did not end within {TEARDOWN_BOUND + 10:g}s",
                reaper.leftover_hint(self.run_id),
            ]
        return problems

    def _remove_all(
        self, engine: Engine, before: Callable[[float], list[str]], after: Callable[[], None]
    ) -> None:
        """Remove each container, network and volume on its own; report what could not be.

        The watchdog is told ``done`` only when nothing is left: otherwise it sweeps the run
        itself once this process is gone.
        """
        self._connection.stop()
        deadline = time.monotonic() + TEARDOWN_BOUND
        kept_problems = before(deadline)
        if self.keep:
            after()
            self._connection.close()  # the containers stay; our connections to the engine do not
            return
        with self._lock:  # what a removal in the background left (or the engine refused)
            containers, self._containers = self._containers, {}
            networks, self._networks = self._networks, {}
            volumes, self._volumes = sorted(self._volumes), set()
        with engine.deadline(deadline):
            try:
                problems = self._remove_each(engine, containers, networks, volumes)
            except Exception as exc:  # never a thread that dies and leaves things silently
                problems = [f"teardown failed: {type(exc).__name__}: {exc}"]
        if problems:
            problems.append(reaper.leftover_hint(self.run_id))
        self._connection.finish(clean=not problems)
        problems += kept_problems
        after()
        self._connection.close()
        with self._lock:
            self._problems += problems

    def _remove_each(
        self,
        engine: Engine,
        containers: dict[str, str],
        networks: dict[str, str],
        volumes: list[str],
    ) -> list[str]:
        problems: list[str] = []

        def remove(name: str, container: str) -> None:
            try:
                engine.remove_container(container)
            except Exception as exc:
                problems.append(
                    f"could not remove the container of {name!r} ({container[:12]}): {exc}"
                )

        def release() -> None:
            try:
                self._connection.release_lease()
            except Exception as exc:
                problems.append(f"could not remove the run's lease: {exc}")

        threads = [engine.thread(remove, *item) for item in containers.items()]
        if self._connection.has_lease_to_release:
            # The lone run's lease goes beside its containers, not after them (~100 ms less at
            # the end of every run): without it, another run judges what is left by its age
            # and owner, and this run's are young and their owner alive. A worker's lease
            # stays for the controller's sweep.
            threads.append(engine.thread(release))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name in sorted(networks):
            try:
                engine.remove_network(networks[name])
            except Exception as exc:
                problems.append(f"could not remove the network {name}: {exc}")
        for name in volumes:  # after the containers that mount them
            try:
                engine.remove_volume(name)
            except Exception as exc:
                problems.append(f"could not remove the volume {name}: {exc}")
        return problems

    def keep_message(self) -> str | None:
        with self._lock:
            count = len(self._containers)
            networks = sorted(self._networks)
            volumes = sorted(self._volumes)
        if not self.keep or not (count or networks or volumes):
            return None
        return reaper.keep_message(self.run_id, count, networks, volumes)
