"""A project's own compose files as the source of servers: read, interpolated, validated against
the compose specification's JSON schema, merged, filtered by profile, then translated
(composeservice.py) into the plugin's own server mappings.

No compose CLI runs: each service becomes a server of the same name, started by the plugin like
any other (its own names, network and volumes per run, loopback ports, readiness, logs, reaper).
What a service needs that the plugin's keys cannot say rides along as ``ServiceExtras`` and is
set on its ``ServerSpec`` after validation (``apply``).

The JSON schema (``schema/compose-spec.json``) is the compose-spec repository's
``schema/compose-spec.json`` at commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6 (2026-06-23).
``jsonschema`` is imported only when a compose file is read.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import validate as v
from .composeservice import ServiceExtras, Translated, translate_project
from .config import ServerConfig, display_path
from .envfile import read_env_file
from .errors import ConfigError
from .interpolate import interpolate_tree
from .validate import Where

SCHEMA = Path(__file__).with_name("schema") / "compose-spec.json"
DOTENV = ".env"
PROFILES_ENV = "COMPOSE_PROFILES"
MAX_ERRORS_SHOWN = 1

# Service keys whose list and mapping forms mean one mapping ("A=B" items): merged key by key.
MAPPING_KEYS = ("environment", "labels", "sysctls", "ulimits", "extra_hosts", "annotations")
# Sequences merged as compose does: appended, each value once.
APPENDED_KEYS = ("ports", "expose", "cap_add", "cap_drop", "tmpfs", "env_file", "dns", "profiles")


@dataclass
class ComposeProject:
    """The services of the compose files, in the plugin's own form (``{"servers": {...}}``)."""

    source: str  # the files, as shown in messages
    base: Path  # the project folder: the first file's
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, ServiceExtras] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        return {"servers": self.servers}


def read_compose(
    paths: Sequence[Path], *, profiles: Sequence[str], environ: Mapping[str, str]
) -> ComposeProject:
    """Read ``paths`` (later files override earlier ones, as ``-f a.yml -f b.yml``)."""
    if not paths:
        raise ConfigError("testserver: no compose file given")
    for path in paths:
        if not path.is_file():
            raise ConfigError(
                f"testserver: compose file {v.show(str(path), limit=300)} does not exist"
            )
    base = paths[0].parent
    shown = [display_path(p) for p in paths]
    project = ComposeProject(source=" + ".join(shown), base=base)
    env = interpolation_env(base, environ)
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, str], str] = {}  # (service, key) -> the file that set it last
    lines: dict[str, str] = {}
    for path, name in zip(paths, shown, strict=True):
        data = read_file(path, name, env, project.notes)
        lines.update(service_lines(path, name))
        merge_into(merged, data, name, origin)
    active = active_profiles(profiles, environ, env)
    translated = Translated(shown[0], base, project.servers, project.extras, project.notes)
    translate_project(translated, merged, origin, lines, active, env, environ)
    return project


def interpolation_env(base: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Compose's precedence: the environment of the run over the ``.env`` beside the first file."""
    dotenv = base / DOTENV
    values: dict[str, str] = {}
    if dotenv.is_file():
        values = read_env_file(dotenv, display_path(dotenv), Where(display_path(dotenv)))
    return {**values, **environ}


def active_profiles(
    configured: Sequence[str], environ: Mapping[str, str], env: Mapping[str, str]
) -> frozenset[str]:
    """``COMPOSE_PROFILES`` (the environment, then ``.env``) when set, else the ini's list."""
    text = environ.get(PROFILES_ENV, env.get(PROFILES_ENV))
    if text is not None:
        return frozenset(p.strip() for p in text.split(",") if p.strip())
    return frozenset(configured)


def read_file(path: Path, shown: str, env: Mapping[str, str], notes: list[str]) -> dict[str, Any]:
    from .yamlfile import read_yaml

    data = read_yaml(path, shown)
    root = Where(shown)
    if data is None:
        root.fail("is empty: a compose file declares services")
    top = v.mapping(data, root)
    seen: set[str] = set()

    def note(text: str) -> None:
        if text not in seen:  # one line per place, however often it is read
            seen.add(text)
            notes.append(text)

    interpolated: dict[str, Any] = interpolate_tree(top, env, root, note)
    check_schema(interpolated, root)
    return interpolated


def check_schema(data: dict[str, Any], root: Where) -> None:
    """The compose specification's JSON schema; the first error as one line, never a value."""
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft7Validator(schema()).iter_errors(data))
    if error is None:
        return
    where = root
    for part in error.absolute_path:
        where = where.index(part) if isinstance(part, int) else where.key(part)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        extra = [k for k in error.instance if k not in allowed and not str(k).startswith("x-")]
        if extra:
            where = where.key(extra[0])
    where.fail(schema_message(error))


_SCHEMA_CACHE: list[dict[str, Any]] = []


def schema() -> dict[str, Any]:
    if not _SCHEMA_CACHE:
        _SCHEMA_CACHE.append(json.loads(SCHEMA.read_text(encoding="utf-8")))
    return _SCHEMA_CACHE[0]


def schema_message(error: Any) -> str:
    """Words for one jsonschema error that never quote the value (it may be a secret)."""
    kind = error.validator
    instance = error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in instance if k not in allowed and not str(k).startswith("x-")]
        if extra:
            key = str(extra[0])
            return f"unknown key in the compose specification{v.did_you_mean(key, allowed)}"
    if kind == "type":
        expected = error.validator_value
        if isinstance(expected, list):
            expected = " or ".join(expected)
        return f"must be {expected}, not {json_type(instance)} (compose specification)"
    if kind == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return f"must be one of {choices} (compose specification)"
    if kind == "required":
        return f"needs {error.validator_value[0] if error.validator_value else 'a key'}"
    if kind in ("oneOf", "anyOf"):
        return f"is not a valid form of this key (compose specification, {json_type(instance)})"
    if kind == "uniqueItems":
        return "lists one item twice (compose specification)"
    if kind == "patternProperties" or kind == "propertyNames":
        return "has a key that is not a valid name (compose specification)"
    return f"does not match the compose specification ({kind})"


