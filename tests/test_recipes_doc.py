"""The documented recipes are the tested ones: each YAML block of the recipes page
(docs/how-to/recipes.md) is the same server (as parsed) as in examples/recipes/testservers.yaml,
whose suite runs in CI, plain and at -n 4."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pytest_testserver.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "examples" / "recipes" / "testservers.yaml"
PAGE = ROOT / "docs" / "how-to" / "recipes.md"


def page_recipes() -> dict[str, Any]:
    text = PAGE.read_text(encoding="utf-8")
    servers: dict[str, Any] = {}
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        for name, server in yaml.safe_load(block)["servers"].items():
            assert name not in servers, f"the recipes page shows recipe {name!r} twice"
            servers[name] = server
    return servers


def test_every_recipe_on_the_page_is_the_tested_one() -> None:
    tested = yaml.safe_load(RECIPES.read_text(encoding="utf-8"))["servers"]
    assert page_recipes() == tested


def test_the_recipes_are_valid_configuration() -> None:
    config = parse_config(
        yaml.safe_load(RECIPES.read_text(encoding="utf-8")),
        base=RECIPES.parent,
        source=str(RECIPES),
    )
    assert sorted(config.servers) == sorted(page_recipes())
