"""Pure unit tests of a run's identity, its private folder, its locks and who is known dead.

No engine, no pytester: ``run`` (``Owner``, ``process_start``, ``RunContext``, ``StateDir``,
``user_state_dir``, ``hold_lock`` and lock tidying), ``liveness`` (``dead_runs`` over hand-made
``Found`` objects) and ``runfolder`` (dead run folders, forged shared-server files).

The tests run as root: they never rely on permission bits denying access, only on the checks the
code makes (owner uid, mode bits, symlinks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_testserver.errors import LockTimeout, UnsafeFolder
from pytest_testserver.folders import StateDir, discard, user_state_dir
from pytest_testserver.identity import (
    LABEL_BOOT,
    LABEL_HOST,
    LABEL_KEPT,
    LABEL_LEASE,
    LABEL_LEASE_TTL,
    LABEL_PID,
    LABEL_PIDNS,
    LABEL_RUN,
    LABEL_SERVER,
    LABEL_STARTED,
    Owner,
    RunContext,
    process_start,
)
from pytest_testserver.liveness import Found, dead_runs, removal_order
from pytest_testserver.locks import (
    LOCK_FILE_AGE,
    LOCKS,
    MAX_LOCK_FILES,
    hold_lock,
    tidy_locks,
    try_remove_lock,
)
from pytest_testserver.runfolder import SharedServers, dead_run_folders, make_run_folder

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_700_000_000.0  # the engine's clock, for hand-made objects
OTHER_UID = 12345


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def here() -> Owner:
    return Owner.this_process()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been waited for."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def dead_owner(here: Owner, dead_pid: int) -> Owner:
    """An owner on this host, PID namespace and boot whose process is gone."""
    return dataclasses.replace(here, pid=dead_pid)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDir]:
    folder = StateDir.open(tmp_path / "state")
    yield folder
    folder.close()


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``user_state_dir`` looks for its folder here."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


def usual_folder(base: Path) -> Path:
    return base / f"pytest-testserver-{os.getuid()}"


def outside_folder(tmp_path: Path) -> Path:
    """A folder outside the state folder, with a file whose content must survive."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    return outside


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


_ids = itertools.count()


def found(
    kind: str,
    run: str,
    owner: Owner | None,
    created: float = NOW,
    ttl: int | None = 90,
    *,
    lease: bool = False,
    kept: bool = False,
    **extra: str,
) -> Found:
    labels = {LABEL_RUN: run, **(owner.labels() if owner else {}), **extra}
    if ttl is not None:
        labels[LABEL_LEASE_TTL] = str(ttl)
    if lease:
        labels[LABEL_LEASE] = "1"
    if kept:
        labels[LABEL_KEPT] = "1"
    return Found(kind, f"{kind}-{run}-{next(_ids)}", labels, created)


def a_run(run: str, owner: Owner, created: float = NOW, ttl: int | None = 90) -> list[Found]:
    """What a run leaves on the engine: a container, a network and a lease."""
    return [
        found("container", run, owner, created, ttl),
        found("network", run, owner, created, ttl),
        found("volume", run, owner, created, ttl, lease=True),
    ]


def ids(objects: list[Found]) -> set[str]:
    return {item.id for item in objects}


# --- Owner and process_start ----------------------------------------------------------------


def test_this_process_describes_this_process(here: Owner) -> None:
    assert here.pid == os.getpid()
    assert here.host == socket.gethostname()
    assert here.pidns
    assert here.boot
    assert here.started.isdigit()
    assert here.started == process_start(os.getpid())


def test_owner_labels_round_trip(here: Owner) -> None:
    labels = here.labels()
    assert set(labels) == {LABEL_HOST, LABEL_PID, LABEL_PIDNS, LABEL_BOOT, LABEL_STARTED}
    assert Owner.from_labels(labels) == here


@given(
    host=st.text(),
    pid=st.integers(min_value=0, max_value=2**31 - 1),
    pidns=st.text(),
    boot=st.text(),
    started=st.text(),
)
def test_any_owner_survives_its_labels(
    host: str, pid: int, pidns: str, boot: str, started: str
) -> None:
    owner = Owner(host, pid, pidns, boot, started)
    assert Owner.from_labels(owner.labels()) == owner


