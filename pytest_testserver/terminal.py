"""Where the run's lines go: the terminal, outside of any test's captured output, and the relay
that brings an xdist worker's lines to the controller's terminal.

Nothing here knows pytest: the plugin gives ``Progress`` how to write a line and how to warn
(pytest's terminal reporter, capture turned off), and execnet's channels are used as objects
with ``send`` and ``setcallback``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

Event = Callable[[str, str], None]  # (kind, text): what the pool reports as it goes


def shown_kinds(verbosity: int) -> tuple[str, ...]:
    """-q: warnings only; default: engine, build steps, progress and heartbeats (pulls, build
    contexts, long steps) and ready lines; -v: the build output and every fresh container too."""
    if verbosity < 0:
        return ("warning",)
    default = ("warning", "engine", "build-step", "progress", "heartbeat", "ready")
    return (*default, "build-output", "instance", "digest") if verbosity > 0 else default


class Progress:
    """Engine, build and ready lines on the terminal, outside of any test's captured output.

    A line from a server started in the background while a test runs waits for the main
    thread (the end of that test, or a test waiting for a server): turning capture off from
    another thread would let the running test's output through.

    ``write(line)`` puts one line on the terminal (capture off); ``warn(text)`` tells a warning
    the user must see, whatever the verbosity.
    """

    def __init__(
        self, verbosity: int, *, write: Callable[[str], None], warn: Callable[[str], None]
    ) -> None:
        self._write_line = write
        self._warn = warn
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str]] = []
        self._waiting = 0  # the main thread waits for servers: any thread may write
        self._shown = shown_kinds(verbosity)

    def __call__(self, kind: str, text: str) -> None:
        if kind not in self._shown:
            return
        with self._lock:
            if not self._waiting and threading.current_thread() is not threading.main_thread():
                if kind == "heartbeat":
                    # Kept while a test runs: only the newest of a server's heartbeats is news.
                    server = text.partition(": ")[0]
                    self._pending = [
                        (k, t)
                        for k, t in self._pending
                        if k != "heartbeat" or t.partition(": ")[0] != server
                    ]
                self._pending.append((kind, text))
                return
        self._write(kind, text)

    def relay(self, worker: str, kind: str, text: str) -> None:
        """A line from an xdist worker (already filtered by the worker's verbosity, the same
        as ours), written now and marked with the worker's id."""
        if kind in self._shown:
            self._write(kind, text, prefix=f"[{worker}] ")

    def _write(self, kind: str, text: str, prefix: str = "") -> None:
        if kind == "warning":
            self._warn(text)
            return
        with self._lock:
            self._write_line(f"{prefix}testserver: {text}")

    def flush(self) -> None:
        """Write the lines kept from background starts (from the main thread)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for kind, text in pending:
            self._write(kind, text)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """The main thread waits for servers: lines are written as they come."""
        self.flush()
        with self._lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1


def relay_from(progress: Progress, worker: str, channel: Any) -> Any:
    """``channel`` (a new channel of the worker's own execnet gateway) brings the worker's
    progress lines to ``progress``; returned, to be sent to the worker inside ``workerinput``.

    xdist sends a worker's reports only when a test is done and its other output at the end,
    so a build under xdist would be silent; execnet can send a channel inside ``workerinput``,
    and the worker writes (kind, text) pairs on it as they come. The callback runs in execnet's
    receiver thread, and the controller runs no test whose capture a line could break, so it
    writes at once.
    """

    def on_message(message: object) -> None:
        if isinstance(message, (tuple, list)) and len(message) == 2:
            kind, text = message
            progress.relay(worker, str(kind), str(text))

    channel.setcallback(on_message, endmarker=None)
    return channel


def worker_events(channel: Any, verbosity: int) -> Event:
    """A worker's terminal is not shown: its warnings go to its stderr, which xdist relays;
    its progress lines go to the controller on the channel ``relay_from`` set up (if any)."""
    shown = shown_kinds(verbosity)

    def on_event(kind: str, text: str) -> None:
        if kind == "warning":
            print(f"testserver: warning: {text}", file=sys.stderr)
        elif channel is not None and kind in shown:
            with contextlib.suppress(Exception):  # the controller has gone: nobody to tell
                channel.send((kind, text))

    return on_event
