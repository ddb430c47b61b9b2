"""Build the offline base image ``busybox:stable`` (FROM scratch + Debian's busybox-static).

Machines without a registry cannot pull ``busybox:stable``; this builds an equivalent image from the
host's static busybox binary, through the Docker SDK (no CLI, no shell). On a machine that can pull,
``docker pull busybox:stable`` does the same job.
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import docker
import docker.errors

TAG = "busybox:stable"
BUSYBOX = Path("/bin/busybox")
DOCKERFILE = b"""FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""


def build_context() -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE))
        with BUSYBOX.open("rb") as f:
            info = tarfile.TarInfo("busybox")
            info.size = BUSYBOX.stat().st_size
            info.mode = 0o755
            tar.addfile(info, f)
    buf.seek(0)
    return buf


def main() -> int:
    client = docker.from_env()
    try:
        client.images.get(TAG)
        print(f"{TAG}: present")
        return 0
    except docker.errors.ImageNotFound:
        pass
    if not BUSYBOX.is_file():
        print(f"{BUSYBOX} is missing: apt-get install -y busybox-static", file=sys.stderr)
        return 1
    client.images.build(fileobj=build_context(), custom_context=True, tag=TAG, rm=True)
    print(f"{TAG}: built offline from {BUSYBOX}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
