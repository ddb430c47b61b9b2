"""Where the tests run, read from recorded file contents (pure: no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_testserver.whereami import (
    Inside,
    container_id_from_cgroup,
    container_id_from_mountinfo,
    detect,
)

ID = "aaadc781cdf42ad696b800d7619484774b9c44832c58835efb5f05650945ac0e"
PODMAN_ID = "5d1f7e2a0c4b9e8f3a6d2c1b0e9f8a7d6c5b4a39281706f5e4d3c2b1a0f9e8d7"

# Docker 20.10, cgroup v1 (recorded on the CI machine)
CGROUP_V1 = (
    "".join(f"{n}:{c}:/docker/{ID}\n" for n, c in [(9, "name=systemd"), (4, "memory"), (1, "cpu")])
    + f"0::/docker/{ID}\n"
)
# systemd's cgroup driver, cgroup v1
CGROUP_V1_SYSTEMD = f"10:devices:/system.slice/docker-{ID}.scope\n"
# cgroup v2 with a private cgroup namespace (Docker's default there): nothing to read
CGROUP_V2 = "0::/\n"
# the CI machine itself: a memory cgroup of its own, nothing of a container engine
HOST_CGROUP = "9:name=systemd:/\n4:memory:/process_api/4163925a70038c3ebcd3cb9b28741e87\n0::/\n"

# cgroup v2: the engine bind-mounts hostname, hosts and resolv.conf from the container's folder
MOUNTINFO_DOCKER = f"""\
596 545 0:51 / / rw,relatime master:215 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X
597 596 0:54 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
613 596 254:1 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda1 rw
614 596 254:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw
615 596 254:1 /var/lib/docker/containers/{ID}/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
"""
# /var/lib/docker on a file system of its own: the root of the mount is relative to it
MOUNTINFO_OWN_FS = f"614 596 8:17 /containers/{ID}/hostname /etc/hostname rw - xfs /dev/sdb1 rw\n"
MOUNTINFO_PODMAN = (
    "700 650 0:60 /containers/storage/overlay-containers/"
    f"{PODMAN_ID}/userdata/hostname /etc/hostname rw,nosuid,nodev - tmpfs tmpfs rw\n"
)
# a bind mount of another container's folder somewhere else names no id of ours
MOUNTINFO_OTHER = f"614 596 254:1 /var/lib/docker/containers/{ID}/hostname /data/h rw - ext4 x rw\n"


def fake_root(
    tmp_path: Path,
    *,
    dockerenv: bool = False,
    containerenv: bool = False,
    cgroup: str = "",
    mountinfo: str = "",
) -> Path:
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (tmp_path / "run").mkdir()
    if dockerenv:
        (tmp_path / ".dockerenv").write_text("")
    if containerenv:
        (tmp_path / "run" / ".containerenv").write_text('engine="podman-4.3.1"\n')
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text(mountinfo)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CGROUP_V1, ID),
        (CGROUP_V1_SYSTEMD, ID),
        (f"0::/machine.slice/libpod-{PODMAN_ID}.scope/container\n", PODMAN_ID),
        (CGROUP_V2, ""),
        (HOST_CGROUP, ""),
    ],
)
def test_container_id_from_cgroup(text: str, expected: str) -> None:
    assert container_id_from_cgroup(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MOUNTINFO_DOCKER, ID),
        (MOUNTINFO_OWN_FS, ID),
        (MOUNTINFO_PODMAN, PODMAN_ID),
        (MOUNTINFO_OTHER, ""),
        ("", ""),
    ],
)
def test_container_id_from_mountinfo(text: str, expected: str) -> None:
    assert container_id_from_mountinfo(text) == expected


def test_a_plain_machine_is_not_in_a_container(tmp_path: Path) -> None:
    # mountinfo names a container (one this machine runs, mounted elsewhere), but no marker
    # says we are in one: the cheap checks decide, and mountinfo is not even read
    root = fake_root(tmp_path, cgroup=HOST_CGROUP, mountinfo=MOUNTINFO_DOCKER)
    found = detect(root)
    assert found == Inside()
    assert not found.in_container
    assert "not in a container" in found.describe()


def test_docker_under_cgroup_v1(tmp_path: Path) -> None:
    found = detect(fake_root(tmp_path, dockerenv=True, cgroup=CGROUP_V1))
    assert (found.kind, found.container_id) == ("docker", ID)
    assert "id from /proc/self/cgroup" in found.evidence


def test_docker_under_cgroup_v2_reads_its_id_from_mountinfo(tmp_path: Path) -> None:
    root = fake_root(tmp_path, dockerenv=True, cgroup=CGROUP_V2, mountinfo=MOUNTINFO_DOCKER)
    found = detect(root)
    assert (found.kind, found.container_id) == ("docker", ID)
    assert found.evidence == "/.dockerenv, id from /proc/self/mountinfo"
    assert found.describe().startswith(f"in container {ID[:12]} (docker;")


def test_podman_marker_and_its_id(tmp_path: Path) -> None:
    root = fake_root(tmp_path, containerenv=True, cgroup=CGROUP_V2, mountinfo=MOUNTINFO_PODMAN)
    found = detect(root)
    assert (found.kind, found.container_id) == ("podman", PODMAN_ID)


def test_a_container_whose_id_no_file_names(tmp_path: Path) -> None:
    # a container (the marker says so) that is no engine's we know: nothing to ask about
    found = detect(fake_root(tmp_path, dockerenv=True, cgroup=CGROUP_V2))
    assert (found.kind, found.container_id) == ("docker", "")
    assert found.in_container


def test_a_container_known_by_its_cgroup_alone(tmp_path: Path) -> None:
    found = detect(fake_root(tmp_path, cgroup=CGROUP_V1_SYSTEMD))
    assert (found.kind, found.container_id) == ("docker", ID)
    assert found.evidence == "/proc/self/cgroup, id from /proc/self/cgroup"
