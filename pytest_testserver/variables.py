"""``${NAME}`` variables in a server's commands, checks and ``env`` values.

The rules (docs/reference/testservers-yaml.md, "Variables"):

- ``${NAME}`` is replaced by the value of ``NAME`` from the server's own ``env`` or
  ``secret_env``: never from the host's environment directly, and never by a shell.
- ``$$`` is a literal ``$``.
- Every other ``$`` is literal: a bare ``$NAME``, ``$1``, ``$(...)``, a ``$`` at the end. Only the
  braced form expands because a ``$`` is common in what these values hold already: a shell line
  given to ``sh -c`` in the container (``"echo $HOME"``, expanded there by that shell), a regex
  anchor in ``wait.log`` (``"ready$"``), a password. Braces are rare in those, so the braced form
  changes the meaning of almost nothing written before variables existed.
- ``${`` not followed by a name and ``}`` is an error (``${NAME:-default}`` is not supported);
  so is a name the server does not define, at parse time, naming file, server, key and variable.
- One pass: an inserted value is never scanned again (a secret holding ``${X}`` or ``$$`` stays
  as it is). ``env`` values may use other ``env`` values; a cycle is an error.

The values of ``secret_env`` exist only when the server starts (read from the test run's
environment then), so expansion happens at start; parse time only checks the references.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence

from .graph import cycle_from
from .validate import Where, did_you_mean, show

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# "$$", "${NAME}", or a "${" that is neither (an error); any other "$" is left as it is.
_TOKEN = re.compile(rf"\$(?:\$|\{{({_NAME})\}}|(\{{))")


class VariableError(ValueError):
    """A ``${`` that is not a reference: the message says what is wrong, without the value."""


def references(text: str) -> list[str]:
    """The names ``text`` refers to, in order (``VariableError`` for a malformed ``${``)."""
    names: list[str] = []
    for match in _TOKEN.finditer(text):
        if match.group(2) is not None:
            rest = text[match.start() : match.start() + 30]
            raise VariableError(
                f"{show(rest)} is not a variable reference: write ${{NAME}} (letters, digits, "
                "underscore), or $$ for a literal $"
            )
        if match.group(1) is not None:
            names.append(match.group(1))
    return names


def expand(text: str, values: Mapping[str, str], quote: Callable[[str], str] | None = None) -> str:
    """``text`` with each ``${NAME}`` replaced by ``quote(values[NAME])`` and ``$$`` by ``$``.

    ``quote`` fits a value to where it goes (``re.escape`` in a regex): a value is data, never
    syntax of the text around it. The names were checked at parse time (``check``).
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        value = values[name]
        return quote(value) if quote is not None else value

    return _TOKEN.sub(replace, text)


def literal(text: str) -> str:
    """``text`` written so that it expands to itself (an env_file's value: plain data)."""
    return text.replace("$", "$$")


def expand_argv(argv: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """Each argument expanded on its own: a value never splits into several arguments."""
    return tuple(expand(arg, values) for arg in argv)


def check(text: str, names: Collection[str], where: Where) -> str:
    """``text``, if each of its references is well formed and names one of ``names``."""
    try:
        found = references(text)
    except VariableError as exc:
        where.fail(str(exc))
    for name in found:
        if name not in names:
            where.fail(
                f"${{{name}}} is not set in this server's env or secret_env"
                f"{did_you_mean(name, sorted(names))}; write $${{{name}}} for a literal ${{{name}}}"
            )
    return text


def check_argv(argv: Sequence[str], names: Collection[str], where: Where) -> tuple[str, ...]:
    return tuple(check(arg, names, where.index(i)) for i, arg in enumerate(argv))


def check_env(env: Mapping[str, tuple[str, Where]], secret_names: Collection[str]) -> None:
    """Each ``env`` value's references name ``env`` or ``secret_env`` variables, with no cycle."""
    names = {*env, *secret_names}
    uses = {key: references(check(value, names, where)) for key, (value, where) in env.items()}
    done: set[str] = set()
    for start in env:
        cycle = cycle_from(start, uses, done)
        if cycle:
            env[cycle[0]][1].fail(f"variables refer to each other in a cycle: {show_cycle(cycle)}")


def show_cycle(cycle: Sequence[str], limit: int = 10) -> str:
    """``A -> B -> A``; a long cycle cut in the middle, so that the message stays short."""
    if len(cycle) <= limit + 2:
        return " -> ".join(cycle)
    return f"{' -> '.join(cycle[:limit])} -> ... ({len(cycle) - 1} variables) -> {cycle[-1]}"


def resolve_env(env: Mapping[str, str], secrets: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: ``env`` values expanded (each after those it uses), plus
    ``secrets`` as they are. References and cycles were checked at parse time (``check_env``)."""
    resolved: dict[str, str] = dict(secrets)
    uses = {key: references(value) for key, value in env.items()}
    for start in env:  # depth first, iteratively: a long chain must not exhaust the stack
        stack = [(start, iter(uses[start]))]
        on_stack = {start}
        while stack:
            key, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                on_stack.discard(key)
                if key not in resolved:
                    resolved[key] = expand(env[key], resolved)
            elif name not in resolved and name in uses and name not in on_stack:
                stack.append((name, iter(uses[name])))
                on_stack.add(name)
    return {**{key: resolved[key] for key in env}, **secrets}
