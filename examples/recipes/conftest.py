"""The recipes' secrets: in CI they would come from the CI's secret store; here each run makes
its own, before any server starts (xdist workers inherit the controller's environment)."""

from __future__ import annotations

import os
import secrets


def pytest_configure() -> None:
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        os.environ.setdefault(name, secrets.token_urlsafe(16))
