"""How tests reach their servers (reach.py): the decision on recorded answers (no engine), the
settings that steer it, and the engine calls it relies on (real engine)."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import pytest

from pytest_testserver.errors import ConfigError, EngineError, TestserverError
from pytest_testserver.reach import Reach, remote_host_address, sibling_of
from pytest_testserver.settings import RunSettings
from pytest_testserver.whereami import Inside
from tests.test_config import settings_from

ID = "aaadc781cdf42ad696b800d7619484774b9c44832c58835efb5f05650945ac0e"
IN_DOCKER = Inside("docker", ID, "/.dockerenv, id from /proc/self/mountinfo")


def inspect_of(mode: str = "default", networks: tuple[str, ...] = ("bridge",)) -> dict[str, Any]:
    return {
        "Id": ID,
        "State": {"Running": True},
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": {n: {"IPAddress": "172.17.0.2"} for n in networks}},
    }


class FakeEngine:
    """Records every engine call the decision makes."""

    def __init__(
        self, address: str = "unix:///var/run/docker.sock", info: dict[str, Any] | None = None
    ) -> None:
        self.address = address
        self.info = info
        self.calls: list[tuple[str, ...]] = []

    def inspect(self, container: str) -> dict[str, Any]:
        self.calls.append(("inspect", container))
        if self.info is None:
            raise EngineError("No such container", status=404)
        return self.info

    def connect_network(self, network: str, container: str) -> None:
        self.calls.append(("connect", network, container))


def reach(
    settings: RunSettings | None = None, inside: Inside = IN_DOCKER, override: str = "auto"
) -> tuple[Reach, list[int]]:
    asked: list[int] = []

    def where() -> Inside:
        asked.append(1)
        return inside

    return Reach(settings or RunSettings(), override=override, inside=where), asked


# --- the remote engine's address --------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("tcp://10.202.0.2:2375", "10.202.0.2"),
        ("tcp://[fd00::2]:2376", "fd00::2"),
        ("ssh://root@10.200.0.2", "10.200.0.2"),
        ("tcp://localhost:2375", "127.0.0.1"),
        ("unix:///var/run/docker.sock", None),
        ("npipe:////./pipe/docker_engine", None),
    ],
)
def test_the_remote_host_address(address: str, expected: str | None) -> None:
    assert remote_host_address(address) == expected


def test_a_name_that_does_not_resolve_gives_no_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert remote_host_address("tcp://docker:2375") is None


def test_a_name_resolves_to_its_ipv4_address_first(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::5", 0, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("172.18.0.5", 0)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)
    assert remote_host_address("tcp://docker:2375") == "172.18.0.5"


# --- whether the tests' container is a sibling ------------------------------------------------


def test_a_container_on_a_bridge_is_a_sibling() -> None:
    route = sibling_of(inspect_of(networks=("jobnet", "bridge")), IN_DOCKER)
    assert route is not None
    assert route.joins
    assert (route.container, route.networks) == (ID, ("bridge", "jobnet"))
    assert "aaadc781cdf4" in route.why
    assert "bridge, jobnet" in route.why


@pytest.mark.parametrize("mode", ["host", "none", f"container:{'b' * 64}"])
def test_a_container_in_another_namespace_publishes(mode: str) -> None:
    # --network host: the engine's loopback is the tests' own; container:X cannot join networks
    assert sibling_of(inspect_of(mode), IN_DOCKER) is None


# --- the decision -------------------------------------------------------------------------------


def test_a_plain_machine_asks_the_engine_nothing() -> None:
    decide, _ = reach(inside=Inside())
    engine = FakeEngine()
    route = decide.route(engine)  # type: ignore[arg-type]
    assert (route.mode, route.bind_address) == ("published", "127.0.0.1")
    assert engine.calls == []
    decide.join(engine, "net")  # type: ignore[arg-type]
    assert engine.calls == []


def test_a_sibling_is_asked_about_once_and_joins_each_network_once() -> None:
    decide, asked = reach()
    engine = FakeEngine(info=inspect_of())
    for _ in range(3):
        assert decide.route(engine).joins  # type: ignore[arg-type]
    for network in ("n1", "n1", "n2"):
        decide.join(engine, network)  # type: ignore[arg-type]
    assert engine.calls == [("inspect", ID), ("connect", "n1", ID), ("connect", "n2", ID)]
    assert asked == [1]


def test_a_container_of_another_engine_publishes_on_that_engines_host() -> None:
    # GitLab's dind: the job container is not the dind engine's; its host is the service's
    decide, _ = reach()
    engine = FakeEngine("tcp://10.202.0.2:2375")
    route = decide.route(engine)  # type: ignore[arg-type]
    assert (route.mode, route.bind_address) == ("published", "10.202.0.2")
    assert engine.calls == [("inspect", ID)]
    assert decide.settings(engine).bind_address == "10.202.0.2"  # type: ignore[arg-type]


def test_a_remote_engine_on_loopback_keeps_loopback() -> None:
    decide, _ = reach(inside=Inside())
    route = decide.route(FakeEngine("tcp://127.0.0.1:2375"))  # type: ignore[arg-type]
    assert route.bind_address == "127.0.0.1"


def test_an_explicit_bind_address_wins_over_everything() -> None:
    settings = RunSettings(bind_address="0.0.0.0", bind_address_set=True)
    decide, asked = reach(settings)
    engine = FakeEngine("tcp://10.202.0.2:2375", info=inspect_of())
    route = decide.route(engine)  # type: ignore[arg-type]
    assert (route.mode, route.bind_address) == ("published", "0.0.0.0")
    assert engine.calls == []
    assert asked == []


def test_the_override_published_asks_nothing() -> None:
    decide, asked = reach(override="published")
    engine = FakeEngine(info=inspect_of())
    assert decide.route(engine).mode == "published"  # type: ignore[arg-type]
    assert engine.calls == []
    assert asked == []


def test_the_override_network_outside_a_sibling_is_an_error() -> None:
    decide, _ = reach(inside=Inside(), override="network")
    with pytest.raises(TestserverError, match=r"TESTSERVER_REACH=network, but the tests do not"):
        decide.route(FakeEngine())  # type: ignore[arg-type]


# --- the settings -------------------------------------------------------------------------------


def test_the_bind_address_is_set_only_when_someone_set_it() -> None:
    assert not settings_from().bind_address_set
    assert settings_from({"testserver_bind_address": "127.0.0.1"}).bind_address_set
    env = {"TESTSERVER_BIND_ADDRESS": "0.0.0.0"}
    assert settings_from(environ=env).bind_address_set


def test_the_reach_setting() -> None:
    assert settings_from().reach == "auto"
    assert settings_from(environ={"TESTSERVER_REACH": "Network"}).reach == "network"
    with pytest.raises(ConfigError, match=r"^\$TESTSERVER_REACH: 'near' is not one of auto"):
        settings_from(environ={"TESTSERVER_REACH": "near"})


# --- the engine calls (real engine) -------------------------------------------------------------


def test_a_network_with_a_container_still_on_it_is_removed(engine: Any) -> None:
    # what the reaper and the watchdog meet when a killed job's container had joined the run's
    # network: the engine refuses ("active endpoints") until it is disconnected
    from pytest_testserver.engine import Engine

    ours = Engine.connect()
    labels = {"pytest-testserver.run": f"reach-{uuid.uuid4().hex[:8]}"}
    labels["pytest-testserver.pid"] = str(os.getpid())
    network = ours.create_network(f"testserver-reach-{uuid.uuid4().hex[:8]}", labels)
    job = engine.create_container(
        "busybox:stable", ["sleep", "60"], labels=labels, host_config=engine.create_host_config()
    )["Id"]
    try:
        engine.start(job)
        ours.connect_network(network, job)
        ours.connect_network(network, job)  # joined already: nothing to do
        ours.remove_network(network)
        assert not engine.networks(ids=[network])
    finally:
        engine.remove_container(job, force=True)
        ours.remove_network(network)
        ours.close()
