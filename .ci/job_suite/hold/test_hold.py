"""Run by .ci/job_shapes (shape killed): holds its server until pytest is killed."""

from __future__ import annotations

import pathlib
import time

import pytest


@pytest.mark.testserver("web")
def test_hold(testserver: object) -> None:
    pathlib.Path("/tmp/holding").write_text("")  # killed.sh waits for this
    time.sleep(120)
