"""Deciding that a server is ready, and noticing at once when it died instead.

Every check polls tight at first (10 ms) and backs off, under the server's one timeout. Between
attempts the container's state is looked at (an inspect at most every 50 ms; an exec refused
because the container is not running says the same): a container that dies ends the wait at
once, with its exit code and log tail, not after the retry budget.

TCP and HTTP checks go to the container itself (its address on its network) only when the engine
is local and rootful and this machine routes that address through the engine's own bridge (see
``Engine.routes_directly``): a connect to a published port can succeed through the engine's proxy
before the server listens. Otherwise (a remote or rootless engine, whose container addresses may
be someone else's here) they go to the published port, and a TCP connect only counts if the proxy
does not hang up at once. Either way, once ready, one published port must answer from here.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .checks import BannerCheck, HttpCheck, PostStartup
from .config import ServerSpec
from .errors import (
    NotReady,
    ServerExited,
    StartError,
    TestserverError,
)
from .exits import engine_said, exited_error, how_it_stopped, log_tail
from .launch import Launch
from .variables import expand, expand_argv

if TYPE_CHECKING:
    from .engine import Engine, LogStream

OUTPUT_LINES = 15
FIRST_INTERVAL = 0.01
MAX_BACKOFF_INTERVAL = 0.1
MAX_NETWORK_INTERVAL = 0.02  # a connect costs microseconds: keep polling tight
CONNECT_TIMEOUT = 0.25
# How long a connect through the engine's proxy must stay up, silent, to count: the proxy
# accepts at once and hangs up when nothing listens behind it. 50 ms was too short for rootless
# Docker's port driver on a busy host (a dying server was once found "ready"); a server that
# speaks first answers at once, so only silent servers wait this long, on proxied engines only.
HANGUP_WINDOW = 0.25
REACHABLE_TIMEOUT = 2.0
UNANSWERED = ("Connection refused", "No route to host", "Network is unreachable", "timed out")
# How often a published port that refuses makes the check ask the container's own address
# whether the server listens there (when it does in two rounds in a row, the published address
# is out of reach, and the check says so then, not at the timeout).
OWN_ADDRESS_INTERVAL = 1.0
OWN_ADDRESS_CONFIRMATIONS = 2  # rounds in a row before it is said (a late server is no such case)
CONTROL_PORT = 1  # refused by a real container; an address where it answers is not the container
EXIT_CHECK_INTERVAL = 0.05
# A banner is read for at most this long per attempt (and never past the deadline): a server
# that accepts but says nothing yet is tried again, not waited on.
BANNER_READ_TIMEOUT = 1.0
BANNER_SHOWN = 80  # characters of a wrong answer shown in the message
# Characters a ${NAME} value may keep in a URL path and query; the rest are percent-encoded, so
# that a value (a token with a space, a %, a #) stays one piece of the path.
URL_SAFE = "/?&=:@!$'()*+,;~-._"
NO_VALUES: Mapping[str, str] = MappingProxyType({})


def intervals(fixed: float | None = None, cap: float = MAX_BACKOFF_INTERVAL) -> Iterator[float]:
    """Pauses between attempts: the configured one, or tight at first and backing off."""
    if fixed is not None:
        while True:
            yield fixed
    pause = FIRST_INTERVAL
    while True:
        yield pause
        pause = min(pause * 2, cap)


def network_intervals() -> Iterator[float]:
    return intervals(cap=MAX_NETWORK_INTERVAL)


def close_quietly(stream: LogStream) -> None:
    # Already closed, or a transport that cannot cancel a stream (ssh). The HTTP response goes
    # too: closing only the socket under it would leave its file object holding the descriptor.
    with contextlib.suppress(Exception):
        stream.close()
    response = getattr(stream, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


class ExitCheck:
    """Notices a dead container while the checks poll: one inspect at most every 50 ms.

    Polling rather than blocking on the engine's wait call, which would hold a connection (and a
    thread) until the container goes — for a kept or shared server, long after this run.
    """

    def __init__(self, engine: Engine, container: str) -> None:
        self._engine = engine
        self._container = container
        self._last = time.monotonic()  # the caller has just seen it running

    def exited(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self._last < EXIT_CHECK_INTERVAL:
            return False
        self._last = now
        state = self._engine.inspect(self._container).get("State") or {}
        return not state.get("Running", False)


@dataclass
class Target:
    """Where network checks connect: the container's own address, or the published port."""

    ip: str
    host: str
    published: dict[int, int]
    direct: bool = True
    proven: bool = False  # a check got an answer through a published port
    own_checked: float = 0.0  # when the container's own address was last asked (monotonic)
    own_unroutable: bool = False  # it could not be reached from here: never asked again
    own_answered: int = 0  # rounds in a row the published port refused while the own answered

    def address(self, port: int) -> tuple[str, int] | None:
        if self.direct and self.ip:
            return self.ip, port
        if port in self.published:
            return self.host, self.published[port]
        return None