def json_type(value: object) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    kinds |= {list: "a list", dict: "a mapping", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def service_lines(path: Path, shown: str) -> dict[str, str]:
    """Each service's ``file:line``, for --testserver-list (from the YAML's node marks)."""
    import yaml

    try:
        root = yaml.compose(path.read_bytes(), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, OSError, RecursionError):  # read_yaml said why already
        return {}
    lines: dict[str, str] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if key.value == "services" and isinstance(value, yaml.MappingNode):
            for skey, _ in value.value:
                if isinstance(skey, yaml.ScalarNode):
                    lines[str(skey.value)] = f"{shown}:{skey.start_mark.line + 1}"
    return lines


# merging several files
def as_mapping(value: object, key: str) -> dict[str, Any]:
    """``["A=B", "C"]`` or ``{A: B}`` as one mapping (``C`` -> None)."""
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value if isinstance(value, list) else []:
        text = str(item)
        name, sep, rest = text.partition("=" if key != "extra_hosts" else ":")
        out[name] = rest if sep else None
    return out


def normalize_service(service: dict[str, Any]) -> dict[str, Any]:
    out = dict(service)
    for key in MAPPING_KEYS:
        if key in out and out[key] is not None:
            out[key] = as_mapping(out[key], key)
    if isinstance(out.get("depends_on"), list):
        out["depends_on"] = {name: {"condition": "service_started"} for name in out["depends_on"]}
    if isinstance(out.get("build"), str):
        out["build"] = {"context": out["build"]}
    build = out.get("build")
    if isinstance(build, dict) and build.get("args") is not None:
        out["build"] = {**build, "args": as_mapping(build["args"], "args")}
    for key in ("tmpfs", "env_file"):
        if isinstance(out.get(key), (str, dict)):
            out[key] = [out[key]]
    return out


def merge_into(
    merged: dict[str, Any], data: dict[str, Any], shown: str, origin: dict[tuple[str, str], str]
) -> None:
    """``data`` (one file) over ``merged``, compose's way."""
    for key, value in data.items():
        if key == "services" and isinstance(value, dict):
            services = merged.setdefault("services", {})
            for name, service in value.items():
                service = normalize_service(service or {})
                for skey in service:
                    origin[(name, skey)] = shown
                origin.setdefault((name, ""), shown)
                services[name] = merge_service(services.get(name, {}), service)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            for name, item in value.items():
                origin[(f"{key}:{name}", "")] = shown
                merged[key][name] = item
        else:
            if isinstance(value, dict):
                for name in value:
                    origin[(f"{key}:{name}", "")] = shown
            merged[key] = value


def merge_service(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        before = out.get(key)
        if key in (*MAPPING_KEYS, "depends_on") and isinstance(before, dict):
            out[key] = {**before, **(value or {})}
        elif key in APPENDED_KEYS and isinstance(before, list) and isinstance(value, list):
            out[key] = before + [item for item in value if item not in before]
        elif key == "volumes" and isinstance(before, list) and isinstance(value, list):
            out[key] = merge_volumes(before, value)
        elif key in ("build", "healthcheck", "logging") and isinstance(before, dict):
            merged = {**before, **(value or {})}
            if key == "build" and isinstance(before.get("args"), dict):
                merged["args"] = {**before["args"], **(value or {}).get("args", {})}
            out[key] = merged
        else:
            out[key] = value
    return out


def merge_volumes(old: list[Any], new: list[Any]) -> list[Any]:
    """By container path: a later file's mount at the same path replaces the earlier one."""

    def target(item: object) -> object:
        if isinstance(item, dict):
            return item.get("target")
        parts = str(item).split(":")
        return parts[1] if len(parts) > 1 else parts[0]

    replaced = {target(item) for item in new}
    return [item for item in old if target(item) not in replaced] + list(new)


# Plugin keys whose compose names differ, for the plugin's own errors about a service.
COMPOSE_NAMES = {"env": "environment", "domain": "domainname", "links": "depends_on"}


def plugin_error(exc: ConfigError, project: ComposeProject) -> ConfigError:
    """A config.py error about a service, in compose's words: ``services.web.environment``."""
    text = str(exc)
    prefix = f"{project.source}: servers."
    if not text.startswith(prefix):
        return exc
    rest = text[len(prefix) :]
    name, _, rest = rest.partition(".")
    key = re.match(r"[A-Za-z_]+", rest)
    shown = project.extras[name].declared_at.rsplit(":", 1)[0] if name in project.extras else ""
    if key is not None:
        rest = COMPOSE_NAMES.get(key.group(0), key.group(0)) + rest[key.end() :]
    return ConfigError(f"{shown or project.source}: services.{name}.{rest}")


# after validation
def apply(config: ServerConfig, project: ComposeProject) -> ServerConfig:
    """The validated servers with what compose adds: one-shots, labels, origins; every service
    on the run's network (compose's default network: each reaches the others by name)."""
    servers = dict(config.servers)
    for name, extras in project.extras.items():
        if name in servers:
            servers[name] = dataclasses.replace(
                servers[name],
                oneshot=extras.oneshot,
                labels=extras.labels,
                declared_at=extras.declared_at,
                on_network=True,
            )
    return dataclasses.replace(
        config, servers=MappingProxyType(servers), notes=(*config.notes, *project.notes)
    )
