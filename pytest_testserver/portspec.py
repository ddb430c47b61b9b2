"""What ``ports:`` declares: each entry parsed into ``Port``s, and shown back as it was written.

An entry is a container port or range, optionally with a fixed host port or range:
``8080``, ``"53/udp"``, ``"30000-30009"``, ``"2121:21"``, ``"30000-30009:30000-30009/tcp"``, or
the mapping ``{target: 21, published: 2121, protocol: tcp}`` (Compose's long syntax names).
A range expands to one ``Port`` per number. Where each port is published is ports.py's business.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import validate as v
from .validate import Where

# A range is one published port each: the engine starts a docker-proxy process and writes NAT
# rules per port, all inside the container's start. Measured on Docker 20.10 (2 shared cores):
# 50 ports added ~3 s to a start, 1000 ports took over 60 s, half the default readiness budget.
# FTP passive and RTP ranges are tens of ports to a hundred; 256 keeps a start within seconds
# and turns a typo (1000-65535) into an error instead of a stalled start.
MAX_RANGE = 256
PORT_ENTRY_KEYS = ("target", "published", "protocol")
PROTOCOLS = ("tcp", "udp")
# ASCII digits only: int() would also take fullwidth or Arabic-Indic digits.
_NUMBER = r"[0-9]{1,5}"
_SPAN = rf"({_NUMBER})(?:-({_NUMBER}))?"
_ENTRY = re.compile(rf"(?:{_SPAN}:)?{_SPAN}(?:/(tcp|udp))?")
_RANGE = re.compile(_SPAN)
_WITH_ADDRESS = re.compile(r"[0-9.\[\]:a-fA-F]+:[0-9-]+:[0-9-]+(?:/[a-z]+)?")
ENTRY_FORMS = '8080, "53/udp", "30000-30009", "2121:21", or a mapping with target'


@dataclass(frozen=True)
class Port:
    """A container port: ``(number, protocol)`` is its identity, the key of ``handle.port()``
    and what may not be listed twice. How it is published rides along and is not compared, so
    ``Port(21)`` finds the port however it was declared."""

    number: int
    protocol: str = "tcp"
    host: int | None = field(default=None, compare=False)  # fixed host port; None: not fixed
    # From a range (FTP passive ports): nothing listens until a client asks, so the default
    # readiness check leaves it out.
    ranged: bool = field(default=False, compare=False)
    entry: int = field(default=0, compare=False)  # index of its ports: entry, for messages

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol}"


def parse_ports(value: object, where: Where) -> tuple[Port, ...]:
    """Every entry of ``ports:``, expanded; a port or host port given twice is an error."""
    ports: dict[Port, Port] = {}
    hosts: dict[tuple[int, str], Port] = {}
    for i, item in enumerate(v.string_list(value, where)):
        w = where.index(i)
        entry = parse_entry(item, w, i)
        for p in entry:
            if p in ports:
                other = ports[p]
                if len(entry) > 1:
                    w.fail(
                        f"{describe_entry(entry)} overlaps ports[{other.entry}] "
                        f"({entry_of(other, ports)}) at {p}"
                    )
                if other.ranged:
                    w.fail(f"{p} is already in ports[{other.entry}] ({entry_of(other, ports)})")
                w.fail(f"{p} is listed twice")
            if p.host is not None:
                taken = hosts.get((p.host, p.protocol))
                if taken is not None:
                    w.fail(
                        f"host port {p.host}/{p.protocol} is also the host port of "
                        f"ports[{taken.entry}] ({entry_of(taken, ports)})"
                    )
                hosts[(p.host, p.protocol)] = p
            ports[p] = p
    return tuple(ports)


def entry_of(port: Port, ports: Iterable[Port]) -> str:
    """The entry ``port`` came from, as written."""
    return describe_entry([p for p in ports if p.entry == port.entry])


def parse_entry(value: object, where: Where, index: int) -> list[Port]:
    if isinstance(value, dict):
        return parse_mapping(v.mapping(value, where), where, index)
    if isinstance(value, bool):
        where.fail(f"{v.show(value)} is not a port (1-65535)")
    if isinstance(value, int):
        return [Port(check_number(value, where), entry=index)]
    if isinstance(value, str) and (match := _ENTRY.fullmatch(value)):
        host_start, host_end, start, end, protocol = match.groups()
        container = span(start, end, where)
        host = span(host_start, host_end, where) if host_start is not None else None
        return expand(container, host, protocol or "tcp", end is not None, where, index)
    if isinstance(value, str) and _WITH_ADDRESS.fullmatch(value):
        where.fail(
            f"{v.show(value)}: a port entry takes no address; every port is published on the "
            "run's bind address (ini testserver_bind_address)"
        )
    where.fail(f"{v.show(value)} is not a port entry ({ENTRY_FORMS})")


def parse_mapping(raw: dict[str, Any], where: Where, index: int) -> list[Port]:
    v.known_keys(raw, PORT_ENTRY_KEYS, where)
    if raw.get("target") is None:
        where.fail("needs target: the container port (or range, such as 30000-30009)")
    container, ranged = range_value(raw["target"], where.key("target"))
    host = None
    if raw.get("published") is not None:
        host, _ = range_value(raw["published"], where.key("published"))
    protocol = "tcp"
    if raw.get("protocol") is not None:
        protocol = v.choice(raw["protocol"], where.key("protocol"), PROTOCOLS)
    return expand(container, host, protocol, ranged, where, index)


def range_value(value: object, where: Where) -> tuple[tuple[int, int], bool]:
    """``21`` or ``"30000-30009"`` -> ``((start, end), is a range)``."""
    if isinstance(value, bool):
        where.fail(f"{v.show(value)} is not a port (1-65535)")
    if isinstance(value, int):
        number = check_number(value, where)
        return (number, number), False
    if isinstance(value, str) and (match := _RANGE.fullmatch(value)):
        start, end = match.groups()
        return span(start, end, where), end is not None
    where.fail(f"{v.show(value)} is not a port or a range of ports (such as 21 or 30000-30009)")


def span(start: str, end: str | None, where: Where) -> tuple[int, int]:
    low = check_number(int(start), where)
    high = check_number(int(end), where) if end is not None else low
    if high < low:
        where.fail(f"{start}-{end} is not a range: it must go from low to high")
    if high - low + 1 > MAX_RANGE:
        where.fail(
            f"{start}-{end} is {high - low + 1} ports, more than {MAX_RANGE} in one range "
            "(the engine publishes each port on its own)"
        )
    return low, high


def check_number(number: int, where: Where) -> int:
    if not 1 <= number <= 65535:
        where.fail(f"{v.show(number)} is not a port (1-65535)")
    return number


def expand(
    container: tuple[int, int],
    host: tuple[int, int] | None,
    protocol: str,
    ranged: bool,
    where: Where,
    index: int,
) -> list[Port]:
    count = container[1] - container[0] + 1
    if host is not None and host[1] - host[0] + 1 != count:
        where.fail(
            f"host ports {show_span(host)} and container ports {show_span(container)} differ "
            "in length: a fixed host range maps one to one onto the container range"
        )
    return [
        Port(
            container[0] + i,
            protocol,
            host=host[0] + i if host is not None else None,
            ranged=ranged,
            entry=index,
        )
        for i in range(count)
    ]


def show_span(numbers: tuple[int, int]) -> str:
    low, high = numbers
    return str(low) if low == high else f"{low}-{high}"


def describe_entry(ports: Sequence[Port]) -> str:
    """One entry's ports as written: ``8080/tcp``, ``2121:21/tcp``, ``30000-30009/tcp``."""
    first, last = ports[0], ports[-1]
    numbers = f"{first.number}-{last.number}" if first.ranged else str(first.number)
    if first.host is None:
        return f"{numbers}/{first.protocol}"
    hosts = f"{first.host}-{last.host}" if first.ranged else str(first.host)
    return f"{hosts}:{numbers}/{first.protocol}"


def describe_ports(ports: Sequence[Port]) -> list[str]:
    """Each entry of a server's ports, as ``describe_entry`` shows it."""
    groups: dict[int, list[Port]] = {}
    for p in ports:
        groups.setdefault(p.entry, []).append(p)
    return [describe_entry(group) for group in groups.values()]