class PublishedRefused(Exception):
    """The published address refuses while the container's own address answers: the port is
    published where this machine cannot reach it (turned into the server's StartError)."""

    def __init__(self, port: int, published: tuple[str, int], ip: str, detail: str) -> None:
        super().__init__(detail)
        self.port, self.published, self.ip, self.detail = port, published, ip, detail


def check_own_address(target: Target, port: int, detail: str) -> None:
    """After a refused published port: raise ``PublishedRefused`` if the server answers at its
    own address (asked at most once a second, and never again once it proves unroutable).

    Twice in a row, a second apart: a server that begins to listen between the two probes, or
    one that answers and then dies, is not a port published out of reach."""
    if detail != "Connection refused" or target.direct or not target.ip or target.own_unroutable:
        return
    now = time.monotonic()
    if now - target.own_checked < OWN_ADDRESS_INTERVAL:
        return
    target.own_checked = now
    try:
        with socket.create_connection((target.ip, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        if _unroutable(exc):
            target.own_unroutable = True
        target.own_answered = 0
        return
    if target.own_answered == 0 and _answers_anything(target.ip):
        target.own_unroutable = True  # not the container: something between accepts any port
        return
    target.own_answered += 1
    if port in target.published and target.own_answered >= OWN_ADDRESS_CONFIRMATIONS:
        raise PublishedRefused(port, (target.host, target.published[port]), target.ip, detail)


def _answers_anything(ip: str) -> bool:
    """Whether ``ip`` takes a connection on a port no test server listens on (1, tcpmux): then
    what answered was not the container but something on the way that accepts every connection
    (a transparent proxy of this machine's network sends any unknown address there)."""
    try:
        with socket.create_connection((ip, CONTROL_PORT), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def _unroutable(exc: OSError) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout)) or exc.errno in (101, 113)


def unpublished(port: int) -> str:
    return (
        f"port {port} is not in ports:, and this engine's container addresses are not probed "
        "from here (a remote or rootless engine): publish it"
    )


def tcp_ready(target: Target, port: int) -> tuple[bool, str]:
    while True:
        address = target.address(port)
        if address is None:
            return False, unpublished(port)
        direct = target.direct and bool(target.ip)
        try:
            with socket.create_connection(address, timeout=CONNECT_TIMEOUT) as sock:
                if direct:
                    return True, ""
                # Through the engine's proxy: it accepts, then hangs up if nothing listens.
                sock.settimeout(HANGUP_WINDOW)
                try:
                    data = sock.recv(1, socket.MSG_PEEK)
                except TimeoutError:
                    data = b"-"
                except OSError as exc:
                    return False, exc.strerror or str(exc)
                if not data:
                    return False, "the engine's proxy hung up"
                target.proven = True
                return True, ""
        except OSError as exc:
            if direct and _unroutable(exc):
                target.direct = False  # no route to container addresses here: use published ports
                continue
            check_own_address(target, port, exc.strerror or str(exc))
            return False, exc.strerror or str(exc)


def banner_ready(
    target: Target,
    check: BannerCheck,
    expect: bytes,
    deadline: float,
    redact: Callable[[str], str],
) -> tuple[bool, str]:
    """Connected, and the first bytes the server sends start with ``expect``.

    A literal prefix, not a regex: it says exactly which bytes must come first, and when enough
    have arrived to decide. A hang-up before any byte is what the engine's proxy does when
    nothing listens behind it, so this check needs no separate proxy test.
    """
    address = target.address(check.port)
    if address is None:
        return False, unpublished(check.port)
    window = max(min(BANNER_READ_TIMEOUT, deadline - time.monotonic()), HANGUP_WINDOW)
    try:
        with socket.create_connection(address, timeout=CONNECT_TIMEOUT) as sock:
            data, closed = read_banner(sock, expect, time.monotonic() + window)
    except OSError as exc:
        if target.direct and target.ip and _unroutable(exc):
            target.direct = False
        check_own_address(target, check.port, exc.strerror or str(exc))
        return False, exc.strerror or str(exc)
    if data and not (target.direct and target.ip):
        target.proven = True
    if data.startswith(expect):
        return True, ""
    if not data and closed:
        return False, "the connection was closed before anything was sent"
    if not data:
        return False, f"connected, but nothing was sent within {window:.2g}s"
    return False, f"it answered {show_bytes(data, redact)}"


def read_banner(sock: socket.socket, expect: bytes, until: float) -> tuple[bytes, bool]:
    """The first bytes ``sock`` receives, and whether the peer closed: as soon as they start
    with ``expect``; else until the peer hangs up, the window closes or, once they cannot
    match, the rest of their line (to show)."""
    data = b""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return data, False
        except OSError:  # reset by the peer: what arrived is the answer
            return data, True
        if not chunk:
            return data, True
        data += chunk
        if data.startswith(expect):
            return data, False
        if not expect.startswith(data):  # a wrong answer: read a little more of it, to show
            if len(data) >= BANNER_SHOWN or b"\n" in data:
                return data, False
            until = min(until, time.monotonic() + HANGUP_WINDOW)


def show_bytes(data: bytes, redact: Callable[[str], str]) -> str:
    """What a server sent, for a message: secrets masked first (a cut must not split one),
    then cut short and escaped to one ASCII line (no control character reaches the terminal)."""
    text = redact(data.decode("utf-8", "replace"))
    shown = ascii(text[:BANNER_SHOWN])
    return shown + ("..." if len(text) > BANNER_SHOWN else "")


def http_ready(target: Target, check: HttpCheck, path: str) -> tuple[bool, str]:
    address = target.address(check.port)
    if address is None:
        return False, unpublished(check.port)
    conn = http.client.HTTPConnection(address[0], address[1], timeout=CONNECT_TIMEOUT * 4)
    try:
        conn.request("GET", path)
        status = conn.getresponse().status
    except OSError as exc:
        if target.direct and _unroutable(exc):
            target.direct = False
        check_own_address(target, check.port, exc.strerror or str(exc))
        return False, exc.strerror or str(exc)
    except http.client.HTTPException as exc:
        return False, type(exc).__name__
    finally:
        conn.close()
    if not (target.direct and target.ip):
        target.proven = True
    return (status in check.status), f"status {status}"


def check_reachable(spec: ServerSpec, target: Target, engine_address: str) -> None:
    """Once ready, one published TCP port must answer from this machine.

    Readiness may have been judged inside the engine (by exec, log, healthcheck, or at the
    container's own address); a test connects to the published port. An engine reached through
    a tunnel publishes on its own host, where nothing of ours listens: say so now. Not after
    ``wait: false`` (nothing says the server listens yet), and a published port that refuses
    while the container's own address refuses too is a server not listening there, not a port
    out of reach (engines that publish by iptables rules, like Podman, refuse then).
    """
    if target.proven or (spec.post_startup is None and not spec.checks):
        return
    tcp = [p for p in spec.ports if p.protocol == "tcp" and p.number in target.published]
    checked = [
        *spec.checks.tcp,
        *(c.port for c in spec.checks.banners),
        *(c.port for c in spec.checks.http),
    ]
    # A ranged port (FTP passive) only if a check named it: nothing listens there until asked.
    fallback = next((p.number for p in tcp if not p.ranged), None)
    port = next((n for n in checked if any(p.number == n for p in tcp)), fallback)
    if port is None:
        return
    where = (target.host, target.published[port])
    why = connect_error(where)
    if why is None:
        return
    if target.direct and target.ip and connect_error((target.ip, port)) is not None:
        return
    raise StartError(
        spec.name,
        f"ready inside the engine, but its port {port} published at {where[0]}:{where[1]} does "
        f"not answer from this machine ({why}): {unreachable_remedy(engine_address)}",
    )


def connect_error(address: tuple[str, int]) -> str | None:
    """Why a TCP connect to ``address`` failed, or None if it succeeded."""
    try:
        with socket.create_connection(address, timeout=REACHABLE_TIMEOUT):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def unanswered_hint(target: Target, detail: str, engine_address: str) -> str:
    """Why a published port may never answer: it is on another host than this machine."""
    refused = detail in UNANSWERED
    if not refused or (target.direct and target.ip):
        return ""
    return (
        f"; if the server does listen, its published port at {target.host} may not be "
        f"reachable from here: {unreachable_remedy(engine_address)}"
    )


def unreachable_remedy(engine_address: str) -> str:
    if engine_address.startswith(("unix://", "npipe://")):
        return (
            f"the engine at {engine_address} publishes ports on its own host, whose network "
            "the tests do not share (they run in a container?): leave testserver_bind_address "
            "and $TESTSERVER_BIND_ADDRESS unset, and a container of this engine reaches its "
            "servers on the run's network (docs: CI recipes)"
        )
    return (
        f"the engine at {engine_address} publishes ports on its own host; if it is reached "
        "through a tunnel, forward its published ports too (or run the tests on that host), "
        "else set testserver_bind_address or $TESTSERVER_BIND_ADDRESS to an address of the "
        "engine's host that this machine can reach"
    )


class LogWatch:
    """Streams the container's log once, line by line, in a thread, until ``pattern`` matches.

    ``pattern`` is the expanded regex: a ${NAME} value in it matches literally.
    """

    def __init__(self, engine: Engine, container: str, pattern: str) -> None:
        self.matched = threading.Event()
        self._regex = re.compile(pattern)
        self._lock = threading.Lock()
        self._stream: LogStream | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(engine, container), daemon=True)
        self._thread.start()

    def _run(self, engine: Engine, container: str) -> None:
        try:
            stream = engine.follow_logs(container)
        except Exception:  # the engine went away: the other checks will say so
            return
        with self._lock:
            self._stream = stream
            stopped = self._stopped
        try:
            if not stopped and self._read(stream):
                self.matched.set()
        except Exception:  # noqa: S110 - stopped, or the container went away
            pass
        finally:
            close_quietly(stream)

    def _read(self, stream: LogStream) -> bool:
        pending = b""
        for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if any(self._matches(line) for line in lines):
                return True
        return bool(pending) and self._matches(pending)

    def _matches(self, line: bytes) -> bool:
        return bool(self._regex.search(line.decode("utf-8", "replace")))

    def stop(self) -> None:
        """Stop reading and close the stream's connection (it unblocks the thread)."""
        with self._lock:
            self._stopped = True
            stream = self._stream
        if stream is not None:
            close_quietly(stream)
        self._thread.join(timeout=2)


