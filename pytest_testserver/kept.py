"""Kept containers (``--testserver-reuse``): adopt one from an earlier run, keep a new one, and
release them at the end of the run, left running for the next.

Which container may be adopted (labels, digest, locks, the idle watch) is reuse.py's; this is the
run's side. A kept container is used by one run at a time: a second run at the same moment gets
a container of its own, removed at its end, with a one-line note.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import ports
from .cleanup import Cleanup, Closing
from .config import ServerConfig, ServerSpec
from .connection import Connection, Event
from .errors import EngineError, TestserverError, UnsafeFolder
from .folders import StateDir, reason
from .handle import ServerHandle
from .launch import Launch
from .launcher import ImageStep, Launcher
from .reuse import (
    FOLDER,
    IN_USE,
    LABEL_REUSE,
    Busy,
    Hold,
    Keeper,
    definition_digest,
    forget,
    remember_use,
    watch_idle,
)
from .settings import RunSettings

if TYPE_CHECKING:
    from .engine import Engine


def reuse_definition(
    spec: ServerSpec, image_id: str | None, env: Mapping[str, str], settings: RunSettings
) -> dict[str, object]:
    """What a kept container must match to be adopted. The bindings carry each host port (a
    fixed one, or bind-local's), so a changed host port gives a fresh container."""
    return {
        "server": spec.name,
        "image": image_id,
        # As written: with the expanded env below it decides the expanded command.
        # Secret values enter only through the hash, never in clear.
        "command": spec.command,
        "env": sorted(env.items()),
        "ports": [str(p) for p in spec.ports],
        "bindings": ports.port_bindings(spec.ports, settings),
        "hostname": spec.hostname,
        "domain": spec.domain,
        "init": spec.init,
        "options": spec.options.digest_parts(),
    }


class KeptServers:
    """The kept containers this run uses: server -> (kept name, container, the run's hold)."""

    def __init__(
        self,
        config: ServerConfig,
        settings: RunSettings,
        *,
        connection: Connection,
        cleanup: Cleanup,
        launcher: Launcher,
        event: Event,
    ) -> None:
        self.config = config
        self.settings = settings
        self.connection = connection
        self.cleanup = cleanup
        self.launcher = launcher
        self._event = event
        self._keeper = Keeper.for_project(settings.project) if settings.reuse else None
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[str, str, Hold]] = {}

    def reusable(self, spec: ServerSpec) -> bool:
        """--testserver-reuse keeps session servers of the whole run that join no network
        (a network's names and members would have to be kept alike) and mount no volume (a
        named one is the run's, removed at its end; an anonymous one is labelled with the run,
        so its sweep would try to remove it under the kept container)."""
        return (
            self._keeper is not None
            and not self.settings.keep
            and spec.scope == "session"
            and spec.sharing == "run"
            and spec.name not in self.config.networked
            and not spec.volumes
        )

    def start(self, launch: Launch, step: ImageStep) -> tuple[ServerHandle, bool] | None:
        """Adopt the kept container of this definition (True: an earlier run's tests used it),
        or start one to keep (False); None when this run cannot have it: another run uses it
        now, or the name is held by a kept container of another definition that a run uses."""
        assert self._keeper is not None
        spec, engine = launch.spec, launch.engine
        with engine.deadline(launch.image_deadline):
            image_id = engine.image_id(step.ref)
            if image_id is None:
                step.ensure()
                image_id = engine.image_id(step.ref)
        digest = definition_digest(reuse_definition(spec, image_id, launch.env, self.settings))
        folder = self.connection.state_dir().child(FOLDER)
        try:
            launch = launch.created("", time.monotonic() + spec.timeout)
            with engine.deadline(launch.deadline):
                return self._keep(launch, step.ref, digest, folder)
        finally:
            folder.close()

    def _keep(
        self, launch: Launch, ref: str, digest: str, folder: StateDir
    ) -> tuple[ServerHandle, bool] | None:
        assert self._keeper is not None
        spec, engine = launch.spec, launch.engine
        name = self._keeper.name(spec.name)
        for found in engine.objects(self._keeper.selector(spec.name)):
            if found.kind != "container":
                continue
            if found.labels.get(LABEL_REUSE) != digest:
                self._remove_kept(engine, found.id, name, folder)  # stale: another definition
                continue
            adopted = self._adopt(launch.created(found.id, launch.deadline), name, folder)
            if isinstance(adopted, ServerHandle):
                return adopted, True
            if adopted == IN_USE:
                self._in_use(spec, name)
                return None
        hold = Hold.take_alone(folder, name)
        if isinstance(hold, Busy):
            if hold == IN_USE:
                self._in_use(spec, name)
            return None  # or being removed right now (idle, stale or cleaned)
        try:
            container = self.launcher.create(
                launch, ref, None, name=name, labels=self._keeper.labels(spec.name, digest)
            )
        except EngineError as exc:
            hold.release()
            if exc.status == 409:
                return None
            raise
        except BaseException:
            hold.release()
            raise
        try:
            watch_idle(folder, name, container, self.settings.reuse_idle, self._environ(engine))
            handle = self.launcher.run(launch.created(container, launch.deadline))
        except BaseException:
            hold.release()
            self.cleanup.remove_quietly(spec.name)
            forget(folder, name)
            raise
        if not self.cleanup.disown(spec.name):  # kept: the end of the run leaves it running
            # The run began to end while the server started: it stays the run's and goes with
            # the rest (as a shared server does, sharing.py), never kept with a record and a
            # hold that nothing would release (release() has run already).
            hold.release()
            forget(folder, name)
            raise Closing(spec.name)
        with self._lock:
            self._kept[spec.name] = (name, container, hold)
        took = time.monotonic() - launch.started
        self._event("ready", f"{spec.name} ready in {took:.2f}s (kept for reuse by later runs)")
        return handle, False

    def _adopt(self, launch: Launch, name: str, folder: StateDir) -> ServerHandle | Busy | None:
        hold = Hold.take_alone(folder, name)
        if isinstance(hold, Busy):
            return hold
        engine, container = launch.engine, launch.container
        try:
            watch_idle(folder, name, container, self.settings.reuse_idle, self._environ(engine))
            handle = self.launcher.ready(launch)
        except (TestserverError, EngineError):
            hold.release()  # not running or not ready any more: replaced
            self._remove_kept(engine, container, name, folder)
            return None
        except BaseException:
            hold.release()
            raise
        with self._lock:
            self._kept[launch.spec.name] = (name, container, hold)
        took = time.monotonic() - launch.started
        self._event("ready", f"{launch.spec.name} reused in {took:.2f}s (kept from an earlier run)")
        return handle

    def _in_use(self, spec: ServerSpec, name: str) -> None:
        self._event(
            "warning",
            f"{spec.name}: the kept container {name} is in use by another run right now: this "
            "run starts one of its own, removed at its end",
        )

    def held_by_worker(self, spec: ServerSpec, container: str, labels: Mapping[str, str]) -> bool:
        """Another worker of this run adopted (or started) this kept container: this worker
        holds it too, so that no idle watch removes it under this worker's tests."""
        keeper = self._keeper
        if keeper is None or not self.reusable(spec):
            return False
        mine = all(labels.get(k) == v for k, v in keeper.selector(spec.name).items())
        if not (mine and LABEL_REUSE in labels):
            return False
        name = keeper.name(spec.name)
        folder = self.connection.state_dir().child(FOLDER)
        try:
            hold = Hold.take(folder, name, exclusive=False)
        finally:
            folder.close()
        if hold is not None:
            with self._lock:
                self._kept[spec.name] = (name, container, hold)
        return True

    @staticmethod
    def _environ(engine: Engine) -> dict[str, str]:
        return dict(engine.location.environ())

    def release(self) -> list[str]:
        """The end of a run that used kept containers: each is left running, marked used now;
        the idle watch started when the run took it removes it once it has been idle enough."""
        with self._lock:
            kept, self._kept = dict(self._kept), {}
        if not kept:
            return []
        problems: list[str] = []
        try:
            folder: StateDir | None = self.connection.state_dir().child(FOLDER)
        except (OSError, UnsafeFolder) as exc:
            folder = None
            problems.append(f"the kept containers' last use is not recorded: {reason(exc)}")
        for server, (name, container, hold) in kept.items():
            try:
                if folder is not None:
                    remember_use(folder, name, container, self.settings.reuse_idle)
            except OSError as exc:
                problems.append(f"the last use of the kept {server!r} is not recorded: {exc}")
            finally:
                hold.release()
        if folder is not None:
            folder.close()
        return problems

    def _remove_kept(self, engine: Engine, container: str, name: str, folder: StateDir) -> None:
        """Remove a kept container under its exclusive lock; left alone while a run uses it."""
        hold = Hold.take(folder, name, exclusive=True)
        if hold is None:
            return
        try:
            engine.remove_container(container)
            forget(folder, name)
        finally:
            hold.release()
