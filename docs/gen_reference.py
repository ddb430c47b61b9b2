"""The reference tables, generated from the plugin's own definitions (a MkDocs hook).

What exists comes from the code: the server keys from ``config.SERVER_KEYS``, the command-line
options and ini keys from what ``plugin.pytest_addoption`` registers (called with a recording
parser), the environment variables from the names the package's source reads. What each one
means comes from ``docs/reference/tables.yaml``, written by hand. A page asks for a table with a
marker line such as ``<!-- generated: server-keys -->``; ``<!-- include: SECURITY.md -->`` puts a
file of the repository into a page. ``tests/test_docs.py`` fails when the code and the
hand-written tables disagree in either direction, and so does the build (``mismatches``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TABLES = ROOT / "docs" / "reference" / "tables.yaml"
PACKAGE = ROOT / "pytest_testserver"
MARKER = re.compile(r"^<!-- (generated|include): ([\w./-]+) -->$", re.M)
# Names the package reads from the environment: the plugin's own variables and Docker's, as
# string literals, and whatever it looks up with environ.get / env.get.
ENV_LITERAL = re.compile(r"\"((?:TESTSERVER|DOCKER)_[A-Z0-9_]+)\"")
ENV_LOOKUP = re.compile(r"\b(?:environ|env)\.get\(\"([A-Z][A-Z0-9_]*)\"")


@dataclass
class Option:
    names: tuple[str, ...]
    kwargs: dict[str, Any]


@dataclass
class Ini:
    name: str
    help: str
    type: str | None
    default: Any


@dataclass
class Recorder:
    """Stands in for pytest's Parser: records what pytest_addoption registers."""

    options: list[Option] = field(default_factory=list)
    inis: list[Ini] = field(default_factory=list)

    def getgroup(self, name: str, description: str = "", after: str | None = None) -> Recorder:
        return self

    def addoption(self, *names: str, **kwargs: Any) -> None:
        self.options.append(Option(names, kwargs))

    def addini(
        self, name: str, help: str, type: str | None = None, default: Any = None, **_: Any
    ) -> None:
        self.inis.append(Ini(name, help, type, default))


def registered() -> Recorder:
    from pytest_testserver import plugin

    recorder = Recorder()
    plugin.pytest_addoption(recorder)  # type: ignore[arg-type]
    return recorder


def server_keys() -> list[str]:
    from pytest_testserver.config import SERVER_KEYS

    return list(SERVER_KEYS)


def env_names() -> list[str]:
    names: set[str] = set()
    for source in sorted(PACKAGE.rglob("*.py")):
        text = source.read_text(encoding="utf-8")
        names.update(ENV_LITERAL.findall(text))
        names.update(ENV_LOOKUP.findall(text))
    return sorted(names)


def tables() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(TABLES.read_text(encoding="utf-8"))
    return data


def mismatches() -> list[str]:
    """Every difference between what the code defines and what tables.yaml documents."""
    docs = tables()
    recorder = registered()
    pairs = {
        "server key": (server_keys(), list(docs["server_keys"])),
        "command-line option": (
            [o.names[0] for o in recorder.options],
            list(docs["cli"]),
        ),
        "ini key": ([i.name for i in recorder.inis], list(docs["ini"])),
        "environment variable": (env_names(), list(docs["env"])),
    }
    problems = []
    for kind, (code, documented) in pairs.items():
        for name in code:
            if name not in documented:
                problems.append(f"{kind} {name} is in the code but not in {TABLES.name}")
        for name in documented:
            if name not in code:
                problems.append(f"{kind} {name} is documented in {TABLES.name} but not in the code")
    return problems


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def server_keys_table() -> str:
    docs = tables()["server_keys"]
    return table(
        ["Key", "Value", "Meaning"],
        [[f"`{key}`", docs[key]["value"], docs[key]["meaning"]] for key in server_keys()],
    )


def option_usage(option: Option) -> str:
    name = option.names[0]
    if "choices" in option.kwargs:
        return f"`{name} {{{','.join(option.kwargs['choices'])}}}`"
    if option.kwargs.get("action") == "store_true":
        return f"`{name}`"
    return f"`{name} {option.kwargs.get('metavar', 'VALUE')}`"


def cli_table() -> str:
    docs = tables()["cli"]
    rows = [
        [option_usage(o), docs[o.names[0]], f"`pytest --help`: {o.kwargs.get('help', '')}"]
        for o in registered().options
    ]
    return table(["Command line", "Meaning", "Help text"], rows)


def ini_table() -> str:
    docs = tables()["ini"]
    rows = []
    for ini in registered().inis:
        entry = docs[ini.name]
        shown = entry.get("default") or f"`{ini.default}`"
        rows.append([f"`{ini.name}`", ini.type or "string", shown, entry["meaning"]])
    return table(["ini key", "Type", "Default", "Meaning"], rows)


def env_table() -> str:
    docs = tables()
    rows = [[f"`{name}`", docs["env"][name]] for name in sorted(env_names(), key=env_order)]
    rows.append(["variables named in `secret_env`", docs["secret_env_note"]])
    return table(["Environment variable", "Meaning"], rows)


def env_order(name: str) -> tuple[int, str]:
    return (0 if name.startswith("TESTSERVER_") else 1 if name.startswith("DOCKER_") else 2, name)


def not_read_table() -> str:
    docs = tables()["not_read_by_plugin"]
    return table(["Environment variable", "Meaning"], [[f"`{k}`", v] for k, v in docs.items()])


def unknown_key_error() -> str:
    """The message a misspelt key gets, as the plugin words it today (its known-keys list)."""
    from pytest_testserver.config import parse_config
    from pytest_testserver.errors import ConfigError

    try:
        parse_config(
            {"servers": {"web": {"image": "busybox:stable", "prots": [8080]}}},
            base=ROOT,
            source="testservers.yaml",
        )
    except ConfigError as exc:
        return f"```text\nERROR: {exc}\n```"
    raise AssertionError("a misspelt key was accepted")


GENERATED = {
    "server-keys": server_keys_table,
    "cli-options": cli_table,
    "ini-options": ini_table,
    "env-vars": env_table,
    "env-not-read": not_read_table,
    "unknown-key-error": unknown_key_error,
}


def render(markdown: str) -> str:
    def replace(match: re.Match[str]) -> str:
        kind, name = match.groups()
        if kind == "include":
            return (ROOT / name).read_text(encoding="utf-8")
        return GENERATED[name]()

    return MARKER.sub(replace, markdown)


# MkDocs hooks (mkdocs.yml: hooks)


def on_config(config: Any) -> Any:
    problems = mismatches()
    if problems:
        raise SystemExit("docs: the reference and the code disagree:\n  " + "\n  ".join(problems))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return render(markdown)
