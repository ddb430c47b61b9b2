"""Configuration: raw YAML (or any mapping) -> frozen ``ServerSpec``s, validated once.

Everything downstream trusts these objects; nothing after this module sees a raw dict.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import registry, variables
from . import validate as v
from .checks import (
    PostStartup,
    Wait,
    parse_post_startup,
    parse_wait,
)
from .containeroptions import OPTION_KEYS, ContainerOptions, parse_options
from .envfile import EnvFile, read_env_file
from .errors import ConfigError
from .graph import cycle_from
from .mounts import Volume, named, parse_volumes
from .portspec import Port as Port  # re-exported: Port is imported from config as before
from .portspec import describe_ports, parse_ports
from .redact import looks_secret
from .settings import RunSettings
from .validate import Where

DEFAULT_TIMEOUT = 120.0
# Pulling or building the image has its own budget: a cold CI build (apt-get on a slow mirror)
# must not eat the time a server gets to become ready, nor be blamed on readiness.
DEFAULT_IMAGE_TIMEOUT = 900.0
SOURCE_KEYS = ("build", "image", "from")
GENERATED_KEYS = ("before_install", "install", "copy", "run")
SERVER_KEYS = (
    *SOURCE_KEYS,
    *GENERATED_KEYS,
    "command",
    "env",
    "env_file",
    "secret_env",
    "ports",
    "hostname",
    "domain",
    "aliases",
    "links",
    "post_startup",
    "timeout",
    "image_timeout",
    "share",
    "scope",
    "wait",
    "reset",
    "restart",
    "init",
    *OPTION_KEYS,
    "volumes",
    "pull",
    "platform",
)
SHARE_MODES = ("run", "worker")
# A session server that dies during the run: replaced by a fresh container for the next test
# that asks ("fresh"), or every later test fails with how it died ("never").
RESTART_MODES = ("fresh", "never")
SCOPES = ("session", "module", "class", "function")  # longest-lived first
TOP_KEYS = ("defaults", "servers", "compose")  # compose: read by sources.py
BUILD_KEYS = ("context", "dockerfile", "args", "target")
COPY_KEYS = ("src", "dst", "mode")


@dataclass(frozen=True)
class ImageSource:
    """An existing image, pulled when missing."""

    ref: str


@dataclass(frozen=True)
class BuildSource:
    """The user's own build context and Dockerfile."""

    context: Path
    dockerfile: str
    args: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may carry secrets
    target: str | None = None


@dataclass(frozen=True)
class CopyFile:
    src: Path
    dst: str
    mode: int | None = None


@dataclass(frozen=True)
class GeneratedSource:
    """A Dockerfile generated from parts, in this order: base image, steps before the apt
    packages, the packages, copied files, build steps."""

    base: str
    install: tuple[str, ...] = ()
    copy: tuple[CopyFile, ...] = ()
    # A step is a shell line (run by the image's /bin/sh at build time) or an argv list.
    run: tuple[str | tuple[str, ...], ...] = ()
    # Steps of the same forms as run, before install: an apt source, debconf preseeding.
    before_install: tuple[str | tuple[str, ...], ...] = ()


ImageSpec = ImageSource | BuildSource | GeneratedSource


