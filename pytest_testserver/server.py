"""One run's servers: image -> container -> ready -> handle, and removal whatever happened.

A container is registered for removal the moment it exists, before anything waits on it; a server
that fails to start is removed at once. Independent servers start concurrently; a server's links
start before it. Under xdist, a ``share: run`` server is started by the first worker that needs it
(under a file lock) and published to the others; the controller removes it when all are done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import image, ports, readiness, reaper, variables
from .config import BuildSource, ServerConfig, ServerSpec
from .controller import connect_engine
from .coordination import SharedServers
from .errors import (
    EngineError,
    EngineUnavailable,
    ResetError,
    ServerError,
    ServerExited,
    StartError,
    TestserverError,
)
from .handle import ServerHandle
from .lifetimes import Instances, ScopeKeys
from .mounts import BindMount, EngineMount, engine_mounts, named
from .redact import Redactor, looks_secret
from .reuse import (
    FOLDER,
    LABEL_REUSE,
    Hold,
    Keeper,
    definition_digest,
    forget,
    remember_use,
    watch_idle,
)
from .run import (
    LABEL_RUN,
    LABEL_SERVER,
    RunContext,
    StateDir,
    UnsafeFolder,
    build_lock,
    discard,
    hold_lock,
    reason,
    tidy_locks,
    user_state_dir,
)
from .settings import RunSettings

if TYPE_CHECKING:
    from .engine import Engine

# Teardown has its own bound: a stalled engine must not hold the end of the run for long.
TEARDOWN_BOUND = 30.0
# How long a worker waits for another worker starting a shared server, beyond that server's
# own budgets (image and readiness).
CLAIM_MARGIN = 30.0


def secret_values(config: ServerConfig, environ: Mapping[str, str]) -> list[str]:
    values: list[str] = []
    for spec in config.servers.values():
        secrets = {key: environ[key] for key in spec.secret_env if key in environ}
        values += secrets.values()
        # An env value as the container gets it: ${NAME} expanded (a missing secret as empty:
        # that server will not start anyway).
        env = variables.resolve_env(dict(spec.env), dict.fromkeys(spec.secret_env, "") | secrets)
        values += [env[key] for key, _ in spec.env if looks_secret(key)]
        if isinstance(spec.image, BuildSource):
            values += [value for key, value in spec.image.args if looks_secret(key)]
    return values


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


class MaskedEnv(dict[str, str]):
    """A container's environment; its repr shows keys only (tracebacks print locals)."""

    def __repr__(self) -> str:
        return f"<environment {', '.join(self)}>"


