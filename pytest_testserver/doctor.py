"""``--testserver-doctor``: what the plugin decides on this machine, and why, in a few lines.

The engine and why it was chosen, its kind, version and rootlessness, whether the tests run in a
container and which, how servers will be reached and why, the bind address, the state folder,
and the result of starting one tiny server (busybox httpd, removed at once) and reaching it as a
test would. Its output is what a bug report should contain: it names no secret (no
environment values, no certificates).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from pathlib import Path

from .config import parse_config
from .errors import TestserverError, UnsafeFolder
from .folders import user_state_dir
from .identity import RunContext, lease_ttl, new_run_id
from .locate import locate
from .pool import ServerPool
from .reach import REACH_ENV
from .settings import RunSettings
from .whereami import detect

TINY = {
    "servers": {
        "doctor": {
            "image": "busybox:stable",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
            "ports": [8080],
            "wait": {"http": {"port": 8080, "path": "/hostname", "status": [200, 404]}},
            "timeout": 60,
        }
    }
}


def report(settings: RunSettings, write: Callable[[str], object], *, start: bool = True) -> int:
    """Write the report line by line; 0 when the tiny server was reached (or not started)."""
    write("testserver doctor (paste this into a bug report)")
    try:
        location = locate()
    except TestserverError as exc:
        write(f"engine: {exc}")
        return 1
    tls = ", TLS" + (" verified" if location.tls_verify else "") if location.tls else ""
    write(f"engine: {location.address} ({location.why}{tls})")
    inside = detect()
    unknown = "; no file names its id: reached as from any host" if inside.kind else ""
    write(f"tests run: {inside.describe()}{unknown if not inside.container_id else ''}")
    bind = settings.bind_address if settings.bind_address_set else "not set (decided below)"
    write(f"bind address setting: {bind}; ${REACH_ENV}: {settings.reach}")
    try:
        state, _ = user_state_dir()
        write(f"state folder: {state.path}")
        state.close()
    except (OSError, UnsafeFolder) as exc:
        write(f"state folder: none usable ({exc})")
    context = RunContext(new_run_id(), kept=False, lease_ttl=lease_ttl())
    config = parse_config(TINY, base=Path("."), source="--testserver-doctor")
    pool = ServerPool(config, settings, context, shared=False, on_event=lambda kind, text: None)
    status = 0
    try:
        try:
            engine = pool.connection.engine()
        except TestserverError as exc:
            write(f"engine: {exc}")
            return 1
        rootless = "rootless" if engine.rootless else "rootful"
        write(f"engine kind: {engine.kind}, {rootless}; version {engine.version}")
        try:
            route = pool.launcher.route(engine, "doctor")
        except TestserverError as exc:
            write(f"servers reached: {exc}")
            return 1
        write(f"servers reached: {route.mode} ({route.why})")
        write(f"ports published on: {route.bind_address}")
        if start:
            status = _tiny(pool, write)
    finally:
        for problem in pool.close():
            write(f"teardown: {problem}")
            status = 1
    return status


def _tiny(pool: ServerPool, write: Callable[[str], object]) -> int:
    began = time.monotonic()
    try:
        handle = pool.get("doctor")
    except TestserverError as exc:
        write(f"tiny server: FAILED: {exc}".splitlines()[0])
        return 1
    took = time.monotonic() - began
    connection = http.client.HTTPConnection(handle.host, handle.port(8080), timeout=5)
    try:
        connection.request("GET", "/hostname")
        answer = f"HTTP {connection.getresponse().status}"
    except OSError as exc:
        write(f"tiny server: ready in {took:.2f}s, but {handle.url(8080)} failed: {exc}")
        return 1
    finally:
        connection.close()
    write(f"tiny server: ready in {took:.2f}s, reached at {handle.url(8080)} ({answer})")
    return 0
