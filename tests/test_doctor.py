"""--testserver-doctor: what a bug report should contain, from a real engine."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conftest import expected_host


def test_the_doctor_names_every_decision_and_reaches_a_tiny_server(
    pytester: pytest.Pytester, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_TOKEN", "not-shown-anywhere-123")
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("--testserver-doctor")
    out = result.stdout.str()
    assert result.ret == 0, out
    result.stdout.fnmatch_lines(
        [
            "testserver doctor (paste this into a bug report)",
            "engine: * (*)",
            "tests run: *",
            "bind address setting: *; $TESTSERVER_REACH: auto",
            "state folder: *",
            "engine kind: *, root*; version *",
            "servers reached: * (*)",
            "ports published on: *",
            "tiny server: ready in *s, reached at http://*:*/ (HTTP 200)",
        ]
    )
    if not os.environ.get("TESTSERVER_BIND_ADDRESS"):
        # on this machine the tests are no sibling of the engine: published ports, and the
        # handle's host is the one every other test expects
        assert f"reached at http://{expected_host()}:" in out
    assert "not-shown-anywhere-123" not in out


def test_the_doctor_says_when_the_override_cannot_hold(
    pytester: pytest.Pytester, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTSERVER_REACH", "network")
    monkeypatch.delenv("TESTSERVER_BIND_ADDRESS", raising=False)
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("--testserver-doctor")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["servers reached: *$TESTSERVER_REACH=network, but the tests do not run in a container*"]
    )
