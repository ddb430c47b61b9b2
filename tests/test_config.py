"""Unit tests of pytest_testserver.config (parse_config, load_config) and of the YAML reader.

parse_config turns a raw mapping into frozen ServerSpecs; load_config reads a YAML file first.
Every refusal is a ConfigError whose one-line message names the file and the key path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pytest_testserver.config import (
    DEFAULT_TIMEOUT,
    BuildSource,
    CopyFile,
    GeneratedSource,
    ImageSource,
    Port,
    PostStartup,
    ServerConfig,
    ServerSpec,
    display_path,
    load_config,
    parse_config,
    require_server,
)
from pytest_testserver.containeroptions import ContainerOptions
from pytest_testserver.errors import ConfigError
from pytest_testserver.settings import bind_address

SOURCE = "testservers.yaml"
SERVER_KEYS_TEXT = (
    "build, image, from, before_install, install, copy, run, command, env, env_file, secret_env, "
    "ports, hostname, domain, aliases, links, post_startup, timeout, image_timeout, share, scope, "
    "wait, reset, restart, init, user, working_dir, entrypoint, tmpfs, cap_add, cap_drop, "
    "shm_size, ulimits, sysctls, healthcheck, volumes, pull, platform"
)


def parse(data: object, base: Path = Path()) -> ServerConfig:
    return parse_config(data, base=base, source=SOURCE)


def error_of(data: object, base: Path = Path()) -> str:
    """The one-line message of the ConfigError that parsing ``data`` raises."""
    with pytest.raises(ConfigError) as excinfo:
        parse(data, base)
    message = str(excinfo.value)
    assert "\n" not in message, message
    assert message.startswith(f"{SOURCE}: "), message
    return message


def servers(**specs: Any) -> dict[str, Any]:
    return {"servers": specs}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config folder with files to copy and a build context; a secret file lives outside it."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "app.conf").write_text("listen 8080\n")
    (folder / "site").mkdir()
    (folder / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (folder / "ctx").mkdir()
    (folder / "ctx" / "Dockerfile").write_text("FROM busybox:stable\n")
    (folder / "ctx" / "Dockerfile.test").write_text("FROM busybox:stable AS final\n")
    (tmp_path / "secret.txt").write_text("top secret\n")
    return folder


# --- a full valid configuration ------------------------------------------------------------------


def full_example() -> dict[str, Any]:
    return {
        "defaults": {
            "image": "busybox:stable",
            "timeout": 30,
            "env": {"TZ": "UTC", "LOG_LEVEL": "info"},
            "ports": [8080],
        },
        "servers": {
            "web": {
                "command": ["httpd", "-f", "-p", "8080"],
                "env": {"LOG_LEVEL": "debug", "WORKERS": 4, "DEBUG": True},
                "hostname": "www",
                "domain": "example.test",
                "aliases": ["web.example.test", "static"],
                "links": ["db"],
                "post_startup": {"command": ["wget", "-q", "-O-", "localhost:8080"], "retries": 5},
            },
            "db": {
                "image": "postgres:16",
                "ports": ["5432/tcp", "5432/udp"],
                "secret_env": ["POSTGRES_PASSWORD"],
                "timeout": 60.5,
            },
            "gen": {
                "from": "debian:bookworm-slim",
                "install": ["curl", "ca-certificates"],
                "copy": [
                    {"src": "app.conf", "dst": "/etc/app.conf", "mode": "0600"},
                    {"src": "site", "dst": "/srv/www"},
                ],
                "run": ["echo ready > /ready", ["touch", "/done"]],
                "post_startup": ["test", "-f", "/ready"],
            },
            "built": {
                "build": {
                    "context": "ctx",
                    "dockerfile": "Dockerfile.test",
                    "args": {"VERSION": 1.5, "DEBUG": True, "NAME": "x"},
                    "target": "final",
                },
            },
        },
    }


def test_full_example_parses(project: Path) -> None:
    config = parse(full_example(), project)
    assert config.source == SOURCE
    assert list(config.servers) == ["web", "db", "gen", "built"]

    web = config.servers["web"]
    assert web == ServerSpec(
        name="web",
        image=ImageSource("busybox:stable"),
        command=("httpd", "-f", "-p", "8080"),
        env=(("TZ", "UTC"), ("LOG_LEVEL", "debug"), ("WORKERS", "4"), ("DEBUG", "true")),
        ports=(Port(8080, "tcp"),),
        hostname="www",
        domain="example.test",
        aliases=("web.example.test", "static"),
        links=("db",),
        post_startup=PostStartup(("wget", "-q", "-O-", "localhost:8080"), retries=5),
        timeout=30.0,
    )

    db = config.servers["db"]
    assert db.image == ImageSource("postgres:16")
    assert db.ports == (Port(5432, "tcp"), Port(5432, "udp"))
    assert db.secret_env == ("POSTGRES_PASSWORD",)
    assert db.env == (("TZ", "UTC"), ("LOG_LEVEL", "info"))
    assert db.hostname == "db"
    assert db.command is None
    assert db.post_startup is None
    assert db.timeout == 60.5

    gen = config.servers["gen"]
    assert gen.image == GeneratedSource(
        base="debian:bookworm-slim",
        install=("curl", "ca-certificates"),
        copy=(
            CopyFile((project / "app.conf").resolve(), "/etc/app.conf", 0o600),
            CopyFile((project / "site").resolve(), "/srv/www", None),
        ),
        run=("echo ready > /ready", ("touch", "/done")),
    )
    assert gen.post_startup == PostStartup(("test", "-f", "/ready"))

    built = config.servers["built"]
    assert built.image == BuildSource(
        context=(project / "ctx").resolve(),
        dockerfile="Dockerfile.test",
        args=(("DEBUG", "true"), ("NAME", "x"), ("VERSION", "1.5")),
        target="final",
    )
    assert built.ports == (Port(8080),)
    assert built.timeout == 30.0


def test_parsed_config_is_read_only(project: Path) -> None:
    config = parse(full_example(), project)
    with pytest.raises(TypeError):
        config.servers["x"] = config.servers["web"]  # type: ignore[index]


def test_defaults_apply_when_nothing_is_set() -> None:
    spec = parse(servers(web={"image": "busybox"})).servers["web"]
    assert spec == ServerSpec(name="web", image=ImageSource("busybox"), hostname="web")
    assert spec.timeout == DEFAULT_TIMEOUT == 120.0
    assert spec.hostname == "web"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="none"),
        pytest.param({}, id="empty"),
        pytest.param({"servers": None}, id="servers-null"),
        pytest.param({"defaults": None, "servers": {}}, id="defaults-null"),
    ],
)
def test_empty_configurations_declare_no_servers(data: object) -> None:
    assert dict(parse(data).servers) == {}


def test_null_values_count_as_not_set() -> None:
    spec = parse(
        servers(web={"image": "busybox", "ports": None, "command": None, "timeout": None})
    ).servers["web"]
    assert spec.ports == ()
    assert spec.command is None
    assert spec.timeout == DEFAULT_TIMEOUT


# --- defaults ------------------------------------------------------------------------------------


def test_server_values_win_over_defaults() -> None:
    data = {
        "defaults": {"image": "busybox", "ports": [80], "timeout": 10, "hostname": "shared"},
        "servers": {"web": {"ports": [81], "timeout": 20}},
    }
    spec = parse(data).servers["web"]
    assert spec.ports == (Port(81),)
    assert spec.timeout == 20.0
    assert spec.hostname == "shared"


def test_env_merges_key_by_key_and_the_server_wins() -> None:
    data = {
        "defaults": {"image": "busybox", "env": {"A": "default-a", "B": "default-b"}},
        "servers": {
            "web": {"env": {"B": "server-b", "C": "server-c"}},
            "plain": {},
            "nulled": {"env": None},
        },
    }
    config = parse(data)
    assert dict(config.servers["web"].env) == {"A": "default-a", "B": "server-b", "C": "server-c"}
    assert dict(config.servers["plain"].env) == {"A": "default-a", "B": "default-b"}
    assert dict(config.servers["nulled"].env) == {"A": "default-a", "B": "default-b"}


def test_env_values_are_normalized_to_strings() -> None:
    spec = parse(
        servers(web={"image": "busybox", "env": {"N": 3, "F": 0.5, "T": True, "O": False, "E": ""}})
    ).servers["web"]
    assert spec.env == (("N", "3"), ("F", "0.5"), ("T", "true"), ("O", "false"), ("E", ""))


@pytest.fixture
def generated_defaults(project: Path) -> dict[str, Any]:
    return {
        "from": "debian:bookworm-slim",
        "install": ["curl"],
        "copy": [{"src": "app.conf", "dst": "/etc/app.conf"}],
        "run": ["echo hi"],
        "timeout": 15,
    }


def test_a_server_without_its_own_source_takes_the_generated_image_from_defaults(
    project: Path, generated_defaults: dict[str, Any]
) -> None:
    spec = parse({"defaults": generated_defaults, "servers": {"web": {}}}, project).servers["web"]
    assert spec.image == GeneratedSource(
        base="debian:bookworm-slim",
        install=("curl",),
        copy=(CopyFile((project / "app.conf").resolve(), "/etc/app.conf"),),
        run=("echo hi",),
    )


def test_a_server_naming_its_own_image_takes_no_image_part_from_defaults(
    project: Path, generated_defaults: dict[str, Any]
) -> None:
    data = {"defaults": generated_defaults, "servers": {"web": {"image": "nginx:1.27"}}}
    spec = parse(data, project).servers["web"]
    assert spec.image == ImageSource("nginx:1.27")
    assert spec.timeout == 15.0  # the other defaults still apply


def test_a_server_naming_its_own_from_takes_no_image_part_from_defaults(
    project: Path, generated_defaults: dict[str, Any]
) -> None:
    data = {"defaults": generated_defaults, "servers": {"web": {"from": "alpine:3.20"}}}
    spec = parse(data, project).servers["web"]
    assert spec.image == GeneratedSource(base="alpine:3.20")  # no install, copy or run
    assert spec.timeout == 15.0


def test_a_server_naming_its_own_build_takes_no_image_part_from_defaults(
    project: Path, generated_defaults: dict[str, Any]
) -> None:
    data = {"defaults": generated_defaults, "servers": {"web": {"build": "ctx"}}}
    spec = parse(data, project).servers["web"]
    assert spec.image == BuildSource(context=(project / "ctx").resolve(), dockerfile="Dockerfile")
    assert spec.timeout == 15.0


def test_a_server_naming_its_own_image_drops_a_default_build(project: Path) -> None:
    data = {"defaults": {"build": "ctx"}, "servers": {"web": {"image": "busybox"}}}
    assert parse(data, project).servers["web"].image == ImageSource("busybox")


# --- unknown keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"server": {}},
            "testservers.yaml: server: unknown key (did you mean 'servers'?); "
            "known keys: defaults, servers, compose",
            id="top-level",
        ),
        pytest.param(
            {"defaults": {"prots": [80]}},
            "testservers.yaml: defaults.prots: unknown key (did you mean 'ports'?); "
            f"known keys: {SERVER_KEYS_TEXT}",
            id="defaults",
        ),
        pytest.param(
            servers(web={"image": "busybox", "prots": [80]}),
            "testservers.yaml: servers.web.prots: unknown key (did you mean 'ports'?); "
            f"known keys: {SERVER_KEYS_TEXT}",
            id="server",
        ),
        pytest.param(
            servers(web={"image": "busybox", "enviroment": {}}),
            "testservers.yaml: servers.web.enviroment: unknown key; "
            f"known keys: {SERVER_KEYS_TEXT}",
            id="no-suggestion",
        ),
        pytest.param(
            servers(web={"build": {"contxt": "ctx"}}),
            "testservers.yaml: servers.web.build.contxt: unknown key (did you mean 'context'?); "
            "known keys: context, dockerfile, args, target",
            id="build",
        ),
        pytest.param(
            servers(web={"from": "busybox", "copy": [{"src": "app.conf", "dest": "/x"}]}),
            "testservers.yaml: servers.web.copy[0].dest: unknown key (did you mean 'dst'?); "
            "known keys: src, dst, mode",
            id="copy",
        ),
        pytest.param(
            servers(web={"image": "busybox", "post_startup": {"command": ["x"], "retry": 3}}),
            "testservers.yaml: servers.web.post_startup.retry: unknown key "
            "(did you mean 'retries'?); known keys: command, retries, interval",
            id="post-startup",
        ),
    ],
)
def test_unknown_keys_are_refused_with_a_suggestion(
    project: Path, data: dict[str, Any], expected: str
) -> None:
    assert error_of(data, project) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(servers(web={"image": "busybox", "por\nts": [80]}), id="server-key"),
        pytest.param(servers(**{"we\nb": {"image": "busybox"}}), id="server-name"),
        pytest.param(servers(web={"image": "busybox", "env": {"A\nB": "1"}}), id="env-key"),
    ],
)
def test_errors_about_keys_with_newlines_are_one_line(data: dict[str, Any]) -> None:
    error_of(data)


# --- structure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(["web"], "testservers.yaml: must be a mapping, not list", id="top-list"),
        pytest.param(
            {"servers": ["web"]},
            "testservers.yaml: servers: must be a mapping, not list",
            id="list",
        ),
        pytest.param(
            servers(web="busybox"),
            "testservers.yaml: servers.web: must be a mapping, not str",
            id="server-string",
        ),
        pytest.param(
            {"defaults": "busybox"},
            "testservers.yaml: defaults: must be a mapping, not str",
            id="defaults-string",
        ),
        pytest.param(
            servers(web_1={"image": "busybox"}),
            "testservers.yaml: servers.web_1: 'web_1' is not a valid server name "
            "(letters, digits and inner hyphens, at most 63 characters)",
            id="bad-server-name",
        ),
        pytest.param(
            servers(web={"image": "busybox", "env": ["A=1"]}),
            "testservers.yaml: servers.web.env: must be a mapping, not list",
            id="env-list",
        ),
        pytest.param(
            servers(web={"image": "busybox", "env": {"A": None}}),
            "testservers.yaml: servers.web.env.A: "
            "must be a string, a number or a boolean, not null",
            id="env-null-value",
        ),
        pytest.param(
            servers(web={"image": "busybox", "env": {"A-B": "1"}}),
            "testservers.yaml: servers.web.env.A-B: 'A-B' is not a valid variable name "
            "(letters, digits, underscore)",
            id="env-bad-key",
        ),
        pytest.param(
            servers(web={"image": "busybox", "command": "httpd -f"}),
            "testservers.yaml: servers.web.command: must be a list of arguments such as "
            '["httpd", "-f"], not the string \'httpd -f\' (no shell is involved)',
            id="command-string",
        ),
        pytest.param(
            servers(web={"image": "busybox", "hostname": "my_host"}),
            "testservers.yaml: servers.web.hostname: 'my_host' is not a valid host name "
            "(RFC 1123 label)",
            id="hostname",
        ),
        pytest.param(
            servers(web={"image": "busybox", "aliases": ["a.test", "a.test"]}),
            "testservers.yaml: servers.web.aliases[1]: 'a.test' is listed twice",
            id="alias-twice",
        ),
        pytest.param(
            servers(web={"image": "busybox", "timeout": 0}),
            "testservers.yaml: servers.web.timeout: 0 is not a positive number of seconds",
            id="timeout-zero",
        ),
        pytest.param(
            servers(web={"image": "busybox", "ports": 8080}),
            "testservers.yaml: servers.web.ports: must be a list, not int 8080",
            id="ports-not-list",
        ),
        pytest.param(
            servers(web={"image": "busybox", "ports": [80, 70000]}),
            "testservers.yaml: servers.web.ports[1]: 70000 is not a port (1-65535)",
            id="port-out-of-range",
        ),
        pytest.param(
            servers(web={"image": "Busybox"}),
            "testservers.yaml: servers.web.image: 'Busybox' is not a valid image reference "
            "(such as busybox:stable)",
            id="bad-image",
        ),
        pytest.param(
            servers(db={"image": "busybox:stable", "reset": "redis-cli FLUSHALL"}),
            "testservers.yaml: servers.db.reset: must be a list of arguments such as "
            '["httpd", "-f"], not the string \'redis-cli FLUSHALL\' (no shell is involved)',
            id="reset-string",
        ),
        pytest.param(
            servers(db={"image": "busybox:stable", "reset": []}),
            "testservers.yaml: servers.db.reset: must not be empty",
            id="reset-empty",
        ),
        pytest.param(
            servers(db={"image": "busybox:stable", "scope": "test"}),
            "testservers.yaml: servers.db.scope: 'test' is not one of session, module, class, "
            "function",
            id="scope-unknown",
        ),
        pytest.param(
            servers(db={"image": "busybox:stable", "init": "yes"}),
            "testservers.yaml: servers.db.init: must be true or false, not 'yes'",
            id="init-not-a-bool",
        ),
    ],
)
def test_bad_values_name_their_key_path(data: object, expected: str) -> None:
    assert error_of(data) == expected


@pytest.mark.parametrize("scope", ["session", "module", "class", "function"])
def test_scope_is_read_and_anything_shorter_than_the_session_is_per_worker(scope: str) -> None:
    spec = parse(servers(db={"image": "busybox:stable", "scope": scope})).servers["db"]
    assert spec.scope == scope
    assert spec.sharing == ("run" if scope == "session" else "worker")
    assert parse(servers(db={"image": "busybox:stable"})).servers["db"].scope == "session"


@pytest.mark.parametrize(
    ("web", "db", "expected"),
    [
        pytest.param(
            "session",
            "module",
            "'db' has scope: module but 'web' has scope: session",
            id="session-to-module",
        ),
        pytest.param(
            "class",
            "function",
            "'db' has scope: function but 'web' has scope: class",
            id="class-to-function",
        ),
    ],
)
def test_a_servers_links_must_live_at_least_as_long_as_it_does(
    web: str, db: str, expected: str
) -> None:
    data = servers(
        db={"image": "busybox", "scope": db},
        web={"image": "busybox", "scope": web, "links": ["db"]},
    )
    assert error_of(data) == (
        f"testservers.yaml: servers.web.links[0]: {expected}; a server's links must live at "
        "least as long as it does"
    )


def test_a_per_worker_server_cannot_link_to_a_server_of_the_whole_run() -> None:
    data = servers(
        db={"image": "busybox"},
        web={"image": "busybox", "scope": "function", "links": ["db"]},
    )
    assert error_of(data) == (
        "testservers.yaml: servers.web.links[0]: 'db' has share: run but 'web' is per xdist "
        "worker (scope: function); linked servers must share alike (they join one network): "
        "give 'db' share: worker"
    )
    data["servers"]["db"]["share"] = "worker"
    assert parse(data).servers["web"].links == ("db",)
    data["servers"]["db"]["scope"] = "function"  # the same scope, the same worker
    assert parse(data).servers["web"].links == ("db",)


def test_a_scope_shorter_than_the_session_with_ports_cannot_be_bind_local() -> None:
    from pytest_testserver.config import check_settings
    from pytest_testserver.settings import RunSettings

    config = parse(servers(web={"image": "busybox", "ports": [80], "scope": "class"}))
    check_settings(config, RunSettings())
    with pytest.raises(ConfigError) as error:
        check_settings(config, RunSettings(bind_local=True))
    assert str(error.value) == (
        "testservers.yaml: servers.web.scope: class cannot be combined with bind-local: a fresh "
        "container and the one it replaces (or its warm spare) would publish the same port "
        "numbers; use scope: session with reset:, or turn bind-local off"
    )


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("1", 1), (" 4 ", 4)])
def test_spares_ini_is_a_small_count(value: str, expected: int) -> None:
    from pytest_testserver.settings import spares

    assert spares(value, "ini testserver_spares") == expected


@pytest.mark.parametrize("value", ["-1", "5", "one", ""])
def test_a_bad_spares_ini_names_it(value: str) -> None:
    from pytest_testserver.settings import spares

    with pytest.raises(
        ConfigError, match=r"^ini testserver_spares: .* is not a number of spares \(0 to 4\)$"
    ):
        spares(value, "ini testserver_spares")


def test_init_is_off_unless_asked_for() -> None:
    assert parse(servers(db={"image": "busybox"})).servers["db"].init is False
    assert parse(servers(db={"image": "busybox", "init": True})).servers["db"].init is True


def test_reset_is_an_argument_list() -> None:
    spec = parse(servers(db={"image": "busybox:stable", "reset": ["redis-cli", "FLUSHALL"]}))
    assert spec.servers["db"].reset == ("redis-cli", "FLUSHALL")
    assert parse(servers(db={"image": "busybox:stable", "reset": None})).servers["db"].reset is None


# --- container options ---------------------------------------------------------------------------


def options_of(**fields: Any) -> ContainerOptions:
    return parse(servers(db={"image": "busybox:stable", **fields})).servers["db"].options


def test_no_option_set_gives_no_engine_argument() -> None:
    options = options_of()
    assert options == ContainerOptions()
    assert options.create_kwargs() == {}
    assert options.host_config_kwargs() == {}
    assert options.describe() == []


def test_every_option_becomes_its_docker_py_argument() -> None:
    options = options_of(
        user="www-data:1000",
        working_dir="/srv",
        entrypoint=["/entry.sh", "--flag"],
        tmpfs=["/run", {"path": "/cache/", "size": "64M", "mode": "01777"}],
        cap_add=["cap_net_admin", " sys_nice "],
        cap_drop=["ALL"],
        shm_size="1g",
        ulimits={"nofile": {"soft": 1024, "hard": 4096}, "core": 0, "memlock": "unlimited"},
        sysctls={"net.ipv4.ip_forward": 1, "kernel.sem": "250 32000 100 128"},
        healthcheck={
            "test": ["pg_isready", "-U", "postgres"],
            "interval": 0.5,
            "timeout": 2,
            "retries": 5,
            "start_period": 10,
        },
    )
    assert options.create_kwargs() == {
        "user": "www-data:1000",
        "working_dir": "/srv",
        "entrypoint": ["/entry.sh", "--flag"],
        "healthcheck": {
            "test": ["CMD", "pg_isready", "-U", "postgres"],
            "interval": 500_000_000,
            "timeout": 2_000_000_000,
            "retries": 5,
            "start_period": 10_000_000_000,
        },
    }
    assert options.host_config_kwargs() == {
        "tmpfs": {"/run": "", "/cache": "size=67108864,mode=1777"},
        "cap_add": ["CAP_NET_ADMIN", "CAP_SYS_NICE"],
        "cap_drop": ["ALL"],
        "shm_size": 1 << 30,
        "ulimits": [
            {"name": "nofile", "soft": 1024, "hard": 4096},
            {"name": "core", "soft": 0, "hard": 0},
            {"name": "memlock", "soft": -1, "hard": -1},
        ],
        "sysctls": {"net.ipv4.ip_forward": "1", "kernel.sem": "250 32000 100 128"},
    }


def test_an_empty_entrypoint_clears_the_images_and_needs_a_command() -> None:
    options = options_of(entrypoint=[], command=["redis-server"])
    assert options.entrypoint == ()
    assert options.create_kwargs() == {"entrypoint": [""]}  # the API's "no entrypoint"
    assert error_of(servers(db={"image": "busybox:stable", "entrypoint": []})) == (
        "testservers.yaml: servers.db.entrypoint: [] clears the image's ENTRYPOINT and with it "
        "its CMD: give command too"
    )


def test_a_healthcheck_checks_every_second_unless_told() -> None:
    check = options_of(healthcheck={"test": ["true"]}).create_kwargs()["healthcheck"]
    assert check == {
        "test": ["CMD", "true"],
        "interval": 1_000_000_000,
        "timeout": 0,
        "retries": 0,
        "start_period": 0,
    }


def test_options_come_from_defaults_and_a_server_replaces_them() -> None:
    config = parse(
        {
            "defaults": {"cap_drop": ["ALL"], "user": "1000"},
            "servers": {
                "a": {"image": "busybox:stable"},
                "b": {"image": "busybox:stable", "user": "0", "cap_drop": None},
            },
        }
    )
    assert config.servers["a"].options == ContainerOptions(user="1000", cap_drop=("ALL",))
    assert config.servers["b"].options == ContainerOptions(user="0")


def test_a_bad_option_from_defaults_is_reported_at_defaults() -> None:
    data = {"defaults": {"cap_add": ["SYS_ADMIN"]}, "servers": {"a": {"image": "busybox:stable"}}}
    assert error_of(data).startswith("testservers.yaml: defaults.cap_add[0]: SYS_ADMIN is refused")


def option_error(**fields: Any) -> str:
    return error_of(servers(db={"image": "busybox:stable", **fields}))


OPT = "testservers.yaml: servers.db."


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"user": 1000},
            'user: 1000 is ambiguous as a user: quote it, such as "1000" or "1000:50"',
            id="user-unquoted",
        ),
        pytest.param(
            {"user": 60050},  # what YAML 1.1 makes of an unquoted 1000:50
            'user: 60050 is ambiguous as a user: quote it, such as "1000" or "1000:50"',
            id="user-base-60",
        ),
        *(
            pytest.param(
                {"user": bad},
                f"user: {bad!a} is not a user: name, uid, name:group or uid:gid (names of "
                "letters, digits, _ . -; ids 0-4294967294)",
                id=f"user-{i}",
            )
            for i, bad in enumerate(
                ["a b", "a:b:c", ":1000", "1000:", "-rf", "4294967295", "r\u043eot", "$(id)"]
            )
        ),
        pytest.param({"user": ""}, "user: must not be empty", id="user-empty"),
        pytest.param(
            {"working_dir": "srv"},
            "working_dir: 'srv' is not an absolute path of plain characters (letters, digits, "
            "and . _ / @ + = : , -)",
            id="working-dir-relative",
        ),
        pytest.param(
            {"working_dir": "/srv/../etc"},
            "working_dir: '/srv/../etc' must not contain '..'",
            id="working-dir-dotdot",
        ),
        pytest.param(
            {"entrypoint": "/entry.sh --flag"},
            'entrypoint: must be a list of arguments such as ["httpd", "-f"], not the string '
            "'/entry.sh --flag' (no shell is involved)",
            id="entrypoint-string",
        ),
        pytest.param(
            {"entrypoint": ["a", 1]},
            "entrypoint[1]: must be a string, not int 1",
            id="entrypoint-not-strings",
        ),
        pytest.param(
            {"tmpfs": "/run"}, "tmpfs: must be a list, not str '/run'", id="tmpfs-not-a-list"
        ),
        pytest.param(
            {"tmpfs": ["/run", "/run/"]}, "tmpfs[1]: /run is listed twice", id="tmpfs-twice"
        ),
        pytest.param(
            {"tmpfs": ["/"]},
            "tmpfs[0]: '/': a tmpfs over / or the kernel's /proc, /sys or /dev is refused",
            id="tmpfs-root",
        ),
        pytest.param(
            {"tmpfs": [{"path": "/proc/sys"}]},
            "tmpfs[0].path: '/proc/sys': a tmpfs over / or the kernel's /proc, /sys or /dev is "
            "refused",
            id="tmpfs-proc",
        ),
        pytest.param(
            {"tmpfs": ["/run:exec"]},
            "tmpfs[0]: '/run:exec': a tmpfs path must not hold , : or = (mount option separators)",
            id="tmpfs-path-with-a-separator",
        ),
        pytest.param(
            {"tmpfs": [{"size": "1m"}]},
            "tmpfs[0]: needs path: where the tmpfs is mounted in the container",
            id="tmpfs-no-path",
        ),
        pytest.param(
            {"tmpfs": [{"path": "/run", "options": "exec"}]},
            "tmpfs[0].options: unknown key; known keys: path, size, mode",
            id="tmpfs-free-form-options",
        ),
        pytest.param(
            {"tmpfs": [{"path": "/run", "size": 64}]},
            "tmpfs[0].size: 64 needs a unit: a size such as 64m (k, m or g)",
            id="tmpfs-size-without-unit",
        ),
        pytest.param(
            {"tmpfs": [{"path": "/run", "size": "64m,exec"}]},
            "tmpfs[0].size: '64m,exec' is not a size such as 64m (a whole number and k, m or g)",
            id="tmpfs-size-with-options",
        ),
        pytest.param(
            {"tmpfs": [{"path": "/run", "mode": 1777}]},
            'tmpfs[0].mode: 1777 is ambiguous as a mode: quote it in octal, such as "0755"',
            id="tmpfs-mode-unquoted",
        ),
        pytest.param(
            {"shm_size": "17g"}, "shm_size: '17g' is out of range (4k-16g)", id="shm-too-big"
        ),
        pytest.param(
            {"shm_size": "1k"}, "shm_size: '1k' is out of range (4k-16g)", id="shm-too-small"
        ),
        pytest.param(
            {"shm_size": "0.5g"},
            "shm_size: '0.5g' is not a size such as 64m (a whole number and k, m or g)",
            id="shm-fraction",
        ),
        pytest.param(
            {"cap_add": ["SYS_ADMIN"]},
            "cap_add[0]: SYS_ADMIN is refused: it mounts filesystems and makes namespaces: the "
            "classic container escape",
            id="cap-add-sys-admin",
        ),
        pytest.param(
            {"cap_add": ["NET_RAW", "CAP_DAC_READ_SEARCH"]},
            "cap_add[1]: DAC_READ_SEARCH is refused: open_by_handle_at reads any file of the "
            "host (the 'shocker' escape)",
            id="cap-add-shocker",
        ),
        pytest.param(
            {"cap_add": ["all"]},
            "cap_add[0]: ALL would add every capability, the refused ones too; name each one",
            id="cap-add-all",
        ),
        pytest.param(
            {"cap_add": ["NET_ADMN"]},
            "cap_add[0]: 'NET_ADMN' is not a Linux capability (did you mean 'NET_ADMIN'?)",
            id="cap-unknown",
        ),
        pytest.param(
            {"cap_drop": ["CHOWN", "cap_chown"]},
            "cap_drop[1]: CHOWN is listed twice",
            id="cap-twice",
        ),
        pytest.param(
            {"cap_add": ["CHOWN"], "cap_drop": ["NET_RAW", "chown"]},
            "cap_drop[1]: CHOWN is also in cap_add: add it or drop it",
            id="cap-added-and-dropped",
        ),
        pytest.param(
            {"ulimits": {"files": 10}},
            "ulimits.files: unknown ulimit (did you mean 'nofile'?); known: core, cpu, data, "
            "fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, "
            "sigpending, stack",
            id="ulimit-unknown",
        ),
        pytest.param(
            {"ulimits": {"nofile": {"soft": 10}}},
            "ulimits.nofile: needs hard (or give one number for both)",
            id="ulimit-no-hard",
        ),
        pytest.param(
            {"ulimits": {"nofile": {"soft": 100, "hard": 10}}},
            "ulimits.nofile: soft 100 is above hard 10",
            id="ulimit-soft-above-hard",
        ),
        pytest.param(
            {"ulimits": {"nofile": {"soft": "unlimited", "hard": 10}}},
            "ulimits.nofile: soft unlimited is above hard 10",
            id="ulimit-soft-unlimited",
        ),
        pytest.param(
            {"ulimits": {"nofile": -5}},
            f"ulimits.nofile: -5 is out of range (0-{2**63 - 1}, or unlimited)",
            id="ulimit-negative",
        ),
        pytest.param(
            {"ulimits": {"nofile": True}},
            "ulimits.nofile: must be a whole number or unlimited, not True",
            id="ulimit-bool",
        ),
        pytest.param(
            {"sysctls": {"kernel.core_pattern": "|/bin/sh"}},
            "sysctls.kernel.core_pattern: 'kernel.core_pattern' is not a sysctl of the "
            "container's own namespaces: net.* (but net.core.* only somaxconn and xfrm_*), "
            "kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem, kernel.shm_rmid_forced, "
            "kernel.shmall, kernel.shmmax, kernel.shmmni or fs.mqueue.*",
            id="sysctl-not-namespaced",
        ),
        pytest.param(
            {"sysctls": {"net.core.rmem_max": 1}},
            "sysctls.net.core.rmem_max: 'net.core.rmem_max' is not a sysctl of the container's "
            "own namespaces: net.* (but net.core.* only somaxconn and xfrm_*), kernel.msgmax, "
            "kernel.msgmnb, kernel.msgmni, kernel.sem, kernel.shm_rmid_forced, kernel.shmall, "
            "kernel.shmmax, kernel.shmmni or fs.mqueue.*",
            id="sysctl-net-core",
        ),
        pytest.param(
            {"sysctls": {"net/ipv4/ip_forward": 1}},
            "sysctls.'net/ipv4/ip_forward': 'net/ipv4/ip_forward' is not a sysctl name such as "
            "net.ipv4.tcp_syncookies",
            id="sysctl-slashes",
        ),
        pytest.param(
            {"sysctls": {"net.ipv4.ip_forward": "1\n"}},
            "sysctls.net.ipv4.ip_forward: must be a single line: '1\\n'",
            id="sysctl-value-newline",
        ),
        pytest.param(
            {"sysctls": {"net.ipv4.ip_forward": True}},
            "sysctls.net.ipv4.ip_forward: must be a string or a whole number, not True",
            id="sysctl-value-bool",
        ),
        pytest.param(
            {"healthcheck": ["true"]},
            "healthcheck: must be a mapping, not list",
            id="healthcheck-not-a-mapping",
        ),
        pytest.param(
            {"healthcheck": {"interval": 1}},
            "healthcheck: needs test: the argv the engine runs in the container to check health",
            id="healthcheck-no-test",
        ),
        pytest.param(
            {"healthcheck": {"test": "curl -f localhost"}},
            'healthcheck.test: must be a list of arguments such as ["httpd", "-f"], not the '
            "string 'curl -f localhost' (no shell is involved)",
            id="healthcheck-test-string",
        ),
        pytest.param(
            {"healthcheck": {"test": ["CMD-SHELL", "curl -f localhost || exit 1"]}},
            "healthcheck.test[0]: 'CMD-SHELL': give the argv itself; it runs as is, never "
            "through a shell",
            id="healthcheck-cmd-shell",
        ),
        pytest.param(
            {"healthcheck": {"test": ["true"], "interval": 0.0001}},
            "healthcheck.interval: 0.0001 is below the engine's minimum of 0.001 seconds",
            id="healthcheck-interval-below-1ms",
        ),
        pytest.param(
            {"healthcheck": {"test": ["true"], "retries": 0}},
            "healthcheck.retries: 0 is out of range (1-1000000)",
            id="healthcheck-retries-zero",
        ),
        pytest.param(
            {"healthcheck": {"test": ["true"], "start_period": "10s"}},
            "healthcheck.start_period: must be a number of seconds, not '10s'",
            id="healthcheck-duration-with-unit",
        ),
        pytest.param(
            {"healthcheck": {"test": ["true"], "start_interval": 1}},
            "healthcheck.start_interval: unknown key (did you mean 'interval'?); known "
            "keys: test, interval, timeout, retries, start_period",
            id="healthcheck-unknown-key",
        ),
    ],
)
def test_bad_options_name_their_key_path(fields: dict[str, Any], expected: str) -> None:
    assert option_error(**fields) == OPT + expected


# --- image sources: exactly one of build, image, from --------------------------------------------


def test_a_server_needs_a_source() -> None:
    assert error_of(servers(web={"ports": [80]})) == (
        "testservers.yaml: servers.web: needs one of build, image or from"
    )


def test_a_null_source_is_no_source() -> None:
    assert error_of(servers(web={"image": None})) == (
        "testservers.yaml: servers.web: needs one of build, image or from"
    )


@pytest.mark.parametrize(
    ("own", "named"),
    [
        pytest.param({"image": "busybox", "from": "debian"}, "image and from", id="image-from"),
        pytest.param({"build": "ctx", "image": "busybox"}, "build and image", id="build-image"),
        pytest.param(
            {"build": "ctx", "image": "busybox", "from": "debian"},
            "build and image and from",
            id="all-three",
        ),
    ],
)
def test_sources_exclude_each_other(project: Path, own: dict[str, Any], named: str) -> None:
    assert error_of(servers(web=own), project) == (
        f"testservers.yaml: servers.web: {named} exclude each other: "
        "use one of build, image or from"
    )


@pytest.mark.parametrize("key", ["before_install", "install", "copy", "run"])
@pytest.mark.parametrize("kind", ["image", "build"])
def test_generated_parts_only_go_with_from(project: Path, key: str, kind: str) -> None:
    source = {"image": "busybox"} if kind == "image" else {"build": "ctx"}
    values = {
        "before_install": ["true"],
        "install": ["curl"],
        "copy": [{"src": "app.conf", "dst": "/x"}],
        "run": ["true"],
    }
    data = servers(web={**source, key: values[key]})
    assert error_of(data, project) == (
        f"testservers.yaml: servers.web.{key}: only goes with from (this server uses {kind})"
    )


def test_a_generated_part_from_defaults_is_reported_at_defaults() -> None:
    data = {"defaults": {"image": "busybox", "run": ["true"]}, "servers": {"web": {}}}
    assert error_of(data) == (
        "testservers.yaml: defaults.run: only goes with from (this server uses image)"
    )


def test_apt_packages_are_checked() -> None:
    data = servers(web={"from": "debian", "install": ["curl", "-y"]})
    assert error_of(data) == (
        "testservers.yaml: servers.web.install[1]: '-y' is not a Debian package name"
    )


def test_run_steps_are_strings_or_argv_lists() -> None:
    spec = parse(servers(web={"from": "debian", "run": ["a && b", ["c", "d"]]})).servers["web"]
    assert isinstance(spec.image, GeneratedSource)
    assert spec.image.run == ("a && b", ("c", "d"))


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        pytest.param("echo hi", "servers.web.run: must be a list, not str 'echo hi'", id="string"),
        pytest.param([""], "servers.web.run[0]: must not be empty", id="empty-step"),
        pytest.param([[]], "servers.web.run[0]: must not be empty", id="empty-argv"),
        pytest.param([5], "servers.web.run[0]: must be a list, not int 5", id="int"),
    ],
)
def test_bad_run_steps(run: object, expected: str) -> None:
    assert error_of(servers(web={"from": "debian", "run": run})) == f"testservers.yaml: {expected}"


def test_before_install_steps_are_strings_or_argv_lists() -> None:
    data = servers(web={"from": "debian", "before_install": ["a && b", ["c", "d"]]})
    spec = parse(data).servers["web"]
    assert isinstance(spec.image, GeneratedSource)
    assert spec.image.before_install == ("a && b", ("c", "d"))
    assert spec.image.run == ()


def test_before_install_comes_from_defaults_like_the_other_parts() -> None:
    data = {
        "defaults": {"from": "debian", "before_install": ["echo from-defaults"]},
        "servers": {"web": {"install": ["curl"]}, "own": {"image": "busybox"}},
    }
    config = parse(data)
    web = config.servers["web"].image
    assert isinstance(web, GeneratedSource)
    assert web.before_install == ("echo from-defaults",)
    assert isinstance(config.servers["own"].image, ImageSource)  # its own source: no parts


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param("x", "before_install: must be a list, not str 'x'", id="string"),
        pytest.param(["ok", ""], "before_install[1]: must not be empty", id="empty-step"),
        pytest.param([[]], "before_install[0]: must not be empty", id="empty-argv"),
        pytest.param([{"a": 1}], "before_install[0]: must be a list, not dict", id="mapping"),
    ],
)
def test_bad_before_install_steps(steps: object, expected: str) -> None:
    message = error_of(servers(web={"from": "debian", "before_install": steps}))
    assert message.startswith(f"testservers.yaml: servers.web.{expected}")
    assert len(message.splitlines()) == 1


# --- copy ----------------------------------------------------------------------------------------


def test_copy_src_escaping_the_config_folder_is_refused(project: Path) -> None:
    data = servers(web={"from": "debian", "copy": [{"src": "../secret.txt", "dst": "/s"}]})
    assert error_of(data, project) == (
        f"testservers.yaml: servers.web.copy[0].src: '../secret.txt' leads outside {project}"
    )


def test_copy_src_symlink_escaping_the_config_folder_is_refused(project: Path) -> None:
    (project / "link.txt").symlink_to(project.parent / "secret.txt")
    data = servers(web={"from": "debian", "copy": [{"src": "link.txt", "dst": "/s"}]})
    assert error_of(data, project) == (
        f"testservers.yaml: servers.web.copy[0].src: 'link.txt' leads outside {project}"
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param({"dst": "/x"}, "servers.web.copy[0]: needs src", id="no-src"),
        pytest.param({"src": "app.conf"}, "servers.web.copy[0]: needs dst", id="no-dst"),
        pytest.param(
            {"src": "app.conf", "dst": "etc/app.conf"},
            "servers.web.copy[0].dst: 'etc/app.conf' is not an absolute path of plain "
            "characters (letters, digits, and . _ / @ + = : , -)",
            id="relative-dst",
        ),
        pytest.param(
            {"src": "app.conf", "dst": "/etc/../root/x"},
            "servers.web.copy[0].dst: '/etc/../root/x' must not contain '..'",
            id="dot-dot-dst",
        ),
        pytest.param(
            {"src": "app.conf", "dst": "/x", "mode": 755},
            "servers.web.copy[0].mode: 755 is ambiguous as a mode: "
            'quote it in octal, such as "0755"',
            id="int-mode",
        ),
        pytest.param(
            {"src": "site", "dst": "/srv", "mode": "0755"},
            "servers.web.copy[0].mode: applies to files only; a folder keeps its files' own modes",
            id="mode-on-folder",
        ),
        pytest.param(
            {"src": "missing.conf", "dst": "/x"},
            "servers.web.copy[0].src: 'missing.conf' does not exist in {project}",
            id="missing-src",
        ),
    ],
)
def test_bad_copy_items(project: Path, item: dict[str, Any], expected: str) -> None:
    data = servers(web={"from": "debian", "copy": [item]})
    assert error_of(data, project) == "testservers.yaml: " + expected.format(project=project)


# --- build ---------------------------------------------------------------------------------------


def test_build_as_a_string_is_the_context(project: Path) -> None:
    spec = parse(servers(web={"build": "ctx"}), project).servers["web"]
    assert spec.image == BuildSource(context=(project / "ctx").resolve(), dockerfile="Dockerfile")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(
            {"dockerfile": "Dockerfile"},
            "servers.web.build: needs context: the folder to build, relative to the config file",
            id="no-context",
        ),
        pytest.param(
            "app.conf", "servers.web.build.context: 'app.conf' is not a folder", id="file-context"
        ),
        pytest.param(
            "..",
            "servers.web.build.context: '..' leads outside {project}",
            id="context-outside",
        ),
        pytest.param(
            {"context": "site"},
            "servers.web.build.dockerfile: 'Dockerfile' does not exist in {project}/site",
            id="no-dockerfile",
        ),
        pytest.param(
            {"context": "ctx", "dockerfile": "../app.conf"},
            "servers.web.build.dockerfile: '../app.conf' leads outside {project}/ctx",
            id="dockerfile-outside-context",
        ),
        pytest.param(
            {"context": ".", "dockerfile": "site"},
            "servers.web.build.dockerfile: 'site' is not a file",
            id="dockerfile-folder",
        ),
        pytest.param(
            {"context": "ctx", "args": {"1X": "a"}},
            "servers.web.build.args.1X: '1X' is not a valid variable name "
            "(letters, digits, underscore)",
            id="bad-arg-name",
        ),
        pytest.param(
            {"context": "ctx", "target": "my stage"},
            "servers.web.build.target: 'my stage' is not a build stage name "
            "(letters, digits, _ . -)",
            id="bad-target",
        ),
        pytest.param(["ctx"], "servers.web.build: must be a mapping, not list", id="list"),
    ],
)
def test_bad_builds(project: Path, build: object, expected: str) -> None:
    data = servers(web={"build": build})
    assert error_of(data, project) == "testservers.yaml: " + expected.format(project=project)


# --- secret_env and ports ------------------------------------------------------------------------


def test_secret_env_overlapping_env_is_refused() -> None:
    data = servers(
        db={
            "image": "postgres",
            "env": {"PGUSER": "u", "PGPASSWORD": "x"},
            "secret_env": [
                "API_TOKEN",
                "PGPASSWORD",
            ],
        }
    )
    assert error_of(data) == (
        "testservers.yaml: servers.db.secret_env[1]: PGPASSWORD is also set in env; "
        "a secret comes only from the host"
    )


def test_secret_env_overlapping_env_from_defaults_is_refused() -> None:
    data = {
        "defaults": {"env": {"PGPASSWORD": "x"}},
        "servers": {"db": {"image": "postgres", "secret_env": ["PGPASSWORD"]}},
    }
    assert error_of(data).startswith(
        "testservers.yaml: servers.db.secret_env[0]: PGPASSWORD is also set in env"
    )


def test_secret_env_names_are_checked() -> None:
    data = servers(db={"image": "postgres", "secret_env": ["PG PASSWORD"]})
    assert error_of(data) == (
        "testservers.yaml: servers.db.secret_env[0]: 'PG PASSWORD' is not a valid variable "
        "name (letters, digits, underscore)"
    )


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        pytest.param([8080, 8080], "servers.web.ports[1]: 8080/tcp is listed twice", id="same"),
        pytest.param(
            [8080, "8080/tcp"], "servers.web.ports[1]: 8080/tcp is listed twice", id="tcp-spelled"
        ),
        pytest.param(
            ["53/udp", 80, "53/udp"], "servers.web.ports[2]: 53/udp is listed twice", id="udp"
        ),
    ],
)
def test_duplicate_ports_are_refused(ports: list[object], expected: str) -> None:
    assert error_of(servers(web={"image": "busybox", "ports": ports})) == (
        f"testservers.yaml: {expected}"
    )


def test_same_number_with_two_protocols_is_two_ports() -> None:
    spec = parse(servers(dns={"image": "busybox", "ports": [53, "53/udp"]})).servers["dns"]
    assert spec.ports == (Port(53, "tcp"), Port(53, "udp"))
    assert [str(p) for p in spec.ports] == ["53/tcp", "53/udp"]
    assert spec.port_for(53, "udp") == Port(53, "udp")
    assert spec.port_for(53) == Port(53, "tcp")
    assert spec.port_for(54) is None


# --- links ---------------------------------------------------------------------------------------


def test_links_to_an_undeclared_server_are_refused_with_a_suggestion() -> None:
    data = servers(web={"image": "busybox", "links": ["dbb"]}, db={"image": "postgres"})
    assert error_of(data) == (
        "testservers.yaml: servers.web.links[0]: 'dbb' is not a declared server "
        "(did you mean 'db'?)"
    )


def test_a_link_listed_twice_is_refused() -> None:
    data = servers(web={"image": "busybox", "links": ["db", "db"]}, db={"image": "postgres"})
    assert error_of(data) == "testservers.yaml: servers.web.links[1]: 'db' is listed twice"


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        pytest.param(
            {"a": ["b"], "b": ["a"]},
            "testservers.yaml: servers.a.links: links form a cycle: a -> b -> a",
            id="two",
        ),
        pytest.param(
            {"a": ["a"]}, "testservers.yaml: servers.a.links: links form a cycle: a -> a", id="self"
        ),
        pytest.param(
            {"a": ["b"], "b": ["c"], "c": ["a"]},
            "testservers.yaml: servers.a.links: links form a cycle: a -> b -> c -> a",
            id="three",
        ),
    ],
)
def test_link_cycles_are_refused(links: dict[str, list[str]], expected: str) -> None:
    data = servers(**{name: {"image": "busybox", "links": to} for name, to in links.items()})
    assert error_of(data) == expected


def diamond() -> ServerConfig:
    """a -> b, a -> c, b -> d, c -> d; e stands alone."""
    links = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": [], "e": []}
    return parse(servers(**{name: {"image": "busybox", "links": to} for name, to in links.items()}))


def test_networked_is_every_server_that_links_or_is_linked() -> None:
    assert diamond().networked == frozenset({"a", "b", "c", "d"})


def test_networked_is_empty_without_links() -> None:
    assert parse(servers(a={"image": "busybox"})).networked == frozenset()


@pytest.mark.parametrize(
    ("name", "order"),
    [
        pytest.param("a", ["d", "b", "c", "a"], id="diamond"),
        pytest.param("b", ["d", "b"], id="chain"),
        pytest.param("d", ["d"], id="leaf"),
        pytest.param("e", ["e"], id="alone"),
    ],
)
def test_start_order_puts_dependencies_first_once(name: str, order: list[str]) -> None:
    assert diamond().start_order(name) == order


# --- post_startup --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            ["pg_isready", "-U", "postgres"],
            PostStartup(("pg_isready", "-U", "postgres")),
            id="list-shorthand",
        ),
        pytest.param(
            {"command": ["pg_isready"], "retries": 10, "interval": 0.5},
            PostStartup(("pg_isready",), retries=10, interval=0.5),
            id="mapping",
        ),
        pytest.param(
            {"command": ["pg_isready"]}, PostStartup(("pg_isready",)), id="mapping-command-only"
        ),
    ],
)
def test_post_startup(value: object, expected: PostStartup) -> None:
    spec = parse(servers(db={"image": "postgres", "post_startup": value})).servers["db"]
    assert spec.post_startup == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            {"retries": 3},
            "servers.db.post_startup: needs command: the argv to run inside the container",
            id="no-command",
        ),
        pytest.param([], "servers.db.post_startup.command: must not be empty", id="empty-list"),
        pytest.param(
            {"command": "pg_isready -q"},
            "servers.db.post_startup.command: must be a list of arguments such as "
            '["httpd", "-f"], not the string \'pg_isready -q\' (no shell is involved)',
            id="command-string",
        ),
        pytest.param(
            {"command": ["x"], "retries": 0},
            "servers.db.post_startup.retries: 0 is out of range (1-1000000)",
            id="zero-retries",
        ),
        pytest.param(
            {"command": ["x"], "interval": -1},
            "servers.db.post_startup.interval: -1 is not a positive number of seconds",
            id="negative-interval",
        ),
        pytest.param(
            "pg_isready",
            "servers.db.post_startup: must be a mapping, not str",
            id="string",
        ),
    ],
)
def test_bad_post_startup(value: object, expected: str) -> None:
    data = servers(db={"image": "postgres", "post_startup": value})
    assert error_of(data) == f"testservers.yaml: {expected}"


# --- where errors point ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        pytest.param(
            {"timeout": -1},
            "testservers.yaml: defaults.timeout: -1 is not a positive number of seconds",
            id="timeout",
        ),
        pytest.param(
            {"ports": [80, 99999]},
            "testservers.yaml: defaults.ports[1]: 99999 is not a port (1-65535)",
            id="port",
        ),
        pytest.param(
            {"env": {"bad-key": "1"}},
            "testservers.yaml: defaults.env.bad-key: 'bad-key' is not a valid variable name "
            "(letters, digits, underscore)",
            id="env-key",
        ),
        pytest.param(
            {"command": "httpd -f"},
            "testservers.yaml: defaults.command: must be a list of arguments",
            id="command",
        ),
    ],
)
def test_a_bad_value_from_defaults_is_reported_at_defaults(
    defaults: dict[str, Any], expected: str
) -> None:
    data = {"defaults": {"image": "busybox", **defaults}, "servers": {"web": {}}}
    assert error_of(data).startswith(expected)


def test_an_undeclared_link_from_defaults_is_reported_at_defaults() -> None:
    data = {"defaults": {"image": "busybox", "links": ["nope"]}, "servers": {"web": {}}}
    assert error_of(data).startswith(
        "testservers.yaml: defaults.links[0]: 'nope' is not a declared server"
    )


def test_a_bad_server_value_overriding_defaults_is_reported_at_the_server() -> None:
    data = {"defaults": {"image": "busybox", "timeout": 5}, "servers": {"web": {"timeout": -1}}}
    assert error_of(data) == (
        "testservers.yaml: servers.web.timeout: -1 is not a positive number of seconds"
    )


def test_a_bad_server_env_value_is_reported_at_the_server() -> None:
    data = {
        "defaults": {"image": "busybox", "env": {"A": "1"}},
        "servers": {"web": {"env": {"A": [1]}}},
    }
    assert error_of(data) == (
        "testservers.yaml: servers.web.env.A: must be a string, a number or a boolean, not a list"
    )


# --- secrets stay out of repr --------------------------------------------------------------------


def test_server_spec_repr_does_not_contain_env_values() -> None:
    config = parse(
        servers(db={"image": "postgres", "env": {"POSTGRES_PASSWORD": "hunter2-s3cr3t"}})
    )
    spec = config.servers["db"]
    assert dict(spec.env) == {"POSTGRES_PASSWORD": "hunter2-s3cr3t"}
    assert "hunter2-s3cr3t" not in repr(spec)
    assert "hunter2-s3cr3t" not in repr(config)
    assert "hunter2-s3cr3t" not in str(spec)
    assert repr(spec).startswith("ServerSpec(name='db', image=ImageSource(ref='postgres')")


# --- helpers: require_server, bind_address, display_path -----------------------------------------


def test_require_server_returns_the_spec() -> None:
    config = parse(servers(db={"image": "postgres"}, web={"image": "busybox"}))
    assert require_server(config, "db", "test_x") is config.servers["db"]


def test_require_server_names_the_caller_and_suggests() -> None:
    config = parse(servers(db={"image": "postgres"}, web={"image": "busybox"}))
    with pytest.raises(ConfigError) as excinfo:
        require_server(config, "dbb", "test_query")
    assert str(excinfo.value) == (
        "testserver: test_query names 'dbb', which is not declared in testservers.yaml "
        "(did you mean 'db'?); declared servers: db, web"
    )


def test_require_server_with_no_servers_says_none() -> None:
    with pytest.raises(ConfigError, match=re.escape("; declared servers: none")):
        require_server(parse(None), "db", "test_query")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("127.0.0.1", "127.0.0.1", id="loopback"),
        pytest.param("0.0.0.0", "0.0.0.0", id="wildcard"),
        pytest.param("::1", "::1", id="ipv6"),
        pytest.param("0:0:0:0:0:0:0:1", "::1", id="ipv6-normalized"),
    ],
)
def test_bind_address_accepts_ip_addresses(value: str, expected: str) -> None:
    assert bind_address(value, "ini testserver_bind_address") == expected


@pytest.mark.parametrize("value", ["localhost", "127.0.0.256", "1.2.3", ""])
def test_bind_address_refuses(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^ini testserver_bind_address: ") as excinfo:
        bind_address(value, "ini testserver_bind_address")
    if value:
        assert str(excinfo.value).endswith(
            f"{value!r} is not an IP address (such as 127.0.0.1 or 0.0.0.0)"
        )


def test_display_path_is_relative_inside_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "sub" / "testservers.yaml") == "sub/testservers.yaml"


def test_display_path_is_absolute_outside_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert display_path(tmp_path / "testservers.yaml") == str(tmp_path / "testservers.yaml")


# --- load_config: reading the YAML file ----------------------------------------------------------


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write testservers.yaml in the (current) tmp folder; messages then name it plainly."""
    monkeypatch.chdir(tmp_path)

    def write(text: str | bytes) -> Path:
        path = tmp_path / SOURCE
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    message = str(excinfo.value)
    assert "\n" not in message, message
    assert message.startswith(f"{SOURCE}: "), message
    return message


