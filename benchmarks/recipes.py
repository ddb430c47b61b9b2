"""Each recipe's cold build and warm time to ready, through the plugin, one server at a time.

    python benchmarks/recipes.py [--servers a,b] [--warm 3]

For each server of examples/recipes/testservers.yaml: its built images are removed (only those
this project's recipes built: the plugin's image labels name project and server), then its test
runs alone (`python -m pytest examples/recipes -k <test>`) — a cold build and start — then
`--warm` more times with the image present. The plugin's own "<server> ready in Ns" lines are the
times (from "start this server" to ready, the image included); the run's wall time is printed
beside them. Needs `debian:bookworm` (pulled, or built offline by .ci/debian_base.py) and a
Debian mirror. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import docker
import yaml

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "examples" / "recipes"
# the test that drives each server (its marker may name links too: their times are theirs)
TESTS = {
    "postgres": "test_postgres",
    "redis": "test_redis_needs",
    "apache": "test_apache",
    "squid": "test_squid",
    "vsftpd": "test_vsftpd",
    "dante": "test_dante",
    "echo": "test_echo",
    "cyrus": "test_cyrus",
}


def project_digest() -> str:
    sys.path.insert(0, str(ROOT))
    from pytest_testserver.identity import project_digest as digest

    return digest(str(RECIPES.resolve()))


def remove_images(client: docker.DockerClient, server: str, project: str) -> int:
    """This project's built images of ``server``; how many were removed."""
    found = client.images.list(
        filters={
            "label": [
                f"pytest-testserver.image-server={server}",
                f"pytest-testserver.image-project={project}",
            ]
        }
    )
    for image in found:
        client.images.remove(image.id, force=True)
    return len(found)


def run(server: str) -> tuple[float, float]:
    """(the server's ready time, the run's wall time), seconds."""
    started = time.monotonic()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"),
            *("-k", TESTS[server], str(RECIPES)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    wall = time.monotonic() - started
    found = re.search(rf"testserver: {server} ready in ([0-9.]+)s", result.stdout)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{server}: the run failed:\n{result.stdout[-3000:]}{result.stderr}")
    return float(found.group(1)), wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", default="")
    parser.add_argument("--warm", type=int, default=3)
    args = parser.parse_args()
    servers = list(yaml.safe_load((RECIPES / "testservers.yaml").read_text())["servers"])
    wanted = [s for s in args.servers.split(",") if s] or servers
    client = docker.from_env(timeout=300)
    project = project_digest()
    rows = []
    for server in wanted:
        removed = remove_images(client, server, project)
        cold, cold_wall = run(server)
        warm = [run(server) for _ in range(args.warm)]
        size = sum(
            int(i.attrs["Size"])
            for i in client.images.list(
                filters={"label": [f"pytest-testserver.image-server={server}"]}
            )
        )
        rows.append((server, removed, cold, cold_wall, warm, size))
        print(f"{server}: cold {cold:.1f}s, warm {[w[0] for w in warm]}", flush=True)
    print("\n| server | cold: build + ready | warm: ready (median) | warm run, wall | image |")
    print("|---|---|---|---|---|")
    for server, _, cold, _, warm, size in rows:
        ready = statistics.median(w[0] for w in warm)
        wall = statistics.median(w[1] for w in warm)
        print(f"| {server} | {cold:.1f} s | {ready:.2f} s | {wall:.1f} s | {size / 1e6:.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
