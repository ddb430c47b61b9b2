"""Cold builds and sizes of the recipes' images: the old `install:` (its own `apt-get update`
layer, lists and cache kept) against the current one (one step that cleans up after itself).

    python benchmarks/apt_images.py [--servers a,b] [--json out.json]

Builds, without the build cache, one image per recipe server from examples/recipes/testservers.yaml
(FROM + install only: the part the change is about), both ways, one after the other; prints a
Markdown table of build seconds and image sizes, and removes the images it built (by id).
Needs `debian:bookworm` (pulled, or built offline by .ci/debian_base.py) and a Debian mirror.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import time
from pathlib import Path

import docker
import yaml

RECIPES = Path(__file__).resolve().parent.parent / "examples" / "recipes" / "testservers.yaml"
OLD = (
    'FROM {base}\nARG DEBIAN_FRONTEND=noninteractive\nRUN ["apt-get", "update"]\n'
    'RUN ["apt-get", "install", "-y", "--no-install-recommends", {packages}]\n'
)


def new_dockerfile(base: str, packages: list[str]) -> str:
    from pytest_testserver.config import GeneratedSource
    from pytest_testserver.image import generated_dockerfile

    return generated_dockerfile(GeneratedSource(base=base, install=tuple(packages)))


def build(client: docker.DockerClient, dockerfile: str) -> tuple[str, float, int]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    started = time.monotonic()
    image, _ = client.images.build(fileobj=buf, custom_context=True, nocache=True, rm=True)
    took = time.monotonic() - started
    return image.id, took, int(client.images.get(image.id).attrs["Size"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", default="")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    servers = yaml.safe_load(RECIPES.read_text())["servers"]
    wanted = [s for s in args.servers.split(",") if s] or list(servers)
    client = docker.from_env(timeout=900)
    rows = []
    for name in wanted:
        base, packages = servers[name]["from"], servers[name]["install"]
        old = OLD.format(base=base, packages=", ".join(json.dumps(p) for p in packages))
        results = {}
        for kind, dockerfile in (("old", old), ("new", new_dockerfile(base, packages))):
            image_id, took, size = build(client, dockerfile)
            results[kind] = (took, size)
            client.images.remove(image_id, noprune=False)
        rows.append(
            {
                "server": name,
                **{
                    f"{k}_{m}": v[i]
                    for k, v in results.items()
                    for i, m in enumerate(("seconds", "bytes"))
                },
            }
        )
        print(f"{name}: {rows[-1]}", flush=True)
    base_size = int(client.images.get(servers[wanted[0]]["from"]).attrs["Size"])
    print(f"\nbase image: {base_size / 1e6:.0f} MB\n")
    print("| server | cold build, old | cold build, new | size, old | size, new | saved |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['old_seconds']:.0f} s | {r['new_seconds']:.0f} s | "
            f"{r['old_bytes'] / 1e6:.0f} MB | {r['new_bytes'] / 1e6:.0f} MB | "
            f"{(r['old_bytes'] - r['new_bytes']) / 1e6:.0f} MB |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
