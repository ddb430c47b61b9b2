"""Progress of slow image work, as plain text: pulls, build contexts, long build steps.

Pure pieces (no engine, no pytest): the control-character stripper every build and pull line
goes through, the aggregation of a pull's per-layer stream, and the heartbeat that speaks up
when a build step has printed nothing for a while.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

HEARTBEAT_EVERY = 5.0  # seconds without a line before a long step is named again
PULL_LINE_EVERY = 3.0  # seconds between two pull progress lines
LARGE_CONTEXT = 50_000_000  # bytes: above this a build context gets a .dockerignore hint
MB = 1_000_000


class Say(Protocol):
    """Where progress lines go; ``periodic``: a line that a later one of its kind replaces
    (a heartbeat, a pull's progress), not a one-off (a context's size, a pull's end)."""

    def __call__(self, text: str, *, periodic: bool) -> None: ...


# CSI (colours, cursor moves), OSC (window titles, hyperlinks; ended by BEL or ST), and the
# two-character escapes: what a builder's tty-minded output puts around its text.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC
    r"|\x1b[ -/]*[0-~]"  # other escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline


def strip_controls(text: str) -> str:
    """``text`` without ANSI escape sequences or other control characters.

    A carriage return inside a line is a progress bar redrawing itself: what a terminal would
    finally show is the part after the last one, so that is what stays.
    """
    text = _ANSI.sub("", text)
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p.strip()]
            line = parts[-1] if parts else ""
        lines.append(_CONTROL.sub("", line))
    return "\n".join(lines)


def megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB // 10 else f"{size / 1000:.1f} kB"


@dataclass
class Layer:
    current: int = 0
    total: int = 0
    done: bool = False
    here: bool = False  # "Already exists": nothing transferred


@dataclass
class PullProgress:
    """A pull's stream (one dict per layer event) summed into one line every few seconds."""

    ref: str
    started: float
    every: float = PULL_LINE_EVERY
    layers: dict[str, Layer] = field(default_factory=dict)
    _last_line: float | None = None

    def feed(self, chunk: Mapping[str, Any]) -> None:
        layer_id = chunk.get("id")
        status = str(chunk.get("status", ""))
        if not isinstance(layer_id, str) or not layer_id or status.startswith("Pulling from"):
            return  # "Pulling from library/x", "Digest: ...", "Status: ...": not a layer
        layer = self.layers.setdefault(layer_id, Layer())
        detail = chunk.get("progressDetail") or {}
        if status in ("Downloading", "Extracting") and isinstance(detail, Mapping):
            current, total = detail.get("current"), detail.get("total")
            # A quick download may send no "Downloading" event at all: its size comes with
            # the extraction's (the same compressed bytes).
            if isinstance(total, int) and total > 0:
                layer.total = total
            if status == "Downloading" and isinstance(current, int) and current >= 0:
                layer.current = current
            elif status == "Extracting":
                layer.current = max(layer.current, layer.total)
        elif status in ("Download complete", "Pull complete", "Already exists"):
            layer.done = True
            layer.here = layer.here or status == "Already exists"
            layer.current = max(layer.current, layer.total)

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers.values())

    @property
    def downloaded(self) -> int:
        return sum(layer.current for layer in self.layers.values())

    def line(self, now: float, *, force: bool = False) -> str | None:
        """The progress line, when the last one is ``every`` seconds old (or there was none);
        ``force``: now, whenever there are layers (what a stalled pull had got)."""
        if not self.layers:
            return None
        if not force and self._last_line is not None and now - self._last_line < self.every:
            return None
        if not force and self._last_line is None and now - self.started < self.every:
            return None  # a pull over in a moment needs no progress, only its final line
        self._last_line = now
        done = sum(1 for layer in self.layers.values() if layer.done)
        size = f"{megabytes(self.downloaded)} of {megabytes(self.total)}" if self.total else "?"
        return (
            f"pulling {self.ref}: {size}, {done}/{len(self.layers)} layers "
            f"({now - self.started:.0f} s)"
        )

    def final(self, now: float) -> str:
        """The pull's end: what was transferred (its size when the engine said it), how many
        layers, how long."""
        new = sum(1 for layer in self.layers.values() if not layer.here)
        here = len(self.layers) - new
        if new:
            size = f"{megabytes(self.total)}, " if self.total else "size not reported, "
            what = f"{size}{new} new layer{'s' if new != 1 else ''}"
        else:
            what = "no new layers"
        if here:
            what += f", {here} already here"
        return f"pulled {self.ref} ({what}) in {now - self.started:.1f} s"


class Heartbeat:
    """Names the running build step when nothing was shown for ``every`` seconds.

    ``seen(line)`` is told every line of the build; ``due(now)`` says what to show, if anything.
    A thread (``start``/``stop``) asks ``due`` while the build's stream is blocked on a step that
    prints nothing.
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        every: float = HEARTBEAT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._step = ""
        self._step_started = self._last_shown = clock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def seen(self, line: str, *, step: str | None = None, shown: bool = False) -> None:
        """A build line; ``step`` when it starts a step (its instruction), ``shown`` when the
        user saw it (a step line at the default verbosity)."""
        now = self._clock()
        with self._lock:
            if step is not None:
                self._step, self._step_started = step, now
            if shown or step is not None:
                self._last_shown = now

    def due(self, now: float) -> str | None:
        with self._lock:
            if not self._step or now - self._last_shown < self._every:
                return None
            self._last_shown = now
            return f"building, {self._step} ({now - self._step_started:.0f} s)"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="testserver-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        # Woken ten times per period: a heartbeat is late by at most a tenth of it.
        while not self._stopped.wait(self._every / 10):
            text = self.due(self._clock())
            if text is not None:
                with contextlib.suppress(Exception):  # a progress line never breaks a build
                    self._emit(text)
