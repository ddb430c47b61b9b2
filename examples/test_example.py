"""The example suite: run it from the repository root with ``python -m pytest examples``.

The servers are declared in testservers.yaml next to pytest.ini. Each starts the first time a test
asks for it, lives for the rest of the session, and is removed at session end.
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping

import pytest

from pytest_testserver import ServerHandle


def get(handle: ServerHandle, path: str = "/") -> tuple[int, str]:
    """GET ``path`` from the server's port 8080, as seen from the test machine."""
    connection = http.client.HTTPConnection(handle.host, handle.port(8080), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


# --- the marker and the `testserver` fixture --------------------------------------------------


@pytest.mark.testserver("web")
def test_page_is_served(testserver: ServerHandle) -> None:
    status, body = get(testserver)
    assert status == 200
    assert "Hello from a test server" in body


@pytest.mark.testserver("web")
def test_handle_api(testserver: ServerHandle) -> None:
    # Ports are published on 127.0.0.1 (ini testserver_bind_address) at ephemeral host ports;
    # `host` is 127.0.0.1 with a local engine, the engine's host with DOCKER_HOST=tcp://...
    port = testserver.port(8080)
    assert testserver.ports == {"8080/tcp": port}
    assert testserver.url(8080, "index.html") == f"http://{testserver.host}:{port}/index.html"
    assert len(testserver.container_id) == 64
    assert testserver.ip  # its address on the container network

    # exec runs an argument list inside the container (no shell): (exit code, output).
    code, output = testserver.exec(["cat", "/www/index.html"])
    assert code == 0
    assert "<h1>" in output
    code, _ = testserver.exec(["test", "-e", "/no/such/file"])
    assert code == 1

    assert isinstance(testserver.logs(tail=20), str)

    with pytest.raises(KeyError, match="does not publish 9999/tcp"):
        testserver.port(9999)


# --- a server generated from `from:` + `copy:` + `run:` ---------------------------------------


@pytest.mark.testserver("static")
def test_generated_server(testserver: ServerHandle) -> None:
    status, body = get(testserver, "/built.txt")  # written by a `run:` step at build time
    assert (status, body) == (200, "built by pytest-testserver\n")
    # `mode: "0755"` in `copy:` set the file's mode in the image.
    assert testserver.exec(["stat", "-c", "%a", "/usr/local/bin/ready"]) == (0, "755\n")
    code, output = testserver.exec(["env"])
    assert code == 0
    assert "GREETING=hello" in output.splitlines()


@pytest.mark.testserver("static")
def test_secrets_are_masked(testserver: ServerHandle) -> None:
    # API_TOKEN looks like a secret (its name contains TOKEN): exec, logs and error messages
    # show *** in place of its value, so a failing assertion never prints it.
    _, masked = testserver.exec(["env"])
    assert "API_TOKEN=***" in masked.splitlines()
    _, raw = testserver.exec(["env"], raw=True)
    assert "API_TOKEN=example-token-123" in raw.splitlines()


# --- linked servers, and the `testservers` mapping --------------------------------------------


@pytest.mark.testserver("client")
def test_linked_server_by_name(testserver: ServerHandle) -> None:
    # `client` links to `web`: web started first, on a network both share.
    code, output = testserver.exec(["wget", "-qO-", "http://web.test.local:8080/"])
    assert code == 0, output
    assert "Hello from a test server" in output


def test_testservers_mapping(testservers: Mapping[str, ServerHandle]) -> None:
    # Iterating lists the declared servers without starting any of them.
    assert sorted(testservers) == ["client", "static", "web"]
    # Indexing starts a server (and what it links to) on first use.
    client = testservers["client"]
    for name in ("web", "www", "web.test.local", "www.test.local"):
        code, output = client.exec(["wget", "-qO-", f"http://{name}:8080/"])
        assert code == 0, f"{name}: {output}"


@pytest.mark.testserver("web", "static")
def test_several_servers(testservers: Mapping[str, ServerHandle]) -> None:
    # The marker starts both (concurrently) before the test; the fixture hands them out.
    web, static = testservers["web"], testservers["static"]
    # two servers, two addresses (different host ports here; in a CI job container, where
    # servers are reached on the run's network, different hosts and the same port)
    assert (web.host, web.port(8080)) != (static.host, static.port(8080))
    assert get(web)[1] == get(static)[1]