FULL_YAML = """\
defaults:
  image: busybox:stable
  env:
    TZ: UTC
servers:
  web:
    command: [httpd, -f, -p, "8080"]
    ports: [8080, "53/udp"]
    env:
      WORKERS: 4
    links: [cache]
    post_startup: [wget, -q, localhost:8080]
  cache:
    from: debian:bookworm-slim
    install: [redis-server]
    copy:
      - {src: conf/redis.conf, dst: /etc/redis/redis.conf, mode: "0640"}
    run:
      - echo "ready" > /ready
"""


def test_load_config_reads_a_full_file(write: Any, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "redis.conf").write_text("port 6379\n")
    config = load_config(write(FULL_YAML))
    assert config.source == SOURCE
    web, cache = config.servers["web"], config.servers["cache"]
    assert web.image == ImageSource("busybox:stable")
    assert web.command == ("httpd", "-f", "-p", "8080")
    assert web.ports == (Port(8080), Port(53, "udp"))
    assert dict(web.env) == {"TZ": "UTC", "WORKERS": "4"}
    assert web.post_startup == PostStartup(("wget", "-q", "localhost:8080"))
    assert cache.image == GeneratedSource(
        base="debian:bookworm-slim",
        install=("redis-server",),
        copy=(
            CopyFile((tmp_path / "conf" / "redis.conf").resolve(), "/etc/redis/redis.conf", 0o640),
        ),
        run=('echo "ready" > /ready',),
    )
    assert config.networked == frozenset({"web", "cache"})
    assert config.start_order("web") == ["cache", "web"]


