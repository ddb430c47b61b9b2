"""Where ports are published and how a test reaches them.

Default: each container port on an ephemeral host port of the bind address (loopback unless
asked). A port declared with its own host port (``"2121:21"``) is published there. Bind-local:
every other port at the same number as inside the container, for clients with fixed ports. The
handle's host is the engine's host for remote engines (``DOCKER_HOST=tcp://h:p`` or
``ssh://h``), else the bind address (loopback when that is the wildcard).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .config import Port, ServerSpec
from .portspec import describe_ports
from .settings import RunSettings

_PORT_IN_MESSAGE = re.compile(r":(\d{1,5})(?:\D|$)")


def host_port(port: Port, settings: RunSettings) -> int | None:
    """Where ``port`` is published: its fixed host port, its own number under bind-local, or
    None for one the engine chooses."""
    if port.host is not None:
        return port.host
    return port.number if settings.bind_local else None


def port_bindings(
    ports: tuple[Port, ...], settings: RunSettings
) -> dict[str, tuple[str, int | None]]:
    """The engine's port_bindings: ``{"8080/tcp": (address, host port or None for ephemeral)}``."""
    return {str(p): (settings.bind_address, host_port(p, settings)) for p in ports}


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
    """Host port for each container port: the fixed one, else read from the inspect data."""
    mapping = (inspect.get("NetworkSettings") or {}).get("Ports") or {}
    result: dict[Port, int] = {}
    for p in ports:
        fixed = host_port(p, settings)
        if fixed is not None:
            result[p] = fixed
        elif bindings := mapping.get(str(p)) or []:
            result[p] = int(bindings[0]["HostPort"])
    return result


def taken_port(message: str, ports: tuple[Port, ...], settings: RunSettings) -> Port | None:
    """Which of ``ports`` an engine 'port is already allocated' error names, if it says: the
    message names the host port, so only a port whose host port is known can be matched."""
    for match in _PORT_IN_MESSAGE.finditer(message):
        number = int(match.group(1))
        for p in ports:
            if host_port(p, settings) == number:
                return p
    return None


def is_port_conflict(message: str) -> bool:
    lowered = message.lower()
    return "port is already allocated" in lowered or "address already in use" in lowered


def taken_port_message(message: str, spec: ServerSpec, settings: RunSettings) -> str:
    """The one line for a host port someone else holds: which port, where, and what fixed it."""
    port = taken_port(message, spec.ports, settings)
    if port is None:
        remedy = "turn bind-local off" if settings.bind_local else "change its host ports"
        return f"one of its ports is already in use on the host: stop what holds it, or {remedy}"
    where = f"{settings.bind_address}:{host_port(port, settings)}"
    if port.host is None:  # bind-local's own number
        return (
            f"port {port} is already in use on {where} (bind-local publishes each port at its "
            "own number): stop what holds it, or turn bind-local off"
        )
    entry = describe_ports([p for p in spec.ports if p.entry == port.entry])[0]
    return (
        f"port {port} is already in use on {where} (ports[{port.entry}]: {entry} fixes its "
        "host port): stop what holds it, or give it another host port"
    )


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
