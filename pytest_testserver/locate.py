"""Which engine to talk to, found as the Docker CLI finds it, and why that one.

Order (the CLI's): ``DOCKER_HOST``; else the context named by ``DOCKER_CONTEXT``; else the
current context of ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``); else the first local
socket that exists and that this user may use, of the usual places for Docker, rootless Docker,
Docker Desktop and Podman. Pure file reads: no Docker SDK, no engine call, so the report header
can name the engine before anything connects.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import EngineUnavailable

DEFAULT_SOCKET = "/var/run/docker.sock"
MAX_CONFIG_BYTES = 1 << 20  # a config.json or meta.json larger than this is not one
REMEDY = "fix it, choose another (docker context use NAME), or set DOCKER_CONTEXT or DOCKER_HOST"


@dataclass(frozen=True)
class Location:
    """An engine address and what docker-py needs to reach it."""

    address: str  # unix:///..., tcp://host:port, ssh://user@host, npipe://...
    why: str  # for the header line: "DOCKER_HOST", "Docker context 'ci' (DOCKER_CONTEXT)", ...
    tls: bool = False
    tls_verify: bool = False
    cert_path: str | None = None  # ca.pem, cert.pem, key.pem

    @property
    def scheme(self) -> str:
        return urlsplit(self.address).scheme

    @property
    def is_local_socket(self) -> bool:
        return self.scheme in ("unix", "npipe")

    def environ(self) -> dict[str, str]:
        """The same engine for a child process (the watchdog), whatever contexts say then."""
        env = {"DOCKER_HOST": self.address, "DOCKER_TLS_VERIFY": "1" if self.tls_verify else ""}
        if self.cert_path:
            env["DOCKER_CERT_PATH"] = self.cert_path
        return env


def locate(environ: Mapping[str, str] | None = None) -> Location:
    """The engine this run uses; ``EngineUnavailable`` if a named context cannot be read."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "")
    if host:
        return _from_env(host, "DOCKER_HOST", env)
    folder = config_folder(env)
    name = env.get("DOCKER_CONTEXT", "")
    if name:
        return _context(folder, name, f"Docker context {name!r} (DOCKER_CONTEXT)", env)
    current = _current_context(folder)
    if current and current != "default":
        why = f"current Docker context {current!r} ({folder / 'config.json'})"
        return _context(folder, current, why, env)
    return _local_socket(env)


def config_folder(env: Mapping[str, str]) -> Path:
    configured = env.get("DOCKER_CONFIG")
    if configured:
        return Path(configured)
    return Path(env.get("HOME") or Path.home()) / ".docker"


def socket_candidates(env: Mapping[str, str]) -> list[str]:
    """Where local engines put their sockets, in the order users expect them to be found."""
    runtime = env.get("XDG_RUNTIME_DIR", "")
    home = env.get("HOME", "")
    places = [
        DEFAULT_SOCKET,
        f"{runtime}/docker.sock" if runtime else "",
        f"{home}/.docker/run/docker.sock" if home else "",
        "/run/podman/podman.sock",
        f"{runtime}/podman/podman.sock" if runtime else "",
    ]
    return [p for p in places if p]


def usable_socket(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISSOCK(mode) and os.access(path, os.R_OK | os.W_OK)


def _local_socket(env: Mapping[str, str]) -> Location:
    for path in socket_candidates(env):
        if usable_socket(path):
            return Location(f"unix://{path}", f"found {path}")
    return Location(f"unix://{DEFAULT_SOCKET}", "the default; no engine socket found")


def _from_env(host: str, why: str, env: Mapping[str, str]) -> Location:
    """docker-py's own rules for DOCKER_TLS_VERIFY and DOCKER_CERT_PATH."""
    verify = env.get("DOCKER_TLS_VERIFY", "") != ""
    cert_path = env.get("DOCKER_CERT_PATH", "")
    tls = bool(verify or cert_path)
    if tls and not cert_path:
        cert_path = str(config_folder(env))
    return Location(host, why, tls=tls, tls_verify=verify, cert_path=cert_path or None)


def _read_json(path: Path, what: str, address: str) -> dict[str, object]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise EngineUnavailable(
            address, f"cannot read {what} {path}: {exc.strerror}", remedy=REMEDY
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise EngineUnavailable(
            address, f"{what} {path} is over {MAX_CONFIG_BYTES} bytes", remedy=REMEDY
        )
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineUnavailable(
            address, f"{what} {path} is not valid JSON ({exc})", remedy=REMEDY
        ) from None
    if not isinstance(parsed, dict):
        raise EngineUnavailable(address, f"{what} {path} is not a JSON object", remedy=REMEDY)
    return parsed


def _current_context(folder: Path) -> str:
    try:
        config = _read_json(folder / "config.json", "Docker config", "the current context")
    except FileNotFoundError:
        return ""
    current = config.get("currentContext")
    return current if isinstance(current, str) else ""


def context_id(name: str) -> str:
    """The folder name the Docker CLI stores a context under: the SHA-256 of its name."""
    return hashlib.sha256(name.encode()).hexdigest()


def _context(folder: Path, name: str, why: str, env: Mapping[str, str]) -> Location:
    if name == "default":  # the CLI's built-in context: DOCKER_HOST (unset here) or the socket
        return _local_socket(env)
    meta = folder / "contexts" / "meta" / context_id(name) / "meta.json"
    where = f"context {name!r}"
    try:
        data = _read_json(meta, "Docker context", where)
    except FileNotFoundError:
        raise EngineUnavailable(
            where, f"{why} names a context that does not exist (no {meta})", remedy=REMEDY
        ) from None
    endpoints = data.get("Endpoints")
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = docker.get("Host") if isinstance(docker, dict) else None
    if not isinstance(host, str) or not host:
        raise EngineUnavailable(where, f"{meta} has no Endpoints.docker.Host", remedy=REMEDY)
    tls_folder = folder / "contexts" / "tls" / context_id(name) / "docker"
    has_tls = any((tls_folder / f).is_file() for f in ("ca.pem", "cert.pem", "key.pem"))
    skip_verify = bool(docker.get("SkipTLSVerify")) if isinstance(docker, dict) else False
    return Location(
        host,
        why,
        tls=has_tls,
        tls_verify=has_tls and not skip_verify,
        cert_path=str(tls_folder) if has_tls else None,
    )
