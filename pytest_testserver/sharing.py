"""Servers shared by the xdist workers of one run (``share: run``), and the run's network.

The first worker that needs a shared server starts it under a lock of the run and writes its
container id (or its error) to the run's folder; the others adopt it. The run's network is made
the same way, once. What a file names is checked with the engine before it is used: only an
object that carries this run's labels is adopted, so a forged file cannot send a test to
someone else's endpoint. The controller removes both when every worker is done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from . import exits, ports
from .cleanup import Cleanup, Closing
from .config import ServerSpec
from .connection import Connection
from .errors import (
    EngineError,
    ServerDied,
    ServerExited,
    StartError,
    TestserverError,
    UnsafeFolder,
)
from .handle import ServerHandle
from .identity import LABEL_RUN, LABEL_SERVER, RunContext
from .locks import hold_lock
from .reach import Reach
from .runfolder import SharedServers
from .settings import RunSettings

if TYPE_CHECKING:
    from .engine import Engine

# How long a worker waits for another worker starting a shared server, beyond that server's
# own budgets (image and readiness).
CLAIM_MARGIN = 30.0

# Told the labels of a container another worker started: True when it is a kept container of
# this project (reuse), which the worker then holds too; False when it is not kept.
KeptCheck = Callable[[ServerSpec, str, Mapping[str, str]], bool]


class WorkerSharing:
    """One worker's side of the run's shared servers and network."""

    def __init__(
        self,
        context: RunContext,
        *,
        connection: Connection,
        cleanup: Cleanup,
        redact: Callable[[str], str],
        settings: RunSettings,
        reach: Reach | None = None,
    ) -> None:
        self.context = context
        self.reach = reach or Reach(settings, override=settings.reach)
        self.connection = connection
        self.cleanup = cleanup
        self.redact = redact
        self.settings = settings
        self._lock = threading.Lock()
        self._servers: SharedServers | None = None

    @property
    def run_id(self) -> str:
        return self.context.run_id

    def servers(self) -> SharedServers:
        state = self.connection.state_dir()
        with self._lock:
            if self._servers is None:
                self._servers = SharedServers(self.run_id, state)
            return self._servers

    def handle(
        self,
        spec: ServerSpec,
        start: Callable[[ServerSpec], ServerHandle],
        kept: KeptCheck,
        *,
        replacing: str | None = None,
        restart: Callable[[str], ServerHandle] | None = None,
    ) -> tuple[ServerHandle, bool]:
        """Another worker's server if it started one (then True: its tests may have used it);
        else ``start`` it here and publish it (False).

        ``replacing``: the container of that server found dead here, which another worker may
        have replaced already. ``restart(dead container)``: the fresh container for a published
        one that died; without it, adopting a dead one raises how it died.
        """
        try:
            shared = self.servers()
            claim = shared.claimed(spec.name, spec.image_timeout + spec.timeout + CLAIM_MARGIN)
        except (OSError, UnsafeFolder) as exc:
            raise StartError(spec.name, f"cannot be shared by the workers: {exc}") from None
        with claim:
            state = shared.read(spec.name)
            found = str(state.get("container_id", "")) if state is not None else ""
            if state is not None and (replacing is None or found != replacing):
                if "error" in state:
                    raise TestserverError(str(state["error"]))
                try:
                    return self.adopt(spec, found, kept), True
                except ServerDied:
                    if restart is None:
                        raise
                return self._publish(spec, shared, lambda _: restart(found)), False
            return self._publish(spec, shared, start), False

    def _publish(
        self, spec: ServerSpec, shared: SharedServers, start: Callable[[ServerSpec], ServerHandle]
    ) -> ServerHandle:
        """Start the server here (under its claim) and tell the other workers which it is."""
        try:
            handle = start(spec)
        except TestserverError as exc:
            # A start cut short by this worker's own end (its container removed under it, or
            # never started) says nothing of the server: the next worker to need it starts it
            # afresh instead of failing with this worker's error.
            if not self.cleanup.closed:
                shared.write(spec.name, {"error": self.redact(str(exc))})
            raise
        # The controller removes it when every worker is done. If this worker is ending, its
        # end removes it: never a server for the other workers, who would get a container
        # dying under their tests.
        if not self.cleanup.disown(spec.name, handle.container_id):
            raise Closing(spec.name)
        shared.write(spec.name, {"container_id": handle.container_id})
        return handle

    def adopt(self, spec: ServerSpec, container: str, kept: KeptCheck) -> ServerHandle:
        """The handle of a server another worker of this run started, checked with the engine.

        The state file only names the container; where it listens comes from the engine, and
        only from a container that carries this run's labels (or is this project's kept one).
        """
        engine = self.connection.engine()
        with engine.deadline(time.monotonic() + spec.timeout):
            try:
                info = engine.inspect(container)
            except EngineError as exc:
                if exc.status == 404:
                    raise ServerExited.vanished(spec.name) from None
                raise
        labels = (info.get("Config") or {}).get("Labels") or {}
        ours = labels.get(LABEL_RUN) == self.run_id and labels.get(LABEL_SERVER) == spec.name
        if not ours and not kept(spec, container, labels):
            raise StartError(
                spec.name,
                f"the run's state names container {container[:12]!r}, which is not this run's "
                f"{spec.name!r}: refusing to use it",
            )
        state = info.get("State")
        if isinstance(state, dict) and not state.get("Running", False) and not spec.oneshot:
            # Published once it was ready: it died since (a one-shot is ready once it exited).
            raise exits.died_error(engine, spec.name, container, self.redact)
        ip = ports.container_ip(info)
        if self.reach.route(engine).joins and ip:  # a sibling: its address on the run network
            host, published = ip, {p: p.number for p in spec.ports}
        else:
            settings = self.reach.settings(engine)
            host = ports.handle_host(engine.address, settings.bind_address)
            published = ports.published_ports(info, spec.ports, settings)
        return ServerHandle(
            name=spec.name,
            host=host,
            ports=published,
            container_id=container,
            ip=ip,
            engine=self.connection.engine,
            redact=self.redact,
        )

    def network(self, engine: Engine, spec: ServerSpec, name: str) -> str:
        """The run's network ``name``, made by the first worker that needs it.

        The engine's duplicate-name check is best effort, so workers make it under a lock of
        the run and find it by id afterwards; an id read from the folder is used only if the
        engine says that network carries this run's label.
        """
        shared = self.servers()
        with hold_lock(
            shared.folder,
            "network.lock",
            what="run network",
            run=self.run_id,
            timeout=spec.timeout + CLAIM_MARGIN,
        ):
            found = shared.folder.read_json("network.json")
            network = found.get("id") if isinstance(found, dict) else None
            if isinstance(network, str):
                self._check_network(engine, spec, network)
                return network
            network = engine.create_network(name, self.context.labels())
            shared.folder.write_json("network.json", {"id": network})
            return network

    def _check_network(self, engine: Engine, spec: ServerSpec, network: str) -> None:
        try:
            labels = engine.network_labels(network)
        except EngineError as exc:
            if exc.status != 404:
                raise
            labels = None
        if labels is None or labels.get(LABEL_RUN) != self.run_id:
            raise StartError(
                spec.name,
                f"the run's state names network {network[:12]!r}, which is not this run's: "
                "refusing to use it",
            )

    def first_rebuild(self, tag: str) -> bool:
        return self.servers().first_rebuild(tag)

    def close(self) -> None:
        with self._lock:
            servers, self._servers = self._servers, None
        if servers is not None:
            servers.close()