@dataclass(frozen=True)
class ServerSpec:
    name: str
    image: ImageSpec
    # command, post_startup, reset, wait's texts and env values are kept as written: their
    # ${NAME} variables are expanded when the server starts (variables.py), since secret_env
    # values exist only then; what is shown (messages, --testserver-list) is this form.
    command: tuple[str, ...] | None = None
    # Values may be secrets: kept out of repr.
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secret_env: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    hostname: str = ""
    domain: str | None = None
    aliases: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    post_startup: PostStartup | None = None
    timeout: float = DEFAULT_TIMEOUT  # readiness, counted from the container's creation
    image_timeout: float = DEFAULT_IMAGE_TIMEOUT  # pull or build, build-lock waits included
    # "run": one container for the whole run, shared by every xdist worker; "worker": one each.
    share: str = "run"
    # None: the default, a TCP check of each published TCP port unless post_startup is given.
    wait: Wait | None = None
    # exec'd before each test that uses the server, except the first to use this container
    reset: tuple[str, ...] | None = None
    # a fresh container per pytest scope; anything but session is per xdist worker
    scope: str = "session"
    # after a death during the run: "fresh" (a new container for the next test) or "never"
    restart: str = "fresh"
    # the engine's init (tini, catatonit) as PID 1: it reaps zombies and forwards signals
    init: bool = False
    # user, working_dir, entrypoint, tmpfs, capabilities, shm_size, ulimits, sysctls, healthcheck
    options: ContainerOptions = field(default_factory=ContainerOptions)
    # anonymous and named volumes, read-only bind mounts (mounts.py)
    volumes: tuple[Volume, ...] = ()
    # the dotenv file whose variables are in env (under env's own): for --testserver-list
    env_file: EnvFile | None = None
    # an image: pulled when missing, before every run ("always") or never (registry.py)
    pull: str = "missing"
    platform: str | None = None  # os/arch[/variant] for pull and create; None: the engine's
    # Set by compose.py for compose services: ready once its container has exited 0 (a service
    # others wait on with service_completed_successfully), its labels, file:line, and whether
    # it joins the run's network without links (every compose service does).
    oneshot: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    declared_at: str = ""
    on_network: bool = False

    @property
    def sharing(self) -> str:
        """Who shares one container: the whole run, or one xdist worker (non-session scopes)."""
        return self.share if self.scope == "session" else "worker"

    @property
    def checks(self) -> Wait:
        """The readiness checks to run besides post_startup."""
        if self.wait is not None:
            return self.wait
        if self.post_startup is not None:
            return Wait()
        # A ranged port (FTP passive) has nothing listening until a client asks for it.
        return Wait(tcp=tuple(p.number for p in self.ports if p.protocol == "tcp" and not p.ranged))

    @property
    def fixed_ports(self) -> tuple[Port, ...]:
        """The ports declared with their own host port (``"2121:21"``)."""
        return tuple(p for p in self.ports if p.host is not None)

    def port_for(self, number: int, protocol: str = "tcp") -> Port | None:
        wanted = Port(number, protocol)
        return wanted if wanted in self.ports else None


@dataclass(frozen=True)
class ServerConfig:
    """Every declared server, and where they were declared."""

    source: str
    servers: Mapping[str, ServerSpec] = field(default_factory=lambda: MappingProxyType({}))
    # what the run should say but that stops nothing: compose keys ignored, variables unset
    notes: tuple[str, ...] = ()

    @property
    def networked(self) -> frozenset[str]:
        """Servers that must share the run's network: those that link or are linked to."""
        names: set[str] = set()
        for spec in self.servers.values():
            if spec.links or spec.on_network:
                names.add(spec.name)
                names.update(spec.links)
        return frozenset(names)

    @property
    def linked(self) -> frozenset[str]:
        """Servers some other server links to."""
        return frozenset(link for spec in self.servers.values() for link in spec.links)

    def start_order(self, name: str) -> list[str]:
        """``name`` and everything it links to, dependencies first (links form no cycle)."""
        order: list[str] = []
        stack = [(name, iter(self.servers[name].links))]
        seen = {name}
        while stack:  # iterative: a long chain of links must not exhaust the recursion limit
            current, links = stack[-1]
            link = next(links, None)
            if link is None:
                stack.pop()
                order.append(current)
            elif link not in seen:
                seen.add(link)
                stack.append((link, iter(self.servers[link].links)))
        return order


