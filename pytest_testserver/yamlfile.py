"""Reading the YAML file: ``safe_load`` semantics, plus errors for duplicate and non-string keys.

PyYAML keeps the last of two equal keys silently; a config where one ``ports:`` quietly replaces
another is a bug we refuse to load.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .validate import read_bytes, show

# What PyYAML's constructors let escape on values they cannot build (!!int "", !!bool maybe...).
_CONSTRUCTION_ERRORS = (
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
)


class _KeyError(yaml.YAMLError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _StrictLoader(yaml.SafeLoader):
    pass


def _check_keys(loader: _StrictLoader, node: yaml.MappingNode) -> None:
    """String keys, each once — also inside mappings merged in with ``<<``."""
    seen: dict[object, int] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for item in merged:
                if isinstance(item, yaml.MappingNode):
                    _check_keys(loader, item)
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _KeyError(line, f"keys must be strings, not {show(key)}")
        if key in seen:
            raise _KeyError(line, f"duplicate key {show(key)} (first on line {seen[key]})")
        seen[key] = line


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ValueError) and "integer string conversion" in text:
        # Python's own words for its digit limit differ between versions: say it in ours.
        return f"a number with more than {sys.get_int_max_str_digits()} digits"
    return text


def _construct_mapping(loader: _StrictLoader, node: yaml.Node) -> dict[Any, Any]:
    if not isinstance(node, yaml.MappingNode):  # !!map on a scalar or a sequence
        raise _KeyError(node.start_mark.line + 1, "a !!map tag on something that is not a mapping")
    _check_keys(loader, node)
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            result[key] = loader.construct_object(value_node, deep=True)
        except _CONSTRUCTION_ERRORS as exc:  # an impossible date, a number too big, a bad tag
            line = value_node.start_mark.line + 1
            raise _KeyError(line, f"invalid value for {show(key)}: {_reason(exc)}") from None
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, shown: str) -> object:
    return parse_yaml(read_bytes(path, shown), shown)


def parse_yaml(content: bytes, shown: str) -> object:
    """The document's data (``safe_load`` semantics, stricter keys); errors name line and file."""
    try:
        return yaml.load(content, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _KeyError as exc:
        raise ConfigError(f"{shown}: line {exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ConfigError(f"{shown}: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: invalid YAML: {' '.join(str(exc).split())}") from None
    except _CONSTRUCTION_ERRORS as exc:
        # Values outside any mapping (a top-level scalar or list item) that PyYAML cannot build.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"{shown}: invalid value: {reason}") from None
