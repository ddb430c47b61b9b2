"""Warm reuse across runs (--testserver-reuse) on the real engine, through pytester: adopted only
on an exact match of user, project and definition, reset before a run's first test, removed
after its idle time or by --testserver-reuse-clean, never counted as a run's leftover."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import servers_yaml, wait_for

BOX = """
    image: busybox:stable
    command: ["sleep", "600"]
    post_startup: ["true"]
    reset: ["sh", "-c", "echo reset >> /resets"]
    """

RECORDING = """
import pytest

@pytest.mark.testserver("box")
def test_it(testserver):
    code, out = testserver.exec(["cat", "/resets"])
    with open("seen.txt", "a") as seen:
        seen.write(f"{testserver.container_id} {out.count('reset') if code == 0 else 0}\\n")
"""


def seen(pytester: pytest.Pytester) -> list[tuple[str, int]]:
    lines = (pytester.path / "seen.txt").read_text().split("\n")
    return [(line.split()[0], int(line.split()[1])) for line in lines if line]


@pytest.fixture
def kept(pytester: pytest.Pytester, docker_api: Any) -> Iterator[list[str]]:
    """The containers a test's runs kept: whatever the test left is removed by id afterwards."""
    ids: list[str] = []
    yield ids
    pytester.runpytest("--testserver-reuse-clean")  # and the records, so idle watches end
    if (pytester.path / "seen.txt").exists():
        ids += [container for container, _ in seen(pytester)]
    for container in set(ids):
        with contextlib.suppress(Exception):  # gone already: what the test wanted
            docker_api.remove_container(container, force=True)


def exists(api: Any, container: str) -> bool:
    return bool(api.containers(all=True, filters={"id": container}))


def labels_of(api: Any, container: str) -> dict[str, str]:
    return dict(api.inspect_container(container)["Config"]["Labels"])


def test_a_kept_server_is_adopted_by_the_next_run_reset_and_cleaned(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, kept: list[str]
) -> None:
    suite(servers_yaml(box=BOX), RECORDING)
    first = pytester.runpytest("--testserver-reuse")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["testserver: box ready in *s (kept for reuse by later runs)"])
    second = pytester.runpytest("--testserver-reuse")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["testserver: box reused in *s (kept from an earlier run)"])
    (one, resets_one), (two, resets_two) = seen(pytester)
    assert one == two
    assert (resets_one, resets_two) == (0, 1)  # reset before the second run's first test
    labels = labels_of(docker_api, one)
    assert "pytest-testserver.run" not in labels  # no run's sweep or leak check counts it
    assert "pytest-testserver.pid" not in labels
    clean = pytester.runpytest("--testserver-reuse-clean")
    assert clean.ret == 0
    clean.stdout.fnmatch_lines(["testserver: removed 1 kept container(s): testserver-kept-*-box"])
    assert not exists(docker_api, one)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("env: {MODE: other}\n", id="env"),
        pytest.param("ulimits: {nofile: 512}\n", id="a-container-option"),
    ],
)
def test_a_changed_definition_gets_a_fresh_container_and_the_stale_one_goes(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, kept: list[str], change: str
) -> None:
    suite(servers_yaml(box=BOX), RECORDING)
    pytester.runpytest("--testserver-reuse").assert_outcomes(passed=1)
    suite(servers_yaml(box=BOX + change), RECORDING)
    pytester.runpytest("--testserver-reuse").assert_outcomes(passed=1)
    (one, _), (two, resets) = seen(pytester)
    assert one != two
    assert resets == 0
    assert not exists(docker_api, one)
    assert pytester.runpytest("--testserver-reuse-clean").ret == 0
    assert not exists(docker_api, two)


def test_not_adopted_without_the_flag_nor_by_another_project(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, kept: list[str]
) -> None:
    suite(servers_yaml(box=BOX), RECORDING)
    pytester.runpytest("--testserver-reuse").assert_outcomes(passed=1)
    pytester.runpytest().assert_outcomes(passed=1)  # without the flag: a container of the run
    other = pytester.path / "elsewhere"  # another project: the same files in another folder
    other.mkdir()
    for name in ("testservers.yaml", "test_suite.py"):
        (other / name).write_text((pytester.path / name).read_text())
    pytester.runpytest("--testserver-reuse", f"--rootdir={other}", str(other)).assert_outcomes(
        passed=1
    )
    (mine, _), (plain, _), (theirs, resets) = seen(pytester)
    assert len({mine, plain, theirs}) == 3
    assert resets == 0
    assert exists(docker_api, mine)
    assert not exists(docker_api, plain)
    kept.append(theirs)
    result = pytester.runpytest("--testserver-reuse-clean", f"--rootdir={other}", str(other))
    result.stdout.fnmatch_lines(["testserver: removed 1 kept container(s): *"])
    assert exists(docker_api, mine)  # another project's clean leaves this one's alone
    assert not exists(docker_api, theirs)
    assert pytester.runpytest("--testserver-reuse-clean").ret == 0
    assert not exists(docker_api, mine)


