"""One run's servers: image -> container -> ready -> handle, and removal whatever happened.

A container is registered for removal the moment it exists, before anything waits on it; a server
that fails to start is removed at once. Independent servers start concurrently; a server's links
start before it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from . import image, ports, readiness
from .config import RunSettings, ServerConfig, ServerSpec
from .errors import EngineError, StartError, TestserverError
from .handle import ServerHandle
from .redact import Redactor, looks_secret

if TYPE_CHECKING:
    from .engine import Engine

LABEL_RUN = "pytest-testserver.run"
LABEL_SERVER = "pytest-testserver.server"
LABEL_PID = "pytest-testserver.pid"
LABEL_HOST = "pytest-testserver.host"


def secret_values(config: ServerConfig, environ: Mapping[str, str]) -> list[str]:
    values = []
    for spec in config.servers.values():
        values += [environ[key] for key in spec.secret_env if key in environ]
        values += [value for key, value in spec.env if looks_secret(key)]
    return values


def connect_engine() -> Engine:
    from .engine import Engine  # the Docker SDK is imported only when a server is needed

    return Engine.connect()


class ServerPool:
    """The servers of one run, started on first use and removed by ``close``."""

    def __init__(
        self,
        config: ServerConfig,
        settings: RunSettings,
        run_id: str,
        *,
        connect: Callable[[], Engine] = connect_engine,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.run_id = run_id
        self.redact = Redactor(secret_values(config, os.environ))
        self._connect = connect
        self._on_event = on_event
        self._lock = threading.Lock()
        self._server_locks = {name: threading.Lock() for name in config.servers}
        self._engine: Engine | None = None
        self._engine_error: TestserverError | None = None
        self._handles: dict[str, ServerHandle] = {}
        self._failures: dict[str, TestserverError] = {}
        self._containers: dict[str, str] = {}
        self._network: str | None = None
        self._closed = False

    @property
    def network_name(self) -> str:
        return f"testserver-{self.run_id}"

    @property
    def container_ids(self) -> list[str]:
        with self._lock:
            return list(self._containers.values())

    def started(self) -> dict[str, ServerHandle]:
        with self._lock:
            return dict(self._handles)

    def labels(self, server: str | None = None) -> dict[str, str]:
        labels = {
            LABEL_RUN: self.run_id,
            LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname(),
        }
        if server is not None:
            labels[LABEL_SERVER] = server
        return labels

    # starting
    def get(self, name: str) -> ServerHandle:
        """The handle of ``name``, starting it (and its links) on first use."""
        for dependency in self.config.start_order(name):
            self._ensure(dependency)
        return self._handles[name]

    def get_many(self, names: Iterable[str]) -> dict[str, ServerHandle]:
        """Start several servers concurrently (each after its links); the first error wins."""
        wanted = list(dict.fromkeys(names))
        if len(wanted) <= 1:
            return {name: self.get(name) for name in wanted}
        errors: list[BaseException] = []

        def start(name: str) -> None:
            try:
                self.get(name)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in wanted]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return {name: self._handles[name] for name in wanted}

    def _ensure(self, name: str) -> None:
        with self._server_locks[name]:
            if name in self._handles:
                return
            if name in self._failures:
                raise self._failures[name]
            try:
                handle = self._start(self.config.servers[name])
            except TestserverError as exc:
                self._failures[name] = exc
                raise
            with self._lock:
                self._handles[name] = handle

    def engine(self) -> Engine:
        with self._lock:
            if self._engine_error is not None:
                raise self._engine_error
            if self._engine is None:
                try:
                    self._engine = self._connect()
                except TestserverError as exc:
                    self._engine_error = exc
                    raise
            return self._engine

    def _network_for(self, engine: Engine, spec: ServerSpec) -> str | None:
        # A lone server talks to nobody: the default bridge saves a network create and remove
        # (about 250 ms here) on every run. Servers that link or are linked share the run's network.
        if spec.name not in self.config.networked:
            return None
        with self._lock:
            if self._network is None:
                engine.create_network(self.network_name, self.labels())
                self._network = self.network_name
            return self._network

    def _environment(self, spec: ServerSpec) -> dict[str, str]:
        env = dict(spec.env)
        for key in spec.secret_env:
            if key not in os.environ:
                raise StartError(
                    spec.name, f"secret_env {key} is not set in the environment of the test run"
                )
            env[key] = os.environ[key]
        return env

    def _aliases(self, spec: ServerSpec) -> list[str]:
        names = [spec.name, spec.hostname, *spec.aliases]
        if spec.domain:
            names += [f"{n}.{spec.domain}" for n in (spec.hostname, *spec.aliases) if "." not in n]
        return list(dict.fromkeys(names))

    def _event(self, text: str) -> None:
        if self._on_event is not None:
            self._on_event(text)

    def _start(self, spec: ServerSpec) -> ServerHandle:
        started = time.monotonic()
        deadline = started + spec.timeout
        engine = self.engine()
        env = self._environment(spec)
        problem = ports.remote_loopback_problem(
            os.environ.get("DOCKER_HOST"), self.settings.bind_address
        )
        if problem and spec.ports:
            raise StartError(spec.name, problem)
        ref = image.ensure_image(
            engine,
            spec,
            self.labels(spec.name),
            rebuild=self.settings.rebuild,
            on_line=lambda line: self._event(f"{spec.name}: {line}"),
        )
        try:
            network = self._network_for(engine, spec)
            container = self._create(engine, spec, ref, env, network)
        except EngineError as exc:
            raise StartError(spec.name, f"the container could not be created: {exc}") from None
        try:
            return self._run(engine, spec, container, deadline, started)
        except BaseException:
            if not self.settings.keep:
                self._remove_quietly(spec.name)
            raise

    def _create(
        self, engine: Engine, spec: ServerSpec, ref: str, env: dict[str, str], network: str | None
    ) -> str:
        container = engine.create_container(
            image=ref,
            name=f"testserver-{self.run_id}-{spec.name}",
            command=spec.command,
            env=env,
            ports=[str(p) for p in spec.ports],
            port_bindings=ports.port_bindings(spec.ports, self.settings),
            hostname=spec.hostname,
            domain=spec.domain,
            labels=self.labels(spec.name),
            network=network,
            aliases=self._aliases(spec) if network else (),
        )
        with self._lock:
            self._containers[spec.name] = container  # registered before anything waits on it
            closed = self._closed
        if closed:  # the run ended (Ctrl-C) while this server was being created
            self._remove_quietly(spec.name)
            raise StartError(spec.name, "the test run ended while the server was starting")
        return container

    def _run(
        self, engine: Engine, spec: ServerSpec, container: str, deadline: float, started: float
    ) -> ServerHandle:
        try:
            engine.start(container)
        except EngineError as exc:
            raise self._start_error(spec, str(exc)) from None
        info = engine.inspect(container)
        readiness.check_running(engine, spec, container, info, self.redact)
        if spec.post_startup is not None:
            readiness.wait_post_startup(
                engine, spec, spec.post_startup, container, deadline, self.redact
            )
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        ip = next((n.get("IPAddress", "") for n in networks.values() if n.get("IPAddress")), "")
        handle = ServerHandle(
            name=spec.name,
            host=ports.handle_host(os.environ.get("DOCKER_HOST"), self.settings.bind_address),
            ports=ports.published_ports(info, spec.ports, self.settings),
            container_id=container,
            ip=ip,
            engine=engine,
            redact=self.redact,
        )
        self._event(f"{spec.name}: ready in {time.monotonic() - started:.2f}s")
        return handle

    def _start_error(self, spec: ServerSpec, message: str) -> StartError:
        if ports.is_port_conflict(message):
            port = ports.taken_port(message, spec.ports)
            what = f"port {port}" if port else "one of its ports"
            where = f"{self.settings.bind_address}:{port.number}" if port else "the host"
            mode = " (bind-local publishes each port at its own number)"
            return StartError(
                spec.name,
                f"{what} is already in use on {where}{mode if self.settings.bind_local else ''}: "
                "stop what holds it, or turn bind-local off",
            )
        return StartError(spec.name, f"the container could not start: {message}")

    # removing
    def _remove_quietly(self, name: str) -> None:
        with self._lock:
            container = self._containers.pop(name, None)
        if container is not None and self._engine is not None:
            try:
                self._engine.remove_container(container)
            except TestserverError:
                with self._lock:  # leave it to close(), which reports what it cannot remove
                    self._containers[name] = container

    def close(self) -> list[str]:
        """Remove every container and the network; returns the problems met, for warnings."""
        with self._lock:
            self._closed = True
            containers = dict(self._containers)
            network = self._network
            engine = self._engine
            if not self.settings.keep:
                self._containers.clear()
                self._network = None
        if engine is None or self.settings.keep:
            return []
        problems: list[str] = []

        def remove(name: str, container: str) -> None:
            try:
                engine.remove_container(container)
            except TestserverError as exc:
                problems.append(
                    f"could not remove the container of {name!r} ({container[:12]}): {exc}"
                )

        threads = [threading.Thread(target=remove, args=item) for item in containers.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if network is not None:
            try:
                engine.remove_network(network)
            except TestserverError as exc:
                problems.append(f"could not remove the network {network}: {exc}")
        engine.close()
        return problems

    def keep_message(self) -> str | None:
        with self._lock:
            count = len(self._containers)
            network = self._network
        if not self.settings.keep or not (count or network):
            return None
        label = f"label={LABEL_RUN}={self.run_id}"
        text = (
            f"testserver: kept {count} container(s) of run {self.run_id} (--testserver-keep); "
            f"remove them with: docker rm -f $(docker ps -aq --filter {label})"
        )
        return f"{text} && docker network rm {network}" if network else text
