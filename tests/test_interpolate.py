"""Compose's variable interpolation (interpolate.py): pure logic, no engine."""

from __future__ import annotations

import pytest

from pytest_testserver.errors import ConfigError
from pytest_testserver.interpolate import interpolate, interpolate_tree
from pytest_testserver.validate import Where

WHERE = Where("docker-compose.yml", "services.web.command")
ENV = {"SET": "value", "EMPTY": "", "OTHER": "other"}


def run(text: str, env: dict[str, str] | None = None) -> tuple[str, list[str]]:
    notes: list[str] = []
    return interpolate(text, ENV if env is None else env, WHERE, notes.append), notes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${SET}", "value"),
        ("$SET", "value"),
        ("a${SET}b", "avalueb"),
        ("$SET-x", "value-x"),
        ("${SET:-d}", "value"),
        ("${EMPTY:-d}", "d"),
        ("${UNSET:-d}", "d"),
        ("${SET-d}", "value"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${SET:?e}", "value"),
        ("${EMPTY?e}", ""),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("$$", "$"),
        ("$${SET}", "${SET}"),
        ("$$SET", "$SET"),
        ("cost $5", "cost $5"),
        ("end $", "end $"),
        ("${UNSET:-${OTHER}}", "other"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-a}}", "a}"),
        ("${UNSET:-with:colon}", "with:colon"),
    ],
)
def test_interpolation_as_compose_does_it(text: str, expected: str) -> None:
    assert run(text)[0] == expected


def test_an_inserted_value_is_never_scanned_again() -> None:
    assert run("${X}", {"X": "${SET} $$"})[0] == "${SET} $$"


def test_an_unset_variable_is_empty_with_a_note_naming_file_key_and_variable() -> None:
    value, notes = run("a${UNSET}b")
    assert value == "ab"
    assert notes == [
        "docker-compose.yml: services.web.command: the variable UNSET is not set: "
        "it is the empty string"
    ]


def test_a_default_that_is_not_used_is_not_expanded() -> None:
    assert run("${SET:-${UNSET}}") == ("value", [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?set it}", "required variable UNSET is not set: 'set it'"),
        ("${EMPTY:?set it}", "required variable EMPTY is empty: 'set it'"),
        ("${UNSET?}", "required variable UNSET is not set"),
        ("${UNSET?${OTHER} please}", "required variable UNSET is not set: 'other please'"),
        ("${SET", "'${SET' has no closing brace"),
        ("${}", "'${}' is not a valid interpolation"),
        ("${1X}", "'${1X}' is not a valid interpolation"),
        ("${A B}", "'${A B}' is not a valid interpolation"),
        ("${SET:x}", "'${SET:x}' is not a valid interpolation"),
    ],
)
def test_errors_are_one_line_naming_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        run(text)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"docker-compose.yml: services.web.command: {message}")


def test_the_secret_of_a_variable_is_never_in_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        run("${TOKEN:?}${", {"TOKEN": "s3cret"})
    assert "s3cret" not in str(info.value)


def test_deeply_nested_defaults_are_refused() -> None:
    text = "${A:-" * 50 + "x" + "}" * 50
    with pytest.raises(ConfigError, match="nested more than"):
        run(text, {})


def test_a_tree_interpolates_values_not_keys_and_names_each_path() -> None:
    notes: list[str] = []
    tree = {"services": {"${SET}": {"command": ["echo", "${SET}", 5, None]}}}
    out = interpolate_tree(tree, ENV, Where("c.yml"), notes.append)
    assert out == {"services": {"${SET}": {"command": ["echo", "value", 5, None]}}}
    with pytest.raises(ConfigError, match=r"^c\.yml: services\.web\.command\[1\]: required"):
        interpolate_tree(
            {"services": {"web": {"command": ["x", "${U:?}"]}}}, {}, Where("c.yml"), notes.append
        )
