"""Reading the YAML file: ``safe_load`` semantics, plus errors for duplicate and non-string keys.

PyYAML keeps the last of two equal keys silently; a config where one ``ports:`` quietly replaces
another is a bug we refuse to load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class _KeyError(yaml.YAMLError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _KeyError(line, f"keys must be strings, not {key!r}")
        if key in seen:
            raise _KeyError(line, f"duplicate key {key!r} (first on line {seen[key]})")
        seen[key] = line
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            result[key] = loader.construct_object(value_node, deep=True)
        except (ValueError, OverflowError) as exc:  # an impossible date, a number too big
            line = value_node.start_mark.line + 1
            raise _KeyError(
                line, f"invalid value for {key!r}: {' '.join(str(exc).split())}"
            ) from None
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, shown: str) -> object:
    try:
        with path.open("rb") as f:
            return yaml.load(f, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    except _KeyError as exc:
        raise ConfigError(f"{shown}: line {exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ConfigError(f"{shown}: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: invalid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # PyYAML builds some values itself (dates, huge numbers) and lets their errors escape.
        raise ConfigError(f"{shown}: invalid value: {' '.join(str(exc).split())}") from None
