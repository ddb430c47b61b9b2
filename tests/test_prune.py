"""--testserver-prune and the labels of built images, on the real engine.

Each test builds its own images (a fresh token in every run step, so no layer is shared with any
other test or run) in its own project folders, and removes what is left of them at the end.
"""

from __future__ import annotations

import os
import re
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_testserver.identity import LABEL_PREFIX, project_digest
from pytest_testserver.image import (
    LABEL_IMAGE,
    LABEL_IMAGE_CONTENT,
    LABEL_IMAGE_PROJECT,
    LABEL_IMAGE_SERVER,
)

BLOB_KB = 64  # each image's own run step writes this much: what pruning it must free

TESTS = """
def test_it(testservers):
    for name in testservers:
        testservers[name]
"""


def server(token: str) -> str:
    """A busybox server whose image is this token's alone, with a layer of BLOB_KB KiB."""
    return (
        "    from: busybox:stable\n"
        f"    run: ['dd if=/dev/zero of=/blob-{token} bs=1024 count={BLOB_KB} 2>/dev/null']\n"
        "    command: [sleep, '600']\n"
        "    wait: false\n"
    )


def write_project(folder: Path, **servers: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "pytest.ini").write_text("[pytest]\n")
    body = "".join(f"  {name}:\n{spec}" for name, spec in servers.items())
    (folder / "testservers.yaml").write_text(f"servers:\n{body}" if servers else "servers: {}\n")
    (folder / "test_it.py").write_text(textwrap.dedent(TESTS))
    return folder


def images_of(api: Any, folder: Path) -> dict[str, dict[str, Any]]:
    """The images built for the project at ``folder``, by tag (untagged ones by id)."""
    selector = [f"{LABEL_IMAGE}=1", f"{LABEL_IMAGE_PROJECT}={project_digest(str(folder))}"]
    found: dict[str, dict[str, Any]] = {}
    for item in api.images(filters={"label": selector}):
        for tag in item.get("RepoTags") or [item["Id"]]:
            found[tag] = item
    return found


def tags_of(api: Any, folder: Path, server: str) -> set[str]:
    return {
        tag
        for tag, item in images_of(api, folder).items()
        if (item.get("Labels") or {}).get(LABEL_IMAGE_SERVER) == server
    }


@pytest.fixture
def projects(pytester: pytest.Pytester, engine: Any) -> Iterator[list[Path]]:
    """Project folders for a test; whatever images they still have are removed afterwards."""
    made: list[Path] = []
    yield made
    for folder in made:
        for item in {i["Id"]: i for i in images_of(engine, folder).values()}.values():
            engine.remove_image(item["Id"], force=True)


def run_suite(pytester: pytest.Pytester, folder: Path) -> None:
    pytester.runpytest(str(folder)).assert_outcomes(passed=1)


def prune(pytester: pytest.Pytester, folder: Path) -> pytest.RunResult:
    result = pytester.runpytest(str(folder), "--testserver-prune")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "test_it" not in result.stdout.str()  # it exits before collecting
    return result


def freed(result: pytest.RunResult, tag: str) -> int:
    pattern = re.compile(rf"testserver: removed {re.escape(tag)} \((\d+) bytes freed\)$")
    numbers = [int(m.group(1)) for line in result.outlines if (m := pattern.match(line))]
    assert len(numbers) == 1, result.outlines
    return numbers[0]


def test_prune_removes_only_the_tags_the_config_no_longer_uses(
    pytester: pytest.Pytester, projects: list[Path], engine: Any
) -> None:
    token = uuid.uuid4().hex
    folder = write_project(pytester.path / "app", web=server(f"a-{token}"), db=server(f"d-{token}"))
    projects.append(folder)
    run_suite(pytester, folder)
    [old] = tags_of(engine, folder, "web")
    [db] = tags_of(engine, folder, "db")
    write_project(folder, web=server(f"b-{token}"), db=server(f"d-{token}"))  # web changed
    run_suite(pytester, folder)
    [new] = tags_of(engine, folder, "web") - {old}

    result = prune(pytester, folder)

    assert set(images_of(engine, folder)) == {new, db}
    assert freed(result, old) >= BLOB_KB * 1024  # its own layer went with it
    result.stdout.fnmatch_lines(
        ["testserver: --testserver-prune: removed 1 image(s), * bytes freed"], consecutive=False
    )
    assert new not in result.stdout.str()
    assert db not in result.stdout.str()
    # Nothing left to prune: the second time says so and removes nothing.
    again = prune(pytester, folder)
    again.stdout.fnmatch_lines(["testserver: --testserver-prune: no stale image of this project"])
    assert set(images_of(engine, folder)) == {new, db}


