"""The one module that imports the Docker SDK: a narrow, typed wrapper over its low-level API.

Every call passes structured arguments (argv lists, mappings); SDK exceptions become this plugin's
error types with the engine's own explanation, never a traceback from inside the SDK.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, Protocol

import docker
import docker.errors
import docker.utils
import requests.exceptions

from .errors import EngineError, EngineUnavailable
from .ports import engine_address

# Generous per-read timeout: a build step may print nothing for minutes (apt-get on a slow mirror).
API_TIMEOUT = 600
MINIMUM_API_VERSION = "1.24"
MAX_CONNECTIONS = 64


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation if exc.explanation else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


def _short(exc: BaseException) -> str:
    """The innermost OS-level reason of a connection failure ("Connection refused"), one line."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
        todo += [item.__cause__, item.__context__, *item.args]
    return " ".join(str(exc).split()) or type(exc).__name__


class LogStream(Protocol):
    def __iter__(self) -> Iterator[Any]: ...
    def close(self) -> None: ...


def probe_unix_socket(address: str) -> None:
    """Fail early, and cleanly, when a local engine's socket does not answer.

    docker-py leaves its socket unclosed when a unix connect fails (a ResourceWarning later);
    a connect of our own, closed whatever happens, answers the same question first.
    """
    if not address.startswith("unix://"):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(address[len("unix://") :])
        except OSError as exc:
            raise EngineUnavailable(address, exc.strerror or str(exc)) from None


def _filters(labels: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]


