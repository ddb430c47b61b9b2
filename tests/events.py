"""A reader of the engine's events for the tests that count what a run did (starts, builds)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import docker.errors
import pytest

from pytest_testserver.identity import Owner
from tests.conftest import BASE_IMAGE

MARK = "pytest-testserver-test.events"  # the label (or tag) of a reader's own markers


class Events:
    """The engine's events for this test's own runs, received live while the run happens.

    Live, not replayed from the engine's history afterwards: on a shared engine that history is
    a short buffer other runs overrun. Filtered to what carries this process's pid (the owner of
    its in-process pytester runs) or names an exact tag: other runs' events are not counted.

    A count of zero means something only if the stream worked: the reader makes markers of its
    own that pass the same filter (a container with the filter's labels, created and removed; an
    image tag, made and removed), one when it starts and one at each reading. It waits for each
    marker instead of for a fixed time, so everything before it has arrived (the engine sends
    events in order), and it fails the test when the stream breaks or ends before a marker.
    """

    WAIT = 60.0  # for a marker to come back: a busy shared engine, a remote one over ssh://

    def __init__(
        self, api: Any, filters: dict[str, Any], *, where: Callable[[Any], bool] | None = None
    ) -> None:
        self._api = api
        self._filters = filters
        self._where = where or (lambda event: True)
        self._token = uuid.uuid4().hex
        self._seen: list[dict[str, Any]] = []
        self._marks: set[str] = set()
        self._ended: str | None = None
        self._changed = threading.Condition()
        self._stream = api.events(decode=True, filters=engine_side(filters))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._mark("begin")  # live, and letting through what the filter matches

    def _read(self) -> None:
        # Podman 4 tails its events file and rotates it at 1 MB: after a rotation, events
        # already sent can come again. One event is one moment of one object's action.
        # (Two real events differ at least in their timeNano.)
        sent: set[str] = set()
        ended = "the engine ended the event stream"
        try:
            for event in self._stream:
                key = json.dumps(event, sort_keys=True)
                if key in sent:
                    continue
                sent.add(key)
                if not passes(event, self._filters):
                    continue
                with self._changed:
                    if self._token in key:
                        self._marks.add(key.split(f"{self._token}-")[1].split('"')[0])
                    elif self._where(event):
                        self._seen.append(event)
                    self._changed.notify_all()
        except Exception as exc:  # told to the test by the next reading, never swallowed
            ended = f"the event stream broke: {exc!r}"
        with self._changed:
            self._ended = ended
            self._changed.notify_all()

    def _mark(self, name: str) -> None:
        """Make an object of our own that the filter lets through, then wait until it is seen."""
        mark = f"{self._token}-{name}"
        if self._filters.get("type") == "image":
            repo = MARK.replace(".", "/")
            self._api.tag(BASE_IMAGE, repo, mark)
            self._api.remove_image(f"{repo}:{mark}")
        else:
            wanted = self._filters.get("event")
            actions = {wanted} if isinstance(wanted, str) else set(wanted or ())
            assert actions & {"create", "destroy"}, self._filters  # what the marker makes
            label = self._filters.get("label") or []
            labels = [label] if isinstance(label, str) else label
            # "key=value" as it is; a bare "key" (any value) gets the marker's
            pairs = dict((*str(x).split("=", 1), mark)[:2] for x in labels)
            # With this process as its owner: should the test be killed between the create and
            # the remove, the next run's sweep knows the marker dead (else no one would).
            owner = Owner.this_process().labels()
            container = self._api.create_container(
                BASE_IMAGE, ["true"], labels={**owner, **pairs, MARK: mark}
            )
            with contextlib.suppress(docker.errors.NotFound):  # a sweep of another run's
                self._api.remove_container(container["Id"], force=True)
        with self._changed:
            self._changed.wait_for(lambda: name in self._marks or self._ended, self.WAIT)
            if name not in self._marks:
                pytest.fail(
                    f"event reader {self._filters}: {self._ended or 'no event'} before its "
                    f"own {name!r} marker (within {self.WAIT:g}s): its counts cannot be trusted",
                    pytrace=False,
                )

    def reopen(self) -> None:
        """A new stream after the engine restarted under this reader (its stream ended with
        the engine): from now on, proved live by a marker as at the start. What the engine did
        while it was down is not seen: the test that restarts it checks its own runs itself."""
        self._close_stream()
        self._thread.join(5)
        with self._changed:
            self._ended = None
        self._stream = self._api.events(decode=True, filters=engine_side(self._filters))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._mark(f"reopen{len(self._marks)}")

    def _close_stream(self) -> None:
        with contextlib.suppress(Exception):  # docker-py cannot cancel a stream over ssh://
            self._stream.close()
        # and the response: its file object would keep the socket open until collected
        with contextlib.suppress(Exception):
            self._stream._response.close()

    def until_now(self) -> list[dict[str, Any]]:
        """What was seen so far: everything the engine did before this call."""
        self._mark(f"read{len(self._marks)}")
        with self._changed:
            return list(self._seen)

    def stop(self) -> list[dict[str, Any]]:
        seen = self.until_now()
        self._close_stream()
        self._thread.join(5)
        return seen


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or ()]


def engine_side(filters: dict[str, Any]) -> dict[str, Any]:
    """What the engine filters itself: the type and ``key=value`` labels. Podman 4's Docker API
    lets nothing through an ``event`` filter or a bare ``key`` label; those are ours to apply."""
    sent: dict[str, Any] = {k: v for k, v in filters.items() if k == "type"}
    pairs = [label for label in as_list(filters.get("label")) if "=" in label]
    if pairs:
        sent["label"] = pairs
    return sent


def passes(event: dict[str, Any], filters: dict[str, Any]) -> bool:
    """The whole filter, applied here (the engine applied ``engine_side`` of it)."""
    actions = as_list(filters.get("event"))
    if actions and event.get("Action", event.get("status")) not in actions:
        return False
    attributes = event.get("Actor", {}).get("Attributes", {})
    for label in as_list(filters.get("label")):
        key, _, value = label.partition("=")
        if key not in attributes or ("=" in label and attributes[key] != value):
            return False
    return True


def server_of(event: dict[str, Any]) -> str:
    return str(event.get("Actor", {}).get("Attributes", {}).get("pytest-testserver.server", ""))


def container_creations(api: Any, server: str | None = None) -> Events:
    """The containers this process's in-process runs create (of ``server``, or of any)."""
    labels = [f"pytest-testserver.pid={os.getpid()}"]
    if server is not None:
        labels.insert(0, f"pytest-testserver.server={server}")
    return Events(api, {"type": "container", "event": "create", "label": labels})


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it, now (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return found


def made_by_this_process(event: dict[str, Any]) -> bool:
    """Whether the run that created this container is this process, or a pytest it started
    (a subprocess, an xdist controller, one in a PID namespace of its own): decided when the
    event arrives, while that run is alive."""
    labels = event.get("Actor", {}).get("Attributes", {})
    try:
        pid = int(labels.get("pytest-testserver.pid", ""))
    except ValueError:
        return False
    mine = descendants(os.getpid())
    pidns = labels.get("pytest-testserver.pidns", "")
    here = str(os.stat("/proc/self/ns/pid").st_ino)
    if pidns == here:
        return pid in mine
    namespaces = set()
    for below in mine:  # a run in its own PID namespace names its pid there
        with contextlib.suppress(OSError):
            namespaces.add(str(os.stat(f"/proc/{below}/ns/pid").st_ino))
    return pidns in namespaces


def run_births(api: Any) -> Events:
    """Every container of a run this process (or a pytest below it) makes, from now on."""
    return Events(
        api,
        {"type": "container", "event": "create", "label": ["pytest-testserver.run"]},
        where=made_by_this_process,
    )


def run_of_event(event: dict[str, Any]) -> str:
    return str(event.get("Actor", {}).get("Attributes", {}).get("pytest-testserver.run", ""))
