"""pytest-testserver: real network servers in Docker containers as pytest fixtures.

The names below are loaded on first use: pytest imports this package at every start, and a
suite that declares no servers should not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)

if TYPE_CHECKING:
    from .errors import (
        ConfigError,
        EngineError,
        EngineUnavailable,
        ImageError,
        NotReady,
        ServerDied,
        ServerError,
        ServerExited,
        StartError,
        TestserverError,
    )
    from .handle import ServerHandle

_WHERE = {
    "ConfigError": "errors",
    "EngineError": "errors",
    "EngineUnavailable": "errors",
    "ImageError": "errors",
    "NotReady": "errors",
    "ServerDied": "errors",
    "ServerError": "errors",
    "ServerExited": "errors",
    "StartError": "errors",
    "TestserverError": "errors",
    "ServerHandle": "handle",
}

__all__ = [
    "ConfigError",
    "EngineError",
    "EngineUnavailable",
    "ImageError",
    "NotReady",
    "ServerDied",
    "ServerError",
    "ServerExited",
    "ServerHandle",
    "StartError",
    "TestserverError",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