class ServerPool:
    """The servers one process uses, started on first use and removed by ``close``."""

    def __init__(
        self,
        config: ServerConfig,
        settings: RunSettings,
        context: RunContext,
        *,
        shared: bool = False,
        connect: Callable[[], Engine] = connect_engine,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.context = context
        self.shared = shared  # in xdist workers: share: run servers are the run's, not ours
        self.redact = Redactor(secret_values(config, os.environ))
        self._connect = connect
        self._on_event = on_event
        self._lock = threading.Lock()
        self._server_locks = {name: threading.Lock() for name in config.servers}
        self._engine: Engine | None = None
        self._engine_error: TestserverError | None = None
        self._handles: dict[str, ServerHandle] = {}
        self._failures: dict[str, TestserverError] = {}
        self._last_test: dict[str, str] = {}  # container id -> the last test that used it
        # instance ("web", or "web.3" for a scope shorter than the session) -> container id:
        # the containers this process must remove
        self._containers: dict[str, str] = {}
        self._releasing: set[str] = set()  # instances being removed in the background
        # --testserver-reuse: server -> the kept container it uses (left running at the end)
        self._keeper = Keeper.for_project(settings.project) if settings.reuse else None
        self._kept: dict[str, tuple[str, str, Hold]] = {}  # server -> name, container, hold
        self._scoped = {
            name: Instances(
                name,
                start=functools.partial(self._start_instance, spec),
                remove=self._remove_instance,
                spares=settings.spares if self._may_have_spares(spec) else 0,
                background_removal=name not in config.linked,
            )
            for name, spec in config.servers.items()
            if spec.scope != "session"
        }
        self._networks: dict[str, str] = {}  # name -> id: the networks this process made
        # server -> its container's environment (secrets included), read once per run: the
        # values of its ${NAME} variables for the command, checks and reset
        self._envs: dict[str, MaskedEnv] = {}
        # the engine names of the named volumes this process made and must remove
        self._volumes: set[str] = set()
        self._volumes_made: set[str] = set()  # made or found: not asked for again
        self._volume_lock = threading.Lock()
        self._rebuilt: set[str] = set()
        self._watchdog: reaper.Watchdog | None = None
        self._watchdog_started: threading.Thread | None = None
        self._lease: reaper.Lease | None = None
        self._state: StateDir | None = None
        self._state_error: UnsafeFolder | None = None
        self._shared_servers: SharedServers | None = None
        self._closed = False
        self._said_domain = False
        self._networks_made: dict[str, str] = {}
        self._closing: threading.Thread | None = None
        self._close_problems: list[str] = []
        self.used_engine = False  # told to the xdist controller at the end (workeroutput)

    @property
    def run_id(self) -> str:
        return self.context.run_id

    @property
    def closing(self) -> bool:
        """Teardown has begun: a further SIGTERM must not interrupt it."""
        return self._closed

    def started(self) -> dict[str, ServerHandle]:
        """The servers started so far: each session server, each other one's current container."""
        with self._lock:
            handles = dict(self._handles)
        for name, instances in self._scoped.items():
            current = instances.current()
            if current is not None:
                handles[name] = current
        return handles

    # starting
    def get(self, name: str, keys: ScopeKeys | None = None) -> ServerHandle:
        """The handle of ``name``, starting it (and its links) on first use.

        ``keys`` are the asking test's scope keys: a server of a shorter scope than the session
        gets a fresh container when its scope's key changes.
        """
        handle = None
        for dependency in self.config.start_order(name):
            handle = self._handle_of(dependency, keys)
        assert handle is not None
        return handle

    def _handle_of(self, name: str, keys: ScopeKeys | None) -> ServerHandle:
        spec = self.config.servers[name]
        if spec.scope == "session":
            self._ensure(name)
            return self._handles[name]
        if keys is None:
            raise StartError(
                name,
                f"has scope: {spec.scope}, so only a test (or a fixture of scope {spec.scope} "
                "or shorter) can ask for it",
            )
        return self._scoped[name].acquire(keys[spec.scope])

    def get_many(
        self, names: Iterable[str], *, test: str | None = None, keys: ScopeKeys | None = None
    ) -> dict[str, ServerHandle]:
        """Start several servers concurrently (each after its links); the first error wins.

        For ``test`` (a test's id), each server's ``reset`` runs first, unless ``test`` is the
        first to use that server's container.
        """
        wanted = list(dict.fromkeys(names))
        handles = self._start_many(wanted, keys)
        if test is not None:
            self._reset_for(test, handles)
        return handles

    def _start_many(self, wanted: list[str], keys: ScopeKeys | None) -> dict[str, ServerHandle]:
        if len(wanted) <= 1:
            return {name: self.get(name, keys) for name in wanted}
        errors: list[BaseException] = []
        handles: dict[str, ServerHandle] = {}

        def start(name: str) -> None:
            try:
                handles[name] = self.get(name, keys)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in wanted]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return {name: handles[name] for name in wanted}

    def prestart(self, names: Iterable[str]) -> threading.Thread:
        """Start session servers in the background, before a test asks (at collection's end).

        A failure is kept for the first test that asks; a test asking meanwhile waits only for
        what is left of the start.
        """
        servers = self.config.servers
        needed = (link for name in names for link in self.config.start_order(name))
        wanted = [n for n in dict.fromkeys(needed) if servers[n].scope == "session"]

        def run() -> None:
            with contextlib.suppress(BaseException):  # each failure is kept per server
                self._start_many(wanted, None)

        thread = threading.Thread(target=run, name="testserver-prestart", daemon=True)
        thread.start()
        return thread

    @property
    def scoped(self) -> dict[str, str]:
        """Each server whose scope is shorter than the session, and its scope."""
        return {name: self.config.servers[name].scope for name in self._scoped}

    def prepare_spares(self, name: str, keys: list[str]) -> None:
        """Fresh containers of a scoped server, starting now for the scopes (``keys``) to come."""
        instances = self._scoped.get(name)
        if instances is not None and not self._closed:
            instances.prepare(keys)

    def release_scopes(self, keys: ScopeKeys | None) -> None:
        """After a test: each scoped server's container whose scope the next test leaves
        (``keys`` are the next test's; None at the end) is removed in the background."""
        for name, instances in self._scoped.items():
            scope = self.config.servers[name].scope
            instances.release_unless(keys[scope] if keys is not None else None)

    def _may_have_spares(self, spec: ServerSpec) -> bool:
        """A spare starts before the scope it serves: only a server that links to session
        servers alone, and that no other server links to (its name must resolve to one
        container on the run network), can have one."""
        links = (self.config.servers[link] for link in spec.links)
        return spec.name not in self.config.linked and all(s.scope == "session" for s in links)

    def _reset_for(self, test: str, handles: Mapping[str, ServerHandle]) -> None:
        for name, handle in handles.items():
            spec = self.config.servers[name]
            with self._lock:
                last = self._last_test.get(handle.container_id)
                self._last_test[handle.container_id] = test
            if spec.reset is not None and last is not None and last != test:
                self._reset(spec, handle)

    def _reset(self, spec: ServerSpec, handle: ServerHandle) -> None:
        """Exec ``reset``; anything but exit code 0 fails the test about to run, with the output."""
        assert spec.reset is not None
        argv = list(spec.reset)  # as written, for the messages: a secret in it stays ${NAME}
        engine = self.engine()
        expanded = list(variables.expand_argv(spec.reset, self._environment(spec)))
        with engine.deadline(time.monotonic() + spec.timeout):
            try:
                code, output = engine.exec(handle.container_id, expanded)
            except EngineError as exc:
                why = self.redact(str(exc))
                raise ResetError(spec.name, f"reset {argv} could not run: {why}") from None
        text = self.redact(output.decode("utf-8", "replace"))
        if code is None:
            raise ResetError(spec.name, f"reset {argv} could not run: the server is not running")
        if code != 0:
            raise ResetError(spec.name, f"reset {argv} exited with code {code}", output=text)

    def _ensure(self, name: str) -> None:
        with self._server_locks[name]:
            if name in self._handles:
                return
            if name in self._failures:
                raise self._failures[name]
            spec = self.config.servers[name]
            try:
                if self.shared and spec.share == "run":
                    handle = self._shared_handle(spec)
                else:
                    with self._as_server_error(spec):
                        handle = self._start(spec)
            except TestserverError as exc:
                self._failures[name] = exc
                raise
            with self._lock:
                self._handles[name] = handle

    def state_dir(self) -> StateDir:
        """This run's private folder: the controller's choice, or this user's (made safe)."""
        with self._lock:
            if self._state_error is not None:
                raise self._state_error
            if self._state is None:
                try:
                    self._state, warning = user_state_dir(self.context.state_dir)
                except (OSError, UnsafeFolder) as exc:
                    why = reason(exc)
                    self._state_error = UnsafeFolder(f"no private folder for the run: {why}")
                    raise self._state_error from None
                if warning:
                    self._event("warning", warning)
            return self._state

    def shared_servers(self) -> SharedServers:
        state = self.state_dir()
        with self._lock:
            if self._shared_servers is None:
                self._shared_servers = SharedServers(self.run_id, state)
            return self._shared_servers

    def _shared_handle(self, spec: ServerSpec) -> ServerHandle:
        """Another worker's server if it started one; else start it and publish it."""
        try:
            shared = self.shared_servers()
            claim = shared.claimed(spec.name, spec.image_timeout + spec.timeout + CLAIM_MARGIN)
        except (OSError, UnsafeFolder) as exc:
            raise StartError(spec.name, f"cannot be shared by the workers: {exc}") from None
        with self._as_server_error(spec), claim:
            state = shared.read(spec.name)
            if state is not None:
                if "error" in state:
                    raise TestserverError(str(state["error"]))
                container = str(state["container_id"])
                with self._lock:  # other workers' tests may have used it: reset before ours
                    self._last_test[container] = "(another xdist worker)"
                return self._adopt(spec, container)
            try:
                handle = self._start(spec)
            except TestserverError as exc:
                with self._lock:
                    ending = self._closed
                # A start cut short by this worker's own end (its container removed under it,
                # or never started) says nothing of the server: the next worker to need it
                # starts it afresh instead of failing with this worker's error.
                if not ending:
                    shared.write(spec.name, {"error": self.redact(str(exc))})
                raise
            with self._lock:  # the controller removes it when every worker is done
                ending = self._closed
                if not ending:
                    self._containers.pop(spec.name, None)
            if ending:
                # This worker's end removes it (begin_close took it, or will): never a server
                # for the other workers, who would get a container dying under their tests.
                raise StartError(spec.name, "the test run ended while the server was starting")
            shared.write(spec.name, {"container_id": handle.container_id})
            return handle

    def _adopt(self, spec: ServerSpec, container: str) -> ServerHandle:
        """The handle of a server another worker of this run started, checked with the engine.

        The state file only names the container; where it listens comes from the engine, and
        only from a container that carries this run's labels: a forged file cannot send a test
        to someone else's endpoint.
        """
        engine = self.engine()
        with engine.deadline(time.monotonic() + spec.timeout):
            try:
                info = engine.inspect(container)
            except EngineError as exc:
                if exc.status == 404:
                    raise ServerExited.vanished(spec.name) from None
                raise
        labels = (info.get("Config") or {}).get("Labels") or {}
        kept = self._kept_here(labels, spec)
        if kept:  # another worker adopted (or started) a kept container: this one uses it too
            folder = self.state_dir().child(FOLDER)
            try:
                hold = Hold.take(folder, kept, exclusive=False)
            finally:
                folder.close()
            if hold is not None:
                with self._lock:
                    self._kept[spec.name] = (kept, container, hold)
        elif labels.get(LABEL_RUN) != self.run_id or labels.get(LABEL_SERVER) != spec.name:
            raise StartError(
                spec.name,
                f"the run's state names container {container[:12]!r}, which is not this run's "
                f"{spec.name!r}: refusing to use it",
            )
        readiness.check_running(engine, spec, container, info, self.redact)
        host = ports.handle_host(engine.address, self.settings.bind_address)
        return ServerHandle(
            name=spec.name,
            host=host,
            ports=ports.published_ports(info, spec.ports, self.settings),
            container_id=container,
            ip=container_ip(info),
            engine=self.engine,
            redact=self.redact,
        )

    @contextlib.contextmanager
    def _as_server_error(self, spec: ServerSpec) -> Iterator[None]:
        """Every error on the start path is a ``testserver:`` message naming the server."""
        try:
            yield
        except ServerError:
            raise
        except EngineUnavailable as exc:
            raise exc.for_server(spec.name) from None
        except TestserverError as exc:
            text = str(exc)
            text = text.removeprefix("testserver: ")
            if text.startswith(f"server {spec.name!r}: "):
                raise
            raise StartError(spec.name, text) from None

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
        self.used_engine = True  # the controller sweeps what the workers made
        if not self.shared and not self.settings.keep:
            # Spawning a process costs milliseconds: do it beside the first server's start.
            self._watchdog_started = threading.Thread(
                target=self._start_watchdog, args=(engine,), daemon=True
            )
            self._watchdog_started.start()

    def _start_watchdog(self, engine: Engine) -> None:
        self._watchdog = reaper.Watchdog.start(self.run_id, engine.location.environ())

    def _hold_lease(self, engine: Engine) -> None:
        """The run's lease, from the first container's start on (in the background).

        Until then nothing needs it: another run judges an object without a lease by the
        object's own age, and ours are younger than their time-to-live. Its first round also
        sweeps runs known to be dead, and tidies this user's folder.
        """
        with self._lock:
            if self._lease is not None or self._closed or self.settings.keep:
                return
            if not self.context.lease_ttl:
                return
            holder = self.context.worker or "main"
            self._lease = reaper.Lease(engine, self.context, holder).start()
        if not self.shared:
            threading.Thread(target=self._tidy_folder, daemon=True).start()

    def _tidy_folder(self) -> None:
        with contextlib.suppress(OSError, UnsafeFolder):
            tidy_locks(self.state_dir())

    def _first_rebuild(self, tag: str) -> bool:
        """--testserver-rebuild builds each image once per run, not once per server or worker."""
        if not self.settings.rebuild:
            return False
        if self.shared:
            return self.shared_servers().first_rebuild(tag)
        with self._lock:
            if tag in self._rebuilt:
                return False
            self._rebuilt.add(tag)
            return True

    def _network_for(self, engine: Engine, spec: ServerSpec) -> str | None:
        """The id of the network ``spec`` joins (None: the default bridge).

        A lone server talks to nobody: the default bridge saves a network create and remove
        (about 250 ms here) on every run. Servers that link or are linked share the run's
        network, made exactly once per run: the engine's duplicate-name check is best effort,
        so xdist workers make it under a lock of the run and find it by id afterwards.
        """
        if spec.name not in self.config.networked:
            return None
        name = self.context.scoped(spec.sharing)
        with self._lock:
            if name in self._networks:
                return self._networks[name]
        per_run = bool(self.shared) and spec.sharing == "run"
        if not per_run:
            with self._lock:
                if name not in self._networks:
                    self._networks[name] = engine.create_network(name, self.context.labels())
                return self._networks[name]
        shared = self.shared_servers()
        with hold_lock(
            shared.folder,
            "network.lock",
            what="run network",
            run=self.run_id,
            timeout=spec.timeout + CLAIM_MARGIN,
        ):
            found = shared.folder.read_json("network.json")
            network = found.get("id") if isinstance(found, dict) else None
            if not isinstance(network, str):
                network = engine.create_network(name, self.context.labels())
                shared.folder.write_json("network.json", {"id": network})
        # Not ours to remove: the controller sweeps the run's network when every worker is done.
        return network

    def _check_binds(self, engine: Engine, spec: ServerSpec) -> None:
        """A bind mount names a path on the engine's host: only this machine's engine has ours."""
        if engine.location.is_local_socket:
            return
        for i, volume in enumerate(spec.volumes):
            if isinstance(volume, BindMount):
                raise StartError(
                    spec.name,
                    f"volumes[{i}]: a bind mount needs an engine on this machine's own socket, "
                    f"but the engine is at {engine.address}, where {volume.src} would name a "
                    "path on the engine's host: use copy: to put the files into the image",
                )

    def _mounts_for(self, engine: Engine, spec: ServerSpec) -> list[EngineMount]:
        """The container's mounts, making the run's named volumes it needs first.

        A volume of the whole run under xdist is made by whichever worker needs it first (the
        engine's create returns the one that exists) and removed by the controller's sweep;
        otherwise this process made it and removes it at the end, after the containers.
        """
        prefix = self.context.scoped(spec.sharing)
        per_run = self.shared and spec.sharing == "run"
        for name in named(spec.volumes):
            volume = f"{prefix}-vol-{name}"
            with self._volume_lock:
                if volume in self._volumes_made:
                    continue
                engine.make_volume(volume, self.context.labels())
                self._volumes_made.add(volume)
                if not per_run:
                    with self._lock:  # registered before anything mounts it
                        self._volumes.add(volume)
        return engine_mounts(
            spec.volumes, lambda name: f"{prefix}-vol-{name}", self.context.labels(spec.name)
        )

    def _environment(self, spec: ServerSpec) -> MaskedEnv:
        """The container's environment: ``env`` with its ${NAME} expanded, and the secrets,
        read from the test run's environment the first time the server needs them."""
        with self._lock:
            known = self._envs.get(spec.name)
        if known is not None:
            return known
        secrets: dict[str, str] = {}
        for key in spec.secret_env:
            if key not in os.environ:
                raise StartError(
                    spec.name, f"secret_env {key} is not set in the environment of the test run"
                )
            secrets[key] = os.environ[key]
        env = MaskedEnv(variables.resolve_env(dict(spec.env), secrets))
        with self._lock:
            return self._envs.setdefault(spec.name, env)

    def _domainname(self, engine: Engine, spec: ServerSpec) -> str | None:
        """The container's domainname, unless the engine cannot set one: rootless Docker
        refuses ("open /proc/sys/kernel/domainname: permission denied"), Podman's Docker API
        ignores it. The server's names on the run network resolve either way."""
        if not spec.domain or engine.sets_domainname:
            return spec.domain
        with self._lock:
            said, self._said_domain = self._said_domain, True
        if not said:
            why = "is Podman" if engine.kind == "podman" else "is rootless"
            self._event(  # shown like the engine line: a fact about the engine, not a fault
                "engine",
                f"this engine {why} and cannot set a container's domainname: servers with "
                f"domain: ({spec.name!r}...) resolve as name.domain on the run network, but "
                "their kernel domainname (`domainname`, `hostname -d`) is not set",
            )
        return None

    def _aliases(self, spec: ServerSpec) -> list[str]:
        names = [spec.name, spec.hostname, *spec.aliases]
        if spec.domain:
            names += [f"{n}.{spec.domain}" for n in (spec.hostname, *spec.aliases) if "." not in n]
        return list(dict.fromkeys(names))

    def _event(self, kind: str, text: str) -> None:
        """Progress for the terminal: kind is "engine", "build-step", "build-output", "progress"
        (a build context's size, a pull's end), "heartbeat" (a long step, a pull under way: a
        later one replaces it), "ready", "instance" or "warning"."""
        if self._on_event is not None:
            self._on_event(kind, text)

    def _build_line(self, spec: ServerSpec, wanted: image.ImageRef, line: str) -> None:
        """A build log line: the user's steps are shown, the rest (the builder's output, the
        plugin's own steps) with -v only."""
        step = image.user_step(wanted.plan, line) if wanted.plan is not None else None
        kind = "build-step" if step is not None else "build-output"
        self._event(kind, f"building {spec.name}: {self.redact(step or line)}")

    def _start_instance(self, spec: ServerSpec, instance: str) -> ServerHandle:
        """One fresh container of a server whose scope is shorter than the session."""
        with self._as_server_error(spec):
            return self._start(spec, instance)

    def _start(self, spec: ServerSpec, instance: str | None = None) -> ServerHandle:
        """Start ``spec`` as ``instance`` (its own name for a session server) until it is ready."""
        instance = instance or spec.name
        started = time.monotonic()
        engine = self.engine()
        env = self._environment(spec)
        problem = ports.remote_loopback_problem(engine.address, self.settings.bind_address)
        if problem and spec.ports:
            raise StartError(spec.name, problem)
        self._check_binds(engine, spec)
        wanted = image.resolve(spec)
        # Two budgets: the image (pull, build, waiting for another run's build) has its own,
        # so a cold CI build neither eats the server's readiness time nor is blamed on it.
        image_deadline = started + spec.image_timeout
        made_image = False

        def ensure() -> None:
            nonlocal made_image
            made_image = True
            image.ensure_image(
                engine,
                spec,
                wanted,
                # An image outlives the run: its labels name project, server and content, never
                # the run (no teardown, sweep or leak check may count it).
                image.image_labels(spec, wanted.plan, self.settings.project)
                if wanted.plan is not None
                else {},
                rebuild=self._first_rebuild,
                lock=lambda tag: build_lock(
                    self.state_dir(), tag, self.run_id, image_deadline - time.monotonic()
                ),
                on_line=lambda line: self._build_line(spec, wanted, line),
                on_progress=lambda text, *, periodic: self._event(
                    "heartbeat" if periodic else "progress", f"{spec.name}: {self.redact(text)}"
                ),
            )

        with engine.deadline(image_deadline):
            if self.settings.rebuild:
                ensure()
        if self._reusable(spec):
            kept = self._start_kept(engine, spec, wanted.ref, env, ensure, started)
            if kept is not None:
                return kept
        with engine.deadline(image_deadline):
            try:
                network = self._network_for(engine, spec)
                mounts = self._mounts_for(engine, spec)
                try:
                    # Optimistic: an image that is here (the usual case) costs no lookup at all.
                    container = self._create(
                        engine, spec, instance, wanted.ref, env, network, mounted=mounts
                    )
                except EngineError as exc:
                    if not image.is_missing_image(exc):
                        raise
                    ensure()
                    container = self._create(
                        engine, spec, instance, wanted.ref, env, network, mounted=mounts
                    )
            except EngineError as exc:
                why = self.redact(str(exc))
                raise StartError(spec.name, f"the container could not be created: {why}") from None
        image_took = time.monotonic() - started
        note = (
            f" (after {image_took:.1f}s for the image, which has its own "
            f"image_timeout of {spec.image_timeout:g}s)"
            if made_image
            else ""
        )
        deadline = time.monotonic() + spec.timeout
        try:
            with engine.deadline(deadline):
                handle = self._run(engine, spec, container, deadline, started, note)
        except BaseException:
            if not self.settings.keep:
                self._remove_quietly(instance)
            raise
        took = f"{time.monotonic() - started:.2f}s"
        if instance == spec.name:
            self._event("ready", f"{spec.name} ready in {took}")
        else:  # one line per fresh container would drown the tests' own: shown with -v
            self._event("instance", f"{spec.name} ready in {took} (fresh container {instance})")
        return handle

    def _reusable(self, spec: ServerSpec) -> bool:
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

    def _start_kept(
        self,
        engine: Engine,
        spec: ServerSpec,
        ref: str,
        env: dict[str, str],
        ensure: Callable[[], None],
        started: float,
    ) -> ServerHandle | None:
        """Adopt the kept container of this definition, or start one to keep; None when the
        name is held by a kept container of another definition that a run uses right now."""
        assert self._keeper is not None
        with engine.deadline(started + spec.image_timeout):
            image_id = engine.image_id(ref)
            if image_id is None:
                ensure()
                image_id = engine.image_id(ref)
        digest = definition_digest(reuse_definition(spec, image_id, env, self.settings))
        folder = self.state_dir().child(FOLDER)
        try:
            return self._keep(engine, spec, ref, env, digest, folder, started)
        finally:
            folder.close()

    def _keep(
        self,
        engine: Engine,
        spec: ServerSpec,
        ref: str,
        env: dict[str, str],
        digest: str,
        folder: StateDir,
        started: float,
    ) -> ServerHandle | None:
        assert self._keeper is not None
        name = self._keeper.name(spec.name)
        deadline = time.monotonic() + spec.timeout
        with engine.deadline(deadline):
            for found in engine.objects(self._keeper.selector(spec.name)):
                if found.kind != "container":
                    continue
                if found.labels.get(LABEL_REUSE) != digest:
                    self._remove_kept(engine, found.id, name, folder)  # stale: another definition
                    continue
                handle = self._adopt_kept(engine, spec, found.id, name, folder, deadline, started)
                if handle is not None:
                    return handle
            hold = Hold.take(folder, name, exclusive=False)
            if hold is None:
                return None  # being removed right now (idle, stale or cleaned)
            try:
                container = self._create(
                    engine,
                    spec,
                    spec.name,
                    ref,
                    env,
                    None,
                    name=name,
                    labels=self._keeper.labels(spec.name, digest),
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
                handle = self._run(engine, spec, container, deadline, started, "")
            except BaseException:
                hold.release()
                self._remove_quietly(spec.name)
                forget(folder, name)
                raise
        with self._lock:
            self._containers.pop(spec.name, None)  # kept: the end of the run leaves it running
            self._kept[spec.name] = (name, container, hold)
        took = time.monotonic() - started
        self._event("ready", f"{spec.name} ready in {took:.2f}s (kept for reuse by later runs)")
        return handle

    def _adopt_kept(
        self,
        engine: Engine,
        spec: ServerSpec,
        container: str,
        name: str,
        folder: StateDir,
        deadline: float,
        started: float,
    ) -> ServerHandle | None:
        hold = Hold.take(folder, name, exclusive=False)
        if hold is None:
            return None  # being removed (idle, stale or cleaned) right now
        try:
            watch_idle(folder, name, container, self.settings.reuse_idle, self._environ(engine))
            handle = self._ready(engine, spec, container, deadline, started, "")
        except (TestserverError, EngineError):
            hold.release()  # not running or not ready any more: replaced
            self._remove_kept(engine, container, name, folder)
            return None
        except BaseException:
            hold.release()
            raise
        with self._lock:
            self._kept[spec.name] = (name, container, hold)
            self._last_test[container] = "(an earlier run)"  # reset before this run's first test
        took = time.monotonic() - started
        self._event("ready", f"{spec.name} reused in {took:.2f}s (kept from an earlier run)")
        return handle

    def _kept_here(self, labels: Mapping[str, str], spec: ServerSpec) -> str | None:
        """The kept name when ``labels`` are those of this user's and project's kept ``spec``."""
        keeper = self._keeper
        if keeper is None or not self._reusable(spec):
            return None
        mine = all(labels.get(k) == v for k, v in keeper.selector(spec.name).items())
        return keeper.name(spec.name) if mine and LABEL_REUSE in labels else None

    @staticmethod
    def _environ(engine: Engine) -> dict[str, str]:
        return dict(engine.location.environ())

    def _release_kept(self) -> list[str]:
        """The end of a run that used kept containers: each is left running, marked used now;
        the idle watch started when the run took it removes it once it has been idle enough."""
        with self._lock:
            kept, self._kept = dict(self._kept), {}
        if not kept:
            return []
        problems: list[str] = []
        try:
            folder = self.state_dir().child(FOLDER)
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

    def _create(
        self,
        engine: Engine,
        spec: ServerSpec,
        instance: str,
        ref: str,
        env: dict[str, str],
        network: str | None,
        *,
        mounted: Sequence[EngineMount] = (),
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        kept = name is not None
        name = name or f"{self.context.scoped(spec.sharing)}-{instance}"

        # Expanded here, at start, and never shown: it may hold a secret.
        command = variables.expand_argv(spec.command, env) if spec.command is not None else None
        options = spec.options
        if options.entrypoint:
            entrypoint = variables.expand_argv(options.entrypoint, env)
            options = dataclasses.replace(options, entrypoint=entrypoint)

        def create() -> str:
            return engine.create_container(
                image=ref,
                name=name,
                command=command,
                env=env,
                ports=[str(p) for p in spec.ports],
                port_bindings=ports.port_bindings(spec.ports, self.settings),
                hostname=spec.hostname,
                domain=self._domainname(engine, spec),
                labels=labels if labels is not None else self.context.labels(spec.name),
                network=network,
                aliases=self._aliases(spec) if network else (),
                init=spec.init,
                options=options,
                mounted=mounted,
            )

        try:
            container = create()
        except EngineError as exc:
            if exc.status != 409 or kept:  # a kept name is another run's: never replaced here
                raise
            # The name is taken by this run's own leftover: a worker that died or ended while
            # starting this server (we hold the server's lock now). Replace it.
            self._free_name(engine, spec.name, name)
            container = create()
        with self._lock:
            self._containers[instance] = container  # registered before anything waits on it
            closed = self._closed
        if closed:  # the run ended (Ctrl-C) while this server was being created
            self._remove_quietly(instance)
            raise StartError(spec.name, "the test run ended while the server was starting")
        return container

    def _free_name(self, engine: Engine, server: str, name: str) -> None:
        """Remove this run's leftover container ``name``, or wait out its removal when the
        worker that made it is removing it already (the engine refuses a second one)."""
        try:
            engine.remove_container(name)
            return
        except EngineError as exc:
            if exc.status != 409 or "already in progress" not in str(exc):
                raise
        deadline = time.monotonic() + TEARDOWN_BOUND
        delay = 0.01
        while time.monotonic() < deadline:
            try:
                engine.inspect(name)
            except EngineError as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        raise StartError(
            server, f"container {name} was still being removed after {TEARDOWN_BOUND:g}s"
        )

    def _run(
        self,
        engine: Engine,
        spec: ServerSpec,
        container: str,
        deadline: float,
        started: float,
        note: str,
    ) -> ServerHandle:
        try:
            engine.start(container)
        except EngineError as exc:
            raise self._start_error(spec, str(exc)) from None
        threading.Thread(target=self._hold_lease, args=(engine,), daemon=True).start()
        try:
            return self._ready(engine, spec, container, deadline, started, note)
        except EngineError as exc:  # an inspect, exec or log call failed under the checks
            raise readiness.engine_failure(engine, spec, container, exc, self.redact) from None

    def _ready(
        self,
        engine: Engine,
        spec: ServerSpec,
        container: str,
        deadline: float,
        started: float,
        note: str,
    ) -> ServerHandle:
        info = engine.inspect(container)
        readiness.check_running(engine, spec, container, info, self.redact)
        host = ports.handle_host(engine.address, self.settings.bind_address)
        published = ports.published_ports(info, spec.ports, self.settings)
        ip, gateway = container_network(info)
        target = readiness.Target(
            ip=ip,
            host=host,
            # network checks are TCP: a UDP port of the same number has another host port
            published={p.number: n for p, n in published.items() if p.protocol == "tcp"},
            direct=engine.routes_directly(ip, gateway),
        )
        values = self._environment(spec)
        readiness.wait_until_ready(
            engine, spec, container, target, deadline, self.redact, note, values
        )
        readiness.check_reachable(spec, target, engine.address)
        handle = ServerHandle(
            name=spec.name,
            host=host,
            ports=published,
            container_id=container,
            ip=ip,
            engine=self.engine,
            redact=self.redact,
        )
        return handle

    def _start_error(self, spec: ServerSpec, message: str) -> StartError:
        if ports.is_port_conflict(message):
            return StartError(spec.name, ports.taken_port_message(message, spec, self.settings))
        return StartError(spec.name, f"the container could not start: {self.redact(message)}")

    # removing
    def _remove_quietly(self, instance: str) -> None:
        with self._lock:
            container = self._containers.pop(instance, None)
        if container is not None and self._engine is not None:
            try:
                self._engine.remove_container(container)
            except TestserverError:
                with self._lock:  # leave it to close(), which reports what it cannot remove
                    self._containers[instance] = container

    def _remove_instance(self, instance: str) -> None:
        """A scoped server's container whose scope ended; registered until it is really gone,
        so that a run ending meanwhile still removes (or reports) it."""
        with self._lock:
            container = self._containers.get(instance)
            engine = self._engine
            if container is None or engine is None or self.settings.keep or self._closed:
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
        for instances in self._scoped.values():
            instances.close()  # no more spares
        with self._lock:
            # Those being removed already are waited for (_remove_all), not removed twice.
            containers = {i: c for i, c in self._containers.items() if i not in self._releasing}
            networks = sorted(self._networks)
            self._networks_made = dict(self._networks)
            volumes = sorted(self._volumes)
            engine = self._engine
            if not self.settings.keep:
                for instance in containers:
                    del self._containers[instance]
                self._networks.clear()
                self._volumes.clear()
            if engine is not None:
                # Not a daemon: even if waiting for it is interrupted, the interpreter waits at
                # exit (every engine call in it is bounded by TEARDOWN_BOUND).
                self._closing = threading.Thread(
                    target=self._remove_all,
                    args=(engine, containers, networks, volumes),
                    name="testserver-teardown",
                )
                self._closing.start()
        if engine is None:
            self._close_state()

    def finish_close(self) -> list[str]:
        """Wait for the removal ``begin_close`` started; its problems, reported once."""
        with self._lock:
            thread = self._closing
        if thread is None:
            return []
        thread.join(TEARDOWN_BOUND + 10)
        with self._lock:
            problems, self._close_problems = self._close_problems, []
        if thread.is_alive():
            problems += [
                f"the removal did not end within {TEARDOWN_BOUND + 10:g}s",
                reaper.leftover_hint(self.run_id),
            ]
        return problems

    def _remove_all(
        self,
        engine: Engine,
        containers: dict[str, str],
        networks: list[str],
        volumes: list[str],
    ) -> None:
        """Remove each container, network and volume on its own; report what could not be.

        The watchdog is told ``done`` only when nothing is left: otherwise it sweeps the run
        itself once this process is gone.
        """
        problems: list[str] = []
        lease = self._lease
        if lease is not None:
            lease.stop()
        if self._watchdog_started is not None:
            self._watchdog_started.join()
        kept_problems = self._release_kept()
        if self.settings.keep:
            engine.close()  # the containers stay; our connections to the engine do not
            self._close_state()
            return
        deadline = time.monotonic() + TEARDOWN_BOUND
        for instances in self._scoped.values():
            instances.wait_released(deadline)
        with self._lock:  # what a removal in the background left (or the engine refused)
            containers.update(self._containers)
            self._containers.clear()
        with engine.deadline(deadline):
            try:
                problems = self._remove_each(engine, containers, networks, volumes)
            except Exception as exc:  # never a thread that dies and leaves things silently
                problems = [f"teardown failed: {type(exc).__name__}: {exc}"]
        if problems:
            problems.append(reaper.leftover_hint(self.run_id))
            if self._watchdog is not None:
                self._watchdog.abandon()
        elif self._watchdog is not None:
            self._watchdog.done()
        problems += kept_problems
        engine.close()
        self._close_state()
        with self._lock:
            self._close_problems += problems

    def _remove_each(
        self,
        engine: Engine,
        containers: dict[str, str],
        networks: list[str],
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

        def release(lease: reaper.Lease) -> None:
            try:
                lease.release()
            except Exception as exc:
                problems.append(f"could not remove the run's lease: {exc}")

        threads = [engine.thread(remove, *item) for item in containers.items()]
        lease = self._lease
        if lease is not None and not self.shared:
            # The lone run's lease goes beside its containers, not after them (~100 ms less at
            # the end of every run): without it, another run judges what is left by its age
            # and owner, and this run's are young and their owner alive. A worker's lease
            # stays for the controller's sweep.
            threads.append(engine.thread(release, lease))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name in networks:
            try:
                engine.remove_network(self._networks_made[name])
            except Exception as exc:
                problems.append(f"could not remove the network {name}: {exc}")
        for name in volumes:  # after the containers that mount them
            try:
                engine.remove_volume(name)
            except Exception as exc:
                problems.append(f"could not remove the volume {name}: {exc}")
        return problems

    def _close_state(self) -> None:
        with self._lock:
            shared, self._shared_servers = self._shared_servers, None
            state, self._state = self._state, None
        if shared is not None:
            shared.close()
        if state is not None:
            discard(state)

    def keep_message(self) -> str | None:
        with self._lock:
            count = len(self._containers)
            networks = sorted(self._networks)
            volumes = sorted(self._volumes)
        if not self.settings.keep or not (count or networks or volumes):
            return None
        return reaper.keep_message(self.run_id, count, networks, volumes)


def container_network(info: Mapping[str, Any]) -> tuple[str, str]:
    """The container's address on its network (the run's, or the default bridge), and that
    network's gateway."""
    networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
    for network in networks.values():
        if network.get("IPAddress"):
            return str(network["IPAddress"]), str(network.get("Gateway") or "")
    return "", ""


def container_ip(info: Mapping[str, Any]) -> str:
    return container_network(info)[0]