def test_load_config_resolves_paths_next_to_the_file_not_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "files").mkdir(parents=True)
    (project / "files" / "a.txt").write_text("a")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = project / SOURCE
    path.write_text(
        "servers:\n  web:\n    from: busybox\n    copy: [{src: files/a.txt, dst: /a.txt}]\n"
    )
    config = load_config(path)
    assert config.source == str(path)  # outside the working folder: shown absolute
    image = config.servers["web"].image
    assert isinstance(image, GeneratedSource)
    assert image.copy[0].src == (project / "files" / "a.txt").resolve()


def test_an_empty_file_declares_no_servers(write: Any) -> None:
    assert dict(load_config(write("")).servers) == {}
    assert dict(load_config(write("# nothing yet\n")).servers) == {}


def test_yaml_merge_keys_may_override(write: Any) -> None:
    text = """\
servers:
  web: &web
    image: busybox
    ports: [80]
  web2:
    <<: *web
    ports: [81]
"""
    config = load_config(write(text))
    assert config.servers["web2"].image == ImageSource("busybox")
    assert config.servers["web2"].ports == (Port(81),)


def test_a_validation_error_names_the_file(write: Any) -> None:
    path = write("servers:\n  web:\n    image: busybox\n    prots: [80]\n")
    assert load_error(path).startswith(
        "testservers.yaml: servers.web.prots: unknown key (did you mean 'ports'?)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "servers:\n  web:\n    image: busybox\n    ports: [80]\n    ports: [81]\n",
            "testservers.yaml: line 5: duplicate key 'ports' (first on line 4)",
            id="duplicate-key",
        ),
        pytest.param(
            "servers:\n  web:\n    image: busybox\n  web:\n    image: nginx\n",
            "testservers.yaml: line 4: duplicate key 'web' (first on line 2)",
            id="duplicate-server",
        ),
        pytest.param(
            "servers:\n  web:\n    image: busybox\n    env:\n      1: one\n",
            "testservers.yaml: line 5: keys must be strings, not 1",
            id="int-key",
        ),
        pytest.param(
            "servers:\n  web:\n    image: busybox\n    env: {on: 1}\n",
            "testservers.yaml: line 4: keys must be strings, not True",
            id="yaml11-bool-key",
        ),
        pytest.param(
            "? [a, b]\n: 1\n",
            "testservers.yaml: line 1: keys must be strings, not ['a', 'b']",
            id="list-key",
        ),
    ],
)
def test_yaml_keys_must_be_unique_strings(write: Any, text: str, expected: str) -> None:
    assert load_error(write(text)) == expected


