"""Build the offline base image ``debian:bookworm`` for the recipes (examples/recipes).

Machines without a registry cannot pull ``debian:bookworm``; this makes an equivalent one with
``debootstrap --variant=minbase bookworm DIR`` (Debian's own mirror, about a minute) and imports
the tree through the Docker SDK. On a machine that can pull, ``docker pull debian:bookworm`` does
the same job. Present already: nothing is done. Commands are argument lists; no shell.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import docker.errors

REPOSITORY, TAG = "debian", "bookworm"


def main() -> int:
    client = docker.from_env(timeout=600)
    try:
        client.images.get(f"{REPOSITORY}:{TAG}")
        print(f"{REPOSITORY}:{TAG}: present")
        return 0
    except docker.errors.ImageNotFound:
        pass
    if shutil.which("debootstrap") is None:
        print("debootstrap is missing: apt-get install -y debootstrap", file=sys.stderr)
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="debian-base-") as work:
        root, archive = Path(work, "root"), Path(work, "root.tar")
        subprocess.run(
            ["debootstrap", "--variant=minbase", TAG, str(root)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # tar keeps device nodes, owners and modes as debootstrap made them
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        client.api.import_image_from_file(str(archive), repository=REPOSITORY, tag=TAG)
    print(f"{REPOSITORY}:{TAG}: built offline by debootstrap in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
