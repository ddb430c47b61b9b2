"""pytest-testserver: real network servers in Docker containers as pytest fixtures."""

from __future__ import annotations

from .errors import (
    ConfigError,
    EngineError,
    EngineUnavailable,
    ImageError,
    NotReady,
    ServerError,
    ServerExited,
    StartError,
    TestserverError,
)
from .handle import ServerHandle

__all__ = [
    "ConfigError",
    "EngineError",
    "EngineUnavailable",
    "ImageError",
    "NotReady",
    "ServerError",
    "ServerExited",
    "ServerHandle",
    "StartError",
    "TestserverError",
]
