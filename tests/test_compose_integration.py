"""A real multi-service compose project on the real engine, driven through pytest: builds with
args, a one-shot seeding service, healthchecks of both forms, a named volume shared read-only,
a profile left out, ``.env`` interpolation with a default and a required variable; plainly, at
-n 4, and two runs of the same file at once. Nothing may be left after any of them (the
``engine`` fixture and the per-test leak check)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("engine")

COMPOSE = """
name: shop
services:
  db:
    build:
      context: ./db
      args:
        GREETING: ${GREETING:-hello}
    command: >-
      sh -c 'cp /greeting /data/greeting && echo up > /data/ready
      && exec httpd -f -p 8080 -h /data'
    environment:
      DB_PASSWORD: ${DB_PASSWORD:?DB_PASSWORD must be set}
      MODE: ${MODE-plain}
    ports: ["18080:8080"]
    volumes: ["shared:/data"]
    healthcheck:
      test: wget -q -O /dev/null http://127.0.0.1:8080/ready
      interval: 100ms
      retries: 300
  seed:
    image: busybox:stable
    command: ["sh", "-c", "echo seeded >> /data/seeded"]
    volumes: ["shared:/data"]
    depends_on:
      db: {condition: service_healthy}
  web:
    image: busybox:stable
    command: ["httpd", "-f", "-p", "80", "-h", "/data"]
    ports: ["80"]
    volumes: ["shared:/data:ro", "./static:/static:ro"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/seeded"]
      interval: 100ms
      retries: 300
    depends_on:
      seed: {condition: service_completed_successfully}
    networks:
      default: {aliases: [shop-web]}
    restart: always
  debug:
    image: busybox:stable
    profiles: [debug]
    command: ["sleep", "600"]
volumes:
  shared: {}
"""

TESTS = """
import urllib.request

import pytest


@pytest.mark.parametrize("n", range(2))
@pytest.mark.testserver("web")
def test_seeded_once_by_the_one_shot(testserver, n):
    # exactly one line: one stack per run, whatever -n, and the one-shot ran once
    with urllib.request.urlopen(testserver.url(80, "/seeded"), timeout=10) as page:
        assert page.read() == b"seeded\\n"


@pytest.mark.parametrize("n", range(2))
@pytest.mark.testserver("web")
def test_the_named_volume_is_read_only_in_web(testserver, n):
    assert testserver.exec(["touch", "/data/x"])[0] != 0
    assert testserver.exec(["cat", "/static/index.html"])[1].strip() == "static"


@pytest.mark.parametrize("n", range(2))
@pytest.mark.testserver("db")
def test_build_args_and_interpolation(testserver, n):
    assert testserver.exec(["cat", "/data/greeting"])[1].strip() == "hello"
    assert testserver.exec(["sh", "-c", "echo $MODE"])[1].strip() == "plain"
    # the .env value reached the container, and is masked in what a test sees
    assert testserver.exec(["sh", "-c", "echo $DB_PASSWORD"])[1].strip() == "***"
    raw = testserver.exec(["sh", "-c", "echo $DB_PASSWORD"], raw=True)[1].strip()
    assert raw == "from-dotenv-pw"


def test_services_reach_each_other_by_name_and_alias(testservers):
    db = testservers["db"]
    testservers["web"]
    for name in ("web", "shop-web"):
        code, out = db.exec(["wget", "-q", "-O", "-", f"http://{name}/seeded"])
        assert (code, out.strip()) == (0, "seeded")


def test_the_profile_left_out_is_not_a_server(testservers):
    assert sorted(testservers) == ["db", "seed", "web"]
"""


@pytest.fixture
def shop(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The compose project in the pytester folder."""
    for name in ("GREETING", "MODE", "DB_PASSWORD", "COMPOSE_PROFILES"):
        monkeypatch.delenv(name, raising=False)
    folder = pytester.path
    (folder / "docker-compose.yml").write_text(COMPOSE.lstrip())
    (folder / "db").mkdir()
    (folder / "db" / "Dockerfile").write_text(
        'FROM busybox:stable\nARG GREETING\nRUN echo "$GREETING" > /greeting\n'
    )
    (folder / "static").mkdir()
    (folder / "static" / "index.html").write_text("static\n")
    (folder / ".env").write_text("DB_PASSWORD=from-dotenv-pw\n")
    (folder / "pytest.ini").write_text("[pytest]\ntestserver_compose = docker-compose.yml\n")
    pytester.makepyfile(test_shop=textwrap.dedent(TESTS))
    return folder


def test_a_compose_project_runs_as_servers(pytester: pytest.Pytester, shop: Path) -> None:
    result = pytester.runpytest("-p", "no:randomly", "-W", "error")
    result.assert_outcomes(passed=8)
    # ignored keys said once each in the header, naming file, service and key (not warnings:
    # a suite with filterwarnings = error still runs)
    result.stdout.fnmatch_lines(
        [
            "testserver: docker-compose.yml: name: ignored: the run names its own project",
            "testserver: docker-compose.yml: services.db.ports[[]0[]]: the host port is ignored*",
            "testserver: docker-compose.yml: services.web.restart: ignored: *",
        ],
        consecutive=True,
    )
    assert result.stdout.str().count("services.web.restart") == 1
    assert "from-dotenv-pw" not in result.stdout.str()


def test_a_compose_project_at_n_4(pytester: pytest.Pytester, shop: Path) -> None:
    result = pytester.runpytest("-n", "4", "-p", "no:randomly")
    result.assert_outcomes(passed=8)


def test_two_runs_of_one_compose_file_at_once(
    pytester: pytest.Pytester, shop: Path, docker_api: Any
) -> None:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q"]
    runs = [
        subprocess.Popen(
            argv,
            cwd=shop,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    try:
        for run in runs:
            outputs.append(run.communicate(timeout=300)[0])
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.communicate(timeout=30)
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
        assert "8 passed" in output, output


def test_a_required_variable_missing_is_a_one_line_usage_error(
    pytester: pytest.Pytester, shop: Path
) -> None:
    (shop / ".env").write_text("")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: docker-compose.yml: services.db.environment.DB_PASSWORD: required variable "
            "DB_PASSWORD is not set: 'DB_PASSWORD must be set'"
        ]
    )


def test_the_environment_wins_over_dotenv_and_enables_profiles(
    pytester: pytest.Pytester, shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREETING", "bonjour")
    monkeypatch.setenv("COMPOSE_PROFILES", "debug")
    pytester.makepyfile(
        test_shop="""
        def test_greeting(testservers):
            assert testservers["db"].exec(["cat", "/data/greeting"])[1].strip() == "bonjour"
            assert sorted(testservers) == ["db", "debug", "seed", "web"]
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_failed_one_shot_fails_its_dependents_with_its_log(pytester: pytest.Pytester) -> None:
    (pytester.path / "docker-compose.yml").write_text(
        textwrap.dedent(
            """
            services:
              seed:
                image: busybox:stable
                command: ["sh", "-c", "echo 'seeding failed: no schema'; exit 3"]
              app:
                image: busybox:stable
                command: ["sleep", "600"]
                depends_on:
                  seed: {condition: service_completed_successfully}
            """
        )
    )
    pytester.makepyfile(
        """
        def test_app(testservers):
            testservers["app"]

        def test_app_again(testservers):
            testservers["app"]
        """
    )
    result = pytester.runpytest("--testserver-compose", "docker-compose.yml", "-p", "no:randomly")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*server 'seed': the container exited with code 3; a one-shot service must exit 0 "
            "before the services that depend on it start*",
            "*seeding failed: no schema*",
        ]
    )
