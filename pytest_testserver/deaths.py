"""Noticing that a server died during the run, from the engine's own event stream.

One background connection per process reads the ``die`` events of the run's containers as they
happen, so a test's setup learns of a dead server with a dict lookup, not an extra engine request
per test. When the stream itself ends unexpectedly (the engine stopped or restarted, the
connection dropped), nothing it would have said can be trusted: every container is then checked
with the engine at its next use, and a death is told as "the engine stopped or restarted".
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .identity import LABEL_RUN

if TYPE_CHECKING:
    from .engine import Engine, LogStream


SINCE_MARGIN = 30.0


@dataclass(frozen=True)
class Death:
    container: str
    at: float  # time.time() when the engine said so
    exit_code: int | None


class DeathWatch:
    """The run's container deaths as the engine reports them (started once, closed at the end)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._lock = threading.Lock()
        self._deaths: dict[str, Death] = {}
        self._stream: LogStream | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.lost_at: float | None = None  # when the stream ended unexpectedly (None: it runs)

    def start(self, engine: Engine) -> None:
        """Open the event stream in the background: never on a server's start path."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            # From a little before now: a death between this call and the stream's opening is
            # told too, and an engine whose clock is a little behind ours misses nothing.
            since = time.time() - SINCE_MARGIN
            self._thread = threading.Thread(
                target=self._run, args=(engine, since), name="testserver-deaths", daemon=True
            )
        self._thread.start()

    def _run(self, engine: Engine, since: float) -> None:
        try:
            stream = engine.container_events({LABEL_RUN: self.run_id}, since)
        except Exception:
            self._lost()
            return
        with self._lock:
            if self._closed:
                close_quietly(stream)
                return
            self._stream = stream
        # The engine went away, or close() cut the stream: _lost tells them apart.
        try:
            with contextlib.suppress(Exception):
                for event in stream:
                    self._record(event)
        finally:
            close_quietly(stream)
            self._lost()

    def _record(self, event: Any) -> None:
        if not isinstance(event, dict) or event.get("Action", event.get("status")) != "die":
            return
        actor = event.get("Actor") or {}
        container = str(actor.get("ID") or event.get("id") or "")
        if not container:
            return
        code = (actor.get("Attributes") or {}).get("exitCode")
        exit_code = int(code) if isinstance(code, str) and code.lstrip("-").isdigit() else None
        with self._lock:
            self._deaths[container] = Death(container, time.time(), exit_code)

    def _lost(self) -> None:
        with self._lock:
            if not self._closed and self.lost_at is None:
                self.lost_at = time.time()

    def died(self, container: str) -> bool | None:
        """True when the engine said ``container`` died; None when nobody can tell without
        asking the engine (the stream ended, or never started); False when it runs."""
        with self._lock:
            if container in self._deaths:
                return True
            if self.lost_at is not None or self._thread is None:
                return None
            return False

    def forget(self, container: str) -> None:
        with self._lock:
            self._deaths.pop(container, None)

    def engine_lost(self) -> str:
        """What to add to a death's description when the stream ended: "" while it runs."""
        with self._lock:
            lost = self.lost_at
        if lost is None:
            return ""
        clock = time.strftime("%H:%M:%S", time.gmtime(lost))
        return (
            f"the engine stopped, restarted or dropped its connection during the run (its "
            f"event stream ended at {clock} UTC)"
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            close_quietly(stream)


def close_quietly(stream: LogStream) -> None:
    with contextlib.suppress(Exception):
        stream.close()
