"""The built documentation site in a real browser, for tests/test_docs.py: the site served by
``python -m http.server`` on a loopback port, and headless Chromium driven over the DevTools
protocol (a minimal WebSocket client: the standard library has none). Both are started by the
test and stopped by their pid; every wait is bounded."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WAIT = 30.0  # seconds: a server or browser start, a page load, a search


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def first_line(process: subprocess.Popen[str], pattern: str) -> re.Match[str]:
    """The first line of the process's output that matches, within WAIT seconds."""
    assert process.stdout is not None
    deadline = time.monotonic() + WAIT
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no line matching {pattern!r} within {WAIT}s: {''.join(seen)[-2000:]}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def stop_group(group: int) -> None:
    """End the browser's helpers too, and wait (bounded) until none is left."""
    deadline = time.monotonic() + WAIT
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
        while time.monotonic() < deadline:
            os.killpg(group, 0)  # ProcessLookupError once the last one is gone
            time.sleep(0.05)
        os.killpg(group, signal.SIGKILL)


@contextmanager
def served(site: Path) -> Iterator[str]:
    """The site at http://127.0.0.1:<port>/, from a port the kernel picks."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=site,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = first_line(process, r"port (\d+)").group(1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(process)


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: masked text frames out, text in."""

    def __init__(self, url: str) -> None:
        found = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        assert found, url
        host, port, path = found.groups()
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = self.sock.recv(4096)
            assert chunk, "the browser closed the DevTools connection"
            answer += chunk
        head, self.buffer = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head[:200]

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            assert chunk, "the browser closed the DevTools connection"
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self.exactly(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", self.exactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self.exactly(8))[0]
            message += self.exactly(size)
            if first & 0x80:  # FIN
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    """One page of headless Chromium, driven by DevTools commands."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # events of domains we did not enable are few: skip them
            message = json.loads(self.ws.receive())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def until(self, expression: str, what: str) -> Any:
        """Evaluates until the value is truthy, for at most WAIT seconds."""
        deadline = time.monotonic() + WAIT
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{what}: still {value!r} after {WAIT}s")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.until(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            f"loading {url}",
        )

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


@contextmanager
def browser() -> Iterator[Browser]:
    binary = chromium()
    assert binary, "no chromium on PATH (apt-get install chromium)"
    # One folder for all the browser makes: its profile, and its own $TMPDIR (it leaves a
    # SingletonSocket folder there when it is terminated rather than closed).
    home = Path(tempfile.mkdtemp(prefix="testserver-docs-chromium-"))
    scratch = home / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1280,900",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={home / 'profile'}",
            "about:blank",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its helpers (network service, crashpad) go with it
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    ws = None
    try:
        port = first_line(process, r"DevTools listening on ws://127\.0\.0\.1:(\d+)/").group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=WAIT) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        ws = WebSocket(page["webSocketDebuggerUrl"])
        yield Browser(ws)
    finally:
        if ws is not None:
            ws.close()
        stop(process)
        stop_group(process.pid)
        # Only now: a helper outliving the browser wrote its cache back into a removed profile
        # (a folder left in /tmp in 3 of 10 full-suite runs).
        shutil.rmtree(home, ignore_errors=True)
