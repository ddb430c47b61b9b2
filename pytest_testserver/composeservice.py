"""One compose service -> the plugin's own server mapping (then validated by config.py).

Every service key is supported (translated here), ignored (one note naming file, service and
key: the run works without it) or refused (a one-line error: it would reach beyond the
container, or leave the run's isolation). The tables below are the README's.

Values are already interpolated (compose.py): what goes into the plugin's ``env``, ``command``
and ``entrypoint`` is escaped (``$`` -> ``$$``) so that the plugin's own ``${NAME}`` never
applies to it twice.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import validate as v
from .envfile import read_env_file
from .graph import cycle_from
from .validate import Where

SUPPORTED = (
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "user",
    "working_dir",
    "init",
    "cap_add",
    "cap_drop",
    "sysctls",
    "ulimits",
    "shm_size",
    "hostname",
    "domainname",
    "healthcheck",
    "depends_on",
    "networks",
    "labels",
    "profiles",
)
RESOURCES = "resource limits are not applied to test servers"
IGNORED = {
    "restart": "a server that dies is started afresh for the next test that needs it",
    "deploy": "one container per service; replicas, resources and placement are not applied",
    "container_name": "containers are named by the run, so that two runs never collide",
    "logging": "the engine's default log driver keeps the log a failed test shows",
    "stop_grace_period": "containers are removed at the run's end",
    "stop_signal": "containers are removed at the run's end",
    "platform": "the image of the engine's own platform is used",
    "pull_policy": "an image is pulled when missing",
    "pull_refresh_after": "an image is pulled when missing",
    "scale": "one container per service",
    "attach": "logs are read from the engine when a test fails",
    "annotations": "not applied",
    "develop": "watch mode is for development, not tests",
    "mac_address": "the engine chooses addresses",
    "dns": "the engine's DNS serves the run's network",
    "dns_opt": "the engine's DNS serves the run's network",
    "dns_search": "the engine's DNS serves the run's network",
    "extra_hosts": "not applied: services reach each other by name on the run's network",
    "links": "every service reaches every other by name on the run's network",
    "stdin_open": "tests reach servers through their ports",
    "tty": "tests reach servers through their ports",
    "read_only": "not applied",
    "group_add": "not applied",
    "isolation": "a Windows setting",
    "storage_opt": "not applied",
    "post_start": "use post_startup: in testservers.yaml",
    "pre_stop": "containers are removed at the run's end",
    "label_file": "not read: give labels: instead",
    "models": "not applied",
    "mem_limit": RESOURCES,
    "mem_reservation": RESOURCES,
    "mem_swappiness": RESOURCES,
    "memswap_limit": RESOURCES,
    "cpus": RESOURCES,
    "cpu_shares": RESOURCES,
    "cpu_quota": RESOURCES,
    "cpu_period": RESOURCES,
    "cpuset": RESOURCES,
    "cpu_count": RESOURCES,
    "cpu_percent": RESOURCES,
    "cpu_rt_period": RESOURCES,
    "cpu_rt_runtime": RESOURCES,
    "blkio_config": RESOURCES,
    "oom_kill_disable": RESOURCES,
    "oom_score_adj": RESOURCES,
    "pids_limit": RESOURCES,
}
REFUSED = {
    "privileged": "it gives the container every capability and the host's devices",
    "network_mode": "every service joins the run's own network; host, none, container: and "
    "service: would leave it",
    "pid": "the container keeps its own process namespace",
    "ipc": "the container keeps its own IPC namespace",
    "uts": "the container keeps its own hostname namespace",
    "userns_mode": "the container keeps the engine's user namespace",
    "cgroup": "the container keeps its own cgroup namespace",
    "cgroup_parent": "the container stays in the engine's cgroup",
    "devices": "host devices are never given to a test server",
    "device_cgroup_rules": "host devices are never given to a test server",
    "gpus": "host devices are never given to a test server",
    "security_opt": "the engine's seccomp, AppArmor and SELinux confinement stays on",
    "volumes_from": "mounts come only from volumes: (named volumes are the run's own)",
    "secrets": "host files are not mounted: give the value with secret_env in testservers.yaml",
    "configs": "host files are not mounted: use a read-only bind under the project in volumes:",
    "credential_spec": "a Windows host's credentials",
    "runtime": "the engine's default runtime is used",
    "use_api_socket": "it would hand the container the engine's own socket",
    "external_links": "containers outside the run are never reached",
    "extends": "not supported: give the override in a second compose file",
    "provider": "a provider service runs a program on the host",
}
BUILD_SUPPORTED = ("context", "dockerfile", "args", "target")
BUILD_REFUSED = {
    "ssh": "the host's SSH agent is never given to a build",
    "secrets": "host files are never given to a build",
    "additional_contexts": "a build sees its own context only",
    "dockerfile_inline": "not supported: give a Dockerfile",
    "privileged": "builds run unprivileged",
    "entitlements": "builds run unprivileged",
    "network": "builds use the engine's default network",
}
TOP_IGNORED = {"version": "obsolete", "name": "the run names its own project", "models": ""}
TOP_REFUSED = {
    "include": "not supported: list the files in testserver_compose instead",
    "secrets": "host files are not mounted",
    "configs": "host files are not mounted",
}
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
LABEL_PREFIX = "pytest-testserver"

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|\u00b5s|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_BYTES = re.compile(r"([0-9]+)\s*([kmgb]?)b?", re.IGNORECASE)
_BYTE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_TRUE = ("1", "t", "T", "true", "True", "TRUE")
_FALSE = ("0", "f", "F", "false", "False", "FALSE")


@dataclass(frozen=True)
class ServiceExtras:
    """What a service declares beyond the plugin's keys, set on its spec after validation."""

    oneshot: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    declared_at: str = ""


