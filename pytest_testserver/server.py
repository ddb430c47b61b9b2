"""One run's servers: image -> container -> ready -> handle, and removal whatever happened.

A container is registered for removal the moment it exists, before anything waits on it; a server
that fails to start is removed at once. Independent servers start concurrently; a server's links
start before it. Under xdist, a ``share: run`` server is started by the first worker that needs it
(under a file lock) and published to the others; the controller removes it when all are done.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import image, ports, readiness, reaper
from .config import BuildSource, ServerConfig, ServerSpec
from .coordination import LABEL_PREFIX, LABEL_RUN, RunContext, SharedServers, build_lock
from .errors import EngineError, StartError, TestserverError
from .handle import ServerHandle
from .redact import Redactor, looks_secret
from .settings import RunSettings

if TYPE_CHECKING:
    from .engine import Engine


def secret_values(config: ServerConfig, environ: Mapping[str, str]) -> list[str]:
    values = []
    for spec in config.servers.values():
        values += [environ[key] for key in spec.secret_env if key in environ]
        values += [value for key, value in spec.env if looks_secret(key)]
        if isinstance(spec.image, BuildSource):
            values += [value for key, value in spec.image.args if looks_secret(key)]
    return values


class MaskedEnv(dict[str, str]):
    """A container's environment; its repr shows keys only (tracebacks print locals)."""

    def __repr__(self) -> str:
        return f"<environment {', '.join(self)}>"


def connect_engine() -> Engine:
    from .engine import Engine  # the Docker SDK is imported only when a server is needed

    return Engine.connect()


