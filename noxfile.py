"""The support matrix and the release checks, as CI runs them: ``nox`` (or ``nox -s NAME``).

- ``tests-3.10`` … ``tests-3.13``: the newest dependencies on each Python, the representative
  subset below (CI runs the whole suite once, on its own Python, before this; only 3.11, not in
  CI's matrix, repeats the slow xdist and crash tests: ``oldest`` runs them on 3.10).
- ``oldest``: the oldest versions ``pyproject.toml`` allows, on the oldest Python, same subset.
- ``full-3.X``: the whole suite on one Python (for a local check; CI does not run it twice).
- ``release``: wheel and sdist, ``twine check``, the wheel (not editable) in a fresh venv running
  the example suite from outside the checkout.
- ``lint``: ruff check, ruff format --check, mypy --strict, lint-imports (the layers).
- ``docs``: the documentation site built with ``mkdocs build --strict`` (a broken link or anchor,
  or a reference table that disagrees with the code, fails), then ``tests/test_docs.py``: the
  blocks the pages show, the first suite run as shown, every page in headless Chromium and its
  search (``chromium`` must be on PATH: ``.ci/run`` installs it).
- ``mutants``: mutation testing (mutmut) of the pure modules against their unit tests, and the
  surviving-mutant report ``mutants/report.md``. Not in CI (a full run takes 12-25 min on two
  shared cores): run it nightly or before a release. ``nox -s mutants -- 'NAME_GLOB'`` re-runs
  some mutants (``'pytest_testserver.validate.*'``: one module's) on top of the last run.

Every session that runs pytest checks that its runs left nothing on the engine (``.ci/leaks.py``).

Every session runs with ``CI=true``: a test that needs the engine fails when none answers, it
never skips. ``mutants`` alone runs no test that needs the engine (it points ``DOCKER_HOST`` at
nothing, with ``CI`` off), so it has no leak check either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nox

nox.options.sessions = ["lint", "docs", "tests", "oldest", "release"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent

# Keep in step with the floors in pyproject.toml (a session that could not install them fails).
OLDEST = [
    "pytest==8.0.0",
    "docker==7.1.0",
    "requests==2.26.0",
    "urllib3==1.26.0",
    "pyyaml==6.0.1",
    "jsonschema==4.18.0",
    "pytest-xdist==3.5.0",
]

# Unit tests, the pytester tests that need no engine, and the integration files. The xdist and
# crash tests are the slowest (many nested -n 4 runs): the oldest versions (on Python 3.10), the
# full suite (newest versions) and every engine's job run them; the newest versions on 3.10,
# 3.12 and 3.13 do not repeat them (CI's 45 minutes, now with the recipes).
SUBSET = [
    "tests/test_config.py",
    "tests/test_validate.py",
    "tests/test_image.py",
    "tests/test_ports_redact.py",
    "tests/test_configcache.py",
    "tests/test_run_state.py",
    "tests/test_start_errors.py",
    "tests/test_no_shell.py",
    "tests/test_plugin.py",
    "tests/test_locate.py",
    "tests/test_integration.py",
    "tests/test_developer_experience.py",
    "tests/test_engines.py",
    "tests/test_interpolate.py",
    "tests/test_compose.py",
    "tests/test_compose_hostile.py",
    "tests/test_compose_integration.py",
]
SLOW = ["tests/test_xdist_and_crashes.py"]
# Docker over SSH: docker-py's ssh:// transport. tests/test_locate.py checks its errors, and in CI
# a test may not skip for a missing dependency (as .ci/run installs it for the full suite).
SSH = "paramiko>=2.4.3"


def ci_env() -> dict[str, str]:
    return {"CI": "true", "PYTHONDONTWRITEBYTECODE": "1"}


@contextlib.contextmanager
def no_leaks(session: nox.Session, python: str = "python") -> Iterator[None]:
    """The session's leak check: no run that its pytest started may leave anything on the
    engine (.ci/leaks.py), whether the tests passed or not."""
    with tempfile.TemporaryDirectory(prefix="testserver-leaks-") as folder:
        state = str(Path(folder) / "runs.json")
        session.run(python, str(ROOT / ".ci" / "leaks.py"), "before", state, external=True)
        try:
            yield
        finally:
            session.run(python, str(ROOT / ".ci" / "leaks.py"), "after", state, external=True)


def run_subset(session: nox.Session, *, slow: bool = True) -> None:
    tests = [*SUBSET, *SLOW] if slow else SUBSET
    with no_leaks(session):
        session.run("python", "-m", "pytest", "-q", "-p", "no:randomly", *tests, env=ci_env())
        session.run("python", "-m", "pytest", "-q", "examples", env=ci_env())


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]", SSH)
    run_subset(session, slow=session.python == PYTHONS[1])


@nox.session(python=PYTHONS)
def full(session: nox.Session) -> None:
    session.install("-e", ".[test]", SSH)
    with no_leaks(session):
        session.run("python", "-m", "pytest", "-q", env=ci_env())
        session.run("python", "-m", "pytest", "-q", "examples", env=ci_env())


@nox.session(python=PYTHONS[0])
def oldest(session: nox.Session) -> None:
    # hypothesis is a test tool, not a floor of ours: its newest is fine.
    session.install(*OLDEST, "hypothesis", SSH)
    session.install("--no-deps", "-e", ".")
    session.run("python", "-m", "pip", "check")
    session.run("python", "-m", "pip", "freeze", silent=False)
    run_subset(session)


@nox.session(python=PYTHONS[1])
def release(session: nox.Session) -> None:
    session.install("build", "twine")
    dist = Path(tempfile.mkdtemp(prefix="testserver-dist-"))
    try:
        session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
        wheels = sorted(dist.glob("*.whl"))
        sdists = sorted(dist.glob("*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            session.error(f"expected one wheel and one sdist in {dist}, found {os.listdir(dist)}")
        session.run("python", "-m", "twine", "check", "--strict", *map(str, [*wheels, *sdists]))
        # The wheel in a fresh venv, run from a folder outside the checkout: nothing of the
        # source tree can be imported instead of what was installed.
        venv = dist / "venv"
        session.run("python", "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "-q", str(wheels[0]), external=True)
        suite = dist / "examples"
        shutil.copytree(ROOT / "examples", suite)
        with session.chdir(suite):
            where = session.run(
                python,
                "-c",
                "import pytest_testserver; print(pytest_testserver.__file__)",
                external=True,
                silent=True,
            )
            if "site-packages" not in str(where):
                session.error(f"the example suite would not test the wheel: {where}")
            with no_leaks(session, python):
                session.run(
                    python,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    external=True,
                    env=ci_env(),
                )
    finally:
        shutil.rmtree(dist, ignore_errors=True)


@nox.session(python=PYTHONS[1])
def docs(session: nox.Session) -> None:
    session.install("-e", ".[docs,test]")
    env = {**ci_env(), "NO_MKDOCS_2_WARNING": "1"}
    with tempfile.TemporaryDirectory(prefix="testserver-site-") as site:
        session.run("mkdocs", "build", "--strict", "--site-dir", site, env=env)
    with no_leaks(session):
        session.run(
            "python", "-m", "pytest", "-q", "-p", "no:randomly", "tests/test_docs.py", env=env
        )


@nox.session(python=PYTHONS[1])
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev,test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "--strict", "pytest_testserver")
    # The layers of ARCHITECTURE.md and no import cycles (pyproject.toml's importlinter).
    session.run("lint-imports")


@nox.session(python=PYTHONS[1])
def mutants(session: nox.Session) -> None:
    """Mutation testing of the pure modules ([tool.mutmut] in pyproject.toml names them and the
    unit test files run against each mutant), then the per-module report (.ci/mutants_report.py).

    No mutant may start a container: only unit test files are selected, and DOCKER_HOST points
    at a socket that does not exist, with CI unset so that the few engine tests of those files
    skip instead of failing the clean run. A fresh run each time unless mutant names (globs) are
    given as arguments: those are re-run on top of the last run's results."""
    session.install("-e", ".[dev,test]")
    if not session.posargs:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    env = {
        "CI": "false",
        "DOCKER_HOST": "unix:///nonexistent/testserver-mutants.sock",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # Two workers, at the lowest priority: the machine's other jobs come first.
    children = os.environ.get("MUTANTS_WORKERS", "2")
    session.run(
        "nice",
        "-n",
        "19",
        "mutmut",
        "run",
        "--max-children",
        children,
        *session.posargs,
        env=env,
        external=True,
    )
    session.run("python", str(ROOT / ".ci" / "mutants_report.py"), env=env)