@pytest.mark.parametrize("pid", [None, "", "abc", "-1", "1.5", " 12"])
def test_owner_from_labels_without_a_pid_is_none(here: Owner, pid: str | None) -> None:
    labels = {k: v for k, v in here.labels().items() if k != LABEL_PID}
    if pid is not None:
        labels[LABEL_PID] = pid
    assert Owner.from_labels(labels) is None


@pytest.mark.parametrize(
    "pid", ["²", "¹²³", "①"], ids=["superscript-2", "superscript-123", "circled-1"]
)
def test_owner_from_labels_with_a_non_decimal_digit_pid_is_none(here: Owner, pid: str) -> None:
    # str.isdigit() accepts these, int() does not: forged labels must not raise.
    assert Owner.from_labels({**here.labels(), LABEL_PID: pid}) is None


def test_this_process_is_not_known_dead(here: Owner) -> None:
    assert not here.known_dead(here)
    assert not Owner.this_process().known_dead()


def test_owner_with_a_dead_pid_here_is_known_dead(dead_owner: Owner, here: Owner) -> None:
    assert dead_owner.known_dead(here)
    assert dead_owner.known_dead()  # judged from this process by default


def test_owner_whose_pid_now_runs_another_process_is_known_dead(here: Owner) -> None:
    reused = dataclasses.replace(here, started=str(int(here.started) + 1))
    assert reused.known_dead(here)


@pytest.mark.parametrize(
    "elsewhere",
    [{"host": "another-host"}, {"pidns": "4026531999"}, {"boot": "another-boot"}],
    ids=["host", "pidns", "boot"],
)
def test_dead_pid_of_another_place_is_not_known_dead(
    dead_owner: Owner, here: Owner, elsewhere: dict[str, str]
) -> None:
    assert not dataclasses.replace(dead_owner, **elsewhere).known_dead(here)


@pytest.mark.parametrize("missing", ["pidns", "boot", "started"])
def test_owner_with_a_missing_field_is_not_known_dead(
    dead_owner: Owner, here: Owner, missing: str
) -> None:
    # Even when this process lacks the same field (so the places compare equal).
    owner = dataclasses.replace(dead_owner, **{missing: ""})
    assert not owner.known_dead(dataclasses.replace(here, **{missing: ""}))


@pytest.mark.parametrize("pid", [2**31, 2**70])
def test_owner_with_an_impossible_pid_does_not_raise(here: Owner, pid: int) -> None:
    # Forged labels (any local Docker user can label an object) may name any number.
    owner = dataclasses.replace(here, pid=pid)
    assert owner.known_dead(here) in (True, False)


@pytest.mark.parametrize("name", ["a b) c", "x) R 1 2 3 4 5"])
def test_process_start_is_not_confused_by_its_command_name(tmp_path: Path, name: str) -> None:
    program = tmp_path / name
    shutil.copy("/bin/sleep", program)
    with subprocess.Popen(["sleep", "5"], executable=program) as proc:
        try:
            text = Path(f"/proc/{proc.pid}/stat").read_text()
            prefix = f"{proc.pid} ({name}) "
            assert text.startswith(prefix)
            expected = text[len(prefix) :].split()[19]  # field 22, starttime
            assert process_start(proc.pid) == expected
            owner = dataclasses.replace(Owner.this_process(), pid=proc.pid, started=expected)
            assert not owner.known_dead()
        finally:
            proc.kill()


def test_process_start_of_a_missing_process_is_empty(dead_pid: int) -> None:
    assert process_start(dead_pid) == ""


# --- RunContext -----------------------------------------------------------------------------


def test_run_labels_name_the_run_and_its_owner(here: Owner) -> None:
    labels = RunContext("r1", owner=here).labels()
    assert labels == {LABEL_RUN: "r1", **here.labels()}


def test_run_labels_add_lease_ttl_kept_and_server(here: Owner) -> None:
    labels = RunContext("r1", owner=here, kept=True, lease_ttl=30).labels("db")
    assert labels[LABEL_LEASE_TTL] == "30"
    assert labels[LABEL_KEPT] == "1"
    assert labels[LABEL_SERVER] == "db"
    assert Owner.from_labels(labels) == here


