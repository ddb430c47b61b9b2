from __future__ import annotations

import importlib
import os
import pkgutil
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pytest_testserver

# In-process pytester runs restore sys.modules afterwards, but not the submodule attributes of a
# package imported before them: a module imported lazily inside one run would come back as a new
# module in the next while `from . import x` still finds the old one. Importing every module here
# puts them all in the snapshot pytester restores, as in any process that has used the plugin.
for _module in pkgutil.iter_modules(pytest_testserver.__path__):
    importlib.import_module(f"pytest_testserver.{_module.name}")

LABEL = "pytest-testserver.run"
BASE_IMAGE = "busybox:stable"
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

# A busybox httpd serving "ok" on 8080; every integration test reuses this image (built once,
# then found by its content hash).
HTTPD = """
    from: busybox:stable
    run: ["mkdir -p /www && echo ok > /www/index.html"]
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: [8080]
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_root_and_local_engine: runs as root beside an engine on a local socket (it "
        "makes network namespaces); deselected in the engine jobs where that is not so",
    )
    config.addinivalue_line(
        "markers",
        "engine_on_local_socket: needs the engine on this machine's own socket (a bind mount "
        "names a path on the engine's host); deselected for a remote engine",
    )
    config.addinivalue_line(
        "markers",
        "publishes_on_this_machine: needs the engine to publish ports on this machine (it "
        "holds a local port); deselected for a remote engine",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that cannot apply to this run's engine are deselected (and counted), not skipped:
    every engine's CI job runs the tests that apply to it, and a skip would hide a missing one."""
    unmet = {
        "needs_root_and_local_engine": _root_and_local_engine,
        "publishes_on_this_machine": _publishes_on_this_machine,
        "engine_on_local_socket": _engine_on_local_socket,
    }
    wanted = [
        item
        for item in items
        if any(item.get_closest_marker(name) and not met() for name, met in unmet.items())
    ]
    if wanted:
        config.hook.pytest_deselected(items=wanted)
        items[:] = [item for item in items if item not in wanted]


def bind_address() -> str:
    """Where this run's servers are published (CI's remote engine job sets 0.0.0.0)."""
    return os.environ.get("TESTSERVER_BIND_ADDRESS") or "127.0.0.1"


def expected_host() -> str:
    """The handles' host for this run's engine and bind address."""
    from pytest_testserver.locate import locate
    from pytest_testserver.ports import handle_host

    return handle_host(locate().address, bind_address())


def _publishes_on_this_machine() -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(expected_host()).is_loopback
    except ValueError:
        return expected_host() == "localhost"


def _engine_on_local_socket() -> bool:
    from pytest_testserver.errors import EngineUnavailable
    from pytest_testserver.locate import locate

    try:
        return locate().is_local_socket
    except EngineUnavailable:
        return False


def _root_and_local_engine() -> bool:
    from pytest_testserver.errors import EngineUnavailable
    from pytest_testserver.locate import locate

    try:
        local = locate().is_local_socket
    except EngineUnavailable:
        local = False
    return local and hasattr(os, "geteuid") and os.geteuid() == 0 and bool(shutil.which("unshare"))


# The user's own home, before pytester points HOME at a temporary one for its runs.
REAL_HOME = os.path.expanduser("~")


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester, whose runs still find the user's SSH keys, known hosts and ssh config: with
    DOCKER_HOST=ssh://... (one of CI's engines) the engine is reached through them."""
    ssh = os.path.join(REAL_HOME, ".ssh")
    home = os.environ.get("HOME", "")
    if os.path.isdir(ssh) and home and home != REAL_HOME:
        target = os.path.join(home, ".ssh")
        if not os.path.lexists(target):
            os.symlink(ssh, target)
    return pytester


def engine_api() -> Any:
    """docker-py's client for the engine the plugin finds (DOCKER_HOST, contexts, TLS): the
    tests run against every engine CI provisions."""
    from pytest_testserver.engine import Engine

    return Engine.connect().api


@pytest.fixture(scope="session")
def docker_api() -> Iterator[Any]:
    """The engine, or a skip — a failure in CI, where a test that needs Docker must run."""
    import docker.errors

    try:
        api = engine_api()
        api.ping()
    except Exception as exc:
        message = f"no Docker engine answers: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        api.inspect_image(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{BASE_IMAGE} is missing: run python .ci/base_image.py", pytrace=False)
    yield api
    api.close()


def labelled(api: Any, label: str = LABEL) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    containers = api.containers(all=True, filters={"label": label})
    networks = api.networks(filters={"label": label})
    return containers, networks


def labelled_volumes(api: Any, label: str = LABEL) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = api.volumes(filters={"label": label}).get("Volumes") or []
    return volumes


@pytest.fixture
def engine(docker_api: Any) -> Iterator[Any]:
    """The engine for an integration test, which must leave no labelled container, network or
    volume (named and anonymous volumes, and leases, carry the run's labels too).

    In-process pytester runs label what they make with this process's pid; other runs sharing
    the engine (a developer's own) are not this test's business.
    """
    yield docker_api
    mine = f"pytest-testserver.pid={os.getpid()}"
    containers, networks = labelled(docker_api, mine)
    for c in containers:
        docker_api.remove_container(c["Id"], force=True, v=True)
    for n in networks:
        docker_api.remove_network(n["Id"])
    volumes = labelled_volumes(docker_api, mine)  # after the containers that mount them
    for v in volumes:
        docker_api.remove_volume(v["Name"], force=True)
    assert not containers, f"leaked containers: {[c['Names'] for c in containers]}"
    assert not networks, f"leaked networks: {[n['Name'] for n in networks]}"
    assert not volumes, f"leaked volumes: {[v['Name'] for v in volumes]}"


def servers_yaml(**servers: str) -> str:
    """A testservers.yaml with ``defaults: {domain: test.local}`` and the given server bodies."""
    body = "".join(
        f"  {name}:\n{textwrap.indent(textwrap.dedent(spec).strip(), '    ')}\n"
        for name, spec in servers.items()
    )
    return f"defaults:\n  domain: test.local\nservers:\n{body}"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Any:
    """Write testservers.yaml and a test module into the pytester folder."""

    def write(yaml: str, tests: str, files: dict[str, str] | None = None) -> None:
        (pytester.path / "testservers.yaml").write_text(yaml)
        pytester.makepyfile(test_suite=textwrap.dedent(tests))
        for name, content in (files or {}).items():
            path = pytester.path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(content).lstrip())

    return write


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true: the seconds it took (AssertionError after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def written(path: Path, timeout: float, what: str) -> str:
    """The text of ``path`` once another process has made it: the runs under test write such
    files whole (a temporary file, then ``os.replace``), so a file that exists is complete.
    ``Path.write_text`` in place would truncate first and write after: a read in between gets
    ''."""
    wait_for(path.exists, timeout, what)
    return path.read_text()


def inspect(container: str) -> dict[str, Any]:
    """A container's inspect data, through a client closed at once (an open one is a warning)."""
    api = engine_api()
    try:
        info: dict[str, Any] = api.inspect_container(container)
        return info
    finally:
        api.close()
