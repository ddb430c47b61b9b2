"""A unix-socket proxy in front of the Docker engine that can stop answering, on demand.

Integration tests use it to simulate an engine that hangs: every request whose request line
(``"METHOD /path?query"``) matches a stalled pattern is read, never forwarded and never answered,
and its connection stays open and silent until the client gives up. Everything else passes through
byte for byte, request bodies (``Content-Length`` or chunked) and streamed or hijacked responses
(logs that follow, build output, exec and attach) included.

In process::

    with StallProxy() as proxy:
        proxy.stall(r"^GET /v[\\d.]+/containers/[^/]+/json")
        run_something(env={"DOCKER_HOST": proxy.docker_host})
        assert proxy.stalled

As a process of its own, serving until SIGTERM (or SIGINT); the socket file appears only once it
accepts connections, and is gone once it has stopped::

    python tests/stallproxy.py --listen PATH [--stall REGEX ...] [--upstream SOCK]

Only the standard library is used, so the file runs from anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType

DEFAULT_UPSTREAM = "/var/run/docker.sock"

_CHUNK = 65536
_MAX_HEAD = 1 << 20  # a request head longer than this is not HTTP as docker-py speaks it
_MAX_LINE = 1 << 16  # a chunk-size or trailer line
_ACCEPT_POLL = 0.05  # how often the accept loop looks whether close() was called
_CLOSE_BUDGET = 0.8  # close() gives the connection threads this long to end
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_names = itertools.count(1)


class _Unparsable(Exception):
    """The client sent something whose end cannot be found; ``pending`` was read, not sent."""

    def __init__(self, pending: bytes = b"") -> None:
        super().__init__()
        self.pending = pending


class _ClientEOF(Exception):
    """The client closed its side in the middle of a request."""


class _Reader:
    """Buffered reads from the client, enough to find where each request ends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def read_until(self, delim: bytes, limit: int) -> bytes | None:
        """The bytes up to and including ``delim``; None at end of input or past ``limit``
        (what was read then stays in ``buf``)."""
        start = 0
        while True:
            found = self.buf.find(delim, start)
            if found >= 0:
                end = found + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                return None
            start = max(0, len(self.buf) - len(delim) + 1)
            data = self.sock.recv(_CHUNK)
            if not data:
                return None
            self.buf += data

    def take(self, most: int) -> bytes:
        """Up to ``most`` bytes, from the buffer first; b"" at end of input."""
        if self.buf:
            out = bytes(self.buf[:most])
            del self.buf[:most]
            return out
        return self.sock.recv(min(most, _CHUNK))

    def copy(self, count: int, sink: socket.socket | None) -> None:
        """Pass exactly ``count`` bytes on to ``sink`` (or drop them when it is None)."""
        while count:
            data = self.take(count)
            if not data:
                raise _ClientEOF
            if sink is not None:
                sink.sendall(data)
            count -= len(data)

    def line(self, sink: socket.socket | None) -> bytes:
        """One CRLF-terminated line, passed on to ``sink``."""
        line = self.read_until(b"\r\n", _MAX_LINE)
        if line is None:
            if not self.buf:
                raise _ClientEOF
            raise _Unparsable(bytes(self.buf))
        if sink is not None:
            sink.sendall(line)
        return line


class _Request:
    """What the proxy needs from one request head."""

    def __init__(self, line: str, headers: dict[str, str]) -> None:
        self.line = line
        self.length: int | None = 0  # the body's length, None for chunked
        self.known = True  # False: where the body ends cannot be told
        method = line.split(" ", 1)[0]
        self.upgrade = "upgrade" in headers or method == "CONNECT"
        encoding = headers.get("transfer-encoding")
        if encoding is not None:
            codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
            self.length = None
            self.known = bool(codings) and codings[-1] == "chunked"
        elif "content-length" in headers:
            values = {v.strip() for v in headers["content-length"].split(",")}
            value = values.pop() if len(values) == 1 else ""
            self.known = value.isdigit()
            self.length = int(value) if self.known else 0

    @classmethod
    def parse(cls, head: bytes) -> _Request | None:
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0] or not parts[2].startswith("HTTP/"):
            return None
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, colon, value = raw.partition(":")
            if not colon or not name or name[0] in " \t":
                continue
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return cls(f"{parts[0]} {parts[1]}", headers)


def _shutdown(sock: socket.socket | None, how: int = socket.SHUT_RDWR) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(how)


