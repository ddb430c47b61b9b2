"""The one module that imports the Docker SDK: a narrow, typed wrapper over its low-level API.

Every call passes structured arguments (argv lists, mappings); SDK exceptions become this plugin's
error types with the engine's own explanation, never a traceback from inside the SDK.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import IO, Any, Protocol

import docker
import docker.errors
import docker.tls
import docker.types
import docker.utils
import requests.exceptions
import urllib3.exceptions

from .containeroptions import ContainerOptions
from .errors import EngineError, EngineStalled, EngineUnavailable
from .identity import LABEL_RUN
from .liveness import Found
from .locate import Location, locate
from .mounts import EngineMount

# Without a deadline (teardown sets its own): a build step may print nothing for minutes.
API_TIMEOUT = 600
# However little time a server has left, a call gets this long: a deadline just passed must
# still let the call that would report it (an inspect, a log tail) answer.
MIN_CALL_TIMEOUT = 2.0
CONNECT_TIMEOUT = 30.0
MINIMUM_API_VERSION = "1.24"
MAX_CONNECTIONS = 64
SSH_AUTH_ERRORS = ("AuthenticationException", "BadAuthenticationType", "PasswordRequiredException")
SSH_SESSIONS = 8  # of sshd's default MaxSessions 10 per connection: room for a user's own ssh
SSH_SESSIONS_ENV = "TESTSERVER_SSH_SESSIONS"  # more, for an sshd with a higher MaxSessions


def ssh_sessions() -> int:
    """How many SSH sessions one process opens at most: $TESTSERVER_SSH_SESSIONS (1-1000)."""
    value = os.environ.get(SSH_SESSIONS_ENV, "")
    return (
        int(value)
        if value.isascii() and value.isdigit() and 0 < int(value) <= 1000
        else SSH_SESSIONS
    )


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

    def _post(self, url: str, **kwargs: Any) -> Any:
        """docker-py gives a pull no read timeout at all (``timeout=None``): a registry that
        stalls would hold it past any budget. A pull's reads wait as long as the calling
        thread's deadline allows, as every other call's do."""
        if kwargs.get("timeout", 0) is None and url.endswith("/images/create"):
            kwargs["timeout"] = self.timeout
        return super()._post(url, **kwargs)  # type: ignore[misc]

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """The engine's CA wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE.

        requests lets those variables replace a session's ``verify`` on every request; they name
        the public CAs for the web (set in many CI images), never the engine's own CA.
        """
        settings: Any = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.verify is not True:  # a CA file of the engine's, or verification off
            settings["verify"] = self.verify
        return settings


def _read_exactly(reader: Any, size: int) -> bytes:
    """``size`` bytes from ``reader``, or fewer when the stream ends first."""
    data = bytearray()
    while len(data) < size:
        chunk = reader.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def exec_output(api: docker.APIClient, exec_id: str) -> bytes:
    """Start the exec ``exec_id`` (no tty) and read all it prints, stdout and stderr, until it ends.

    docker-py's ``exec_start`` reads the upgraded stream from the socket *under* the HTTP
    response's buffered reader. Whatever the engine sent before the client read the response's
    headers was taken into that buffer along with them, and docker-py never looks there: a short
    command's whole output is lost, its exit code still 0: 5 of 3,000 ``echo``/``wget`` execs on a
    busy 2-core machine, 30-66 of 3,000 with 4 at once and 2 CPU hogs (``.ci/exec_loop.py``).
    Reading the frames through the buffer loses nothing (0 of 3,000 under that load).
    """
    client: Any = api
    response = client._post_json(
        client._url("/exec/{0}/start", exec_id),
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        data={"Tty": False, "Detach": False},
        stream=True,
    )
    try:
        client._raise_for_status(response)
        # http.client's file over the socket (unix, TCP, TLS) or the SSH channel: buffered.
        reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
        if reader is None or not hasattr(reader, "read"):  # not http.client's: docker-py's way
            return bytes(client._read_from_socket(response, False, tty=False) or b"")
        chunks = []
        while True:
            header = _read_exactly(reader, 8)  # stream (1 byte), 3 zero bytes, size (4 bytes)
            if len(header) < 8:
                break
            (size,) = struct.unpack(">xxxxL", header)
            chunk = _read_exactly(reader, size)
            chunks.append(chunk)
            if len(chunk) < size:
                break
        return b"".join(chunks)
    finally:
        response.close()


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation if exc.explanation else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and exceptions among their args: each once."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__, *item.args]


def _short(exc: BaseException) -> str:
    """The innermost OS-level reason of a connection failure ("Connection refused"), one line."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _tls_or_auth(exc: BaseException, location: Location) -> tuple[str, str] | None:
    """(reason, remedy) when a connection failed on TLS or SSH authentication, else None."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLError):
            reason = getattr(item, "reason", None) or " ".join(str(item).split())
            where = f" in {location.cert_path}" if location.cert_path else ""
            return (
                f"TLS with the engine failed ({reason})",
                f"check the engine's CA and this client's certificate{where} "
                "(DOCKER_CERT_PATH, DOCKER_TLS_VERIFY)",
            )
        name = type(item).__name__
        if name in SSH_AUTH_ERRORS:
            return (
                f"SSH authentication failed ({' '.join(str(item).split())})",
                "check that ssh with the same user and key logs in without a prompt "
                "(keys from ~/.ssh/config or ssh-agent)",
            )
        if name == "BadHostKeyException" or "known_hosts" in str(item):
            return (
                f"the engine's SSH host key is not trusted ({' '.join(str(item).split())})",
                "add the host key to ~/.ssh/known_hosts (ssh once by hand, or ssh-keyscan)",
            )
    return None


def _found(kind: str, item: Mapping[str, Any], key: str, created: str) -> Found:
    labels = {str(k): str(v) for k, v in (item.get("Labels") or {}).items()}
    return Found(kind, str(item[key]), labels, engine_time(item.get(created, "")))


class LogStream(Protocol):
    def __iter__(self) -> Iterator[Any]: ...
    def close(self) -> None: ...


class _HeldStream:
    """A log stream that gives its SSH session back when closed (once)."""

    def __init__(self, stream: LogStream, release: Any) -> None:
        self._stream = stream
        self._release: Any = release

    def __iter__(self) -> Iterator[Any]:
        return iter(self._stream)

    def close(self) -> None:
        try:
            # Over unix and TCP this shuts the socket down; over SSH it cannot ("Cancellable
            # streams not supported for the SSH protocol").
            with contextlib.suppress(docker.errors.DockerException):
                self._stream.close()
        finally:
            try:
                # Then close the response too: a socket closed under the response's file
                # object stays open until garbage collection (a ResourceWarning in whatever
                # test runs then), and over SSH this is what gives the channel back.
                response = getattr(self._stream, "_response", None)
                if response is not None:
                    response.close()
            finally:
                release, self._release = self._release, None
                if release is not None:
                    release()


def engine_kind(version: Mapping[str, Any]) -> str:
    """ "podman" when /version names Podman's engine among its components, else "docker"."""
    for component in version.get("Components") or []:
        if isinstance(component, Mapping) and "podman" in str(component.get("Name", "")).lower():
            return "podman"
    return "docker"


