"""What the engine saw: container events, leftovers (and their removal), and API calls.

Nothing here trusts a contender's own counters: containers are counted from the engine's event
stream, builds from the API requests the engine received (through a counting socket relay).
The engine answers a query for past events from its last 256 only, and other runs sharing the
engine fill those too: a run's events are also read live while it runs (``EventLog``).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SOCKET = "/var/run/docker.sock"
# Only what the benchmark's own contenders made is counted or removed: the engine may be shared
# with other test runs. Contenders label their containers (pytest-testserver's are found by its
# own server label: every benchmark server is named bench*); compose networks by project name.
BENCH_LABEL = "testserver-bench.contender"
OURS_SERVER_LABEL = "pytest-testserver.server"
# A server --testserver-reuse keeps for the next run of the same user and project: it carries the
# project, not the run (it outlives the run on purpose).
OURS_RUN_LABEL = "pytest-testserver.run"
OURS_REUSE_LABEL = "pytest-testserver.reuse-project"
COMPOSE_PROJECT = re.compile(r"^pytest\d+$")


def is_bench_container(labels: dict[str, str]) -> bool:
    return BENCH_LABEL in labels or labels.get(OURS_SERVER_LABEL, "").startswith("bench")


def is_kept_for_reuse(labels: dict[str, str]) -> bool:
    """A server of ours that --testserver-reuse keeps for the next run: not a leftover."""
    return OURS_REUSE_LABEL in labels and OURS_RUN_LABEL not in labels


def is_bench_network(labels: dict[str, str]) -> bool:
    return BENCH_LABEL in labels or bool(
        COMPOSE_PROJECT.match(labels.get("com.docker.compose.project", ""))
    )


@dataclass
class RunEngineReport:
    """What one pytest run did to the engine."""

    containers_created: int = 0
    image_tags: int = 0
    leaked_containers: list[str] = field(default_factory=list)
    leaked_networks: list[str] = field(default_factory=list)
    die_events: list[dict[str, Any]] = field(default_factory=list)
    # Containers the run made and left on purpose (``keep``): id -> labels. Not removed.
    kept: dict[str, dict[str, str]] = field(default_factory=dict)
    containers_removed: int = 0  # the benchmark's containers the run destroyed


def _event_time(event: dict[str, Any]) -> float:
    return int(event.get("timeNano", 0)) / 1e9


def _event_key(event: dict[str, Any]) -> tuple[str, str, str, int]:
    actor = event.get("Actor", {}).get("ID", "")
    return (event.get("Type", ""), event.get("Action", ""), actor, int(event.get("timeNano", 0)))


class EventLog:
    """Every event of the engine from ``since`` on, read as it happens (a thread)."""

    def __init__(self, api: Any, since: float) -> None:
        self.events: list[dict[str, Any]] = []
        self._stream = api.events(since=since, decode=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # close() may end the stream mid-read
            for event in self._stream:
                self.events.append(event)

    def close(self) -> None:
        self._stream.close()
        self._thread.join(timeout=5)


class EngineWatch:
    """Reads the engine's events for a time window, and removes what a run left behind."""

    def __init__(self) -> None:
        import docker

        self.client = docker.from_env()
        self.api = self.client.api

    def close(self) -> None:
        self.client.close()

    def listen(self, since: float) -> EventLog:
        """Start reading the engine's events live; ``close()`` the log after ``observe``."""
        return EventLog(self.api, since)

    def events(
        self, since: float, until: float, kind: str, action: str, log: EventLog | None = None
    ) -> list[dict[str, Any]]:
        """The window's events of one kind and action: those the engine still keeps, and those
        ``log`` read live (older ones the engine has dropped since)."""
        filters = {"type": kind, "event": action}
        # Sub-second bounds: the engine takes fractional seconds (the stubs only say int).
        stream = self.api.events(since=since, until=until, filters=filters, decode=True)  # type: ignore[call-overload]
        kept = list(stream)
        if log is None:
            return kept
        seen = {_event_key(e) for e in kept}
        live = [
            e
            for e in list(log.events)
            if e.get("Type") == kind
            and str(e.get("Action", "")).split(":")[0] == action
            and since <= _event_time(e) <= until
            and _event_key(e) not in seen
        ]
        return sorted(kept + live, key=_event_time)

    def observe(
        self,
        since: float,
        until: float,
        log: EventLog | None = None,
        keep: Callable[[dict[str, str]], bool] | None = None,
    ) -> RunEngineReport:
        """Count what the window created, then remove whatever of it still exists (a leak),
        except the containers whose labels ``keep`` accepts: those are meant to outlive it."""
        report = RunEngineReport()
        created = [
            e
            for e in self.events(since, until, "container", "create", log)
            if is_bench_container(e.get("Actor", {}).get("Attributes", {}))
        ]
        report.containers_created = len(created)
        report.image_tags = len(self.events(since, until, "image", "tag", log))
        report.die_events = [
            e
            for e in self.events(since, until, "container", "die", log)
            if is_bench_container(e.get("Actor", {}).get("Attributes", {}))
        ]
        report.containers_removed = sum(
            is_bench_container(e.get("Actor", {}).get("Attributes", {}))
            for e in self.events(since, until, "container", "destroy", log)
        )
        existing = {c["Id"]: c for c in self.api.containers(all=True)}
        for event in created:
            cid = event.get("id") or event.get("Actor", {}).get("ID", "")
            labels = (existing.get(cid) or {}).get("Labels") or {}
            if cid in existing and keep is not None and keep(labels):
                report.kept[cid] = labels
            elif cid in existing:
                names = existing[cid].get("Names") or [cid[:12]]
                report.leaked_containers.append(names[0].lstrip("/"))
                self.api.remove_container(cid, force=True, v=True)
        networks = {n["Id"]: n for n in self.api.networks()}
        for event in self.events(since, until, "network", "create", log):
            nid = event.get("Actor", {}).get("ID", "")
            network = networks.get(nid)
            if network is not None and is_bench_network(network.get("Labels") or {}):
                report.leaked_networks.append(str(network.get("Name", nid[:12])))
                self._remove_network(nid)
        return report

    def labelled(self, labels: dict[str, str], running: bool = False) -> list[dict[str, Any]]:
        """The containers carrying every one of ``labels`` (all states, or running only)."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        return list(self.api.containers(all=not running, filters=filters))

    def name_of(self, cid: str) -> str | None:
        """The container's name, or None when it no longer exists."""
        import docker.errors

        try:
            return str(self.api.inspect_container(cid).get("Name", cid[:12])).lstrip("/")
        except docker.errors.NotFound:
            return None

    def remove(self, cid: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_container(cid, force=True, v=True)

    def _remove_network(self, nid: str) -> None:
        import docker.errors

        for endpoint in self.api.inspect_network(nid).get("Containers") or {}:
            with contextlib.suppress(docker.errors.APIError):
                self.api.remove_container(endpoint, force=True, v=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_network(nid)

    def sweep(self) -> int:
        """Last resort at the end: remove anything of the benchmark's still on the engine."""
        removed = 0
        for container in self.api.containers(all=True):
            if is_bench_container(container.get("Labels") or {}):
                self.api.remove_container(container["Id"], force=True, v=True)
                removed += 1
        for network in self.api.networks():
            if is_bench_network(network.get("Labels") or {}):
                self._remove_network(network["Id"])
                removed += 1
        return removed


_REQUEST_LINE = re.compile(
    rb"(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (/[^ ?\r\n]*)[^\r\n]* HTTP/1\.[01]\r\n"
)
_VERSION = re.compile(r"^/v[0-9.]+")
_ID = re.compile(r"/[0-9a-f]{12,64}(?=/|$)")


def _route(method: bytes, path: bytes) -> str:
    text = _VERSION.sub("", path.decode("latin-1"))
    parts = text.split("/")
    if len(parts) > 3 and parts[1] == "images":  # image refs may contain slashes
        return f"{method.decode()} /images/{{ref}}/{parts[-1]}"
    # /containers/<name or id>/start -> /containers/{id}/start
    if len(parts) > 3 and parts[1] in ("containers", "exec", "images", "networks"):
        parts[2] = "{id}"
    return f"{method.decode()} {_ID.sub('/{id}', '/'.join(parts))}"


class ApiCounter:
    """A unix-socket relay in front of the engine that counts the API requests passing through.

    Point a run at it with ``DOCKER_HOST=unix://<path>``. Bytes are relayed untouched (exec
    attach upgrades included); request lines are recognised in the client-to-engine stream.
    """

    def __init__(self, upstream: str = DEFAULT_SOCKET) -> None:
        self.upstream = upstream
        self._dir = tempfile.mkdtemp(prefix="testserver-bench-proxy-")
        self.path = str(Path(self._dir) / "docker.sock")
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def reset(self) -> Counter[str]:
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def close(self) -> None:
        self._closed = True
        self._server.close()
        try:
            os.unlink(self.path)
            os.rmdir(self._dir)
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            engine.connect(self.upstream)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=self._pump, args=(engine, client, False), daemon=True)
        back.start()
        self._pump(client, engine, True)
        back.join()
        client.close()
        engine.close()

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        while True:
            try:
                data = source.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if count:
                routes = [_route(m[0], m[1]) for m in _REQUEST_LINE.findall(data)]
                if routes:
                    with self._lock:
                        self.counts.update(routes)
            try:
                sink.sendall(data)
            except OSError:
                return
