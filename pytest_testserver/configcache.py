"""The YAML file's data, remembered by content: an unchanged file costs no PyYAML at all.

Importing PyYAML and the strict parse are ~20 ms of every run's start-up, before collection. The
data of a file that loaded *and validated* is kept as JSON (never pickle: nothing read back can run
code), with the file's exact bytes and a fingerprint of the loader; it is used only when all of
them match, and it is validated again on every run, so the cache saves parsing only. It lives in
the per-user folder, and only when that folder is this user's alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import UnsafeFolder
from .folders import user_state_dir
from .validate import read_bytes

FORMAT = 1
MAX_ENTRIES = 64
MAX_NODES = 100_000  # an alias-heavy document is not worth caching (nor expanding into JSON)


@dataclass
class YamlDocument:
    """One YAML file's data; ``remember()`` once it validated, so the next run skips PyYAML."""

    path: Path
    shown: str
    content: bytes
    data: object
    from_cache: bool
    entry: Path | None  # where its data is (or would be) kept; None: no safe place

    @classmethod
    def read(cls, path: Path, shown: str, folder: str | None = None) -> YamlDocument:
        """``folder``: the run's private folder, when the xdist controller chose it."""
        content = read_bytes(path, shown)
        where = path.resolve()  # the entry names the real file, whichever way it was reached
        entry = cache_file(where, folder)
        if entry is not None:
            found = recall(entry, where, content)
            if found is not None:
                return cls(where, shown, content, found[0], from_cache=True, entry=entry)
        from .yamlfile import parse_yaml

        data = parse_yaml(content, shown)
        return cls(where, shown, content, data, from_cache=False, entry=entry)

    def remember(self) -> None:
        if self.entry is not None and not self.from_cache and is_plain(self.data):
            store(self.entry, self.path, self.content, self.data)


def private_dir(path: Path) -> bool:
    """A real folder (not a link) that this user owns and nobody else may write to."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return stat.S_ISDIR(info.st_mode) and owner_ok and not info.st_mode & 0o022


def cache_base(folder: str | None = None) -> Path:
    """This user's usual private folder (never a fresh one: nothing would outlive the run)."""
    state, warning = user_state_dir(folder, fallback=False)
    state.close()
    if warning:
        raise UnsafeFolder(warning)  # $TMPDIR is not what Python uses: keep nothing
    return state.path


def cache_file(config: Path, run_folder: str | None = None) -> Path | None:
    """Where the data of ``config`` (a resolved path) is kept; None when there is no safe place."""
    try:
        base = cache_base(run_folder)
        folder = base / "yaml-cache"
        folder.mkdir(mode=0o700, exist_ok=True)
    except (OSError, UnsafeFolder):
        return None
    if not (private_dir(base) and private_dir(folder)):
        return None
    key = zlib.crc32(os.fsencode(config))  # a file name; the entry holds the full path
    return folder / f"{key:08x}.json"


def loader_fingerprint() -> list[object]:
    """What the parse depends on besides the bytes: our loader and PyYAML, as installed now."""
    marks: list[object] = [FORMAT]
    spec = importlib.util.find_spec("yaml")
    for origin in (Path(__file__).with_name("yamlfile.py"), spec.origin if spec else None):
        try:
            info = os.stat(origin) if origin else None
        except OSError:
            info = None
        marks += [str(origin), info.st_mtime_ns if info else 0, info.st_size if info else 0]
    return marks


def recall(entry: Path, config: Path, content: bytes) -> tuple[object] | None:
    """The remembered data (in a 1-tuple: the data itself may be None), if everything matches."""
    try:
        with entry.open(encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    if not (
        isinstance(saved, dict)
        and saved.get("path") == str(config)
        and saved.get("content") == content.decode("latin-1")  # bytes, exactly
        and saved.get("loader") == loader_fingerprint()
        and "data" in saved
    ):
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)  # eviction drops the least recently *used* entries
    return (saved["data"],)


def store(entry: Path, config: Path, content: bytes, data: object) -> None:
    saved = {
        "path": str(config),
        "content": content.decode("latin-1"),
        "loader": loader_fingerprint(),
        "data": data,
    }
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(saved, f)
        os.replace(tmp, entry)
        evict_oldest(entry.parent)
    except (OSError, ValueError):
        tmp.unlink(missing_ok=True)


def evict_oldest(folder: Path) -> None:
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    for old in entries[:-MAX_ENTRIES]:
        old.unlink(missing_ok=True)


def is_plain(data: object) -> bool:
    """Only what JSON gives back unchanged: str keys, lists, str, int, float, bool, None."""
    todo = [data]
    seen = 0
    while todo:
        item = todo.pop()
        seen += 1
        if seen > MAX_NODES:
            return False
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return False
            todo += item.values()
        elif isinstance(item, list):
            todo += item
        elif item is not None and type(item) not in (str, int, float, bool):
            return False
    return True
