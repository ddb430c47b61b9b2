"""Hooks this plugin adds: declaring servers in Python, beside or instead of the YAML file."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_testserver_servers(config: pytest.Config) -> dict[str, Any] | None:
    """Declare servers in a ``conftest.py``: return the same mapping as ``testservers.yaml``.

    ``{"defaults": {...}, "servers": {"web": {"build": "web", "ports": [8080]}}}``; relative paths
    resolve against the conftest's folder, every field is validated as in YAML, and a server
    declared twice (here and in the YAML file, or in two conftests) is an error. Implement it in a
    conftest that pytest loads at start-up (the rootdir's, or one next to the test paths given).
    """
