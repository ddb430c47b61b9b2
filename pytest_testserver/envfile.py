"""``env_file``: a dotenv file read at configuration time, as plain data.

The format is the common subset of Compose's and python-dotenv's, and nothing that runs:

- ``KEY=VALUE`` lines; blank lines and lines starting with ``#`` are skipped; ``export KEY=VALUE``
  is the same as ``KEY=VALUE`` (so the file can also be sourced by a shell);
- an unquoted value ends at the line's end or at `` #`` (a comment after a space); surrounding
  spaces are dropped;
- ``'single quoted'`` values are taken exactly as written;
- ``"double quoted"`` values know four escapes, ``\\"``, ``\\\\``, ``\\n`` and ``\\t``; any other
  backslash stays as written;
- never a variable expansion (``$X``, ``${X}``) nor a command substitution (``$(...)``, backticks):
  a ``$`` is a ``$``.

A line that is none of these is an error naming the file and the line number; the message never
shows a value (it may be a secret).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .validate import Where

MAX_ENV_FILE_BYTES = 1 << 20  # a dotenv file larger than this is not one
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"(?:export\s+)?([^=\s]+)\s*=[ \t]*(.*)")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


@dataclass(frozen=True)
class EnvFile:
    """Where the variables came from, and which keys it set (their values are in ``env``)."""

    path: Path
    keys: tuple[str, ...]


def read_env_file(path: Path, shown: str, where: Where) -> dict[str, str]:
    """The variables of the dotenv file at ``path`` (``shown`` is its name in messages)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_ENV_FILE_BYTES + 1)
    except OSError as exc:
        where.fail(f"{shown} cannot be read ({exc.strerror or type(exc).__name__})")
    if len(data) > MAX_ENV_FILE_BYTES:
        where.fail(f"{shown} is larger than {MAX_ENV_FILE_BYTES >> 20} MiB: not a dotenv file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where.fail(f"{shown} is not UTF-8 text (byte {exc.start})")
    return parse_env_text(text.removeprefix("\ufeff"), shown, where)


def parse_env_text(text: str, shown: str, where: Where) -> dict[str, str]:
    env: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").strip()
        if not line or line.startswith("#"):
            continue

        def fail(message: str, number: int = number) -> NoReturn:
            where.fail(f"{shown}:{number}: {message}")

        if "\x00" in line:
            fail("contains a NUL character")
        match = _ASSIGNMENT.fullmatch(line)
        if match is None:
            # The line is not shown: it may be a secret pasted without its key.
            fail("is not KEY=VALUE (comments start with #; no variable is read from the host)")
        key, rest = match.group(1), match.group(2)
        if not _KEY.fullmatch(key):
            fail(f"{ascii(key)[:60]} is not a valid variable name (letters, digits, underscore)")
        value, problem = parse_value(rest)
        if problem:
            fail(f"the value of {key} {problem}")
        if key in first_line:
            fail(f"{key} is already set on line {first_line[key]}")
        first_line[key] = number
        env[key] = value
    return env


def parse_value(rest: str) -> tuple[str, str]:
    """``(value, "")``, or ``("", what is wrong)`` for what follows ``KEY=``."""
    if rest.startswith("'"):
        end = rest.find("'", 1)
        if end < 0:
            return "", "has no closing ' (a value is one line)"
        return rest[1:end], trailing(rest[end + 1 :])
    if rest.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(rest):
            c = rest[i]
            if c == "\\" and i + 1 < len(rest):
                nxt = rest[i + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            if c == '"':
                return "".join(out), trailing(rest[i + 1 :])
            out.append(c)
            i += 1
        return "", 'has no closing " (a value is one line)'
    comment = re.search(r"\s#", rest)
    return (rest[: comment.start()] if comment else rest).strip(), ""


def trailing(after: str) -> str:
    """Only spaces or a comment may follow a quoted value."""
    stripped = after.strip()
    if stripped and not stripped.startswith("#"):
        return "has text after its closing quote"
    return ""