@pytest.mark.parametrize(
    ("tag", "shown"),
    [
        pytest.param(
            "!!python/object/apply:os.system",
            "tag:yaml.org,2002:python/object/apply:os.system",
            id="apply",
        ),
        pytest.param(
            "!!python/object/new:subprocess.Popen",
            "tag:yaml.org,2002:python/object/new:subprocess.Popen",
            id="new",
        ),
    ],
)
def test_python_tags_are_refused_and_nothing_runs(
    write: Any, tmp_path: Path, tag: str, shown: str
) -> None:
    marker = tmp_path / "pwned"
    text = f'servers:\n  web:\n    image: busybox\n    timeout: {tag} ["touch {marker}"]\n'
    assert load_error(write(text)) == (
        f"testservers.yaml: line 4: could not determine a constructor for the tag {shown!r}"
    )
    assert not marker.exists()


def test_python_name_tag_is_refused(write: Any) -> None:
    message = load_error(write("servers: !!python/name:os.system\n"))
    assert message == (
        "testservers.yaml: line 1: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/name:os.system'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "servers: [unclosed\n",
            "testservers.yaml: line 2: expected ',' or ']', but got '<stream end>'",
            id="unclosed-bracket",
        ),
        pytest.param(
            "servers:\n\tweb: {}\n",
            "testservers.yaml: line 2: found character '\\t' that cannot start any token",
            id="tab",
        ),
        pytest.param(
            "servers:\n  web: image: busybox\n",
            "testservers.yaml: line 2: mapping values are not allowed here",
            id="colon-in-value",
        ),
        pytest.param(
            "servers:\n  web:\n    image: busybox\n   ports: [80]\n",
            "testservers.yaml: line 4: expected <block end>, but found '<block mapping start>'",
            id="bad-indentation",
        ),
        pytest.param(
            'servers: "unterminated\n',
            "testservers.yaml: line 2: found unexpected end of stream",
            id="unterminated-string",
        ),
    ],
)
def test_syntax_errors_are_one_line_starting_with_the_file_name(
    write: Any, text: str, expected: str
) -> None:
    assert load_error(write(text)) == expected


