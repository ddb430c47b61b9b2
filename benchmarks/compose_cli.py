"""One compose project, cold and warm: pytest-testserver reading the compose file against what
users run today, the compose CLI (docker-compose 1.29, the Debian package) bringing the stack up,
a wait for health as pytest-docker does it (``wait_until_responsive``: poll a check), pytest,
then the stack down. Side by side in one run, each figure a whole ``pytest`` process.

    apt-get install -y docker-compose      # for this benchmark only, never for the tests
    python benchmarks/compose_cli.py --repeat 5

The project: a built ``db`` (with a build arg) with a CMD-SHELL healthcheck, a one-shot ``seed``
waiting for it to be healthy, a ``web`` waiting for the seed to complete, a named volume, and
four tests. "cold": the built image removed before the run; "warm": the image is there.
The CLI contender needs ``docker-compose`` 1.29, which has no ``up --wait``: like pytest-docker,
its conftest runs ``up --build -d``, asks ``docker-compose port`` and polls the page until it
answers, and runs ``down -v`` at the end (pytest-docker is not installed: its steps are copied,
so that its plugin does not load into every other pytest on this machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROJECT = "composebench"
# "cli-t0": the same with `down -t 0`, without the 10 s stop timeout of each server that
# ignores SIGTERM as PID 1 (busybox httpd), to show what the CLI costs beyond that.
CONTENDERS = ("plugin", "cli", "cli-t0")
COMPOSE = """
services:
  bench-db:
    build:
      context: ./db
      args:
        GREETING: ${GREETING:-hello}
    command: >-
      sh -c 'cp /greeting /data/greeting && echo up > /data/ready
      && exec httpd -f -p 8080 -h /data'
    ports: ["127.0.0.1::8080"]
    volumes: ["shared:/data"]
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/ready
      interval: 1s
      retries: 60
  bench-seed:
    image: busybox:stable
    command: ["sh", "-c", "echo seeded > /data/seeded"]
    volumes: ["shared:/data"]
    depends_on:
      bench-db: {condition: service_healthy}
  bench-web:
    image: busybox:stable
    command: ["httpd", "-f", "-p", "80", "-h", "/data"]
    ports: ["127.0.0.1::80"]
    volumes: ["shared:/data:ro"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/seeded"]
      interval: 1s
      retries: 60
    depends_on:
      bench-seed: {condition: service_completed_successfully}
volumes:
  shared: {}
"""
DOCKERFILE = 'FROM busybox:stable\nARG GREETING\nRUN echo "$GREETING" > /greeting\n'
TESTS = """
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=10) as page:
        return page.read()


def test_seeded(urls):
    assert get(urls["web"] + "seeded") == b"seeded\\n"


def test_greeting(urls):
    assert get(urls["db"] + "greeting") == b"hello\\n"


def test_ready(urls):
    assert get(urls["db"] + "ready") == b"up\\n"


def test_web_reads_the_volume(urls):
    assert get(urls["web"] + "greeting") == b"hello\\n"
"""
PLUGIN_CONFTEST = """
import pytest


@pytest.fixture(scope="session")
def urls(testservers):
    return {"db": testservers["bench-db"].url(8080), "web": testservers["bench-web"].url(80)}
"""
# pytest-docker's steps (its docker_services fixture), with docker-compose 1.29.
CLI_CONFTEST = f"""
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

FILE = str(Path(__file__).parent / "docker-compose.yml")
COMPOSE = ["docker-compose", "-p", "{PROJECT}", "-f", FILE]
DOWN = {{DOWN}}