def test_a_kept_container_goes_after_its_idle_time(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, kept: list[str]
) -> None:
    suite(servers_yaml(box=BOX), RECORDING)
    pytester.runpytest("--testserver-reuse", "-o", "testserver_reuse_idle=1").assert_outcomes(
        passed=1
    )
    ((container, _),) = seen(pytester)
    wait_for(lambda: not exists(docker_api, container), 30, "the idle watch to remove it")


def test_a_kept_container_of_a_killed_run_still_goes_after_its_idle_time(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, kept: list[str]
) -> None:
    suite(
        servers_yaml(box=BOX),
        RECORDING
        + """
import time

def test_hold(testservers):
    testservers["box"]
    open("holding", "w").close()
    time.sleep(120)
""",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--testserver-reuse",
            "-o",
            "testserver_reuse_idle=2",
        ],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (pytester.path / "holding").exists(), 60, "the run to hold the server")
        ((container, _),) = seen(pytester)
        process.send_signal(signal.SIGKILL)  # no teardown: its end is never recorded
        process.wait(30)
        assert exists(docker_api, container)  # kept: not a dead run's leftover
        wait_for(lambda: not exists(docker_api, container), 60, "the idle watch to remove it")
    finally:
        process.kill()
        process.wait(30)


def test_the_idle_time_is_validated(pytester: pytest.Pytester, suite: Any) -> None:
    suite(servers_yaml(box=BOX), RECORDING)
    result = pytester.runpytest("--testserver-reuse", "-o", "testserver_reuse_idle=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: ini testserver_reuse_idle: 'soon' is not an idle time in seconds (more than "
            "0, at most a week)"
        ]
    )


def test_under_xdist_one_kept_container_serves_the_workers_and_the_next_run(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, kept: list[str]
) -> None:
    suite(
        servers_yaml(box=BOX),
        RECORDING.replace(
            "def test_it(testserver):",
            '@pytest.mark.parametrize("i", range(4))\ndef test_it(testserver, i):',
        ),
    )
    pytester.runpytest("-n", "2", "--testserver-reuse").assert_outcomes(passed=4)
    pytester.runpytest("-n", "2", "--testserver-reuse").assert_outcomes(passed=4)
    assert len({container for container, _ in seen(pytester)}) == 1
    assert pytester.runpytest("--testserver-reuse-clean").ret == 0


TWO_RUNS = """
import os
import pathlib
import time

import pytest

ROLE = os.environ["ROLE"]


def record(test, testserver):
    code, out = testserver.exec(["cat", "/resets"])
    count = out.count("reset") if code == 0 else 0
    with open("runs.txt", "a") as runs:
        runs.write(f"{ROLE} {test} {testserver.container_id} {count}\\n")


@pytest.mark.testserver("box")
def test_1(testserver):
    record(1, testserver)
    if ROLE == "a":  # hold the kept container while the other run comes and goes
        pathlib.Path("a.tmp").write_text("started")
        os.replace("a.tmp", "a-started")
        deadline = time.monotonic() + 120
        while not pathlib.Path("b-done").exists():
            assert time.monotonic() < deadline, "run b never finished"
            time.sleep(0.05)


@pytest.mark.testserver("box")
def test_2(testserver):
    record(2, testserver)
"""


def test_two_runs_at_once_never_share_a_kept_container(
    pytester: pytest.Pytester, suite: Any, docker_api: Any, kept: list[str]
) -> None:
    """One run at a time holds a kept container: a second run at the same moment gets one of
    its own (removed at its end), so neither resets the other's server under its tests."""
    suite(servers_yaml(box=BOX), TWO_RUNS)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]

    def run(role: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*argv, "--testserver-reuse"],
            cwd=pytester.path,
            env={**os.environ, "ROLE": role},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    first = run("zero")  # keeps the container for the two runs that follow
    first_out = first.communicate(timeout=120)[0]
    assert first.returncode == 0, first_out
    a = run("a")
    try:
        wait_for(lambda: (pytester.path / "a-started").exists(), 120, "run a to hold the server")
        b = run("b")
        b_out = b.communicate(timeout=120)[0]
        (pytester.path / "b-done").write_text("")
        a_out = a.communicate(timeout=120)[0]
    finally:
        a.kill()
        a.communicate(timeout=30)
    assert a.returncode == 0, a_out
    assert b.returncode == 0, b_out
    assert "box reused in" in a_out
    assert "the kept container testserver-kept-" in b_out
    assert "is in use by another run right now: this run starts one of its own" in b_out
    runs: dict[tuple[str, str], tuple[str, int]] = {}
    for line in (pytester.path / "runs.txt").read_text().splitlines():
        role, test, container, count = line.split()
        runs[role, test] = (container, int(count))
    kept_box = runs["zero", "1"][0]
    kept.append(kept_box)
    assert runs["a", "1"][0] == runs["a", "2"][0] == kept_box  # run a adopted the kept one
    assert runs["b", "1"][0] == runs["b", "2"][0] != kept_box  # run b: its own container
    # Each run sees its own resets only: one before each test after a server's first.
    assert [runs["a", t][1] for t in "12"] == [2, 3]
    assert [runs["b", t][1] for t in "12"] == [0, 1]
    assert not exists(docker_api, runs["b", "1"][0])  # run b's own container went at its end
