"""The exception hierarchy: one base class, one subclass per way a server can fail.

Each error carries what a user needs to act (server name, exit code, log tail) and renders as a
message that starts with one line saying what went wrong; log tails follow on later lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class TestserverError(Exception):
    """Base class of every error this plugin raises."""

    __test__ = False  # the name starts with "Test"; keep pytest from collecting it


class ConfigError(TestserverError):
    """The configuration is invalid; the message names file, server and key."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: ends the run like Ctrl-C, through teardown, whatever the plugin is doing.

    A ``KeyboardInterrupt`` so that no ``except Exception`` (ours, the SDK's, a test's) can
    swallow it; pytest stops the session for it and the plugin sets the exit status to 143.
    """


class EngineUnavailable(TestserverError):
    """The Docker engine cannot be reached."""

    def __init__(
        self, address: str, reason: str, server: str | None = None, *, remedy: str = ""
    ) -> None:
        self.address = address
        self.reason = reason
        self.server = server
        self.remedy = remedy  # what to do, when it is not "start Docker" (TLS, SSH auth...)
        who = f"server {server!r}: " if server else ""
        super().__init__(f"testserver: {who}{self.describe()}")

    def describe(self) -> str:
        return f"cannot reach the Docker engine at {self.address}: {self.reason}; " + (
            self.remedy or "start Docker or set DOCKER_HOST"
        )

    def for_server(self, server: str) -> EngineUnavailable:
        """The same failure, saying which server it stopped."""
        return type(self)(self.address, self.reason, server, remedy=self.remedy)


class EngineStalled(EngineUnavailable):
    """The engine took a call but did not answer within the time the server had left."""

    def describe(self) -> str:
        return f"the Docker engine at {self.address} stopped answering ({self.reason})"


class EngineError(TestserverError):
    """The engine refused a call; ``status`` is its HTTP status code."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerError(TestserverError):
    """Something went wrong with one server; ``server`` names it."""

    def __init__(self, server: str, message: str, log_tail: str = "", *, output: str = "") -> None:
        self.server = server
        self.log_tail = log_tail
        text = f"testserver: server {server!r}: {message}"
        if output:
            text += f"\n--- its last output ---\n{output.rstrip()}"
        if log_tail:
            text += f"\n--- last lines of the log of {server!r} ---\n{log_tail.rstrip()}"
        super().__init__(text)


class ImageError(ServerError):
    """The image could not be built or pulled."""


class StartError(ServerError):
    """The container could not be created or started (a port taken, a missing secret...)."""


class ServerExited(ServerError):
    """The container exited before it was ready."""

    def __init__(self, server: str, exit_code: int, log_tail: str, *, why: str = "") -> None:
        self.exit_code = exit_code
        super().__init__(
            server,
            why or f"the container exited with code {exit_code} before it was ready",
            log_tail,
        )

    @classmethod
    def vanished(cls, server: str) -> ServerExited:
        """The container is gone altogether: removed by someone else, or by a prune."""
        return cls(
            server,
            -1,
            "",
            why="the container was removed before it was ready (docker rm, a prune, or "
            "another run's sweep)",
        )


class ServerDied(ServerError):
    """A server that was ready stopped during the run: how it died, and its last log lines."""

    def __init__(self, server: str, why: str, log_tail: str = "") -> None:
        self.why = why
        self.server = server
        self.log_tail = log_tail
        text = f"testserver: server {server!r} died during the run: {why}"
        if log_tail:
            text += f"\n--- last lines of the log of {server!r} ---\n{log_tail.rstrip()}"
        TestserverError.__init__(self, text)  # "server 'web' died", not "server 'web': died"


class NotReady(ServerError):
    """A readiness check did not pass in time."""


class ResetError(ServerError):
    """The server's ``reset`` command failed (or could not run) before a test."""


class UnsafeFolder(TestserverError):
    """A folder is not this user's alone (or cannot be made): nothing is read from or put in it."""


class Describable(Protocol):
    def describe(self) -> str: ...


class LockTimeout(TestserverError):
    """A lock was not free within the time allowed; names the lock and, when known, its holder."""

    def __init__(self, what: str, path: Path, waited: float, holder: Describable | None) -> None:
        self.path = path
        self.holder = holder
        who = f", held by {holder.describe()}" if holder else ""
        shown = f"{waited:.1f}" if waited < 10 else f"{waited:.0f}"
        super().__init__(f"waited {shown}s for the {what} lock {path}{who}")
