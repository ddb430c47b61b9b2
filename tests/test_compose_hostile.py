"""Hostile compose files: whatever a compose file holds, the answer is a valid configuration or
one line naming the file and the key (never a traceback, never the engine).

Hypothesis builds documents from the compose specification's own keys with hostile values
(interpolation soup, paths out of the project, bad durations, cycles); a corpus of named cases
checks the line a user sees through pytest itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from pytest_testserver.compose import SCHEMA
from pytest_testserver.config import ServerConfig
from pytest_testserver.errors import ConfigError
from pytest_testserver.mounts import BindMount
from pytest_testserver.sources import ComposeSource, read_servers

SOURCE = "docker-compose.yml"
SERVICE_KEYS = sorted(json.loads(SCHEMA.read_text())["definitions"]["service"]["properties"])
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

soup = st.sampled_from(
    [
        "${",
        "${}",
        "${A",
        "${A:?missing}",
        "${A?}",
        "${A:-${B:-${C}}}",
        "$$",
        "$",
        "${A:+x}",
        "${1}",
        "../outside",
        "/etc/passwd",
        "~/.ssh",
        "./files:/x",
        "./files:/x:ro",
        "named:/data",
        "1m30s",
        "10x",
        "-1s",
        "0s",
        "CMD",
        "CMD-SHELL",
        "NONE",
        "host",
        "service:web",
        "container:x",
        "80:80",
        "127.0.0.1:80:80",
        "70000",
        "1-99999",
        "busybox:stable",
        "\x00",
        "a\nb",
        "'",
        '"',
        "web",
        "db",
        "true",
        "64m",
        "1gb",
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    soup,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(soup, st.text(max_size=8)), children, max_size=4),
    ),
    max_leaves=12,
)
services = st.dictionaries(st.sampled_from(SERVICE_KEYS), values, max_size=6)
documents = st.fixed_dictionaries(
    {
        "services": st.dictionaries(
            st.sampled_from(["web", "db", "seed"]),
            st.one_of(
                services, services.map(lambda s: {"image": "busybox:stable", **s}), st.none()
            ),
            max_size=3,
        )
    },
    optional={
        "volumes": st.dictionaries(st.sampled_from(["named", "data"]), values, max_size=2),
        "networks": st.dictionaries(st.sampled_from(["front", "default"]), values, max_size=2),
        "name": values,
        "include": values,
    },
)


def make_project(folder: Path) -> Path:
    """A project folder with files, a build context, a symlink out, and a folder beside it."""
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "index.html").write_text("ok\n")
    (folder / "Dockerfile").write_text("FROM busybox:stable\n")
    (folder / "passwd").symlink_to("/etc/passwd")
    (folder.parent / "outside").mkdir(exist_ok=True)
    return folder


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = make_project(tmp_path / "project")
    monkeypatch.chdir(folder)
    return folder


def outcome(project: Path, text: str, environ: dict[str, str] | None = None) -> str:
    """Load the compose text: "ok" (a safe configuration) or "error" (one proper line)."""
    path = project / SOURCE
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = read_servers(
            project / "testservers.yaml", False, [], None, ComposeSource((path,), (), environ or {})
        )
    except ConfigError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1, message
        assert message.startswith((f"{SOURCE}: ", "testserver: ")), message
        return "error"
    assert isinstance(config, ServerConfig)
    for spec in config.servers.values():
        for volume in spec.volumes:  # nothing out of the project is ever mounted
            if isinstance(volume, BindMount):
                assert volume.src.is_relative_to(project.resolve())
        assert set(spec.links) <= set(config.servers)
    return "ok"


@FUZZ
@given(document=documents)
def test_any_compose_document_is_a_config_or_a_one_line_error(
    project: Path, document: dict[str, Any]
) -> None:
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        reject()
    outcome(project, text, {"A": "", "B": "b"})


@FUZZ
@given(text=st.text(max_size=200))
def test_any_text_as_a_compose_file_is_a_config_or_a_one_line_error(
    project: Path, text: str
) -> None:
    outcome(project, text)


@FUZZ
@given(value=values, key=st.sampled_from(SERVICE_KEYS))
def test_any_value_of_any_service_key_is_a_config_or_a_one_line_error(
    project: Path, value: object, key: str
) -> None:
    document = {"services": {"web": {"image": "busybox:stable", key: value}}}
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        reject()
    outcome(project, text, {"A": "a"})


IMG = "    image: busybox\n"


def case(id_: str, body: str, expected: str | None) -> Any:
    return pytest.param(body, expected, id=id_)


CASES = [
    case(
        "unknown-key",
        "    imgae: busybox",
        "services.web.imgae: unknown key in the compose specification (did you mean 'image'?)",
    ),
    case("extension-key-is-fine", IMG + "    x-anything: {ok: true}", None),
    case(
        "bad-duration",
        IMG + "    healthcheck: {test: [CMD, x], interval: 10x}",
        "services.web.healthcheck.interval: '10x' is not a duration such as 10s, 1m30s or 500ms",
    ),
    case(
        "zero-duration",
        IMG + "    healthcheck: {test: [CMD, x], interval: 0s}",
        "services.web.healthcheck.interval: '0s' is not a positive duration",
    ),
    case(
        "depends-on-itself",
        IMG + "    depends_on: [web]",
        "services.web.depends_on: forms a cycle: web -> web",
    ),
    case(
        "required-variable",
        IMG + "    command: ${NOPE:?set NOPE first}",
        "services.web.command: required variable NOPE is not set: 'set NOPE first'",
    ),
    case(
        "unclosed-interpolation",
        IMG + "    command: echo ${",
        "services.web.command: '${' has no closing brace: write ${VAR}, or $$ for a literal $",
    ),
    case(
        "bad-interpolation",
        IMG + "    command: echo ${A B}",
        "services.web.command: '${A B}' is not a valid interpolation*",
    ),
    case(
        "bind-dotdot",
        IMG + "    volumes: ['../outside:/x:ro']",
        "services.web.volumes[0]: '../outside' leads outside *",
    ),
    case(
        "bind-symlink-out",
        IMG + "    volumes: ['./passwd:/x:ro']",
        "services.web.volumes[0]: './passwd' leads outside *",
    ),
    case(
        "bind-root",
        IMG + "    volumes: ['/:/host:ro']",
        "services.web.volumes[0]: refused: '/' is outside the project*",
    ),
    case(
        "env-file-symlink-out",
        IMG + "    env_file: passwd",
        "services.web.env_file[0]: 'passwd' leads outside *",
    ),
    case(
        "build-out",
        "    build: ../outside",
        "services.web.build.context: '../outside' leads outside *",
    ),
    case(
        "network-mode-host",
        IMG + "    network_mode: host",
        "services.web.network_mode: refused: *",
    ),
    case("pid-host", IMG + "    pid: host", "services.web.pid: refused: *"),
    case("privileged", IMG + "    privileged: true", "services.web.privileged: refused: *"),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_a_hostile_compose_file_is_a_one_line_usage_error(
    pytester: pytest.Pytester, body: str, expected: str | None
) -> None:
    make_project(pytester.path)
    (pytester.path / SOURCE).write_text(f"services:\n  web:\n{body.rstrip()}\n")
    result = pytester.runpytest("--testserver-compose", SOURCE, "--testserver-list")
    if expected is None:
        assert result.ret == 0, result.errlines
        return
    lines = [line for line in result.errlines if line.strip()]
    assert result.ret == pytest.ExitCode.USAGE_ERROR, (result.ret, result.outlines, lines)
    assert len(lines) == 1, lines
    pattern = f"ERROR: {SOURCE}: {expected}".replace("[", "[[]").replace("?", "[?]")
    result.stderr.fnmatch_lines([pattern])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
