"""The documentation site (docs/, mkdocs.yml) against the code and in a browser.

- The reference tables are generated from the code (docs/gen_reference.py): every server key,
  command-line option, ini key and environment variable the code has is documented, and every
  documented one exists.
- Every YAML and Python block a page shows is a file the tests run (a ``--8<--`` include) or is
  parsed here: YAML with ``servers`` must be valid configuration, Python must compile.
- The README's quick start is the first suite of docs/first-suite/, which runs as shown.
- The built site opens in headless Chromium, every page renders, and the search finds ``reset``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_testserver.config import parse_config
from pytest_testserver.errors import ConfigError
from tests.conftest import IN_CI, require_module
from tests.docsbrowser import Browser, browser, chromium, served

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FIRST_SUITE = DOCS / "first-suite"
BLOCK = re.compile(r"^( *)```(yaml|python)\n(.*?)^\1```", flags=re.S | re.M)
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$')


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = load_generator()


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def blocks(path: Path) -> Iterator[tuple[str, str]]:
    for match in BLOCK.finditer(path.read_text(encoding="utf-8")):
        indent, language, body = match.groups()
        lines = [line[len(indent) :] for line in body.split("\n")]
        yield language, "\n".join(lines)


# --- the reference and the code ---------------------------------------------------------------


def test_the_reference_and_the_code_agree() -> None:
    assert gen.mismatches() == []


def test_a_key_only_in_the_code_or_only_in_the_docs_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables = gen.tables()
    del tables["server_keys"]["reset"]
    del tables["ini"]["testserver_spares"]
    tables["cli"]["--testserver-nope"] = "gone"
    del tables["env"]["TESTSERVER_REACH"]
    tables["env"]["TESTSERVER_NOPE"] = "gone"
    monkeypatch.setattr(gen, "tables", lambda: tables)
    assert sorted(gen.mismatches()) == sorted(
        [
            "server key reset is in the code but not in tables.yaml",
            "ini key testserver_spares is in the code but not in tables.yaml",
            "command-line option --testserver-nope is documented in tables.yaml but not in the "
            "code",
            "environment variable TESTSERVER_REACH is in the code but not in tables.yaml",
            "environment variable TESTSERVER_NOPE is documented in tables.yaml but not in the code",
        ]
    )


def test_what_the_code_defines_is_read_from_the_code() -> None:
    from pytest_testserver.config import SERVER_KEYS

    assert gen.server_keys() == list(SERVER_KEYS)
    options = [o.names[0] for o in gen.registered().options]
    assert "--testserver-doctor" in options
    assert "--testserver-list" in options
    assert "testserver_unavailable" in [i.name for i in gen.registered().inis]
    names = gen.env_names()
    assert {"TESTSERVER_BIND_LOCAL", "TESTSERVER_LEASE_TTL", "DOCKER_HOST", "TMPDIR"} <= set(names)


def test_the_generated_tables_hold_every_entry() -> None:
    keys = gen.server_keys_table()
    for key in gen.server_keys():
        assert f"| `{key}` |" in keys
    assert "`--testserver-pull {missing,always,never}`" in gen.cli_table()
    assert "| `testserver_spares` | string | `1` |" in gen.ini_table()
    assert "| `TESTSERVER_REACH` |" in gen.env_table()


def test_the_unknown_key_example_lists_every_known_key() -> None:
    message = gen.unknown_key_error()
    assert "servers.web.prots: unknown key (did you mean 'ports'?)" in message
    for key in gen.server_keys():
        assert key in message


SUBTABLES = {
    "`build` mapping:": ("config", "BUILD_KEYS"),
    "`copy` entries:": ("config", "COPY_KEYS"),
    "`ports` mapping": ("portspec", "PORT_ENTRY_KEYS"),
    "`tmpfs` entries": ("containeroptions", "TMPFS_KEYS"),
    "`healthcheck` mapping:": ("containeroptions", "HEALTHCHECK_KEYS"),
    "`post_startup` mapping:": ("checks", "POST_STARTUP_KEYS"),
    "`wait.tcp` entries": ("checks", "TCP_KEYS"),
    "`wait.http` entries": ("checks", "HTTP_KEYS"),
}


def subtable_keys(text: str, caption: str) -> list[str]:
    """The first column of the table that follows the line starting with ``caption``."""
    after = text.split("\n" + caption, 1)[1].split("\n\n", 2)[1]
    return re.findall(r"^\| `([a-z_]+)` \|", after, flags=re.M)


@pytest.mark.parametrize("caption", SUBTABLES)
def test_every_nested_key_is_documented_and_exists(caption: str) -> None:
    module, name = SUBTABLES[caption]
    code = getattr(importlib.import_module(f"pytest_testserver.{module}"), name)
    text = (DOCS / "reference" / "testservers-yaml.md").read_text(encoding="utf-8")
    assert subtable_keys(text, caption) == list(code)


def test_every_marker_names_a_table() -> None:
    used = set()
    for page in pages():
        for kind, name in gen.MARKER.findall(page.read_text(encoding="utf-8")):
            if kind == "generated":
                assert name in gen.GENERATED, f"{page}: no table {name!r}"
                used.add(name)
            else:
                assert (ROOT / name).is_file(), f"{page}: includes a missing {name}"
    assert used == set(gen.GENERATED)


# --- the blocks the pages show ----------------------------------------------------------------


def valid_configuration(data: Any, base: Path, where: str, elsewhere: tuple[str, ...]) -> None:
    """parse_config of a shown file, with what its paths name made in ``base`` (a temp dir);
    its links may name servers of the page's other blocks (``elsewhere``)."""
    for _ in range(20):
        try:
            parse_config(data, base=base, source=where, declared_elsewhere=elsewhere)
            return
        except ConfigError as exc:
            missing = re.search(r"'([^']+)' does not exist in ", str(exc))
            if not missing:
                raise
            path = base / missing.group(1)
            if ".context" in str(exc) or "build" in str(exc).split(":")[1]:
                path.mkdir(parents=True, exist_ok=True)
                (path / "Dockerfile").write_text("FROM busybox:stable\n")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")
    raise AssertionError(f"{where}: too many missing paths")


