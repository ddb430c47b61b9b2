from __future__ import annotations

import importlib
import ipaddress
import json
import os
import pkgutil
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    if wanted and CI_ENGINE == "docker":
        # CI's own job runs as root beside its own dockerd: every test applies there.
        names = ", ".join(item.nodeid for item in wanted[:3])
        raise pytest.UsageError(
            f"TESTSERVER_CI_ENGINE=docker, yet {len(wanted)} test(s) would be deselected as not "
            f"applying to this engine ({names}): run as root beside the local engine"
        )
    if wanted:
        config.hook.pytest_deselected(items=wanted)
        items[:] = [item for item in items if item not in wanted]


def require_module(name: str, why: str) -> Any:
    """``pytest.importorskip``, except in CI, where a missing test dependency is a failure: a
    skip there would hide a test that never ran (.ci/run and every nox session install them)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{name} is not installed, and CI must run this test: {why}", False)
        pytest.skip(f"{name} is not installed: {why}")


def require_command(name: str, why: str) -> str:
    """The path of a command a test runs: a skip for a developer without it, a failure in CI."""
    path = shutil.which(name)
    if path:
        return path
    if IN_CI:
        pytest.fail(f"{name} is not installed, and CI must run this test: {why}", False)
    pytest.skip(f"{name} is not installed: {why}")


def require_root(why: str) -> None:
    """A test that only root can run: a skip for a developer, a failure in CI (which is root)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return
    if IN_CI:
        pytest.fail(f"needs root, and CI must run this test: {why}", False)
    pytest.skip(f"needs root: {why}")


def bind_address() -> str:
    """Where this run's servers are published (CI's remote engine job sets 0.0.0.0)."""
    return os.environ.get("TESTSERVER_BIND_ADDRESS") or "127.0.0.1"


# Which engine CI started for this run: .ci/run sets "docker" (its own dockerd), .ci/engine_suites
# the engine's name. The CI job's own knowledge, an oracle that does not come from the plugin:
# were every engine misdetected (say, as rootless), the tests would otherwise adjust and pass.
CI_ENGINE = os.environ.get("TESTSERVER_CI_ENGINE", "")


@dataclass(frozen=True)
class EngineFacts:
    kind: str  # "docker" or "podman"
    rootless: bool
    remote: bool  # its published ports are on another host


CI_ENGINES = {
    "docker": EngineFacts("docker", rootless=False, remote=False),
    "podman": EngineFacts("podman", rootless=False, remote=False),  # as root, .ci/engines/podman
    "rootless": EngineFacts("docker", rootless=True, remote=False),
    "tls": EngineFacts("docker", rootless=False, remote=True),  # another network namespace
    "ssh": EngineFacts("docker", rootless=False, remote=False),  # this machine's dockerd
}


def engine_facts(api: Any) -> EngineFacts:
    """What the engine says of itself, read here and not by the plugin (/version's components,
    /info's security options), and checked against what CI started when it says."""
    components = api.version().get("Components") or []
    podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
    options = [str(o) for o in api.info().get("SecurityOptions") or []]
    rootless = any("name=rootless" in o.split(",") for o in options)
    try:
        remote = not ipaddress.ip_address(expected_host()).is_loopback
    except ValueError:
        remote = expected_host() != "localhost"
    facts = EngineFacts("podman" if podman else "docker", rootless, remote)
    if CI_ENGINE:
        if CI_ENGINE not in CI_ENGINES:
            pytest.fail(f"TESTSERVER_CI_ENGINE={CI_ENGINE!r}: not one of {sorted(CI_ENGINES)}")
        assert facts == CI_ENGINES[CI_ENGINE], f"CI started {CI_ENGINE}, the engine says {facts}"
    return facts


def expected_host() -> str:
    """The handles' host for this run's engine and bind address, worked out here from
    $DOCKER_HOST: a tcp:// or ssh:// engine publishes on its own host, a socket on this one."""
    address = os.environ.get("DOCKER_HOST", "")
    if not address and not CI_ENGINE and _docker_context_named():
        # A developer's Docker context (CI always sets DOCKER_HOST or uses the default socket):
        # the one case where the plugin's own reading stands in for the oracle.
        from pytest_testserver.locate import locate
        from pytest_testserver.ports import handle_host

        return handle_host(locate().address, bind_address())
    parts = urlsplit(address)
    if parts.scheme in ("tcp", "ssh", "http", "https") and parts.hostname:
        return parts.hostname
    bind = bind_address()
    return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind


def _docker_context_named() -> bool:
    if os.environ.get("DOCKER_CONTEXT", "default") != "default":
        return True
    config = Path(os.environ.get("DOCKER_CONFIG") or Path(REAL_HOME) / ".docker") / "config.json"
    try:
        current = json.loads(config.read_text()).get("currentContext")
    except (OSError, ValueError, AttributeError):
        return False
    return current not in (None, "", "default")


def _publishes_on_this_machine() -> bool:
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
    return local and hasattr(os, "geteuid") and os.geteuid() == 0


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
def docker_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
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
    remove_images_built_here(tmp_path_factory.getbasetemp())
    api.close()


def remove_images_built_here(basetemp: Path) -> list[str]:
    """Remove the images this session's own runs built for projects in its temporary folders.

    Each such project is a folder of this session alone, so its images are of no use to any
    other run, and left behind they pile up on the engine: about ten per full-suite run, and
    with 400 images one image listing takes 145 ms. An image that a container still uses is
    left alone (``Engine.remove_image`` never forces). Returns the removed references.
    """
    from pytest_testserver.engine import Engine
    from pytest_testserver.errors import EngineError
    from pytest_testserver.identity import project_digest
    from pytest_testserver.image import LABEL_IMAGE, LABEL_IMAGE_PROJECT

    projects = {project_digest(folder) for folder, _, _ in os.walk(basetemp)}  # no symlinks
    removed: list[str] = []
    engine = Engine.connect()
    try:
        for image in engine.images({LABEL_IMAGE: "1"}):
            if (image.get("Labels") or {}).get(LABEL_IMAGE_PROJECT) not in projects:
                continue
            # By each tag, then by id (an untagged one): an id with several tags needs force.
            for ref in [*image["RepoTags"], image["Id"]]:
                try:
                    engine.remove_image(ref)
                except EngineError as exc:
                    if exc.status == 404:
                        continue
                    break  # in use by a container: not ours to force
                removed.append(ref)
    finally:
        engine.close()
    return removed


@pytest.fixture(scope="session")
def run_births(docker_api: Any) -> Iterator[Any]:
    """The containers of the runs this process and the pytests it starts make, all session."""
    from tests.events import run_births

    births = run_births(docker_api)
    yield births
    births.stop()


@pytest.fixture(autouse=True)
def no_leaked_runs(request: pytest.FixtureRequest) -> Iterator[None]:
    """The leak check of every test that uses the engine: nothing is left of any run the test
    made, in this process or in a pytest it started (subprocesses, -n, other PID namespaces).
    Other runs on the same engine (other jobs, a developer's) are not this test's business."""
    if "docker_api" not in request.fixturenames:
        yield
        return
    from tests.events import run_of_event

    births = request.getfixturevalue("run_births")
    api = request.getfixturevalue("docker_api")
    start = len(births.until_now())
    yield
    runs = {run_of_event(event) for event in births.until_now()[start:]} - {""}
    left: dict[str, list[str]] = {}

    def gone() -> bool:
        left.clear()
        for run in runs:
            objects = everything_of(api, run)
            if objects:
                left[run] = objects
        return not left

    try:
        wait_for(gone, LEFT_WITHIN, "the test's runs to remove what they made")
    except AssertionError:
        for run in list(left):
            remove_run(api, run)
        pytest.fail(f"leaked by the runs of this test: {left}", pytrace=False)


# A run removes what it made before its pytest exits; a killed one within the watchdog's 10 s.
LEFT_WITHIN = 15.0


def everything_of(api: Any, run: str) -> list[str]:
    """The containers, networks and volumes labelled with ``run``."""
    label = {"label": f"{LABEL}={run}"}
    return [
        *(c["Id"][:12] for c in api.containers(all=True, filters=label)),
        *(f"network {n['Name']}" for n in api.networks(filters=label)),
        *(f"volume {v['Name']}" for v in (api.volumes(filters=label).get("Volumes") or [])),
    ]


def remove_run(api: Any, run: str) -> None:
    """Remove what ``run`` (an exact run id this session made) left."""
    label = {"label": f"{LABEL}={run}"}
    for c in api.containers(all=True, filters=label):
        api.remove_container(c["Id"], force=True, v=True)
    for n in api.networks(filters=label):
        api.remove_network(n["Id"])
    for v in api.volumes(filters=label).get("Volumes") or []:
        api.remove_volume(v["Name"], force=True)


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