@dataclass
class Translated:
    """The enabled services in the plugin's own form, what rides along, and the notes."""

    first: str  # the first compose file, as shown
    base: Path  # the project folder
    servers: dict[str, dict[str, Any]]
    extras: dict[str, ServiceExtras]
    notes: list[str]


def translate_project(
    project: Translated,
    merged: dict[str, Any],
    origin: Mapping[tuple[str, str], str],
    lines: Mapping[str, str],
    active: frozenset[str],
    env: Mapping[str, str],
    environ: Mapping[str, str],
) -> None:
    """Fill ``project`` with the enabled services of ``merged`` (several files, merged)."""
    first = project.first

    def top_where(key: str) -> Where:
        return Where(origin.get((f"{key}:", ""), first)).key(key)

    for key in merged:
        if key in TOP_REFUSED and merged[key]:
            top_where(key).fail(f"refused: {TOP_REFUSED[key]}")
        if key in TOP_IGNORED:
            why = TOP_IGNORED[key]
            project.notes.append(f"{first}: {key}: ignored" + (f": {why}" if why else ""))
    volumes = top_level(merged, "volumes", origin, first, project.notes)
    networks = top_level(merged, "networks", origin, first, project.notes)
    services: dict[str, dict[str, Any]] = merged.get("services") or {}
    if not services:
        Where(first).fail("declares no services")
    enabled = {
        name
        for name, service in services.items()
        if not service.get("profiles") or active & set(service["profiles"])
    }
    oneshots: set[str] = set()
    healthy: set[str] = set()
    links: dict[str, list[str]] = {}
    for name in services:
        if name not in enabled:
            continue
        where = Where(origin.get((name, "depends_on"), first)).key("services").key(name)
        links[name] = depends(
            services, name, enabled, where.key("depends_on"), oneshots, healthy, project.notes
        )
    done: set[str] = set()
    for name in links:
        cycle = cycle_from(name, links, done)
        if cycle:
            Where(origin.get((cycle[0], "depends_on"), first)).key("services").key(cycle[0]).key(
                "depends_on"
            ).fail(f"forms a cycle: {' -> '.join(cycle)}")
    for name, service in services.items():
        if name not in enabled:
            continue

        def where_of(key: str, name: str = name) -> Where:
            return (
                Where(origin.get((name, key), origin.get((name, ""), first)))
                .key("services")
                .key(name)
                .key(key)
            )

        translator = Service(name, service, where_of, project.base, env, environ, project.notes)
        raw, labels = translator.translate(volumes, networks, healthy=name in healthy)
        raw["links"] = links[name]
        project.servers[name] = raw
        project.extras[name] = ServiceExtras(
            oneshot=name in oneshots,
            labels=labels,
            declared_at=lines.get(name, origin.get((name, ""), first)),
        )


