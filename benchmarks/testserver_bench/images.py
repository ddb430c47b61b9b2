"""The busybox httpd images every workload runs, built offline with docker-py before timing."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

BASE_IMAGE = "busybox:stable"
PREFIX = "testserver-bench"
MARKER = "FATAL-MARKER-42"
EXIT_CODE = 3
SLOW_START = 1.5  # seconds before the slow server listens
DIES_AFTER = 0.5  # seconds before the dying server exits
INDEX_HTML = b"<html><body>testserver-bench</body></html>\n"

HTTPD = ["httpd", "-f", "-p", "8080", "-h", "/www"]
COMMANDS: dict[str, list[str]] = {
    # Listens at once.
    "ready": HTTPD,
    # Listens 1.5 s after the container starts (workload 2).
    "slow": ["sh", "-c", f"sleep {SLOW_START}; exec {' '.join(HTTPD)}"],
    # Prints a marker and exits with code 3 after 0.5 s, never listening (workload 3).
    "dies": ["sh", "-c", f"echo {MARKER}; sleep {DIES_AFTER}; exit {EXIT_CODE}"],
}


def image_ref(kind: str) -> str:
    return f"{PREFIX}/httpd:{kind}"


def dockerfile(command: list[str]) -> str:
    return f"FROM {BASE_IMAGE}\nCOPY index.html /www/index.html\nCMD {json.dumps(command)}\n"


def write_context(folder: Path, owner: str) -> Path:
    """A build context (Dockerfile + index.html) for the workloads that build from a Dockerfile.

    Each contender's page differs, so no two contenders (nor the prebuilt images) share a built
    image: one removing its image (testcontainers does) cannot touch another's build cache.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile(HTTPD))
    (folder / "index.html").write_text(
        f"<html><body>testserver-bench, built by {owner}</body></html>\n"
    )
    return folder


def _context_tar(command: list[str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (
            ("Dockerfile", dockerfile(command).encode()),
            ("index.html", INDEX_HTML),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def build_all(client: Any) -> dict[str, str]:
    """Build (or find in the layer cache) every workload image; returns ref -> image id."""
    import docker.errors

    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        raise SystemExit(
            f"{BASE_IMAGE} is missing: run `python .ci/base_image.py` (no registry here)"
        ) from None
    built: dict[str, str] = {}
    for kind, command in COMMANDS.items():
        ref = image_ref(kind)
        image, _ = client.images.build(
            fileobj=_context_tar(command), custom_context=True, tag=ref, rm=True
        )
        built[ref] = str(image.id)
    return built