def is_responsive(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until_responsive(check, timeout, pause):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(pause)
    raise TimeoutError("not responsive")


def port_for(service, port):
    out = subprocess.run([*COMPOSE, "port", service, str(port)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip().rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def urls():
    subprocess.run([*COMPOSE, "up", "--build", "-d"], check=True, capture_output=True)
    try:
        found = {{"db": f"http://127.0.0.1:{{port_for('bench-db', 8080)}}/",
                  "web": f"http://127.0.0.1:{{port_for('bench-web', 80)}}/"}}
        for url in found.values():
            wait_until_responsive(lambda url=url: is_responsive(url + "ready" if "8080" in url
                                  else url + "seeded"), timeout=60.0, pause=0.1)
        yield found
    finally:
        subprocess.run([*COMPOSE, "down", "-v", *DOWN], check=True, capture_output=True)
"""


def project(folder: Path, contender: str) -> Path:
    root = folder / contender
    (root / "db").mkdir(parents=True)
    (root / "db" / "Dockerfile").write_text(DOCKERFILE)
    (root / "docker-compose.yml").write_text(COMPOSE.lstrip())
    (root / "test_shop.py").write_text(textwrap.dedent(TESTS))
    if contender == "plugin":
        (root / "conftest.py").write_text(PLUGIN_CONFTEST)
        (root / "pytest.ini").write_text("[pytest]\ntestserver_compose = docker-compose.yml\n")
    else:
        down = '["-t", "0"]' if contender == "cli-t0" else "[]"
        (root / "conftest.py").write_text(CLI_CONFTEST.replace("{DOWN}", down))
        (root / "pytest.ini").write_text("[pytest]\n")
    return root


def plugins_off(contender: str) -> list[str]:
    """Every other pytest plugin off; pytest-testserver too, for the CLI contender."""
    from importlib.metadata import entry_points

    off = []
    for ep in entry_points(group="pytest11"):
        if ep.name == "testserver" and contender == "plugin":
            continue
        off += ["-p", f"no:{ep.name}"]
    return off


def images_of(contender: str) -> list[str]:
    """The image this contender builds for bench-db (removed for a cold run)."""
    if contender.startswith("cli"):
        name = f"{PROJECT}_bench-db"
        found = subprocess.run(["docker", "images", "-q", name], capture_output=True, text=True)
        return [name] if found.stdout.strip() else []
    found = subprocess.run(
        ["docker", "images", "-q", "--filter", "label=pytest-testserver.image-server=bench-db"],
        capture_output=True,
        text=True,
    )
    return sorted(set(found.stdout.split()))


def leftovers(contender: str) -> list[str]:
    label = (
        f"label=com.docker.compose.project={PROJECT}"
        if contender.startswith("cli")
        else "label=pytest-testserver.server"
    )
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", label, "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    return [n for n in out if "bench-" in n]


def run_once(root: Path, contender: str, cold: bool) -> float:
    if cold:
        for image in images_of(contender):
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins_off(contender)]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False, timeout=300)
    took = time.perf_counter() - start
    if done.returncode != 0 or "4 passed" not in done.stdout:
        raise SystemExit(f"{contender} failed:\n{done.stdout}\n{done.stderr}")
    left = leftovers(contender)
    if left:
        raise SystemExit(f"{contender} left {left}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("docker-compose") is None:
        raise SystemExit("docker-compose is missing: apt-get install -y docker-compose")
    version = subprocess.run(
        ["docker-compose", "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="compose-bench-") as tmp:
        roots = {c: project(Path(tmp), c) for c in CONTENDERS}
        for contender, root in roots.items():  # warm-up: checks each works, builds the image
            run_once(root, contender, cold=False)
        cells = [(c, kind) for kind in ("cold", "warm") for c in roots]
        for round_ in range(args.repeat):
            order = cells[round_ % len(cells) :] + cells[: round_ % len(cells)]
            for contender, kind in order:
                took = run_once(roots[contender], contender, cold=kind == "cold")
                results.setdefault((contender, kind), []).append(took)
                print(f"round {round_ + 1}: {contender} {kind} {took:.2f}s", file=sys.stderr)
    print(f"\ndocker-compose {version}; {args.repeat} rounds; median (min-max) seconds\n")
    print(
        "| | pytest-testserver (compose file) | docker-compose up + wait + pytest + down "
        "| the same, down -t 0 |"
    )
    print("|---|---|---|---|")
    for kind in ("cold", "warm"):
        cells_text = []
        for contender in CONTENDERS:
            times = results[(contender, kind)]
            cells_text.append(f"{statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f})")
        print(f"| {kind} | {' | '.join(cells_text)} |")


if __name__ == "__main__":
    os.environ.pop("PYTEST_ADDOPTS", None)
    main()