def top_level(
    merged: dict[str, Any],
    key: str,
    origin: Mapping[tuple[str, str], str],
    first: str,
    notes: list[str],
) -> set[str]:
    """The names of the top-level volumes or networks; what they set beyond a name is checked."""
    names: set[str] = set()
    for name, item in (merged.get(key) or {}).items():
        names.add(name)
        where = Where(origin.get((f"{key}:{name}", ""), first)).key(key).key(name)
        for option, value in (item or {}).items():
            if option == "external" and value not in (False, "false"):
                where.key(option).fail(
                    f"refused: the run makes its own {key}, never one that exists already"
                )
            elif option in ("driver_opts",) or (option == "driver" and value != "local"):
                if key == "volumes":
                    where.key(option).fail(
                        "refused: a volume is the engine's own local volume (driver options "
                        "can mount host paths)"
                    )
                notes.append(
                    f"{where.key(option).source}: {where.key(option).path}: ignored: "
                    "every service joins the run's one network"
                )
            elif not option.startswith("x-"):
                what = "the run's own volume" if key == "volumes" else "the run's one network"
                notes.append(
                    f"{where.key(option).source}: {where.key(option).path}: ignored: {what} is used"
                )
    return names


def depends(
    services: Mapping[str, dict[str, Any]],
    name: str,
    enabled: set[str],
    where: Where,
    oneshots: set[str],
    healthy: set[str],
    notes: list[str],
) -> list[str]:
    found: list[str] = []
    for other, item in (services[name].get("depends_on") or {}).items():
        w = where.key(other)
        item = item or {}
        required = boolean(item.get("required", True), w.key("required"))
        if other not in services:
            if not required:
                continue
            w.fail(f"{other!r} is not a service{v.did_you_mean(other, list(services))}")
        if other not in enabled:
            if not required:
                continue
            profiles = ", ".join(services[other].get("profiles") or [])
            w.fail(f"{other!r} is in profile(s) {profiles}, none of which is enabled")
        if "restart" in item:
            notes.append(
                f"{w.source}: {w.path}.restart: ignored: a server that dies is started afresh "
                "for the next test that needs it"
            )
        condition = item.get("condition", "service_started")
        if condition not in CONDITIONS:
            w.key("condition").fail(f"must be one of {', '.join(CONDITIONS)}")
        if condition == "service_completed_successfully":
            oneshots.add(other)
        elif condition == "service_healthy":
            healthy.add(other)
        found.append(other)
    return found