class ServerPool:
    """The servers one process uses, started on first use and removed by ``close``."""

    def __init__(
        self,
        config: ServerConfig,
        settings: RunSettings,
        context: RunContext,
        *,
        shared: SharedServers | None = None,
        connect: Callable[[], Engine] = connect_engine,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.context = context
        self.shared = shared  # set in xdist workers
        self.redact = Redactor(secret_values(config, os.environ))
        self._connect = connect
        self._on_event = on_event
        self._lock = threading.Lock()
        self._server_locks = {name: threading.Lock() for name in config.servers}
        self._engine: Engine | None = None
        self._engine_error: TestserverError | None = None
        self._handles: dict[str, ServerHandle] = {}
        self._failures: dict[str, TestserverError] = {}
        self._containers: dict[str, str] = {}  # the containers this process must remove
        self._networks: set[str] = set()
        self._rebuilt: set[str] = set()
        self._watchdog: reaper.Watchdog | None = None
        self._watchdog_started: threading.Thread | None = None
        self._swept = False
        self._closed = False
        self._closing: threading.Thread | None = None
        self._close_problems: list[str] = []

    @property
    def run_id(self) -> str:
        return self.context.run_id

    def started(self) -> dict[str, ServerHandle]:
        with self._lock:
            return dict(self._handles)

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
            spec = self.config.servers[name]
            try:
                if self.shared is not None and spec.share == "run":
                    handle = self._shared_handle(spec, self.shared)
                else:
                    handle = self._start(spec)
            except TestserverError as exc:
                self._failures[name] = exc
                raise
            with self._lock:
                self._handles[name] = handle

    def _shared_handle(self, spec: ServerSpec, shared: SharedServers) -> ServerHandle:
        """Another worker's server if it started one; else start it and publish it."""
        with shared.claimed(spec.name):
            state = shared.read(spec.name)
            if state is not None:
                if "error" in state:
                    raise TestserverError(str(state["error"]))
                return ServerHandle.from_state(spec.name, state, self.engine, self.redact)
            try:
                handle = self._start(spec)
            except TestserverError as exc:
                shared.write(spec.name, {"error": self.redact(str(exc))})
                raise
            with self._lock:  # the controller removes it when every worker is done
                self._containers.pop(spec.name, None)
            shared.write(spec.name, handle.state())
            return handle

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
                self._on_connect(self._engine)
            return self._engine

    def _on_connect(self, engine: Engine) -> None:
        self._event("engine", f"engine {engine.version} at {engine.address}")
        if self.shared is not None:
            self.shared.mark_used()  # tells the controller there is something to remove
        elif not self.settings.keep:
            # Spawning a process costs milliseconds: do it beside the first server's start.
            self._watchdog_started = threading.Thread(target=self._start_watchdog, daemon=True)
            self._watchdog_started.start()

    def _start_watchdog(self) -> None:
        self._watchdog = reaper.Watchdog.start(self.run_id)

    def _sweep_dead_runs_once(self, engine: Engine) -> None:
        """Leftovers of killed runs, swept once, while the first server gets ready."""
        with self._lock:
            if self._swept:
                return
            self._swept = True
        host = socket.gethostname()
        threading.Thread(target=reaper.sweep_dead_runs, args=(engine, host), daemon=True).start()

    def _first_rebuild(self, tag: str) -> bool:
        """--testserver-rebuild builds each image once per run, not once per server or worker."""
        if not self.settings.rebuild:
            return False
        if self.shared is not None:
            return self.shared.first_rebuild(tag)
        with self._lock:
            if tag in self._rebuilt:
                return False
            self._rebuilt.add(tag)
            return True

    def _network_for(self, engine: Engine, spec: ServerSpec) -> str | None:
        # A lone server talks to nobody: the default bridge saves a network create and remove
        # (about 250 ms here) on every run. Servers that link or are linked share the run's network.
        if spec.name not in self.config.networked:
            return None
        name = self.context.scoped(spec.share)
        with self._lock:
            if name in self._networks:
                return name
            try:
                engine.create_network(name, self.context.labels())
            except EngineError as exc:
                if exc.status != 409:  # 409: another worker of this run made it
                    raise
            if spec.share == "worker" or self.shared is None:
                self._networks.add(name)  # ours to remove; the run's network is the controller's
            return name

    def _environment(self, spec: ServerSpec) -> dict[str, str]:
        env = MaskedEnv(spec.env)
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

    def _event(self, kind: str, text: str) -> None:
        """Progress for the terminal: kind is "engine", "build-step", "build-output" or "ready"."""
        if self._on_event is not None:
            self._on_event(kind, text)

    def _start(self, spec: ServerSpec) -> ServerHandle:
        started = time.monotonic()
        deadline = started + spec.timeout
        engine = self.engine()
        env = self._environment(spec)
        docker_host = os.environ.get("DOCKER_HOST")
        problem = ports.remote_loopback_problem(docker_host, self.settings.bind_address)
        if problem and spec.ports:
            raise StartError(spec.name, problem)
        wanted = image.resolve(spec)

        def ensure() -> None:
            image.ensure_image(
                engine,
                spec,
                wanted,
                self.context.labels(spec.name),
                rebuild=self._first_rebuild,
                lock=build_lock,
                on_line=lambda line: self._event(
                    # our own LABEL steps are noise to the user: shown with -v only
                    "build-step"
                    if image.is_step(line) and f"LABEL {LABEL_PREFIX}" not in line
                    else "build-output",
                    f"building {spec.name}: {self.redact(line)}",
                ),
            )

        if self.settings.rebuild:
            ensure()
        try:
            network = self._network_for(engine, spec)
            try:
                # Optimistic: an image that is here (the usual case) costs no lookup at all.
                container = self._create(engine, spec, wanted.ref, env, network)
            except EngineError as exc:
                if not image.is_missing_image(exc):
                    raise
                ensure()
                container = self._create(engine, spec, wanted.ref, env, network)
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
        name = f"{self.context.scoped(spec.share)}-{spec.name}"

        def create() -> str:
            return engine.create_container(
                image=ref,
                name=name,
                command=spec.command,
                env=env,
                ports=[str(p) for p in spec.ports],
                port_bindings=ports.port_bindings(spec.ports, self.settings),
                hostname=spec.hostname,
                domain=spec.domain,
                labels=self.context.labels(spec.name),
                network=network,
                aliases=self._aliases(spec) if network else (),
            )

        try:
            container = create()
        except EngineError as exc:
            if exc.status != 409:
                raise
            # The name is taken by this run's own leftover: a worker that died while starting
            # this server (we hold the server's lock now). Replace it.
            engine.remove_container(name)
            container = create()
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
        self._sweep_dead_runs_once(engine)
        info = engine.inspect(container)
        readiness.check_running(engine, spec, container, info, self.redact)
        host = ports.handle_host(os.environ.get("DOCKER_HOST"), self.settings.bind_address)
        published = ports.published_ports(info, spec.ports, self.settings)
        ip = container_ip(info)
        target = readiness.Target(
            ip=ip, host=host, published={p.number: n for p, n in published.items()}
        )
        readiness.wait_until_ready(engine, spec, container, target, deadline, self.redact)
        handle = ServerHandle(
            name=spec.name,
            host=host,
            ports=published,
            container_id=container,
            ip=ip,
            engine=self.engine,
            redact=self.redact,
        )
        self._event("ready", f"{spec.name} ready in {time.monotonic() - started:.2f}s")
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
        """Remove this process's containers and networks; returns the problems met."""
        self.begin_close()
        return self.finish_close()

    def begin_close(self) -> None:
        """Start removing everything in the background; ``finish_close`` waits for it.

        The engine takes ~140 ms to remove a container; pytest's own end of run (summary,
        unconfigure, its garbage collection passes) runs meanwhile instead of after.
        """
        with self._lock:
            if self._closed:
                return  # sessionfinish began it; unconfigure is only a safety net
            self._closed = True
            containers = dict(self._containers)
            networks = sorted(self._networks)
            engine = self._engine
            if not self.settings.keep:
                self._containers.clear()
                self._networks.clear()
            if engine is None:
                return
            # Not a daemon: even if waiting for it is interrupted, the interpreter waits at exit.
            self._closing = threading.Thread(
                target=self._remove_all,
                args=(engine, containers, networks),
                name="testserver-teardown",
            )
            self._closing.start()

    def finish_close(self) -> list[str]:
        """Wait for the removal ``begin_close`` started; its problems, reported once."""
        with self._lock:
            thread = self._closing
        if thread is None:
            return []
        thread.join()
        with self._lock:
            problems, self._close_problems = self._close_problems, []
        return problems

    def _remove_all(self, engine: Engine, containers: dict[str, str], networks: list[str]) -> None:
        if self.settings.keep:
            engine.close()  # the containers stay; our connections to the engine do not
            return
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
        for network in networks:
            try:
                engine.remove_network(network)
            except TestserverError as exc:
                problems.append(f"could not remove the network {network}: {exc}")
        if self._watchdog_started is not None:
            self._watchdog_started.join()
        if self._watchdog is not None:
            self._watchdog.done()
        engine.close()
        with self._lock:
            self._close_problems += problems

    def keep_message(self) -> str | None:
        with self._lock:
            count = len(self._containers)
            networks = sorted(self._networks)
        if not self.settings.keep or not (count or networks):
            return None
        return keep_message(self.run_id, count, networks)


def container_ip(info: Mapping[str, Any]) -> str:
    """The container's address on its network (the run's, or the default bridge)."""
    networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
    return next((str(n["IPAddress"]) for n in networks.values() if n.get("IPAddress")), "")


def keep_message(run_id: str, count: int | None, networks: list[str]) -> str:
    label = f"label={LABEL_RUN}={run_id}"
    what = f"{count} container(s)" if count is not None else "the containers"
    text = (
        f"testserver: kept {what} of run {run_id} (--testserver-keep); "
        f"remove them with: docker rm -f $(docker ps -aq --filter {label})"
    )
    if networks:
        text += f" && docker network rm {' '.join(networks)}"
    return text
