"""The workloads: which cells each measures, and how its figures and targets are derived."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import images
from .contenders import (
    PYTEST_INI,
    Contender,
    DockerTools,
    Floor,
    FloorMarkerFixture,
    Ours,
    PytestDocker,
    Scenario,
    Testcontainers,
)
from .engine import OURS_REUSE_LABEL, OURS_RUN_LABEL, OURS_SERVER_LABEL, is_kept_for_reuse
from .runner import Cell, Run, Runner, child_env, run_pytest

SINGLE = ("bench",)
XDIST = ("pytest-xdist",)
EXIT_CODE_SHOWN = re.compile(
    rf"exit(?:ed)?(?: with)? (?:code|status)\W{{0,3}}{images.EXIT_CODE}\b"
    rf"|(?:ExitCode|exit_code|exitCode)\W{{0,3}}{images.EXIT_CODE}\b",
    re.IGNORECASE,
)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Target:
    workload: int
    what: str
    target: str
    measured: str
    passed: bool | None  # None: could not be measured

    @property
    def verdict(self) -> str:
        return "n/a" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class Outcome:
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    root: Path  # temp folder for the generated projects
    contenders: list[Contender]
    skipped: dict[str, str]  # contender name -> why it does not run
    runner: Runner
    repeat: int
    budget: int
    log: Callable[[str], None]
    # Other readiness setups of pytest-testserver, measured on workloads 1 and 2 only.
    variants: list[Contender] = field(default_factory=list)

    @property
    def with_variants(self) -> list[Contender]:
        return [*self.contenders, *self.variants]


# figures
def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def fmt_ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:+.0f}" if signed else f"{value * 1000:.0f}"


def fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def paired(a: Cell, b: Cell, op: Callable[[float, float], float]) -> float | None:
    """Median over rounds of ``op(a's run, b's run)``: both measured side by side in each round."""
    values = [op(x.wall, y.wall) for x, y in zip(a.runs, b.runs, strict=False) if x.ok and y.ok]
    return statistics.median(values) if values else None


def ratio(a: Cell, floor: Cell | None) -> float | None:
    if floor is None or not floor.walls() or a.broken or floor.broken:
        return None
    return paired(a, floor, lambda x, y: x / y)


def leaks(cells: Sequence[Cell]) -> str:
    runs = [r for c in cells for r in c.all_runs() if r.engine]
    containers = sum(len(r.engine.leaked_containers) for r in runs if r.engine)
    networks = sum(len(r.engine.leaked_networks) for r in runs if r.engine)
    return f"{containers} / {networks}"


def created(cell: Cell) -> float | None:
    counts = [r.engine.containers_created for r in cell.good_runs() if r.engine]
    return statistics.median(counts) if counts else None


def api_total(cell: Cell, route: str | None = None) -> int | None:
    if cell.observed is None or cell.observed.api is None:
        return None
    api = cell.observed.api
    return api.get(route, 0) if route else sum(api.values())


def api_requests(cell: Cell) -> str:
    """Engine requests of one run: while its pytest lived, and (+N after) in the seconds after
    it exited (what it left to its watchdog: off the run's path)."""
    total = api_total(cell)
    if total is None:
        return "-"
    after = sum((cell.observed.api_after or {}).values()) if cell.observed else 0
    return f"{total} (+{after} after)" if after else str(total)


def status(cell: Cell) -> str:
    if cell.broken:
        return "broken (see notes)"
    return ""


def find(cells: Sequence[Cell], contender: str, variant: str) -> Cell | None:
    return next((c for c in cells if c.contender.name == contender and c.variant == variant), None)


def broken_notes(cells: Sequence[Cell]) -> list[str]:
    def why(problem: str) -> str:
        lines = problem.splitlines()
        errors = [line.strip() for line in lines if line.startswith("E ")]
        return f"{lines[0]} `{(errors[-1] if errors else lines[-1].strip())[:300]}`"

    notes = []
    for cell in cells:
        if cell.broken:
            notes.append(f"{cell.key}: not measured: {why(cell.broken)}")
        if cell.failures:
            notes.append(
                f"{cell.key}: {len(cell.failures)} of {len(cell.runs)} timed runs went wrong and "
                f"are left out: {why(cell.failures[0])}"
            )
    return notes


def skipped_rows(ctx: Context, width: int, only: tuple[str, ...] | None = None) -> list[list[str]]:
    """A row per skipped contender (of ``only``, when given)."""
    return [
        [name, f"skipped: {why}"] + [""] * (width - 2)
        for name, why in ctx.skipped.items()
        if only is None or name in only
    ]


class Workload:
    number = 0
    title = ""
    observe_api = False

    def cells(self, ctx: Context) -> list[Cell]:
        raise NotImplementedError

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        raise NotImplementedError

    def run(self, ctx: Context, repeat: int) -> tuple[list[Cell], Outcome]:
        cells = self.cells(ctx)
        ctx.runner.measure(cells, repeat, observe_api=self.observe_api)
        outcome = self.summarize(cells, ctx)
        outcome.data["cells"] = [c.as_json() for c in cells]
        outcome.data["repeat"] = repeat
        return cells, outcome

    def folder(self, ctx: Context, *parts: str) -> Path:
        return ctx.root.joinpath(f"w{self.number}", *parts)


class OneServer(Workload):
    number = 1
    title = "W1: one server, start to ready to teardown, one test"
    observe_api = True

    def cells(self, ctx: Context) -> list[Cell]:
        scenario = Scenario(SINGLE, images.image_ref("ready"), budget=ctx.budget)
        return [Cell(c, "ready", scenario, self.folder(ctx, c.slug)) for c in ctx.with_variants]

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        floor = find(cells, Floor.name, "ready")
        columns = [
            "contender",
            "median s",
            "min-max s",
            "x floor",
            "containers/run",
            "API requests/run",
            "execs/run",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        for cell in cells:
            walls = cell.walls()
            table.rows.append(
                [
                    cell.contender.name,
                    fmt_s(cell.median()) if not cell.broken else status(cell),
                    f"{min(walls):.3f}-{max(walls):.3f}" if walls else "-",
                    fmt_x(ratio(cell, floor)),
                    f"{created(cell):g}" if created(cell) is not None else "-",
                    api_requests(cell),
                    str(api_total(cell, "POST /containers/{id}/exec") or 0)
                    if cell.observed
                    else "-",
                    leaks([cell]),
                ]
            )
        table.rows += skipped_rows(ctx, len(columns))
        table.notes += broken_notes(cells)
        table.notes.append(
            "Containers/run: from the engine's events in each timed run. API requests and execs: "
            "the requests the engine received in one extra run through the counting relay; "
            "'+N after': in the 3 s after that run's pytest exited (its watchdog's sweep of dead "
            "runs, off the run's path)."
        )
        if any(c.contender.name == PytestDocker.name for c in cells):
            table.notes.append(
                "pytest-docker's runs end with its default `docker-compose down -v`, which stops "
                "each container with a 10 s grace period (busybox httpd as PID 1 ignores SIGTERM) "
                "before removing it; the others force-remove. That dominates its times everywhere."
            )
        ours = find(cells, Ours.name, "ready")
        value = ratio(ours, floor) if ours else None
        target = Target(
            1,
            "one server, whole run vs floor",
            "<= 1.03x floor",
            fmt_x(value),
            None if value is None else value <= 1.03,
        )
        return Outcome([table], [target])


class Detection(Workload):
    number = 2
    title = f"W2: detection of a server that listens {images.SLOW_START} s after start"

    def cells(self, ctx: Context) -> list[Cell]:
        cells = []
        for c in ctx.with_variants:
            for kind in ("ready", "slow"):
                scenario = Scenario(SINGLE, images.image_ref(kind), budget=ctx.budget)
                cells.append(Cell(c, kind, scenario, self.folder(ctx, c.slug, kind)))
        return cells

    def delay(self, cells: list[Cell], name: str) -> float | None:
        ready, slow = find(cells, name, "ready"), find(cells, name, "slow")
        if ready is None or slow is None or ready.broken or slow.broken:
            return None
        diff = paired(slow, ready, lambda x, y: x - y)
        return None if diff is None else diff - images.SLOW_START

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        columns = [
            "contender",
            "ready s",
            "slow s",
            "slow - ready s",
            f"delay beyond {images.SLOW_START} s (ms)",
            "vs floor's delay (ms)",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        floor_delay = self.delay(cells, Floor.name)
        for c in ctx.with_variants:
            ready, slow = find(cells, c.name, "ready"), find(cells, c.name, "slow")
            assert ready is not None
            assert slow is not None
            delay = self.delay(cells, c.name)
            extra = None if delay is None or floor_delay is None else delay - floor_delay
            table.rows.append(
                [
                    c.name,
                    fmt_s(ready.median()),
                    fmt_s(slow.median()),
                    fmt_s(None if delay is None else delay + images.SLOW_START),
                    fmt_ms(delay),
                    fmt_ms(extra, signed=True),
                    leaks([ready, slow]),
                ]
            )
        table.rows += skipped_rows(ctx, len(columns))
        table.notes += broken_notes(cells)
        table.notes.append(
            "slow - ready is the median over rounds of the paired difference; the delay beyond "
            f"{images.SLOW_START} s is how late each tool noticed the server was up."
        )
        ours = self.delay(cells, Ours.name)
        extra = None if ours is None or floor_delay is None else ours - floor_delay
        target = Target(
            2,
            "detection delay vs the floor's",
            "within 20 ms of the floor's delay",
            f"{fmt_ms(extra, signed=True)} ms ({fmt_ms(ours)} vs {fmt_ms(floor_delay)} ms)",
            None if extra is None else extra <= 0.020,
        )
        return Outcome([table], [target], {"floor_delay": floor_delay, "ours_delay": ours})


def died_at(run: Run) -> float | None:
    """When the dying server exited with its code, by the engine's own clock."""
    if run.engine is None:
        return None
    times = [
        int(e.get("timeNano", 0)) / 1e9
        for e in run.engine.die_events
        if str(e.get("Actor", {}).get("Attributes", {}).get("exitCode")) == str(images.EXIT_CODE)
    ]
    return min(times) if times else None


class Failure(Workload):
    number = 3
    title = (
        f"W3: a server that prints {images.MARKER} and exits {images.EXIT_CODE} "
        f"{images.DIES_AFTER} s after start"
    )

    def cells(self, ctx: Context) -> list[Cell]:
        scenario = Scenario(SINGLE, images.image_ref("dies"), budget=ctx.budget)

        def final(run: Run) -> bool:  # it ran out its readiness budget: it will every time
            return run.timed_out or run.wall >= ctx.budget

        return [
            Cell(
                c,
                "dies",
                scenario,
                self.folder(ctx, c.slug),
                expect_failure=True,
                final=final,
                warm=False,  # W1 warmed everything up; a warm-up here could cost a whole budget
            )
            for c in ctx.contenders
        ]

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        columns = [
            "contender",
            "run fails after s",
            "fails after the death s",
            "exit code shown",
            "marker shown",
            "runs",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        per: dict[str, dict[str, Any]] = {}
        for cell in cells:
            runs = cell.good_runs()
            after = [r.ended - d for r in runs if (d := died_at(r)) is not None]
            timeouts = sum(r.timed_out for r in runs)
            code = bool(runs) and all(EXIT_CODE_SHOWN.search(r.output) for r in runs)
            marker = bool(runs) and all(images.MARKER in r.output for r in runs)
            after_s = statistics.median(after) if after else None
            per[cell.contender.name] = {"after": after_s, "code": code, "marker": marker}
            count = f"{len(runs)}" + (
                " (stopped: ran out its budget)" if cell.stopped_early else ""
            )
            table.rows.append(
                [
                    cell.contender.name,
                    "timeout"
                    if timeouts
                    else (fmt_s(cell.median()) if not cell.broken else status(cell)),
                    "timeout" if timeouts else fmt_s(after_s),
                    "yes" if code else "no",
                    "yes" if marker else "no",
                    count,
                    leaks([cell]),
                ]
            )
        table.rows += skipped_rows(ctx, len(columns))
        table.notes += broken_notes(cells)
        table.notes.append(
            f"Every contender has the same {ctx.budget} s readiness budget; a contender whose run "
            "only ends when that budget runs out is measured once (it would every time). "
            "'fails after the death' is the pytest process's end minus the engine's die event."
        )
        ours = per.get(Ours.name, {})
        late: float | None = ours.get("after")
        ok = late is not None and late < 1.0 and ours.get("code") and ours.get("marker")
        target = Target(
            3,
            "failing server: run ends after the death, code and marker shown",
            "< 1 s, exit code and marker shown",
            f"{fmt_s(late)} s, code {'yes' if ours.get('code') else 'no'}, "
            f"marker {'yes' if ours.get('marker') else 'no'}",
            None if late is None else bool(ok),
        )
        return Outcome([table], [target], {"per_contender": per})


class Rebuild(Workload):
    number = 4
    title = "W4: deciding not to rebuild an unchanged Dockerfile image"
    observe_api = True

    def cells(self, ctx: Context) -> list[Cell]:
        cells = []
        for c in ctx.contenders:
            for variant, image in (("image", images.image_ref("ready")), ("build", None)):
                scenario = Scenario(SINGLE, image, budget=ctx.budget)
                cells.append(Cell(c, variant, scenario, self.folder(ctx, c.slug, variant)))
        return cells

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        columns = [
            "contender",
            "image: s",
            "build: s",
            "build - image (ms)",
            "build calls/run",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        costs: dict[str, float | None] = {}
        for c in ctx.contenders:
            image, build = find(cells, c.name, "image"), find(cells, c.name, "build")
            assert image is not None
            assert build is not None
            cost = (
                None if image.broken or build.broken else paired(build, image, lambda x, y: x - y)
            )
            costs[c.name] = cost
            table.rows.append(
                [
                    c.name,
                    fmt_s(image.median()),
                    fmt_s(build.median()),
                    fmt_ms(cost, signed=True),
                    str(api_total(build, "POST /build")) if build.observed else "-",
                    leaks([image, build]),
                ]
            )
        table.rows += skipped_rows(ctx, len(columns))
        table.notes += broken_notes(cells)
        table.notes.append(
            "A second run with nothing changed: the paired difference between a run whose "
            "server is built from ./web/Dockerfile (already built by the warm-up run) and the "
            "same run on a prebuilt image. 'build calls' are POST /build requests the engine "
            "received (counted at the socket)."
        )
        micro = self.microbench(cells)
        if micro:
            table.notes.append(
                "In-process, pytest_testserver.image.plan_for(spec).digest() + image inspect: "
                f"median {micro['total_ms']:.2f} ms (plan + digest {micro['digest_ms']:.2f} ms, "
                f"inspect {micro['inspect_ms']:.2f} ms; {micro['n']} iterations)."
            )
        ours = costs.get(Ours.name)
        targets = [
            Target(
                4,
                "second run: build: server vs image: server",
                "< 50 ms",
                f"{fmt_ms(ours, signed=True)} ms",
                None if ours is None else ours < 0.050,
            ),
        ]
        if micro:
            targets.append(
                Target(
                    4,
                    "in-process plan_for().digest() + inspect",
                    "< 50 ms",
                    f"{micro['total_ms']:.2f} ms",
                    micro["total_ms"] < 50,
                )
            )
        return Outcome([table], targets, {"costs": costs, "microbench": micro})

    def microbench(self, cells: list[Cell], n: int = 200) -> dict[str, float] | None:
        cell = find(cells, Ours.name, "build")
        if cell is None or cell.broken:
            return None
        from pytest_testserver.config import load_config
        from pytest_testserver.engine import Engine
        from pytest_testserver.image import image_tag, plan_for

        spec = load_config(cell.project / "testservers.yaml").servers[SINGLE[0]]
        engine = Engine.connect()
        totals, digests, inspects = [], [], []
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                plan = plan_for(spec)
                assert plan is not None
                tag = image_tag(spec, plan)
                t1 = time.perf_counter()
                found = engine.image_exists(tag)
                t2 = time.perf_counter()
                assert found, f"{tag} should exist after the warm-up run"
                totals.append(t2 - t0)
                digests.append(t1 - t0)
                inspects.append(t2 - t1)
        finally:
            engine.close()
        return {
            "n": n,
            "total_ms": statistics.median(totals) * 1000,
            "digest_ms": statistics.median(digests) * 1000,
            "inspect_ms": statistics.median(inspects) * 1000,
        }


class Shared(Workload):
    number = 5
    title = "W5: 8 test files sharing one server (built from a Dockerfile), pytest-xdist"
    observe_api = True
    workers = (0, 2, 4)

    def cells(self, ctx: Context) -> list[Cell]:
        scenario = Scenario(SINGLE, None, test_files=8, budget=ctx.budget)
        return [
            Cell(
                c,
                f"-n {n}",
                scenario,
                self.folder(ctx, c.slug, f"n{n}"),
                args=["-n", str(n)],
                extra_plugins=XDIST,
            )
            for c in ctx.contenders
            for n in self.workers
        ]

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        columns = [
            "contender",
            "-n",
            "median s",
            "x floor",
            "containers/run",
            "build calls/run",
            "API requests/run",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        targets: list[Target] = []
        for c in ctx.contenders:
            for n in self.workers:
                cell = find(cells, c.name, f"-n {n}")
                floor = find(cells, Floor.name, f"-n {n}")
                assert cell is not None
                count = created(cell)
                builds = api_total(cell, "POST /build")
                table.rows.append(
                    [
                        c.name,
                        str(n),
                        fmt_s(cell.median()) if not cell.broken else status(cell),
                        fmt_x(ratio(cell, floor)),
                        "-" if count is None else f"{count:g}",
                        "-" if builds is None else str(builds),
                        api_requests(cell),
                        leaks([cell]),
                    ]
                )
                if c.name == Ours.name:
                    ok = None if count is None or builds is None else count == 1 and builds <= 1
                    targets.append(
                        Target(
                            5,
                            f"-n {n}: containers and builds",
                            "exactly 1 container, <= 1 build",
                            f"{'-' if count is None else f'{count:g}'} container(s), "
                            f"{'-' if builds is None else builds} build(s)",
                            ok,
                        )
                    )
        table.rows += skipped_rows(ctx, len(columns))
        table.notes += broken_notes(cells)
        table.notes.append(
            "Containers: created-and-started events from the engine's event stream during each "
            "timed run (median). Builds: POST /build requests in one extra run through a counting "
            "socket relay. Every image was already built by the warm-up run."
        )
        return Outcome([table], targets)


class Many(Workload):
    number = 6
    title = "W6: independent servers in one session"
    sizes = (4, 10)

    def cells(self, ctx: Context) -> list[Cell]:
        cells = []
        for c in ctx.contenders:
            for size in self.sizes:
                names = tuple(f"bench{i}" for i in range(1, size + 1))
                scenario = Scenario(names, images.image_ref("ready"), budget=ctx.budget)
                cells.append(
                    Cell(c, f"{size} servers", scenario, self.folder(ctx, c.slug, str(size)))
                )
        return cells

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        columns = [
            "contender",
            "servers",
            "median s",
            "x floor (sequential)",
            "containers/run",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        targets: list[Target] = []
        for c in ctx.contenders:
            for size in self.sizes:
                cell = find(cells, c.name, f"{size} servers")
                floor = find(cells, Floor.name, f"{size} servers")
                assert cell is not None
                value = ratio(cell, floor)
                count = created(cell)
                table.rows.append(
                    [
                        c.name,
                        str(size),
                        fmt_s(cell.median()) if not cell.broken else status(cell),
                        fmt_x(value),
                        "-" if count is None else f"{count:g}",
                        leaks([cell]),
                    ]
                )
                if c.name == Ours.name and size == 4:
                    targets.append(
                        Target(
                            6,
                            "4 servers vs the floor's sequential start",
                            "<= 0.5x floor",
                            fmt_x(value),
                            None if value is None else value <= 0.5,
                        )
                    )
        table.rows += skipped_rows(ctx, len(columns))
        table.notes += broken_notes(cells)
        table.notes.append(
            "The floor starts its servers one after another (each ready before the next); ours "
            "names them all in one @pytest.mark.testserver(...) marker, which starts them "
            "concurrently. Whole-process wall times, pytest start-up included."
        )
        bound = {size: engine_bound(size) for size in self.sizes}
        table.notes.append(
            "The engine's own bound (raw docker-py, no pytest, no readiness, median of 3 pairs): "
            "creating, starting and force-removing the servers' containers concurrently takes "
            + ", ".join(
                f"{b:.2f}x the time of doing it one after another for {n}" for n, b in bound.items()
            )
            + ". No plugin can start them faster than the engine does; pytest's start-up, the "
            "same for everyone, comes on top."
        )
        return Outcome([table], targets, {"engine_bound": bound})


def engine_bound(size: int, pairs: int = 3) -> float:
    """Concurrent / sequential time of create+start+remove of ``size`` containers, raw SDK."""
    import threading

    import docker

    from .engine import BENCH_LABEL

    api = docker.APIClient(version="auto", max_pool_size=size * 2)
    image = images.image_ref("ready")

    def lifecycle() -> None:
        host = api.create_host_config(port_bindings={8080: ("127.0.0.1", None)})
        made = api.create_container(
            image, ports=[8080], host_config=host, labels={BENCH_LABEL: "engine-bound"}
        )["Id"]
        api.start(made)
        api.remove_container(made, force=True)

    def sequential() -> None:
        for _ in range(size):
            lifecycle()

    def concurrent() -> None:
        threads = [threading.Thread(target=lifecycle) for _ in range(size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def timed(fn: Callable[[], None]) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    try:
        ratios = [timed(concurrent) / timed(sequential) for _ in range(pairs)]
    finally:
        for leftover in api.containers(all=True, filters={"label": f"{BENCH_LABEL}=engine-bound"}):
            api.remove_container(leftover["Id"], force=True)
        api.close()
    return statistics.median(ratios)


class Bare(Contender):
    """No container plugin at all: the baseline of workload 7."""

    name = "(no plugin)"

    def files(self, scenario: Scenario) -> dict[str, str]:
        return {}


TRIVIAL_TEST = "def test_x():\n    pass\n"
MODULES_CONFTEST = """\
from __future__ import annotations

import json
import os
import sys


def pytest_sessionfinish(session):
    names = ("docker", "yaml", "requests", "pytest_testserver.engine")
    with open(os.environ["BENCH_MODULES_OUT"], "w") as f:
        json.dump({name: name in sys.modules for name in names}, f)
"""


def write_trivial(folder: Path) -> None:
    (folder / "pytest.ini").write_text(PYTEST_INI)
    (folder / "test_trivial.py").write_text(TRIVIAL_TEST)


class Idle(Workload):
    number = 7
    title = "W7: start-up cost of a loaded but unused plugin (trivial suite)"

    def plugins(self, ctx: Context) -> list[Contender]:
        wanted = (Ours, DockerTools, PytestDocker)
        return [c for c in ctx.contenders if isinstance(c, wanted)]

    def cells(self, ctx: Context) -> list[Cell]:
        project = self.folder(ctx, "trivial")
        cells = [Cell(Bare(), "off", None, project, write=write_trivial)]
        cells += [Cell(c, "on", None, project, write=write_trivial) for c in self.plugins(ctx)]
        return cells

    def imports(self, ctx: Context, contender: Contender) -> dict[str, bool]:
        folder = self.folder(ctx, "imports")
        folder.mkdir(parents=True, exist_ok=True)
        write_trivial(folder)
        (folder / "conftest.py").write_text(MODULES_CONFTEST)
        out = folder / "modules.json"
        cell = Cell(contender, "imports", None, folder)
        run = run_pytest(folder, cell.full_args(), 60, child_env({"BENCH_MODULES_OUT": str(out)}))
        if run.returncode != 0 or not out.exists():
            ctx.log(f"  ! import check for {contender.name} failed:\n{run.output[-2000:]}")
            return {}
        data: dict[str, bool] = json.loads(out.read_text())
        out.unlink()
        return data

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        off = cells[0]
        columns = [
            "plugin",
            "loaded s",
            "all plugins off s",
            "cost (ms)",
            "docker imported",
            "yaml imported",
        ]
        table = Table(self.title, columns)
        targets: list[Target] = []
        data: dict[str, Any] = {}
        modules_off = self.imports(ctx, off.contender)
        for cell in cells[1:]:
            cost = paired(cell, off, lambda x, y: x - y)
            modules = self.imports(ctx, cell.contender)
            docker = modules.get("docker")
            table.rows.append(
                [
                    cell.contender.name,
                    fmt_s(cell.median()),
                    fmt_s(off.median()),
                    fmt_ms(cost, signed=True),
                    "-" if docker is None else ("yes" if docker else "no"),
                    "-" if not modules else ("yes" if modules.get("yaml") else "no"),
                ]
            )
            data[cell.contender.name] = {"cost": cost, "modules": modules}
            if cell.contender.name == Ours.name:
                ok = None if cost is None or docker is None else cost < 0.020 and not docker
                targets.append(
                    Target(
                        7,
                        "plugin loaded but unused: cost, docker import",
                        "< 20 ms, docker not imported",
                        f"{fmt_ms(cost, signed=True)} ms, docker "
                        f"{'-' if docker is None else ('imported' if docker else 'not imported')}",
                        ok,
                    )
                )
        table.notes += broken_notes(cells)
        table.notes.append(
            "'loaded' runs `pytest -q` on one `def test_x(): pass` with only that plugin enabled; "
            "'all plugins off' disables it too (`-p no:testserver` etc.). Cost is the median of "
            "the paired differences. Modules are read from sys.modules at session end (a separate "
            f"run); with every plugin off: docker {'yes' if modules_off.get('docker') else 'no'}."
        )
        data["modules_off"] = modules_off
        return Outcome([table], targets, data)


class FreshPerTest(Workload):
    number = 8
    title = "W8: a fresh server for each of 20 tests, each busy 0.3 s"
    observe_api = True
    tests = 20
    busy = 0.3

    def contenders(self, ctx: Context) -> list[Contender]:
        return [c for c in ctx.contenders if isinstance(c, (Floor, Ours, DockerTools))]

    def cells(self, ctx: Context) -> list[Cell]:
        scenario = Scenario(
            SINGLE,
            images.image_ref("ready"),
            test_files=self.tests,
            budget=ctx.budget,
            scope="function",
            busy=self.busy,
        )
        cells = [
            Cell(c, "function", scenario, self.folder(ctx, c.slug)) for c in self.contenders(ctx)
        ]
        # The default is one warm spare; the ini allows more (each a running container).
        cells += [
            Cell(
                c,
                "function, 2 spares",
                scenario,
                self.folder(ctx, f"{c.slug}-spares2"),
                args=["-o", "testserver_spares=2"],
            )
            for c in self.contenders(ctx)
            if isinstance(c, Ours)
        ]
        return cells

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        floor = find(cells, Floor.name, "function")
        columns = [
            "contender",
            "variant",
            "median s",
            "min-max s",
            "x floor",
            f"per test beyond its {self.busy} s (ms)",
            "containers/run",
            "API requests/run",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        for cell in cells:
            walls = cell.walls()
            per_test = [w / self.tests - self.busy for w in walls]
            count = created(cell)
            table.rows.append(
                [
                    cell.contender.name,
                    cell.variant,
                    fmt_s(cell.median()) if not cell.broken else status(cell),
                    f"{min(walls):.3f}-{max(walls):.3f}" if walls else "-",
                    fmt_x(ratio(cell, floor)),
                    fmt_ms(statistics.median(per_test) if per_test else None),
                    "-" if count is None else f"{count:g}",
                    api_requests(cell),
                    leaks([cell]),
                ]
            )
        table.rows += skipped_rows(ctx, len(columns), only=(DockerTools.name,))
        table.notes += broken_notes(cells)
        table.notes.append(
            f"{self.tests} test files of one test each; every test gets a server of its own, GETs "
            f"it and then sleeps {self.busy} s. The floor is a function-scoped docker-py fixture "
            "(create, start, wait until HTTP answers, force-remove, per test; the client shared by "
            "the session); pytest-docker-tools `container(..., scope='function')`; ours "
            "`scope: function` with its default one warm spare, and with `testserver_spares = 2`. "
            "'Per test' is the whole run divided by the tests, minus the busy "
            "time (pytest's start-up spread over them). Containers: the engine's create events."
        )
        ours = find(cells, Ours.name, "function")
        value = ratio(ours, floor) if ours else None
        target = Target(
            8,
            "fresh server per test, whole run vs floor",
            "<= 0.6x floor",
            fmt_x(value),
            None if value is None else value <= 0.6,
        )
        return Outcome([table], [target])


class ManyTrivialTests(Workload):
    number = 12
    title = "W12: 2,000 trivial tests on one server: what the plugin costs per test"
    observe_api = True
    tests = 2000

    def contenders(self, ctx: Context) -> list[Contender]:
        # pytest-docker's compose project adds nothing to what is measured here; the bound
        # (the floor asked through a marker and a function-scoped fixture) beside the floor
        kinds = (Floor, Ours, DockerTools, Testcontainers)
        chosen: list[Contender] = [c for c in ctx.contenders if isinstance(c, kinds)]
        if any(type(c) is Floor for c in chosen):
            chosen.insert(1, FloorMarkerFixture())
        return chosen

    def cells(self, ctx: Context) -> list[Cell]:
        scenario = Scenario(
            SINGLE, images.image_ref("ready"), budget=ctx.budget, trivial=self.tests
        )
        return [Cell(c, "ready", scenario, self.folder(ctx, c.slug)) for c in self.contenders(ctx)]

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        floor = find(cells, Floor.name, "ready")
        columns = [
            "contender",
            "median s",
            "min-max s",
            "x floor",
            "ms per test over the floor",
            "ms per test over the bound",
            "API requests/run",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        bound = find(cells, FloorMarkerFixture.name, "ready")
        for cell in cells:
            walls = cell.walls()
            over = paired(cell, floor, lambda a, b: (a - b) / self.tests * 1000) if floor else None
            beyond = (
                paired(cell, bound, lambda a, b: (a - b) / self.tests * 1000) if bound else None
            )
            table.rows.append(
                [
                    cell.contender.name,
                    fmt_s(cell.median()) if not cell.broken else status(cell),
                    f"{min(walls):.3f}-{max(walls):.3f}" if walls else "-",
                    fmt_x(ratio(cell, floor)),
                    "-" if over is None else f"{over:+.3f}",
                    "-" if beyond is None else f"{beyond:+.3f}",
                    api_requests(cell),
                    leaks([cell]),
                ]
            )
        table.rows += skipped_rows(ctx, len(columns), only=(DockerTools.name, Testcontainers.name))
        table.notes += broken_notes(cells)
        table.notes.append(
            f"One parametrized test, {self.tests} cases, each only asking for the server: ours "
            "`@pytest.mark.testserver` and the `testserver` fixture; the floor and the peers a "
            "session fixture. 'Over the floor': the paired difference of whole runs (same round), "
            "median, divided by the tests. The bound is the floor asked the way ours is asked: "
            "a marker naming the server and a function-scoped fixture reading it (pytest's own "
            "cost for that shape of API, per test, on this machine)."
        )
        ours = find(cells, Ours.name, "ready")
        over = (
            paired(ours, floor, lambda a, b: (a - b) / self.tests * 1000)
            if ours and floor
            else None
        )
        target = Target(
            12,
            "per test over the floor",
            "<= 0.05 ms",
            "-" if over is None else f"{over:+.3f} ms",
            None if over is None else over <= 0.05,
        )
        return Outcome([table], [target])


@dataclass
class Cleanup:
    """The end of a cell whose runs keep containers on purpose: its clean, and what was left."""

    problem: str | None  # the clean run did not pass
    kept: int  # containers the cell's runs kept over the workload
    removed: int  # the benchmark's containers the clean run destroyed (engine events)
    left: list[str]  # still on the engine after it: counted as leftovers, then removed


def reuse_projects(cell: Cell) -> set[str]:
    """The reuse-project labels of the containers ``cell``'s runs kept."""
    return {
        labels[OURS_REUSE_LABEL]
        for run in cell.all_runs()
        if run.engine
        for labels in run.engine.kept.values()
    }


class WarmReuse(Workload):
    number = 9
    title = "W9: warm reuse across runs (`--testserver-reuse`), the second run vs a cold one"
    flag = "--testserver-reuse"
    clean_flag = "--testserver-reuse-clean"
    warm = "warm, second run"
    cold = "cold, reuse on"
    target = 0.4

    def cells(self, ctx: Context) -> list[Cell]:
        scenario = Scenario(SINGLE, images.image_ref("ready"), budget=ctx.budget)
        cells = []
        for c in ctx.contenders:
            if isinstance(c, Floor):
                cells.append(Cell(c, "cold", scenario, self.folder(ctx, c.slug)))
            elif isinstance(c, Ours):
                before = {self.warm: self.keep_warm, self.cold: self.clean_first}
                cells += [
                    Cell(
                        c,
                        variant,
                        scenario,
                        self.folder(ctx, c.slug, variant.split(",")[0]),
                        args=[self.flag],
                        before_run=step,
                        keep=is_kept_for_reuse,
                    )
                    for variant, step in before.items()
                ]
        return cells

    def clean_args(self, cell: Cell) -> list[str]:
        return [*cell.plugin_args(), self.clean_flag]

    def running(self, runner: Runner, cell: Cell) -> bool:
        """Whether a server this project kept is running (one of its runs can adopt it)."""
        return any(
            runner.watch.labelled({OURS_REUSE_LABEL: p, OURS_SERVER_LABEL: SINGLE[0]}, True)
            for p in reuse_projects(cell)
        )

    def keep_warm(self, runner: Runner, cell: Cell) -> str | None:
        """Before a timed warm run: an untimed first run, unless the project's server runs."""
        if self.running(runner, cell):
            return None
        _, problem = runner.untimed(cell, cell.full_args(), "untimed first run")
        if problem is None and not self.running(runner, cell):
            problem = "untimed first run passed but left no running server to reuse"
        return problem

    def clean_first(self, runner: Runner, cell: Cell) -> str | None:
        """Before a timed cold run: an untimed clean, so the run finds nothing to reuse."""
        run, problem = runner.untimed(cell, self.clean_args(cell), f"untimed {self.clean_flag}")
        left = self.take_left(runner, cell, run)
        if problem is None and left:
            problem = f"{self.clean_flag} left {', '.join(left)} (removed by the benchmark)"
        return problem

    def take_left(self, runner: Runner, cell: Cell, run: Run) -> list[str]:
        """Remove what ``cell``'s runs kept that is still there, as ``run``'s leftovers."""
        found: dict[str, str] = {}
        for past in cell.all_runs():
            for cid in past.engine.kept if past.engine else {}:
                name = runner.watch.name_of(cid)
                if name is not None:
                    found[cid] = name
        for project in reuse_projects(cell):
            for container in runner.watch.labelled({OURS_REUSE_LABEL: project}):
                names = container.get("Names") or [container["Id"][:12]]
                found[container["Id"]] = names[0].lstrip("/")
        for cid in found:
            runner.watch.remove(cid)
        left = sorted(found.values())
        if left and run.engine is not None:
            run.engine.leaked_containers += left
            runner.log(f"    leak: {cell.key}: still there after the clean: {left} (removed)")
        return left

    def clean(self, runner: Runner, cell: Cell) -> Cleanup:
        kept = {cid for run in cell.all_runs() if run.engine for cid in run.engine.kept}
        what = f"{self.clean_flag} after the workload"
        run, problem = runner.untimed(cell, self.clean_args(cell), what)
        removed = run.engine.containers_removed if run.engine else 0
        return Cleanup(problem, len(kept), removed, self.take_left(runner, cell, run))

    def run(self, ctx: Context, repeat: int) -> tuple[list[Cell], Outcome]:
        cells = self.cells(ctx)
        cleanups: dict[str, Cleanup] = {}
        try:
            ctx.runner.measure(cells, repeat)
        finally:  # on any failure too: nothing of ours may outlive the workload
            for cell in cells:
                if cell.keep is not None and cell.project.exists():
                    cleanups[cell.key] = self.clean(ctx.runner, cell)
        outcome = self.report(cells, ctx, cleanups)
        outcome.data["cells"] = [c.as_json() for c in cells]
        outcome.data["repeat"] = repeat
        outcome.data["cleanups"] = {k: dataclasses.asdict(v) for k, v in cleanups.items()}
        return cells, outcome

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        return self.report(cells, ctx, {})

    def report(self, cells: list[Cell], ctx: Context, cleanups: dict[str, Cleanup]) -> Outcome:
        floor = find(cells, Floor.name, "cold")
        columns = [
            "contender",
            "variant",
            "median s",
            "min-max s",
            "x floor",
            "vs floor (ms)",
            "containers/run",
            "untimed first runs / cleans",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        for cell in cells:
            walls = cell.walls()
            count = created(cell)
            cleans = sum(self.clean_flag in r.args for r in cell.side_runs)
            firsts = len(cell.side_runs) - cleans + (cell.warmup is not None)
            table.rows.append(
                [
                    cell.contender.name,
                    cell.variant,
                    fmt_s(cell.median()) if not cell.broken else status(cell),
                    f"{min(walls):.3f}-{max(walls):.3f}" if walls else "-",
                    fmt_x(ratio(cell, floor)),
                    "-"
                    if floor is None or cell is floor
                    else fmt_ms(paired(cell, floor, lambda x, y: x - y), signed=True),
                    "-" if count is None else f"{count:g}",
                    "-" if cell.keep is None else f"{firsts} / {cleans}",
                    leaks([cell]),
                ]
            )
        table.notes += broken_notes(cells)
        table.notes += [
            f"{cell.key}: {len(cell.side_failures)} round(s) not timed, the untimed step before "
            f"went wrong: {cell.side_failures[0].splitlines()[0]}"
            for cell in cells
            if cell.side_failures
        ]
        table.notes.append(
            f"Ours runs its project with `{self.flag}`. `{self.warm}`: before each timed run the "
            f"engine is asked whether the server the project kept (`{OURS_SERVER_LABEL}="
            f"{SINGLE[0]}` with the project's `{OURS_REUSE_LABEL}` label) is running; if not, an "
            "untimed first run starts it (in the first round the warm-up run has). The timed run "
            "is the second one and should adopt it: containers/run (the engine's create events) "
            f"0. `{self.cold}`: an untimed `pytest {self.clean_flag}` before each timed run, "
            "which so finds nothing to adopt and starts (and keeps) a fresh container: the cost "
            "of the definition check on a cold start (compare ours in W1, without the flag). The "
            "floor is W1's session docker-py fixture, one server, one test, cold every run."
        )
        gone = "; ".join(
            f"{key}: {c.kept} kept over the workload, the clean removed {c.removed}, "
            + (f"{len(c.left)} left (counted as leaks, removed)" if c.left else "none left")
            + (f" (the clean went wrong: {c.problem.splitlines()[0]})" if c.problem else "")
            for key, c in cleanups.items()
        )
        table.notes.append(
            f"Leftovers: a container ours keeps for reuse (a `{OURS_REUSE_LABEL}` label, no "
            f"`{OURS_RUN_LABEL}` label) is not counted as left behind by the run that made it: "
            f"it is meant to outlive each run. After the workload (and when it fails) `pytest "
            f"{self.clean_flag}` runs in each of ours' projects, and every container those "
            "projects kept is then checked gone (whatever is still there counts as a leak and is "
            "removed)" + (f": {gone}." if gone else ".")
        )
        ours = find(cells, Ours.name, self.warm)
        value = ratio(ours, floor) if ours else None
        count = created(ours) if ours else None
        target = Target(
            9,
            f"second run with {self.flag} (adopts the warm server) vs the floor's cold run",
            f"<= {self.target}x floor, 0 containers started",
            f"{fmt_x(value)}, {'-' if count is None else f'{count:g}'} container(s)/run",
            None if value is None or count is None else value <= self.target and count == 0,
        )
        return Outcome([table], [target])


LEAD_FILE = "test_lead.py"


def lead_tests(count: int, each: float, collect: float) -> str:
    """A test module that takes ``collect`` s to import and holds ``count`` tests of ``each`` s."""
    tests = "".join(f"\n\ndef test_lead_{i}():\n    time.sleep({each!r})\n" for i in range(count))
    return (
        "from __future__ import annotations\n\n"
        "import time\n\n"
        f"time.sleep({collect!r})  # stands in for heavy imports: collection takes this long\n"
        f"{tests}"
    )


def write_with_lead(contender: Contender, scenario: Scenario, lead: str, folder: Path) -> None:
    contender.render(scenario, folder)
    (folder / LEAD_FILE).write_text(lead)


class StartBeforeAsked(Workload):
    number = 10
    title = "W10: starting the server before the test that asks for it"
    collect = 1.0  # s of imports while collecting
    lead = 10  # tests before the one that needs the server
    lead_each = 0.1  # s each

    def contenders(self, ctx: Context) -> list[Contender]:
        return [c for c in ctx.contenders if isinstance(c, (Floor, Ours))]

    def cells(self, ctx: Context) -> list[Cell]:
        scenario = Scenario(SINGLE, images.image_ref("ready"), budget=ctx.budget)
        lead = lead_tests(self.lead, self.lead_each, self.collect)
        return [
            Cell(
                c,
                "last test",
                scenario,
                self.folder(ctx, c.slug),
                args=[LEAD_FILE, "test_0.py"],  # in this order: the server's test runs last
                write=functools.partial(write_with_lead, c, scenario, lead),
            )
            for c in self.contenders(ctx)
        ]

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        floor = find(cells, Floor.name, "last test")
        columns = ["contender", "median s", "min-max s", "x floor", "vs floor (ms)", "leaks c/n"]
        table = Table(self.title, columns)
        for cell in cells:
            walls = cell.walls()
            saved = None if floor is None else paired(cell, floor, lambda x, y: x - y)
            table.rows.append(
                [
                    cell.contender.name,
                    fmt_s(cell.median()) if not cell.broken else status(cell),
                    f"{min(walls):.3f}-{max(walls):.3f}" if walls else "-",
                    fmt_x(ratio(cell, floor)),
                    fmt_ms(saved, signed=True) if cell is not floor else "-",
                    leaks([cell]),
                ]
            )
        table.notes += broken_notes(cells)
        table.notes.append(
            f"`{LEAD_FILE}` sleeps {self.collect} s at import (heavy imports: collection takes "
            f"that long) and holds {self.lead} tests of {self.lead_each} s that need no server; "
            "then one test GETs the server. The floor's session fixture is requested by that "
            "last test only, so it starts there; ours is the marker on that test, nothing else "
            "configured."
        )
        ours = find(cells, Ours.name, "last test")
        value = ratio(ours, floor) if ours else None
        target = Target(
            10,
            "server needed by the last test, after 1 s collection + 1 s of tests",
            "<= 0.75x floor",
            fmt_x(value),
            None if value is None else value <= 0.75,
        )
        return Outcome([table], [target])


class ResetCost(Workload):
    number = 11
    title = 'W11: the cost of `reset: ["true"]` between 20 tests sharing one server'
    observe_api = True
    tests = 20
    command = ("true",)

    def cells(self, ctx: Context) -> list[Cell]:
        cells = []
        for c in ctx.contenders:
            if not isinstance(c, Ours):
                continue
            for variant, reset in (("no reset", None), ("reset", self.command)):
                scenario = Scenario(
                    SINGLE,
                    images.image_ref("ready"),
                    test_files=self.tests,
                    budget=ctx.budget,
                    reset=reset,
                )
                folder = self.folder(ctx, c.slug, variant.replace(" ", "-"))
                cells.append(Cell(c, variant, scenario, folder))
        return cells

    def per_test(self, cells: list[Cell]) -> float | None:
        without, with_reset = find(cells, Ours.name, "no reset"), find(cells, Ours.name, "reset")
        if without is None or with_reset is None or without.broken or with_reset.broken:
            return None
        return paired(with_reset, without, lambda x, y: (x - y) / (self.tests - 1))

    def summarize(self, cells: list[Cell], ctx: Context) -> Outcome:
        columns = [
            "contender",
            "variant",
            "median s",
            "min-max s",
            "execs/run",
            "reset cost per test (ms)",
            "leaks c/n",
        ]
        table = Table(self.title, columns)
        cost = self.per_test(cells)
        for cell in cells:
            walls = cell.walls()
            execs = api_total(cell, "POST /containers/{id}/exec")
            table.rows.append(
                [
                    cell.contender.name,
                    cell.variant,
                    fmt_s(cell.median()) if not cell.broken else status(cell),
                    f"{min(walls):.3f}-{max(walls):.3f}" if walls else "-",
                    "-" if execs is None else str(execs),
                    fmt_ms(cost, signed=True) if cell.variant == "reset" else "-",
                    leaks([cell]),
                ]
            )
        table.notes += broken_notes(cells)
        table.notes.append(
            f"{self.tests} test files of one test each, every test marked "
            "`@pytest.mark.testserver(...)` on one session server; the reset runs before every "
            f"test but the first. Cost per test: (with reset - without) / {self.tests - 1}, per "
            "round, median. Execs: the exec creations the engine received in one extra run "
            "through the counting relay."
        )
        raw = exec_bound(list(self.command)) if cells else None
        if raw is not None:
            table.notes.append(
                "The engine's own cost (raw docker-py, no pytest): "
                f"`exec_run({list(self.command)})` on a running server takes "
                f"{raw * 1000:.0f} ms (median of 20)."
            )
        target = Target(
            11,
            'reset: ["true"], cost per test',
            "< 60 ms per test",
            f"{fmt_ms(cost, signed=True)} ms",
            None if cost is None else cost < 0.060,
        )
        return Outcome([table], [target], {"per_test": cost, "exec_bound": raw})


def exec_bound(command: list[str], n: int = 20) -> float:
    """Median time of one ``exec_run(command)`` in a running server, raw SDK."""
    import docker

    from .engine import BENCH_LABEL

    client = docker.from_env()
    container = client.containers.run(
        images.image_ref("ready"), detach=True, labels={BENCH_LABEL: "exec-bound"}
    )
    try:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            result = container.exec_run(command)
            times.append(time.perf_counter() - started)
            assert result.exit_code == 0, result
    finally:
        container.remove(force=True)
        client.close()
    return statistics.median(times)


WORKLOADS: dict[int, Workload] = {
    w.number: w
    for w in (
        OneServer(),
        Detection(),
        Failure(),
        Rebuild(),
        Shared(),
        Many(),
        Idle(),
        FreshPerTest(),
        WarmReuse(),
        StartBeforeAsked(),
        ResetCost(),
        ManyTrivialTests(),
    )
}