class Service:
    """The translation of one service: ``translate`` gives the plugin's mapping and labels."""

    def __init__(
        self,
        name: str,
        service: dict[str, Any],
        where: Any,
        base: Path,
        env: Mapping[str, str],
        environ: Mapping[str, str],
        notes: list[str],
    ) -> None:
        self.name = name
        self.service = service
        self.where = where
        self.base = base
        self.env = env
        self.environ = environ
        self.notes = notes

    def note(self, where: Where, text: str) -> None:
        self.notes.append(f"{where.source}: {where.path}: {text}")

    def translate(
        self, volumes: set[str], networks: set[str], *, healthy: bool
    ) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
        s = self.service
        raw: dict[str, Any] = {}
        for key, value in s.items():
            if key.startswith("x-") or key in SUPPORTED:
                continue
            if key in REFUSED:
                if key == "privileged" and value in (False, *_FALSE):
                    continue
                self.where(key).fail(f"refused: {REFUSED[key]}")
            if key in IGNORED:
                self.note(self.where(key), f"ignored: {IGNORED[key]}")
        if s.get("build") is not None:
            raw["build"] = self.build(s["build"])
        elif s.get("image") is not None:
            raw["image"] = s["image"]
        else:
            self.where("image").fail("a service needs image or build")
        for key in ("command", "entrypoint"):
            if key in s and s[key] is not None:
                raw[key] = self.argv(s[key], self.where(key), entrypoint=key == "entrypoint")
        env, secret_env = self.environment()
        if env:
            raw["env"] = env
        if secret_env:
            raw["secret_env"] = secret_env
        if s.get("ports"):
            raw["ports"] = self.ports(s["ports"])
        mounts, tmpfs = self.volumes(s.get("volumes") or [], volumes)
        tmpfs += self.tmpfs(s.get("tmpfs") or [])
        if mounts:
            raw["volumes"] = mounts
        if tmpfs:
            raw["tmpfs"] = tmpfs
        for key in ("user", "working_dir", "hostname"):
            if s.get(key) is not None:
                raw[key] = str(s[key])
        if s.get("domainname"):
            raw["domain"] = s["domainname"]
        if s.get("init") is not None:
            raw["init"] = boolean(s["init"], self.where("init"))
        for key in ("cap_add", "cap_drop"):
            if s.get(key):
                raw[key] = s[key]
        if s.get("sysctls"):
            raw["sysctls"] = {k: number(val) for k, val in s["sysctls"].items()}
        if s.get("ulimits"):
            raw["ulimits"] = self.ulimits(s["ulimits"])
        if s.get("shm_size") is not None:
            raw["shm_size"] = byte_size(s["shm_size"], self.where("shm_size"))
        if s.get("healthcheck") is not None:
            check = self.healthcheck(s["healthcheck"], self.where("healthcheck"))
            if check is not None:
                raw["healthcheck"] = check
                raw["wait"] = {"healthcheck": True}
        if healthy and "wait" not in raw:  # service_healthy on the image's own HEALTHCHECK
            raw["wait"] = {"healthcheck": True}
        if s.get("networks"):
            aliases = self.networks(s["networks"], networks)
            if aliases:
                raw["aliases"] = aliases
        return raw, self.labels(s.get("labels") or {})

    # the keys
    def build(self, build: dict[str, Any]) -> dict[str, Any]:
        where = self.where("build")
        out: dict[str, Any] = {}
        for key, value in build.items():
            if key in BUILD_REFUSED:
                if key == "privileged" and value in (False, *_FALSE):
                    continue
                where.key(key).fail(f"refused: {BUILD_REFUSED[key]}")
            if key not in BUILD_SUPPORTED and not key.startswith("x-"):
                self.note(where.key(key), "ignored: the plugin builds with the engine's defaults")
        context = str(build.get("context", "."))
        if "://" in context or context.startswith("git@"):
            where.key("context").fail("refused: a build context is a folder of the project")
        v.relative_path(context, where.key("context"), self.base)
        out["context"] = context
        if build.get("dockerfile") is not None:
            out["dockerfile"] = build["dockerfile"]
        if build.get("target") is not None:
            out["target"] = build["target"]
        args: dict[str, str] = {}
        for key, value in (build.get("args") or {}).items():
            if value is None:  # "ARG" alone: from the environment, as compose does
                if key in self.env:
                    args[key] = self.env[key]
                continue
            args[key] = v.env_value(value, where.key("args").key(key))
        if args:
            out["args"] = args
        return out

    def argv(self, value: object, where: Where, *, entrypoint: bool) -> list[str]:
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                where.fail(f"cannot be split into arguments as compose does: {exc}")
        else:
            words = [str(item) for item in v.string_list(value, where)]
        if not words and not entrypoint:
            where.fail("must not be empty")
        return [escape(word) for word in words]

    def environment(self) -> tuple[dict[str, str], list[str]]:
        """``env_file`` then ``environment``; a bare ``KEY`` comes from the run's environment
        (as secret_env: read at start, masked) or the ``.env`` file, or is left unset."""
        env: dict[str, str] = {}
        where = self.where("env_file")
        for i, item in enumerate(self.service.get("env_file") or []):
            w = where.index(i)
            path_text, required = item, True
            if isinstance(item, dict):
                path_text = item.get("path")
                required = boolean(item.get("required", True), w.key("required"))
            if not required and not (self.base / str(path_text)).is_file():
                continue
            path = v.relative_path(path_text, w, self.base)
            if not path.is_file():
                w.fail(f"{v.show(path_text)} is not a file")
            for key, value in read_env_file(path, str(path_text), w).items():
                env[key] = escape(value)
        secret: list[str] = []
        ew = self.where("environment")
        for key, value in (self.service.get("environment") or {}).items():
            if value is None:
                if key in self.environ:
                    env.pop(key, None)
                    secret.append(key)
                elif key in self.env:
                    env[key] = escape(self.env[key])
                continue
            env[key] = escape(v.env_value(value, ew.key(key)))
        return env, secret

    def ports(self, ports: list[Any]) -> list[Any]:
        where = self.where("ports")
        out: list[Any] = []
        for i, item in enumerate(ports):
            w = where.index(i)
            if isinstance(item, dict):
                published = item.get("published")
                out.append(
                    {"target": number(item.get("target")), "protocol": item.get("protocol", "tcp")}
                )
                if published is not None or item.get("host_ip") is not None:
                    self.note(w, host_port_note(str(item.get("target"))))
                continue
            text = str(item)
            protocol = "tcp"
            if "/" in text:
                text, protocol = text.rsplit("/", 1)
            host, _, container = text.rpartition(":")
            if host:
                self.note(w, host_port_note(container))
            out.append(f"{container}/{protocol}" if protocol != "tcp" else number(container))
        return out

    def volumes(self, items: list[Any], declared: set[str]) -> tuple[list[Any], list[Any]]:
        where = self.where("volumes")
        mounts: list[Any] = []
        tmpfs: list[Any] = []
        for i, item in enumerate(items):
            w = where.index(i)
            if isinstance(item, dict):
                kind = item.get("type")
                source, target = item.get("source"), item.get("target")
                self.mount_options(item, w)
                read_only = boolean(item.get("read_only", False), w.key("read_only"))
                if kind == "tmpfs":
                    size = (item.get("tmpfs") or {}).get("size")
                    entry: dict[str, Any] = {"path": target}
                    if size is not None:
                        entry["size"] = byte_size(size, w.key("tmpfs").key("size"))
                    tmpfs.append(entry)
                    continue
                if kind not in ("bind", "volume"):
                    w.key("type").fail(f"refused: a mount of type {v.show(kind)}")
                if kind == "bind":
                    mounts.append(self.bind(str(source), str(target), read_only, w.key("source")))
                elif source:
                    self.named(str(source), declared, w.key("source"))
                    mounts.append({"name": source, "path": target, "read_only": read_only})
                else:
                    mounts.append({"path": target})
                continue
            parts = str(item).split(":")
            if len(parts) == 1:
                mounts.append(parts[0])
                continue
            source, target = parts[0], parts[1]
            modes = parts[2].split(",") if len(parts) > 2 else []
            if len(parts) > 3:
                w.fail("is not SOURCE:TARGET[:MODE]")
            read_only = "ro" in modes
            if source.startswith((".", "/", "~")) or "/" in source:
                mounts.append(self.bind(source, target, read_only, w))
            else:
                self.named(source, declared, w)
                mounts.append(f"{source}:{target}{':ro' if read_only else ''}")
        return mounts, tmpfs

    def mount_options(self, item: dict[str, Any], where: Where) -> None:
        """A long-syntax mount's other options: a subpath is refused (it picks another part of
        the volume to mount), the rest (propagation, nocopy, consistency...) is ignored."""
        for key, value in item.items():
            if key in ("type", "source", "target", "read_only") or key.startswith("x-"):
                continue
            options = value if isinstance(value, dict) else {}
            if "subpath" in options:
                where.key(key).key("subpath").fail("refused: a volume is mounted whole")
            if key == "tmpfs" and set(options) <= {"size"}:
                continue
            self.note(where.key(key), "ignored: the engine's defaults apply")

    def bind(self, source: str, target: str, read_only: bool, where: Where) -> dict[str, Any]:
        if source.startswith(("/", "~")):
            where.fail(
                f"refused: {v.show(source)} is outside the project: only read-only binds of "
                "files and folders under the project are mounted"
            )
        v.relative_path(source, where, self.base)  # inside the project, symlinks resolved
        if not read_only:
            where.fail(
                f"refused: the bind of {v.show(source)} must be read-only (:ro or read_only: "
                "true): the engine is root, and would write into the project as root"
            )
        return {"src": source, "path": target, "read_only": True}

    def named(self, source: str, declared: set[str], where: Where) -> None:
        if source not in declared:
            where.fail(
                f"volume {source!r} is not declared under the top-level volumes:"
                f"{v.did_you_mean(source, sorted(declared))}"
            )

    def tmpfs(self, items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for i, item in enumerate(items):
            path, _, options = str(item).partition(":")
            entry: dict[str, Any] = {"path": path}
            for option in options.split(","):
                key, _, value = option.partition("=")
                if key == "size":
                    entry["size"] = byte_size(value, self.where("tmpfs").index(i))
                elif key == "mode":
                    entry["mode"] = value
            out.append(entry if len(entry) > 1 else path)
        return out

    def ulimits(self, limits: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in limits.items():
            if isinstance(value, dict):
                out[key] = {k: number(val) for k, val in value.items()}
            else:
                out[key] = number(value)
        return out

    def healthcheck(self, check: dict[str, Any], where: Where) -> dict[str, Any] | None:
        if boolean(check.get("disable", False), where.key("disable")):
            return None
        test = check.get("test")
        if test is None:
            where.fail("needs test (the image's own HEALTHCHECK needs no healthcheck: key)")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not test or test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            where.key("test").fail('must start with "CMD", "CMD-SHELL" or "NONE"')
        if test[0] == "NONE":
            return None
        if test[0] == "CMD-SHELL":
            if len(test) != 2:
                where.key("test").fail("CMD-SHELL takes one shell line")
            # What the engine does with CMD-SHELL: the container's own /bin/sh runs it.
            argv = ["/bin/sh", "-c", str(test[1])]
        else:
            argv = [str(word) for word in test[1:]]
            if not argv:
                where.key("test").fail("CMD needs the argv to run")
        out: dict[str, Any] = {"test": argv}
        for key in ("interval", "timeout", "start_period"):
            if check.get(key) is not None:
                out[key] = duration(check[key], where.key(key))
        if check.get("retries") is not None:
            out["retries"] = number(check["retries"])
        if check.get("start_interval") is not None:
            self.note(where.key("start_interval"), "ignored: checks run every interval")
        return out

    def networks(self, value: Any, declared: set[str]) -> list[str]:
        where = self.where("networks")
        items = value if isinstance(value, dict) else dict.fromkeys(value)
        aliases: list[str] = []
        for network, options in items.items():
            if network != "default" and network not in declared:
                where.key(network).fail(
                    f"network {network!r} is not declared under the top-level networks:"
                )
            for key, item in (options or {}).items():
                if key == "aliases":
                    aliases += [a for a in item if a not in aliases]
                elif not key.startswith("x-"):
                    self.note(
                        where.key(network).key(key),
                        "ignored: every service joins the run's one network",
                    )
        return aliases

    def labels(self, labels: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        where = self.where("labels")
        out = []
        for key, value in labels.items():
            if key.startswith(LABEL_PREFIX):
                where.key(key).fail(f"refused: labels starting {LABEL_PREFIX} are the plugin's")
            out.append((key, "" if value is None else v.env_value(value, where.key(key))))
        return tuple(out)


def host_port_note(container: str) -> str:
    return (
        f"the host port is ignored: the engine publishes {container} on a free loopback port "
        f"(testserver.port({container}) gives it), so that runs never collide"
    )


def escape(text: str) -> str:
    """Interpolated text as the plugin's literal: its ``${NAME}`` must not apply again."""
    return text.replace("$", "$$")


def boolean(value: object, where: Where) -> bool:
    if isinstance(value, bool):
        return value
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    where.fail(f"must be true or false, not {v.show(value)}")


def number(value: object) -> object:
    """A whole number given as text after interpolation ("8080") as the number itself."""
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    return value


def duration(value: object, where: Where) -> float:
    """Compose's (Go's) durations: ``1m30s``, ``500ms``, ``1.5s``; a number is seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = v.string(value, where)
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        where.fail(f"{v.show(text)} is not a duration such as 10s, 1m30s or 500ms")
    if total <= 0:
        where.fail(f"{v.show(text)} is not a positive duration")
    return total


def byte_size(value: object, where: Where) -> str:
    """Compose's byte sizes (``64m``, ``1gb``, ``67108864``) as the plugin's ``<n>k``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _BYTES.fullmatch(str(value).strip())
        if match is None:
            where.fail(f"{v.show(value)} is not a size such as 64m or 1gb")
        size = int(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]
    if size % 1024:
        where.fail(f"{v.show(value)} is not a whole number of kilobytes")
    return f"{size // 1024}k"
