"""Compose files as the server source (compose.py, composeservice.py): reading, merging,
translating, refusing. Pure logic: no engine."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from pytest_testserver import variables
from pytest_testserver.composeservice import IGNORED, REFUSED, RESOURCES
from pytest_testserver.config import BuildSource, ImageSource, ServerConfig
from pytest_testserver.containeroptions import Tmpfs, Ulimit
from pytest_testserver.errors import ConfigError
from pytest_testserver.listing import describe
from pytest_testserver.mounts import AnonymousVolume, BindMount, NamedVolume
from pytest_testserver.portspec import Port
from pytest_testserver.sources import ComposeSource, read_servers


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def load(
    project: Path,
    text: str | None = None,
    *,
    files: tuple[str, ...] = ("docker-compose.yml",),
    environ: Mapping[str, str] | None = None,
    profiles: tuple[str, ...] = (),
    overlay: str | None = None,
) -> ServerConfig:
    if text is not None:
        write(project / files[0], text)
    yaml_path = project / "testservers.yaml"
    if overlay is not None:
        write(yaml_path, overlay)
    source = ComposeSource(tuple(project / f for f in files), profiles, environ or {})
    config = read_servers(yaml_path, False, [], None, source)
    assert config is not None
    return config


def error(project: Path, text: str, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(project, text, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # messages show paths relative to here
    return tmp_path


def service(body: str) -> str:
    return "services:\n  web:\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n"


# translation of the supported keys
def test_common_keys_become_the_plugins_own(project: Path) -> None:
    (project / "www").mkdir()
    write(project / "web.env", "FROM_FILE=file\nOVERRIDDEN=file\n")
    config = load(
        project,
        """
        services:
          web:
            image: busybox:stable
            command: sh -c 'echo "$$HOME" && exec httpd -f'
            entrypoint: ["/bin/env", "--"]
            environment:
              - PLAIN=1
              - OVERRIDDEN=environment
            env_file: web.env
            ports: ["18080:8080", "53/udp", {target: 9000, published: 19000}, "30000-30002"]
            expose: ["7000"]
            volumes: [data:/data, "cache:/cache:ro", ./www:/www:ro, /anon]
            tmpfs: ["/run:size=64m,mode=1777", /tmp]
            user: "1000:1000"
            working_dir: /srv
            init: true
            cap_add: [NET_ADMIN]
            cap_drop: [ALL]
            sysctls: ["net.core.somaxconn=1024"]
            ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
            shm_size: 64m
            hostname: web1
            domainname: test.local
            labels: ["team=qa"]
        volumes: {data: {}, cache: {}}
        """,
    )
    spec = config.servers["web"]
    assert spec.image == ImageSource("busybox:stable")
    # split as compose does, never through a host shell; $$ was compose's $, kept literal
    assert spec.command == ("sh", "-c", 'echo "$$HOME" && exec httpd -f')
    assert variables.expand_argv(spec.command, {})[2] == 'echo "$HOME" && exec httpd -f'
    assert spec.options.entrypoint == ("/bin/env", "--")
    assert dict(spec.env) == {"FROM_FILE": "file", "OVERRIDDEN": "environment", "PLAIN": "1"}
    assert spec.ports == (
        Port(8080),
        Port(53, "udp"),
        Port(9000),
        Port(30000),
        Port(30001),
        Port(30002),
    )
    assert all(p.host is None for p in spec.ports)  # the engine picks: runs never collide
    assert spec.volumes == (
        NamedVolume("data", "/data"),
        NamedVolume("cache", "/cache", read_only=True),
        BindMount((project / "www").resolve(), "/www"),
        AnonymousVolume("/anon"),
    )
    assert spec.options.tmpfs == (Tmpfs("/run", 64 << 20, 0o1777), Tmpfs("/tmp"))
    assert spec.options.user == "1000:1000"
    assert spec.options.working_dir == "/srv"
    assert spec.init is True
    assert spec.options.cap_add == ("NET_ADMIN",)
    assert spec.options.cap_drop == ("ALL",)
    assert spec.options.sysctls == (("net.core.somaxconn", "1024"),)
    assert spec.options.ulimits == (Ulimit("nofile", 1024, 2048), Ulimit("nproc", 512, 512))
    assert spec.options.shm_size == 64 << 20
    assert (spec.hostname, spec.domain) == ("web1", "test.local")
    assert spec.labels == (("team", "qa"),)
    assert spec.on_network
    assert spec.declared_at == "docker-compose.yml:2"
    assert config.notes == (
        "docker-compose.yml: services.web.ports[0]: the host port is ignored: the engine "
        "publishes 8080 on a free loopback port (testserver.port(8080) gives it), so that runs "
        "never collide",
        "docker-compose.yml: services.web.ports[2]: the host port is ignored: the engine "
        "publishes 9000 on a free loopback port (testserver.port(9000) gives it), so that runs "
        "never collide",
    )


def test_build_with_context_dockerfile_args_and_target(project: Path) -> None:
    write(project / "app" / "Containerfile", "FROM busybox:stable AS base\n")
    config = load(
        project,
        service("""
        build:
          context: ./app
          dockerfile: Containerfile
          target: base
          args: ["VERSION=${VERSION:-1.0}", "FROM_ENV", "MISSING"]
        image: ignored/when-built
        """),
        environ={"FROM_ENV": "env"},
    )
    image = config.servers["web"].image
    assert isinstance(image, BuildSource)
    assert image.context == (project / "app").resolve()
    assert (image.dockerfile, image.target) == ("Containerfile", "base")
    assert image.args == (("FROM_ENV", "env"), ("VERSION", "1.0"))


@pytest.mark.parametrize(
    ("test", "argv"),
    [
        ('["CMD", "wget", "-q", "http://127.0.0.1/"]', ("wget", "-q", "http://127.0.0.1/")),
        (
            '["CMD-SHELL", "wget -q http://x/ || exit 1"]',
            ("/bin/sh", "-c", "wget -q http://x/ || exit 1"),
        ),
        ('"pg_isready -U app"', ("/bin/sh", "-c", "pg_isready -U app")),
    ],
)
def test_healthchecks_of_each_form_are_waited_on(
    project: Path, test: str, argv: tuple[str, ...]
) -> None:
    config = load(
        project,
        service(f"""
        image: busybox:stable
        healthcheck: {{test: {test}, interval: 1m30s, timeout: 500ms, start_period: 2s, retries: 3}}
        """),
    )
    spec = config.servers["web"]
    check = spec.options.healthcheck
    assert check is not None
    assert check.test == argv
    assert (check.interval, check.timeout, check.start_period, check.retries) == (90, 0.5, 2, 3)
    assert spec.checks.healthcheck


@pytest.mark.parametrize("check", ['{test: ["NONE"]}', "{disable: true}"])
def test_a_disabled_healthcheck_is_none(project: Path, check: str) -> None:
    spec = load(project, service(f"image: busybox:stable\nhealthcheck: {check}")).servers["web"]
    assert spec.options.healthcheck is None
    assert not spec.checks.healthcheck


def test_depends_on_conditions(project: Path) -> None:
    config = load(
        project,
        """
        services:
          db: {image: busybox:stable}
          seed: {image: busybox:stable, depends_on: {db: {condition: service_healthy}}}
          app:
            image: busybox:stable
            depends_on:
              seed: {condition: service_completed_successfully}
              db: {condition: service_started, restart: true}
              cache: {condition: service_started, required: false}
          other: {image: busybox:stable, depends_on: [db]}
        """,
    )
    s = config.servers
    assert s["app"].links == ("seed", "db")
    assert s["other"].links == ("db",)
    assert s["seed"].oneshot
    assert not s["db"].oneshot
    assert not s["app"].oneshot
    assert s["db"].checks.healthcheck  # service_healthy: its (image's) healthcheck is waited on
    assert config.start_order("app") == ["db", "seed", "app"]
    assert all(spec.on_network for spec in s.values())  # compose's one default network
    assert "exited with code 0 (one-shot" in describe(config)
    assert config.notes == (
        "docker-compose.yml: services.app.depends_on.db.restart: ignored: a server that dies "
        "is started afresh for the next test that needs it",
    )


def test_long_mount_options(project: Path) -> None:
    config = load(
        project,
        service("""
        image: busybox:stable
        volumes:
          - {type: volume, source: data, target: /data, volume: {nocopy: true}}
          - {type: tmpfs, target: /scratch, tmpfs: {size: 1m}}
          - {type: volume, target: /anon, consistency: cached}
        """)
        + "volumes: {data: {}}\n",
    )
    spec = config.servers["web"]
    assert spec.volumes == (NamedVolume("data", "/data"), AnonymousVolume("/anon"))
    assert spec.options.tmpfs == (Tmpfs("/scratch", 1 << 20),)
    assert config.notes == (
        "docker-compose.yml: services.web.volumes[0].volume: ignored: the engine's defaults apply",
        "docker-compose.yml: services.web.volumes[2].consistency: ignored: the engine's "
        "defaults apply",
    )
    text = service(
        "image: busybox:stable\n"
        "volumes: [{type: volume, source: data, target: /d, volume: {subpath: etc}}]"
    )
    assert error(project, text + "volumes: {data: {}}\n") == (
        "docker-compose.yml: services.web.volumes[0].volume.subpath: refused: a volume is "
        "mounted whole"
    )


def test_depends_on_a_cycle_is_one_line(project: Path) -> None:
    text = """
    services:
      a: {image: busybox:stable, depends_on: [b]}
      b: {image: busybox:stable, depends_on: [a]}
    """
    assert error(project, text) == (
        "docker-compose.yml: services.a.depends_on: forms a cycle: a -> b -> a"
    )


def test_network_aliases_are_the_servers_aliases(project: Path) -> None:
    config = load(
        project,
        """
        services:
          web:
            image: busybox:stable
            networks:
              front: {aliases: [www, shop]}
              default: {aliases: [shop, web-alias]}
        networks: {front: {}}
        """,
    )
    assert config.servers["web"].aliases == ("www", "shop", "web-alias")


def test_bare_environment_keys_come_from_the_run_or_dotenv(project: Path) -> None:
    write(project / ".env", "FROM_DOTENV=dot\nBOTH=dotenv\n")
    spec = load(
        project,
        service("image: busybox:stable\nenvironment: [API_TOKEN, FROM_DOTENV, BOTH, ABSENT]"),
        environ={"API_TOKEN": "t0ken", "BOTH": "environment"},
    ).servers["web"]
    # from the run: read at start like secret_env (masked everywhere); from .env: a value
    assert spec.secret_env == ("API_TOKEN", "BOTH")
    assert dict(spec.env) == {"FROM_DOTENV": "dot"}


def test_the_environment_wins_over_dotenv_in_interpolation(project: Path) -> None:
    write(project / ".env", "TAG=from-dotenv\nPORT=81\n")
    spec = load(
        project,
        service('image: "busybox:${TAG}"\nports: ["${PORT}"]'),
        environ={"TAG": "stable"},
    ).servers["web"]
    assert spec.image == ImageSource("busybox:stable")
    assert spec.ports == (Port(81),)


def test_a_dollar_in_a_value_stays_literal(project: Path) -> None:
    spec = load(
        project, service("image: busybox:stable\nenvironment: {PW: 'a$$b${X:-c}'}")
    ).servers["web"]
    env = variables.resolve_env(dict(spec.env), {})
    assert env == {"PW": "a$bc"}


def test_secret_looking_values_are_masked_in_the_listing(project: Path) -> None:
    write(project / ".env", "DB_PASSWORD=hunter2-pw\n")
    config = load(
        project,
        service("""
        image: busybox:stable
        environment: {DB_PASSWORD: "${DB_PASSWORD:?}"}
        command: ["echo", "${DB_PASSWORD}"]
        """),
    )
    listing = describe(config)
    assert "hunter2-pw" not in listing
    assert "***" in listing
    assert "from:    docker-compose.yml:2" in listing


# profiles
PROFILES = """
services:
  web: {image: busybox:stable}
  debug: {image: busybox:stable, profiles: [debug]}
  tools: {image: busybox:stable, profiles: [tools, debug]}