def wait_until_ready(launch: Launch, target: Target) -> None:
    """Run every readiness check of the launched server; raise NotReady or ServerExited.

    ``launch.note`` says how long the image took before the readiness budget began, if it did.
    ``launch.env``: the server's variables (its environment, secrets included), for the ${NAME}
    in its checks. Messages name each check as written, never expanded: no secret reaches them.
    """
    engine, spec, container = launch.engine, launch.spec, launch.container
    deadline, redact, note, values = launch.deadline, launch.redact, launch.note, launch.env
    checks = spec.checks
    if spec.post_startup is None and not checks:
        return
    watch = ExitCheck(engine, container)
    log = None
    if checks.log:
        log = LogWatch(engine, container, expand(checks.log, values, re.escape))

    def poll(what: str, attempt: Callable[[], tuple[bool, str]], pauses: Iterator[float]) -> None:
        detail = ""
        while True:
            ready, detail = attempt()
            if ready:
                return
            if watch.exited():
                raise exited_error(engine, spec, container, redact)
            pause = next(pauses)
            if time.monotonic() + pause > deadline:
                if watch.exited(now=float("inf")):  # it died as we gave up: say so
                    raise exited_error(engine, spec, container, redact)
                raise NotReady(
                    spec.name,
                    f"not ready within {spec.timeout:g}s{note}: {what} was still unmet"
                    + (f" ({redact(detail)})" if detail else "")
                    + unanswered_hint(target, detail, engine.address),
                    log_tail(engine, container, redact),
                )
            time.sleep(pause)

    try:
        if spec.post_startup is not None:
            wait_post_startup(
                engine, spec, spec.post_startup, container, deadline, redact, note, values
            )
        for port in checks.tcp:
            poll(f"wait.tcp {port}", partial(tcp_ready, target, port), network_intervals())
        for banner in checks.banners:
            expect = expand(banner.expect, values).encode()
            what = f"wait.tcp {banner.port} (expecting an answer starting {banner.expect!r})"
            ready = partial(banner_ready, target, banner, expect, deadline, redact)
            poll(what, ready, network_intervals())
        for check in checks.http:
            path = expand(check.path, values, partial(urllib.parse.quote, safe=URL_SAFE))
            statuses = " or ".join(str(s) for s in check.status)
            what = f"wait.http {check.port}{check.path} (expecting {statuses})"
            poll(what, partial(http_ready, target, check, path), network_intervals())
        if log is not None:
            poll(
                f"wait.log {checks.log!r}",
                lambda: (log.matched.is_set(), "no matching line yet"),
                intervals(),
            )
        if checks.healthcheck:
            poll("wait.healthcheck", lambda: health(engine, container), intervals())
    except PublishedRefused as exc:
        raise StartError(
            spec.name,
            f"its port {exc.port} answers at the container's own address {exc.ip}, but where "
            f"it is published, {exc.published[0]}:{exc.published[1]}, it is refused "
            f"({exc.detail}): the tests run in another network namespace than that address "
            f"(a container, or a remote engine's host): {unreachable_remedy(engine.address)}",
        ) from None
    finally:
        if log is not None:
            log.stop()


