"""Unit tests of the pool's classes (pool, launcher, kept, sharing, cleanup, connection) on an
in-memory fake engine: no Docker, no socket, no process spawned.

Each test builds a real ``ServerPool`` from YAML text, hands it ``FakeEngine`` through
``connect``, and watches what the pool asks of the engine: which containers it creates, starts,
execs in and removes, in what order, and what it leaves for others. Only collaborators that
would spawn a process are stubbed (the watchdog, a kept container's idle watch).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from pytest_testserver import reaper, reuse
from pytest_testserver.config import ServerConfig, parse_config
from pytest_testserver.errors import (
    EngineError,
    EngineUnavailable,
    NotReady,
    ResetError,
    StartError,
    TestserverError,
)
from pytest_testserver.folders import StateDir
from pytest_testserver.identity import LABEL_RUN, LABEL_SERVER, RunContext
from pytest_testserver.liveness import Found
from pytest_testserver.locate import Location
from pytest_testserver.pool import ServerPool
from pytest_testserver.reuse import LABEL_REUSE, Hold, Keeper
from pytest_testserver.settings import RunSettings
from pytest_testserver.yamlfile import parse_yaml

if TYPE_CHECKING:
    from pytest_testserver.engine import Engine

SOURCE = "testservers.yaml"
IMAGE = "busybox:stable"
WAIT = 5.0  # bounds every wait on another thread: only a broken pool ever reaches it


@dataclass
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str]
    network: str | None = None
    running: bool = False


@dataclass
class FakeEngine:
    """The ``Engine`` methods the pool's classes call, in memory. ``calls`` logs each call as
    (method, container name or object name); the ``before_*`` hooks let a test block or fail
    one step of a start."""

    address: str = "unix:///run/fake-docker.sock"
    version: str = "Fake 1.0 (API 1.41)"
    kind: str = "docker"
    sets_domainname: bool = True
    rootless: bool = False
    images: dict[str, str] = field(default_factory=lambda: {IMAGE: "sha256:" + "b" * 64})
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    networks: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # id -> name
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    execs: list[tuple[str, list[str]]] = field(default_factory=list)
    before_create: Callable[[str], None] | None = None  # told the container's name
    before_start: Callable[[FakeContainer], None] | None = None
    exec_result: Callable[[list[str]], tuple[int, bytes]] = lambda argv: (0, b"")
    refuse_removal: bool = False
    closed: int = 0

    def __post_init__(self) -> None:
        self.location = Location(self.address, "a test's fake engine")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # what a test asks
    def called(self, method: str) -> list[str]:
        with self._lock:
            return [name for m, name in self.calls if m == method]

    def add(self, name: str, labels: Mapping[str, str], *, running: bool = True) -> str:
        """A container made by someone else (another run, another worker)."""
        container = FakeContainer(self._new_id("container"), name, dict(labels), running=running)
        with self._lock:
            self.containers[container.id] = container
        return container.id

    def add_network(self, name: str, labels: Mapping[str, str]) -> str:
        network = self._new_id("network")
        with self._lock:
            self.networks[network] = (name, dict(labels))
        return network

    def by_name(self, name: str) -> FakeContainer | None:
        with self._lock:
            return next((c for c in self.containers.values() if c.name == name), None)

    def id_of(self, name: str) -> str:
        found = self.by_name(name)
        assert found is not None, f"no container {name}"
        return found.id

    def _new_id(self, kind: str) -> str:
        return hashlib.sha256(f"{kind}-{next(self._ids)}".encode()).hexdigest()

    def _log(self, method: str, name: str) -> None:
        with self._lock:
            self.calls.append((method, name))

    def _find(self, container: str) -> FakeContainer:
        with self._lock:
            found = self.containers.get(container) or next(
                (c for c in self.containers.values() if c.name == container), None
            )
        if found is None:
            raise EngineError(f"No such container: {container}", 404)
        return found

    # the engine's API, as engine.py spells it
    def create_container(
        self,
        *,
        image: str,
        name: str,
        labels: Mapping[str, str],
        network: str | None,
        **rest: Any,
    ) -> str:
        self._log("create", name)
        if self.before_create is not None:
            self.before_create(name)
        if image not in self.images:
            raise EngineError(f"No such image: {image}", 404)
        if self.by_name(name) is not None:
            raise EngineError(f'Conflict. The container name "/{name}" is already in use', 409)
        container = FakeContainer(self._new_id("container"), name, dict(labels), network)
        with self._lock:
            self.containers[container.id] = container
        return container.id

    def start(self, container: str) -> None:
        found = self._find(container)
        self._log("start", found.name)
        if self.before_start is not None:
            self.before_start(found)
        found.running = True

    def inspect(self, container: str) -> dict[str, Any]:
        found = self._find(container)
        return {
            "State": {"Running": found.running, "ExitCode": 0 if found.running else 1},
            "Config": {"Labels": dict(found.labels)},
            "NetworkSettings": {
                "Ports": {},
                "Networks": {"bridge": {"IPAddress": "172.17.0.2", "Gateway": "172.17.0.1"}},
            },
        }

    def exec(self, container: str, argv: list[str]) -> tuple[int | None, bytes]:
        found = self._find(container)
        with self._lock:
            self.execs.append((found.name, list(argv)))
        if not found.running:
            return None, b""
        return self.exec_result(list(argv))

    def logs(self, container: str, tail: int | str = "all") -> str:
        return ""

    def remove_container(self, container: str) -> None:
        with self._lock:
            found = self.containers.get(container) or next(
                (c for c in self.containers.values() if c.name == container), None
            )
        self._log("remove", found.name if found else container)
        if self.refuse_removal:
            raise EngineError("removal refused by the fake engine", 500)
        if found is not None:
            with self._lock:
                self.containers.pop(found.id, None)

    def create_network(self, name: str, labels: Mapping[str, str]) -> str:
        self._log("create_network", name)
        return self.add_network(name, labels)

    def network_labels(self, network: str) -> dict[str, str]:
        with self._lock:
            if network not in self.networks:
                raise EngineError(f"network {network} not found", 404)
            return dict(self.networks[network][1])

    def remove_network(self, network: str) -> None:
        with self._lock:
            self.networks.pop(network, None)

    def make_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with self._lock:
            self.volumes.setdefault(name, dict(labels))

    def remove_volume(self, name: str) -> None:
        with self._lock:
            self.volumes.pop(name, None)

    def image_id(self, ref: str) -> str | None:
        self._log("image_id", ref)
        return self.images.get(ref)

    def image_exists(self, ref: str) -> bool:
        self._log("image_exists", ref)
        return ref in self.images

    def pull(
        self,
        ref: str,
        *,
        on_chunk: Callable[[Mapping[str, Any]], None] | None = None,
        platform: str | None = None,
    ) -> None:
        self._log("pull", ref)
        with self._lock:
            self.images[ref] = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()

    def repo_digest(self, ref: str) -> str:
        self._log("repo_digest", ref)
        return ""

    def objects(self, labels: Mapping[str, str] | None = None) -> list[Found]:
        def matches(have: Mapping[str, str]) -> bool:
            if labels is None:
                return LABEL_RUN in have
            return all(have.get(k) == v for k, v in labels.items())

        with self._lock:
            found = [
                Found("container", c.id, dict(c.labels))
                for c in self.containers.values()
                if matches(c.labels)
            ]
            found += [
                Found("network", n, dict(nl)) for n, (_, nl) in self.networks.items() if matches(nl)
            ]
        return found

    def deadline(self, at: float | None) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def thread(self, target: Any, *args: Any) -> threading.Thread:
        return threading.Thread(target=target, args=args)

    def routes_directly(self, ip: str, gateway: str) -> bool:
        return False

    def close(self) -> None:
        self.closed += 1


class FakeWatchdog:
    def __init__(self, run_id: str, environ: Mapping[str, str] | None) -> None:
        self.run_id = run_id
        self.environ = environ
        self.told: list[str] = []
        self.sweeps_asked: list[bool] = []

    def done(self, *, sweep_dead_runs: bool = False) -> None:
        self.told.append("done")
        self.sweeps_asked.append(sweep_dead_runs)

    def abandon(self) -> None:
        self.told.append("abandon")


@dataclass
class Spawned:
    """What the pool would have spawned: watchdogs, and idle watches (name, token)."""

    watchdogs: list[FakeWatchdog] = field(default_factory=list)
    idle_watches: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture(autouse=True)
def spawned(monkeypatch: pytest.MonkeyPatch) -> Spawned:
    """No process leaves these tests: the watchdog and the idle watch are recorded instead."""
    record = Spawned()

    def watchdog(run_id: str, engine_env: Mapping[str, str] | None = None) -> FakeWatchdog:
        dog = FakeWatchdog(run_id, engine_env)
        record.watchdogs.append(dog)
        return dog

    def idle_watch(
        folder: StateDir, name: str, token: str, engine_env: Mapping[str, str] | None
    ) -> int:
        record.idle_watches.append((name, token))
        return 0

    monkeypatch.setattr(reaper.Watchdog, "start", watchdog)
    # watch_idle's own bookkeeping (the record of the last use) runs; only the spawn is stubbed
    monkeypatch.setattr(reuse, "start_idle_watch", idle_watch)
    return record


def config_of(text: str, base: Path) -> ServerConfig:
    data = parse_yaml(textwrap.dedent(text).encode(), SOURCE)
    return parse_config(data, base=base, source=SOURCE)


@dataclass
class Made:
    pool: ServerPool
    events: list[tuple[str, str]]
    connects: list[int]

    def warnings(self) -> list[str]:
        return [text for kind, text in self.events if kind == "warning"]


MakePool = Callable[..., Made]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The run's private folder (what the xdist controller hands its workers)."""
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def make_pool(tmp_path: Path, state: Path) -> Iterator[MakePool]:
    """A pool on ``engine``; every pool made is closed at the test's end."""
    made: list[ServerPool] = []

    def make(
        text: str,
        engine: FakeEngine,
        *,
        run: str = "run1",
        worker: str | None = None,
        shared: bool = False,
        settings: RunSettings | None = None,
        state_dir: Path | None = None,
        connect: Callable[[], Engine] | None = None,
    ) -> Made:
        events: list[tuple[str, str]] = []
        connects: list[int] = []

        def counted() -> Engine:
            connects.append(1)
            return connect() if connect is not None else cast("Engine", engine)

        context = RunContext(run, worker=worker, state_dir=str(state_dir or state))
        pool = ServerPool(
            config_of(text, tmp_path),
            settings or RunSettings(),
            context,
            shared=shared,
            connect=counted,
            on_event=lambda kind, line: events.append((kind, line)),
        )
        made.append(pool)
        return Made(pool, events, connects)

    yield make
    for pool in made:
        pool.close()


