"""How the processes of one run (xdist workers) share its servers, through the run's folder.

Servers with ``share: run`` are started once per run: the first worker that needs one starts it
under a lock and writes down which container it is; the others read that, and check with the
engine that the container really is this run's before talking to it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from .errors import UnsafeFolder
from .folders import StateDir, file_name
from .identity import Owner
from .locks import hold_lock

RUNS = "runs"
OWNER_FILE = "owner.json"
STALE_AFTER = 7 * 24 * 3600  # a run folder without an owner, untouched this long, is litter


class SharedServers:
    """File-backed state of a run's ``share: run`` servers, read and written under locks."""

    def __init__(self, run_id: str, state: StateDir) -> None:
        self.run_id = run_id
        runs = state.child(RUNS)
        try:
            self.folder = runs.child(run_id)
        finally:
            runs.close()

    def claimed(self, name: str, timeout: float | None) -> contextlib.AbstractContextManager[None]:
        return hold_lock(
            self.folder,
            f"server-{name}.lock",  # prefixed: a server may be called "network"
            what=f"start of the shared server {name!r}",
            run=self.run_id,
            timeout=timeout,
        )

    def read(self, name: str) -> dict[str, Any] | None:
        """What the worker that started ``name`` wrote: a container id, or an error."""
        data = self.folder.read_json(f"server-{name}.json")
        if data is None:
            return None
        shown = self.folder.path / f"server-{name}.json"
        if not isinstance(data, dict) or not (
            isinstance(data.get("container_id"), str) or isinstance(data.get("error"), str)
        ):
            raise UnsafeFolder(f"{shown} does not say which container the server is")
        return data

    def write(self, name: str, data: dict[str, Any]) -> None:
        self.folder.write_json(f"server-{name}.json", data)

    def first_rebuild(self, tag: str) -> bool:
        """True once per run and tag (called under the tag's build lock)."""
        mark = f"rebuilt-{file_name(tag)}"
        if self.folder.exists(mark):
            return False
        self.folder.touch(mark)
        return True

    def close(self) -> None:
        self.folder.close()


def make_run_folder(state: StateDir, run_id: str, owner: Owner) -> None:
    """The controller's: the run's folder, saying whose it is (so litter can be told apart)."""
    shared = SharedServers(run_id, state)
    try:
        shared.folder.write_json(OWNER_FILE, owner.labels())
    finally:
        shared.close()


def remove_run_folder(state: StateDir, run_id: str) -> None:
    with contextlib.suppress(OSError, UnsafeFolder):
        runs = state.child(RUNS)
        try:
            runs.remove_tree(run_id)
        finally:
            runs.close()


def stale(folder: StateDir, name: str) -> bool:
    try:
        return time.time() - folder.stat(name).st_mtime > STALE_AFTER
    except OSError:
        return False


def dead_run_folders(state: StateDir, here: Owner | None = None) -> Iterator[str]:
    """Run folders whose controller is known dead (killed before it could remove its folder)."""
    try:
        runs = state.child(RUNS)
    except (OSError, UnsafeFolder):
        return
    try:
        for name in runs.names():
            try:
                folder = runs.child(name)
            except (OSError, UnsafeFolder):
                continue
            try:
                labels = folder.read_json(OWNER_FILE)
            except UnsafeFolder:
                labels = None
            finally:
                folder.close()
            owner = Owner.from_labels(labels) if isinstance(labels, dict) else None
            if owner is not None and owner.known_dead(here):
                yield name
            elif owner is None and stale(runs, name):
                yield name  # an older version's folder, or a half-made one: not used for days
    finally:
        runs.close()