class _Connection:
    """One client connection and the engine connection it is relayed to."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.held = False
        self.threads: list[threading.Thread] = []
        self.running = 0

    def shutdown(self) -> None:
        _shutdown(self.client)
        _shutdown(self.upstream)

    def close(self) -> None:
        self.client.close()
        if self.upstream is not None:
            self.upstream.close()


class StallProxy:
    """A proxy for the engine's socket that holds, unanswered, the requests it is told to stall.

    ``stall()`` may be called several times: a request is held when any pattern given since the
    last ``release()`` matches its request line.
    """

    def __init__(self, upstream: str = DEFAULT_UPSTREAM, path: str | None = None) -> None:
        self._upstream = upstream
        self._tmpdir: str | None = None
        if path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="stallproxy-")
            path = os.path.join(self._tmpdir, "proxy.sock")
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._patterns: list[re.Pattern[str]] = []
        self._seen: list[str] = []
        self._stalled: list[str] = []
        self._connections: set[_Connection] = set()
        self._accepted = 0
        self._accept_thread: threading.Thread | None = None
        self._inode: int | None = None
        self._closed = False
        self.errors: list[BaseException] = []  # anything but OSError that a thread ran into

    # -- the API tests use ---------------------------------------------------------------------

    @property
    def docker_host(self) -> str:
        """The proxy's address, for DOCKER_HOST or ``docker.APIClient(base_url=...)``."""
        return f"unix://{self.path}"

    def stall(self, pattern: str) -> None:
        """Hold every later request whose "METHOD /path?query" matches ``pattern`` (re.search)."""
        compiled = re.compile(pattern)
        with self._lock:
            self._patterns.append(compiled)

    def release(self) -> None:
        """Forward every later request again; requests already held stay held."""
        with self._lock:
            self._patterns.clear()

    @property
    def stalled(self) -> list[str]:
        """The request lines held so far."""
        with self._lock:
            return list(self._stalled)

    @property
    def seen(self) -> list[str]:
        """Every request line seen so far, forwarded or held."""
        with self._lock:
            return list(self._seen)

    @property
    def connections(self) -> int:
        """How many client connections have been accepted so far."""
        with self._lock:
            return self._accepted

    def wait_stalled(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` requests are held; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._stalled) >= count, timeout)

    def start(self) -> StallProxy:
        """Listen and serve in daemon threads. The socket file appears once it accepts."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this StallProxy is closed")
            if self._accept_thread is not None:
                return self
            listener = self._listen()
            self._accept_thread = threading.Thread(
                target=self._accept_loop, args=(listener,), name="stallproxy-accept", daemon=True
            )
            self._accept_thread.start()
        return self

    def close(self) -> None:
        """Stop listening, end every connection and remove the socket file (and temp dir)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = list(self._connections)
            accept_thread = self._accept_thread
        deadline = time.monotonic() + _CLOSE_BUDGET
        for connection in connections:
            connection.shutdown()
        if accept_thread is not None:
            accept_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for connection in connections:
            for thread in list(connection.threads):
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for connection in connections:
            connection.close()
        self._unlink()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> StallProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StallProxy({self._upstream!r}, {self.path!r})"

    # -- listening -----------------------------------------------------------------------------

    def _listen(self) -> socket.socket:
        """A listening socket at ``path``: bound under a temporary name, then linked into place,
        so that the path never names a socket that does not accept yet (and is never clobbered)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staging = os.path.join(os.path.dirname(self.path), f".sp{os.getpid()}-{next(_names)}")
        try:
            listener.bind(staging)
            try:
                listener.listen(128)
                os.link(staging, self.path)
            finally:
                os.unlink(staging)
            self._inode = os.stat(self.path).st_ino
        except BaseException:
            listener.close()
            raise
        listener.settimeout(_ACCEPT_POLL)
        return listener

    def _unlink(self) -> None:
        """Remove the socket file, unless something else has taken its place since."""
        try:
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    def _accept_loop(self, listener: socket.socket) -> None:
        try:
            while not self._closed:
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    time.sleep(_ACCEPT_POLL)  # out of descriptors, say: try again
                    continue
                client.settimeout(None)
                with self._lock:
                    if self._closed:
                        client.close()
                        break
                    connection = _Connection(client)
                    self._connections.add(connection)
                    self._accepted += 1
                    self._spawn(connection, self._client_side, "c2u")
        finally:
            listener.close()

    def _spawn(
        self, connection: _Connection, target: Callable[[_Connection], None], kind: str
    ) -> None:
        """Start one of a connection's threads (with ``_lock`` held)."""
        thread = threading.Thread(
            target=target,
            args=(connection,),
            name=f"stallproxy-{kind}-{self._accepted}",
            daemon=True,
        )
        connection.threads.append(thread)
        connection.running += 1
        thread.start()

    def _finished(self, connection: _Connection) -> None:
        with self._lock:
            connection.running -= 1
            last = connection.running == 0
            if last:
                self._connections.discard(connection)
        if last:
            connection.close()

    # -- client -> engine: one request at a time -------------------------------------------------

    def _client_side(self, connection: _Connection) -> None:
        clean = False
        try:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self._upstream)
            except BaseException:
                upstream.close()
                raise
            with self._lock:
                if self._closed:
                    upstream.close()
                    return
                connection.upstream = upstream
                self._spawn(connection, self._upstream_side, "u2c")
            self._relay_requests(connection, _Reader(connection.client), upstream)
            clean = True
        except OSError:
            pass
        except Exception as exc:
            self.errors.append(exc)
        finally:
            if clean and not connection.held:
                # The client is done sending; the engine may still be answering (or streaming).
                _shutdown(connection.upstream, socket.SHUT_WR)
            else:
                connection.shutdown()
            self._finished(connection)

    def _relay_requests(
        self, connection: _Connection, reader: _Reader, upstream: socket.socket
    ) -> None:
        """Forward requests until the client stops, one is held, or the bytes stop being HTTP."""
        while True:
            head = reader.read_until(b"\r\n\r\n", _MAX_HEAD)
            if head is None:
                self._pump(reader, upstream)
                return
            request = _Request.parse(head)
            if request is None:
                upstream.sendall(head)
                self._pump(reader, upstream)
                return
            held = self._admit(connection, request.line)
            sink = None if held else upstream
            if sink is not None:
                sink.sendall(head)
            try:
                self._body(reader, request, sink)
            except _ClientEOF:
                return
            except _Unparsable as exc:
                if held:
                    self._pump(reader, None)
                    return
                upstream.sendall(exc.pending)
                self._pump(reader, upstream)
                return
            if held:
                # Hold the whole connection: read what else comes and drop it, until it closes.
                self._pump(reader, None)
                return
            if request.upgrade:
                self._pump(reader, upstream)
                return

    def _admit(self, connection: _Connection, line: str) -> bool:
        with self._lock:
            self._seen.append(line)
            held = any(pattern.search(line) for pattern in self._patterns)
            if held:
                connection.held = True
                self._stalled.append(line)
                self._changed.notify_all()
            return held

    @staticmethod
    def _body(reader: _Reader, request: _Request, sink: socket.socket | None) -> None:
        if not request.known:
            raise _Unparsable
        if request.length is not None:
            reader.copy(request.length, sink)
            return
        while True:  # chunked: size line, data, CRLF ... then a 0-size chunk and trailers
            line = reader.line(sink)
            size = line[:-2].split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size):
                raise _Unparsable
            if int(size, 16) == 0:
                while reader.line(sink) != b"\r\n":
                    pass
                return
            reader.copy(int(size, 16) + 2, sink)

    @staticmethod
    def _pump(reader: _Reader, sink: socket.socket | None) -> None:
        """Pass on (or drop) everything the client sends, until it stops sending."""
        if reader.buf and sink is not None:
            sink.sendall(reader.buf)
        reader.buf.clear()
        while data := reader.sock.recv(_CHUNK):
            if sink is not None:
                sink.sendall(data)

    # -- engine -> client: plain bytes ------------------------------------------------------------

    def _upstream_side(self, connection: _Connection) -> None:
        upstream = connection.upstream
        try:
            assert upstream is not None
            while data := upstream.recv(_CHUNK):
                connection.client.sendall(data)
        except OSError:
            pass
        except Exception as exc:
            self.errors.append(exc)
        finally:
            _shutdown(upstream)
            if not connection.held:  # a held client hears nothing, not even the engine leaving
                _shutdown(connection.client)
            self._finished(connection)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--listen", required=True, help="unix socket path to listen on")
    parser.add_argument(
        "--stall", action="append", default=[], metavar="REGEX", help="hold requests matching"
    )
    parser.add_argument("--upstream", default=DEFAULT_UPSTREAM, help="the engine's socket")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    proxy = StallProxy(upstream=args.upstream, path=args.listen)
    for pattern in args.stall:
        proxy.stall(pattern)
    with proxy:
        print(f"stallproxy: listening on {proxy.docker_host}", file=sys.stderr, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
