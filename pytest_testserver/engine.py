"""The one module that imports the Docker SDK: a narrow, typed wrapper over its low-level API.

Every call passes structured arguments (argv lists, mappings); SDK exceptions become this plugin's
error types with the engine's own explanation, never a traceback from inside the SDK.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import IO, Any, Protocol

import docker
import docker.errors
import docker.utils
import requests.exceptions
import urllib3.exceptions

from .errors import EngineError, EngineStalled, EngineUnavailable
from .liveness import Found
from .ports import engine_address
from .run import LABEL_RUN

# Without a deadline (teardown sets its own): a build step may print nothing for minutes.
API_TIMEOUT = 600
# However little time a server has left, a call gets this long: a deadline just passed must
# still let the call that would report it (an inspect, a log tail) answer.
MIN_CALL_TIMEOUT = 2.0
CONNECT_TIMEOUT = 30.0
MINIMUM_API_VERSION = "1.24"
MAX_CONNECTIONS = 64


class _Deadline(threading.local):
    at: float | None = None  # time.monotonic() by which this thread's engine calls must answer


class DeadlineClient(docker.APIClient):
    """docker-py's client, whose per-read timeout follows the calling thread's deadline.

    docker-py reads ``self.timeout`` for every request it sends; making it a property is how
    one shared client (and its connection pool) serves threads with different deadlines.
    """

    _default_timeout: float = API_TIMEOUT
    _deadline = _Deadline()

    @property  # type: ignore[override]
    def timeout(self) -> float:
        at = self._deadline.at
        if at is None:
            return self._default_timeout
        return max(MIN_CALL_TIMEOUT, at - time.monotonic())

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._default_timeout = value


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


def _found(kind: str, item: Mapping[str, Any], key: str, created: str) -> Found:
    labels = {str(k): str(v) for k, v in (item.get("Labels") or {}).items()}
    return Found(kind, str(item[key]), labels, engine_time(item.get(created, "")))


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


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(
            item,
            (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, socket.timeout),
        ):
            return True
        todo += [item.__cause__, item.__context__, *item.args]
    return False


def engine_time(text: object) -> float:
    """An engine timestamp (Unix seconds, or RFC 3339 with nanoseconds) as Unix seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    value = str(text).strip().replace("Z", "+00:00")
    head, dot, rest = value.partition(".")
    if dot:  # Python parses at most microseconds: cut the fraction, keep the offset
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


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
            api = DeadlineClient(
                timeout=API_TIMEOUT,
                version=pinned or MINIMUM_API_VERSION,
                # each server waiting to be ready holds one connection blocked on its exit
                max_pool_size=MAX_CONNECTIONS,
                **kwargs,
            )
            with cls.deadline_for_thread(time.monotonic() + CONNECT_TIMEOUT):
                info = api.version(api_version=False)
        except Exception as exc:
            if _is_timeout(exc):
                raise EngineStalled(
                    address, f"no answer to /version within {CONNECT_TIMEOUT:g}s"
                ) from None
            raise EngineUnavailable(address, _short(exc)) from None
        if not pinned:
            # What docker-py's version="auto" does, without a second /version call.
            api._version = str(info.get("ApiVersion", MINIMUM_API_VERSION))  # type: ignore[attr-defined]
        engine = cls(api, address)
        engine.version = f"{info.get('Version', '?')} (API {api.api_version})"
        return engine

    @staticmethod
    @contextlib.contextmanager
    def deadline_for_thread(at: float | None) -> Iterator[None]:
        """Engine calls of this thread must answer by ``at`` (monotonic); None: no deadline."""
        local = DeadlineClient._deadline
        previous, local.at = local.at, at
        try:
            yield
        finally:
            local.at = previous

    def deadline(self, at: float | None) -> contextlib.AbstractContextManager[None]:
        return self.deadline_for_thread(at)

    def thread(self, target: Any, *args: Any) -> threading.Thread:
        """A thread whose engine calls keep the caller's deadline (deadlines are per thread)."""
        at = DeadlineClient._deadline.at

        def run() -> None:
            with self.deadline_for_thread(at):
                target(*args)

        return threading.Thread(target=run)

    def translate(
        self, exc: Exception, what: str, waited: float
    ) -> EngineError | EngineUnavailable:
        """Any failure of a call into the SDK (or under it: requests, urllib3, paramiko)."""
        if isinstance(exc, docker.errors.APIError):
            return EngineError(_explain(exc), exc.status_code)
        if _is_timeout(exc):
            return EngineStalled(self.address, f"no answer to {what} within {waited:.0f}s")
        if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
            return EngineUnavailable(self.address, _short(exc))
        # Anything else the transport raises (paramiko's ChannelException over ssh://, ...).
        text = " ".join(str(exc).split()) or type(exc).__name__
        return EngineError(f"{what} failed: {type(exc).__name__}: {text}")

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        waited = self.api.timeout
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise self.translate(exc, getattr(fn, "__name__", "a call"), waited) from None

    def _stream(self, chunks: Iterator[Any], what: str) -> Iterator[Any]:
        waited = self.api.timeout
        try:
            yield from chunks
        except Exception as exc:
            raise self.translate(exc, what, waited) from None

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
        stream = self._call(self.api.pull, repository, tag=tag, stream=True, decode=True)
        for chunk in self._stream(stream, "pull"):
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
        yield from self._stream(stream, "build")

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
        """Run ``argv`` in the container: ``(exit code, output)``; ``None`` if it is not running.

        A container that stops or goes while the exec runs shows as 409 (not running, removal
        in progress) or 404 (no such container, or exec instance): not running, too.
        """
        try:
            exec_id = self._call(self.api.exec_create, container, list(argv))["Id"]
            output = self._call(self.api.exec_start, exec_id)
            code = self._call(self.api.exec_inspect, exec_id).get("ExitCode")
        except EngineError as exc:
            if exc.status in (404, 409):
                return None, b""
            raise
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
    def objects(self, labels: Mapping[str, str] | None = None) -> list[Found]:
        """Every container, network and volume that carries ``labels`` (or any of ours)."""
        selector = {"label": _filters(labels) if labels else [LABEL_RUN]}
        containers = self._call(self.api.containers, all=True, filters=selector)
        networks = self._call(self.api.networks, filters=selector)
        volumes = self._call(self.api.volumes, filters=selector).get("Volumes") or []
        return [
            *(_found("container", c, "Id", "Created") for c in containers),
            *(_found("network", n, "Id", "Created") for n in networks),
            *(_found("volume", v, "Name", "CreatedAt") for v in volumes),
        ]

    def remove(self, found: Found) -> None:
        if found.kind == "container":
            self.remove_container(found.id)
        elif found.kind == "network":
            self.remove_network(found.id)
        else:
            self.remove_volume(found.id)

    # volumes (a run's lease)
    def create_volume(self, name: str, labels: Mapping[str, str]) -> float:
        """Make a volume; returns its creation time by the engine's clock."""
        result = self._call(self.api.create_volume, name, driver="local", labels=dict(labels))
        return engine_time(result.get("CreatedAt", "")) or self.now()

    def remove_volume(self, name: str) -> None:
        try:
            self._call(self.api.remove_volume, name, force=True)
        except EngineError as exc:
            if exc.status != 404:
                raise

    def now(self) -> float:
        """The engine's clock (its ``Date`` header): ages of its objects are measured on it."""
        api: Any = self.api  # docker-py's own request helpers, untyped
        response = self._call(api._get, api._url("/_ping"))
        try:
            return parsedate_to_datetime(response.headers["Date"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return time.time()

    def close(self) -> None:
        self.api.close()
