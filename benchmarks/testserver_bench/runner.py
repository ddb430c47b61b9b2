"""Timing whole pytest processes, contenders alternated run by run."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contenders import Contender, Scenario, disable_flags
from .engine import ApiCounter, EngineWatch, RunEngineReport

BASE_ARGS = ("-q", "-p", "no:cacheprovider")
AFTER_RUN = 3.0  # seconds the counting relay keeps counting after a run's pytest exits
# Never send traffic past loopback: testcontainers would otherwise take /.dockerenv as "inside a
# container" and aim at the default gateway. These make it behave as on a plain host.
BASE_ENV = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",  # its reaper image cannot be pulled here
    "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "PYTHONUNBUFFERED": "1",
}
DROP_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XDIST_AUTO_NUM_WORKERS", "DOCKER_HOST")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env.update(BASE_ENV)
    env.update(extra or {})
    return env


@dataclass
class Run:
    wall: float  # seconds, the whole pytest process
    returncode: int | None  # None: killed at the cap
    output: str
    started: float  # epoch seconds
    ended: float
    engine: RunEngineReport | None = None
    api: dict[str, int] | None = None  # engine requests while the run's pytest lived
    api_after: dict[str, int] | None = None  # ... and in the seconds after it exited
    ok: bool = True  # the outcome expected (pass, or fail for a dying server); else excluded
    args: tuple[str, ...] = ()  # pytest's arguments, after the common ones

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "wall": round(self.wall, 4),
            "returncode": self.returncode,
            "ok": self.ok,
            "started": self.started,
        }
        if self.engine is not None:
            data["containers_created"] = self.engine.containers_created
            data["leaked_containers"] = self.engine.leaked_containers
            data["leaked_networks"] = self.engine.leaked_networks
            if self.engine.kept:
                data["kept_containers"] = [cid[:12] for cid in self.engine.kept]
        if self.api is not None:
            data["api"] = self.api
        if self.api_after is not None:
            data["api_after"] = self.api_after
        return data


def run_pytest(
    project: Path, args: Sequence[str], cap: float, env: dict[str, str] | None = None
) -> Run:
    command = [sys.executable, "-m", "pytest", *BASE_ARGS, *args]
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=project,
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=cap)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    wall = time.perf_counter() - t0
    return Run(wall, code, out.decode("utf-8", "replace"), started, time.time(), args=tuple(args))


@dataclass
class Cell:
    """One contender doing one variant of a workload, with the runs measured."""

    contender: Contender
    variant: str
    scenario: Scenario | None  # None: the project is written by ``write``
    project: Path
    args: list[str] = field(default_factory=list)
    extra_plugins: tuple[str, ...] = ()
    expect_failure: bool = False
    # After a run, whether repeating this cell can tell anything new (a run that only ran out
    # its readiness budget): then it is measured once.
    final: Callable[[Run], bool] | None = None
    write: Callable[[Path], None] | None = None
    # An untimed warm-up run first (every run is checked: a cell with a wrong outcome is broken).
    warm: bool = True
    # Untimed, before each timed run: puts the engine in the state the run is meant to find
    # (workload 9: a warm container kept by an earlier run, or none). Returns a problem, or None
    # (then the timed run goes ahead). Its runs go through ``Runner.untimed``.
    before_run: Callable[[Runner, Cell], str | None] | None = None
    # Containers the project's runs leave on purpose, by their labels: not leftovers (kept in
    # ``RunEngineReport.kept``; whoever sets this checks they are gone in the end).
    keep: Callable[[dict[str, str]], bool] | None = None
    runs: list[Run] = field(default_factory=list)
    warmup: Run | None = None
    observed: Run | None = None
    side_runs: list[Run] = field(default_factory=list)  # untimed, from ``before_run`` and after
    broken: str | None = None  # the warm-up run went wrong: not measured
    failures: list[str] = field(default_factory=list)  # timed runs that went wrong
    side_failures: list[str] = field(default_factory=list)  # rounds ``before_run`` stopped
    stopped_early: bool = False

    @property
    def key(self) -> str:
        return f"{self.contender.name} [{self.variant}]"

    def prepare(self) -> None:
        self.project.mkdir(parents=True, exist_ok=True)
        if self.write is not None:
            self.write(self.project)
        elif self.scenario is not None:
            self.contender.render(self.scenario, self.project)

    def plugin_args(self) -> list[str]:
        """``-p no:NAME`` for every installed plugin this cell does not load."""
        return disable_flags(self.contender.plugins + self.extra_plugins)

    def full_args(self) -> list[str]:
        return [*self.plugin_args(), *self.args]

    def all_runs(self) -> list[Run]:
        """Every run made in this cell's project, timed or not."""
        runs = [self.warmup, *self.runs, self.observed, *self.side_runs]
        return [r for r in runs if r is not None]

    def good_runs(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    def walls(self) -> list[float]:
        return [r.wall for r in self.good_runs()]

    def median(self) -> float | None:
        walls = self.walls()
        return statistics.median(walls) if walls else None

    def ok(self, run: Run) -> bool:
        if run.timed_out:
            return self.expect_failure
        return (run.returncode != 0) if self.expect_failure else run.returncode == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "contender": self.contender.name,
            "variant": self.variant,
            "args": self.full_args(),
            "median": self.median(),
            "runs": [r.as_json() for r in self.runs],
            "side_runs": [r.as_json() for r in self.side_runs],
            "side_failures": self.side_failures,
            "observed_api": self.observed.api if self.observed else None,
            "broken": self.broken,
            "failures": self.failures,
            "stopped_early": self.stopped_early,
        }


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Runner:
    def __init__(self, watch: EngineWatch, cap: float, log: Callable[[str], None]) -> None:
        self.watch = watch
        self.cap = cap
        self.log = log

    def _once(
        self, cell: Cell, env: dict[str, str] | None = None, args: Sequence[str] | None = None
    ) -> Run:
        args = cell.full_args() if args is None else args
        log = self.watch.listen(time.time())
        try:
            env = {**(env or child_env()), **cell.contender.env}
            run = run_pytest(cell.project, args, self.cap, env)
            run.engine = self.watch.observe(run.started, run.ended, log, keep=cell.keep)
        finally:
            log.close()
        if run.engine.leaked_containers or run.engine.leaked_networks:
            self.log(
                f"    leak: {cell.key} left {run.engine.leaked_containers} "
                f"{run.engine.leaked_networks} (removed)"
            )
        return run

    def _check(self, cell: Cell, run: Run, what: str) -> str | None:
        run.ok = cell.ok(run)
        if run.ok:
            return None
        outcome = "timed out" if run.timed_out else f"exit {run.returncode}"
        problem = f"{what} {outcome}:\n{_tail(run.output)}"
        self.log(f"  ! {cell.key}: {problem}")
        return problem

    def untimed(self, cell: Cell, args: Sequence[str], what: str) -> tuple[Run, str | None]:
        """A run in ``cell``'s project with these arguments (all of them), outside the figures:
        kept in ``cell.side_runs`` (its leftovers counted), and the problem if it did not pass."""
        run = self._once(cell, args=args)
        cell.side_runs.append(run)
        run.ok = run.returncode == 0
        if run.ok:
            return run, None
        outcome = "timed out" if run.timed_out else f"exit {run.returncode}"
        problem = f"{what} {outcome}:\n{_tail(run.output)}"
        self.log(f"  ! {cell.key}: {problem}")
        return run, problem

    def measure(self, cells: list[Cell], repeat: int, observe_api: bool = False) -> None:
        """Warm up each cell once, then ``repeat`` rounds, rotating the order every round."""
        for cell in cells:
            cell.prepare()
            if cell.warm:
                cell.warmup = self._once(cell)
                cell.broken = self._check(cell, cell.warmup, "warm-up run")
        live = [c for c in cells if c.broken is None]
        for rnd in range(repeat):
            shift = rnd % len(live) if live else 0
            order = [c for c in live[shift:] + live[:shift] if not c.stopped_early]
            ran = []
            for cell in order:
                if cell.before_run is not None:
                    problem = cell.before_run(self, cell)
                    if problem:
                        cell.side_failures.append(f"round {rnd + 1}: {problem}")
                        continue
                ran.append(cell)
                run = self._once(cell)
                cell.runs.append(run)
                problem = self._check(cell, run, f"timed run {len(cell.runs)}")
                if problem:
                    cell.failures.append(problem)
                if run.ok and cell.final is not None and cell.final(run):
                    cell.stopped_early = True
            self.log(
                f"  round {rnd + 1}/{repeat}: "
                + ", ".join(f"{c.key} {c.runs[-1].wall:.2f}s" for c in ran)
            )
        if observe_api:
            counter = ApiCounter()
            try:
                for cell in live:
                    counter.reset()
                    cell.observed = self._once(
                        cell, child_env({"DOCKER_HOST": counter.docker_host})
                    )
                    cell.observed.api = dict(counter.reset())
                    # What a run leaves to do after its pytest exits (its watchdog's sweep of
                    # dead runs): requests, but off the run's path.
                    time.sleep(AFTER_RUN)
                    cell.observed.api_after = dict(counter.reset())
            finally:
                counter.close()