"""


@pytest.mark.parametrize(
    ("profiles", "environ", "expected"),
    [
        ((), {}, ["web"]),
        (("debug",), {}, ["web", "debug", "tools"]),
        (("debug",), {"COMPOSE_PROFILES": "tools"}, ["web", "tools"]),
        ((), {"COMPOSE_PROFILES": "tools, debug"}, ["web", "debug", "tools"]),
    ],
)
def test_profiles(
    project: Path, profiles: tuple[str, ...], environ: dict[str, str], expected: list[str]
) -> None:
    config = load(project, PROFILES, profiles=profiles, environ=environ)
    assert list(config.servers) == expected


def test_depending_on_a_service_left_out_by_its_profile_is_an_error(project: Path) -> None:
    text = PROFILES + "  app: {image: busybox:stable, depends_on: [debug]}\n"
    assert error(project, text) == (
        "docker-compose.yml: services.app.depends_on.debug: 'debug' is in profile(s) debug, "
        "none of which is enabled"
    )


# several files
def test_a_later_file_overrides_an_earlier_one(project: Path) -> None:
    write(
        project / "docker-compose.yml",
        """
        services:
          web:
            image: busybox:1
            command: ["a"]
            environment: {A: "1", B: "1"}
            ports: ["80"]
            volumes: ["data:/data", "logs:/logs"]
        volumes: {data: {}, logs: {}}
        """,
    )
    write(
        project / "override.yml",
        """
        services:
          web:
            image: busybox:stable
            command: ["b"]
            environment: ["B=2", "C=3"]
            ports: ["81"]
            volumes: ["data:/logs:ro"]
          extra: {image: busybox:stable}
        """,
    )
    config = load(project, files=("docker-compose.yml", "override.yml"))
    web = config.servers["web"]
    assert web.image == ImageSource("busybox:stable")
    assert web.command == ("b",)
    assert dict(web.env) == {"A": "1", "B": "2", "C": "3"}
    assert web.ports == (Port(80), Port(81))
    assert web.volumes == (NamedVolume("data", "/data"), NamedVolume("data", "/logs", True))
    assert list(config.servers) == ["web", "extra"]
    assert config.source == "docker-compose.yml + override.yml"


def test_an_error_names_the_file_that_set_the_key(project: Path) -> None:
    write(project / "docker-compose.yml", service("image: busybox:stable"))
    write(project / "override.yml", service("privileged: true"))
    with pytest.raises(ConfigError, match=r"^override\.yml: services\.web\.privileged: refused"):
        load(project, files=("docker-compose.yml", "override.yml"))


# testservers.yaml adds to a service
def test_testservers_yaml_adds_how_the_plugin_runs_a_service(project: Path) -> None:
    config = load(
        project,
        service("image: busybox:stable\nenvironment: {A: '1'}"),
        overlay="""
        servers:
          web:
            wait: {tcp: 80}
            reset: ["true"]
            scope: module
            env: {B: "${A}"}
          own: {image: busybox:stable, links: [web], scope: module}
        """,
    )
    web = config.servers["web"]
    assert web.checks.tcp == (80,)
    assert web.reset == ("true",)
    assert web.scope == "module"
    assert variables.resolve_env(dict(web.env), {}) == {"A": "1", "B": "1"}
    assert config.servers["own"].links == ("web",)


def test_testservers_yaml_cannot_replace_a_services_image(project: Path) -> None:
    message = error(
        project,
        service("image: busybox:stable"),
        overlay="servers:\n  web:\n    image: evil\n",
    )
    assert message.startswith(
        "testservers.yaml: servers.web.image: 'web' is a service of docker-compose.yml, which "
        "declares its image"
    )


# what is refused, what is ignored
REFUSED_VALUES = {
    "privileged": "true",
    "network_mode": "host",
    "pid": "host",
    "ipc": "host",
    "uts": "host",
    "userns_mode": "host",
    "cgroup": "host",
    "cgroup_parent": "x",
    "devices": '["/dev/sda:/dev/sda"]',
    "device_cgroup_rules": '["c 1:3 mr"]',
    "gpus": "all",
    "security_opt": '["seccomp:unconfined"]',
    "volumes_from": "[other]",
    "secrets": "[s]",
    "configs": "[c]",
    "credential_spec": "{file: x}",
    "runtime": "runc",
    "use_api_socket": "true",
    "external_links": "[x]",
    "extends": "{service: other}",
    "provider": "{type: x}",
}


def test_every_refused_key_is_tested() -> None:
    assert set(REFUSED_VALUES) == set(REFUSED)


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_a_refused_key_is_a_one_line_error_naming_file_service_and_key(
    project: Path, key: str
) -> None:
    text = service(f"image: busybox:stable\n{key}: {REFUSED_VALUES[key]}")
    assert error(project, text) == (
        f"docker-compose.yml: services.web.{key}: refused: {REFUSED[key]}"
    )


def test_privileged_false_is_no_privilege(project: Path) -> None:
    assert "web" in load(project, service("image: busybox:stable\nprivileged: false")).servers


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("volumes: ['/etc:/etc:ro']", "volumes[0]: refused: '/etc' is outside the project"),
        ("volumes: ['~/.ssh:/k:ro']", "volumes[0]: refused: '~/.ssh' is outside the project"),
        ("volumes: ['../up:/x:ro']", "volumes[0]: '../up' leads outside"),
        (
            "volumes: ['./data:/data']",
            "volumes[0]: refused: the bind of './data' must be read-only",
        ),
        (
            "volumes: [{type: bind, source: ./data, target: /d}]",
            "volumes[0].source: refused: the bind of './data' must be read-only",
        ),
        ("volumes: [{type: npipe, source: x, target: /d}]", "volumes[0].type: refused"),
        ("volumes: ['undeclared:/d']", "volumes[0]: volume 'undeclared' is not declared"),
        ("cap_add: [SYS_ADMIN]", "cap_add[0]: SYS_ADMIN is refused"),
        ("labels: {pytest-testserver.run: x}", "labels.pytest-testserver.run: refused"),
        ("build: {context: ., ssh: [default]}", "build.ssh: refused"),
        ("build: {context: ., network: host}", "build.network: refused"),
        ("build: https://example.com/repo.git", "build.context: refused"),
        ("build: ../up", "build.context: '../up' leads outside"),
        ("env_file: ../up.env", "env_file[0]: '../up.env' leads outside"),
        ("networks: [elsewhere]", "networks.elsewhere: network 'elsewhere' is not declared"),
    ],
)
def test_paths_out_of_the_project_and_other_refusals(
    project: Path, body: str, expected: str
) -> None:
    (project / "data").mkdir()
    (project.parent / "up").mkdir(exist_ok=True)
    (project.parent / "up.env").write_text("A=1\n")
    message = error(project, service(f"image: busybox:stable\n{body}"))
    assert message.startswith(f"docker-compose.yml: services.web.{expected}"), message


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ("volumes: {data: {external: true}}", "volumes.data.external: refused"),
        ("volumes: {data: {driver_opts: {device: /}}}", "volumes.data.driver_opts: refused"),
        ("networks: {net: {external: true}}", "networks.net.external: refused"),
        ("include: [other.yml]", "include: refused"),
        ("secrets: {s: {file: /etc/shadow}}", "secrets: refused"),
    ],
)
def test_refused_top_level_keys(project: Path, top: str, expected: str) -> None:
    message = error(project, service("image: busybox:stable") + top + "\n")
    assert message.startswith(f"docker-compose.yml: {expected}"), message


IGNORED_VALUES = {
    "restart": "always",
    "deploy": "{replicas: 2}",
    "container_name": "fixed",
    "logging": "{driver: none}",
    "stop_grace_period": "1s",
    "stop_signal": "SIGINT",
    "platform": "linux/amd64",
    "pull_policy": "always",
    "pull_refresh_after": "1h",
    "scale": "2",
    "attach": "false",
    "annotations": "{a: b}",
    "develop": "{}",
    "mac_address": "02:42:ac:11:00:02",
    "dns": "[1.1.1.1]",
    "dns_opt": "[use-vc]",
    "dns_search": "example.com",
    "extra_hosts": '["h:1.2.3.4"]',
    "links": "[db]",
    "stdin_open": "true",
    "tty": "true",
    "read_only": "true",
    "group_add": "[mail]",
    "isolation": "default",
    "storage_opt": "{size: 1G}",
    "post_start": "[{command: [x]}]",
    "pre_stop": "[{command: [x]}]",
    "label_file": "labels.txt",
    "models": "[m]",
    "blkio_config": "{weight: 300}",
    "oom_kill_disable": "true",
    "oom_score_adj": "100",
    "mem_swappiness": "0",
    "cpu_count": "1",
    "cpu_percent": "50",
    "cpuset": "'0'",
}


def test_every_ignored_key_is_tested() -> None:
    assert set(IGNORED) - set(IGNORED_VALUES) <= {
        k for k, why in IGNORED.items() if why == RESOURCES
    }


@pytest.mark.parametrize("key", sorted(IGNORED))
def test_an_ignored_key_is_one_note_naming_file_service_and_key(project: Path, key: str) -> None:
    value = IGNORED_VALUES.get(key, "1")
    config = load(project, service(f"image: busybox:stable\n{key}: {value}"))
    assert config.notes == (f"docker-compose.yml: services.web.{key}: ignored: {IGNORED[key]}",)


def test_top_level_name_and_version_are_noted(project: Path) -> None:
    config = load(project, "name: shop\nversion: '3.9'\n" + service("image: busybox:stable"))
    assert config.notes == (
        "docker-compose.yml: name: ignored: the run names its own project",
        "docker-compose.yml: version: ignored: obsolete",
    )


# the schema and the plugin's own checks
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "imagee: busybox",
            "services.web.imagee: unknown key in the compose specification (did you mean 'image'?)",
        ),
        ("ports: 80", "services.web.ports: must be array, not a number (compose specification)"),
        (
            "healthcheck: {test: [CMD, wget], interval: 10x}",
            "services.web.healthcheck.interval: '10x' is not a duration",
        ),
        ("healthcheck: {test: [BAD]}", 'services.web.healthcheck.test: must start with "CMD"'),
        (
            "depends_on: {db: {condition: whenever}}",
            "services.web.depends_on.db.condition: must be one of",
        ),
        ("depends_on: [nope]", "services.web.depends_on.nope: 'nope' is not a service"),
        ('command: "echo \'unclosed"', "services.web.command: cannot be split into arguments"),
        ("ports: ['70000']", "services.web.ports[0]: 70000 is not a port (1-65535)"),
        (
            "environment: {'1BAD': x}",
            "services.web.environment.1BAD: '1BAD' is not a valid variable name",
        ),
        ("shm_size: 1000", "services.web.shm_size: 1000 is not a whole number of kilobytes"),
    ],
)
def test_bad_values_are_one_line_errors(project: Path, body: str, expected: str) -> None:
    (project / "db").mkdir()
    message = error(project, service(f"image: busybox:stable\n{body}"))
    assert message.startswith(f"docker-compose.yml: {expected}"), message


def test_a_schema_error_never_shows_the_value(project: Path) -> None:
    message = error(project, service("image: busybox:stable\nenvironment: {TOKEN: [s3cret]}"))
    assert "s3cret" not in message


def test_no_service_and_no_file(project: Path) -> None:
    assert error(project, "services: {}\n") == "docker-compose.yml: declares no services"
    with pytest.raises(ConfigError, match=r"compose file 'nope\.yml' does not exist"):
        read_servers(project / "t.yaml", False, [], None, ComposeSource((Path("nope.yml"),)))


def test_testservers_yaml_may_name_the_compose_files(project: Path) -> None:
    write(project / "compose" / "base.yml", service("image: busybox:stable"))
    write(project / "compose" / "more.yml", "services:\n  db: {image: busybox:stable}\n")
    write(project / "testservers.yaml", "compose: [compose/base.yml, compose/more.yml]\n")
    config = read_servers(project / "testservers.yaml", True, [], None, ComposeSource(()))
    assert config is not None
    assert list(config.servers) == ["web", "db"]
    assert config.source == "compose/base.yml + compose/more.yml + testservers.yaml"
    # the ini's (or the command line's) files win
    write(project / "other.yml", "services:\n  other: {image: busybox:stable}\n")
    source = ComposeSource((project / "other.yml",))
    config = read_servers(project / "testservers.yaml", True, [], None, source)
    assert config is not None
    assert list(config.servers) == ["other"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../up.yml", "compose: '../up.yml' leads outside"),
        ("[]", "compose: must name at least one compose file"),
        ("[compose]", "compose[0]: 'compose' is not a file"),
    ],
)
def test_a_bad_compose_key_is_one_line(project: Path, value: str, expected: str) -> None:
    (project / "compose").mkdir()
    (project.parent / "up.yml").write_text("services: {}\n")
    write(project / "testservers.yaml", f"compose: {value}\n")
    with pytest.raises(ConfigError) as info:
        read_servers(project / "testservers.yaml", True, [], None, ComposeSource(()))
    assert str(info.value).startswith(f"testservers.yaml: {expected}"), str(info.value)


def test_a_compose_file_given_as_testservers_yaml_says_where_it_belongs(project: Path) -> None:
    write(project / "testservers.yaml", service("image: busybox:stable"))
    with pytest.raises(ConfigError) as info:
        read_servers(project / "testservers.yaml", True, [], None, ComposeSource(()))
    assert str(info.value) == (
        "testservers.yaml: services: this looks like a compose file: name it with ini "
        "testserver_compose or --testserver-compose (or compose: in testservers.yaml)"
    )


def test_importing_the_plugin_imports_no_jsonschema() -> None:
    code = (
        "import sys, pytest_testserver.plugin, pytest_testserver.sources;"
        "print('jsonschema' in sys.modules, 'pytest_testserver.compose' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
