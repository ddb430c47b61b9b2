"""The run's settings from ini, CLI and environment: read at every pytest start, so kept light."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

BIND_ADDRESS = "127.0.0.1"
UNAVAILABLE_CHOICES = ("error", "skip")


@dataclass(frozen=True)
class RunSettings:
    """How this run publishes ports and treats its containers."""

    bind_address: str = BIND_ADDRESS
    bind_address_set: bool = False  # by the ini or the environment: no other route is chosen
    reach: str = "auto"  # $TESTSERVER_REACH: auto, published or network (see reach.py)
    bind_local: bool = False
    keep: bool = False
    rebuild: bool = False
    unavailable: str = "error"
    # fresh containers of each module-, class- or function-scoped server started ahead
    spares: int = 1
    # --testserver-reuse: session servers kept across runs, removed after reuse_idle seconds
    reuse: bool = False
    reuse_idle: float = 1800.0
    project: str = ""  # the project's root folder: kept containers are never shared across
    pull: str | None = None  # --testserver-pull: every image server's policy, over its pull:
    registry_mirror: str = ""  # Docker Hub images are pulled from here (registry.mirrored)


def bind_address(value: object, where: str) -> str:
    if value == BIND_ADDRESS:
        return BIND_ADDRESS
    from . import validate

    w = validate.Where(where)
    text = validate.string(value, w)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        w.fail(f"{validate.show(text)} is not an IP address (such as 127.0.0.1 or 0.0.0.0)")


REACH_CHOICES = ("auto", "published", "network")


def reach(value: str, where: str) -> str:
    text = value.strip().lower() or "auto"
    if text in REACH_CHOICES:
        return text
    from . import validate

    return validate.choice(value, validate.Where(where), REACH_CHOICES)


def unavailable(value: object, where: str) -> str:
    if value in UNAVAILABLE_CHOICES:
        return str(value)
    from . import validate

    return validate.choice(value, validate.Where(where), UNAVAILABLE_CHOICES)


MAX_SPARES = 4


def spares(value: object, where: str) -> int:
    """How many warm spares per scoped server: a small count (each is a running container)."""
    text = str(value).strip()
    if text.isdigit() and int(text) <= MAX_SPARES:
        return int(text)
    from . import validate

    validate.Where(where).fail(
        f"{validate.show(value)} is not a number of spares (0 to {MAX_SPARES})"
    )


def idle_time(value: object, where: str) -> float:
    """The idle time of kept containers, in seconds (at most a week)."""
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if 0 < seconds <= 7 * 86400:
        return seconds
    from . import validate

    validate.Where(where).fail(
        f"{validate.show(value)} is not an idle time in seconds (more than 0, at most a week)"
    )


def flag(value: str) -> bool:
    """An environment-style switch: anything but empty, 0, false, no, off is true."""
    return value.strip().lower() not in ("", "0", "false", "no", "off")