def wait_completed(launch: Launch) -> None:
    """A one-shot (a compose service others wait on with service_completed_successfully): wait
    until its container has exited; exit 0 is ready, anything else is its error, with its log."""
    engine, spec, container = launch.engine, launch.spec, launch.container
    pauses = intervals()
    while True:
        state = engine.inspect(container).get("State") or {}
        if not state.get("Running", False) and state.get("Status") != "created":
            code = int(state.get("ExitCode", -1))
            if code == 0:
                return
            tail = log_tail(engine, container, launch.redact)
            raise ServerExited(
                spec.name,
                code,
                tail,
                why=f"{how_it_stopped(state)}; a one-shot service must exit 0 before the "
                "services that depend on it start" + engine_said(state, launch.redact, tail),
            )
        pause = next(pauses)
        if time.monotonic() + pause > launch.deadline:
            raise NotReady(
                spec.name,
                f"the one-shot service had not exited within {spec.timeout:g}s{launch.note}",
                log_tail(engine, container, launch.redact),
            )
        time.sleep(pause)


def health(engine: Engine, container: str) -> tuple[bool, str]:
    info = engine.inspect(container)
    status = ((info.get("State") or {}).get("Health") or {}).get("Status")
    argv = healthcheck_argv(((info.get("Config") or {}).get("Healthcheck") or {}).get("Test"))
    if status is None and argv is None:
        raise TestserverError(
            "wait.healthcheck: neither the image (HEALTHCHECK) nor the server (healthcheck:) "
            "defines a health check"
        )
    if status == "healthy":
        return True, ""
    if engine.kind == "podman" and argv is not None:
        # Podman runs healthchecks from systemd timers: without systemd (CI containers) none
        # ever runs and health stays "starting". The same test, exec'd, gives the same answer.
        # The container's Config.Healthcheck is the server's healthcheck: when one is set (the
        # engine keeps it in place of the image's), so that is what runs here.
        code, output = engine.exec(container, argv)
        if code == 0:
            return True, ""
        last = output.decode("utf-8", "replace").strip().splitlines()[-1:]
        return False, f"health: {status}; its test exited {code}" + (
            f": {last[0][:200]}" if last else ""
        )
    return False, f"health: {status}" + last_check(info)


