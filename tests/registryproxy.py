"""An HTTP proxy in front of a registry that fails on purpose, then passes everything through.

Run as a process of its own (started and stopped by pid), serving until SIGTERM::

    python tests/registryproxy.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT \
        [--fail 503 --fail 503] [--limit-for SECONDS] [--rate BYTES_PER_S] --count FILE

- ``--fail S`` (repeatable): the engine's next pull attempt of a manifest (its HEAD, and the GET
  it falls back to for the same path) is answered with status S; a 429 has Docker Hub's body.
- ``--limit-for T``: every manifest request within T seconds of the first is answered 429 with
  the seconds left as ``Retry-After`` (a rate limit that ends).
- ``--rate R``: blobs are sent at R bytes per second each (a pull that takes a while).
- ``--stall-blobs``: a blob is never answered (a registry that stalls mid-pull).

Everything else is forwarded to the upstream registry as is. The plugin's own ``HEAD`` asking
when to come back (its User-Agent starts with ``pytest-testserver``) sees the rate limit but
takes no ``--fail`` and is not counted as a pull. ``--count`` names a file rewritten (whole)
after each manifest request: failed, forwarded, pulls (HEADs of a tag: one per pull attempt of
the engine's), the request lines and the plugin's probes.

Only the standard library is used, so the file runs from anywhere.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

MANIFEST = re.compile(r"^/v2/.+/manifests/[^/]+$")
# What Docker Hub answers a pull over its limit (the engine shows code and message).
RATE_LIMITED = {
    "code": "TOOMANYREQUESTS",
    "message": "You have reached your pull rate limit. You may increase the limit by "
    "authenticating and upgrading: https://www.docker.com/increase-rate-limit",
}
ERROR_BODY = {429: json.dumps({"errors": [RATE_LIMITED]}).encode()}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class State:
    def __init__(
        self,
        fails: list[int],
        retry_after: str,
        count: Path | None,
        limit_for: float,
        rate: float,
        stall_blobs: bool = False,
    ) -> None:
        self.rate = rate
        self.stall_blobs = stall_blobs
        self.stalled = threading.Event()
        self.limit_for = limit_for
        self.limit_until: float | None = None
        self.last_failed: tuple[str, int | None] | None = None
        self.pulls = 0
        self.probes: list[str] = []
        self.fails = fails
        self.retry_after = retry_after
        self.count = count
        self.failed = 0
        self.forwarded = 0
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def probe(self, method: str, path: str) -> int | None:
        """The plugin asking when to come back (its own HEAD): answered as the rate limit says,
        never counted as a pull, never taking a --fail."""
        with self.lock:
            self.probes.append(f"{method} {path}")
            self._write()
            now = time.monotonic()
            if self.limit_until is not None and now < self.limit_until:
                self.retry_after = str(max(1, math.ceil(self.limit_until - now)))
                return 429
            return None

    def manifest_request(self, method: str, path: str) -> int | None:
        """The status to fail this manifest request with, or None to forward it.

        The engine asks HEAD first and, when that fails, GET for the same path: one ``--fail``
        fails both, one attempt of the engine's. Within ``--limit-for`` seconds of the first
        request, every one is answered 429 with the seconds left as ``Retry-After``.
        """
        with self.lock:
            self.lines.append(f"{method} {path}")
            now = time.monotonic()
            if self.limit_until is None and self.limit_for:
                self.limit_until = now + self.limit_for
            if self.limit_until is not None and now < self.limit_until:
                status: int | None = 429
                self.retry_after = str(max(1, math.ceil(self.limit_until - now)))
            elif method == "GET" and self.last_failed and self.last_failed[0] == path:
                status = self.last_failed[1]
                self.last_failed = None
            elif method == "HEAD" and self.fails:
                status = self.fails.pop(0)
                self.last_failed = (path, status)
            else:
                status = None
            if method == "HEAD" and not path.split("/manifests/")[1].startswith("sha256:"):
                self.pulls += 1
            if status is None:
                self.forwarded += 1
            else:
                self.failed += 1
            self._write()
            return status

    def _write(self) -> None:
        if self.count is None:
            return
        data = {
            "failed": self.failed,
            "forwarded": self.forwarded,
            "pulls": self.pulls,  # HEAD of a tag: one per pull attempt of the engine's
            "lines": self.lines,
            "probes": self.probes,
        }
        tmp = self.count.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.count)


def handler(state: State, upstream: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _relay(self) -> None:
            path = self.path.split("?", 1)[0]
            if MANIFEST.match(path):
                probe = self.headers.get("User-Agent", "").startswith("pytest-testserver")
                status = (
                    state.probe(self.command, path)
                    if probe
                    else state.manifest_request(self.command, path)
                )
                if status is not None:
                    body = ERROR_BODY.get(status, b"")
                    self.send_response(status)
                    if status == 429 and state.retry_after:
                        self.send_header("Retry-After", state.retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
            if state.stall_blobs and "/blobs/" in path and self.command == "GET":
                state.stalled.wait()  # never answered, until the proxy stops
                return
            length = int(self.headers.get("Content-Length") or 0)
            body_in = self.rfile.read(length) if length else None
            host, port = upstream.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():  # every Accept header, not the last one
                if key.lower() not in HOP_BY_HOP:
                    conn.putheader(key, value)
            conn.endheaders(body_in)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self._send(data, slow="/blobs/" in path and state.rate > 0)
            conn.close()

        def _send(self, data: bytes, *, slow: bool) -> None:
            """The body; a blob at ``--rate`` bytes per second (a pull that takes a while)."""
            if not slow:
                self.wfile.write(data)
                return
            step = 65536
            began = time.monotonic()
            for start in range(0, len(data), step):
                self.wfile.write(data[start : start + step])
                due = began + (start + step) / state.rate
                time.sleep(max(0.0, due - time.monotonic()))

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--fail", type=int, action="append", default=[])
    parser.add_argument("--retry-after", default="")
    parser.add_argument("--count", type=Path)
    parser.add_argument("--limit-for", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=0.0)  # bytes per second, per blob
    parser.add_argument("--stall-blobs", action="store_true")  # blobs are never answered
    args = parser.parse_args(argv)
    state = State(
        list(args.fail), args.retry_after, args.count, args.limit_for, args.rate, args.stall_blobs
    )
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), handler(state, args.upstream))
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        state.stalled.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    state._write()
    print("ready", flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