# --- user_state_dir: the per-user folder, and planted ones ----------------------------------


def test_user_state_dir_makes_a_private_usual_folder(temp_dir: Path) -> None:
    state, warning = user_state_dir()
    try:
        assert warning is None
        assert state.path == usual_folder(temp_dir)
        assert not state.fresh
        assert mode(state.path) == 0o700
    finally:
        discard(state)
    assert usual_folder(temp_dir).is_dir()  # the usual folder outlives the run


def plant(kind: str, usual: Path, outside: Path) -> None:
    if kind == "symlink":
        usual.symlink_to(outside, target_is_directory=True)
        return
    usual.mkdir()
    (usual / "bait").write_text("planted")
    if kind == "world-writable":
        os.chmod(usual, 0o777)
    elif kind == "group-writable":
        os.chmod(usual, 0o770)
    elif kind == "other-user":
        os.chmod(usual, 0o700)
        os.chown(usual, OTHER_UID, OTHER_UID)


PLANTED = {
    "symlink": "is a symlink",
    "world-writable": "may be written by other users (mode 777)",
    "group-writable": "may be written by other users (mode 770)",
    "other-user": f"belongs to uid {OTHER_UID}",
}


@pytest.mark.parametrize(("kind", "why"), PLANTED.items(), ids=PLANTED)
def test_planted_usual_folder_gives_a_fresh_private_one(
    temp_dir: Path, kind: str, why: str
) -> None:
    usual = usual_folder(temp_dir)
    outside = outside_folder(temp_dir)
    plant(kind, usual, outside)
    before = os.lstat(usual)
    state, warning = user_state_dir()
    try:
        assert state.fresh
        assert state.path.parent == temp_dir
        assert state.path != usual
        assert mode(state.path) == 0o700
        assert os.stat(state.path).st_uid == os.getuid()
        assert warning is not None
        assert str(usual) in warning
        assert why in warning
        assert str(state.path) in warning
    finally:
        discard(state)
    assert not state.path.exists()  # the fresh folder goes with the run
    after = os.lstat(usual)  # the planted folder is as it was
    assert (after.st_mode, after.st_uid, after.st_ino) == (
        before.st_mode,
        before.st_uid,
        before.st_ino,
    )
    if kind == "symlink":
        assert os.readlink(usual) == str(outside)
    else:
        assert os.listdir(usual) == ["bait"]
    assert os.listdir(outside) == ["precious"]
    assert (outside / "precious").read_text() == "keep me"


def test_planted_usual_folder_without_fallback_raises(temp_dir: Path) -> None:
    plant("world-writable", usual_folder(temp_dir), temp_dir)
    with pytest.raises(UnsafeFolder, match="may be written by other users"):
        user_state_dir(fallback=False)
    assert sorted(os.listdir(temp_dir)) == [usual_folder(temp_dir).name]  # nothing fresh made


def test_folder_handed_over_is_used_as_it_is_or_not_at_all(tmp_path: Path) -> None:
    given_folder = tmp_path / "given"
    given_folder.mkdir(mode=0o700)
    state, warning = user_state_dir(str(given_folder))
    try:
        assert (state.path, state.fresh, warning) == (given_folder, False, None)
    finally:
        state.close()
    os.chmod(given_folder, 0o777)
    with pytest.raises(UnsafeFolder):
        user_state_dir(str(given_folder))


