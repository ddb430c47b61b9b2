"""``volumes``: what a server's container mounts, parsed once, and the only source of mounts.

Three kinds, each close to Compose's syntax:

- an anonymous volume, ``/var/lib/data`` (or ``{path: /var/lib/data}``): a fresh engine volume,
  labelled with the run, removed with the container;
- a named volume, ``pgdata:/var/lib/data`` (``:ro`` or ``:rw`` after it) or ``{name: pgdata, path:
  /var/lib/data}``: made by the plugin for the run under a name of the run's own (never a volume
  that already exists), shared by the run's servers that name it, removed at the run's end (or by
  the reaper, for a dead run);
- a bind mount of a file or folder inside the config file's folder, ``./www:/var/www:ro`` or
  ``{src: www, path: /var/www, read_only: true}``: read-only always (the engine is root and would
  write into the project as root), confined like ``copy.src`` (symlinks resolved), and only for an
  engine on this machine's own socket (for another, the path would name a file on its host).

Nothing else can mount anything: ``EngineMount`` values are made here only (tests/test_no_shell.py
checks it), and a bind's is read-only by construction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import validate as v
from .validate import Where

VOLUME_KEYS = ("name", "src", "path", "read_only")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class AnonymousVolume:
    path: str


@dataclass(frozen=True)
class NamedVolume:
    name: str  # the user's name; the engine's is the run's own (``volume_name`` below)
    path: str
    read_only: bool = False


@dataclass(frozen=True)
class BindMount:
    """Always read-only: there is no field to make it writable."""

    src: Path  # resolved, inside the config folder
    path: str


Volume = AnonymousVolume | NamedVolume | BindMount


@dataclass(frozen=True)
class EngineMount:
    """One mount as the engine takes it (engine.py turns it into the SDK's ``Mount``)."""

    kind: Literal["volume", "bind"]
    target: str
    source: str | None  # None: an anonymous volume
    read_only: bool
    labels: tuple[tuple[str, str], ...] = ()  # an anonymous volume's, so the reaper finds it


def describe(volume: Volume) -> str:
    """One mount in words, for --testserver-list."""
    if isinstance(volume, AnonymousVolume):
        return f"{volume.path} (anonymous)"
    if isinstance(volume, NamedVolume):
        return f"{volume.name}:{volume.path}{':ro' if volume.read_only else ''}"
    return f"{volume.src} -> {volume.path} (bind, read-only)"


def named(volumes: tuple[Volume, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(vol.name for vol in volumes if isinstance(vol, NamedVolume)))


def has_binds(volumes: tuple[Volume, ...]) -> bool:
    return any(isinstance(vol, BindMount) for vol in volumes)


def engine_mounts(
    volumes: tuple[Volume, ...],
    volume_name: Callable[[str], str],
    labels: Mapping[str, str],
) -> list[EngineMount]:
    """The engine's mounts: ``volume_name`` gives the run's engine name of a named volume."""
    mounts: list[EngineMount] = []
    for vol in volumes:
        if isinstance(vol, AnonymousVolume):
            mounts.append(EngineMount("volume", vol.path, None, False, tuple(labels.items())))
        elif isinstance(vol, NamedVolume):
            mounts.append(EngineMount("volume", vol.path, volume_name(vol.name), vol.read_only))
        else:
            mounts.append(EngineMount("bind", vol.path, str(vol.src), True))
    return mounts


def parse_volumes(value: object, where: Where, base: Path) -> tuple[Volume, ...]:
    volumes: list[Volume] = []
    targets: dict[str, int] = {}
    for i, item in enumerate(v.string_list(value, where)):
        w = where.index(i)
        vol = parse_short(item, w, base) if isinstance(item, str) else parse_long(item, w, base)
        if vol.path in targets:
            w.fail(f"{vol.path} is already mounted by volumes[{targets[vol.path]}]")
        targets[vol.path] = i
        volumes.append(vol)
    return tuple(volumes)


def parse_short(text: str, where: Where, base: Path) -> Volume:
    """``/path``, ``name:/path[:ro|:rw]`` or ``./src:/path:ro``."""
    text = v.single_line(text, where)
    parts = text.split(":")
    if len(parts) == 1:
        return AnonymousVolume(target(text, where))
    if len(parts) > 3:
        where.fail(f"{v.show(text)} is not SOURCE:PATH[:ro]")
    source, path = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        where.fail(f"{v.show(mode)} is not a mount mode: ro or rw")
    if source.startswith("/"):
        where.fail(
            f"{v.show(source)}: an absolute host path is never mounted; name a folder inside "
            "the config file's folder, such as ./data"
        )
    if source.startswith(".") or "/" in source:
        if mode != "ro":
            where.fail(
                f"{v.show(text)}: a bind mount must end with :ro (read-only: the engine is "
                "root, and would write into your project as root)"
            )
        return bind(source, path, where, where, base)
    return NamedVolume(volume_name(source, where), target(path, where), read_only=mode == "ro")


def parse_long(item: object, where: Where, base: Path) -> Volume:
    raw: dict[str, Any] = v.mapping(item, where)
    v.known_keys(raw, VOLUME_KEYS, where)
    if raw.get("path") is None:
        where.fail("needs path: where the container sees it")
    if raw.get("name") is not None and raw.get("src") is not None:
        where.fail("name and src exclude each other: a volume is named, or binds a folder")
    read_only = raw.get("read_only")
    ro = v.boolean(read_only, where.key("read_only")) if read_only is not None else None
    if raw.get("src") is not None:
        if ro is not True:
            where.key("read_only").fail(
                "a bind mount needs read_only: true (the engine is root, and would write "
                "into your project as root)"
            )
        return bind(raw["src"], raw["path"], where.key("src"), where.key("path"), base)
    path = target(raw["path"], where.key("path"))
    if raw.get("name") is not None:
        return NamedVolume(volume_name(raw["name"], where.key("name")), path, bool(ro))
    if ro is not None:
        where.key("read_only").fail("an anonymous volume starts empty: read-only, it stays so")
    return AnonymousVolume(path)


def bind(src: object, path: object, swhere: Where, pwhere: Where, base: Path) -> BindMount:
    resolved = v.relative_path(src, swhere, base)
    if not (resolved.is_dir() or resolved.is_file()):
        swhere.fail(f"{v.show(src)} is neither a file nor a folder")
    return BindMount(resolved, target(path, pwhere))


def target(value: object, where: Where) -> str:
    path = v.container_path(value, where).rstrip("/")  # "/data/" and "/data" are one mount point
    if not path:
        where.fail("/ cannot be mounted over: name a folder")
    return path


def volume_name(value: object, where: Where) -> str:
    name = v.string(value, where)
    if not _VOLUME_NAME.fullmatch(name):
        where.fail(
            f"{v.show(name)} is not a volume name (letters, digits, _ . -, starting with a "
            "letter or digit, at most 64 characters)"
        )
    return name