class Engine:
    """A connected engine. Methods raise ``EngineError`` or ``EngineUnavailable``."""

    def __init__(self, api: docker.APIClient, address: str) -> None:
        self.api = api
        self.address = address
        self.version = "?"

    @classmethod
    def connect(cls) -> Engine:
        """Connect, learning the engine's version and API version in one round trip."""
        address = engine_address()
        pinned = os.environ.get("DOCKER_API_VERSION")
        probe_unix_socket(address)
        try:
            kwargs = docker.utils.kwargs_from_env()
            api = docker.APIClient(
                timeout=API_TIMEOUT,
                version=pinned or MINIMUM_API_VERSION,
                # each server waiting to be ready holds one connection blocked on its exit
                max_pool_size=MAX_CONNECTIONS,
                **kwargs,
            )
            info = api.version(api_version=False)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineUnavailable(address, _short(exc)) from None
        if not pinned:
            # What docker-py's version="auto" does, without a second /version call.
            api._version = str(info.get("ApiVersion", MINIMUM_API_VERSION))  # type: ignore[attr-defined]
        engine = cls(api, address)
        engine.version = f"{info.get('Version', '?')} (API {api.api_version})"
        return engine

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except docker.errors.APIError as exc:
            raise EngineError(_explain(exc), exc.status_code) from None
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise EngineUnavailable(self.address, _short(exc)) from None
        except docker.errors.DockerException as exc:
            raise EngineError(" ".join(str(exc).split())) from None

    # images
    def image_exists(self, ref: str) -> bool:
        try:
            self._call(self.api.inspect_image, ref)
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def pull(self, ref: str) -> None:
        repository, tag = docker.utils.parse_repository_tag(ref)
        for chunk in self._call(self.api.pull, repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise EngineError(" ".join(str(chunk["error"]).split()))

    def build(
        self,
        context: IO[bytes],
        *,
        tag: str,
        dockerfile: str,
        buildargs: Mapping[str, str],
        target: str | None,
        labels: Mapping[str, str],
        nocache: bool = False,
    ) -> Iterator[dict[str, Any]]:
        stream = self._call(
            self.api.build,
            fileobj=context,
            custom_context=True,
            tag=tag,
            dockerfile=dockerfile,
            buildargs=dict(buildargs),
            target=target,
            labels=dict(labels),
            rm=True,
            forcerm=True,
            nocache=nocache,
            decode=True,
            use_config_proxy=False,
        )
        try:
            yield from stream
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise EngineUnavailable(self.address, _short(exc)) from None

    # containers
    def create_container(
        self,
        *,
        image: str,
        name: str,
        command: Sequence[str] | None,
        env: Mapping[str, str],
        ports: Sequence[str],
        port_bindings: Mapping[str, tuple[str, int | None]],
        hostname: str,
        domain: str | None,
        labels: Mapping[str, str],
        network: str | None,
        aliases: Sequence[str],
    ) -> str:
        bindings: dict[int | str, Any] = {key: value for key, value in port_bindings.items()}
        host_config = self.api.create_host_config(
            port_bindings=bindings, network_mode=network or "default"
        )
        # The API's own shape (types-docker mistypes create_networking_config).
        networking: Any = (
            {"EndpointsConfig": {network: {"Aliases": list(aliases)}}} if network else None
        )
        result = self._call(
            self.api.create_container,
            image,
            command=list(command) if command is not None else None,
            name=name,
            environment=dict(env),
            ports=[tuple(p.split("/")) for p in ports],
            hostname=hostname,
            domainname=domain,
            labels=dict(labels),
            host_config=host_config,
            networking_config=networking,
            detach=True,
            use_config_proxy=False,
        )
        return str(result["Id"])

    def start(self, container: str) -> None:
        self._call(self.api.start, container)

    def inspect(self, container: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.api.inspect_container, container)
        return result

    def exec(self, container: str, argv: Sequence[str]) -> tuple[int | None, bytes]:
        """Run ``argv`` in the container: ``(exit code, output)``; ``None`` if it is not running."""
        try:
            exec_id = self._call(self.api.exec_create, container, list(argv))["Id"]
            output = self._call(self.api.exec_start, exec_id)
        except EngineError as exc:
            if exc.status == 409:  # the container is not running (exited, or being removed)
                return None, b""
            raise
        code = self._call(self.api.exec_inspect, exec_id).get("ExitCode")
        return (int(code) if code is not None else -1), bytes(output or b"")

    def logs(self, container: str, tail: int | str = "all") -> str:
        data = self._call(self.api.logs, container, stdout=True, stderr=True, tail=tail)
        return bytes(data).decode("utf-8", "replace")

    def follow_logs(self, container: str) -> LogStream:
        """The container's output from its start, as it comes, until it stops; close() ends it."""
        stream: LogStream = self._call(self.api.logs, container, stream=True, follow=True)
        return stream

    def remove_container(self, container: str) -> None:
        try:
            self._call(self.api.remove_container, container, force=True, v=True)
        except EngineError as exc:
            if exc.status != 404:
                raise

    # networks
    def create_network(self, name: str, labels: Mapping[str, str]) -> str:
        result = self._call(
            self.api.create_network,
            name,
            driver="bridge",
            labels=dict(labels),
            check_duplicate=True,
        )
        return str(result["Id"])

    def remove_network(self, network: str) -> None:
        try:
            self._call(self.api.remove_network, network)
        except EngineError as exc:
            if exc.status != 404:
                raise

    # finding what runs left behind
    def list_containers(self, labels: Mapping[str, str]) -> list[str]:
        found = self._call(self.api.containers, all=True, filters={"label": _filters(labels)})
        return [str(c["Id"]) for c in found]

    def list_networks(self, labels: Mapping[str, str]) -> list[str]:
        found = self._call(self.api.networks, filters={"label": _filters(labels)})
        return [str(n["Id"]) for n in found]

    def labels_of_everything(self, labels: Mapping[str, str]) -> list[dict[str, str]]:
        """The labels of every container and network that carries ``labels``."""
        selector = {"label": _filters(labels)}
        containers = self._call(self.api.containers, all=True, filters=selector)
        networks = self._call(self.api.networks, filters=selector)
        return [dict(item.get("Labels") or {}) for item in [*containers, *networks]]

    def close(self) -> None:
        self.api.close()
