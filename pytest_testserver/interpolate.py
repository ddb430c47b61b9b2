"""Compose's variable interpolation: ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+other}``, ``${VAR+other}`` and ``$$``.

As the compose specification (and compose-go's template package) does it:

- values come from the environment of the test run, then from the ``.env`` file beside the
  first compose file: the environment wins;
- ``:-`` and ``:?`` treat an empty value as unset, ``-`` and ``?`` only an unset one; a default
  or error text may itself hold references (``${A:-${B}}``), expanded only when used;
- ``$$`` is a literal ``$``; a ``$`` followed by anything but a name, ``{`` or ``$`` stays as it
  is (``$1``, ``$ ``);
- a variable that is unset with no default becomes the empty string, with a note (compose's
  "variable is not set" warning); ``${`` that is not a well-formed reference is an error.

Only values are interpolated, never keys. Everything is one pass over the text: an inserted value
is never scanned again. This module is unrelated to ``variables.py`` (the plugin's own
``${NAME}``, expanded at start from a server's ``env``): what leaves here is plain text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .validate import Where, show

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?", re.DOTALL)
MAX_DEPTH = 20  # nested defaults; more is a hostile file, not a configuration

Note = Callable[[str], None]


def interpolate(text: str, env: Mapping[str, str], where: Where, note: Note) -> str:
    """``text`` with every reference replaced (errors name ``where``)."""
    return _Template(env, where, note).substitute(text, 0)


def interpolate_tree(value: Any, env: Mapping[str, str], where: Where, note: Note) -> Any:
    """Every string value inside ``value`` (mappings and lists), keys left as they are."""
    if isinstance(value, str):
        return interpolate(value, env, where, note) if "$" in value else value
    if isinstance(value, dict):
        return {
            key: interpolate_tree(item, env, where.key(key), note) for key, item in value.items()
        }
    if isinstance(value, list):
        return [interpolate_tree(item, env, where.index(i), note) for i, item in enumerate(value)]
    return value


class _Template:
    def __init__(self, env: Mapping[str, str], where: Where, note: Note) -> None:
        self.env = env
        self.where = where
        self.note = note

    def substitute(self, text: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            self.where.fail(f"defaults nested more than {MAX_DEPTH} deep")
        out: list[str] = []
        i = 0
        while i < len(text):
            dollar = text.find("$", i)
            if dollar < 0:
                out.append(text[i:])
                break
            out.append(text[i:dollar])
            nxt = text[dollar + 1 : dollar + 2]
            if nxt == "$":
                out.append("$")
                i = dollar + 2
            elif nxt == "{":
                end = closing_brace(text, dollar + 2)
                if end < 0:
                    self.where.fail(
                        f"{show(text[dollar : dollar + 30])} has no closing brace: write "
                        "${VAR}, or $$ for a literal $"
                    )
                out.append(self.braced(text[dollar + 2 : end], depth))
                i = end + 1
            elif match := _NAME.match(text, dollar + 1):
                out.append(self.value(match.group(0)))
                i = match.end()
            else:
                out.append("$")
                i = dollar + 1
        return "".join(out)

    def value(self, name: str) -> str:
        if name in self.env:
            return self.env[name]
        self.note(
            f"{self.where.source}: {self.where.path}: the variable {name} is not set: "
            "it is the empty string"
        )
        return ""

    def braced(self, body: str, depth: int) -> str:
        match = _BRACED.fullmatch(body)
        if match is None:
            self.where.fail(
                f"{show('${' + body + '}')} is not a valid interpolation: write ${{VAR}}, "
                "${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, or $$ for a $"
            )
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if op is None:
            return self.value(name)
        value = self.env.get(name)
        empty_is_unset = op.startswith(":")
        present = value is not None and (bool(value) or not empty_is_unset)
        kind = op[-1]
        if kind == "-":
            return value if present and value is not None else self.substitute(arg, depth + 1)
        if kind == "+":
            return self.substitute(arg, depth + 1) if present else ""
        if present and value is not None:  # "?" and ":?"
            return value
        message = self.substitute(arg, depth + 1).strip()
        state = "is not set" if value is None else "is empty"
        self.where.fail(
            f"required variable {name} {state}" + (f": {show(message, 200)}" if message else "")
        )


def closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` closing a ``${`` whose body starts at ``start`` (-1: none)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
