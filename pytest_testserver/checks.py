"""What ``wait:`` and ``post_startup:`` declare: the readiness checks, parsed once.

Each check becomes a frozen value (``Wait``, ``HttpCheck``, ``BannerCheck``, ``PostStartup``) that
``readiness.py`` runs; every error names the file, the server and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import validate as v
from . import variables
from .validate import Where

WAIT_KEYS = ("tcp", "http", "log", "healthcheck")
HTTP_KEYS = ("port", "path", "status")
TCP_KEYS = ("port", "expect")
MAX_EXPECT = 200  # a banner's first bytes; more is a page, better checked with wait.log or http
POST_STARTUP_KEYS = ("command", "retries", "interval")


@dataclass(frozen=True)
class PostStartup:
    """A command exec'd in the container until it exits 0."""

    command: tuple[str, ...]
    retries: int | None = None
    interval: float | None = None


@dataclass(frozen=True)
class HttpCheck:
    port: int
    path: str = "/"  # may hold ${NAME} variables, expanded at start
    status: tuple[int, ...] = (200,)  # any of them passes


@dataclass(frozen=True)
class BannerCheck:
    """A TCP check that also reads what the server sends first: ready when it starts with
    ``expect`` (a literal prefix, which may hold ${NAME} variables)."""

    port: int
    expect: str


@dataclass(frozen=True)
class Wait:
    """Readiness checks besides post_startup; all must pass. Empty: no check at all."""

    tcp: tuple[int, ...] = ()
    http: tuple[HttpCheck, ...] = ()
    log: str | None = None  # a regular expression, searched line by line; may hold ${NAME}
    healthcheck: bool = False
    banners: tuple[BannerCheck, ...] = ()  # wait.tcp entries with expect:

    def __bool__(self) -> bool:
        return bool(self.tcp or self.http or self.log or self.healthcheck or self.banners)


def parse_post_startup(value: object, where: Where, names: frozenset[str]) -> PostStartup:
    raw: dict[str, Any] = {"command": value} if isinstance(value, list) else v.mapping(value, where)
    v.known_keys(raw, POST_STARTUP_KEYS, where)
    if "command" not in raw:
        where.fail("needs command: the argv to run inside the container")
    retries, interval = raw.get("retries"), raw.get("interval")
    return PostStartup(
        command=variables.check_argv(
            v.argv(raw["command"], where.key("command")), names, where.key("command")
        ),
        retries=v.count(retries, where.key("retries")) if retries is not None else None,
        interval=v.duration(interval, where.key("interval")) if interval is not None else None,
    )


def parse_wait(value: object, where: Where, names: frozenset[str] = frozenset()) -> Wait:
    if value is False or value is None:
        return Wait()  # explicitly no check: ready as soon as the container runs
    raw = v.mapping(value, where)
    v.known_keys(raw, WAIT_KEYS, where)
    tcp: list[int] = []
    banners: list[BannerCheck] = []
    for item, w in one_or_many(raw.get("tcp"), where.key("tcp")):
        if isinstance(item, dict):
            banners.append(parse_banner(item, w, names))
        else:
            tcp.append(v.tcp_port(item, w))
    http = [
        parse_http(item, w, names) for item, w in one_or_many(raw.get("http"), where.key("http"))
    ]
    log = None
    if raw.get("log") is not None:
        log = parse_log(raw["log"], where.key("log"), names)
    healthcheck = False
    if raw.get("healthcheck") is not None:
        healthcheck = v.boolean(raw["healthcheck"], where.key("healthcheck"))
    wait = Wait(tuple(tcp), tuple(http), log, healthcheck, tuple(banners))
    if not wait:
        where.fail("names no check: use tcp, http, log or healthcheck (or wait: false for none)")
    return wait


def one_or_many(value: object, where: Where) -> list[tuple[object, Where]]:
    """``x`` or ``[x, y]``, each with its own location."""
    if value is None:
        return []
    if isinstance(value, list):
        return [(item, where.index(i)) for i, item in enumerate(value)]
    return [(value, where)]


def parse_log(value: object, where: Where, names: frozenset[str]) -> str:
    """A regex whose ${NAME} values match literally: checked as it will be, with them empty."""
    pattern = variables.check(v.string(value, where), names, where)
    v.regex(variables.expand(pattern, dict.fromkeys(names, ""), re.escape), where)
    return pattern


def parse_banner(value: dict[str, Any], where: Where, names: frozenset[str]) -> BannerCheck:
    raw = v.mapping(value, where)
    v.known_keys(raw, TCP_KEYS, where)
    for key in TCP_KEYS:
        if key not in raw:
            where.fail(f'needs {key} (a TCP check with expect: {{port: 21, expect: "220 "}})')
    expect = v.string(raw["expect"], where.key("expect"))
    if len(expect) > MAX_EXPECT:
        where.key("expect").fail(f"is longer than {MAX_EXPECT} characters: a banner's first bytes")
    return BannerCheck(
        port=v.tcp_port(raw["port"], where.key("port")),
        expect=variables.check(expect, names, where.key("expect")),
    )


def parse_http(value: object, where: Where, names: frozenset[str] = frozenset()) -> HttpCheck:
    if not isinstance(value, dict):
        return HttpCheck(v.tcp_port(value, where))
    raw = v.mapping(value, where)
    v.known_keys(raw, HTTP_KEYS, where)
    if "port" not in raw:
        where.fail("needs port")
    status = raw.get("status", 200)
    if isinstance(status, list):
        if not status:
            where.key("status").fail("must not be an empty list")
        statuses = tuple(http_status(s, where.key("status").index(i)) for i, s in enumerate(status))
    else:
        statuses = (http_status(status, where.key("status")),)
    path = v.url_path(raw.get("path", "/"), where.key("path"))
    return HttpCheck(
        port=v.tcp_port(raw["port"], where.key("port")),
        path=variables.check(path, names, where.key("path")),
        status=tuple(dict.fromkeys(statuses)),
    )


def http_status(value: object, where: Where) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        where.fail(f"{v.show(value)} is not an HTTP status (100-599)")
    return value
