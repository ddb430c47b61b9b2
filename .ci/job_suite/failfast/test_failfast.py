"""Run by .ci/job_shapes (shape failfast): this test must error at once, not pass."""

from __future__ import annotations

import pytest


@pytest.mark.testserver("web")
def test_web(testserver: object) -> None:
    pass
