"""Deciding that a server is ready, and noticing at once when it died instead.

The post-startup command is exec'd inside the container; an exec refused because the container is
no longer running ends the wait immediately with the exit code and log tail, rather than after the
retry budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .config import PostStartup, ServerSpec
from .errors import NotReady, ServerExited

if TYPE_CHECKING:
    from .engine import Engine

LOG_TAIL = 30
FIRST_INTERVAL = 0.01
MAX_BACKOFF_INTERVAL = 0.1
OUTPUT_LINES = 15


def intervals(fixed: float | None) -> Iterator[float]:
    """Pauses between attempts: the configured one, or tight at first and backing off."""
    if fixed is not None:
        while True:
            yield fixed
    pause = FIRST_INTERVAL
    while True:
        yield pause
        pause = min(pause * 2, MAX_BACKOFF_INTERVAL)


def log_tail(engine: Engine, container: str, redact: Callable[[str], str]) -> str:
    try:
        return redact(engine.logs(container, tail=LOG_TAIL))
    except Exception as exc:  # the log is a courtesy; never hide the real error behind it
        return f"(log unavailable: {exc})"


def exited_error(
    engine: Engine, spec: ServerSpec, container: str, redact: Callable[[str], str]
) -> ServerExited:
    state = engine.inspect(container).get("State") or {}
    return ServerExited(
        spec.name, int(state.get("ExitCode", -1)), log_tail(engine, container, redact)
    )


def check_running(
    engine: Engine,
    spec: ServerSpec,
    container: str,
    inspect: dict[str, object],
    redact: Callable[[str], str],
) -> None:
    state = inspect.get("State")
    if isinstance(state, dict) and not state.get("Running", False):
        raise exited_error(engine, spec, container, redact)


def wait_post_startup(
    engine: Engine,
    spec: ServerSpec,
    check: PostStartup,
    container: str,
    deadline: float,
    redact: Callable[[str], str],
) -> int:
    """Exec ``check.command`` until it exits 0; returns the number of attempts."""
    pauses = intervals(check.interval)
    attempt = 0
    while True:
        attempt += 1
        code, output = engine.exec(container, check.command)
        if code is None:
            raise exited_error(engine, spec, container, redact)
        if code == 0:
            return attempt
        pause = next(pauses)
        out_of_retries = check.retries is not None and attempt >= check.retries
        if out_of_retries or time.monotonic() + pause > deadline:
            why = f"after {attempt} attempts" if out_of_retries else f"within {spec.timeout:g}s"
            text = redact(output.decode("utf-8", "replace").strip())
            raise NotReady(
                spec.name,
                f"post_startup {list(check.command)} did not succeed {why} (last exit code {code})",
                log_tail(engine, container, redact),
                output="\n".join(text.splitlines()[-OUTPUT_LINES:]),
            )
        time.sleep(pause)
