"""The surviving-mutant report of ``nox -s mutants``: per module, how many mutants the unit tests
killed, how many survived or timed out, and the score; then every survivor as a diff.

Reads what ``mutmut run`` left in ``mutants/`` (the ``.meta`` file of each mutated module, and
the mutated module itself, which holds the original and every mutant of each function side by
side). Usage: ``python .ci/mutants_report.py [REPORT.md]`` from the checkout's root; prints the
table, writes the whole report (default ``mutants/report.md``).
"""

from __future__ import annotations

import ast
import difflib
import json
import sys
from collections import Counter
from pathlib import Path

import tomllib

# mutmut's exit codes (mutmut/stats.py): 1 and 3 are a failing test run, 0 a passing one.
KILLED = {1, 3}
SURVIVED = {0}
TIMEOUT = {36, -24, 24, 152, 255}
NO_TESTS = {5, 33}


def status(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in TIMEOUT:
        return "timeout"
    if code in NO_TESTS:
        return "no tests"
    if code is None:
        return "not checked"
    return "suspicious"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def row(name: str, counts: Counter[str]) -> str:
    caught = counts["killed"] + counts["timeout"]
    tried = caught + counts["survived"]
    everything = sum(counts.values())
    return (
        f"| {name} | {counts['killed']} | {counts['survived']} | {counts['timeout']} "
        f"| {everything - tried} | {percent(caught, tried)} | {percent(caught, everything)} |"
    )


def functions(source: str) -> dict[str, str]:
    """Every function of the mutated module by name, as its source text."""
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = "\n".join(lines[node.lineno - 1 : node.end_lineno])
    return found


def diff(name: str, defs: dict[str, str]) -> str:
    local = name.rsplit(".", 1)[-1]  # pytest_testserver.validate.x_url_path__mutmut_6
    original = defs.get(local.rsplit("__mutmut_", 1)[0] + "__mutmut_orig", "")
    mutant = defs.get(local, "")
    lines = difflib.unified_diff(
        original.splitlines()[1:], mutant.splitlines()[1:], lineterm="", n=1
    )
    return "\n".join(line for line in lines if not line.startswith(("---", "+++")))


def main() -> int:
    root = Path.cwd()
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "mutants" / "report.md"
    rows = []
    survivors: list[str] = []
    totals: Counter[str] = Counter()
    for module in settings["only_mutate"]:
        meta = root / "mutants" / (module + ".meta")
        if not meta.exists():
            rows.append(f"| {module} | (not run) | | | | | |")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(status(code) for code in codes.values())
        totals.update(counts)
        rows.append(row(module, counts))
        defs = functions((root / "mutants" / module).read_text())
        for name, code in sorted(codes.items()):
            if status(code) in ("survived", "no tests", "suspicious"):
                survivors.append(f"### {name} ({status(code)})\n```diff\n{diff(name, defs)}\n```")
    rows.append(row("**all**", totals))
    table = "\n".join(
        [
            "| module | killed | survived | timeout | no tests / other | score | of all |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# Mutation testing: surviving mutants\n\n"
        "score = (killed + timeout) / (killed + survived + timeout); of all = (killed + "
        "timeout) / every mutant, counting a mutant no selected test reaches as a survivor.\n\n"
        f"{table}\n\n## Survivors\n\n" + "\n\n".join(survivors) + "\n"
    )
    print(f"mutants: {len(survivors)} survivors listed in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
