"""The exception hierarchy: one base class, one subclass per way a server can fail.

Each error carries what a user needs to act (server name, exit code, log tail) and renders as a
message that starts with one line saying what went wrong; log tails follow on later lines.
"""

from __future__ import annotations


class TestserverError(Exception):
    """Base class of every error this plugin raises."""

    __test__ = False  # the name starts with "Test"; keep pytest from collecting it


class ConfigError(TestserverError):
    """The configuration is invalid; the message names file, server and key."""


class EngineUnavailable(TestserverError):
    """The Docker engine cannot be reached."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(
            f"testserver: cannot reach the Docker engine at {address}: {reason}; "
            "start Docker or set DOCKER_HOST"
        )


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

    def __init__(self, server: str, exit_code: int, log_tail: str) -> None:
        self.exit_code = exit_code
        super().__init__(
            server, f"the container exited with code {exit_code} before it was ready", log_tail
        )


class NotReady(ServerError):
    """A readiness check did not pass in time."""