def display_path(path: Path) -> str:
    """The path as a user would type it from here: relative when inside the working folder."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def load_config(path: Path) -> ServerConfig:
    from .yamlfile import read_yaml

    shown = display_path(path)
    data = read_yaml(path, shown)
    return parse_config(data, base=path.parent, source=shown)


def optional_mapping(value: object, where: Where) -> dict[str, Any]:
    """A mapping that may be left out (or null), but not given as something else."""
    return {} if value is None else v.mapping(value, where)


def parse_config(
    data: object, *, base: Path, source: str, declared_elsewhere: tuple[str, ...] = ()
) -> ServerConfig:
    root = Where(source)
    if data is None:
        return ServerConfig(source)
    top = v.mapping(data, root)
    v.known_keys(top, TOP_KEYS, root)
    defaults = optional_mapping(top.get("defaults"), root.key("defaults"))
    v.known_keys(defaults, SERVER_KEYS, root.key("defaults"))
    raw_servers = optional_mapping(top.get("servers"), root.key("servers"))
    servers: dict[str, ServerSpec] = {}
    ports_where: dict[str, Where] = {}  # defaults.ports or the server's own
    declared = [*raw_servers, *declared_elsewhere]
    for name, raw in raw_servers.items():
        where = root.key("servers").key(name)
        v.server_name(name, where)
        fields, env = merge_defaults(defaults, v.mapping(raw, where), root.key("defaults"), where)
        servers[name] = parse_server(name, fields, env, where, base, declared)
        ports_where[name] = fields["ports"][1] if "ports" in fields else where.key("ports")
    check_links(servers, root.key("servers"))
    check_volumes(servers, root.key("servers"))
    check_host_ports(servers, ports_where.__getitem__)
    return ServerConfig(source, MappingProxyType(servers))


Fields = dict[str, tuple[Any, Where]]
EnvLayers = list[tuple[Any, Where]]


def merge_defaults(
    defaults: dict[str, Any], server: dict[str, Any], dwhere: Where, swhere: Where
) -> tuple[Fields, EnvLayers]:
    """Server keys over ``defaults``, each value with its origin; ``env`` merges key by key."""
    v.known_keys(server, SERVER_KEYS, swhere)
    fields: Fields = {key: (value, dwhere.key(key)) for key, value in defaults.items()}
    if any(key in server for key in SOURCE_KEYS):
        # A server naming its own image takes none of the image parts from defaults.
        for key in (*SOURCE_KEYS, *GENERATED_KEYS):
            fields.pop(key, None)
    fields.update({key: (value, swhere.key(key)) for key, value in server.items()})
    env_layers = [
        (layer["env"], where.key("env"))
        for layer, where in ((defaults, dwhere), (server, swhere))
        if layer.get("env") is not None
    ]
    return fields, env_layers


def parse_server(
    name: str,
    fields: Fields,
    env_layers: EnvLayers,
    where: Where,
    base: Path,
    declared: list[str],
) -> ServerSpec:
    def get(key: str) -> tuple[Any, Where] | None:
        entry = fields.get(key)
        return None if entry is None or entry[0] is None else entry

    image = parse_image(fields, where, base)
    env_file = parse_env_file(*entry, base) if (entry := get("env_file")) else None
    env_where = parse_env(env_layers, env_file[1] if env_file else {})
    env = tuple((key, value) for key, (value, _) in env_where.items())
    secret_env: tuple[str, ...] = ()
    if entry := get("secret_env"):
        value, w = entry
        secret_env = tuple(v.env_key(k, w.index(i)) for i, k in enumerate(v.string_list(value, w)))
        for i, key in enumerate(secret_env):
            if key in env_where:
                w.index(i).fail(f"{key} is also set in env; a secret comes only from the host")
    variables.check_env(env_where, secret_env)
    names = frozenset((*env_where, *secret_env))  # what ${NAME} may name

    def argv(value: object, w: Where) -> tuple[str, ...]:
        return variables.check_argv(v.argv(value, w), names, w)

    ports = parse_ports(*entry) if (entry := get("ports")) else ()
    share = v.choice(*entry, SHARE_MODES) if (entry := get("share")) else "run"
    scope = v.choice(*entry, SCOPES) if (entry := get("scope")) else "session"
    if ports:
        check_fixed_ports(ports, share, scope, fields["ports"][1])
    return ServerSpec(
        name=name,
        image=image,
        command=argv(*entry) if (entry := get("command")) else None,
        env=env,
        secret_env=secret_env,
        ports=ports,
        hostname=v.hostname(*entry) if (entry := get("hostname")) else name,
        domain=v.domain(*entry) if (entry := get("domain")) else None,
        aliases=parse_names(get("aliases"), v.domain),
        links=parse_names(get("links"), lambda value, w: declared_server(value, w, declared)),
        post_startup=parse_post_startup(*entry, names) if (entry := get("post_startup")) else None,
        timeout=v.duration(*entry) if (entry := get("timeout")) else DEFAULT_TIMEOUT,
        image_timeout=(
            v.duration(*entry) if (entry := get("image_timeout")) else DEFAULT_IMAGE_TIMEOUT
        ),
        share=share,
        wait=parse_wait(*fields["wait"], names) if "wait" in fields else None,
        reset=argv(*entry) if (entry := get("reset")) else None,
        scope=scope,
        restart=v.choice(*entry, RESTART_MODES) if (entry := get("restart")) else "fresh",
        init=v.boolean(*entry) if (entry := get("init")) else False,
        options=parse_entrypoint_variables(
            parse_options(get, has_command=get("command") is not None), get("entrypoint"), names
        ),
        volumes=parse_volumes(*entry, base) if (entry := get("volumes")) else (),
        env_file=env_file[0] if env_file else None,
        pull=registry.pull_policy(*entry) if (entry := get("pull")) else "missing",
        platform=registry.platform(*entry) if (entry := get("platform")) else None,
    )


def check_fixed_ports(ports: tuple[Port, ...], share: str, scope: str, where: Where) -> None:
    """A fixed host port exists once on the host: only one container may publish it at a time."""
    fixed = next((p for p in ports if p.host is not None), None)
    if fixed is None:
        return
    w = where.index(fixed.entry)
    entry = describe_ports([p for p in ports if p.entry == fixed.entry])[0]
    if scope != "session":
        w.fail(
            f"{entry} fixes a host port, which cannot go with scope: {scope}: a fresh container "
            "and the one it replaces (or its warm spare) would publish the same host port; use "
            "scope: session with reset:, or leave the host port to the engine"
        )
    if share == "worker":
        w.fail(
            f"{entry} fixes a host port, which cannot go with share: worker: every xdist "
            "worker's container would publish the same host port; use share: run (the "
            "default), or leave the host port to the engine"
        )


def check_host_ports(servers: Mapping[str, ServerSpec], where: Callable[[str], Where]) -> None:
    """Two servers cannot publish one fixed host port: the second would never start."""
    holders: dict[tuple[int, str], str] = {}
    for spec in servers.values():
        for p in spec.fixed_ports:
            assert p.host is not None
            key = (p.host, p.protocol)
            holder = holders.setdefault(key, spec.name)
            if holder != spec.name:
                where(spec.name).index(p.entry).fail(
                    f"host port {p.host}/{p.protocol} of server {spec.name!r} is also "
                    f"published by server {holder!r}; two servers cannot hold one host port"
                )


def parse_entrypoint_variables(
    options: ContainerOptions, entry: tuple[Any, Where] | None, names: frozenset[str]
) -> ContainerOptions:
    """The entrypoint takes ${NAME} like command: checked here, expanded at start."""
    if options.entrypoint and entry is not None:
        variables.check_argv(options.entrypoint, names, entry[1])
    return options


def parse_env_file(
    value: object, where: Where, base: Path
) -> tuple[EnvFile, dict[str, tuple[str, Where]]]:
    """A dotenv file inside the config folder (confined like copy.src), read now. Its values
    are literal: a $ is kept as written, never the start of a ${NAME} variable."""
    path = v.relative_path(value, where, base)
    if not path.is_file():
        where.fail(f"{v.show(value)} is not a file")
    values = read_env_file(path, str(value), where)
    literal = {key: (variables.literal(text), where) for key, text in values.items()}
    return EnvFile(path, tuple(values)), literal


def parse_names(entry: tuple[Any, Where] | None, check: Any) -> tuple[str, ...]:
    if entry is None or entry[0] is None:
        return ()
    value, where = entry
    names: list[str] = []
    for i, item in enumerate(v.string_list(value, where)):
        name = check(item, where.index(i))
        if name in names:
            where.index(i).fail(f"{name!r} is listed twice")
        names.append(name)
    return tuple(names)


def parse_env(
    layers: EnvLayers, below: Mapping[str, tuple[str, Where]]
) -> dict[str, tuple[str, Where]]:
    """Each variable's value (as written: ${NAME} expands at start) and where it was set:
    ``env`` of defaults then the server, over ``below`` (an env_file's variables)."""
    env: dict[str, tuple[str, Where]] = dict(below)
    for layer, where in layers:
        for key, item in v.mapping(layer, where).items():
            env[v.env_key(key, where.key(key))] = (
                v.env_value(item, where.key(key)),
                where.key(key),
            )
    return env


def parse_image(fields: Fields, where: Where, base: Path) -> ImageSpec:
    present = [key for key in SOURCE_KEYS if fields.get(key, (None,))[0] is not None]
    if not present:
        where.fail("needs one of build, image or from")
    if len(present) > 1:
        where.fail(f"{' and '.join(present)} exclude each other: use one of build, image or from")
    kind = present[0]
    if kind != "from":
        for key in GENERATED_KEYS:
            if fields.get(key, (None,))[0] is not None:
                fields[key][1].fail(f"only goes with from (this server uses {kind})")
    value, w = fields[kind]
    if kind == "image":
        return ImageSource(v.image_ref(value, w))
    if kind == "build":
        return parse_build(value, w, base)
    return GeneratedSource(
        base=v.image_ref(value, w),
        install=parse_names(fields.get("install"), v.apt_package),
        copy=parse_copies(fields.get("copy"), base),
        run=parse_steps(fields.get("run")),
        before_install=parse_steps(fields.get("before_install")),
    )


def parse_build(value: object, where: Where, base: Path) -> BuildSource:
    raw: dict[str, Any] = {"context": value} if isinstance(value, str) else v.mapping(value, where)
    v.known_keys(raw, BUILD_KEYS, where)
    if "context" not in raw:
        where.fail("needs context: the folder to build, relative to the config file")
    context = v.relative_path(raw["context"], where.key("context"), base)
    if not context.is_dir():
        where.key("context").fail(f"{v.show(raw['context'])} is not a folder")
    dockerfile_text = raw.get("dockerfile", "Dockerfile")
    dockerfile = v.relative_path(dockerfile_text, where.key("dockerfile"), context)
    if not dockerfile.is_file():
        where.key("dockerfile").fail(f"{v.show(dockerfile_text)} is not a file")
    args: dict[str, str] = {}
    if raw.get("args") is not None:
        aw = where.key("args")
        for key, item in v.mapping(raw["args"], aw).items():
            args[v.env_key(key, aw.key(key))] = v.env_value(item, aw.key(key))
    target = raw.get("target")
    return BuildSource(
        context=context,
        dockerfile=dockerfile.relative_to(context.resolve()).as_posix(),
        args=tuple(sorted(args.items())),
        target=v.build_stage(target, where.key("target")) if target is not None else None,
    )


def parse_copies(entry: tuple[Any, Where] | None, base: Path) -> tuple[CopyFile, ...]:
    if entry is None or entry[0] is None:
        return ()
    value, where = entry
    copies: list[CopyFile] = []
    for i, item in enumerate(v.string_list(value, where)):
        w = where.index(i)
        raw = v.mapping(item, w)
        v.known_keys(raw, COPY_KEYS, w)
        for key in ("src", "dst"):
            if key not in raw:
                w.fail(f"needs {key}")
        src = v.relative_path(raw["src"], w.key("src"), base)
        if not (src.is_file() or src.is_dir()):
            w.key("src").fail(f"{v.show(raw['src'])} is neither a file nor a folder")
        v.copy_size(src, w.key("src"))
        mode = v.mode(raw["mode"], w.key("mode")) if raw.get("mode") is not None else None
        if mode is not None and src.is_dir():
            w.key("mode").fail("applies to files only; a folder keeps its files' own modes")
        copies.append(CopyFile(src, v.container_path(raw["dst"], w.key("dst")), mode))
    return tuple(copies)


def parse_steps(entry: tuple[Any, Where] | None) -> tuple[str | tuple[str, ...], ...]:
    if entry is None or entry[0] is None:
        return ()
    value, where = entry
    steps: list[str | tuple[str, ...]] = []
    for i, item in enumerate(v.string_list(value, where)):
        w = where.index(i)
        steps.append(v.string(item, w) if isinstance(item, str) else v.argv(item, w))
    return tuple(steps)


def declared_server(value: object, where: Where, declared: list[str]) -> str:
    name = v.server_name(value, where)
    if name not in declared:
        where.fail(f"{name!r} is not a declared server{v.did_you_mean(name, declared)}")
    return name


def check_links(servers: Mapping[str, ServerSpec], where: Where) -> None:
    for spec in servers.values():
        for i, link in enumerate(spec.links):
            if link not in servers:
                continue
            target = servers[link]
            if SCOPES.index(target.scope) > SCOPES.index(spec.scope):
                where.key(spec.name).key("links").index(i).fail(
                    f"{link!r} has scope: {target.scope} but {spec.name!r} has scope: "
                    f"{spec.scope}; a server's links must live at least as long as it does"
                )
            if target.sharing != spec.sharing:
                shared = link if target.sharing == "run" else spec.name
                where.key(spec.name).key("links").index(i).fail(
                    f"{link!r} {sharing_text(target)} but {spec.name!r} {sharing_text(spec)}; "
                    f"linked servers must share alike (they join one network): give "
                    f"{shared!r} share: worker"
                )
    # a link to a server not in ``servers`` (another source, checked later) ends its path
    links = {name: spec.links for name, spec in servers.items()}
    done: set[str] = set()
    for name in servers:
        path = cycle_from(name, links, done)
        if path:  # reported at a server inside the cycle
            where.key(path[0]).key("links").fail(f"links form a cycle: {' -> '.join(path)}")


def check_volumes(servers: Mapping[str, ServerSpec], where: Where) -> None:
    """Servers naming one volume share it, so they must share alike: one volume per run, or one
    per xdist worker (two workers' databases must not write into one data folder)."""
    first: dict[str, ServerSpec] = {}
    for spec in servers.values():
        for name in named(spec.volumes):
            other = first.setdefault(name, spec)
            if other.sharing != spec.sharing:
                shared = other.name if other.sharing == "run" else spec.name
                where.key(spec.name).key("volumes").fail(
                    f"volume {name!r} is also mounted by {other.name!r}, which "
                    f"{sharing_text(other)}, but {spec.name!r} {sharing_text(spec)}; servers "
                    f"sharing a volume must share alike (one volume per run, or per xdist "
                    f"worker): give {shared!r} share: worker"
                )


def declared_secrets(config: ServerConfig) -> list[str]:
    """The configuration's own secret values: those of env keys (env_file's included) and
    build args whose names look secret. secret_env values come from the host, at start."""
    values: list[str] = []
    for spec in config.servers.values():
        values += [value for key, value in spec.env if looks_secret(key)]
        if isinstance(spec.image, BuildSource):
            values += [value for key, value in spec.image.args if looks_secret(key)]
    return values


def sharing_text(spec: ServerSpec) -> str:
    if spec.scope != "session":
        return f"is per xdist worker (scope: {spec.scope})"
    return f"has share: {spec.share}"


def combine(configs: list[ServerConfig]) -> ServerConfig:
    """Servers from several sources (the YAML file, conftest hooks) as one configuration."""
    if len(configs) == 1:
        return configs[0]
    servers: dict[str, ServerSpec] = {}
    origin: dict[str, str] = {}
    for config in configs:
        for name, spec in config.servers.items():
            if name in servers:
                raise ConfigError(
                    f"{config.source}: servers.{name}: already declared in {origin[name]}"
                )
            servers[name] = spec
            origin[name] = config.source
    source = " + ".join(c.source for c in configs)
    notes = tuple(note for c in configs for note in c.notes)
    check_links(servers, Where(source).key("servers"))
    check_volumes(servers, Where(source).key("servers"))
    check_host_ports(
        servers, lambda name: Where(origin[name]).key("servers").key(name).key("ports")
    )
    return ServerConfig(source, MappingProxyType(servers), notes)


def check_settings(config: ServerConfig, settings: RunSettings) -> None:
    """Combinations of a server and the run's settings that cannot work."""
    if not settings.bind_local:
        return
    for spec in config.servers.values():
        if spec.share == "worker" and spec.ports:
            Where(config.source).key("servers").key(spec.name).key("share").fail(
                "worker cannot be combined with bind-local: every xdist worker would publish "
                "the same port numbers; use share: run (the default)"
            )
        if spec.scope != "session" and spec.ports:
            Where(config.source).key("servers").key(spec.name).key("scope").fail(
                f"{spec.scope} cannot be combined with bind-local: a fresh container and the "
                "one it replaces (or its warm spare) would publish the same port numbers; "
                "use scope: session with reset:, or turn bind-local off"
            )
        check_bind_local_hosts(spec, Where(config.source).key("servers").key(spec.name))


def check_bind_local_hosts(spec: ServerSpec, where: Where) -> None:
    """Under bind-local a port without a fixed host port takes its own number as host port,
    which may be one another entry of the same server fixes."""
    fixed = {(p.host, p.protocol): p for p in spec.fixed_ports}
    for p in spec.ports:
        other = fixed.get((p.number, p.protocol))
        if p.host is None and other is not None:
            entry = describe_ports([q for q in spec.ports if q.entry == other.entry])[0]
            where.key("ports").index(p.entry).fail(
                f"bind-local publishes {p} at host port {p.number}, which ports[{other.entry}] "
                f"({entry}) fixes as its host port; give one of them another host port"
            )


def require_server(config: ServerConfig, name: str, asked_by: str) -> ServerSpec:
    try:
        return config.servers[name]
    except KeyError:
        known = ", ".join(config.servers) or "none"
        raise ConfigError(
            f"testserver: {asked_by} names {name!r}, which is not declared in {config.source}"
            f"{v.did_you_mean(name, list(config.servers))}; declared servers: {known}"
        ) from None


def secret_values(config: ServerConfig, environ: Mapping[str, str]) -> list[str]:
    """Every value the run must never show: the secrets of ``secret_env``, env values and build
    args whose keys look secret (as the container gets them, ${NAME} expanded)."""
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