def test_invalid_utf8_is_one_line(write: Any) -> None:
    message = load_error(write(b"servers: \xff\n"))
    assert message.startswith("testservers.yaml: invalid YAML: unacceptable character #x00ff")


def test_a_missing_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_error(tmp_path / SOURCE) == (
        "testservers.yaml: cannot read: No such file or directory"
    )


def test_a_top_level_list_is_refused(write: Any) -> None:
    assert load_error(write("- web\n- db\n")) == "testservers.yaml: must be a mapping, not list"


def test_an_unquoted_date_env_value_is_refused_not_crashed(write: Any) -> None:
    text = "servers:\n  web:\n    image: busybox\n    env:\n      SINCE: 2024-01-31\n"
    assert load_error(write(text)) == (
        "testservers.yaml: servers.web.env.SINCE: must be a string, a number or a boolean, "
        "not a date"
    )


def test_an_impossible_date_is_a_config_error(write: Any) -> None:
    text = "servers:\n  web:\n    image: busybox\n    env:\n      SINCE: 2024-13-01\n"
    assert load_error(write(text)).startswith("testservers.yaml: line 5: ")


def test_share_defaults_to_run_and_accepts_worker() -> None:
    data = {"servers": {"a": {"image": "busybox"}, "b": {"image": "busybox", "share": "worker"}}}
    config = parse_config(data, base=Path("."), source="testservers.yaml")
    assert config.servers["a"].share == "run"
    assert config.servers["b"].share == "worker"


