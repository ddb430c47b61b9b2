"""The run id that names and labels everything one test run makes."""

from __future__ import annotations

import secrets


def new_run_id() -> str:
    return secrets.token_hex(5)
