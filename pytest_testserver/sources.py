"""Which source of configuration wins: ini, command line, environment, YAML file, conftest hooks.

Plain values in, frozen values out: the plugin reads pytest's ini values, options and hooks and
passes them here; nothing in this module knows pytest. Read at every pytest start, so kept light:
the YAML reader and the validation are imported only once some server is declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import settings as run_settings
from .errors import ConfigError
from .settings import RunSettings

if TYPE_CHECKING:
    from .compose import ComposeProject
    from .config import ServerConfig

DEFAULT_CONFIG = "testservers.yaml"
BIND_LOCAL_ENV = "TESTSERVER_BIND_LOCAL"
BIND_ADDRESS_ENV = "TESTSERVER_BIND_ADDRESS"  # wins over the ini: a CI job's engine decides it
MIRROR_ENV = "TESTSERVER_REGISTRY_MIRROR"  # wins over the ini (registry.MIRROR_ENV says the same)
REACH_ENV = "TESTSERVER_REACH"  # how tests reach servers: auto, published, network (reach.py)

# The command-line options it takes (their values; a flag not given is False or None).
SETTINGS_OPTIONS = (
    "testserver_bind_local",
    "testserver_keep",
    "testserver_rebuild",
    "testserver_reuse",
    "testserver_pull",
)


def read_settings(
    ini: Callable[[str], object],
    options: Mapping[str, object],
    environ: Mapping[str, str],
    project: str,
) -> RunSettings:
    """The run's settings: the environment wins over the ini for the bind address; a switch is
    on when the command line, the ini or (bind-local) the environment turns it on.

    ``ini(name)`` gives an ini setting's value as pytest parses it; it is asked only for what
    decides (an option given, the ini's bool is not read).
    """
    address_env = environ.get(BIND_ADDRESS_ENV)
    address = address_env or ini("testserver_bind_address") or run_settings.BIND_ADDRESS
    return RunSettings(
        bind_address=run_settings.bind_address(
            address,
            f"${BIND_ADDRESS_ENV}" if address_env else "ini testserver_bind_address",
        ),
        # the ini's default is empty: 127.0.0.1 unless the engine or the route decides
        bind_address_set=bool(address_env or ini("testserver_bind_address")),
        reach=run_settings.reach(environ.get(REACH_ENV, ""), f"${REACH_ENV}"),
        bind_local=bool(
            options["testserver_bind_local"]
            or ini("testserver_bind_local")
            or run_settings.flag(environ.get(BIND_LOCAL_ENV, ""))
        ),
        keep=bool(options["testserver_keep"]),
        rebuild=bool(options["testserver_rebuild"]),
        unavailable=run_settings.unavailable(
            ini("testserver_unavailable"), "ini testserver_unavailable"
        ),
        spares=run_settings.spares(ini("testserver_spares"), "ini testserver_spares"),
        reuse=bool(options["testserver_reuse"] or ini("testserver_reuse")),
        reuse_idle=run_settings.idle_time(
            ini("testserver_reuse_idle"), "ini testserver_reuse_idle"
        ),
        project=project,
        pull=_pull_option(options.get("testserver_pull")),
        registry_mirror=_mirror(ini, environ),
    )


def _pull_option(value: object) -> str | None:
    return str(value) if value else None  # argparse's choices checked it


def _mirror(ini: Callable[[str], object], environ: Mapping[str, str]) -> str:
    """The Docker Hub mirror: $TESTSERVER_REGISTRY_MIRROR wins over the ini (a CI job's)."""
    env = environ.get(MIRROR_ENV, "").strip()
    value = env or str(ini("testserver_registry_mirror") or "").strip()
    if not value:
        return ""
    from .registry import mirror_setting  # only when one is set: read at every pytest start

    return mirror_setting(value, f"${MIRROR_ENV}" if env else "ini testserver_registry_mirror")


def config_path(
    option: str | None, ini: str, *, invocation_dir: Path, ini_dir: Path
) -> tuple[Path, bool]:
    """The YAML file to read, and whether the user named it (then it must exist): the option is
    relative to where pytest was started, the ini value to the ini file's folder (``ini_dir``,
    the rootdir when there is no ini file)."""
    if option:
        return invocation_dir / option, True
    return ini_dir / ini, ini != DEFAULT_CONFIG


@dataclass(frozen=True)
class Declaration:
    """One ``pytest_testserver_servers`` implementation: ``call()`` returns its mapping (or
    None); ``where`` is the file it is in (relative paths resolve against its folder)."""

    call: Callable[[], object]
    where: Path
    function: str


@dataclass(frozen=True)
class ComposeSource:
    """The compose files to read (ini ``testserver_compose`` or ``--testserver-compose``), the
    profiles the ini enables, and the environment their ``${VAR}`` come from."""

    paths: tuple[Path, ...]
    profiles: tuple[str, ...] = ()
    environ: Mapping[str, str] | None = None


def read_servers(
    path: Path,
    named: bool,
    declarations: Sequence[Declaration],
    state_dir: str | None = None,
    compose: ComposeSource | None = None,
) -> ServerConfig | None:
    """The servers of the YAML file and of conftest hooks, validated and combined; None if none.

    A file the user named must exist; a server declared in two places is an error wherever it
    is. ``state_dir``: the run's private folder, when the xdist controller chose it.
    """
    has_file = path.is_file()
    if named and not has_file:
        raise missing_config(path)
    if not declarations and not has_file and not (compose and compose.paths):
        return None
    from .config import combine, display_path, parse_config

    sources: list[tuple[object, Path, str]] = []
    document = None
    project = None
    if has_file:
        from .configcache import YamlDocument

        document = YamlDocument.read(path, display_path(path), state_dir)
    paths = compose.paths if compose is not None else ()
    if not paths and document is not None:  # testservers.yaml's compose: comes last
        paths = compose_key(document.data, path.parent, document.shown)
    if paths:
        from .compose import read_compose

        project = read_compose(
            paths,
            profiles=compose.profiles if compose is not None else (),
            environ=compose.environ or {} if compose is not None else {},
        )
        sources.append((project.data, project.base, project.source))
    if document is not None:
        data = document.data
        if isinstance(data, dict) and "services" in data and "servers" not in data:
            raise ConfigError(
                f"{document.shown}: services: this looks like a compose file: name it with ini "
                "testserver_compose or --testserver-compose (or compose: in testservers.yaml)"
            )
        if project is not None:
            data = add_to_services(project, data, document.shown)
        sources.append((data, path.parent, document.shown))
    for declaration in declarations:
        result = declaration.call()
        if result is not None:
            where = declaration.where
            sources.append((result, where.parent, f"{display_path(where)}::{declaration.function}"))
    if not sources:
        return None
    names = [declared_names(data) for data, _, _ in sources]
    try:
        configs = [
            parse_config(
                data,
                base=base,
                source=source,
                declared_elsewhere=tuple(
                    n for j, other in enumerate(names) if j != i for n in other
                ),
            )
            for i, (data, base, source) in enumerate(sources)
        ]
    except ConfigError as exc:
        if project is None:
            raise
        from .compose import plugin_error

        raise plugin_error(exc, project) from None
    combined = combine(configs)
    if project is not None:
        from .compose import apply

        combined = apply(combined, project)
    if document is not None:
        document.remember()  # it validated: the next run with the same bytes skips PyYAML
    return combined


# What testservers.yaml may add to a compose service of the same name: how the plugin runs it.
COMPOSE_OVERLAY_KEYS = (
    "wait",
    "reset",
    "scope",
    "share",
    "post_startup",
    "timeout",
    "image_timeout",
    "restart",
    "secret_env",
    "env",
)


def compose_key(data: object, base: Path, shown: str) -> tuple[Path, ...]:
    """testservers.yaml's ``compose:``: one file or a list, inside the YAML file's folder."""
    value = data.get("compose") if isinstance(data, dict) else None
    if value is None:
        return ()
    from . import validate as v
    from .validate import Where

    where = Where(shown).key("compose")
    items = [value] if isinstance(value, str) else v.string_list(value, where)
    if not items:
        where.fail("must name at least one compose file")
    paths = []
    for i, item in enumerate(items):
        w = where if isinstance(value, str) else where.index(i)
        found = v.relative_path(item, w, base)
        if not found.is_file():
            w.fail(f"{v.show(item)} is not a file")
        paths.append(base / str(item))
    return tuple(paths)


def add_to_services(project: ComposeProject, data: object, shown: str) -> object:
    """``data`` (testservers.yaml) without the servers that name compose services, whose keys
    go onto those services instead: its ``env`` over theirs key by key, the rest replacing."""
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict) or not any(n in project.servers for n in servers):
        return data
    from . import validate as v
    from .validate import Where

    rest = {}
    for name, raw in servers.items():
        if name not in project.servers:
            rest[name] = raw
            continue
        where = Where(shown).key("servers").key(name)
        extra = v.mapping(raw, where) if raw is not None else {}
        for key in extra:
            if key not in COMPOSE_OVERLAY_KEYS:
                where.key(key).fail(
                    f"{name!r} is a service of {project.source}, which declares its "
                    f"{key}; testservers.yaml may add {', '.join(COMPOSE_OVERLAY_KEYS)}"
                )
        target = project.servers[name]
        for key, value in extra.items():
            if key == "env" and isinstance(value, dict):
                target["env"] = {**target.get("env", {}), **value}
            else:
                target[key] = value
    assert isinstance(data, dict)
    return {**data, "servers": rest}


def nothing_declared(path: Path) -> ServerConfig:
    """An empty configuration that says where it looked."""
    from .config import ServerConfig

    return ServerConfig(f"{DEFAULT_CONFIG} (not found: {path})")


def missing_config(path: Path) -> ConfigError:
    from .validate import show  # quoted and escaped: a path is one line, whatever it holds

    return ConfigError(f"testserver: config file {show(str(path), limit=300)} does not exist")


def declared_names(data: object) -> list[str]:
    servers = data.get("servers") if isinstance(data, dict) else None
    return [name for name in servers if isinstance(name, str)] if isinstance(servers, dict) else []