def test_share_is_one_of_run_or_worker() -> None:
    data = {"servers": {"a": {"image": "busybox", "share": "session"}}}
    assert error_of(data) == (
        "testservers.yaml: servers.a.share: 'session' is not one of run, worker"
    )


def test_linked_servers_must_share_alike() -> None:
    data = {
        "servers": {
            "db": {"image": "busybox"},
            "web": {"image": "busybox", "share": "worker", "links": ["db"]},
        }
    }
    assert error_of(data) == (
        "testservers.yaml: servers.web.links[0]: 'db' has share: run but 'web' has share: "
        "worker; linked servers must share alike (they join one network): give 'db' share: "
        "worker"
    )


# --- port ranges and fixed host ports ------------------------------------------------------------


def ports_of(ports: list[object], **extra: object) -> tuple[Port, ...]:
    return parse(servers(ftp={"image": "busybox", "ports": ports, **extra})).servers["ftp"].ports


def ports_error(ports: list[object], **extra: object) -> str:
    return error_of(servers(ftp={"image": "busybox", "ports": ports, **extra}))


def test_a_range_expands_to_one_port_each_marked_ranged() -> None:
    ports = ports_of(["30000-30009", "40000-40001/udp"])
    assert [str(p) for p in ports] == [
        *(f"{n}/tcp" for n in range(30000, 30010)),
        "40000/udp",
        "40001/udp",
    ]
    assert all(p.ranged and p.host is None for p in ports)
    assert [p.entry for p in ports] == [0] * 10 + [1, 1]


