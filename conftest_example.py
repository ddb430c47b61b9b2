"""An example conftest.py for a suite using pytest-testserver: copy it to tests/conftest.py, edit.

It assumes a testservers.yaml declaring a server ``web`` that publishes port 8080, such as
examples/testservers.yaml. The plugin itself needs no conftest at all: installing it registers the
``testserver`` marker and the ``testserver`` and ``testservers`` fixtures.

Settings go in the pytest config file (pytest.ini shown; in pyproject.toml use
``[tool.pytest.ini_options]``). The plugin reads them when pytest starts, before any conftest
hook could change them::

    [pytest]
    # The servers' file, relative to this config file (default: testservers.yaml next to it).
    # On the command line, --testserver-config PATH (relative to the current folder) wins.
    testserver_config = tests/servers.yaml
    # No Docker engine (a laptop, a docs-only CI job): skip the tests that need a server
    # instead of failing them. Only "cannot reach the engine" skips; every other error fails.
    testserver_unavailable = skip
    # Publish ports on every interface instead of loopback (needed with a remote engine).
    # testserver_bind_address = 0.0.0.0
    # Publish each port at its own number (8080 -> 8080) for clients with fixed ports.
    # testserver_bind_local = true
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from pytest_testserver import ServerHandle

HERE = Path(__file__).parent


# --- the marker -------------------------------------------------------------------------------
# In a test module:
#
#     @pytest.mark.testserver("web")            # started before the test, kept for the session
#     def test_home(testserver):                # the handle of the one server the marker names
#         assert testserver.exec(["test", "-d", "/www"])[0] == 0
#
#     @pytest.mark.testserver("web", "client")  # several: started concurrently
#     def test_both(testservers):               # take them from the mapping
#         web, client = testservers["web"], testservers["client"]
#
# A marker can also be applied from here, for example to every test in a folder:


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (HERE / "http") in item.path.parents:
            item.add_marker(pytest.mark.testserver("web"))


# --- fixtures built on a server handle --------------------------------------------------------
# `testservers` is session-scoped, so session fixtures can use it. A server starts the first
# time it is asked for (indexing `testservers[...]` starts it) and is removed at session end.


@pytest.fixture(scope="session")
def web(testservers: Mapping[str, ServerHandle]) -> ServerHandle:
    """The `web` server, started once for the whole session."""
    return testservers["web"]


@pytest.fixture(scope="session")
def base_url(web: ServerHandle) -> str:
    """Where tests reach `web` from this machine, e.g. http://127.0.0.1:49153 (no slash)."""
    return web.url(8080).rstrip("/")


@pytest.fixture
def web_files(web: ServerHandle) -> Generator[PurePosixPath, None, None]:
    """A scratch folder inside the `web` container, emptied after each test."""
    folder = PurePosixPath("/www/scratch")
    code, output = web.exec(["mkdir", "-p", str(folder)])
    assert code == 0, output
    yield folder
    web.exec(["rm", "-rf", str(folder)])


# --- declaring servers in Python, beside testservers.yaml ----------------------------------------
# The same fields and the same validation as the YAML file; paths are relative to this file's
# folder, and a server may link to one declared in the YAML file. A name declared in both places
# is an error. (Failed tests already get each used server's log tail in their report: no hook
# needed for that.)


def pytest_testserver_servers(config: pytest.Config) -> dict[str, Any]:
    return {
        "servers": {
            "echo": {
                "from": "busybox:stable",
                "command": ["nc", "-ll", "-p", "7000", "-e", "cat"],
                "ports": [7000],
                "wait": {"tcp": 7000},
                "share": "run",  # one container for every xdist worker (the default)
            },
        },
    }
