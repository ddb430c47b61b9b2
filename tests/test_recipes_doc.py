"""README's Recipes are the tested ones: each YAML block of the "Recipes" section is the same server
(as parsed) as in examples/recipes/testservers.yaml, whose suite runs in CI, plain and at -n 4."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pytest_testserver.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "examples" / "recipes" / "testservers.yaml"


def readme_recipes() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Recipes\n", 1)[1].split("\n## ", 1)[0]
    servers: dict[str, Any] = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.S):
        for name, server in yaml.safe_load(block)["servers"].items():
            assert name not in servers, f"README shows recipe {name!r} twice"
            servers[name] = server
    return servers


def test_every_recipe_in_the_readme_is_the_tested_one() -> None:
    tested = yaml.safe_load(RECIPES.read_text(encoding="utf-8"))["servers"]
    assert readme_recipes() == tested


def test_the_recipes_are_valid_configuration() -> None:
    config = parse_config(
        yaml.safe_load(RECIPES.read_text(encoding="utf-8")),
        base=RECIPES.parent,
        source=str(RECIPES),
    )
    assert sorted(config.servers) == sorted(readme_recipes())