def test_discard_removes_a_fresh_folder(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir(mode=0o700)
    (fresh / "runs").mkdir()
    (fresh / "runs" / "owner.json").write_text("{}")
    discard(StateDir(fresh, os.open(fresh, os.O_RDONLY), fresh=True))
    assert not fresh.exists()


def test_discard_keeps_a_usual_folder(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "usual")
    state.touch("kept")
    discard(state)
    assert os.listdir(tmp_path / "usual") == ["kept"]


# --- StateDir: names resolved inside it, links refused --------------------------------------


def test_child_is_made_private(state: StateDir) -> None:
    child = state.child("runs")
    try:
        assert child.path == state.path / "runs"
        assert mode(child.path) == 0o700
    finally:
        child.close()


def test_symlinked_child_is_refused(state: StateDir, tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    (state.path / "runs").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeFolder, match="symlink"):
        state.child("runs")
    assert os.listdir(outside) == ["precious"]


def test_child_writable_by_others_is_refused(state: StateDir) -> None:
    (state.path / "runs").mkdir()
    os.chmod(state.path / "runs", 0o777)
    with pytest.raises(UnsafeFolder, match="may be written by other users"):
        state.child("runs")


def test_read_text_and_read_json_of_a_missing_file_are_none(state: StateDir) -> None:
    assert state.read_text("missing") is None
    assert state.read_json("missing.json") is None


def test_read_text_refuses_a_symlink(state: StateDir, tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    (state.path / "owner.json").symlink_to(outside / "precious")
    with pytest.raises(UnsafeFolder):
        state.read_text("owner.json")


def test_read_json_refuses_a_symlink(state: StateDir, tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    (outside / "data.json").write_text('{"container_id": "planted"}')
    (state.path / "owner.json").symlink_to(outside / "data.json")
    with pytest.raises(UnsafeFolder, match=str(state.path / "owner.json")):
        state.read_json("owner.json")


def test_read_text_refuses_another_users_file(state: StateDir) -> None:
    (state.path / "owner.json").write_text("{}")
    os.chown(state.path / "owner.json", OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeFolder, match="not a file of this user"):
        state.read_text("owner.json")


def test_read_json_of_corrupt_json_names_the_file(state: StateDir) -> None:
    (state.path / "web.json").write_text('{"container_id": ')
    with pytest.raises(UnsafeFolder, match="cannot be read") as caught:
        state.read_json("web.json")
    assert str(state.path / "web.json") in str(caught.value)
    assert "\n" not in str(caught.value)


def test_write_json_replaces_the_file_and_leaves_no_temp_file(state: StateDir) -> None:
    state.write_json("web.json", {"container_id": "one"})
    state.write_json("web.json", {"container_id": "two"})
    assert state.read_json("web.json") == {"container_id": "two"}
    assert state.names() == ["web.json"]
    assert mode(state.path / "web.json") == 0o600


def test_write_json_that_fails_leaves_the_old_file_and_no_temp_file(state: StateDir) -> None:
    state.write_json("web.json", {"container_id": "one"})
    with pytest.raises(TypeError):
        state.write_json("web.json", {"container_id": object()})
    assert state.read_json("web.json") == {"container_id": "one"}
    assert state.names() == ["web.json"]


def test_write_json_over_a_symlink_replaces_the_link_not_its_target(
    state: StateDir, tmp_path: Path
) -> None:
    outside = outside_folder(tmp_path)
    (state.path / "web.json").symlink_to(outside / "precious")
    state.write_json("web.json", {"container_id": "one"})
    assert not (state.path / "web.json").is_symlink()
    assert (outside / "precious").read_text() == "keep me"


def test_remove_tree_removes_links_never_what_they_point_to(
    state: StateDir, tmp_path: Path
) -> None:
    outside = outside_folder(tmp_path)
    tree = state.path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "file").write_text("x")
    (tree / "sub" / "file").write_text("x")
    (tree / "to-folder").symlink_to(outside, target_is_directory=True)
    (tree / "sub" / "to-file").symlink_to(outside / "precious")
    state.remove_tree("tree")
    assert not tree.exists()
    assert os.listdir(outside) == ["precious"]
    assert (outside / "precious").read_text() == "keep me"


def test_remove_tree_of_a_symlink_removes_only_the_link(state: StateDir, tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    (state.path / "tree").symlink_to(outside, target_is_directory=True)
    state.remove_tree("tree")
    assert not (state.path / "tree").is_symlink()
    assert os.listdir(outside) == ["precious"]


def test_remove_tree_of_a_missing_folder_does_nothing(state: StateDir) -> None:
    state.remove_tree("missing")
    assert state.names() == []


# --- hold_lock across processes -------------------------------------------------------------

HOLDER = """
import sys
from pytest_testserver.folders import StateDir
from pytest_testserver.locks import hold_lock

folder = StateDir.open(sys.argv[1])
with hold_lock(folder, sys.argv[2], what="test", run="holder-run", timeout=5):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(state: StateDir) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``state/x.lock`` until its stdin is closed."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state.path), "x.lock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        try:
            assert proc.stdout.readline() == "held\n"
            yield proc
        finally:
            proc.stdin.close()
            proc.wait(5)


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()


def test_waiter_times_out_naming_the_lock_and_its_holder(
    state: StateDir, holder: subprocess.Popen[str]
) -> None:
    started = time.monotonic()
    with (
        pytest.raises(LockTimeout) as caught,
        hold_lock(state, "x.lock", what="test", run="waiter", timeout=0.5),
    ):
        pytest.fail("the lock was taken while another process held it")
    waited = time.monotonic() - started
    assert 0.4 <= waited < 2.0
    message = str(caught.value)
    assert str(state.path / "x.lock") in message
    assert f"pid {holder.pid}" in message
    assert "holder-run" in message
    assert caught.value.holder is not None
    assert caught.value.holder.pid == holder.pid


def test_lock_is_taken_at_once_when_its_holder_leaves(
    state: StateDir, holder: subprocess.Popen[str]
) -> None:
    threading.Timer(0.2, release, [holder]).start()
    started = time.monotonic()
    with hold_lock(state, "x.lock", what="test", run="waiter", timeout=5):
        waited = time.monotonic() - started
        record = json.loads(state.read_text("x.lock") or "")
    assert waited < 1.5
    assert record["pid"] == os.getpid()
    assert record["run"] == "waiter"


def test_lock_is_free_after_its_holder_exits(
    state: StateDir, holder: subprocess.Popen[str]
) -> None:
    release(holder)
    holder.wait(5)
    started = time.monotonic()
    with hold_lock(state, "x.lock", what="test", run="next", timeout=0):
        assert time.monotonic() - started < 0.2
    assert state.read_text("x.lock") == ""  # who held it is wiped on the way out


def test_lock_file_replaced_by_a_symlink_is_refused(state: StateDir, tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    (state.path / "x.lock").symlink_to(outside / "precious")
    with (
        pytest.raises(OSError) as caught,
        hold_lock(state, "x.lock", what="test", run="r", timeout=1),
    ):
        pass
    assert caught.value.errno == errno.ELOOP
    assert (outside / "precious").read_text() == "keep me"


def test_try_remove_lock_keeps_a_held_lock_and_removes_a_free_one(state: StateDir) -> None:
    with hold_lock(state, "x.lock", what="test", run="r", timeout=1):
        assert not try_remove_lock(state, "x.lock")
        assert state.exists("x.lock")
    assert try_remove_lock(state, "x.lock")
    assert not state.exists("x.lock")
    assert not try_remove_lock(state, "x.lock")  # missing: nothing to remove


def test_try_remove_lock_keeps_a_lock_held_by_another_process(
    state: StateDir, holder: subprocess.Popen[str]
) -> None:
    assert not try_remove_lock(state, "x.lock")
    assert state.exists("x.lock")


# --- tidy_locks -----------------------------------------------------------------------------


def make_locks(state: StateDir, count: int, age: float = 0) -> tuple[StateDir, list[str]]:
    """``count`` lock files, newest first, one second apart, the newest ``age`` seconds old."""
    locks = state.child(LOCKS)
    now = time.time()
    names = [f"build-{i:03}.lock" for i in range(count)]
    for i, name in enumerate(names):
        locks.touch(name)
        os.utime(locks.path / name, (now - age - i, now - age - i))
    return locks, names


def test_tidy_locks_keeps_the_newest_few(state: StateDir) -> None:
    locks, names = make_locks(state, MAX_LOCK_FILES + 5)
    try:
        tidy_locks(state)
        assert sorted(locks.names()) == names[:MAX_LOCK_FILES]
    finally:
        locks.close()


def test_tidy_locks_removes_lock_files_unused_for_long(state: StateDir) -> None:
    locks, names = make_locks(state, 3)
    try:
        old = time.time() - LOCK_FILE_AGE - 60
        os.utime(locks.path / names[1], (old, old))
        tidy_locks(state)
        assert sorted(locks.names()) == [names[0], names[2]]
    finally:
        locks.close()


def test_tidy_locks_never_removes_a_held_lock(state: StateDir) -> None:
    locks, _ = make_locks(state, MAX_LOCK_FILES)
    try:
        with hold_lock(locks, "held.lock", what="test", run="r", timeout=1):
            old = time.time() - LOCK_FILE_AGE - 60  # the oldest, and beyond the count kept
            os.utime(locks.path / "held.lock", (old, old))
            tidy_locks(state)
            assert locks.exists("held.lock")
        assert len(locks.names()) == MAX_LOCK_FILES + 1
    finally:
        locks.close()


# --- liveness.dead_runs ---------------------------------------------------------------------


def test_run_whose_every_object_names_a_dead_owner_here_is_dead(
    dead_owner: Owner, here: Owner
) -> None:
    objects = a_run("r1", dead_owner)  # fresh leases: the owner alone says it is dead
    dead = dead_runs(objects, NOW, here)
    assert list(dead) == ["r1"]
    assert ids(dead["r1"]) == ids(objects)


def test_run_with_one_forged_dead_owner_among_live_ones_is_not_dead(
    dead_owner: Owner, here: Owner
) -> None:
    objects = [*a_run("r1", here), found("container", "r1", dead_owner)]
    assert dead_runs(objects, NOW, here) == {}


def test_run_without_owner_labels_is_not_dead_by_owner(here: Owner) -> None:
    objects = [found("container", "r1", None), found("network", "r1", None)]
    assert dead_runs(objects, NOW, here) == {}


def test_run_of_another_pid_namespace_with_a_fresh_lease_is_alive(
    dead_owner: Owner, here: Owner
) -> None:
    elsewhere = dataclasses.replace(dead_owner, pidns="4026531999")
    objects = [
        found("container", "r1", elsewhere, NOW - 1000),
        found("network", "r1", elsewhere, NOW - 1000),
        found("volume", "r1", elsewhere, NOW - 10, lease=True),
    ]
    assert dead_runs(objects, NOW, here) == {}


def test_run_of_another_pid_namespace_with_everything_expired_is_dead(
    dead_owner: Owner, here: Owner
) -> None:
    elsewhere = dataclasses.replace(dead_owner, pidns="4026531999")
    objects = a_run("r1", elsewhere, NOW - 91, ttl=90)
    dead = dead_runs(objects, NOW, here)
    assert ids(dead["r1"]) == ids(objects)


def test_run_of_another_pid_namespace_with_a_young_object_is_alive(
    dead_owner: Owner, here: Owner
) -> None:
    elsewhere = dataclasses.replace(dead_owner, pidns="4026531999")
    objects = [*a_run("r1", elsewhere, NOW - 1000), found("container", "r1", elsewhere, NOW - 5)]
    assert dead_runs(objects, NOW, here) == {}


def test_object_without_a_lease_ttl_keeps_its_run_alive(dead_owner: Owner, here: Owner) -> None:
    elsewhere = dataclasses.replace(dead_owner, pidns="4026531999")
    objects = [*a_run("r1", elsewhere, NOW - 10_000), found("container", "r1", elsewhere, 0, None)]
    assert dead_runs(objects, NOW, here) == {}


@pytest.mark.parametrize("ttl", [0, 1])
def test_forged_lease_with_a_tiny_ttl_cannot_make_a_live_run_dead(
    dead_owner: Owner, here: Owner, ttl: int
) -> None:
    elsewhere = dataclasses.replace(dead_owner, pidns="4026531999")
    objects = [
        *a_run("r1", elsewhere, NOW - 10, ttl=90),  # a live run of another namespace
        *a_run("r2", here, NOW - 10, ttl=90),  # and a live run of this process
    ]
    forged = [found("volume", run, elsewhere, NOW - 1000, ttl, lease=True) for run in ("r1", "r2")]
    assert dead_runs([*objects, *forged], NOW, here) == {}


def test_kept_objects_are_never_returned(dead_owner: Owner, here: Owner) -> None:
    kept = found("container", "r1", dead_owner, kept=True)
    objects = [kept, *a_run("r1", dead_owner)]
    dead = dead_runs(objects, NOW, here)
    assert kept.id not in ids(dead["r1"])
    assert ids(dead["r1"]) == ids(objects[1:])


def test_run_with_only_kept_objects_is_not_listed(dead_owner: Owner, here: Owner) -> None:
    objects = [
        found("container", "r1", dead_owner, NOW - 10_000, kept=True),
        found("network", "r1", dead_owner, NOW - 10_000, kept=True),
    ]
    assert dead_runs(objects, NOW, here) == {}


def test_exclude_leaves_our_own_run_out(dead_owner: Owner, here: Owner) -> None:
    objects = [*a_run("mine", dead_owner), *a_run("theirs", dead_owner)]
    assert list(dead_runs(objects, NOW, here, exclude="mine")) == ["theirs"]


def test_objects_without_a_run_label_are_ignored(dead_owner: Owner, here: Owner) -> None:
    stray = Found("container", "stray", dead_owner.labels(), 0.0)
    assert dead_runs([stray], NOW, here) == {}


@pytest.mark.parametrize(
    "forged",
    [{LABEL_PID: "²"}, {LABEL_LEASE_TTL: "²"}, {LABEL_PID: str(2**31)}],
    ids=["pid-superscript", "ttl-superscript", "pid-too-large"],
)
def test_forged_labels_of_one_run_do_not_stop_others_being_reaped(
    dead_owner: Owner, here: Owner, forged: dict[str, str]
) -> None:
    bad = Found("container", "forged", {LABEL_RUN: "forged", **here.labels(), **forged}, NOW)
    objects = [bad, *a_run("r1", dead_owner)]
    assert "r1" in dead_runs(objects, NOW, here)


def test_removal_order_is_containers_then_networks_then_volumes(dead_owner: Owner) -> None:
    volume, network, container = (
        found("volume", "r1", dead_owner, lease=True),
        found("network", "r1", dead_owner),
        found("container", "r1", dead_owner),
    )
    network2 = found("network", "r1", dead_owner)
    waves = removal_order([volume, network, container, network2])
    assert waves == [[container], [network, network2], [volume]]


def test_removal_order_drops_empty_waves(dead_owner: Owner) -> None:
    volume = found("volume", "r1", dead_owner)
    assert removal_order([volume]) == [[volume]]
    assert removal_order([]) == []


# --- runfolder -------------------------------------------------------------------------------


def test_dead_run_folders_lists_only_folders_of_owners_known_dead(
    state: StateDir, dead_owner: Owner, here: Owner
) -> None:
    make_run_folder(state, "dead", dead_owner)
    make_run_folder(state, "live", here)
    make_run_folder(state, "elsewhere", dataclasses.replace(dead_owner, pidns="4026531999"))
    assert list(dead_run_folders(state, here)) == ["dead"]
    assert list(dead_run_folders(state)) == ["dead"]


def test_dead_run_folders_skips_unreadable_and_planted_folders(
    state: StateDir, dead_owner: Owner, here: Owner, tmp_path: Path
) -> None:
    make_run_folder(state, "dead", dead_owner)
    runs = state.path / "runs"
    (runs / "corrupt").mkdir(mode=0o700)
    (runs / "corrupt" / "owner.json").write_text("{")
    (runs / "list").mkdir(mode=0o700)
    (runs / "list" / "owner.json").write_text("[]")
    (runs / "link").symlink_to(outside_folder(tmp_path), target_is_directory=True)
    (runs / "file").write_text("")
    assert list(dead_run_folders(state, here)) == ["dead"]


def test_dead_run_folders_without_runs_is_empty(state: StateDir, here: Owner) -> None:
    assert list(dead_run_folders(state, here)) == []


@pytest.fixture
def shared(state: StateDir) -> Iterator[SharedServers]:
    servers = SharedServers("r1", state)
    yield servers
    servers.close()


@pytest.mark.parametrize(
    "data",
    [["container_id", "abc"], {"id": "abc"}, {"container_id": 5}, {"error": None}, "abc"],
    ids=["list", "no-container-id", "number-id", "null-error", "string"],
)
def test_shared_servers_read_of_a_forged_file_names_it(shared: SharedServers, data: object) -> None:
    shared.folder.write_json("server-web.json", data)
    with pytest.raises(UnsafeFolder) as caught:
        shared.read("web")
    assert str(shared.folder.path / "server-web.json") in str(caught.value)


@pytest.mark.parametrize("data", [{"container_id": "abc"}, {"error": "build failed"}])
def test_shared_servers_read_returns_what_was_written(
    shared: SharedServers, data: dict[str, str]
) -> None:
    shared.write("web", data)
    assert shared.read("web") == data


def test_shared_servers_read_of_a_missing_file_is_none(shared: SharedServers) -> None:
    assert shared.read("web") is None


def test_dead_run_folders_lists_ownerless_folders_only_when_stale(state: StateDir) -> None:
    runs = state.child("runs")
    try:
        fresh, old = runs.child("fresh0001"), runs.child("old00001")
        fresh.close()
        old.close()
        week_ago = time.time() - 8 * 24 * 3600
        os.utime("old00001", (week_ago, week_ago), dir_fd=runs.fd)
    finally:
        runs.close()
    assert sorted(dead_run_folders(state)) == ["old00001"]


# --- the sweep of dead runs: by the lease's rounds, or after a short run by its watchdog


def test_a_sweep_is_due_once_per_period_for_a_users_runs(tmp_path: Path) -> None:
    from pytest_testserver.reaper import SWEPT_STAMP, sweep_is_due

    state = StateDir.open(tmp_path)
    try:
        assert sweep_is_due(state, 20.0)  # the first run of this user sweeps
        assert (tmp_path / SWEPT_STAMP).is_file()
        assert not sweep_is_due(state, 20.0)  # the next, within a period, need not
        past = time.time() - 21
        os.utime(tmp_path / SWEPT_STAMP, (past, past))
        assert sweep_is_due(state, 20.0)  # a period later, the next does
        assert not sweep_is_due(state, 20.0)
    finally:
        state.close()


def test_a_sweep_is_due_when_its_stamp_is_a_planted_link(tmp_path: Path) -> None:
    from pytest_testserver.reaper import SWEPT_STAMP, sweep_is_due

    target = tmp_path / "elsewhere"
    target.write_text("not ours")
    before = target.stat().st_mtime_ns
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    (folder / SWEPT_STAMP).symlink_to(target)
    state = StateDir.open(folder)
    try:
        assert sweep_is_due(state, 20.0)
        assert sweep_is_due(state, 20.0)  # never "recent" through the link
    finally:
        state.close()
    assert target.stat().st_mtime_ns == before  # not followed, not touched
    assert sweep_is_due(None, 20.0)  # without a private folder: always


class LeaseEngine:
    """What a Lease asks of the engine, recorded (no Docker)."""

    def __init__(self) -> None:
        self.volumes: list[str] = []
        self.listed = 0

    def deadline(self, at: float | None) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def create_volume(self, name: str, labels: dict[str, str]) -> float:
        self.volumes.append(name)
        return time.time()

    def remove_volume(self, name: str) -> None:
        self.volumes.remove(name)

    def objects(self) -> list[Found]:
        self.listed += 1
        return []

    def now(self) -> float:
        return time.time()


def test_a_run_shorter_than_a_lease_period_makes_no_lease() -> None:
    from pytest_testserver.reaper import Lease

    engine = LeaseEngine()
    context = RunContext("shortrun01", lease_ttl=40)  # a 10 s period
    lease = Lease(engine, context, "main").start()  # type: ignore[arg-type]
    lease.stop()
    lease.release()
    assert engine.volumes == []
    assert engine.listed == 0
    assert not lease.swept  # so its watchdog is asked to sweep after it


def test_a_lease_is_made_and_dead_runs_swept_one_period_after_the_start() -> None:
    from pytest_testserver.reaper import Lease

    engine = LeaseEngine()
    context = RunContext("longrun001", lease_ttl=4)  # a 1 s period
    lease = Lease(engine, context, "main").start()  # type: ignore[arg-type]
    try:
        wait_until = time.monotonic() + 30
        while not lease.swept and time.monotonic() < wait_until:
            time.sleep(0.05)
        assert lease.swept
        assert engine.listed >= 1
        assert len(engine.volumes) == 1  # the current lease (each renewal replaces the last)
    finally:
        lease.release()
    assert engine.volumes == []
