"""The contenders: each writes a small pytest project doing the same job its own way.

Every project starts the servers of a ``Scenario`` (prebuilt images, or one image built from the
``web/`` Dockerfile), waits until each answers HTTP, and runs ``test_files`` tests that GET every
server through its port published on the host (then stay busy ``Scenario.busy`` seconds).
Readiness budgets are the same for all (``Scenario.budget`` seconds). A contender that cannot do
what a scenario asks (a per-test server, a reset between tests) refuses to render it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from . import images
from .engine import BENCH_LABEL

PYTEST_INI = "[pytest]\n"
SCOPES = ("session", "module", "class", "function")


@dataclass(frozen=True)
class Scenario:
    servers: tuple[str, ...]  # server names, started in this order
    image: str | None  # a prebuilt image, or None: build the Dockerfile in ./web
    test_files: int = 1
    budget: int = 30  # readiness timeout in seconds, the same for every contender
    scope: str = "session"  # the pytest scope of each server: "function" is a fresh one per test
    busy: float = 0.0  # seconds each test sleeps after its GETs (work the test does)
    reset: tuple[str, ...] | None = None  # argv exec'd in the server between tests (ours only)
    trivial: int = 0  # instead of test files: this many tests that only ask for the server

    @property
    def built(self) -> bool:
        return self.image is None


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def _busy(scenario: Scenario) -> tuple[str, str]:
    """The import and the statement that keep a test busy: lines of their own in a template
    (blank when it is not busy)."""
    if not scenario.busy:
        return "", ""
    return "import time", f"time.sleep({scenario.busy!r})"


def _plain_tests(scenario: Scenario) -> dict[str, str]:
    """Tests for the contenders whose conftest provides ``servers``: name -> URL."""
    if scenario.trivial:
        return {
            "test_trivial.py": f"""
            import pytest


            @pytest.mark.parametrize("case", range({scenario.trivial}))
            def test_trivial(servers, case):
                assert servers
            """
        }
    import_time, sleep = _busy(scenario)
    return {
        f"test_{i}.py": f"""
            from __future__ import annotations

            {import_time}
            import urllib.request


            def test_get_{i}(servers):
                for url in servers.values():
                    with urllib.request.urlopen(url, timeout=10) as response:
                        assert response.status == 200
                {sleep}
            """
        for i in range(scenario.test_files)
    }


class Contender:
    """One way of doing the job. ``plugins`` are the pytest11 distributions it needs loaded."""

    name = ""
    plugins: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ("session",)  # the server scopes it can render
    resets = False  # whether it can exec a command in a server between tests
    env: Mapping[str, str] = MappingProxyType({})  # added to each of its runs' environment

    def refusal(self, scenario: Scenario) -> str | None:
        """Why this contender cannot do what ``scenario`` asks, or None."""
        if scenario.scope not in self.scopes:
            return f"{self.name} has no {scenario.scope}-scoped server here"
        if scenario.reset is not None and not self.resets:
            return f"{self.name} has no reset between tests here"
        return None

    @property
    def slug(self) -> str:
        """The contender's name as a folder name."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-")

    def unavailable(self) -> str | None:
        """Why this contender cannot run here, or None."""
        return None

    def render(self, scenario: Scenario, folder: Path) -> None:
        refusal = self.refusal(scenario)
        if refusal:
            raise ValueError(refusal)
        files = {"pytest.ini": PYTEST_INI, **self.files(scenario)}
        _write(folder, files)
        if scenario.built:
            images.write_context(folder / "web", self.name)

    def files(self, scenario: Scenario) -> dict[str, str]:
        raise NotImplementedError


