"""The YAML cache: same bytes, same data, no PyYAML; anything else parses again (no Docker)."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from pytest_testserver import configcache
from pytest_testserver.configcache import YamlDocument, is_plain
from pytest_testserver.errors import ConfigError

CONFIG = """
servers:
  web:
    image: "busybox:stable"
    ports: [8080]
    env: {GREETING: hello}
"""


@pytest.fixture
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(configcache, "cache_base", lambda *_: folder)
    return folder


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_same_bytes_come_back_from_the_cache(tmp_path: Path, private: Path) -> None:
    path = write(tmp_path / "testservers.yaml", CONFIG)
    first = YamlDocument.read(path, "testservers.yaml")
    assert not first.from_cache
    first.remember()
    second = YamlDocument.read(path, "testservers.yaml")
    assert second.from_cache
    assert second.data == first.data
    assert [p.name for p in (private / "yaml-cache").iterdir()] == [
        configcache.cache_file(path).name  # type: ignore[union-attr]
    ]


def test_a_changed_file_is_parsed_again(tmp_path: Path, private: Path) -> None:
    path = write(tmp_path / "testservers.yaml", CONFIG)
    YamlDocument.read(path, "testservers.yaml").remember()
    write(path, CONFIG.replace("hello", "hallo"))
    again = YamlDocument.read(path, "testservers.yaml")
    assert not again.from_cache
    assert again.data["servers"]["web"]["env"] == {"GREETING": "hallo"}  # type: ignore[index]


def test_an_entry_is_used_only_for_its_own_file(tmp_path: Path, private: Path) -> None:
    one = write(tmp_path / "one.yaml", CONFIG)
    YamlDocument.read(one, "one.yaml").remember()
    entry = configcache.cache_file(one)
    assert entry is not None
    other = write(tmp_path / "other.yaml", CONFIG)
    # Same bytes, another path (as if the names' crc32 collided): the entry names its file.
    assert configcache.recall(entry, other, other.read_bytes()) is None
    assert configcache.recall(entry, one, one.read_bytes()) is not None


def test_an_edited_entry_is_not_trusted_to_match(tmp_path: Path, private: Path) -> None:
    path = write(tmp_path / "testservers.yaml", CONFIG)
    YamlDocument.read(path, "testservers.yaml").remember()
    entry = configcache.cache_file(path)
    assert entry is not None
    saved = json.loads(entry.read_text())
    saved["loader"] = ["another loader"]
    entry.write_text(json.dumps(saved))
    assert not YamlDocument.read(path, "testservers.yaml").from_cache
    entry.write_text("{not json")
    assert not YamlDocument.read(path, "testservers.yaml").from_cache


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_no_cache_in_a_folder_others_can_write(tmp_path: Path, private: Path, mode: int) -> None:
    # Anyone who can write there could feed every later run a configuration of their choosing.
    private.chmod(mode)
    path = write(tmp_path / "testservers.yaml", CONFIG)
    YamlDocument.read(path, "testservers.yaml").remember()
    assert configcache.cache_file(path) is None
    assert not YamlDocument.read(path, "testservers.yaml").from_cache


def test_no_cache_through_a_symlinked_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setattr(configcache, "cache_base", lambda *_: link)
    path = write(tmp_path / "testservers.yaml", CONFIG)
    assert configcache.cache_file(path) is None


def test_yaml_errors_are_never_cached_and_keep_their_line(tmp_path: Path, private: Path) -> None:
    path = write(tmp_path / "testservers.yaml", "servers:\n  web: {}\n  web: {}\n")
    for _ in range(2):
        with pytest.raises(ConfigError, match="line 3: duplicate key 'web'"):
            YamlDocument.read(path, "testservers.yaml")
    assert not list((private / "yaml-cache").glob("*.json"))


def test_old_entries_are_evicted(
    tmp_path: Path, private: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(configcache, "MAX_ENTRIES", 3)
    for i in range(5):
        path = write(tmp_path / f"c{i}.yaml", CONFIG)
        YamlDocument.read(path, path.name).remember()
    assert len(list((private / "yaml-cache").glob("*.json"))) == 3


@pytest.mark.parametrize(
    ("data", "plain"),
    [
        ({"a": [1, 2.5, True, None, "x"]}, True),
        ({1: "int key"}, False),
        ({"when": __import__("datetime").date(2026, 1, 1)}, False),
        ({"raw": b"bytes"}, False),
        ({"set": {1, 2}}, False),
    ],
)
def test_only_json_plain_data_is_cached(data: object, plain: bool) -> None:
    assert is_plain(data) is plain


def test_an_alias_bomb_is_not_expanded_into_the_cache() -> None:
    layer: object = ["lol"] * 10
    for _ in range(8):
        layer = [layer] * 10  # 10**9 leaves, a few hundred objects
    assert not is_plain({"servers": layer})


def test_a_second_run_with_the_same_file_does_not_import_pyyaml(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makefile(".yaml", testservers=CONFIG)
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            print("yaml imported:", "yaml" in sys.modules)
        """
    )
    pytester.makepyfile("def test_nothing(): pass")
    (pytester.path / "tmp").mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(pytester.path / "tmp"))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # other plugins may import yaml
    for expected in ("*yaml imported: True", "*yaml imported: False", "*yaml imported: False"):
        result = pytester.runpytest_subprocess("-s", "-p", "pytest_testserver.plugin")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([expected])
    pytester.makefile(".yaml", testservers=CONFIG.replace("hello", "changed"))
    result = pytester.runpytest_subprocess("-s", "-p", "pytest_testserver.plugin")
    result.stdout.fnmatch_lines(["*yaml imported: True"])


def test_the_entries_used_last_survive_eviction(
    tmp_path: Path, private: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(configcache, "MAX_ENTRIES", 2)
    paths = [write(tmp_path / f"c{i}.yaml", CONFIG) for i in range(3)]
    YamlDocument.read(paths[0], "c0.yaml").remember()
    YamlDocument.read(paths[1], "c1.yaml").remember()
    entry = configcache.cache_file(paths[0])
    assert entry is not None
    os.utime(entry, (1, 1))  # written long ago...
    assert YamlDocument.read(paths[0], "c0.yaml").from_cache  # ...but used just now
    YamlDocument.read(paths[2], "c2.yaml").remember()
    assert YamlDocument.read(paths[0], "c0.yaml").from_cache
    assert not YamlDocument.read(paths[1], "c1.yaml").from_cache
