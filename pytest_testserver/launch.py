"""One start of one container, as a value: what create, run and the readiness checks share.

The pool decides *which* container to start; a ``Launch`` says everything about *this* start —
the server, its instance name, the engine, its environment (secrets included, never shown), the
redactor, when it began and its two budgets — and travels unchanged from create to a ready
handle instead of six arguments passed along by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import ServerSpec

if TYPE_CHECKING:
    from .engine import Engine


class MaskedEnv(dict[str, str]):
    """A container's environment; its repr shows keys only (tracebacks print locals)."""

    def __repr__(self) -> str:
        return f"<environment {', '.join(self)}>"


@dataclass(frozen=True)
class Launch:
    """One start: from before the image is ensured to the ready handle.

    ``container``, ``deadline`` (the readiness budget's end) and ``note`` (how long the image
    took, when it did) are known once the container exists: ``created`` gives that value.
    """

    spec: ServerSpec
    instance: str  # the server's name for a session server, "web.3" for a fresh container
    engine: Engine
    env: MaskedEnv
    redact: Callable[[str], str]
    started: float  # time.monotonic() when the start began
    container: str = ""
    deadline: float = 0.0
    note: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def image_deadline(self) -> float:
        """The image (pull, build, waiting for another run's build) has its own budget, so a
        cold CI build neither eats the server's readiness time nor is blamed on it."""
        return self.started + self.spec.image_timeout

    def created(self, container: str, deadline: float, note: str = "") -> Launch:
        return dataclasses.replace(self, container=container, deadline=deadline, note=note)
