"""Self-tests of tests/stallproxy.py against the real engine: what passes, what is held."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from tests.stallproxy import StallProxy

IMAGE = "busybox:stable"
LABELS = {"stallproxy-selftest": "1"}
INSPECT = r"^GET /v[\d.]+/containers/[^/]+/json"
# What requests raises for a read timeout: ReadTimeout, or now and then a ConnectionError.
TIMED_OUT = (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)
STALLPROXY = Path(__file__).with_name("stallproxy.py")


@pytest.fixture
def proxy() -> Iterator[StallProxy]:
    with StallProxy() as proxy:
        yield proxy
    assert not proxy.errors


@pytest.fixture
def api(proxy: StallProxy) -> Iterator[Any]:
    client = docker.APIClient(base_url=proxy.docker_host, timeout=10)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def container(api: Any) -> Iterator[str]:
    """A running busybox, made through the proxy and removed afterwards."""
    cid = api.create_container(IMAGE, command=["sleep", "30"], labels=LABELS)["Id"]
    try:
        api.start(cid)
        yield cid
    finally:
        api.remove_container(cid, force=True)


def unix_connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    return sock


def receive_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_version_passes_through(proxy: StallProxy, api: Any) -> None:
    assert api.version()["ApiVersion"]
    assert api.ping() is True
    assert any(line.endswith("/_ping") for line in proxy.seen)
    assert proxy.stalled == []


def test_container_lifecycle_passes_through(proxy: StallProxy, api: Any) -> None:
    cid = api.create_container(IMAGE, command=["sleep", "30"], labels=LABELS)["Id"]
    try:
        api.start(cid)
        state = api.inspect_container(cid)["State"]
        assert state["Running"] is True
        assert api.inspect_container(cid)["Config"]["Labels"] == LABELS  # a reused connection
    finally:
        api.remove_container(cid, force=True)
    with pytest.raises(docker.errors.NotFound):
        api.inspect_container(cid)
    methods = [line.split(" ")[0] for line in proxy.seen]
    assert {"POST", "GET", "DELETE"} <= set(methods)


def test_stalled_request_is_never_answered(proxy: StallProxy) -> None:
    proxy.stall(INSPECT)
    impatient = docker.APIClient(base_url=proxy.docker_host, timeout=2)
    try:
        started = time.monotonic()
        with pytest.raises(TIMED_OUT) as caught:
            impatient.inspect_container("stallproxy-no-such-container")
        elapsed = time.monotonic() - started
        assert isinstance(caught.value, requests.exceptions.ReadTimeout) or "Read timed out" in str(
            caught.value
        )
        assert 1.5 < elapsed < 4, elapsed
        assert len(proxy.stalled) == 1
        assert proxy.stalled[0].startswith("GET /v")
        assert proxy.stalled[0].endswith("/containers/stallproxy-no-such-container/json")
        # Everything else still answers, on a fresh client and on this one.
        fresh = docker.APIClient(base_url=proxy.docker_host, timeout=5)
        try:
            assert fresh.version()["ApiVersion"]
        finally:
            fresh.close()
        assert impatient.ping() is True
        proxy.release()
        with pytest.raises(docker.errors.NotFound):
            impatient.inspect_container("stallproxy-no-such-container")
        assert len(proxy.stalled) == 1
    finally:
        impatient.close()


def test_request_boundaries_on_one_connection(proxy: StallProxy) -> None:
    """A chunked body (with an extension and a trailer), a Content-Length body and a bodyless
    request, sent back to back on one connection: each is found, forwarded and answered."""
    chunked = (
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"Im\r\n8\r\nage": 1}\r\n0\r\nX-Trailer: yes\r\n\r\n'
    )
    body = b'{"Image": 2}'
    sized = (
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    ping = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
    with unix_connect(proxy.path) as sock:
        sock.sendall(chunked + sized)
        sock.sendall(ping[:10])
        time.sleep(0.05)
        sock.sendall(ping[10:])
        answers = receive_until(sock, b"\r\n\r\nOK")
    # The engine got each body whole: it decoded the JSON, then refused the number as Image.
    assert answers.count(b"cannot unmarshal number") == 2, answers
    assert answers.count(b"HTTP/1.1 ") == 3, answers
    assert proxy.connections == 1
    assert proxy.seen == [
        "POST /v1.41/containers/create",
        "POST /v1.41/containers/create",
        "GET /_ping",
    ]


def test_held_connection_reads_on_but_stays_silent(proxy: StallProxy) -> None:
    proxy.stall(r"^POST .*/containers/create")
    body = b'{"Image": "busybox:stable"}'
    with unix_connect(proxy.path) as sock:
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        assert receive_until(sock, b"\r\n\r\nOK").startswith(b"HTTP/1.1 200 ")
        sock.sendall(
            b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        assert proxy.wait_stalled(1, timeout=5)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)
    assert proxy.stalled == ["POST /v1.41/containers/create"]
    assert proxy.seen == ["GET /_ping", "POST /v1.41/containers/create"]


def dockerfile_tar() -> bytes:
    dockerfile = b"FROM busybox:stable\nRUN true\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    return buffer.getvalue()


@pytest.mark.parametrize("body", ["content-length", "chunked"])
def test_build_streams_to_the_end(proxy: StallProxy, api: Any, body: str) -> None:
    context = dockerfile_tar()
    # A generator has no length: requests sends it with Transfer-Encoding: chunked.
    fileobj: Any = (
        io.BytesIO(context) if body == "content-length" else iter([context[:700], context[700:]])
    )
    output = list(
        api.build(fileobj=fileobj, custom_context=True, decode=True, rm=True, labels=LABELS)
    )
    assert not [m for m in output if "error" in m or "errorDetail" in m], output
    assert any("Successfully built" in m.get("stream", "") for m in output), output
    assert api.version()["ApiVersion"]
    assert any(line.startswith("POST /v1.41/build?") for line in proxy.seen)


def test_logs_follow_streams(api: Any) -> None:
    script = "sleep 0.4; echo one; sleep 0.6; echo two"
    cid = api.create_container(IMAGE, command=["sh", "-c", script], labels=LABELS)["Id"]
    try:
        api.start(cid)
        arrivals: list[tuple[float, bytes]] = []
        for chunk in api.logs(cid, stream=True, follow=True):
            arrivals.append((time.monotonic(), chunk))
        assert b"".join(chunk for _, chunk in arrivals) == b"one\ntwo\n"
        assert arrivals[-1][0] - arrivals[0][0] > 0.3, "the lines came at once, not streamed"
    finally:
        api.remove_container(cid, force=True)


def test_exec_passes_through(api: Any, container: str) -> None:
    exec_id = api.exec_create(container, ["echo", "hello"])["Id"]
    assert api.exec_start(exec_id) == b"hello\n"
    assert api.exec_inspect(exec_id)["ExitCode"] == 0


def test_exec_stdin_through_the_hijacked_connection(api: Any, container: str) -> None:
    exec_id = api.exec_create(container, ["cat"], stdin=True)["Id"]
    wrapped = api.exec_start(exec_id, socket=True)
    raw: socket.socket = wrapped._sock
    try:
        raw.settimeout(5)
        raw.sendall(b"ping through the proxy\n")
        raw.shutdown(socket.SHUT_WR)  # cat sees the end of its input and exits
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    finally:
        wrapped.close()
        raw.close()
    # Without a tty the output is multiplexed: an 8-byte frame header, then the bytes.
    assert received[:1] == b"\x01"
    assert received[8:] == b"ping through the proxy\n"


def test_close_is_quick_and_leaves_nothing(proxy: StallProxy) -> None:
    proxy.stall(INSPECT)
    held = unix_connect(proxy.path)
    idle = unix_connect(proxy.path)
    try:
        held.sendall(b"GET /v1.41/containers/x/json HTTP/1.1\r\nHost: docker\r\n\r\n")
        assert proxy.wait_stalled(1, timeout=5)
        path, folder = proxy.path, os.path.dirname(proxy.path)
        started = time.monotonic()
        proxy.close()
        assert time.monotonic() - started < 1
        assert held.recv(1) == b""
        assert idle.recv(1) == b""
    finally:
        held.close()
        idle.close()
    assert not os.path.exists(path)
    assert not os.path.exists(folder)
    left = [t.name for t in threading.enumerate() if t.name.startswith("stallproxy-")]
    assert not left
    proxy.close()  # twice is fine


def test_runs_as_a_process_until_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "proxy.sock"
    process = subprocess.Popen(
        [sys.executable, str(STALLPROXY), "--listen", str(path), "--stall", INSPECT],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the proxy never listened"
            time.sleep(0.02)
        client = docker.APIClient(base_url=f"unix://{path}", timeout=1)
        try:
            assert client.version()["ApiVersion"]
            with pytest.raises(TIMED_OUT):
                client.inspect_container("stallproxy-no-such-container")
        finally:
            client.close()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
        assert process.returncode == 0, stderr
        assert b"Traceback" not in stderr
        assert not path.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
