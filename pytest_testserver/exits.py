"""How a server's container stopped, in words: before it was ready, or during the run.

The exit code and the signal behind it, the OOM killer, when it stopped, the engine's own error,
an engine that went away meanwhile, and the last lines of its log, secrets masked. Readiness
uses these when a server dies while it gets ready; the pool, the handle and the xdist sharing
when a server that was ready is found dead.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .config import ServerSpec
from .errors import EngineError, ServerDied, ServerError, ServerExited, StartError

if TYPE_CHECKING:
    from .engine import Engine

LOG_TAIL = 30


def log_tail(engine: Engine, container: str, redact: Callable[[str], str]) -> str:
    try:
        return redact(engine.logs(container, tail=LOG_TAIL))
    except Exception as exc:  # the log is a courtesy; never hide the real error behind it
        return f"(log unavailable: {exc})"


def container_state(engine: Engine, container: str) -> dict[str, Any] | None:
    """The container's ``State``; None when it is gone altogether (404)."""
    try:
        state: dict[str, Any] = engine.inspect(container).get("State") or {}
    except EngineError as exc:
        if exc.status == 404:
            return None
        raise
    return state


def exited_error(
    engine: Engine,
    spec: ServerSpec,
    container: str,
    redact: Callable[[str], str],
    state: dict[str, Any] | None = None,
) -> ServerExited:
    """The error for a container that stopped (or went); ``state``: its State, if read already."""
    state = state if state is not None else container_state(engine, container)
    if state is None:
        return ServerExited.vanished(spec.name)
    code = int(state.get("ExitCode", -1))
    tail = log_tail(engine, container, redact)
    return ServerExited(spec.name, code, tail, why=describe_exit(spec, state, redact, tail))


def describe_exit(
    spec: ServerSpec, state: Mapping[str, Any], redact: Callable[[str], str], tail: str
) -> str:
    """Why the container stopped, as far as the engine can tell: the signal's name, the OOM
    killer, the engine's own error, an empty log; and a hint where one fits."""
    text = how_it_stopped(state) + " before it was ready" + engine_said(state, redact, tail)
    signal_name = signal_of(int(state.get("ExitCode", -1)))
    if signal_name and signal_name != "SIGKILL" and not spec.init:
        # A process not written to be PID 1 gets no default signal handling and no reaper there.
        text += "; a server that is not made to run as PID 1 can die so: try init: true"
    return text


def describe_death(
    state: Mapping[str, Any], redact: Callable[[str], str], tail: str, engine_lost: str = ""
) -> str:
    """How a server that was ready died: exit code, signal, the OOM killer, when, the engine's
    own error, and whether the engine stopped or restarted meanwhile (``engine_lost``)."""
    finished = finished_at(state)
    text = how_it_stopped(state) + (f" at {finished}" if finished else "")
    return text + engine_said(state, redact, tail, engine_lost)


def how_it_stopped(state: Mapping[str, Any]) -> str:
    """The exit code, and the signal or the OOM killer behind it."""
    code = int(state.get("ExitCode", -1))
    text = f"the container exited with code {code}"
    signal_name = signal_of(code)
    if state.get("OOMKilled"):
        text += " (killed for lack of memory: OOMKilled)"
    elif signal_name:
        text += f" (killed by {signal_name})"
    return text


def engine_said(
    state: Mapping[str, Any], redact: Callable[[str], str], tail: str, engine_lost: str = ""
) -> str:
    """What follows: the engine's own error, an engine that went away, an empty log."""
    text = ""
    error = str(state.get("Error") or "").strip()
    if error:
        text += f"; the engine says: {redact(error)}"
    if engine_lost:
        text += f"; {engine_lost}"
    if not tail.strip():
        text += "; the server printed nothing"
    return text


def finished_at(state: Mapping[str, Any]) -> str:
    """When the container stopped, as the engine says (UTC, to the second); "" if unknown."""
    stamp = str(state.get("FinishedAt") or "")
    if not stamp or stamp.startswith("0001-"):
        return ""
    clock = stamp.partition("T")[2]
    return f"{clock[:8]} UTC" if clock else ""


def died_error(
    engine: Engine,
    server: str,
    container: str,
    redact: Callable[[str], str],
    engine_lost: str = "",
) -> ServerDied:
    """The error for a server found dead during the run (its container stopped or gone)."""
    try:
        state = container_state(engine, container)
    except EngineError as exc:
        return ServerDied(server, f"the engine cannot say how: {redact(str(exc))}")
    if state is None:
        return ServerDied(
            server,
            "its container was removed (docker rm, a prune, or another run's sweep)"
            + (f"; {engine_lost}" if engine_lost else ""),
        )
    if state.get("Running", False):
        return ServerDied(server, "the engine says it is running, but it did not answer")
    tail = log_tail(engine, container, redact)
    return ServerDied(server, describe_death(state, redact, tail, engine_lost), tail)


def signal_of(code: int) -> str | None:
    """``SIGSEGV`` for 139: a shell's (and the engine's) 128 + signal number."""
    if not 128 < code < 128 + 65:
        return None
    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return None


def engine_failure(
    engine: Engine,
    spec: ServerSpec,
    container: str,
    exc: EngineError,
    redact: Callable[[str], str],
) -> ServerError:
    """An engine call failed while the server got ready: say what became of the container."""
    try:
        state = container_state(engine, container)
    except EngineError:
        state = {"Running": True}  # the engine cannot say either: report the failure itself
    if state is None:
        return ServerExited.vanished(spec.name)
    if not state.get("Running", False):
        return exited_error(engine, spec, container, redact, state)
    return StartError(spec.name, f"the engine failed while it got ready: {redact(str(exc))}")


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