def last_check(info: Mapping[str, Any]) -> str:
    """What the engine's last health check said: its exit code and last line of output."""
    log = ((info.get("State") or {}).get("Health") or {}).get("Log") or []
    last = log[-1] if isinstance(log, list) and log and isinstance(log[-1], dict) else None
    if last is None:
        return ""
    lines = str(last.get("Output") or "").strip().splitlines()[-1:]
    return f"; its test exited {last.get('ExitCode')}" + (f": {lines[0][:200]}" if lines else "")


def healthcheck_argv(test: object) -> list[str] | None:
    """The argv an engine runs for an image's HEALTHCHECK test (None: no healthcheck).

    ``["CMD", *argv]`` runs as is; ``["CMD-SHELL", text]`` through the image's /bin/sh, as the
    engine itself does (the image author's shell line, not one of ours).
    """
    if not isinstance(test, list) or not test or not all(isinstance(t, str) for t in test):
        return None
    kind, *rest = test
    if kind == "CMD" and rest:
        return rest
    if kind == "CMD-SHELL" and rest:
        return ["/bin/sh", "-c", rest[0]]
    return None


def wait_post_startup(
    engine: Engine,
    spec: ServerSpec,
    check: PostStartup,
    container: str,
    deadline: float,
    redact: Callable[[str], str],
    note: str = "",
    values: Mapping[str, str] = NO_VALUES,
) -> int:
    """Exec ``check.command`` (expanded with ``values``) until it exits 0; returns the number
    of attempts. The message shows the command as written: a secret in it stays ${NAME}."""
    pauses = intervals(check.interval)
    argv = list(expand_argv(check.command, values))
    attempt = 0
    while True:
        attempt += 1
        code, output = engine.exec(container, argv)
        if code is None:  # the engine refused the exec: the container is not running
            raise exited_error(engine, spec, container, redact)
        if code == 0:
            return attempt
        pause = next(pauses)
        out_of_retries = check.retries is not None and attempt >= check.retries
        if out_of_retries or time.monotonic() + pause > deadline:
            why = f"after {attempt} attempts" if out_of_retries else f"within {spec.timeout:g}s"
            why += note
            text = redact(output.decode("utf-8", "replace").strip())
            raise NotReady(
                spec.name,
                f"post_startup {list(check.command)} did not succeed {why} (last exit code {code})",
                log_tail(engine, container, redact),
                output="\n".join(text.splitlines()[-OUTPUT_LINES:]),
            )
        time.sleep(pause)
