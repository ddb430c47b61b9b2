"""Where the tests run: on a machine of their own, or inside a container, and which one.

Pure file reads, no engine call: ``/.dockerenv`` (Docker), ``/run/.containerenv`` (Podman), and
the container id, read from ``/proc/self/cgroup`` under cgroup v1 (``/docker/<id>``,
``docker-<id>.scope``, ``libpod-<id>``) and, under cgroup v2 (where that file holds only ``0::/``
in a private cgroup namespace), from ``/proc/self/mountinfo``: the engine bind-mounts the
container's own ``hostname``, ``hosts`` and ``resolv.conf`` from a folder named by its id.

On a plain machine this costs two ``stat`` calls and one read of a small file. Whether that
container is a sibling of the servers (on the engine in use) only the engine can say: see
``reach.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MAX_READ = 1 << 20  # a mountinfo larger than this is not read whole

_ID = r"([0-9a-f]{64})"
# cgroup v1 (and v2 without a private namespace): .../docker/<id>, docker-<id>.scope,
# libpod-<id>.scope, .../libpod/<id>, cri-containerd-<id>.scope, kubepods/.../<id>
_CGROUP_ID = re.compile(r"(?:docker|libpod|containerd|crio|kubepods)[-/:][^\n]*?" + _ID)
# mountinfo: Docker's /var/lib/docker/containers/<id>/hostname, Podman's
# .../overlay-containers/<id>/userdata/hostname (resolv.conf and hosts alike)
_MOUNT_ID = re.compile(
    r"/(?:containers|overlay-containers)/"
    + _ID
    + r"(?:/userdata)?/(?:hostname|hosts|resolv\.conf)\s"
)
_CGROUP_HINT = re.compile(r"/(?:docker|libpod|kubepods|lxc|containerd|crio|actions_job)[-/]")


@dataclass(frozen=True)
class Inside:
    """Where this process runs. ``kind``: "" (not in a container), "docker", "podman" or
    "container" (one of another engine, or one whose engine says nothing of itself)."""

    kind: str = ""
    container_id: str = ""  # 64 hex digits, or "" when no file names it
    evidence: str = ""  # what said so, for the doctor and the report

    @property
    def in_container(self) -> bool:
        return bool(self.kind)

    def describe(self) -> str:
        if not self.kind:
            return "not in a container (no /.dockerenv, /run/.containerenv or container cgroup)"
        which = f"container {self.container_id[:12]}" if self.container_id else "a container"
        return f"in {which} ({self.kind}; {self.evidence})"


def container_id_from_cgroup(text: str) -> str:
    """The container id in a ``/proc/self/cgroup``, or "" (cgroup v2's ``0::/`` names none)."""
    match = _CGROUP_ID.search(text)
    return match.group(1) if match else ""


def container_id_from_mountinfo(text: str) -> str:
    """The container id in a ``/proc/self/mountinfo``: the folder the engine mounted the
    container's own hostname, hosts or resolv.conf from; "" when none is there."""
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 5 or fields[4] not in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
            continue
        match = _MOUNT_ID.search(fields[3] + " ")
        if match:
            return match.group(1)
    return ""


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_READ).decode("utf-8", "replace")
    except OSError:
        return ""


def detect(root: Path = Path("/")) -> Inside:
    """Where this process runs (``root``: the file system to read, for tests)."""
    docker = (root / ".dockerenv").exists()
    podman = (root / "run" / ".containerenv").exists()
    cgroup = _read(root / "proc" / "self" / "cgroup")
    hinted = bool(_CGROUP_HINT.search(cgroup))
    if not (docker or podman or hinted):
        return Inside()
    evidence = [
        name
        for name, seen in (
            ("/.dockerenv", docker),
            ("/run/.containerenv", podman),
            ("/proc/self/cgroup", hinted),
        )
        if seen
    ]
    found = container_id_from_cgroup(cgroup)
    if found:
        evidence.append("id from /proc/self/cgroup")
    else:
        found = container_id_from_mountinfo(_read(root / "proc" / "self" / "mountinfo"))
        if found:
            evidence.append("id from /proc/self/mountinfo")
    if podman or "libpod" in cgroup:
        kind = "podman"
    elif docker or "docker" in cgroup:
        kind = "docker"
    else:
        kind = "container"
    return Inside(kind, found, ", ".join(evidence))
