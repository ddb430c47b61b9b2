"""Benchmark pytest-testserver against a hand-written docker-py floor and its peers.

    python benchmarks/run.py                        # every workload, 7 rounds
    python benchmarks/run.py --repeat 9 --workloads 1,2,3 --json out.json

Prints a Markdown report and writes it, with every raw figure as JSON, to benchmarks/results/
(git-ignored) or the paths given. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from testserver_bench import contenders, images
from testserver_bench.engine import EngineWatch
from testserver_bench.profiling import Profile, profile_ours
from testserver_bench.report import render
from testserver_bench.runner import Cell, Runner
from testserver_bench.workloads import WORKLOADS, Context, Table, Target

import pytest_testserver

RESULTS = Path(__file__).resolve().parent / "results"
HEAVY = (5, 6, 8)
PACKAGES = (
    "pytest",
    "pytest-testserver",
    "docker",
    "testcontainers",
    "pytest-docker-tools",
    "pytest-docker",
    "pytest-xdist",
    "pyinstrument",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="rounds per workload (default 7)")
    parser.add_argument(
        "--repeat-heavy",
        type=int,
        default=None,
        help="rounds for workloads 5, 6 and 8 (default: --repeat); the report says so when fewer",
    )
    parser.add_argument(
        "--repeat-idle",
        type=int,
        default=None,
        help="rounds for workload 7, whose differences are milliseconds (default: 5 x --repeat)",
    )
    parser.add_argument(
        "--workloads", default="1,2,3,4,5,6,7,8,9,10,11", help="comma-separated, e.g. 1,2,3"
    )
    parser.add_argument(
        "--contenders",
        default=",".join(c.name for c in contenders.ALL),
        help="comma-separated subset (the floor is always measured)",
    )
    parser.add_argument("--json", type=Path, help="where to write the JSON (default: results/)")
    parser.add_argument(
        "--markdown", type=Path, help="where to write the Markdown (default: beside the JSON)"
    )
    parser.add_argument(
        "--budget", type=int, default=30, help="readiness budget of every contender, s"
    )
    parser.add_argument(
        "--cap", type=float, default=150.0, help="kill a pytest run after this many s"
    )
    parser.add_argument(
        "--profile-runs", type=int, default=3, help="pyinstrument runs of ours on W1 (0: none)"
    )
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="skip pytest-testserver's other readiness setups on workloads 1 and 2",
    )
    parser.add_argument("--keep-projects", action="store_true", help="keep the generated projects")
    return parser.parse_args(argv)


def plugin_source() -> str:
    """The commit measured, and whether pytest_testserver/ differed from it (a hash if so)."""
    import hashlib
    import subprocess

    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return result.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    diff = git("diff", "HEAD", "--", "pytest_testserver")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "pytest_testserver")
    if not diff and not untracked:
        return head
    digest = hashlib.sha256((diff + untracked).encode()).hexdigest()[:10]
    return f"{head} + uncommitted changes to pytest_testserver/ (diff {digest})"


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    compose = shutil.which(contenders.COMPOSE_COMMAND)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": versions,
        "compose": compose,
        "plugin_source": plugin_source(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()
    numbers = [int(n) for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in numbers if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s): {unknown}; known: {sorted(WORKLOADS)}")
    wanted = {n.strip() for n in args.contenders.split(",")} | {contenders.Floor.name}

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    skipped: dict[str, str] = {}
    chosen: list[contenders.Contender] = []
    for contender in contenders.ALL:
        if contender.name not in wanted:
            continue
        why = contender.unavailable()
        if why:
            skipped[contender.name] = why
            log(f"skipping {contender.name}: {why}")
        else:
            chosen.append(contender)

    # The peers are installed from wheels, with bytecode; an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile ours on every run. Compile it once, as pip would.
    compileall.compile_dir(str(Path(pytest_testserver.__file__).parent), quiet=1)
    watch = EngineWatch()
    engine_version = watch.api.version().get("Version", "?")
    log(f"building the workload images on engine {engine_version} ...")
    built = images.build_all(watch.client)
    root = Path(tempfile.mkdtemp(prefix="testserver-bench-"))
    log(f"generated projects in {root}")
    RESULTS.mkdir(exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    json_path = args.json or RESULTS / f"bench-{stamp}.json"
    md_path = args.markdown or json_path.with_suffix(".md")

    runner = Runner(watch, args.cap, log)
    variants: list[contenders.Contender] = []
    main_ours = next((c for c in chosen if isinstance(c, contenders.Ours)), None)
    if main_ours is not None and not args.no_variants:
        others = [r for r in contenders.Ours.available() if r != main_ours.readiness]
        variants = [contenders.Ours(r, main=False) for r in others]
    ctx = Context(root, chosen, skipped, runner, args.repeat, args.budget, log, variants)
    tables: list[Table] = []
    targets: list[Target] = []
    all_cells: list[Cell] = []
    data: dict[str, Any] = {}
    repeats: dict[int, int] = {}
    profile: Profile | None = None
    try:
        for number in numbers:
            workload = WORKLOADS[number]
            repeat = args.repeat
            if number in HEAVY and args.repeat_heavy is not None:
                repeat = args.repeat_heavy
            if number == 7:
                repeat = args.repeat_idle or 5 * args.repeat
            repeats[number] = repeat
            log(f"{workload.title} ({repeat} rounds)")
            t0 = time.perf_counter()
            cells, outcome = workload.run(ctx, repeat)
            outcome.data["seconds"] = round(time.perf_counter() - t0, 1)
            all_cells += cells
            tables += outcome.tables
            targets += outcome.targets
            data[f"w{number}"] = outcome.data
        if args.profile_runs and any(isinstance(c, contenders.Ours) for c in chosen):
            log(f"profiling pytest-testserver on W1 ({args.profile_runs} runs) ...")
            profile = profile_ours(root / "profile", RESULTS, args.profile_runs, args.budget)
            (RESULTS / "profile-w1-ours.txt").write_text(profile.text)
    finally:
        swept = watch.sweep()
        if swept:
            log(f"removed leftovers by label at the end: {swept}")
        watch.close()
        if not args.keep_projects:
            shutil.rmtree(root, ignore_errors=True)

    finished = datetime.datetime.now().astimezone()
    load_after = os.getloadavg()
    env = environment()
    fewer = [n for n in numbers if repeats[n] < 7]
    header = [
        f"- Date: {started:%Y-%m-%d %H:%M %Z} "
        f"(took {(finished - started).total_seconds() / 60:.1f} min)",
        f"- Command: `{command}`",
        f"- Machine: {env['cpus']} CPUs, {env['platform']}, Python {env['python']}, "
        f"Docker engine {engine_version}, compose: {env['compose'] or 'missing'}; "
        f"load average {load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end",
        f"- pytest-testserver measured: {env['plugin_source']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v),
        "- Rounds: "
        + ", ".join(f"W{n} {repeats[n]}" for n in numbers)
        + (f" (fewer than 7 for W{', W'.join(map(str, fewer))})" if fewer else ""),
        "- Every figure is a median over rounds; inside a round the contenders run one after "
        "another (round-robin, the starting contender rotated each round), after one untimed "
        "warm-up run each. Ratios and differences are taken per round against the cell measured "
        "in the same round, then the median is reported. Times are whole `pytest` processes.",
        "- Leaks column: containers / networks a run left behind (removed before the next run).",
    ]
    if main_ours is not None:
        header.append(
            f"- pytest-testserver's readiness: `{contenders.READINESS[main_ours.readiness]}`; "
            "W1 and W2 also measure "
            + (", ".join(f"`{c.name}`" for c in variants) or "no other setup")
        )
    if skipped:
        header.append("- Skipped: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    text = render(header, targets, tables, all_cells, profile)
    payload = {
        "date": started.isoformat(),
        "command": command,
        "environment": env,
        "engine": engine_version,
        "images": built,
        "repeats": repeats,
        "skipped": skipped,
        "targets": [t.__dict__ | {"verdict": t.verdict} for t in targets],
        "workloads": data,
        "profile": profile.as_json() if profile else None,
        "markdown": str(md_path),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    md_path.write_text(text)
    print(text)
    print(f"JSON: {json_path}\nMarkdown: {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
