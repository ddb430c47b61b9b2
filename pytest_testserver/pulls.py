"""Pulling an image from its registry: the pull policy, retries with backoff, one line that
says what to do when it fails, and the digest the image resolved to.

What the engine's words mean and when to try again is ``registry.py``'s (pure); this module
drives the engine. Under xdist, of several workers wanting one image one pulls under the image's
lock and the others wait for it and find it (the build lock and the run's once-per-run marks:
``Pulling.lock`` and ``Pulling.first``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import registry
from .errors import EngineError, EngineStalled, ImageError
from .progress import PullProgress, Say, strip_controls
from .registry import Attempt, Backoff, Credentials, Failure

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(frozen=True)
class Pulling:
    """How one server's image is pulled: the policy and where it was set, the platform, the
    image budget's end, and the run's coordination (``lock(ref)``: one pull per image on the
    host at a time; ``first(ref)``: True once per run, for ``always``)."""

    server: str
    policy: str = "missing"  # registry.PULL_POLICIES
    policy_source: str = "pull: missing"  # "pull: always" or "--testserver-pull=always"
    platform: str | None = None
    deadline: float = float("inf")  # monotonic
    lock: Callable[[str], AbstractContextManager[Any]] | None = None
    first: Callable[[str], bool] = lambda ref: True
    redact: Callable[[str], str] = lambda text: text
    backoff: Backoff = field(default_factory=Backoff)
    ask_retry_after: Callable[[str], float | None] = registry.retry_after
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def ensure(engine: Engine, ref: str, pulling: Pulling, on_progress: Say | None) -> str:
    """Make ``ref`` exist as the policy says; the registry digest it resolved to ("" when
    unknown). ``never``: a missing image is an error naming it; ``missing``: pulled when not
    here; ``always``: pulled once per run, whether here or not."""
    if pulling.policy == "never":
        if not engine.image_exists(ref):
            raise ImageError(
                pulling.server,
                f"image {ref} is not here, and {pulling.policy_source} does not pull it: "
                f"pull it first (docker pull {ref}), or let the run pull it",
            )
        return engine.repo_digest(ref)
    with pulling.lock(ref) if pulling.lock is not None else contextlib.nullcontext():
        # Under the lock: a worker that waited finds what the first one pulled.
        wanted = pulling.first(ref) if pulling.policy == "always" else not engine.image_exists(ref)
        if wanted:
            pull(engine, ref, pulling, on_progress)
        return engine.repo_digest(ref)


def pull(engine: Engine, ref: str, pulling: Pulling, on_progress: Say | None) -> None:
    """Pull ``ref``, trying a transient failure again (429, 5xx, resets, timeouts) with backoff
    within the image budget; each retry is a progress line, and the final error lists the
    attempts. A success says how much was transferred and how long it took."""
    clock = pulling.clock
    began = clock()
    attempts: list[Attempt] = []
    while True:
        summed = PullProgress(ref, clock())

        def on_chunk(chunk: Mapping[str, Any], summed: PullProgress = summed) -> None:
            summed.feed(chunk)
            text = summed.line(clock())
            if text is not None and on_progress is not None:
                on_progress(strip_controls(text), periodic=True)

        try:
            engine.pull(ref, on_chunk=on_chunk, platform=pulling.platform)
        except EngineStalled as exc:
            # Reads wait as long as the image budget allows: it is spent, no retry.
            host = registry.parse_reference(ref).registry
            shown = summed.line(clock(), force=True) or "nothing received"
            tried = f"; {registry.attempts_text(attempts)}" if attempts else ""
            raise ImageError(
                pulling.server,
                f"image {ref} cannot be pulled: the pull made no progress until the "
                f"image_timeout ran out ({exc.reason}; {shown}): the registry {host}, or the "
                f"engine's way to it, stalled{tried}",
            ) from None
        except EngineError as exc:
            text = pulling.redact(strip_controls(str(exc)))
            failure = registry.classify(text, exc.status)
            attempt = Attempt(len(attempts) + 1, failure, text, clock() - began)
            attempts.append(attempt)
            asked = pulling.ask_retry_after(ref) if failure is Failure.RATE_LIMITED else None
            wait = pulling.backoff.next_wait(attempt, clock(), pulling.deadline, asked)
            if wait is None:
                note = ""
                if asked is not None and clock() + asked >= pulling.deadline:
                    note = (
                        f"; the registry asks to wait {asked:.0f} s (Retry-After), more than "
                        "the image_timeout leaves"
                    )
                message = _message(engine, ref, pulling, attempts) + note
                raise ImageError(pulling.server, message) from None
            if on_progress is not None:
                why = " (the registry's Retry-After)" if asked is not None else ""
                said = registry.brief(text, 100)
                on_progress(
                    f"pulling {ref}: attempt {attempt.number} failed ({said}); "
                    f"trying again in {wait:.1f} s{why}",
                    periodic=False,
                )
            pulling.sleep(wait)
            continue
        if on_progress is not None:
            took = clock() - began
            tries = f" (attempt {len(attempts) + 1}, {took:.1f} s in all)" if attempts else ""
            on_progress(strip_controls(summed.final(clock())) + tries, periodic=False)
        return


def _message(engine: Engine, ref: str, pulling: Pulling, attempts: list[Attempt]) -> str:
    last = attempts[-1]
    credentials = None
    if last.failure in (Failure.UNAUTHORIZED, Failure.DENIED_OR_MISSING, Failure.CREDENTIALS):
        host = registry.parse_reference(ref).registry
        credentials = Credentials(*engine.credentials_for(host))
    return registry.failure_message(
        ref,
        last.failure,
        last.text,
        attempts,
        credentials=credentials,
        platform=pulling.platform,
    )
