"""The leak check of a nox session: what the runs of its pytest left on the engine.

    python .ci/leaks.py before FILE   the runs that have objects now (other jobs', a developer's)
    python .ci/leaks.py after FILE    exit 1 naming every run that appeared since and whose owner
                                      (a pid of this machine) no longer runs: what it left is a leak

Through the Docker SDK and $DOCKER_HOST (the session's engine); no CLI.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import docker

RUN = "pytest-testserver.run"


def runs(api: Any) -> dict[str, dict[str, Any]]:
    """Each run id labelled on a container, network or volume: its objects and owner labels."""
    found: dict[str, dict[str, Any]] = {}
    label = {"label": RUN}
    objects = [
        *(
            ("container", c["Id"][:12], c.get("Labels") or {})
            for c in api.containers(all=True, filters=label)
        ),
        *(("network", n["Name"], n.get("Labels") or {}) for n in api.networks(filters=label)),
        *(
            ("volume", v["Name"], v.get("Labels") or {})
            for v in api.volumes(filters=label).get("Volumes") or []
        ),
    ]
    for kind, name, labels in objects:
        run = found.setdefault(labels[RUN], {"objects": [], "labels": {}})
        run["objects"].append(f"{kind} {name}")
        run["labels"].update(labels)
    return found


def alive(labels: dict[str, str]) -> bool:
    """Whether the run's owner still runs here (a live run of someone else is not a leak)."""
    try:
        pid = int(labels.get("pytest-testserver.pid", ""))
        here = str(os.stat("/proc/self/ns/pid").st_ino)
    except (ValueError, OSError):
        return False
    if labels.get("pytest-testserver.pidns") != here:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(step: str, file: Path) -> int:
    api = docker.APIClient(**docker.utils.kwargs_from_env())
    try:
        now = runs(api)
    finally:
        api.close()
    if step == "before":
        file.write_text(json.dumps(sorted(now)))
        return 0
    before = set(json.loads(file.read_text()))
    leaked = {
        run: found["objects"]
        for run, found in now.items()
        if run not in before and not alive(found["labels"])
    }
    if leaked:
        for run, objects in sorted(leaked.items()):
            print(f"leaks: run {run} left {len(objects)}: {', '.join(objects)}")
        return 1
    print(f"leaks: none ({len(now)} run(s) on the engine, none of them new and dead)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("before", "after"):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
