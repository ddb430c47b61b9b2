"""Unit tests of config.py and containeroptions.py found unchecked by mutation testing
(``nox -s mutants``): which values the run masks, settings that cannot work together, errors of a
configuration combined from several sources, and the container options' limits and key names.

Pure logic, no engine, no pytester (test_config.py holds the rest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_testserver.config import (
    ServerConfig,
    check_settings,
    combine,
    declared_secrets,
    parse_config,
    secret_values,
)
from pytest_testserver.errors import ConfigError
from pytest_testserver.settings import RunSettings

SOURCE = "testservers.yaml"
BUSYBOX = {"image": "busybox:stable"}


def parse(data: object, source: str = SOURCE, **kwargs: Any) -> ServerConfig:
    return parse_config(data, base=Path(), source=source, **kwargs)


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as excinfo:
        parse(data)
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def built(project: Path, **args: str) -> dict[str, Any]:
    (project / "Dockerfile").write_text("FROM busybox:stable\n")
    return {"build": {"context": ".", "args": args}}


# --- secrets: what the run masks -----------------------------------------------------------------


def test_secret_env_values_and_build_args_are_all_declared_secrets(tmp_path: Path) -> None:
    config = parse_config(
        {
            "servers": {
                "web": {
                    **built(tmp_path, API_TOKEN="build-token", VERSION="1.2"),
                    "env": {
                        "DB_PASSWORD": "env-password",
                        "MODE": "dev",
                    },
                },
            }
        },
        base=tmp_path,
        source=SOURCE,
    )
    assert sorted(declared_secrets(config)) == ["build-token", "env-password"]
    assert sorted(secret_values(config, {})) == ["build-token", "env-password"]


def test_a_secret_env_value_is_masked_as_the_container_gets_it() -> None:
    config = parse(
        {
            "servers": {
                "web": {
                    **BUSYBOX,
                    "env": {"DB_PASSWORD": "pw-${TOKEN}", "MODE": "${TOKEN}"},
                    "secret_env": ["TOKEN"],
                }
            }
        }
    )
    assert sorted(secret_values(config, {"TOKEN": "t0k3n"})) == ["pw-t0k3n", "t0k3n"]
    # A secret the host does not set counts as empty (that server will not start anyway).
    assert secret_values(config, {}) == ["pw-"]


# --- check_settings: bind-local ------------------------------------------------------------------


def test_share_worker_with_ports_cannot_be_bind_local() -> None:
    config = parse({"servers": {"web": {**BUSYBOX, "ports": [80], "share": "worker"}}})
    check_settings(config, RunSettings())
    with pytest.raises(ConfigError) as error:
        check_settings(config, RunSettings(bind_local=True))
    assert str(error.value) == (
        "testservers.yaml: servers.web.share: worker cannot be combined with bind-local: every "
        "xdist worker would publish the same port numbers; use share: run (the default)"
    )


def test_share_worker_without_ports_can_be_bind_local() -> None:
    config = parse({"servers": {"web": {**BUSYBOX, "share": "worker"}}})
    check_settings(config, RunSettings(bind_local=True))


# --- combine: several sources --------------------------------------------------------------------

HOOK = "conftest.py::pytest_testserver_servers"


def test_a_combined_configuration_names_both_sources() -> None:
    yaml_config = parse({"servers": {"db": BUSYBOX}})
    hook = parse({"servers": {"web": BUSYBOX}}, source=HOOK)
    both = combine([yaml_config, hook])
    assert both.source == f"{SOURCE} + {HOOK}"
    assert list(both.servers) == ["db", "web"]


def test_a_link_across_sources_that_cannot_share_is_named_under_servers() -> None:
    yaml_config = parse({"servers": {"db": {**BUSYBOX, "share": "worker"}}})
    hook = parse(
        {"servers": {"web": {**BUSYBOX, "links": ["db"]}}}, source=HOOK, declared_elsewhere=("db",)
    )
    with pytest.raises(ConfigError) as error:
        combine([yaml_config, hook])
    assert str(error.value).startswith(f"{SOURCE} + {HOOK}: servers.web.links[0]: 'db' has share")


def test_a_volume_across_sources_that_cannot_share_is_named_under_servers() -> None:
    yaml_config = parse(
        {"servers": {"db": {**BUSYBOX, "share": "worker", "volumes": ["data:/data"]}}}
    )
    hook = parse({"servers": {"web": {**BUSYBOX, "volumes": ["data:/srv"]}}}, source=HOOK)
    with pytest.raises(ConfigError) as error:
        combine([yaml_config, hook])
    assert str(error.value).startswith(
        f"{SOURCE} + {HOOK}: servers.web.volumes: volume 'data' is also mounted by 'db'"
    )


# --- container options: limits and the key each error names -------------------------------------


def option_error(**fields: Any) -> str:
    return error_of({"servers": {"db": {**BUSYBOX, **fields}}})


OPT = "testservers.yaml: servers.db."


@pytest.mark.parametrize(
    ("ulimits", "expected"),
    [
        ({"nofile": {"soft": "x", "hard": 1}}, "ulimits.nofile.soft: must be a whole number"),
        ({"nofile": {"soft": 1, "hard": "x"}}, "ulimits.nofile.hard: must be a whole number"),
        ({"nofile": {"soft": 1, "hard": 2, "max": 3}}, "ulimits.nofile.max: unknown key"),
        ({"nofile": ["x"]}, "ulimits.nofile: must be a whole number or unlimited, not ['x']"),
        (["nofile"], "ulimits: must be a mapping, not list"),
    ],
)
def test_a_bad_ulimit_names_its_key(ulimits: object, expected: str) -> None:
    assert option_error(ulimits=ulimits).startswith(OPT + expected)


@pytest.mark.parametrize("path", ["/sys", "/sys/fs", "/dev", "/dev/shm", "/proc"])
def test_a_tmpfs_over_the_kernels_folders_is_refused(path: str) -> None:
    assert option_error(tmpfs=[path]) == (
        f"{OPT}tmpfs[0]: {path!r}: a tmpfs over / or the kernel's /proc, /sys or /dev is refused"
    )


@pytest.mark.parametrize("path", ["/a,b", "/a:b", "/a=b"])
def test_a_tmpfs_path_with_a_mount_option_separator_is_refused(path: str) -> None:
    assert option_error(tmpfs=[path]).endswith(
        "a tmpfs path must not hold , : or = (mount option separators)"
    )


def test_tmpfs_paths_like_the_kernels_folders_are_accepted() -> None:
    config = parse({"servers": {"db": {**BUSYBOX, "tmpfs": ["/system", "/devices", "/run"]}}})
    assert len(config.servers["db"].options.tmpfs) == 3


@pytest.mark.parametrize(
    ("value", "where"),
    [({"path": 5}, "tmpfs[0].path: must be a string"), (5, "tmpfs[0]: must be a mapping")],
)
def test_a_bad_tmpfs_entry_names_its_key(value: object, where: str) -> None:
    assert option_error(tmpfs=[value]).startswith(OPT + where)


def test_a_sysctl_value_of_256_characters_is_accepted_and_257_is_refused() -> None:
    key = "net.core.somaxconn"
    config = parse({"servers": {"db": {**BUSYBOX, "sysctls": {key: "1" * 256}}}})
    assert dict(config.servers["db"].options.sysctls)[key] == "1" * 256
    assert option_error(sysctls={key: "1" * 257}).startswith(f"{OPT}sysctls.{key}: '111")


@pytest.mark.parametrize("value", ["caf\u00e9", "a\tb", "a\x7fb"])
def test_a_sysctl_value_must_be_printable_ascii(value: str) -> None:
    key = "net.core.somaxconn"
    assert option_error(sysctls={key: value}) == (
        f"{OPT}sysctls.{key}: {value!a} is not a printable ASCII value of at most 256 characters"
    )


# --- server keys a user sets: none may be ignored ------------------------------------------------


def test_image_timeout_is_read_and_defaults_to_15_minutes() -> None:
    config = parse({"servers": {"a": BUSYBOX, "b": {**BUSYBOX, "image_timeout": 60}}})
    assert config.servers["a"].image_timeout == 900.0
    assert config.servers["b"].image_timeout == 60.0
    assert error_of({"servers": {"b": {**BUSYBOX, "image_timeout": "soon"}}}).startswith(
        "testservers.yaml: servers.b.image_timeout: "
    )


def test_restart_is_read_and_defaults_to_fresh() -> None:
    config = parse({"servers": {"a": BUSYBOX, "b": {**BUSYBOX, "restart": "never"}}})
    assert config.servers["a"].restart == "fresh"
    assert config.servers["b"].restart == "never"
    assert error_of({"servers": {"b": {**BUSYBOX, "restart": "always"}}}) == (
        "testservers.yaml: servers.b.restart: 'always' is not one of fresh, never"
    )


def test_an_env_file_is_read_from_the_config_folder_and_its_values_are_literal(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.env").write_text("GREETING=hello\nPRICE=5$\n")
    config = parse_config(
        {"servers": {"web": {**BUSYBOX, "env_file": "app.env", "env": {"MODE": "dev"}}}},
        base=tmp_path,
        source=SOURCE,
    )
    spec = config.servers["web"]
    assert spec.env_file is not None
    assert spec.env_file.path == (tmp_path / "app.env").resolve()
    assert spec.env_file.keys == ("GREETING", "PRICE")
    assert dict(spec.env) == {"GREETING": "hello", "PRICE": "5$$", "MODE": "dev"}


# --- what --testserver-list shows of the container options ---------------------------------------


def test_the_listing_describes_every_option_set() -> None:
    config = parse(
        {
            "servers": {
                "db": {
                    **BUSYBOX,
                    "user": "www-data:1000",
                    "working_dir": "/srv",
                    "entrypoint": ["/entry.sh", "--flag"],
                    "tmpfs": [
                        "/run",
                        {"path": "/cache/", "size": "64M", "mode": "01777"},
                        {"path": "/k", "size": "12k"},
                    ],
                    "cap_add": ["net_admin", "sys_nice"],
                    "cap_drop": ["ALL"],
                    "shm_size": "1g",
                    "ulimits": {"nofile": {"soft": 1024, "hard": 4096}, "memlock": "unlimited"},
                    "sysctls": {"net.ipv4.ip_forward": 1},
                    "healthcheck": {"test": ["pg_isready", "-U", "postgres"]},
                }
            }
        }
    )
    assert config.servers["db"].options.describe() == [
        "user www-data:1000",
        "working_dir /srv",
        "entrypoint ['/entry.sh', '--flag']",
        "tmpfs /run",
        "tmpfs /cache (size 64m, mode 1777)",
        "tmpfs /k (size 12k)",
        "cap_add NET_ADMIN SYS_NICE",
        "cap_drop ALL",
        "shm_size 1g",
        "ulimit nofile 1024:4096",
        "ulimit memlock unlimited:unlimited",
        "sysctl net.ipv4.ip_forward=1",
        "healthcheck ['pg_isready', '-U', 'postgres']",
    ]


def test_an_empty_entrypoint_is_described_as_none() -> None:
    config = parse({"servers": {"db": {**BUSYBOX, "entrypoint": [], "command": ["httpd"]}}})
    assert config.servers["db"].options.describe() == ["entrypoint none"]
