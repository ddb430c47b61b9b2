"""Where pytest-testserver spends workload 1: pyinstrument over the whole pytest process."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import images
from .contenders import Ours, Scenario, disable_flags
from .runner import BASE_ARGS, child_env

PACKAGE = "pytest_testserver/"


@dataclass
class Profile:
    wall: list[float] = field(default_factory=list)
    # "module.py:function" -> seconds per profiled run: inclusive, and its own (in itself and
    # in code outside the plugin that it calls)
    functions: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    own: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # "plugin function -> outside callee" -> seconds, per profiled run
    edges: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    text: str = ""
    sessions: list[str] = field(default_factory=list)

    def top(self, table: dict[str, list[float]], n: int) -> list[tuple[str, float]]:
        runs = len(self.wall)
        # A key missing from a run counts as 0 s there.
        medians = {k: statistics.median(v + [0.0] * (runs - len(v))) for k, v in table.items()}
        return sorted(medians.items(), key=lambda kv: -kv[1])[:n]

    def as_json(self) -> dict[str, Any]:
        return {
            "wall": self.wall,
            "sessions": self.sessions,
            "functions": dict(self.top(self.functions, 25)),
            "own": dict(self.top(self.own, 25)),
            "edges": dict(self.top(self.edges, 25)),
        }


def _key(frame: Any) -> str:
    path = str(frame.file_path or "")
    module = path.split(PACKAGE, 1)[-1] if PACKAGE in path else Path(path).name
    return f"{module}:{frame.function}"


def _aggregate(root: Any) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    inclusive: dict[str, float] = defaultdict(float)
    own: dict[str, float] = defaultdict(float)
    edges: dict[str, float] = defaultdict(float)

    def nested(frame: Any) -> float:
        """Time in the nearest plugin frames below ``frame`` (through any other code)."""
        total = 0.0
        for child in frame.children:
            total += child.time if PACKAGE in str(child.file_path or "") else nested(child)
        return total

    def visit(frame: Any, inside: tuple[str, ...], caller: str | None) -> None:
        ours = PACKAGE in str(frame.file_path or "")
        key = _key(frame)
        if ours:
            if key not in inside:  # recursion or re-entry counts once
                inclusive[key] += frame.time
            # Its own time: in itself and in what it calls outside the plugin.
            own[key] += frame.time - nested(frame)
        elif caller is not None:
            # A plugin function calling out (the SDK, the stdlib): where the time goes.
            edges[f"{caller} → {key}"] += frame.time - nested(frame)
        if ours:
            # Name a generic wrapper (Engine._call) by the method that called it.
            generic = frame.function.startswith("_call") and inside
            caller = f"{inside[-1]} (via {frame.function})" if generic else key
        for child in frame.children:
            visit(child, (*inside, key) if ours else inside, caller if ours else None)

    visit(root, (), None)
    return inclusive, own, edges


def profile_ours(folder: Path, out_dir: Path, runs: int, budget: int) -> Profile:
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    scenario = Scenario(("bench",), images.image_ref("ready"), budget=budget)
    folder.mkdir(parents=True, exist_ok=True)
    Ours().render(scenario, folder)
    args = [*BASE_ARGS, *disable_flags(Ours.plugins)]
    profile = Profile()
    # One unprofiled warm-up run (bytecode caches, page cache).
    subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=folder, env=child_env(), capture_output=True
    )
    for i in range(runs):
        path = out_dir / f"profile-w1-ours-{i + 1}.pyisession"
        command = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-r",
            "pyisession",
            "-o",
            str(path),
            "-m",
            "pytest",
            *args,
        ]
        subprocess.run(command, cwd=folder, env=child_env(), capture_output=True, check=True)
        session = Session.load(path)
        profile.sessions.append(str(path))
        profile.wall.append(session.duration)
        root = session.root_frame()
        if root is None:
            continue
        functions, own, edges = _aggregate(root)
        for key, seconds in functions.items():
            profile.functions[key].append(seconds)
        for key, seconds in own.items():
            profile.own[key].append(seconds)
        for key, seconds in edges.items():
            profile.edges[key].append(seconds)
        if i == 0:
            renderer = ConsoleRenderer(unicode=True, color=False, show_all=False)
            profile.text = renderer.render(session)
    return profile
