"""The idle watch of a kept container: ``python -m pytest_testserver.idle FOLDER NAME``.

Started detached at the end of each run that used the container. It sleeps until the container
has gone unused for its idle time, then removes it under the exclusive lock (never while a run
holds it, never a container without this user's and project's labels). A later run's watch
takes over: the record names the watch that answers for it, and any other one exits.
"""

from __future__ import annotations

import contextlib
import sys
import time

CHECK_EVERY = 5.0  # seconds between looks: a cleaned or superseded watch ends soon after


def main(argv: list[str]) -> int:
    from .errors import UnsafeFolder
    from .folders import StateDir
    from .reuse import Hold, forget, idle_left

    folder_path, name, token = argv
    try:
        folder = StateDir.open(folder_path)
    except (OSError, UnsafeFolder):
        return 1
    in_use = time.time()  # the run that started this watch holds it
    while True:
        record = folder.read_json(f"{name}.json")
        left = idle_left(record, time.time())
        if left is None or not isinstance(record, dict) or record.get("watcher") != token:
            return 0  # gone, or another watch answers for it now
        # Idle since its last use: the last run's end, or the last moment a run (perhaps one
        # killed since, which never said when it ended) was seen holding it.
        left = max(left, in_use + float(record["idle"]) - time.time())
        if left > 0:
            time.sleep(min(left, CHECK_EVERY))
            continue
        hold = Hold.take(folder, name, exclusive=True)
        if hold is None:  # a run uses it now
            in_use = time.time()
            time.sleep(CHECK_EVERY)
            continue
        try:
            remove(str(record.get("container", "")), name)
            forget(folder, name)
        finally:
            hold.release()
        return 0


def remove(container: str, name: str) -> None:
    from .engine import Engine
    from .errors import TestserverError
    from .reuse import LABEL_REUSE_OWNER, owner_here

    with contextlib.suppress(TestserverError):
        engine = Engine.connect()
        try:
            info = engine.inspect(container)
            labels = (info.get("Config") or {}).get("Labels") or {}
            ours = labels.get(LABEL_REUSE_OWNER) == owner_here()
            if ours and info.get("Name", "").lstrip("/") == name:
                engine.remove_container(container)
        finally:
            engine.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
