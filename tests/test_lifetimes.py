"""Lifetimes: ``reset:`` between the tests that share a server, on the real engine through
pytester (its parsing is in test_config.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import servers_yaml

RESETTABLE = """
    image: busybox:stable
    command: ["sleep", "600"]
    reset: ["sh", "-c", "rm -f /dirty; echo reset >> /resets"]
    post_startup: ["true"]
    """


def test_reset_runs_before_each_test_that_uses_the_server_except_the_first(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(box=RESETTABLE),
        """
        import pytest

        def resets(server):
            code, out = server.exec(["cat", "/resets"])
            return out.count("reset") if code == 0 else 0

        @pytest.mark.testserver("box")
        def test_first(testserver):
            assert resets(testserver) == 0
            testserver.exec(["touch", "/dirty"])

        @pytest.mark.testserver("box")
        def test_second(testserver):
            assert testserver.exec(["test", "-e", "/dirty"])[0] != 0
            assert resets(testserver) == 1
            testserver.exec(["touch", "/dirty"])

        def test_asks_twice(testservers):
            assert resets(testservers["box"]) == 2
            assert resets(testservers["box"]) == 2  # once per test, however often it asks

        def test_without_it():
            pass

        @pytest.mark.testserver("box")
        def test_last(testserver):
            assert resets(testserver) == 3
        """,
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=5)


def test_a_failing_reset_fails_that_test_in_setup_with_its_output_masked(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(
            box="""
            image: busybox:stable
            command: ["sleep", "600"]
            env: {DB_PASSWORD: hunter2-pw}
            reset: ["sh", "-c", "echo pw=$DB_PASSWORD; exit 3"]
            post_startup: ["true"]
            """
        ),
        """
        import pytest

        @pytest.mark.testserver("box")
        def test_first(testserver):
            pass

        @pytest.mark.testserver("box")
        def test_second(testserver):
            pass
        """,
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    output = result.stdout.str()
    assert (
        "testserver: server 'box': reset ['sh', '-c', 'echo pw=$DB_PASSWORD; exit 3'] "
        "exited with code 3\n--- its last output ---\npw=***\n"
    ) in output
    assert "hunter2-pw" not in output
    result.stdout.fnmatch_lines(["ERROR *test_second*"])
