"""The Markdown table printed at the end, and the JSON written beside it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .profiling import Profile
from .runner import Cell
from .workloads import Table, Target


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(columns), line(["---"] * len(columns)), *(line(r) for r in rows)])


def render_table(table: Table) -> str:
    parts = [f"### {table.title}", "", markdown_table(table.columns, table.rows)]
    if table.notes:
        parts += ["", *(f"- {note}" for note in table.notes)]
    return "\n".join(parts)


def render_targets(targets: Sequence[Target]) -> str:
    rows = [[f"W{t.workload}", t.what, t.target, t.measured, t.verdict] for t in targets]
    return markdown_table(["W", "pytest-testserver", "target", "measured", "verdict"], rows)


def leak_summary(cells: Sequence[Cell]) -> str:
    containers: Counter[str] = Counter()
    networks: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    for cell in cells:
        for run in cell.all_runs():
            if run.engine is None:
                continue
            name = cell.contender.name
            runs[name] += 1
            containers[name] += len(run.engine.leaked_containers)
            networks[name] += len(run.engine.leaked_networks)
    rows = [[n, str(runs[n]), str(containers[n]), str(networks[n])] for n in runs]
    return markdown_table(["contender", "runs", "containers left", "networks left"], rows)


def render_profile(profile: Profile, top: int = 12) -> str:
    wall = sorted(profile.wall)
    inclusive = dict(profile.top(profile.functions, len(profile.functions)))
    own_rows = [
        [key, f"{seconds * 1000:.1f}", f"{inclusive.get(key, 0.0) * 1000:.1f}"]
        for key, seconds in profile.top(profile.own, top)
    ]
    edge_rows = [[key, f"{seconds * 1000:.1f}"] for key, seconds in profile.top(profile.edges, top)]
    lines = [
        "### Profile of pytest-testserver on W1 (pyinstrument, whole pytest process)",
        "",
        f"{len(wall)} profiled run(s), median {wall[len(wall) // 2]:.3f} s (profiler overhead "
        "included). Per plugin function, median over runs: its own time (in itself and in code "
        "outside the plugin it calls) and its inclusive time:",
        "",
        markdown_table(["function", "own ms", "inclusive ms"], own_rows),
        "",
        "Where that time goes (a plugin function → the first call outside the plugin):",
        "",
        markdown_table(["call", "ms"], edge_rows),
    ]
    return "\n".join(lines)


def render(
    header: Sequence[str],
    targets: Sequence[Target],
    tables: Sequence[Table],
    cells: Sequence[Cell],
    profile: Profile | None,
) -> str:
    parts = [
        "# pytest-testserver benchmark",
        "",
        *header,
        "",
        "## Targets",
        "",
        render_targets(targets),
    ]
    parts += ["", "## Workloads"]
    for table in tables:
        parts += ["", render_table(table)]
    parts += [
        "",
        "## Leftovers by contender (all runs; removed after each run)",
        "",
        leak_summary(cells),
    ]
    if profile is not None and profile.wall:
        parts += ["", render_profile(profile)]
    return "\n".join(parts) + "\n"
