"""Where ports are published and how a test reaches them.

Default: each container port on an ephemeral host port of the bind address (loopback unless
asked). Bind-local: each port at the same number as inside the container, for clients with fixed
ports. The handle's host is the engine's host for remote engines (``DOCKER_HOST=tcp://h:p`` or
``ssh://h``), else the bind address (loopback when that is the wildcard).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .config import Port
from .settings import RunSettings

_PORT_IN_MESSAGE = re.compile(r":(\d{1,5})(?:\D|$)")


def port_bindings(
    ports: tuple[Port, ...], settings: RunSettings
) -> dict[str, tuple[str, int | None]]:
    """The engine's port_bindings: ``{"8080/tcp": (address, host port or None for ephemeral)}``."""
    return {
        str(p): (settings.bind_address, p.number if settings.bind_local else None) for p in ports
    }


def handle_host(engine_address: str | None, bind_address: str) -> str:
    if engine_address:
        parts = urlsplit(engine_address)
        if parts.scheme in ("tcp", "ssh", "http", "https") and parts.hostname:
            return parts.hostname
    if ipaddress.ip_address(bind_address).is_unspecified:
        return "127.0.0.1"
    return bind_address


def remote_loopback_problem(engine_address: str | None, bind_address: str) -> str | None:
    """Ports on a remote engine's loopback cannot be reached from here: say so before starting."""
    host = handle_host(engine_address, bind_address)
    if host in ("localhost", bind_address) or not ipaddress.ip_address(bind_address).is_loopback:
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"the engine is remote ({host}), but ports are published on its loopback "
        f"{bind_address}, which this machine cannot reach: set the ini option "
        "testserver_bind_address or $TESTSERVER_BIND_ADDRESS (e.g. 0.0.0.0) to publish them "
        "on the engine's interfaces"
    )


def published_ports(
    inspect: Mapping[str, Any], ports: tuple[Port, ...], settings: RunSettings
) -> dict[Port, int]:
    """Host port for each container port, read from the container's inspect data."""
    if settings.bind_local:
        return {p: p.number for p in ports}
    mapping = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    result: dict[Port, int] = {}
    for p in ports:
        bindings = mapping.get(str(p)) or []
        if bindings:
            result[p] = int(bindings[0]["HostPort"])
    return result


def taken_port(message: str, ports: tuple[Port, ...]) -> Port | None:
    """Which of ``ports`` an engine 'port is already allocated' error names, if it says."""
    for match in _PORT_IN_MESSAGE.finditer(message):
        number = int(match.group(1))
        for p in ports:
            if p.number == number:
                return p
    return None


def is_port_conflict(message: str) -> bool:
    lowered = message.lower()
    return "port is already allocated" in lowered or "address already in use" in lowered
