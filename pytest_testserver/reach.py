"""How this process reaches its servers: through published ports, or as a sibling container.

Decided once per process, on the first server's start (``Reach.route``), never before:

- **network** — the tests run in a container of the engine in use (a CI job container, a
  devcontainer, a Jenkins agent with the engine's socket mounted). Ports published on the
  engine host's loopback are in another network namespace than the tests, so the tests' own
  container joins each network the run made for its servers, and a test reaches a server at
  its address there and the container's own port, as containers reach each other. Nothing is
  published for the tests' own use.
- **published** — everywhere else: ports published on the bind address (loopback for a local
  engine; for a remote engine, the address of its host that this machine connected to).

On a machine that is not a container (``whereami``: two ``stat`` and one small read) this
asks the engine nothing; in one, it inspects its own container once. ``$TESTSERVER_REACH``
(``published`` or ``network``) overrides the decision; an explicit bind address means
``published``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import EngineError, TestserverError
from .settings import BIND_ADDRESS, RunSettings
from .whereami import Inside, detect

if TYPE_CHECKING:
    from .engine import Engine

REACH_ENV = "TESTSERVER_REACH"
REACH_CHOICES = ("auto", "published", "network")
_SHARED_NAMESPACE = ("host", "none")  # network modes where joining a network means nothing


@dataclass(frozen=True)
class Route:
    """The decision: ``mode`` ("published" or "network"), where ports are published, why."""

    mode: str
    bind_address: str
    why: str
    container: str = ""  # network: the tests' own container (its id on the engine)
    networks: tuple[str, ...] = ()  # network: the networks it was on before the run

    @property
    def joins(self) -> bool:
        return self.mode == "network"


def remote_host_address(engine_address: str) -> str | None:
    """The address of a remote engine's host this machine connects to: ``tcp://docker:2375``
    gives the address ``docker`` resolves to (IPv4 first); None for a local engine, or a name
    that does not resolve."""
    parts = urlsplit(engine_address)
    if parts.scheme not in ("tcp", "http", "https", "ssh") or not parts.hostname:
        return None
    host = parts.hostname
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    addresses = [str(item[4][0]) for item in found]
    ipv4 = [a for a in addresses if ":" not in a]
    chosen = ipv4 or addresses
    return chosen[0].split("%")[0] if chosen else None


def sibling_of(info: dict[str, Any], inside: Inside) -> Route | None:
    """The route of a container the engine knows (``info``: its inspect), or None when it
    shares the engine host's network namespace (``--network host``: published ports work) or
    another container's (it cannot join networks itself)."""
    host_config = info.get("HostConfig") or {}
    mode = str(host_config.get("NetworkMode") or "default")
    if mode in _SHARED_NAMESPACE or mode.startswith("container:"):
        return None
    if not (info.get("State") or {}).get("Running", False):
        return None
    networks = tuple(sorted(((info.get("NetworkSettings") or {}).get("Networks") or {}).keys()))
    where = ", ".join(networks) or "no network"
    return Route(
        "network",
        BIND_ADDRESS,
        f"the tests run in container {inside.container_id[:12]} of this engine (on {where}): "
        "it joins the run's networks and reaches servers at their own addresses",
        container=inside.container_id,
        networks=networks,
    )


class Reach:
    """The route of one process, decided on first need; the networks its container joined."""

    def __init__(
        self,
        settings: RunSettings,
        *,
        override: str = "auto",
        inside: Callable[[], Inside] = detect,
    ) -> None:
        self._settings = settings
        self._override = override
        self._inside = inside
        self._lock = threading.Lock()
        self._route: Route | None = None
        self._joined: set[str] = set()

    def route(self, engine: Engine) -> Route:
        with self._lock:
            if self._route is None:
                self._route = self._decide(engine)
            return self._route

    def settings(self, engine: Engine) -> RunSettings:
        """The run's settings with the bind address this route publishes on."""
        route = self.route(engine)
        if route.bind_address == self._settings.bind_address:
            return self._settings
        return replace(self._settings, bind_address=route.bind_address)

    def _decide(self, engine: Engine) -> Route:
        settings = self._settings
        if settings.bind_address_set:
            why = f"published on {settings.bind_address}, as the bind address setting says"
            return Route("published", settings.bind_address, why)
        if self._override != "published":
            inside = self._inside()
            if inside.container_id:
                sibling = self._sibling(engine, inside)
                if sibling is not None:
                    return sibling
            if self._override == "network":
                raise TestserverError(
                    f"${REACH_ENV}=network, but the tests do not run in a container of the "
                    f"engine at {engine.address} ({inside.describe()})"
                )
        remote = remote_host_address(engine.address)
        if remote is not None and not ipaddress.ip_address(remote).is_loopback:
            why = (
                f"the engine is remote: published on {remote}, the address of its host that "
                f"this machine connected to ({engine.address})"
            )
            return Route("published", remote, why)
        return Route("published", settings.bind_address, f"published on {settings.bind_address}")

    @staticmethod
    def _sibling(engine: Engine, inside: Inside) -> Route | None:
        try:
            info = engine.inspect(inside.container_id)
        except EngineError:  # 404: a container of another engine (DinD, a remote host)
            return None
        if not str(info.get("Id", "")).startswith(inside.container_id):
            return None
        return sibling_of(info, inside)

    def join(self, engine: Engine, network: str) -> None:
        """Put the tests' own container on ``network`` (once; a second join is a no-op)."""
        route = self.route(engine)
        if not route.joins:
            return
        with self._lock:
            if network in self._joined:
                return
        engine.connect_network(network, route.container)
        with self._lock:
            self._joined.add(network)