def test_ranged_ports_are_not_in_the_default_readiness_check() -> None:
    spec = parse(
        servers(ftp={"image": "busybox", "ports": [21, "30000-30009", "2121:2100", "53/udp"]})
    ).servers["ftp"]
    assert spec.checks.tcp == (21, 2100)
    # An explicit check may still name a port in the range (a server listening there).
    spec = parse(
        servers(ftp={"image": "busybox", "ports": ["30000-30009"], "wait": {"tcp": 30005}})
    ).servers["ftp"]
    assert spec.checks.tcp == (30005,)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param("2121:21", [(21, "tcp", 2121)], id="short"),
        pytest.param("2121:21/tcp", [(21, "tcp", 2121)], id="short-tcp"),
        pytest.param("5353:53/udp", [(53, "udp", 5353)], id="short-udp"),
        pytest.param({"target": 21, "published": 2121}, [(21, "tcp", 2121)], id="mapping"),
        pytest.param(
            {"target": 53, "published": 5353, "protocol": "udp"},
            [(53, "udp", 5353)],
            id="mapping-udp",
        ),
        pytest.param({"target": 21}, [(21, "tcp", None)], id="mapping-engine-chooses"),
        pytest.param(
            "30000-30002:30000-30002",
            [(30000, "tcp", 30000), (30001, "tcp", 30001), (30002, "tcp", 30002)],
            id="range-to-range",
        ),
        pytest.param(
            "40000-40001:30000-30001/udp",
            [(30000, "udp", 40000), (30001, "udp", 40001)],
            id="range-shifted",
        ),
        pytest.param(
            {"target": "30000-30001", "published": "30000-30001"},
            [(30000, "tcp", 30000), (30001, "tcp", 30001)],
            id="mapping-range",
        ),
    ],
)
def test_fixed_host_ports(entry: object, expected: list[tuple[int, str, int | None]]) -> None:
    assert [(p.number, p.protocol, p.host) for p in ports_of([entry])] == expected


def test_port_identity_is_the_container_side() -> None:
    # handle.port(21) looks up Port(21): it must find the port however it is published.
    (port,) = ports_of(["2121:21"])
    assert port == Port(21)
    assert hash(port) == hash(Port(21))
    assert str(port) == "21/tcp"


def test_a_range_may_hold_256_ports() -> None:
    assert len(ports_of(["1-256"])) == 256


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        pytest.param(
            ["30009-30000"],
            "ports[0]: 30009-30000 is not a range: it must go from low to high",
            id="backwards",
        ),
        pytest.param(["0-10"], "ports[0]: 0 is not a port (1-65535)", id="zero"),
        pytest.param(["65535-65536"], "ports[0]: 65536 is not a port (1-65535)", id="above"),
        pytest.param(
            ["1-257"],
            "ports[0]: 1-257 is 257 ports, more than 256 in one range (the engine publishes "
            "each port on its own)",
            id="too-long",
        ),
        pytest.param(
            ["30000-30009", 30005],
            "ports[1]: 30005/tcp is already in ports[0] (30000-30009/tcp)",
            id="single-in-range",
        ),
        pytest.param(
            ["30000-30009", "30009-30010"],
            "ports[1]: 30009-30010/tcp overlaps ports[0] (30000-30009/tcp) at 30009/tcp",
            id="ranges-overlap",
        ),
        pytest.param([21, "2121:21"], "ports[1]: 21/tcp is listed twice", id="same-container-port"),
        pytest.param(
            ["2121:21", {"target": 22, "published": 2121}],
            "ports[1]: host port 2121/tcp is also the host port of ports[0] (2121:21/tcp)",
            id="same-host-port",
        ),
        pytest.param(
            ["30000-30009:30000-30004"],
            "ports[0]: host ports 30000-30009 and container ports 30000-30004 differ in length: "
            "a fixed host range maps one to one onto the container range",
            id="lengths-differ",
        ),
        pytest.param(
            ["8000-8010:80"],
            "ports[0]: host ports 8000-8010 and container ports 80 differ in length: a fixed "
            "host range maps one to one onto the container range",
            id="host-range-to-one",
        ),
        pytest.param(
            ["127.0.0.1:2121:21"],
            "ports[0]: '127.0.0.1:2121:21': a port entry takes no address; every port is "
            "published on the run's bind address (ini testserver_bind_address)",
            id="with-address",
        ),
        pytest.param(
            ["0.0.0.0:2121:21/tcp"],
            "ports[0]: '0.0.0.0:2121:21/tcp': a port entry takes no address; every port is "
            "published on the run's bind address (ini testserver_bind_address)",
            id="with-wildcard-address",
        ),
        pytest.param(
            ["21:"],
            'ports[0]: \'21:\' is not a port entry (8080, "53/udp", "30000-30009", '
            '"2121:21", or a mapping with target)',
            id="junk",
        ),
        pytest.param(
            [{"published": 2121}],
            "ports[0]: needs target: the container port (or range, such as 30000-30009)",
            id="mapping-without-target",
        ),
        pytest.param(
            [{"target": 21, "host_ip": "0.0.0.0"}],
            "ports[0].host_ip: unknown key; known keys: target, published, protocol",
            id="mapping-unknown-key",
        ),
        pytest.param(
            [{"target": 21, "protocol": "sctp"}],
            "ports[0].protocol: 'sctp' is not one of tcp, udp",
            id="mapping-protocol",
        ),
        pytest.param(
            [{"target": "21/tcp"}],
            "ports[0].target: '21/tcp' is not a port or a range of ports (such as 21 or "
            "30000-30009)",
            id="mapping-target-with-protocol",
        ),
        pytest.param(
            [{"target": True}], "ports[0].target: True is not a port (1-65535)", id="bool"
        ),
    ],
)
def test_bad_port_entries_name_the_entry(ports: list[object], expected: str) -> None:
    assert ports_error(ports) == f"testservers.yaml: servers.ftp.{expected}"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            {"share": "worker"},
            "2121:21/tcp fixes a host port, which cannot go with share: worker: every xdist "
            "worker's container would publish the same host port; use share: run (the "
            "default), or leave the host port to the engine",
            id="share-worker",
        ),
        pytest.param(
            {"scope": "function"},
            "2121:21/tcp fixes a host port, which cannot go with scope: function: a fresh "
            "container and the one it replaces (or its warm spare) would publish the same host "
            "port; use scope: session with reset:, or leave the host port to the engine",
            id="scope-function",
        ),
    ],
)
def test_a_fixed_host_port_needs_one_container_at_a_time(
    extra: dict[str, str], expected: str
) -> None:
    assert ports_error([80, "2121:21"], **extra) == (
        f"testservers.yaml: servers.ftp.ports[1]: {expected}"
    )
    # Without a fixed host port the same server is fine.
    assert ports_of([80, 21], **extra) == (Port(80), Port(21))


