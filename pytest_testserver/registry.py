"""Images from registries, in plain values: references, the mirror, what a failed pull means,
and when to try again.

Pure (no engine, no pytest): the pull itself is ``pulls.py``'s, with the engine's words in and
one of these values out. A registry's own answer to "when may I come back" (``Retry-After``) is
read by ``retry_after``, the one function here that speaks HTTP.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass

from . import validate
from .validate import Where

DOCKER_HUB = "docker.io"
PULL_POLICIES = ("missing", "always", "never")
MIRROR_SETTING = "testserver_registry_mirror"
MIRROR_ENV = "TESTSERVER_REGISTRY_MIRROR"
# os[/arch[/variant]], as the engine takes it ("linux/amd64", "linux/arm64/v8")
_PLATFORM = re.compile(r"[a-z0-9_]+(?:/[a-z0-9_]+(?:/[a-z0-9_.]+)?)?")
# host[:port][/path], a registry's address as Docker names it (no scheme)
_MIRROR = re.compile(
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
    r"(?:/[a-z0-9]+(?:[._/-][a-z0-9]+)*)?"
)


@dataclass(frozen=True)
class Reference:
    """An image reference in its parts, as the engine reads it: ``busybox`` is
    ``docker.io/library/busybox:latest``."""

    registry: str  # "docker.io" for Docker Hub
    repository: str  # "library/busybox"
    tag: str  # "" when only a digest is given
    digest: str = ""  # "sha256:..." or ""

    @property
    def hub(self) -> bool:
        return self.registry == DOCKER_HUB

    @property
    def version(self) -> str:
        """The tag and digest as written after the name (":1", "@sha256:...", ":1@sha256:...")."""
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_reference(ref: str) -> Reference:
    """The parts of ``ref`` (already checked by ``validate.image_ref``).

    The first path component names a registry when it has a dot or a port, or is
    ``localhost`` (Docker's rule); otherwise the image is Docker Hub's, and a one-part name is
    under ``library/``.
    """
    name, _, digest = ref.partition("@")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not tag and not digest:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


def mirrored(ref: str, mirror: str) -> str:
    """``ref`` pulled through ``mirror`` when it is a Docker Hub image (``postgres:16`` ->
    ``mirror.example:5000/library/postgres:16``); any other registry's image is unchanged."""
    if not mirror:
        return ref
    parsed = parse_reference(ref)
    if not parsed.hub:
        return ref
    return f"{mirror}/{parsed.repository}{parsed.version}"


def mirror_setting(value: object, where: str) -> str:
    """A mirror's address (``host[:port][/path]``), or "" for none."""
    text = str(value or "").strip()
    if not text:
        return ""
    if _MIRROR.fullmatch(text):
        return text
    Where(where).fail(
        f"{validate.show(text)} is not a registry address (such as mirror.example:5000, no scheme)"
    )


def pull_policy(value: object, where: Where) -> str:
    return validate.choice(value, where, PULL_POLICIES)


def platform(value: object, where: Where) -> str:
    text = validate.single_line(value, where)
    if not _PLATFORM.fullmatch(text):
        where.fail(
            f"{validate.show(text)} is not a platform (os/arch[/variant], such as linux/amd64)"
        )
    return text


class Failure(enum.Enum):
    """What a failed pull means, from the engine's words."""

    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not found"
    DENIED_OR_MISSING = "denied or missing"  # Docker Hub's "pull access denied"
    RATE_LIMITED = "rate limited"
    TRANSIENT = "transient"  # 5xx, resets, timeouts: worth another try
    UNREACHABLE = "unreachable"  # the engine cannot connect at all
    NO_SUCH_HOST = "no such host"
    PLATFORM = "platform"
    CREDENTIALS = "credential helper"
    OTHER = "other"

    @property
    def retried(self) -> bool:
        return self in (Failure.RATE_LIMITED, Failure.TRANSIENT, Failure.UNREACHABLE)


_TRANSIENT = (
    "received unexpected http status: 5",
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "connection reset",
    "broken pipe",
    "i/o timeout",
    "tls handshake timeout",
    "timeout exceeded",
    "client.timeout",
    "request canceled",
    "unexpected eof",
    ": eof",
    "unavailable:",
    "no answer to pull",
)


def classify(text: str, status: int | None = None) -> Failure:
    """The kind of a pull's failure, from the engine's message (and the HTTP status of its
    answer, which says little: a registry's refusal is the engine's 500)."""
    low = text.lower()
    if "credentials store error" in low or "docker-credential-" in low:
        return Failure.CREDENTIALS
    if "toomanyrequests" in low or "429 too many requests" in low or "rate limit" in low:
        return Failure.RATE_LIMITED
    if "pull access denied" in low or "may require 'docker login'" in low:
        return Failure.DENIED_OR_MISSING
    if any(
        words in low
        for words in (
            "no basic auth credentials",
            "unauthorized",
            "authentication required",
            "denied: requested access",
            "401 unauthorized",
            "incorrect username or password",
        )
    ):
        return Failure.UNAUTHORIZED
    if "no matching manifest for" in low or "does not match the specified platform" in low:
        return Failure.PLATFORM
    if "manifest unknown" in low or "name unknown" in low or "not found" in low or status == 404:
        return Failure.NOT_FOUND
    if "no such host" in low or "server misbehaving" in low:
        return Failure.NO_SUCH_HOST
    if "connection refused" in low or "no route to host" in low or "network is unreachable" in low:
        return Failure.UNREACHABLE
    if any(words in low for words in _TRANSIENT):
        return Failure.TRANSIENT
    return Failure.OTHER


@dataclass(frozen=True)
class Attempt:
    """One pull that failed: its number, what it meant, the engine's words, when (seconds after
    the first began)."""

    number: int
    failure: Failure
    text: str
    at: float


@dataclass(frozen=True)
class Backoff:
    """When to try a transient failure again: 1, 2, 4, 8 s... (at most ``cap``), ``attempts``
    tries in all, never past the image's budget; a registry's ``Retry-After`` wins."""

    attempts: int = 5
    first: float = 1.0
    factor: float = 2.0
    cap: float = 30.0

    def delay(self, failed: int, retry_after: float | None = None) -> float:
        """The wait before the next try after ``failed`` failed ones."""
        if retry_after is not None:
            return max(0.0, retry_after)
        return float(min(self.cap, self.first * self.factor ** (failed - 1)))

    def next_wait(
        self, attempt: Attempt, now: float, deadline: float, retry_after: float | None = None
    ) -> float | None:
        """How long to wait before trying again, or None: no retry (a failure no second try
        mends, the tries used up, or the wait would end past ``deadline``)."""
        if not attempt.failure.retried or attempt.number >= self.attempts:
            return None
        wait = self.delay(attempt.number, retry_after)
        return wait if now + wait < deadline else None


def attempts_text(attempts: list[Attempt]) -> str:
    """The tries, on one line: "3 attempts over 7.0 s: 1) 503 Service Unavailable; 2) ..."."""
    if not attempts:
        return ""
    shown = "; ".join(f"{a.number}) at {a.at:.1f} s: {brief(a.text)}" for a in attempts)
    return f"{len(attempts)} attempt(s): {shown}"


def brief(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True)
class Credentials:
    """Where the Docker configuration would give credentials for a registry, in words only
    (never the credentials): the file read, and how it names the registry."""

    config_file: str  # "" when there is none
    source: str  # "auths", "credHelpers: docker-credential-x", "credsStore: ...", or ""

    def describe(self, host: str) -> str:
        if not self.config_file:
            return (
                "no Docker config file was found ($DOCKER_CONFIG/config.json, "
                "~/.docker/config.json)"
            )
        if not self.source:
            return f"{self.config_file} has no credentials for {host}"
        return f"credentials for {host} came from {self.config_file} ({self.source})"


def failure_message(
    ref: str,
    failure: Failure,
    text: str,
    attempts: list[Attempt],
    *,
    credentials: Credentials | None = None,
    platform: str | None = None,
    mirror_setting: str = MIRROR_SETTING,
) -> str:
    """The one line that says why ``ref`` could not be pulled and what to do."""
    parsed = parse_reference(ref)
    host = parsed.registry
    said = brief(text)
    tried = f"; {attempts_text(attempts)}" if len(attempts) > 1 else ""
    where = f"; {credentials.describe(host)}" if credentials is not None else ""
    login = f"`docker login {host}`" if not parsed.hub else "`docker login`"
    if failure is Failure.UNAUTHORIZED:
        return (
            f"image {ref} cannot be pulled: the registry {host} wants a login ({said}); "
            f"run {login} (or give CI the credentials){where}"
        )
    if failure is Failure.DENIED_OR_MISSING:
        return (
            f"image {ref} cannot be pulled: {host} has no repository {parsed.repository} "
            f"that these credentials may read ({said}): check the name, or run {login}{where}"
        )
    if failure is Failure.NOT_FOUND:
        version = f"tag {parsed.tag}" if parsed.tag else f"digest {parsed.digest}"
        return (
            f"image {ref} cannot be pulled: the registry {host} has no {version} of the "
            f"repository {parsed.repository} ({said}): check the name"
        )
    if failure is Failure.RATE_LIMITED:
        hub = " (Docker Hub allows anonymous pulls only so often)" if parsed.hub else ""
        return (
            f"image {ref} cannot be pulled: the registry {host} limits how often it may be "
            f"pulled{hub} ({said}): log in ({login}) for a higher limit, or set ini "
            f"{mirror_setting} / ${MIRROR_ENV} to a mirror{tried}"
        )
    if failure in (Failure.UNREACHABLE, Failure.NO_SUCH_HOST):
        return (
            f"image {ref} cannot be pulled: the Docker engine cannot reach the registry {host} "
            f"({said}): is the registry up, and can the engine's host reach it?{tried}"
        )
    if failure is Failure.PLATFORM:
        return (
            f"image {ref} cannot be pulled for platform {platform or '(the engine default)'}: "
            f"{said}; set platform: to one the image has, or leave it out"
        )
    if failure is Failure.CREDENTIALS:
        return (
            f"image {ref} cannot be pulled: the credential helper for {host} failed ({said}){where}"
        )
    if failure is Failure.TRANSIENT:
        return (
            f"image {ref} cannot be pulled: the registry {host} kept failing{tried or ': ' + said}"
        )
    return f"image {ref} is not here and cannot be pulled: {said}{tried}"


_PLATFORM_MISMATCH = re.compile(r"wanted (?P<wanted>\S+), actual: (?P<actual>\S+)")


def platform_mismatch(ref: str, text: str) -> str | None:
    """The one line for a create the engine refused because the image here is another
    platform's than ``platform:`` asks for; None for any other refusal."""
    found = _PLATFORM_MISMATCH.search(text)
    if "does not match the specified platform" not in text or found is None:
        return None
    wanted, actual = found.group("wanted"), found.group("actual")
    return (
        f"image {ref} is for {actual}, not for the platform {wanted} that platform: asks for "
        "(the registry has no such variant): set platform: to one the image has, or leave it out"
    )


def retry_after(ref: str, *, timeout: float = 3.0) -> float | None:
    """The seconds a rate-limiting registry asks to wait before ``ref``'s manifest is asked
    again (its ``Retry-After``), or None when it says nothing.

    The engine does not pass that header on: after a rate-limited pull, this asks the registry
    itself with one anonymous HEAD (HTTPS, then plain HTTP for a loopback registry, as the
    engine allows), which a registry does not count as a pull.
    """
    import http.client  # here: the settings import this module at every pytest start

    parsed = parse_reference(ref)
    host = "registry-1.docker.io" if parsed.hub else parsed.registry
    path = f"/v2/{parsed.repository}/manifests/{parsed.digest or parsed.tag}"
    loopback = host.split(":")[0] in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127.")
    kinds: list[type[http.client.HTTPConnection]] = [http.client.HTTPSConnection]
    if loopback:
        kinds.insert(0, http.client.HTTPConnection)
    for kind in kinds:
        try:
            conn = kind(host, timeout=timeout)
            try:
                conn.request("HEAD", path, headers={"User-Agent": USER_AGENT})
                answer = conn.getresponse()
                header = answer.getheader("Retry-After")
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            continue
        return parse_retry_after(header) if answer.status == 429 and header else None
    return None


MAX_RETRY_AFTER = 3600.0
USER_AGENT = "pytest-testserver (Retry-After)"


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """``Retry-After``'s seconds (a number, or an HTTP date), at most an hour; None when it
    cannot be read."""
    import email.utils

    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