def source_address(ip: str) -> str:
    """The local address the kernel would send from to reach ``ip`` (no packet is sent)."""
    try:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((ip, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return ""


def _one_ssh_pool(api: docker.APIClient) -> None:
    """docker-py's SSH adapter keeps a connection pool per request URL (each exec has its own),
    and every idle connection in them holds an SSH session open: a few dozen calls exceed
    sshd's MaxSessions. One pool for every URL keeps the sessions to the pool's size."""
    adapter: Any = getattr(api, "_custom_adapter", None)
    if adapter is None or not hasattr(adapter, "get_connection"):
        return
    per_url = adapter.get_connection

    def get_connection(url: object, proxies: object = None) -> Any:
        return per_url("ssh://engine", proxies)

    adapter.get_connection = get_connection


def _tls_config(location: Location) -> docker.tls.TLSConfig | None:  # None: no TLS
    if not location.tls:
        return None
    folder = location.cert_path or ""
    cert, key, ca = (os.path.join(folder, f) for f in ("cert.pem", "key.pem", "ca.pem"))
    both = os.path.isfile(cert) and os.path.isfile(key)
    return docker.tls.TLSConfig(
        client_cert=(cert, key) if both else None,
        ca_cert=ca if os.path.isfile(ca) else None,
        verify=location.tls_verify,
    )


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


def owned_by_root(address: str) -> bool:
    """A local socket whose file belongs to root: only a rootful engine can have made it.

    Rootless Docker and rootless Podman make their sockets as the user who runs them; a socket
    mounted from elsewhere, or behind a relay, may belong to anyone: those ask ``/info``.
    """
    if not address.startswith("unix://"):
        return False
    try:
        return os.stat(address[len("unix://") :]).st_uid == 0
    except OSError:
        return False


def docker_mounts(mounts: Sequence[EngineMount]) -> list[docker.types.Mount]:
    """The SDK's mounts, from mounts.py's alone (a bind is read-only whatever it says)."""
    return [
        docker.types.Mount(
            m.target,
            m.source,
            type=m.kind,
            read_only=m.read_only or m.kind == "bind",
            labels=dict(m.labels) or None,
        )
        for m in mounts
    ]


def _filters(labels: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]


def _is_timeout(exc: BaseException) -> bool:
    timeouts = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, socket.timeout)
    return any(isinstance(item, timeouts) for item in _chain(exc))


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

    def __init__(self, api: docker.APIClient, address: str, location: Location) -> None:
        self.api = api
        self.address = address
        self.location = location
        self.version = "?"
        self.kind = "docker"  # or "podman"
        self._rootless = True  # until /info says otherwise
        self._info: threading.Thread | None = None
        self._sessions: threading.BoundedSemaphore | None = None
        self._session_count = 0

    @classmethod
    def connect(cls, location: Location | None = None) -> Engine:
        """Connect, learning the engine's version and API version in one round trip."""
        location = location or locate()
        address = location.address
        pinned = os.environ.get("DOCKER_API_VERSION")
        probe_unix_socket(address)
        ssh = location.scheme == "ssh"
        sessions = ssh_sessions()
        try:
            api = DeadlineClient(
                base_url=address,
                timeout=API_TIMEOUT,
                version=pinned or MINIMUM_API_VERSION,
                tls=_tls_config(location) or False,
                # each server waiting to be ready holds one connection blocked on its exit;
                # over ssh:// each connection is an SSH session, and sshd allows 10 by default
                max_pool_size=sessions if ssh else MAX_CONNECTIONS,
                use_ssh_client=False,
            )
            with cls.deadline_for_thread(time.monotonic() + CONNECT_TIMEOUT):
                info = api.version(api_version=False)
        except Exception as exc:
            if _is_timeout(exc):
                raise EngineStalled(
                    address, f"no answer to /version within {CONNECT_TIMEOUT:g}s"
                ) from None
            problem = _tls_or_auth(exc, location)
            if problem:
                raise EngineUnavailable(address, problem[0], remedy=problem[1]) from None
            raise EngineUnavailable(address, _short(exc)) from None
        if not pinned:
            # What docker-py's version="auto" does, without a second /version call.
            api._version = str(info.get("ApiVersion", MINIMUM_API_VERSION))  # type: ignore[attr-defined]
        engine = cls(api, address, location)
        engine.kind = engine_kind(info)
        name = "Podman" if engine.kind == "podman" else "Docker"
        engine.version = f"{name} {info.get('Version', '?')} (API {api.api_version})"
        if ssh:
            engine._sessions = threading.BoundedSemaphore(sessions)
            engine._session_count = sessions
            _one_ssh_pool(api)
        engine._learn_info()
        return engine

    def _learn_info(self) -> None:
        """Rootless or not: from the socket's owner when it is root's (no request at all),
        else from ``/info`` in the background (the first start does not wait on it)."""
        if owned_by_root(self.address):
            self._rootless = False
            return

        def learn() -> None:
            try:
                with self.deadline_for_thread(time.monotonic() + CONNECT_TIMEOUT):
                    info = self._call(self.api.info)
            except Exception:
                return  # unknown: rootless stays assumed, the careful choice
            options = " ".join(str(o) for o in info.get("SecurityOptions") or [])
            self._rootless = "rootless" in options

        self._info = threading.Thread(target=learn, daemon=True)
        self._info.start()

    @property
    def rootless(self) -> bool:
        """A rootless engine (or one whose /info did not answer): its container addresses are
        in its own network namespace, and it may refuse some kernel settings (domainname)."""
        if self._info is not None:
            self._info.join(CONNECT_TIMEOUT)
        return self._rootless

    @property
    def sets_domainname(self) -> bool:
        """Rootless Docker refuses a domainname; Podman's Docker API ignores it."""
        return self.kind == "docker" and not self.rootless

    def routes_directly(self, ip: str, gateway: str) -> bool:
        """Whether a connect to the container's ``ip`` reaches it, from this machine.

        Only for a local rootful engine, and only when the kernel sends packets for ``ip``
        out through that engine's bridge (the source address it picks is the network's
        gateway): otherwise ``ip`` may be someone else's (a rootless or remote engine's
        subnet overlapping a local one) and probes go to the published ports instead.
        """
        if not ip or not gateway or not self.location.is_local_socket or self.rootless:
            return False
        return source_address(ip) == gateway

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

    @contextlib.contextmanager
    def _session(self, what: str, waited: float) -> Iterator[None]:
        """One of the SSH sessions over ssh:// (no bound elsewhere), for as long as a call runs."""
        if self._sessions is None:
            yield
            return
        if not self._sessions.acquire(timeout=waited):
            raise EngineStalled(
                self.address,
                f"{what} waited {waited:.0f}s for one of the {self._session_count} SSH sessions "
                f"this plugin opens at most (sshd's MaxSessions allows 10 by default; "
                f"${SSH_SESSIONS_ENV} for more)",
            )
        try:
            yield
        finally:
            self._sessions.release()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._session(getattr(fn, "__name__", "a call"), self.api.timeout):
            return self._call_unbounded(fn, *args, **kwargs)

    def _call_unbounded(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A call that already holds its session (or needs none)."""
        waited = self.api.timeout
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise self.translate(exc, getattr(fn, "__name__", "a call"), waited) from None

    def _streamed(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """A streaming call: its connection (its SSH session) is held until the stream ends."""
        waited = self.api.timeout
        with self._session(what, waited):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise self.translate(exc, what, waited) from None

    # images
    def image_id(self, ref: str) -> str | None:
        """The id of the image ``ref`` names here, or None when there is none."""
        try:
            return str(self._call(self.api.inspect_image, ref)["Id"])
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise

    def image_exists(self, ref: str) -> bool:
        try:
            self._call(self.api.inspect_image, ref)
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def pull(
        self,
        ref: str,
        *,
        on_chunk: Callable[[Mapping[str, Any]], None] | None = None,
        platform: str | None = None,
    ) -> None:
        """Pull ``ref`` (for ``platform``); ``on_chunk`` sees each decoded event of the stream
        (layer progress). Credentials come from docker-py, as the Docker CLI finds them: the
        config file's ``auths``, ``credHelpers`` and ``credsStore`` (docker-credential-*)."""
        repository, tag = docker.utils.parse_repository_tag(ref)
        extra = {"platform": platform} if platform else {}
        pulled = self._streamed(
            "pull", self.api.pull, repository, tag=tag, stream=True, decode=True, **extra
        )
        for chunk in pulled:
            if "error" in chunk:
                raise EngineError(" ".join(str(chunk["error"]).split()))
            if on_chunk is not None and isinstance(chunk, Mapping):
                on_chunk(chunk)

    def repo_digest(self, ref: str) -> str:
        """The registry digest (``name@sha256:...``) the image ``ref`` names here came from, or
        "" (a built image, or one that was never pulled)."""
        info = self.inspect_image(ref)
        digests = [str(d) for d in (info or {}).get("RepoDigests") or []]
        repository = docker.utils.parse_repository_tag(ref)[0]
        repository = docker.utils.parse_repository_tag(repository)[0]  # "name:tag@..." -> name
        same = [d for d in digests if d.partition("@")[0] == repository]
        return (same or digests or [""])[0]

    @staticmethod
    def credentials_for(registry: str) -> tuple[str, str]:
        """Where the pull's credentials for ``registry`` come from, in words (never the
        credentials): the Docker config file docker-py reads (""; none) and the entry that names
        the registry ("auths", "credHelpers: docker-credential-x", "credsStore: ...", "")."""
        import json

        import docker.auth
        import docker.utils.config

        path = docker.utils.config.find_config_file()
        if not path:
            return "", ""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return str(path), ""
        if not isinstance(data, dict):
            return str(path), ""
        hub = registry == docker.auth.INDEX_NAME
        names = {registry, docker.auth.INDEX_URL} if hub else {registry}
        helpers = data.get("credHelpers") or {}
        for name in names:
            if isinstance(helpers, dict) and isinstance(helpers.get(name), str):
                return str(path), f"credHelpers: docker-credential-{helpers[name]}"
        if isinstance(data.get("credsStore"), str):
            return str(path), f"credsStore: docker-credential-{data['credsStore']}"
        auths = data.get("auths") or {}
        if isinstance(auths, dict) and any(
            docker.auth.resolve_index_name(str(key)) in names | {registry} for key in auths
        ):
            return str(path), "auths"
        return str(path), ""

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
        yield from self._streamed(
            "build",
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

    def images(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The images (tagged or dangling, not intermediate) that carry all of ``labels``.

        ``RepoTags`` holds real tags only: Docker lists an untagged image with the tag
        ``<none>:<none>``, which names nothing (removing it by that name fails)."""
        found = self._call(self.api.images, filters={"label": _filters(labels)})
        return [
            {**item, "RepoTags": [t for t in item.get("RepoTags") or [] if t != "<none>:<none>"]}
            for item in found or []
        ]

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call(self.api.inspect_image, ref)
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def remove_image(self, ref: str) -> list[str]:
        """Untag ``ref`` (a tag) or remove an image by id; the ids of the images deleted with it
        (itself once its last tag goes, then its parents that nothing else uses). Never forced:
        an image a container uses stays, as the engine's 409 conflict."""
        result = self._call(self.api.remove_image, ref, force=False, noprune=False)
        return [str(item["Deleted"]) for item in result or [] if item.get("Deleted")]

    def container_image_ids(self) -> set[str]:
        """The image ids of every container here, running or not, whoever made it."""
        found = self._call(self.api.containers, all=True)
        return {str(c.get("ImageID") or "") for c in found or []} - {""}

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
        init: bool = False,
        options: ContainerOptions | None = None,
        mounted: Sequence[EngineMount] = (),  # from mounts.py only (tests/test_no_shell.py)
        platform: str | None = None,
    ) -> str:
        options = options or ContainerOptions()
        bindings: dict[int | str, Any] = {key: value for key, value in port_bindings.items()}
        # The options' arguments come from values containeroptions.py checked against fixed lists.
        host_config = self.api.create_host_config(
            port_bindings=bindings,
            network_mode=network or "default",
            init=init or None,
            **options.host_config_kwargs(),
            mounts=docker_mounts(mounted) or None,
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
            **options.create_kwargs(),
            **({"platform": platform} if platform else {}),
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
            output = self._call(exec_output, self.api, exec_id)
            code = self._call(self.api.exec_inspect, exec_id).get("ExitCode")
        except EngineError as exc:
            if exc.status in (404, 409):
                return None, b""
            raise
        return (int(code) if code is not None else -1), output

    def logs(self, container: str, tail: int | str = "all") -> str:
        data = self._call(self.api.logs, container, stdout=True, stderr=True, tail=tail)
        return bytes(data).decode("utf-8", "replace")

    def follow_logs(self, container: str) -> LogStream:
        """The container's output from its start, as it comes, until it stops; close() ends it."""
        waited = self.api.timeout
        session = self._session("logs", waited)
        session.__enter__()
        try:
            stream: LogStream = self._call_unbounded(
                self.api.logs, container, stream=True, follow=True
            )
        except BaseException:
            session.__exit__(None, None, None)
            raise
        return _HeldStream(stream, lambda: session.__exit__(None, None, None))

    def container_events(self, labels: Mapping[str, str], since: float) -> LogStream:
        """The engine's events (decoded) of the containers that carry ``labels``, from
        ``since`` (seconds since the epoch, the engine's clock) on, as they come, until close()
        or the engine goes; one connection (one SSH session). Every action comes: Podman 4's
        Docker API lets nothing through an ``event`` filter, so the caller picks its own."""
        session = self._session("events", self.api.timeout)
        session.__enter__()
        filters = {"type": ["container"], "label": _filters(labels)}
        try:
            stream: LogStream = self._call_unbounded(
                self.api.events, since=int(since), filters=filters, decode=True
            )
        except BaseException:
            session.__exit__(None, None, None)
            raise
        return _HeldStream(stream, lambda: session.__exit__(None, None, None))

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

    def network_labels(self, network: str) -> dict[str, str]:
        result = self._call(self.api.inspect_network, network)
        return dict(result.get("Labels") or {})

    def remove_network(self, network: str) -> None:
        """Remove ``network``; containers still on it (the tests' own container, which joined
        it: reach.py; one of a killed job) are disconnected first, or the engine refuses."""
        try:
            self._call(self.api.remove_network, network)
        except EngineError as exc:
            if exc.status == 404:
                return
            if "active endpoint" not in str(exc):
                raise
        else:
            return
        try:
            found = self._call(self.api.inspect_network, network)
        except EngineError as exc:
            if exc.status == 404:
                return
            raise
        for container in found.get("Containers") or {}:
            self.disconnect_network(network, container)
        try:
            self._call(self.api.remove_network, network)
        except EngineError as exc:
            if exc.status != 404:
                raise

    def connect_network(self, network: str, container: str) -> None:
        """Put ``container`` on ``network``; one that is on it already stays as it is."""
        try:
            self._call(self.api.connect_container_to_network, container, network)
        except EngineError as exc:
            if "already exists" not in str(exc) and "already connected" not in str(exc):
                raise

    def disconnect_network(self, network: str, container: str) -> None:
        try:
            self._call(self.api.disconnect_container_from_network, container, network, force=True)
        except EngineError as exc:
            if exc.status != 404 and "is not connected" not in str(exc):
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

    def make_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Make the run's volume ``name``, or find it made by this run already (the engine's
        create is idempotent); a volume of that name that is not the run's is refused."""
        result = self._call(self.api.create_volume, name, driver="local", labels=dict(labels))
        found = result.get("Labels") or {}
        if found.get(LABEL_RUN) != labels.get(LABEL_RUN):
            raise EngineError(f"a volume named {name} exists and is not this run's: not used")

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