def run_folder(state: Path, run: str = "run1") -> Path:
    return state / "runs" / run


def name_of(server: str, run: str = "run1") -> str:
    return f"testserver-{run}-{server}"


def raised(action: Callable[[], object]) -> TestserverError:
    with pytest.raises(TestserverError) as excinfo:
        action()
    return excinfo.value


class Background:
    """``action`` in a thread; ``result()`` waits for it (bounded) and gives what it raised."""

    def __init__(self, action: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self._action = action
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._action()
        except BaseException as exc:
            self.error = exc

    def result(self) -> BaseException | None:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the start did not end"
        return self.error


TWO = """
    servers:
      a: {image: busybox:stable}
      b: {image: busybox:stable}
"""

# scheduling


def test_links_start_before_the_server_that_needs_them(make_pool: MakePool) -> None:
    engine = FakeEngine()
    made = make_pool(
        """
        servers:
          db: {image: busybox:stable}
          cache: {image: busybox:stable}
          app: {image: busybox:stable, links: [db, cache]}
        """,
        engine,
    )
    handle = made.pool.get("app")

    steps = [(m, n) for m, n in engine.calls if m in ("create", "start")]
    assert steps.index(("start", name_of("db"))) < steps.index(("create", name_of("app")))
    assert steps.index(("start", name_of("cache"))) < steps.index(("create", name_of("app")))
    assert handle.container_id == engine.id_of(name_of("app"))
    # the three share the run's network, made once
    assert engine.called("create_network") == ["testserver-run1"]
    assert {c.network for c in engine.containers.values()} == set(engine.networks)
    assert set(made.pool.started()) == {"app", "db", "cache"}


def test_independent_servers_start_concurrently(make_pool: MakePool) -> None:
    engine = FakeEngine()
    # Each start waits until the other has begun: one after the other, the first would wait
    # for a second that never comes (BrokenBarrierError after WAIT).
    both = threading.Barrier(2, timeout=WAIT)

    def start(container: FakeContainer) -> None:
        both.wait()

    engine.before_start = start
    made = make_pool(TWO, engine)

    handles = made.pool.get_many(["a", "b"])

    assert sorted(engine.called("start")) == [name_of("a"), name_of("b")]
    assert handles["a"].container_id != handles["b"].container_id


def test_a_failed_start_is_remembered_and_raised_again_without_a_second_create(
    make_pool: MakePool,
) -> None:
    engine = FakeEngine()

    def create(name: str) -> None:
        if name == name_of("a"):
            raise EngineError("no space left on device", 500)

    engine.before_create = create
    made = make_pool(TWO, engine)

    made.pool.prestart(["a", "b"]).join(WAIT)
    first = raised(lambda: made.pool.get("a"))
    again = raised(lambda: made.pool.get_many(["a", "b"]))

    assert str(first) == (
        "testserver: server 'a': the container could not be created: no space left on device"
    )
    assert again is first
    assert engine.called("create").count(name_of("a")) == 1
    assert made.pool.get("b").container_id == engine.id_of(name_of("b"))


def test_an_image_that_is_here_costs_no_lookup_and_a_missing_one_is_pulled_once(
    make_pool: MakePool,
) -> None:
    engine = FakeEngine(images={})
    made = make_pool(TWO, engine)

    made.pool.get("a")
    made.pool.get("b")

    steps = [(m, n) for m, n in engine.calls if m in ("create", "image_exists", "pull")]
    assert steps == [
        ("create", name_of("a")),  # optimistic: refused for the missing image
        ("image_exists", IMAGE),
        ("pull", IMAGE),
        ("create", name_of("a")),
        ("create", name_of("b")),  # here now: no lookup at all
    ]


def test_a_leftover_of_this_run_with_the_servers_name_is_replaced(make_pool: MakePool) -> None:
    engine = FakeEngine()
    # a worker that died while starting this server left its container behind
    leftover = engine.add(name_of("a"), {LABEL_RUN: "run1", LABEL_SERVER: "a"}, running=False)
    made = make_pool(TWO, engine)

    handle = made.pool.get("a")

    assert leftover not in engine.containers
    assert engine.called("remove") == [name_of("a")]
    assert engine.called("create") == [name_of("a"), name_of("a")]
    assert handle.container_id in engine.containers


RESETTABLE = """
    servers:
      db: {image: busybox:stable, reset: [reset-db, "${WHO}"], env: {WHO: me}}
"""


def resets(engine: FakeEngine) -> list[tuple[str, list[str]]]:
    return [(name, argv) for name, argv in engine.execs if argv[0] == "reset-db"]


def test_reset_runs_before_each_test_after_the_containers_first(make_pool: MakePool) -> None:
    engine = FakeEngine()
    made = make_pool(RESETTABLE, engine)

    made.pool.get_many(["db"], test="t1")
    made.pool.get_many(["db"], test="t1")  # the same test asking again
    assert resets(engine) == []
    made.pool.get_many(["db"], test="t2")
    assert resets(engine) == [(name_of("db"), ["reset-db", "me"])]  # expanded
    made.pool.get_many(["db"])  # not for a test (a session fixture): no reset
    made.pool.get_many(["db"], test="t3")
    assert len(resets(engine)) == 2


def test_a_failing_reset_fails_the_test_with_its_output(make_pool: MakePool) -> None:
    engine = FakeEngine()
    engine.exec_result = lambda argv: (3, b"table locked\n")
    made = make_pool(RESETTABLE, engine)
    made.pool.get_many(["db"], test="t1")

    error = raised(lambda: made.pool.get_many(["db"], test="t2"))

    assert isinstance(error, ResetError)
    assert str(error).splitlines()[0] == (
        "testserver: server 'db': reset ['reset-db', '${WHO}'] exited with code 3"
    )
    assert "table locked" in str(error)


def test_a_fresh_container_per_test_is_never_reset(make_pool: MakePool) -> None:
    engine = FakeEngine()
    made = make_pool(
        """
        servers:
          db: {image: busybox:stable, reset: [reset-db], scope: function}
        """,
        engine,
    )

    def keys(test: str) -> dict[str, str]:
        return {"module": "m.py", "class": "m.py", "function": test}

    first = made.pool.get_many(["db"], test="t1", keys=keys("t1"))["db"]
    made.pool.release_scopes(keys("t2"))
    second = made.pool.get_many(["db"], test="t2", keys=keys("t2"))["db"]

    assert first.container_id != second.container_id
    assert engine.called("create") == [name_of("db.1"), name_of("db.2")]
    assert resets(engine) == []


# sharing between xdist workers


def test_a_worker_publishes_a_shared_server_and_another_adopts_it(
    make_pool: MakePool, state: Path
) -> None:
    engine = FakeEngine()
    a = make_pool(RESETTABLE, engine, worker="gw0", shared=True)
    b = make_pool(RESETTABLE, engine, worker="gw1", shared=True)

    mine = a.pool.get_many(["db"], test="t1")["db"]
    published = (run_folder(state) / "server-db.json").read_text()
    adopted = b.pool.get_many(["db"], test="t2")["db"]

    assert f'"container_id": "{mine.container_id}"' in published
    assert adopted.container_id == mine.container_id
    assert engine.called("create") == [name_of("db")]
    # Another worker's tests may have used it: reset before this worker's first test.
    assert resets(engine) == [(name_of("db"), ["reset-db", "me"])]
    # Neither worker removes it: it is the run's, and the controller's to sweep.
    assert a.pool.close() == []
    assert b.pool.close() == []
    assert engine.called("remove") == []
    assert mine.container_id in engine.containers


def test_a_worker_refuses_a_published_container_that_is_not_the_runs(
    make_pool: MakePool,
) -> None:
    engine = FakeEngine()
    forged = engine.add("someone-elses", {LABEL_RUN: "run2", LABEL_SERVER: "db"})
    b = make_pool(RESETTABLE, engine, worker="gw1", shared=True)
    b.pool.shared_servers().write("db", {"container_id": forged})

    error = raised(lambda: b.pool.get("db"))

    assert str(error) == (
        f"testserver: server 'db': the run's state names container {forged[:12]!r}, which is "
        "not this run's 'db': refusing to use it"
    )
    assert engine.called("create") == []


LINKED = """
    servers:
      db: {image: busybox:stable}
      app: {image: busybox:stable, links: [db]}
"""


@pytest.mark.parametrize("owner", ["run2", None], ids=["another-runs", "gone"])
def test_a_worker_refuses_a_run_network_that_is_not_the_runs(
    make_pool: MakePool, owner: str | None
) -> None:
    engine = FakeEngine()
    network = engine.add_network("testserver-run1", {LABEL_RUN: "run2"})
    if owner is None:
        engine.networks.clear()
    b = make_pool(LINKED, engine, worker="gw1", shared=True)
    b.pool.shared_servers().folder.write_json("network.json", {"id": network})

    error = raised(lambda: b.pool.get("db"))

    assert str(error) == (
        f"testserver: server 'db': the run's state names network {network[:12]!r}, which is "
        "not this run's: refusing to use it"
    )
    assert engine.called("create") == []
    assert engine.called("create_network") == []


def test_workers_make_the_run_network_once(make_pool: MakePool, state: Path) -> None:
    engine = FakeEngine()
    a = make_pool(LINKED, engine, worker="gw0", shared=True)
    b = make_pool(LINKED, engine, worker="gw1", shared=True)

    a.pool.get("db")
    b.pool.get("app")  # adopts db, joins the network a made

    assert engine.called("create_network") == ["testserver-run1"]
    (network,) = engine.networks
    assert f'"id": "{network}"' in (run_folder(state) / "network.json").read_text()
    assert [c.network for c in engine.containers.values()] == [network, network]
    a.pool.close()
    b.pool.close()
    assert list(engine.networks) == [network]  # the run's: the controller sweeps it


def test_a_failed_shared_start_is_published_and_raised_by_the_other_workers(
    make_pool: MakePool,
) -> None:
    engine = FakeEngine()

    def start(container: FakeContainer) -> None:
        raise EngineError("exec format error", 500)

    engine.before_start = start
    a = make_pool(RESETTABLE, engine, worker="gw0", shared=True)
    b = make_pool(RESETTABLE, engine, worker="gw1", shared=True)

    error_a = raised(lambda: a.pool.get("db"))
    error_b = raised(lambda: b.pool.get("db"))

    assert (
        str(error_a) == "testserver: server 'db': the container could not start: exec format error"
    )
    assert str(error_b) == str(error_a)
    assert engine.called("create") == [name_of("db")]  # b did not try again
    assert engine.containers == {}  # a removed what it made


def test_a_shared_server_needs_a_private_run_folder(make_pool: MakePool, tmp_path: Path) -> None:
    engine = FakeEngine()
    unsafe = tmp_path / "open"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    b = make_pool(RESETTABLE, engine, worker="gw1", shared=True, state_dir=unsafe)

    error = raised(lambda: b.pool.get("db"))

    assert str(error) == (
        f"testserver: server 'db': cannot be shared by the workers: no private folder for the "
        f"run: {unsafe} may be written by other users (mode 777)"
    )
    assert engine.called("create") == []


# kept containers (--testserver-reuse)

KEPT = """
    servers:
      db: {image: busybox:stable, reset: [reset-db]}
"""


@pytest.fixture
def reusing(tmp_path: Path) -> RunSettings:
    return RunSettings(reuse=True, project=str(tmp_path))


def kept_name(tmp_path: Path, server: str = "db") -> str:
    return Keeper.for_project(str(tmp_path)).name(server)


def test_a_later_run_adopts_the_kept_container_without_a_create(
    make_pool: MakePool, reusing: RunSettings, tmp_path: Path, spawned: Spawned
) -> None:
    engine = FakeEngine()
    first = make_pool(KEPT, engine, run="run1", settings=reusing)
    kept = first.pool.get_many(["db"], test="t1")["db"]
    assert first.pool.close() == []

    later = make_pool(KEPT, engine, run="run2", settings=reusing)
    adopted = later.pool.get_many(["db"], test="t1")["db"]

    assert adopted.container_id == kept.container_id
    assert engine.called("create") == [kept_name(tmp_path)]
    assert engine.called("remove") == []
    assert any("kept for reuse by later runs" in text for kind, text in first.events)
    assert any("reused in" in text for kind, text in later.events if kind == "ready")
    # an earlier run's tests used it: reset before this run's first test
    assert resets(engine) == [(kept_name(tmp_path), ["reset-db"])]
    # each run that takes it answers for its idle end
    assert [name for name, _ in spawned.idle_watches] == [kept_name(tmp_path)] * 2


def test_a_stale_kept_container_is_replaced(
    make_pool: MakePool, reusing: RunSettings, tmp_path: Path
) -> None:
    engine = FakeEngine()
    keeper = Keeper.for_project(str(tmp_path))
    stale = engine.add(kept_name(tmp_path), keeper.labels("db", "0" * 32))
    made = make_pool(KEPT, engine, settings=reusing)

    fresh = made.pool.get("db")

    assert stale not in engine.containers
    assert engine.called("remove") == [kept_name(tmp_path)]
    assert engine.called("create") == [kept_name(tmp_path)]
    labels = engine.containers[fresh.container_id].labels
    assert labels[LABEL_REUSE] not in ("", "0" * 32)
    assert LABEL_RUN not in labels  # no run's sweep may take it


def reuse_folder(state: Path) -> StateDir:
    return StateDir.open(state).child(reuse.FOLDER)


def test_release_records_the_last_use_and_lets_go_of_the_hold(
    make_pool: MakePool, reusing: RunSettings, tmp_path: Path, state: Path
) -> None:
    engine = FakeEngine()
    made = make_pool(KEPT, engine, settings=reusing)
    kept = made.pool.get("db")
    name = kept_name(tmp_path)
    folder = reuse_folder(state)
    try:
        assert Hold.take(folder, name, exclusive=True) is None  # held while the run uses it
        record = folder.read_json(f"{name}.json")
        folder.write_json(f"{name}.json", {**record, "last_used": 0})

        assert made.pool.close() == []

        after = folder.read_json(f"{name}.json")
        assert after["last_used"] > 0
        assert (after["container"], after["watcher"]) == (kept.container_id, record["watcher"])
        hold = Hold.take(folder, name, exclusive=True)
        assert hold is not None
        hold.release()
    finally:
        folder.close()
    assert kept.container_id in engine.containers  # left running for the next run


def test_a_second_run_at_the_same_time_gets_a_container_of_its_own(
    make_pool: MakePool, reusing: RunSettings, tmp_path: Path
) -> None:
    engine = FakeEngine()
    first = make_pool(KEPT, engine, run="run1", settings=reusing)
    second = make_pool(KEPT, engine, run="run2", settings=reusing)

    kept = first.pool.get_many(["db"], test="t1")["db"]
    own = second.pool.get_many(["db"], test="t1")["db"]

    assert own.container_id != kept.container_id
    assert engine.called("create") == [kept_name(tmp_path), name_of("db", "run2")]
    assert engine.containers[own.container_id].labels[LABEL_RUN] == "run2"
    assert second.warnings() == [
        f"db: the kept container {kept_name(tmp_path)} is in use by another run right now: "
        "this run starts one of its own, removed at its end"
    ]
    assert resets(engine) == []  # neither container was used by anyone else
    assert second.pool.close() == []
    assert engine.called("remove") == [name_of("db", "run2")]
    assert first.pool.close() == []
    assert set(engine.containers) == {kept.container_id}


def test_a_kept_server_shared_by_workers_is_held_by_each(
    make_pool: MakePool, reusing: RunSettings, tmp_path: Path, state: Path
) -> None:
    engine = FakeEngine()
    a = make_pool(KEPT, engine, worker="gw0", shared=True, settings=reusing)
    b = make_pool(KEPT, engine, worker="gw1", shared=True, settings=reusing)

    kept = a.pool.get("db")
    adopted = b.pool.get("db")  # a kept container carries no run label: adopted as kept
    assert adopted.container_id == kept.container_id
    assert engine.called("create") == [kept_name(tmp_path)]

    name = kept_name(tmp_path)
    folder = reuse_folder(state)
    try:
        assert a.pool.close() == []
        # b's tests still use it: no idle watch or clean may remove it yet
        assert Hold.take(folder, name, exclusive=True) is None
        assert b.pool.close() == []
        hold = Hold.take(folder, name, exclusive=True)
        assert hold is not None
        hold.release()
    finally:
        folder.close()
    assert engine.called("remove") == []


# cleanup


def fail_start(container: FakeContainer) -> None:
    raise EngineError("OCI runtime create failed", 500)


@pytest.mark.parametrize("reuse_it", [False, True], ids=["fresh", "kept"])
@pytest.mark.parametrize("step", ["start", "readiness"])
def test_a_start_that_fails_half_way_removes_its_container(
    make_pool: MakePool, tmp_path: Path, step: str, reuse_it: bool
) -> None:
    engine = FakeEngine()
    if step == "start":
        engine.before_start = fail_start
    else:
        engine.exec_result = lambda argv: (1, b"not yet")
    settings = RunSettings(reuse=reuse_it, project=str(tmp_path))
    made = make_pool(
        """
        servers:
          db:
            image: busybox:stable
            post_startup: {command: [ready-yet], retries: 1}
        """,
        engine,
        settings=settings,
    )

    error = raised(lambda: made.pool.get("db"))

    if step == "start":
        assert "could not start: OCI runtime create failed" in str(error)
    else:
        assert isinstance(error, NotReady)
    (created,) = engine.called("create")
    assert created == (kept_name(tmp_path) if reuse_it else name_of("db"))
    assert engine.called("remove") == [created]
    assert engine.containers == {}
    assert made.pool.close() == []  # nothing left to remove, nothing to report
    assert engine.called("remove") == [created]


def test_closing_while_a_start_runs_removes_the_container_made_after(
    make_pool: MakePool, spawned: Spawned
) -> None:
    engine = FakeEngine()
    creating, go = threading.Event(), threading.Event()

    def create(name: str) -> None:
        creating.set()
        assert go.wait(WAIT)

    engine.before_create = create
    made = make_pool(TWO, engine)

    start = Background(lambda: made.pool.get("a"))
    assert creating.wait(WAIT)
    made.pool.begin_close()
    assert made.pool.closing
    go.set()
    error = start.result()

    assert str(error) == (
        "testserver: server 'a': the test run ended while the server was starting"
    )
    assert engine.containers == {}
    assert engine.called("remove") == [name_of("a")]
    assert engine.called("start") == []
    assert made.pool.finish_close() == []
    assert [dog.told for dog in spawned.watchdogs] == [["done"]]


@pytest.mark.parametrize("how", ["kept", "shared"])
def test_closing_while_a_server_gets_ready_leaves_nothing_for_later(
    make_pool: MakePool, tmp_path: Path, state: Path, how: str
) -> None:
    """A container that would outlive this process (kept for later runs, published to the other
    workers) is not handed over once the run is closing: it goes with the rest."""
    engine = FakeEngine()
    checking, go = threading.Event(), threading.Event()

    def check(argv: list[str]) -> tuple[int, bytes]:
        checking.set()
        assert go.wait(WAIT)
        return 0, b""

    engine.exec_result = check
    text = """
        servers:
          db: {image: busybox:stable, post_startup: [ready-yet]}
    """
    if how == "kept":
        made = make_pool(text, engine, settings=RunSettings(reuse=True, project=str(tmp_path)))
    else:
        made = make_pool(text, engine, worker="gw0", shared=True)

    start = Background(lambda: made.pool.get("db"))
    assert checking.wait(WAIT)
    made.pool.begin_close()
    assert made.pool.finish_close() == []  # the removal does not wait for the start
    go.set()
    error = start.result()

    assert str(error) == (
        "testserver: server 'db': the test run ended while the server was starting"
    )
    assert engine.containers == {}
    if how == "shared":
        assert not (run_folder(state) / "server-db.json").exists()
        return
    name = kept_name(tmp_path)
    folder = reuse_folder(state)
    try:
        assert not folder.exists(f"{name}.json")  # no record of a container that is gone
        hold = Hold.take(folder, name, exclusive=True)  # nobody holds it any more
        assert hold is not None
        hold.release()
    finally:
        folder.close()


def test_close_reports_what_the_engine_would_not_remove(
    make_pool: MakePool, spawned: Spawned
) -> None:
    engine = FakeEngine()
    made = make_pool(TWO, engine)
    handles = made.pool.get_many(["a", "b"])
    engine.refuse_removal = True

    problems = made.pool.close()

    for name in ("a", "b"):
        short = handles[name].container_id[:12]
        assert (
            f"could not remove the container of {name!r} ({short}): "
            "removal refused by the fake engine"
        ) in problems
    assert problems[-1] == reaper.leftover_hint("run1")
    assert "run run1 left these behind" in problems[-1]
    assert len(problems) == 3
    # the watchdog sweeps what is left once this process is gone
    assert [dog.told for dog in spawned.watchdogs] == [["abandon"]]
    assert made.pool.finish_close() == []  # reported once


def test_a_clean_close_removes_everything_and_tells_the_watchdog(
    make_pool: MakePool, spawned: Spawned
) -> None:
    engine = FakeEngine()
    made = make_pool(LINKED, engine)
    made.pool.get("app")

    assert made.pool.close() == []

    assert engine.containers == {}
    assert engine.networks == {}  # after the containers that used it
    assert sorted(engine.called("remove")) == [name_of("app"), name_of("db")]
    assert [dog.told for dog in spawned.watchdogs] == [["done"]]
    assert engine.closed == 1


# the connection


def test_the_engine_is_connected_once_and_the_watchdog_started_once(
    make_pool: MakePool, spawned: Spawned
) -> None:
    engine = FakeEngine()
    made = make_pool(TWO, engine)

    made.pool.get_many(["a", "b"])
    made.pool.get("a")

    assert made.connects == [1]
    assert made.events[0] == ("engine", f"engine {engine.version} at {engine.address}")
    assert made.pool.used_engine
    made.pool.close()  # the watchdog is waited for by the close
    (dog,) = spawned.watchdogs
    assert (dog.run_id, dog.environ) == ("run1", engine.location.environ())


@pytest.mark.parametrize("shared", [True, False], ids=["xdist-worker", "keep"])
def test_no_watchdog_where_the_run_is_someone_elses_to_sweep(
    make_pool: MakePool, spawned: Spawned, shared: bool
) -> None:
    made = make_pool(
        TWO, FakeEngine(), worker="gw0", shared=shared, settings=RunSettings(keep=not shared)
    )
    made.pool.get("a")
    made.pool.close()
    assert spawned.watchdogs == []


def test_a_run_that_asks_for_no_server_never_connects(
    make_pool: MakePool, spawned: Spawned
) -> None:
    made = make_pool(TWO, FakeEngine())
    assert made.pool.close() == []
    assert made.connects == []
    assert not made.pool.used_engine
    assert spawned.watchdogs == []


def test_an_engine_that_cannot_be_reached_is_asked_once(make_pool: MakePool, state: Path) -> None:
    def connect() -> Engine:
        raise EngineUnavailable("unix:///nowhere.sock", "No such file or directory")

    made = make_pool(TWO, FakeEngine(), connect=connect)
    first = raised(lambda: made.pool.get("a"))
    second = raised(lambda: made.pool.get("b"))

    assert str(first) == (
        "testserver: server 'a': cannot reach the Docker engine at unix:///nowhere.sock: No "
        "such file or directory; start Docker or set DOCKER_HOST"
    )
    assert "server 'b'" in str(second)
    assert made.connects == [1]
    assert made.pool.close() == []


def test_a_scoped_server_must_be_asked_for_by_a_test(make_pool: MakePool) -> None:
    engine = FakeEngine()
    made = make_pool(
        """
        servers:
          db: {image: busybox:stable, scope: function}
        """,
        engine,
    )
    with pytest.raises(StartError, match="has scope: function, so only a test"):
        made.pool.get("db")
    assert engine.called("create") == []