def test_two_servers_cannot_fix_one_host_port() -> None:
    data = servers(
        a={"image": "busybox", "ports": ["2121:21"]},
        b={"image": "busybox", "ports": [22, "2121:2100"]},
    )
    assert error_of(data) == (
        "testservers.yaml: servers.b.ports[1]: host port 2121/tcp of server 'b' is also "
        "published by server 'a'; two servers cannot hold one host port"
    )
    data["servers"]["b"]["ports"] = [22, "2121:2100/udp"]  # another protocol: another port
    assert parse(data).servers["b"].ports[1].host == 2121


def test_a_fixed_host_port_from_defaults_is_reported_there() -> None:
    data = {
        "defaults": {"image": "busybox", "ports": ["2121:21"]},
        "servers": {"a": {}, "b": {}},
    }
    assert error_of(data) == (
        "testservers.yaml: defaults.ports[0]: host port 2121/tcp of server 'b' is also "
        "published by server 'a'; two servers cannot hold one host port"
    )


def test_two_sources_cannot_fix_one_host_port() -> None:
    from pytest_testserver.config import combine

    yaml_config = parse(servers(a={"image": "busybox", "ports": ["2121:21"]}))
    hook = parse_config(
        servers(b={"image": "busybox", "ports": ["2121:21"]}),
        base=Path(),
        source="conftest.py::pytest_testserver_servers",
    )
    with pytest.raises(ConfigError) as error:
        combine([yaml_config, hook])
    assert str(error.value) == (
        "conftest.py::pytest_testserver_servers: servers.b.ports[0]: host port 2121/tcp of "
        "server 'b' is also published by server 'a'; two servers cannot hold one host port"
    )


def test_bind_local_cannot_give_a_port_a_host_port_another_entry_fixes() -> None:
    from pytest_testserver.config import check_settings
    from pytest_testserver.settings import RunSettings

    config = parse(servers(web={"image": "busybox", "ports": ["8080:80", 8080]}))
    check_settings(config, RunSettings())
    with pytest.raises(ConfigError) as error:
        check_settings(config, RunSettings(bind_local=True))
    assert str(error.value) == (
        "testservers.yaml: servers.web.ports[1]: bind-local publishes 8080/tcp at host port "
        "8080, which ports[0] (8080:80/tcp) fixes as its host port; give one of them another "
        "host port"
    )


def test_the_reuse_definition_includes_host_ports() -> None:
    from pytest_testserver.kept import reuse_definition
    from pytest_testserver.reuse import definition_digest
    from pytest_testserver.settings import RunSettings

    def digest(ports: list[object], settings: RunSettings | None = None) -> str:
        spec = parse(servers(ftp={"image": "busybox", "ports": ports})).servers["ftp"]
        definition = reuse_definition(spec, "sha256:abc", {}, settings or RunSettings())
        return definition_digest(definition)

    assert digest(["2121:21"]) == digest([{"target": 21, "published": 2121}])
    assert digest(["2121:21"]) != digest(["2122:21"])
    assert digest(["2121:21"]) != digest([21])
    assert digest(["21:21"]) != digest([21])
    assert digest(["21:21"]) == digest([21], RunSettings(bind_local=True))


# --- which source wins: sources.py, on plain values ----------------------------------------------

INI_DEFAULTS: dict[str, object] = {
    "testserver_bind_address": "",
    "testserver_bind_local": False,
    "testserver_unavailable": "error",
    "testserver_spares": "1",
    "testserver_reuse": False,
    "testserver_reuse_idle": "1800",
    "testserver_registry_mirror": "",
}
NO_OPTIONS: dict[str, object] = {
    "testserver_bind_local": False,
    "testserver_keep": False,
    "testserver_rebuild": None,
    "testserver_reuse": False,
}


def settings_from(
    ini: dict[str, object] | None = None,
    options: dict[str, object] | None = None,
    environ: dict[str, str] | None = None,
) -> Any:
    from pytest_testserver.sources import read_settings

    return read_settings(
        {**INI_DEFAULTS, **(ini or {})}.__getitem__,
        {**NO_OPTIONS, **(options or {})},
        environ or {},
        "/project",
    )


def test_settings_default_to_the_ini_defaults() -> None:
    from pytest_testserver.settings import RunSettings

    assert settings_from() == RunSettings(project="/project")


def test_the_bind_address_of_the_environment_wins_over_the_ini() -> None:
    ini = {"testserver_bind_address": "0.0.0.0"}
    assert settings_from(ini).bind_address == "0.0.0.0"
    env = {"TESTSERVER_BIND_ADDRESS": "::1"}
    assert settings_from(ini, environ=env).bind_address == "::1"
    assert settings_from(ini, environ={"TESTSERVER_BIND_ADDRESS": ""}).bind_address == "0.0.0.0"


def test_a_bad_bind_address_names_the_source_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"\$TESTSERVER_BIND_ADDRESS"):
        settings_from(environ={"TESTSERVER_BIND_ADDRESS": "localhost"})
    with pytest.raises(ConfigError, match="ini testserver_bind_address"):
        settings_from({"testserver_bind_address": "localhost"})


@pytest.mark.parametrize(
    ("ini", "options", "environ", "on"),
    [
        ({}, {}, {}, False),
        ({"testserver_bind_local": True}, {}, {}, True),
        ({}, {"testserver_bind_local": True}, {}, True),
        ({}, {}, {"TESTSERVER_BIND_LOCAL": "1"}, True),
        ({}, {}, {"TESTSERVER_BIND_LOCAL": "off"}, False),
        ({"testserver_bind_local": True}, {}, {"TESTSERVER_BIND_LOCAL": "0"}, True),
    ],
)
def test_bind_local_is_on_when_any_source_turns_it_on(
    ini: dict[str, object], options: dict[str, object], environ: dict[str, str], on: bool
) -> None:
    assert settings_from(ini, options, environ).bind_local is on


def test_reuse_is_on_from_the_option_or_the_ini_keep_and_rebuild_only_from_options() -> None:
    assert settings_from({"testserver_reuse": True}).reuse
    assert settings_from(options={"testserver_reuse": True}).reuse
    both = settings_from(options={"testserver_keep": True, "testserver_rebuild": True})
    assert (both.keep, both.rebuild) == (True, True)


def test_ini_values_are_parsed_and_a_bad_one_names_its_ini_key() -> None:
    parsed = settings_from(
        {
            "testserver_spares": "3",
            "testserver_unavailable": "skip",
            "testserver_reuse_idle": "60",
        }
    )
    assert (parsed.spares, parsed.unavailable, parsed.reuse_idle) == (3, "skip", 60.0)
    with pytest.raises(ConfigError, match="ini testserver_spares"):
        settings_from({"testserver_spares": "9"})


def test_the_config_option_is_relative_to_the_invocation_folder_the_ini_to_the_ini_file() -> None:
    from pytest_testserver.sources import config_path

    here, ini_dir = Path("/work/sub"), Path("/work")
    assert config_path("x.yaml", "y.yaml", invocation_dir=here, ini_dir=ini_dir) == (
        here / "x.yaml",
        True,
    )
    assert config_path(None, "y.yaml", invocation_dir=here, ini_dir=ini_dir) == (
        ini_dir / "y.yaml",
        True,
    )
    # the default name is not the user's choice: a missing file means no servers, not an error
    assert config_path(None, "testservers.yaml", invocation_dir=here, ini_dir=ini_dir) == (
        ini_dir / "testservers.yaml",
        False,
    )


def test_a_named_config_file_must_exist_an_unnamed_one_may_not(tmp_path: Path) -> None:
    from pytest_testserver.sources import read_servers

    missing = tmp_path / "testservers.yaml"
    assert read_servers(missing, named=False, declarations=[]) is None
    with pytest.raises(ConfigError, match=r"config file .* does not exist"):
        read_servers(missing, named=True, declarations=[])


def test_the_yaml_file_and_the_hooks_combine_and_a_server_declared_twice_is_an_error(
    tmp_path: Path,
) -> None:
    from pytest_testserver.sources import Declaration, read_servers

    path = tmp_path / "testservers.yaml"
    path.write_text("servers:\n  web:\n    image: nginx:1\n    ports: [80]\n")
    calls: list[str] = []

    def hook(servers: dict[str, object] | None) -> Declaration:
        def call() -> object:
            calls.append("called")
            return {"servers": servers} if servers is not None else None

        return Declaration(call=call, where=tmp_path / "conftest.py", function="declare")

    db = {"db": {"image": "redis:7", "ports": [6379]}}
    combined = read_servers(path, named=False, declarations=[hook(db), hook(None)])
    assert combined is not None
    assert sorted(combined.servers) == ["db", "web"]
    assert calls == ["called", "called"]
    only_hooks = read_servers(tmp_path / "none.yaml", named=False, declarations=[hook(db)])
    assert only_hooks is not None
    assert "conftest.py::declare" in only_hooks.source
    assert read_servers(tmp_path / "none.yaml", named=False, declarations=[hook(None)]) is None
    twice = {"web": {"image": "nginx:1", "ports": [80]}}
    with pytest.raises(ConfigError, match="web"):
        read_servers(path, named=False, declarations=[hook(twice)])


def test_an_ini_switch_is_not_read_when_the_option_turns_it_on() -> None:
    from pytest_testserver.sources import read_settings

    def ini(name: str) -> object:
        if name in ("testserver_bind_local", "testserver_reuse"):
            raise AssertionError(f"{name} was read")
        return INI_DEFAULTS[name]

    options = {**NO_OPTIONS, "testserver_bind_local": True, "testserver_reuse": True}
    settings = read_settings(ini, options, {}, "/project")
    assert (settings.bind_local, settings.reuse) == (True, True)
