"""Engine failures in the middle of a readiness wait become one line naming the server (no Docker).

The engine answers these only in races (a container removed while an exec runs), which a real
engine produces now and then; a stand-in engine produces them every time.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_testserver.checks import PostStartup
from pytest_testserver.config import ImageSource, ServerSpec
from pytest_testserver.errors import EngineError, ServerExited, StartError
from pytest_testserver.exits import describe_exit, engine_failure
from pytest_testserver.readiness import wait_post_startup

SPEC = ServerSpec(name="web", image=ImageSource("busybox:stable"))


class RacingEngine:
    """An engine whose container goes away (or whose calls fail) while the checks run."""

    def __init__(self, *, exec_error: EngineError | None, inspect: Any) -> None:
        self._exec_error = exec_error
        self._inspect = inspect

    def exec(self, container: str, argv: Any) -> tuple[int | None, bytes]:
        if self._exec_error is not None:
            raise self._exec_error
        return None, b""  # what Engine.exec makes of 404/409: not running

    def inspect(self, container: str) -> dict[str, Any]:
        if isinstance(self._inspect, Exception):
            raise self._inspect
        return dict(self._inspect)

    def logs(self, container: str, tail: Any = "all") -> str:
        return ""


GONE = EngineError("No such container: abc", 404)


def test_an_exec_refused_because_the_container_is_gone_reads_as_removed() -> None:
    engine: Any = RacingEngine(exec_error=None, inspect=GONE)
    with pytest.raises(ServerExited) as info:
        wait_post_startup(
            engine, SPEC, PostStartup(("true",)), "abc", time.monotonic() + 5, lambda s: s
        )
    assert str(info.value) == (
        "testserver: server 'web': the container was removed before it was ready "
        "(docker rm, a prune, or another run's sweep)"
    )


@pytest.mark.parametrize(
    ("raw", "inspect", "expected"),
    [
        pytest.param(
            EngineError("No such exec instance: 1f2e", 404),
            GONE,
            "testserver: server 'web': the container was removed before it was ready",
            id="exec-vanished-container-gone",
        ),
        pytest.param(
            EngineError("Container abc is not running: Removal In Progress", 409),
            {"State": {"Running": False, "ExitCode": 137}},
            "testserver: server 'web': the container exited with code 137 (killed by SIGKILL) "
            "before it was ready",
            id="removal-in-progress",
        ),
        pytest.param(
            EngineError("something odd", 500),
            {"State": {"Running": True}},
            "testserver: server 'web': the engine failed while it got ready: something odd",
            id="engine-error-while-running",
        ),
    ],
)
def test_raw_engine_errors_become_the_servers_own(
    raw: EngineError, inspect: Any, expected: str
) -> None:
    engine: Any = RacingEngine(exec_error=raw, inspect=inspect)
    error = engine_failure(engine, SPEC, "abc", raw, lambda s: s)
    assert isinstance(error, (ServerExited, StartError))
    assert str(error).startswith(expected)
    assert "\n" not in str(error).split("--- ")[0].rstrip("\n")


@pytest.mark.parametrize(
    ("state", "tail", "init", "expected"),
    [
        pytest.param(
            {"ExitCode": 3},
            "boom",
            False,
            "the container exited with code 3 before it was ready",
            id="plain",
        ),
        pytest.param(
            {"ExitCode": 139},
            "x",
            False,
            "the container exited with code 139 (killed by SIGSEGV) before it was ready; a "
            "server that is not made to run as PID 1 can die so: try init: true",
            id="signal-hint",
        ),
        pytest.param(
            {"ExitCode": 139},
            "x",
            True,
            "the container exited with code 139 (killed by SIGSEGV) before it was ready",
            id="signal-under-init",
        ),
        pytest.param(
            {"ExitCode": 137, "OOMKilled": True},
            "x",
            False,
            "the container exited with code 137 (killed for lack of memory: OOMKilled) before "
            "it was ready",
            id="oom",
        ),
        pytest.param(
            {"ExitCode": 78},
            "",
            False,
            "the container exited with code 78 before it was ready; the server printed nothing",
            id="silent",
        ),
        pytest.param(
            {"ExitCode": 127, "Error": 'exec: "nope": executable file not found in $PATH'},
            "",
            False,
            "the container exited with code 127 before it was ready; the engine says: exec: "
            '"nope": executable file not found in $PATH; the server printed nothing',
            id="engine-error",
        ),
        pytest.param(
            {"ExitCode": 255},
            "x",
            False,
            "the container exited with code 255 before it was ready",
            id="not-a-signal",
        ),
    ],
)
def test_an_exit_says_what_the_engine_knows_of_it(
    state: dict[str, Any], tail: str, init: bool, expected: str
) -> None:
    spec = ServerSpec(name="web", image=ImageSource("busybox:stable"), init=init)
    assert describe_exit(spec, state, lambda s: s, tail) == expected
