"""Exits that explain themselves, and `init: true`, on the real engine through pytester (the
wording of each kind of exit is in test_start_errors.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import servers_yaml

pytestmark = pytest.mark.usefixtures("engine")  # real servers: each test's leak checks

NEVER_READY = """
    image: busybox:stable
    post_startup: ["false"]
    timeout: 30
    """

ASK = """
def test_it(testservers):
    testservers["box"]
"""


def test_a_pid_1_killed_by_a_signal_is_named_with_the_init_hint(
    pytester: pytest.Pytester, suite: Any
) -> None:
    # A shell's "exit 139" is how the engine reports a process killed by SIGSEGV.
    suite(servers_yaml(box=NEVER_READY + 'command: ["sh", "-c", "echo up; exit 139"]\n'), ASK)
    result = pytester.runpytest()
    result.assert_outcomes(errors=0, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*testserver: server 'box': the container exited with code 139 (killed by SIGSEGV) "
            "before it was ready; a server that is not made to run as PID 1 can die so: try "
            "init: true",
            "*--- last lines of the log of 'box' ---",
            "*up",
        ]
    )


def test_under_init_the_server_is_not_pid_1_and_its_signal_death_is_named(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(
            box=NEVER_READY + 'command: ["sh", "-c", "kill -SEGV $$$$"]\n    init: true\n',
            init="""
            image: busybox:stable
            command: ["sleep", "600"]
            post_startup: ["true"]
            init: true
            """,
        ),
        """
def test_pid_1_is_the_engines_init(testservers):
    code, out = testservers["init"].exec(["cat", "/proc/1/comm"])
    assert code == 0
    assert out.strip() != "sleep", out  # docker-init (tini) or catatonit

def test_it(testservers):
    testservers["box"]
""",
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert (
        "testserver: server 'box': the container exited with code 139 (killed by SIGSEGV) "
        "before it was ready; the server printed nothing"
    ) in output
    assert "try init: true" not in output


def test_a_server_that_prints_nothing_says_so(pytester: pytest.Pytester, suite: Any) -> None:
    suite(servers_yaml(box=NEVER_READY + 'command: ["false"]\n'), ASK)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*testserver: server 'box': the container exited with code 1 before it was ready; "
            "the server printed nothing"
        ]
    )
