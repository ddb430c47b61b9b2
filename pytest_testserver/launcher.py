"""Starting one container: image, create, start, ready, handle.

The pool decides which container a server gets (kept, shared or fresh); the launcher makes one.
Each start is one ``Launch`` value. What a start needs once per run lives here too: each
server's environment (secrets read on first need), the run's named volumes, --testserver-rebuild's
once-per-run builds. A container is registered with ``Cleanup`` the moment it exists; a start that
fails removes what it made.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from . import exits, image, ports, pulls, readiness, registry, variables
from .cleanup import TEARDOWN_BOUND, Cleanup
from .config import Port, ServerConfig, ServerSpec
from .connection import Connection, Event
from .errors import EngineError, StartError, TestserverError
from .handle import ServerHandle
from .identity import RunContext
from .launch import Launch, MaskedEnv
from .locks import build_lock
from .mounts import BindMount, EngineMount, engine_mounts, named
from .ports import container_network
from .reach import Reach, Route
from .settings import RunSettings

if TYPE_CHECKING:
    from .engine import Engine

# The network of a server that links or is linked, when the run's workers share it (xdist):
# made once per run by whichever worker needs it first (see sharing.py).
RunNetwork = Callable[["Engine", ServerSpec, str], str]


class ImageStep:
    """The image of one launch: found by the create itself, pulled or built only when missing
    (or once per run under --testserver-rebuild)."""

    def __init__(self, launcher: Launcher, launch: Launch) -> None:
        self.launcher = launcher
        self.launch = launch
        self.wanted = launcher.resolve(launch.spec)
        self.made = False

    @property
    def ref(self) -> str:
        return self.wanted.ref

    def ensure(self) -> None:
        self.made = True
        self.launcher.ensure_image(self.launch, self.wanted)

    def note(self) -> str:
        """How long the image took, when it had to be made: the readiness budget began after."""
        if not self.made:
            return ""
        took = time.monotonic() - self.launch.started
        return (
            f" (after {took:.1f}s for the image, which has its own "
            f"image_timeout of {self.launch.spec.image_timeout:g}s)"
        )


class Launcher:
    """Makes containers ready: one ``Launch`` at a time, from any thread."""

    def __init__(
        self,
        config: ServerConfig,
        settings: RunSettings,
        context: RunContext,
        *,
        connection: Connection,
        cleanup: Cleanup,
        redact: Callable[[str], str],
        event: Event,
        run_network: RunNetwork | None = None,
        first_rebuild: Callable[[str], bool] | None = None,
        reach: Reach | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.context = context
        self.connection = connection
        self.cleanup = cleanup
        self.redact = redact
        self._event = event
        self._run_network = run_network  # under xdist, for share: run servers
        self._shared_rebuild = first_rebuild
        self._lock = threading.Lock()
        # server -> its container's environment (secrets included), read once per run: the
        # values of its ${NAME} variables for the command, checks and reset
        self._envs: dict[str, MaskedEnv] = {}
        self._volumes_made: set[str] = set()  # made or found: not asked for again
        self._volume_lock = threading.Lock()
        self._rebuilt: set[str] = set()
        self._said_domain = False
        self.digests: dict[str, str] = {}  # server -> the registry digest its image came from
        # how the tests reach servers (published ports, or joining the run's networks as a
        # sibling container): decided on the first start, once per process
        self.reach = reach or Reach(settings, override=settings.reach)
        self._said_route = False

    # one start
    def launch(self, spec: ServerSpec, instance: str | None = None) -> Launch:
        """The value of one start of ``spec`` (as ``instance``): engine, environment, checks
        that need no container."""
        started = time.monotonic()
        engine = self.connection.engine()
        launch = Launch(
            spec=spec,
            instance=instance or spec.name,
            engine=engine,
            env=self.environment(spec),
            redact=self.redact,
            started=started,
        )
        route = self.route(engine, spec.name)
        problem = ports.remote_loopback_problem(engine.address, self.settings.bind_address)
        if problem and spec.ports and not route.joins:
            raise StartError(spec.name, problem)
        self._check_binds(engine, spec)
        return launch

    def route(self, engine: Engine, server: str) -> Route:
        """How this process reaches its servers (reach.py); the bind address it implies."""
        try:
            route = self.reach.route(engine)
        except EngineError as exc:
            raise StartError(server, f"could not tell how to reach servers: {exc}") from None
        except TestserverError as exc:
            raise StartError(server, str(exc)) from None
        if route.bind_address != self.settings.bind_address:
            self.settings = self.reach.settings(engine)
        with self._lock:
            said, self._said_route = self._said_route, True
        if not said and route.why != f"published on {route.bind_address}":
            self._event("engine", route.why)  # a decision the user did not write down
        return route

    def image_step(self, launch: Launch) -> ImageStep:
        step = ImageStep(self, launch)
        with launch.engine.deadline(launch.image_deadline):
            pulled_always = step.wanted.plan is None and self.pull_policy(launch.spec) == "always"
            if self.settings.rebuild or pulled_always:
                step.ensure()
        return step

    def resolve(self, spec: ServerSpec) -> image.ImageRef:
        """What ``spec`` runs: a Docker Hub image through the run's mirror, if any."""
        wanted = image.resolve(spec)
        if wanted.plan is not None or not self.settings.registry_mirror:
            return wanted
        return image.ImageRef(registry.mirrored(wanted.ref, self.settings.registry_mirror))

    def pull_policy(self, spec: ServerSpec) -> str:
        return self.settings.pull or spec.pull

    def _pulling(self, launch: Launch) -> pulls.Pulling:
        spec = launch.spec
        policy = self.pull_policy(spec)
        return pulls.Pulling(
            server=spec.name,
            policy=policy,
            policy_source=(
                f"--testserver-pull={policy}" if self.settings.pull else f"pull: {policy}"
            ),
            platform=spec.platform,
            deadline=launch.image_deadline,
            lock=lambda ref: build_lock(
                self.connection.state_dir(),
                ref,
                self.context.run_id,
                launch.image_deadline - time.monotonic(),
            ),
            first=self._first_pull,
            redact=self.redact,
        )

    def _first_pull(self, ref: str) -> bool:
        """pull: always pulls each image once per run, not once per server or worker."""
        key = f"pull {ref}"
        if self._shared_rebuild is not None:
            return self._shared_rebuild(key)
        with self._lock:
            if key in self._rebuilt:
                return False
            self._rebuilt.add(key)
            return True

    def start(self, launch: Launch, step: ImageStep) -> ServerHandle:
        """A fresh container of the run: created, started, ready."""
        spec, engine = launch.spec, launch.engine
        with engine.deadline(launch.image_deadline):
            try:
                network = self._network_for(engine, spec)
                mounts = self._mounts_for(engine, spec)
                try:
                    # Optimistic: an image that is here (the usual case) costs no lookup at all.
                    container = self.create(launch, step.ref, network, mounted=mounts)
                except EngineError as exc:
                    if not image.is_missing_image(exc):
                        raise
                    step.ensure()
                    container = self.create(launch, step.ref, network, mounted=mounts)
            except EngineError as exc:
                why = self.redact(str(exc))
                if spec.platform and (other := registry.platform_mismatch(step.ref, why)):
                    raise StartError(spec.name, other) from None
                raise StartError(spec.name, f"the container could not be created: {why}") from None
        launch = launch.created(container, time.monotonic() + spec.timeout, step.note())
        try:
            with engine.deadline(launch.deadline):
                handle = self.run(launch)
        except BaseException:
            if not self.settings.keep:
                self.cleanup.remove_quietly(launch.instance)
            raise
        took = f"{time.monotonic() - launch.started:.2f}s"
        if launch.instance == spec.name:
            self._event("ready", f"{spec.name} ready in {took}")
        else:  # one line per fresh container would drown the tests' own: shown with -v
            self._event(
                "instance", f"{spec.name} ready in {took} (fresh container {launch.instance})"
            )
        return handle

    def ensure_image(self, launch: Launch, wanted: image.ImageRef) -> None:
        spec = launch.spec
        digest = image.ensure_image(
            launch.engine,
            spec,
            wanted,
            # An image outlives the run: its labels name project, server and content, never the
            # run (no teardown, sweep or leak check may count it).
            image.image_labels(spec, wanted.plan, self.settings.project)
            if wanted.plan is not None
            else {},
            rebuild=self._first_rebuild,
            lock=lambda tag: build_lock(
                self.connection.state_dir(),
                tag,
                self.context.run_id,
                launch.image_deadline - time.monotonic(),
            ),
            on_line=lambda line: self._build_line(spec, wanted, line),
            on_progress=lambda text, *, periodic: self._event(
                "heartbeat" if periodic else "progress", f"{spec.name}: {self.redact(text)}"
            ),
            pulling=self._pulling(launch) if wanted.plan is None else None,
        )
        if digest:  # what a moving tag resolved to: -v, and the junit properties
            with self._lock:
                self.digests[spec.name] = digest
            self._event("digest", f"{spec.name}: image {wanted.ref} is {digest}")

    def create(
        self,
        launch: Launch,
        ref: str,
        network: str | None,
        *,
        mounted: Sequence[EngineMount] = (),
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Create the container (not started) and register it for removal at once."""
        spec, engine, env = launch.spec, launch.engine, launch.env
        kept = name is not None
        name = name or f"{self.context.scoped(spec.sharing)}-{launch.instance}"

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
                port_bindings=self._bindings(engine, spec),
                hostname=spec.hostname,
                domain=self._domainname(engine, spec),
                labels=labels if labels is not None else self.run_labels(spec),
                network=network,
                aliases=aliases(spec) if network else (),
                init=spec.init,
                options=options,
                mounted=mounted,
                platform=spec.platform,
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
        self.cleanup.register(spec.name, launch.instance, container)
        return container

    def _bindings(self, engine: Engine, spec: ServerSpec) -> dict[str, tuple[str, int | None]]:
        """Where ports are published: a sibling container publishes only what the user fixed
        (host ports, bind-local): its tests reach the servers on the run's network."""
        bindings = ports.port_bindings(spec.ports, self.settings)
        if self.reach.route(engine).joins:
            return {key: value for key, value in bindings.items() if value[1] is not None}
        return bindings

    def run_labels(self, spec: ServerSpec) -> dict[str, str]:
        """The run's labels of a container, over a compose service's own."""
        return {**dict(spec.labels), **self.context.labels(spec.name)}

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

    def run(self, launch: Launch) -> ServerHandle:
        """Start the created container and wait until it is ready."""
        try:
            launch.engine.start(launch.container)
        except EngineError as exc:
            raise self._start_error(launch.spec, str(exc)) from None
        threading.Thread(target=self.connection.hold_lease, daemon=True).start()
        try:
            return self.ready(launch)
        except EngineError as exc:  # an inspect, exec or log call failed under the checks
            raise exits.engine_failure(
                launch.engine, launch.spec, launch.container, exc, self.redact
            ) from None

    def ready(self, launch: Launch) -> ServerHandle:
        """Wait until a started container is ready; its handle."""
        engine, spec, container = launch.engine, launch.spec, launch.container
        host = ports.handle_host(engine.address, self.settings.bind_address)
        if spec.oneshot:  # a compose service others wait on: ready once it has exited 0
            readiness.wait_completed(launch)
            return self.handle(spec, container, host, {}, "")
        info = engine.inspect(container)
        exits.check_running(engine, spec, container, info, self.redact)
        ip, gateway = container_network(info)
        if self.reach.route(engine).joins and ip:
            # a sibling: the server's address on the run's network, and its own ports
            target = readiness.Target(ip=ip, host=ip, published={}, direct=True)
            readiness.wait_until_ready(launch, target)
            return self.handle(spec, container, ip, {p: p.number for p in spec.ports}, ip)
        published = ports.published_ports(info, spec.ports, self.settings)
        target = readiness.Target(
            ip=ip,
            host=host,
            # network checks are TCP: a UDP port of the same number has another host port
            published={p.number: n for p, n in published.items() if p.protocol == "tcp"},
            direct=engine.routes_directly(ip, gateway),
        )
        readiness.wait_until_ready(launch, target)
        readiness.check_reachable(spec, target, engine.address)
        return self.handle(spec, container, host, published, ip)

    def handle(
        self,
        spec: ServerSpec,
        container: str,
        host: str,
        published: Mapping[Port, int],
        ip: str,
    ) -> ServerHandle:
        return ServerHandle(
            name=spec.name,
            host=host,
            ports=published,
            container_id=container,
            ip=ip,
            engine=self.connection.engine,
            redact=self.redact,
        )

    def _start_error(self, spec: ServerSpec, message: str) -> StartError:
        if ports.is_port_conflict(message):
            return StartError(spec.name, ports.taken_port_message(message, spec, self.settings))
        return StartError(spec.name, f"the container could not start: {self.redact(message)}")

    # what a start needs once per run
    def environment(self, spec: ServerSpec) -> MaskedEnv:
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

    def _first_rebuild(self, tag: str) -> bool:
        """--testserver-rebuild builds each image once per run, not once per server or worker."""
        if not self.settings.rebuild:
            return False
        if self._shared_rebuild is not None:
            return self._shared_rebuild(tag)
        with self._lock:
            if tag in self._rebuilt:
                return False
            self._rebuilt.add(tag)
            return True

    def _network_for(self, engine: Engine, spec: ServerSpec) -> str | None:
        """The id of the network ``spec`` joins (None: the default bridge).

        A lone server talks to nobody: the default bridge saves a network create and remove
        (about 250 ms here) on every run. Servers that link or are linked share the run's
        network, made exactly once per run (under xdist by whichever worker needs it first).
        """
        joins = self.reach.route(engine).joins
        if spec.name not in self.config.networked and not joins:
            return None
        name = self.context.scoped(spec.sharing)
        if self._run_network is not None and spec.sharing == "run":
            # Not ours to remove: the controller sweeps the run's network at its end.
            network = self._run_network(engine, spec, name)
        else:
            network = self.cleanup.network(
                name, lambda: engine.create_network(name, self.context.labels())
            )
        if joins:  # the tests' own container joins it (left when the network is removed)
            self.reach.join(engine, network)
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
        per_run = self._run_network is not None and spec.sharing == "run"
        for name in named(spec.volumes):
            volume = f"{prefix}-vol-{name}"
            with self._volume_lock:
                if volume in self._volumes_made:
                    continue
                engine.make_volume(volume, self.context.labels())
                self._volumes_made.add(volume)
                if not per_run:
                    self.cleanup.volume(volume)
        return engine_mounts(
            spec.volumes, lambda name: f"{prefix}-vol-{name}", self.context.labels(spec.name)
        )

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

    def _build_line(self, spec: ServerSpec, wanted: image.ImageRef, line: str) -> None:
        """A build log line: the user's steps are shown, the rest (the builder's output, the
        plugin's own steps) with -v only."""
        step = image.user_step(wanted.plan, line) if wanted.plan is not None else None
        kind = "build-step" if step is not None else "build-output"
        self._event(kind, f"building {spec.name}: {self.redact(step or line)}")


def aliases(spec: ServerSpec) -> list[str]:
    """The server's names on the run network: its name, hostname and aliases (and each with
    its domain)."""
    names = [spec.name, spec.hostname, *spec.aliases]
    if spec.domain:
        names += [f"{n}.{spec.domain}" for n in (spec.hostname, *spec.aliases) if "." not in n]
    return list(dict.fromkeys(names))
