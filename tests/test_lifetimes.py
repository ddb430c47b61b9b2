"""Lifetimes: ``reset:`` between the tests that share a server.

Config parsing without an engine; the rest on the real engine through pytester.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_testserver.config import parse_config
from pytest_testserver.errors import ConfigError
from tests.conftest import servers_yaml


def parse_reset(value: object) -> tuple[str, ...] | None:
    data = {"servers": {"db": {"image": "busybox:stable", "reset": value}}}
    return parse_config(data, base=Path(), source="testservers.yaml").servers["db"].reset


def test_reset_is_an_argument_list() -> None:
    assert parse_reset(["redis-cli", "FLUSHALL"]) == ("redis-cli", "FLUSHALL")
    assert parse_reset(None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "redis-cli FLUSHALL",
            "testservers.yaml: servers.db.reset: must be a list of arguments such as "
            '["httpd", "-f"], not the string \'redis-cli FLUSHALL\' (no shell is involved)',
            id="string",
        ),
        pytest.param([], "testservers.yaml: servers.db.reset: must not be empty", id="empty"),
    ],
)
def test_a_bad_reset_names_the_file_server_and_key(value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_reset(value)
    assert str(caught.value) == expected


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