def _missing_module(module: str, package: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{package} is not installed (pip install -e '.[bench]')"
    return None


class Floor(Contender):
    """What a competent user writes by hand: a fixture over raw docker-py (session-scoped
    unless the scenario asks otherwise), with the client and the image shared by the session."""

    name = "floor"
    scopes = SCOPES

    def files(self, scenario: Scenario) -> dict[str, str]:
        conftest = f"""
            from __future__ import annotations

            import socket
            import time
            import urllib.request
            from collections.abc import Iterator
            from pathlib import Path

            import docker
            import pytest

            NAMES = {list(scenario.servers)!r}
            IMAGE = {scenario.image!r}  # None: build ./web
            BUDGET = {scenario.budget}
            BUILT_TAG = "{images.PREFIX}/floor-web:latest"
            LABELS = {{"{BENCH_LABEL}": "floor"}}  # lets the benchmark find leftovers


            def wait_ready(container, port: int) -> None:
                # The engine's proxy accepts a connect before the server listens: also GET.
                url = f"http://127.0.0.1:{{port}}/"
                deadline = time.monotonic() + BUDGET
                while True:
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=1):
                            pass
                        with urllib.request.urlopen(url, timeout=1) as response:
                            if response.status == 200:
                                return
                    except OSError:
                        pass
                    if time.monotonic() > deadline:
                        log = container.logs(tail=30).decode(errors="replace")
                        raise RuntimeError(f"not ready within {{BUDGET}}s; log:\\n{{log}}")
                    time.sleep(0.01)


            @pytest.fixture(scope="session")
            def docker_client() -> Iterator[docker.DockerClient]:
                client = docker.from_env()
                try:
                    yield client
                finally:
                    client.close()


            @pytest.fixture(scope="session")
            def server_image(docker_client) -> str:
                if IMAGE is not None:
                    return IMAGE
                web = Path(__file__).parent / "web"
                return docker_client.images.build(path=str(web), tag=BUILT_TAG, rm=True)[0].id


            @pytest.fixture(scope="{scenario.scope}")
            def servers(docker_client, server_image) -> Iterator[dict[str, str]]:
                started = []
                urls = {{}}
                try:
                    for name in NAMES:  # one after another
                        container = docker_client.containers.run(
                            server_image,
                            detach=True,
                            ports={{"8080/tcp": ("127.0.0.1", None)}},
                            labels=LABELS,
                        )
                        started.append(container)
                        container.reload()
                        port = int(container.ports["8080/tcp"][0]["HostPort"])
                        wait_ready(container, port)
                        urls[name] = f"http://127.0.0.1:{{port}}/"
                    yield urls
                finally:
                    for container in started:
                        container.remove(force=True)
            """
        return {"conftest.py": conftest, **_plain_tests(scenario)}


def wait_keys() -> tuple[str, ...]:
    """The readiness checks the installed plugin's ``wait:`` key offers (none: no such key)."""
    from pytest_testserver import config

    if "wait" not in config.SERVER_KEYS:
        return ()
    keys: tuple[str, ...] = tuple(getattr(config, "WAIT_KEYS", ()))  # before config's split
    try:
        from pytest_testserver import checks  # since it: checks.py
    except ImportError:
        return keys
    return tuple(getattr(checks, "WAIT_KEYS", ())) or keys


READINESS = {
    # exec'd in the container until it exits 0 (every version of the plugin has it)
    "post_startup": 'post_startup: ["wget", "-q", "--spider", "http://127.0.0.1:8080/"]',
    # the plugin's own network checks (newer versions): a connect, or a GET answering 200
    "tcp": "wait: {tcp: 8080}",
    "http": "wait: {http: 8080}",
}
# The fastest correct readiness first (measured side by side: see the README).
PREFERRED = ("http", "post_startup")


class FloorMarkerFixture(Floor):
    """The floor, asked the way ours is: a marker naming the server, and a function-scoped
    fixture reading it over the session fixture. What pytest itself charges per test for that
    shape of API is W12's bound (as the engine's own concurrency is W6's)."""

    name = "floor, marker + function fixture"

    def files(self, scenario: Scenario) -> dict[str, str]:
        files = super().files(scenario)
        if not scenario.trivial:
            return files
        files["conftest.py"] = textwrap.dedent(files["conftest.py"]) + textwrap.dedent(
            """


            @pytest.fixture
            def server(request, servers):
                return servers[request.node.get_closest_marker("server").args[0]]


            def pytest_configure(config):
                config.addinivalue_line("markers", "server(name): the server a test uses")
            """
        )
        files["test_trivial.py"] = f"""
            import pytest


            @pytest.mark.server({scenario.servers[0]!r})
            @pytest.mark.parametrize("case", range({scenario.trivial}))
            def test_trivial(server, case):
                assert server
            """
        return files


class Ours(Contender):
    """pytest-testserver: testservers.yaml and the testserver marker."""

    name = "pytest-testserver"
    plugins = ("pytest-testserver",)
    scopes = SCOPES
    resets = True

    def __init__(self, readiness: str | None = None, main: bool = True) -> None:
        self.readiness = readiness or self.best()
        self.name = "pytest-testserver" if main else f"pytest-testserver/{self.readiness}"

    @staticmethod
    def available() -> list[str]:
        return ["post_startup", *(k for k in ("tcp", "http") if k in wait_keys())]

    @classmethod
    def best(cls) -> str:
        return next(k for k in PREFERRED if k in cls.available())

    def files(self, scenario: Scenario) -> dict[str, str]:
        source = "build: web" if scenario.image is None else f'image: "{scenario.image}"'
        lines = ["servers:"]
        for name in scenario.servers:
            lines += [
                f"  {name}:",
                f"    {source}",
                "    ports: [8080]",
                f"    {READINESS[self.readiness]}",
                f"    timeout: {scenario.budget}",
            ]
            if scenario.scope != "session":
                lines.append(f"    scope: {scenario.scope}")
            if scenario.reset is not None:
                lines.append(f"    reset: {json.dumps(list(scenario.reset))}")
        yaml = "\n".join(lines) + "\n"
        names = ", ".join(repr(n) for n in scenario.servers)
        if scenario.trivial:  # the marker and the `testserver` fixture, as users write it
            trivial = f"""
                import pytest


                @pytest.mark.testserver({scenario.servers[0]!r})
                @pytest.mark.parametrize("case", range({scenario.trivial}))
                def test_trivial(testserver, case):
                    assert testserver
                """
            return {"testservers.yaml": yaml, "test_trivial.py": trivial}
        import_time, sleep = _busy(scenario)
        tests = {
            f"test_{i}.py": f"""
                from __future__ import annotations

                {import_time}
                import urllib.request

                import pytest


                @pytest.mark.testserver({names})
                def test_get_{i}(testservers):
                    for name in ({names},):
                        url = testservers[name].url(8080)
                        with urllib.request.urlopen(url, timeout=10) as response:
                            assert response.status == 200
                    {sleep}
                """
            for i in range(scenario.test_files)
        }
        return {"testservers.yaml": yaml, **tests}


class Testcontainers(Contender):
    """testcontainers-python: DockerContainer + HttpWaitStrategy, DockerImage for builds."""

    name = "testcontainers"

    def unavailable(self) -> str | None:
        return _missing_module("testcontainers", "testcontainers")

    def files(self, scenario: Scenario) -> dict[str, str]:
        conftest = f"""
            from __future__ import annotations

            import contextlib
            from collections.abc import Iterator
            from pathlib import Path

            import pytest
            from testcontainers.core.container import DockerContainer
            from testcontainers.core.image import DockerImage
            from testcontainers.core.wait_strategies import HttpWaitStrategy

            NAMES = {list(scenario.servers)!r}
            IMAGE = {scenario.image!r}  # None: build ./web
            BUDGET = {scenario.budget}
            LABELS = {{"{BENCH_LABEL}": "testcontainers"}}  # lets the benchmark find leftovers


            @pytest.fixture(scope="session")
            def servers() -> Iterator[dict[str, str]]:
                with contextlib.ExitStack() as stack:
                    image = IMAGE
                    if image is None:
                        web = Path(__file__).parent / "web"
                        built = DockerImage(path=web, tag="{images.PREFIX}/tc-web:latest")
                        image = str(stack.enter_context(built))
                    urls = {{}}
                    for name in NAMES:
                        container = (
                            DockerContainer(image, labels=LABELS)
                            .with_exposed_ports(8080)
                            .waiting_for(HttpWaitStrategy(8080).with_startup_timeout(BUDGET))
                        )
                        stack.enter_context(container)
                        host = container.get_container_host_ip()
                        urls[name] = f"http://{{host}}:{{container.get_exposed_port(8080)}}/"
                    yield urls
            """
        return {"conftest.py": conftest, **_plain_tests(scenario)}


class DockerTools(Contender):
    """pytest-docker-tools: ``container(...)`` (and ``build(...)``) fixture factories."""

    name = "pytest-docker-tools"
    plugins = ("pytest-docker-tools",)
    scopes = SCOPES

    def unavailable(self) -> str | None:
        return _missing_module("pytest_docker_tools", "pytest-docker-tools")

    def files(self, scenario: Scenario) -> dict[str, str]:
        if scenario.image is None:
            image_line = 'web_image = build(path=str(Path(__file__).parent / "web"))\n'
            image = '"{web_image.id}"'
        else:
            image_line = ""
            image = repr(scenario.image)
        fixtures = "".join(
            f"{name} = container(image={image}, ports={{'8080/tcp': None}}, "
            f"scope={scenario.scope!r}, timeout={scenario.budget}, labels=LABELS)\n"
            for name in scenario.servers
        )
        args = ", ".join(scenario.servers)
        urls = ", ".join(f"{name!r}: url({name})" for name in scenario.servers)
        conftest = (
            "from __future__ import annotations\n\n"
            "from pathlib import Path\n\n"
            "import pytest\n"
            "from pytest_docker_tools import build, container\n\n"
            f'LABELS = {{"{BENCH_LABEL}": "pytest-docker-tools"}}  # finds leftovers\n'
            f"{image_line}{fixtures}\n\n"
            "def url(server) -> str:\n"
            "    return f\"http://127.0.0.1:{server.ports['8080/tcp'][0]}/\"\n\n\n"
            f"@pytest.fixture(scope={scenario.scope!r})\n"
            f"def servers({args}) -> dict[str, str]:\n"
            f"    return {{{urls}}}\n"
        )
        return {"conftest.py": conftest, **_plain_tests(scenario)}


COMPOSE_COMMAND = "docker-compose"


class PytestDocker(Contender):
    """pytest-docker: a compose file, ``docker_services.wait_until_responsive``."""

    name = "pytest-docker"
    plugins = ("pytest-docker",)

    def unavailable(self) -> str | None:
        missing = _missing_module("pytest_docker", "pytest-docker")
        if missing:
            return missing
        if shutil.which(COMPOSE_COMMAND) is None:
            return "the compose CLI is missing (apt-get install -y docker-compose)"
        return None

    def files(self, scenario: Scenario) -> dict[str, str]:
        if scenario.image is None:
            source = f"build: ./web\n    image: {images.PREFIX}/pd-web:latest"
        else:
            source = f"image: {scenario.image}"
        services = "".join(
            f'  {name}:\n    {source}\n    ports: ["127.0.0.1::8080"]\n'
            f'    labels: {{"{BENCH_LABEL}": "pytest-docker"}}\n'
            for name in scenario.servers
        )
        compose = f'version: "2.4"\nservices:\n{services}'
        conftest = f"""
            from __future__ import annotations

            import urllib.request
            from pathlib import Path

            import pytest

            NAMES = {list(scenario.servers)!r}
            BUDGET = {scenario.budget}


            @pytest.fixture(scope="session")
            def docker_compose_command() -> str:
                return "{COMPOSE_COMMAND}"


            @pytest.fixture(scope="session")
            def docker_compose_file() -> str:
                return str(Path(__file__).parent / "docker-compose.yml")


            @pytest.fixture(scope="session")
            def docker_setup() -> list[str]:
                return ["up --build -d"]  # compose v1 has no --wait


            def is_responsive(url: str) -> bool:
                try:
                    with urllib.request.urlopen(url, timeout=1) as response:
                        return response.status == 200
                except OSError:
                    return False


            @pytest.fixture(scope="session")
            def servers(docker_ip, docker_services) -> dict[str, str]:
                urls = {{}}
                for name in NAMES:
                    port = docker_services.port_for(name, 8080)
                    url = f"http://{{docker_ip}}:{{port}}/"
                    docker_services.wait_until_responsive(
                        timeout=float(BUDGET), pause=0.1, check=lambda: is_responsive(url)
                    )
                    urls[name] = url
                return urls
            """
        return {"docker-compose.yml": compose, "conftest.py": conftest, **_plain_tests(scenario)}


class Baseline(Ours):
    """pytest-testserver as another checkout has it (``$TESTSERVER_BENCH_BASELINE``: its folder),
    measured beside this one: a refactor's before and after, side by side in one run."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = os.environ.get(BASELINE_ENV, "")
        self.name = "pytest-testserver@baseline"
        # Its package first on the path: the same entry point loads the other checkout's code.
        self.env = {"PYTHONPATH": self.folder} if self.folder else {}

    def unavailable(self) -> str | None:
        if not self.folder:
            return f"${BASELINE_ENV} names no checkout to compare with"
        if not os.path.isfile(os.path.join(self.folder, "pytest_testserver", "plugin.py")):
            return f"${BASELINE_ENV}={self.folder} holds no pytest_testserver"
        return None


BASELINE_ENV = "TESTSERVER_BENCH_BASELINE"
ALL: tuple[Contender, ...] = (
    Floor(),
    Ours(),
    Baseline(),
    Testcontainers(),
    DockerTools(),
    PytestDocker(),
)
BY_NAME = {c.name: c for c in ALL}


def plugin_entry_points() -> dict[str, list[str]]:
    """pytest11 entry-point names by distribution (normalized: lower case, ``-``)."""
    found: dict[str, list[str]] = {}
    for ep in importlib.metadata.entry_points(group="pytest11"):
        dist = ep.dist.name if ep.dist is not None else ep.value
        found.setdefault(dist.lower().replace("_", "-"), []).append(ep.name)
    return found


def disable_flags(keep: tuple[str, ...]) -> list[str]:
    """``-p no:NAME`` for every installed pytest plugin not in ``keep`` (distribution names)."""
    flags: list[str] = []
    for dist, names in sorted(plugin_entry_points().items()):
        if dist in keep:
            continue
        for name in names:
            flags += ["-p", f"no:{name}"]
    return flags