@pytest.mark.parametrize(
    "page", [*pages(), ROOT / "README.md"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_block_on_the_page_is_tested_or_checked(page: Path, tmp_path: Path) -> None:
    shown = list(blocks(page))
    declared: list[str] = []
    for language, body in shown:
        if language == "yaml" and not INCLUDE.match(body.strip()):
            data = yaml.safe_load(body)
            if isinstance(data, dict) and isinstance(data.get("servers"), dict):
                declared.extend(data["servers"])
    for n, (language, body) in enumerate(shown):
        where = f"{page.relative_to(ROOT)} block {n + 1}"
        included = INCLUDE.match(body.strip())
        if included:
            target = ROOT / included.group(1)
            assert target.is_file(), f"{where}: includes a missing {target}"
            body = target.read_text(encoding="utf-8")
        if language == "python":
            compile(body, where, "exec")
            continue
        data = yaml.safe_load(body)
        assert isinstance(data, dict), f"{where}: not a mapping"
        if "servers" in data:
            base = tmp_path / f"block{n}"
            base.mkdir()
            own = set(data["servers"] or ())
            valid_configuration(data, base, where, tuple(s for s in declared if s not in own))


def test_the_pipelines_shown_run_the_tests() -> None:
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        data = yaml.safe_load((DOCS / "ci" / name).read_text(encoding="utf-8"))
        assert isinstance(data, dict)
        text = str(data)
        assert "python -m pytest --testserver-doctor" in text, name
        assert "python -m pytest -n auto" in text, name
    jenkins = (DOCS / "ci" / "Jenkinsfile").read_text(encoding="utf-8")
    assert "-v /var/run/docker.sock:/var/run/docker.sock" in jenkins
    assert "python -m pytest --testserver-doctor" in jenkins


def test_the_readme_quick_start_is_the_first_suite() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    shown = re.findall(r"^`([\w.]+)`:\n\n```\w+\n(.*?)```", section, flags=re.S | re.M)
    files = {p.name: p.read_text(encoding="utf-8") for p in FIRST_SUITE.iterdir() if p.is_file()}
    assert dict(shown) == files
    assert len(readme.splitlines()) <= 200


def test_the_first_suite_runs_as_shown(docker_api: Any, tmp_path: Path) -> None:
    suite = tmp_path / "first-suite"  # a copy: no cache or bytecode in the checkout
    shutil.copytree(FIRST_SUITE, suite)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=suite,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


# --- the built site in a browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built strictly (a broken link or anchor fails) from this checkout."""
    require_module("mkdocs", "the documentation site is built and checked in CI")
    require_module("material", "the site's theme (mkdocs-material)")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def built_pages(site: Path) -> list[str]:
    # mkdocs.yml's nav (the whole file has a python tag safe_load refuses)
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:\n", 1)[1]
    nav = yaml.safe_load("nav:\n" + text)["nav"]
    found: list[str] = []

    def walk(items: list[Any]) -> None:
        for item in items:
            for value in item.values():
                if isinstance(value, list):
                    walk(value)
                else:
                    found.append("" if value == "index.md" else value.removesuffix(".md") + "/")

    walk(nav)
    return found


@pytest.fixture(scope="module")
def chromium_path() -> str:
    found = chromium()
    if not found:
        message = "chromium is not installed (apt-get install chromium): the site is checked in it"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def render_problem(page: Browser, url: str) -> str | None:
    """Why the page at ``url`` did not render as a page of the site, or None."""
    page.open(url)
    title = page.evaluate("document.querySelector('article h1')?.textContent ?? ''")
    length = page.evaluate("document.querySelector('article')?.innerText.length ?? 0")
    if not title.strip() or length < 200:
        return f"{url} did not render: heading {title!r}, {length} characters of text"
    if not page.evaluate("document.title").endswith("pytest-testserver"):
        return f"{url}: not a page of the site (title {page.evaluate('document.title')!r})"
    return None


def test_every_page_renders_and_the_search_finds_reset(site: Path, chromium_path: str) -> None:
    paths = built_pages(site)
    assert len(paths) >= 30
    with served(site) as base, browser() as page:
        for path in paths:
            url = base + path
            assert render_problem(page, url) is None
        # The pictures: Mermaid text the theme draws once mermaid.js (from its CDN) loads; offline
        # the text stays.
        page.open(base + "explanation/timeline/")
        # drawn: Material puts each svg in the shadow root of a div.mermaid
        drawn = page.evaluate("document.querySelectorAll('article div.mermaid').length")
        sources = page.evaluate(
            "[...document.querySelectorAll('article pre')].map(p => p.textContent.trim())"
            ".filter(t => /^(sequenceDiagram|flowchart)/.test(t)).length"
        )
        assert (drawn, sources) in ((2, 0), (0, 2)), (drawn, sources)
        # The theme's own search, as a reader types into it.
        page.open(base + "how-to/clean-state/")
        page.evaluate(
            """(() => {
                const box = document.querySelector('input[data-md-component=search-query]');
                box.focus();
                box.value = 'reset';
                box.dispatchEvent(new KeyboardEvent('keyup', {key: 't'}));
            })()"""
        )
        found = page.until(
            "document.querySelectorAll('.md-search-result__item').length", "search for reset"
        )
        assert found >= 3
        links = page.evaluate(
            "[...document.querySelectorAll('.md-search-result__item a')].map(a => a.href)"
        )
        assert any("how-to/clean-state/" in link for link in links), links
        shots = os.environ.get("TESTSERVER_DOCS_SCREENSHOTS")
        if shots:  # for a look at the site (nox -s docs sets it)
            page.open(base + "reference/testservers-yaml/")
            page.screenshot(Path(shots) / "testservers-yaml.png")


def test_a_page_that_does_not_render_is_caught(site: Path, chromium_path: str) -> None:
    broken = site / "broken" / "index.html"
    broken.parent.mkdir()
    broken.write_text("<html><head><title>x</title></head><body></body></html>")
    try:
        with served(site) as base, browser() as page:
            problem = render_problem(page, base + "broken/")
            assert problem == f"{base}broken/ did not render: heading '', 0 characters of text"
    finally:
        shutil.rmtree(broken.parent)
