"""Unit tests of the run's small values that mutation testing (``nox -s mutants``) found unchecked:
the lease's time-to-live and its limits, who is judged alive or dead at the edges, the order a
dead run is removed in, the per-worker names, and a start's ``Launch`` value.

Pure logic, no engine, no pytester (test_run_state.py holds the rest of these modules' tests).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import pytest

from pytest_testserver import identity
from pytest_testserver.identity import (
    DEFAULT_LEASE_TTL,
    LABEL_KEPT,
    LABEL_LEASE,
    LABEL_LEASE_TTL,
    LABEL_RUN,
    LEASE_TTL_ENV,
    Owner,
    RunContext,
    lease_ttl,
    pid_alive,
    project_digest,
)
from pytest_testserver.launch import Launch, MaskedEnv
from pytest_testserver.liveness import MIN_LEASE_TTL, Found, dead_runs, lease_expired, removal_order

NOW = 1_000_000.0


def found(
    kind: str,
    run: str,
    owner: Owner | None,
    created: float = NOW,
    ttl: str | None = "90",
    **extra: str,
) -> Found:
    labels = {LABEL_RUN: run, **(owner.labels() if owner else {}), **extra}
    if ttl is not None:
        labels[LABEL_LEASE_TTL] = ttl
    return Found(kind, f"{kind}-{run}-{created}-{sorted(extra)}", labels, created)


@pytest.fixture
def here() -> Owner:
    return Owner.this_process()


@pytest.fixture
def elsewhere(here: Owner) -> Owner:
    """An owner in another PID namespace: only its leases can say it is dead."""
    return dataclasses.replace(here, pidns="4026531999", pid=1)


# --- the lease's time-to-live --------------------------------------------------------------------


def test_the_lease_ttl_is_90_seconds_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEASE_TTL_ENV, raising=False)
    assert lease_ttl() == DEFAULT_LEASE_TTL == 90


@pytest.mark.parametrize(
    ("value", "expected"),
    [("30", 30), ("3", 3), ("1", 3), ("0", 3), ("86399", 86399), ("86400", 90), ("", 90)],
)
def test_the_lease_ttl_from_the_environment_is_at_least_3_and_below_a_day(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv(LEASE_TTL_ENV, value)
    assert lease_ttl() == expected


@pytest.mark.parametrize("value", ["-5", "1e3", "²", "ten", " 30"])
def test_a_lease_ttl_that_is_not_a_plain_number_is_the_default(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(LEASE_TTL_ENV, value)
    assert lease_ttl() == 90


@pytest.mark.parametrize(
    ("label", "expected"),
    [("90", 90), ("1", MIN_LEASE_TTL), ("86399", 86399), ("86400", None), ("x", None)],
)
def test_an_objects_ttl_label_is_read_within_its_limits(label: str, expected: int | None) -> None:
    assert found("volume", "r1", None, ttl=label).ttl() == expected


def test_an_object_of_exactly_its_ttl_is_expired_and_one_second_younger_is_not(
    elsewhere: Owner,
) -> None:
    """The edge of a lease: an object ``ttl`` seconds old no longer keeps its run alive."""
    assert lease_expired([found("volume", "r1", elsewhere, NOW - 90, lease="1")], NOW)
    assert not lease_expired([found("volume", "r1", elsewhere, NOW - 89, lease="1")], NOW)


# --- dead_runs -----------------------------------------------------------------------------------


def test_a_run_that_kept_everything_does_not_hide_the_dead_runs_after_it(elsewhere: Owner) -> None:
    old = NOW - 1000
    kept = [found("container", "kept", elsewhere, old, **{LABEL_KEPT: "1"})]
    gone = [found("container", "gone", elsewhere, old), found("volume", "gone", elsewhere, old)]
    dead = dead_runs([*kept, *gone], NOW, Owner.this_process())
    assert list(dead) == ["gone"]


# --- removal_order -------------------------------------------------------------------------------


def test_removal_goes_containers_networks_then_volumes(here: Owner) -> None:
    volume = found("volume", "r1", here, **{LABEL_LEASE: "1"})
    network = found("network", "r1", here)
    container = found("container", "r1", here)
    assert removal_order([volume, network, container]) == [[container], [network], [volume]]


def test_an_object_of_an_unknown_kind_is_removed_last(here: Owner) -> None:
    other = found("secret", "r1", here)
    container = found("container", "r1", here)
    assert removal_order([other, container]) == [[container], [other]]


# --- identity ------------------------------------------------------------------------------------


def test_a_process_of_another_user_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """kill(pid, 0) refused: the process exists (another user's run), its objects stay."""

    def refuse(pid: int, sig: int) -> None:
        assert sig == 0
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(identity.os, "kill", refuse)
    assert pid_alive(12345)


def test_this_process_is_alive_and_an_impossible_pid_is_not() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(1 << 40)


def test_a_worker_server_is_named_per_worker_and_a_run_server_per_run() -> None:
    context = RunContext("abc123", worker="gw1")
    assert context.scoped("worker") == "testserver-abc123-gw1"
    assert context.scoped("run") == "testserver-abc123"
    assert RunContext("abc123").scoped("worker") == "testserver-abc123"


def test_the_project_digest_is_16_hex_digits_of_the_real_path(tmp_path: Any) -> None:
    digest = project_digest(str(tmp_path))
    assert len(digest) == 16
    assert int(digest, 16) >= 0
    (tmp_path / "link").symlink_to(tmp_path)
    assert project_digest(str(tmp_path / "link")) == digest


def test_a_run_id_is_10_hex_digits() -> None:
    run_id = identity.new_run_id()
    assert len(run_id) == 10
    assert int(run_id, 16) >= 0


# --- launch --------------------------------------------------------------------------------------


def test_an_environments_repr_shows_its_keys_never_its_values() -> None:
    env = MaskedEnv({"TOKEN": "s3cret-value", "MODE": "dev"})
    assert repr(env) == "<environment TOKEN, MODE>"
    assert "s3cret" not in f"{env!r} {[env]!r}"


def test_a_created_launch_carries_its_container_deadline_and_note() -> None:
    spec: Any = type("Spec", (), {"name": "web", "image_timeout": 300.0})()
    started = time.monotonic()
    launch = Launch(spec, "web", engine=None, env=MaskedEnv(), redact=str, started=started)  # type: ignore[arg-type]
    assert launch.name == "web"
    assert launch.image_deadline == started + 300.0
    created = launch.created("c0ffee", started + 30.0, "image built in 2 s")
    assert (created.container, created.deadline, created.note) == (
        "c0ffee",
        started + 30.0,
        "image built in 2 s",
    )
    assert launch.container == ""  # the value before stays as it was
    assert launch.created("c0ffee", 1.0).note == ""


@pytest.mark.parametrize(("pid", "kept"), [("2147483647", True), ("2147483648", False)])
def test_an_owner_pid_label_must_be_below_2_to_the_31(here: Owner, pid: str, kept: bool) -> None:
    """A forged pid no process can have names no owner (os.kill would overflow: "dead")."""
    labels = {**here.labels(), identity.LABEL_PID: pid}
    owner = Owner.from_labels(labels)
    assert (owner is not None) == kept
    if owner is not None:
        assert owner.pid == int(pid)