def test_prune_never_touches_another_project_nor_an_image_a_container_uses(
    pytester: pytest.Pytester, projects: list[Path], engine: Any
) -> None:
    token = uuid.uuid4().hex
    mine = write_project(pytester.path / "mine", web=server(f"m-{token}"))
    theirs = write_project(pytester.path / "theirs", web=server(f"t-{token}"))
    projects += [mine, theirs]
    run_suite(pytester, mine)
    run_suite(pytester, theirs)
    [my_tag] = tags_of(engine, mine, "web")
    [their_tag] = tags_of(engine, theirs, "web")
    write_project(mine)  # this project's config now declares no server: its image is stale
    # A stopped container of someone else's uses the image: it stays, and says why.
    container = engine.create_container(my_tag, command=["true"])["Id"]
    try:
        result = prune(pytester, mine)
        result.stdout.fnmatch_lines(
            [
                f"testserver: kept {my_tag}: a container uses it",
                "testserver: --testserver-prune: removed 0 image(s), 0 bytes freed; "
                "1 stale image(s) kept",
            ]
        )
        assert my_tag in images_of(engine, mine)
    finally:
        engine.remove_container(container, force=True)

    result = prune(pytester, mine)

    assert freed(result, my_tag) >= BLOB_KB * 1024
    assert images_of(engine, mine) == {}
    assert set(images_of(engine, theirs)) == {their_tag}  # the other project's stays
    assert their_tag not in result.stdout.str()


def test_a_built_image_carries_no_run_label(
    pytester: pytest.Pytester, projects: list[Path], engine: Any
) -> None:
    folder = write_project(pytester.path / "app", web=server(uuid.uuid4().hex))
    projects.append(folder)
    run_suite(pytester, folder)
    [tag] = tags_of(engine, folder, "web")
    ours = {
        key: value
        for key, value in (engine.inspect_image(tag)["Config"]["Labels"] or {}).items()
        if key.startswith(LABEL_PREFIX)
    }
    assert set(ours) == {LABEL_IMAGE, LABEL_IMAGE_PROJECT, LABEL_IMAGE_SERVER, LABEL_IMAGE_CONTENT}
    assert ours[LABEL_IMAGE_PROJECT] == project_digest(str(folder))
    assert ours[LABEL_IMAGE_SERVER] == "web"
    assert tag.endswith(":" + ours[LABEL_IMAGE_CONTENT][:24])
    # A container made from it inherits the image's labels: none of them names a run or its
    # process, so no run's teardown, sweep or leak check ever counts that container.
    container = engine.create_container(tag, command=["true"])["Id"]
    try:
        labels = engine.inspect_container(container)["Config"]["Labels"] or {}
    finally:
        engine.remove_container(container, force=True)
    assert f"{LABEL_PREFIX}run" not in labels
    assert f"{LABEL_PREFIX}pid" not in labels
    assert str(os.getpid()) not in labels.values()


def test_prune_with_a_bad_config_is_a_usage_error_and_removes_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # never reached
    folder = write_project(pytester.path / "app", web=server("x") + "    prots: [80]\n")
    result = pytester.runpytest(str(folder), "--testserver-prune")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *servers.web.prots: unknown key (did you mean 'ports'?)*"])
    assert "testserver: removed" not in result.stdout.str()


def test_prune_without_an_engine_is_one_line_and_exit_1(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    folder = write_project(pytester.path / "app", web=server("x"))
    result = pytester.runpytest(str(folder), "--testserver-prune")
    assert result.ret == 1
    errors = [line for line in result.errlines if line.strip()]
    assert len(errors) == 1, errors
    assert errors[0].startswith("testserver: --testserver-prune: ")
    assert "/nonexistent/docker.sock" in errors[0]
