"""Real registries on loopback for the pull tests: Debian's ``docker-registry`` (plain, and
with an htpasswd login), and ``registryproxy.py`` in front of one to fail on purpose.

Every process is started here and stopped by its pid; every image is pushed under a name unique
to the test run and removed by that exact name. A missing ``docker-registry`` or ``htpasswd`` is
a skip for a developer and a failure under CI=true (``.ci/run`` installs them).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_IMAGE, require_command

PROXY = Path(__file__).with_name("registryproxy.py")
USER = "tester"
STARTED_WITHIN = 20.0  # seconds for a registry or proxy to accept connections
STOPPED_WITHIN = 10.0

# Three layers of random bytes over busybox: tens of MB that do not compress.
BIG_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN head -c 12000000 /dev/urandom > /a
RUN head -c 10000000 /dev/urandom > /b
RUN head -c 8000000 /dev/urandom > /c
"""
BIG_LAYERS = 3
BIG_BYTES = 30_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepting(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its pid: SIGTERM, then SIGKILL after a bound."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOPPED_WITHIN)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOPPED_WITHIN)


def _started(proc: subprocess.Popen[bytes], port: int, what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTED_WITHIN
    while not _accepting(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"{what} did not start on 127.0.0.1:{port}:\n{tail}", pytrace=False)
        time.sleep(0.05)


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path
    password: str = ""  # "" for an open registry

    def auth_config(self) -> dict[str, str] | None:
        if not self.password:
            return None
        return {"username": USER, "password": self.password, "serveraddress": self.host}

    def docker_config(self, folder: Path) -> Path:
        """A Docker config folder as `docker login HOST` leaves it (``auths``)."""
        folder.mkdir(parents=True, exist_ok=True)
        token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        return folder


@dataclass
class Proxy:
    host: str
    proc: subprocess.Popen[bytes]
    count_file: Path

    def counts(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.count_file.read_text())
        return data

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class Registries:
    """The session's registries, their images, and the proxies tests start."""

    api: Any
    folder: Path
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _pushed: list[str] = field(default_factory=list)
    _built: list[str] = field(default_factory=list)

    def start_registry(self, *, login: bool) -> Registry:
        require_command("docker-registry", "the pull tests run a real registry on loopback")
        port = free_port()
        name = f"registry-{port}"
        data = self.folder / name
        data.mkdir(parents=True)
        config: dict[str, Any] = {
            "version": 0.1,
            "storage": {"filesystem": {"rootdirectory": str(data / "data")}},
            "http": {"addr": f"127.0.0.1:{port}"},
            "log": {"level": "info", "accesslog": {"disabled": False}},
        }
        password = ""
        if login:
            htpasswd = require_command("htpasswd", "the login tests need an htpasswd file")
            password = secrets.token_urlsafe(16)
            hashed = subprocess.run(
                [htpasswd, "-Bbn", USER, password], check=True, capture_output=True
            ).stdout
            (data / "htpasswd").write_bytes(hashed)
            config["auth"] = {"htpasswd": {"realm": "test", "path": str(data / "htpasswd")}}
        (data / "config.yml").write_text(json.dumps(config))  # YAML reads JSON
        log = data / "registry.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["docker-registry", "serve", str(data / "config.yml")],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._procs.append(proc)
        _started(proc, port, "docker-registry", log)
        return Registry(f"127.0.0.1:{port}", proc, log, password)

    def start_proxy(
        self,
        upstream: Registry,
        *,
        fail: tuple[int, ...] = (),
        limit_for: float = 0.0,
        rate: float = 0.0,
        stall_blobs: bool = False,
    ) -> Proxy:
        port = free_port()
        count = self.folder / f"proxy-{port}.json"
        log = self.folder / f"proxy-{port}.log"
        argv = [sys.executable, str(PROXY), "--listen", f"127.0.0.1:{port}"]
        argv += ["--upstream", upstream.host, "--count", str(count)]
        for status in fail:
            argv += ["--fail", str(status)]
        if limit_for:
            argv += ["--limit-for", str(limit_for)]
        if rate:
            argv += ["--rate", str(rate)]
        if stall_blobs:
            argv.append("--stall-blobs")
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self._procs.append(proc)
        _started(proc, port, "registryproxy.py", log)
        return Proxy(f"127.0.0.1:{port}", proc, count)

    def push(self, registry: Registry, name: str, source: str = BASE_IMAGE) -> tuple[str, str]:
        """Push ``source`` as ``HOST/t<token>/<name>:1`` and drop the local tag (a test's run
        must pull it): the reference and the digest the registry gave it."""
        repository = f"{registry.host}/t{self.token}/{name}"
        return self.push_as(registry, repository, source)

    def push_as(self, registry: Registry, repository: str, source: str) -> tuple[str, str]:
        ref = f"{repository}:1"
        self.api.tag(source, repository, "1")
        digest = ""
        try:
            for chunk in self.api.push(
                repository,
                tag="1",
                stream=True,
                decode=True,
                auth_config=registry.auth_config(),
            ):
                if "error" in chunk:
                    pytest.fail(f"push of {ref} failed: {chunk['error']}", pytrace=False)
                aux = chunk.get("aux") or {}
                digest = str(aux.get("Digest") or digest)
        finally:
            self.api.remove_image(ref)
        assert digest.startswith("sha256:"), digest
        self._pushed.append(repository)
        return ref, digest

    def push_big(self, registry: Registry, name: str = "big") -> tuple[str, str]:
        """A multi-layer image of tens of MB, built here, pushed, and removed here (a pull
        must transfer its layers): its reference and digest."""
        tag = self.build_big()
        try:
            return self.push(registry, name, source=tag)
        finally:
            self.api.remove_image(tag)
            self._built.remove(tag)

    def build_big(self) -> str:
        """A multi-layer image of tens of MB: its tag."""
        tag = f"testserver-registry-big:t{self.token}"
        for chunk in self.api.build(
            fileobj=io.BytesIO(BIG_DOCKERFILE.encode()), tag=tag, rm=True, decode=True
        ):
            if "error" in chunk:
                pytest.fail(f"build of {tag} failed: {chunk['error']}", pytrace=False)
        self._built.append(tag)
        return tag

    def forget(self, *refs: str) -> None:
        """Remove what a test pulled, by its exact names: the reference, and the digests of
        the same repository. Never another tag of the same image (busybox:stable is one)."""
        import docker.errors

        for ref in refs:
            name = ref.partition("@")[0]
            tail = name.rsplit("/", 1)[-1]
            repository = name.rsplit(":", 1)[0] if ":" in tail else name
            assert repository.startswith("127.0.0.1:"), ref  # only our registries' images
            try:
                info = self.api.inspect_image(ref)
            except docker.errors.NotFound:
                continue
            names = [ref] + [
                d for d in info.get("RepoDigests") or [] if d.partition("@")[0] == repository
            ]
            for name in dict.fromkeys(names):
                with contextlib.suppress(docker.errors.NotFound):
                    self.api.remove_image(name)

    def close(self) -> None:
        import docker.errors

        for tag in self._built:
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_image(tag)
        for proc in self._procs:
            _stop(proc)


def session_registries(api: Any, folder: Path) -> Iterator[Registries]:
    """The session fixture's body: registries started on demand, all stopped at the end."""
    made = Registries(api, folder)
    try:
        yield made
    finally:
        made.close()


def pulls_in_log(registry: Registry, repository: str) -> int:
    """How many times the registry served ``repository``'s manifest by tag (HEAD or GET)."""
    path = f"/v2/{repository}/manifests/1"
    text = registry.log.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if f'"HEAD {path} ' in line)
