"""``--testserver-prune``: remove this project's built images that its configuration no longer uses.

Every image the plugin builds is tagged by its content hash, so each change of a server's
definition leaves the previous image behind. Built images carry the plugin's mark, the project
(its root folder's digest), the server and the content hash (``image.image_labels``); prune
selects by the mark and this project only, so an image of another project, or one the plugin did
not build, is never looked at. The tags the configuration uses now are computed from it alone,
without building. An image any container uses (running or not) is left alone; nothing is forced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import ServerConfig
from .errors import EngineError
from .identity import project_digest
from .image import LABEL_IMAGE, LABEL_IMAGE_PROJECT, image_tag, plan_for

if TYPE_CHECKING:  # importing the plugin must not import docker
    from .engine import Engine

TAG_PREFIX = "pytest-testserver/"  # image.image_tag's repository prefix
BUDGET = 300.0  # seconds for the listing, then for each image (a few engine calls each)
MAX_CHAIN = 1000  # parents followed per image (a Dockerfile step each)


@dataclass(frozen=True)
class Removed:
    name: str  # the tag, or the short id of a dangling image
    freed: int  # bytes


def wanted_tags(config: ServerConfig | None) -> set[str]:
    """The tags of the images ``config`` builds, as it is now."""
    tags: set[str] = set()
    for spec in config.servers.values() if config is not None else ():
        plan = plan_for(spec)
        if plan is not None:
            tags.add(image_tag(spec, plan))
    return tags


def prune(root: str, config: ServerConfig | None, emit: Callable[[str], None]) -> None:
    """Remove the stale images of the project at ``root``: ``emit`` gets one line per image as
    it goes (what was done is said even if the engine stops answering later), then a total."""
    from .engine import Engine

    keep = wanted_tags(config)
    engine = Engine.connect()
    removed: list[Removed] = []
    kept = 0
    try:
        with engine.deadline(time.monotonic() + BUDGET):
            used = engine.container_image_ids()
            selector = {LABEL_IMAGE: "1", LABEL_IMAGE_PROJECT: project_digest(root)}
            found = engine.images(selector)
        for item in found:
            image_id = str(item.get("Id") or "")
            tags: list[str] = item["RepoTags"]
            stale = [t for t in tags if t.startswith(TAG_PREFIX) and t not in keep]
            if tags and not stale:
                continue  # the configuration uses it (or only someone else's tag is left)
            shown = ", ".join(stale) or f"{short_id(image_id)} (untagged)"
            if image_id in used:
                emit(f"testserver: kept {shown}: a container uses it")
                kept += 1
                continue
            try:
                # Each image its own budget: removing one waits on the engine's image store,
                # which a busy shared engine may hold for a while.
                with engine.deadline(time.monotonic() + BUDGET):
                    removed.append(remove(engine, image_id, stale or [image_id], shown))
            except EngineError as exc:
                if exc.status == 404:  # gone meanwhile (another prune)
                    continue
                emit(f"testserver: kept {shown}: {exc}")
                kept += 1
                continue
            emit(f"testserver: removed {shown} ({removed[-1].freed} bytes freed)")
    finally:
        engine.close()
    emit(summary(removed, kept))


def remove(engine: Engine, image_id: str, refs: Iterable[str], shown: str) -> Removed:
    """Untag (or remove) ``refs`` of one image; the bytes freed are the own sizes of the images
    the engine deleted: the image once its last tag went, and its parents nothing else uses."""
    own = own_sizes(engine, image_id)
    deleted: list[str] = []
    for ref in refs:
        deleted += engine.remove_image(ref)
    return Removed(shown, sum(own.get(i, 0) for i in deleted))


def own_sizes(engine: Engine, image_id: str) -> dict[str, int]:
    """Each image of ``image_id``'s parent chain with the bytes its own layer adds.

    An image's Size counts every layer under it; a classic build keeps one parent image per
    step, so a layer's own bytes are its Size less its parent's. Without parents (BuildKit,
    Podman) the image's whole Size is all that is known: an upper bound of what it frees.
    """
    own: dict[str, int] = {}
    info = engine.inspect_image(image_id)
    while info is not None and len(own) < MAX_CHAIN:
        parent = str(info.get("Parent") or "")
        above = engine.inspect_image(parent) if parent else None
        size = int(info.get("Size") or 0)
        own[str(info.get("Id"))] = size - int(above.get("Size") or 0) if above else size
        info = above
    return own


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def summary(removed: list[Removed], kept: int) -> str:
    if not removed and not kept:
        return "testserver: --testserver-prune: no stale image of this project"
    freed = sum(r.freed for r in removed)
    text = f"testserver: --testserver-prune: removed {len(removed)} image(s), {freed} bytes freed"
    return text + (f"; {kept} stale image(s) kept" if kept else "")
