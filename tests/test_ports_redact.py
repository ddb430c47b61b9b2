"""Unit tests of pytest_testserver.ports (publishing and reaching ports) and .redact (secrets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_testserver.config import Port, parse_config
from pytest_testserver.ports import (
    handle_host,
    is_port_conflict,
    port_bindings,
    published_ports,
    taken_port,
    taken_port_message,
)
from pytest_testserver.redact import MASK, Redactor, looks_secret
from pytest_testserver.settings import RunSettings

PORTS = (Port(8080), Port(53, "udp"), Port(5432))
EPHEMERAL = RunSettings()
BIND_LOCAL = RunSettings(bind_local=True)


# --- port_bindings -------------------------------------------------------------------------------


def test_port_bindings_ephemeral_on_loopback() -> None:
    assert port_bindings(PORTS, EPHEMERAL) == {
        "8080/tcp": ("127.0.0.1", None),
        "53/udp": ("127.0.0.1", None),
        "5432/tcp": ("127.0.0.1", None),
    }


def test_port_bindings_bind_local_uses_the_same_number() -> None:
    assert port_bindings(PORTS, BIND_LOCAL) == {
        "8080/tcp": ("127.0.0.1", 8080),
        "53/udp": ("127.0.0.1", 53),
        "5432/tcp": ("127.0.0.1", 5432),
    }


def test_port_bindings_use_the_bind_address() -> None:
    settings = RunSettings(bind_address="0.0.0.0")
    assert port_bindings((Port(80),), settings) == {"80/tcp": ("0.0.0.0", None)}


def test_port_bindings_without_ports_is_empty() -> None:
    assert port_bindings((), EPHEMERAL) == {}


FIXED = (Port(21, host=2121), Port(30000, host=30000, ranged=True), Port(8080))


def test_port_bindings_fixed_host_ports_in_either_mode() -> None:
    assert port_bindings(FIXED, EPHEMERAL) == {
        "21/tcp": ("127.0.0.1", 2121),
        "30000/tcp": ("127.0.0.1", 30000),
        "8080/tcp": ("127.0.0.1", None),
    }
    assert port_bindings(FIXED, BIND_LOCAL)["21/tcp"] == ("127.0.0.1", 2121)
    assert port_bindings(FIXED, BIND_LOCAL)["8080/tcp"] == ("127.0.0.1", 8080)


def test_published_ports_fixed_host_ports_without_inspect_data() -> None:
    inspect = inspect_data({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]})
    assert published_ports(inspect, FIXED, EPHEMERAL) == {
        Port(21): 2121,
        Port(30000): 30000,
        Port(8080): 49153,
    }


# --- handle_host ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("docker_host", "bind_address", "expected"),
    [
        pytest.param(None, "127.0.0.1", "127.0.0.1", id="no-docker-host"),
        pytest.param("", "127.0.0.1", "127.0.0.1", id="empty-docker-host"),
        pytest.param(
            "unix:///var/run/docker.sock", "127.0.0.1", "127.0.0.1", id="unix-socket-loopback"
        ),
        pytest.param(
            "unix:///var/run/docker.sock", "192.168.1.5", "192.168.1.5", id="unix-socket-address"
        ),
        pytest.param(None, "0.0.0.0", "127.0.0.1", id="wildcard-to-loopback"),
        pytest.param(None, "::", "127.0.0.1", id="ipv6-wildcard-to-loopback"),
        pytest.param(None, "::1", "::1", id="ipv6-loopback"),
        pytest.param("tcp://h:2376", "127.0.0.1", "h", id="tcp"),
        pytest.param(
            "tcp://docker.example.com:2375", "0.0.0.0", "docker.example.com", id="tcp-fqdn"
        ),
        pytest.param("tcp://10.0.0.7:2376", "127.0.0.1", "10.0.0.7", id="tcp-ip"),
        pytest.param("ssh://user@h", "127.0.0.1", "h", id="ssh-user"),
        pytest.param("ssh://user@h:2222", "127.0.0.1", "h", id="ssh-port"),
        pytest.param("https://h:2376", "127.0.0.1", "h", id="https"),
        pytest.param("npipe:////./pipe/docker_engine", "127.0.0.1", "127.0.0.1", id="npipe"),
    ],
)
def test_handle_host(docker_host: str | None, bind_address: str, expected: str) -> None:
    assert handle_host(docker_host, bind_address) == expected


# --- published_ports -----------------------------------------------------------------------------


def inspect_data(ports: dict[str, Any]) -> dict[str, Any]:
    return {"Id": "abc", "NetworkSettings": {"Ports": ports}}


def test_published_ports_reads_host_ports_from_inspect() -> None:
    inspect = inspect_data(
        {
            "8080/tcp": [
                {"HostIp": "127.0.0.1", "HostPort": "49153"},
                {"HostIp": "::1", "HostPort": "49154"},
            ],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "49155"}],
            "9999/tcp": None,  # exposed by the image, not published
        }
    )
    assert published_ports(inspect, PORTS, EPHEMERAL) == {
        Port(8080): 49153,
        Port(53, "udp"): 49155,
    }


@pytest.mark.parametrize(
    "inspect",
    [
        pytest.param({}, id="no-network-settings"),
        pytest.param({"NetworkSettings": None}, id="null-network-settings"),
        pytest.param({"NetworkSettings": {"Ports": None}}, id="null-ports"),
        pytest.param(inspect_data({"8080/tcp": []}), id="empty-bindings"),
        pytest.param(inspect_data({"8080/tcp": None}), id="null-bindings"),
    ],
)
def test_published_ports_missing_data_gives_nothing(inspect: dict[str, Any]) -> None:
    assert published_ports(inspect, (Port(8080),), EPHEMERAL) == {}


def test_published_ports_bind_local_are_the_container_numbers() -> None:
    assert published_ports({}, PORTS, BIND_LOCAL) == {
        Port(8080): 8080,
        Port(53, "udp"): 53,
        Port(5432): 5432,
    }


def test_published_ports_does_not_mix_protocols() -> None:
    inspect = inspect_data({"53/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40000"}]})
    assert published_ports(inspect, (Port(53, "udp"),), EPHEMERAL) == {}


# --- taken_port and is_port_conflict -------------------------------------------------------------

ALLOCATED = (
    "driver failed programming external connectivity on endpoint x (abc): "
    "Bind for 127.0.0.1:8080 failed: port is already allocated"
)
ALLOCATED_WILDCARD = (
    "failed to set up container networking: driver failed programming external connectivity on "
    "endpoint web-1 (3f2a9c1e): Bind for 0.0.0.0:5432 failed: port is already allocated"
)
ALLOCATED_IPV6 = (
    "driver failed programming external connectivity on endpoint db (77aa): "
    "Bind for [::]:5432 failed: port is already allocated"
)
IN_USE = "Error starting userland proxy: listen tcp4 127.0.0.1:8080: bind: address already in use"
IN_USE_UDP = "Error starting userland proxy: listen udp4 0.0.0.0:53: bind: address already in use"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(ALLOCATED, Port(8080), id="allocated"),
        pytest.param(ALLOCATED_WILDCARD, Port(5432), id="allocated-wildcard"),
        pytest.param(ALLOCATED_IPV6, Port(5432), id="allocated-ipv6"),
        pytest.param(IN_USE, Port(8080), id="address-in-use"),
        pytest.param(IN_USE_UDP, Port(53, "udp"), id="udp"),
        pytest.param("Bind for 127.0.0.1:9090 failed: port is already allocated", None, id="other"),
        pytest.param("port is already allocated", None, id="no-port"),
        pytest.param("Bind for 127.0.0.1:80801 failed", None, id="too-many-digits"),
    ],
)
def test_taken_port(message: str, expected: Port | None) -> None:
    assert taken_port(message, PORTS, BIND_LOCAL) == expected


def test_taken_port_at_the_end_of_the_message() -> None:
    assert taken_port("listen tcp 127.0.0.1:5432", PORTS, BIND_LOCAL) == Port(5432)


def test_taken_port_matches_the_fixed_host_port_not_the_container_port() -> None:
    ports = (Port(21, host=2121), Port(8080))
    message = "Bind for 127.0.0.1:2121 failed: port is already allocated"
    found = taken_port(message, ports, EPHEMERAL)
    assert found == Port(21)
    assert found is not None
    assert found.host == 2121
    # The container's own number is not where it is published: no match.
    assert taken_port("Bind for 127.0.0.1:21 failed", ports, EPHEMERAL) is None


def test_taken_port_ignores_ports_the_engine_chose() -> None:
    assert taken_port(ALLOCATED, PORTS, EPHEMERAL) is None


def taken_message(ports: list[object], message: str, settings: RunSettings = EPHEMERAL) -> str:
    spec = parse_config(
        {"servers": {"ftp": {"image": "busybox", "ports": ports}}},
        base=Path(),
        source="testservers.yaml",
    ).servers["ftp"]
    return taken_port_message(message, spec, settings)


def test_taken_port_message_names_the_entry_that_fixes_the_host_port() -> None:
    text = taken_message(
        [21, "30000-30009:30000-30009"],
        "Bind for 127.0.0.1:30004 failed: port is already allocated",
    )
    assert text == (
        "port 30004/tcp is already in use on 127.0.0.1:30004 (ports[1]: "
        "30000-30009:30000-30009/tcp fixes its host port): stop what holds it, or give it "
        "another host port"
    )


def test_taken_port_message_under_bind_local_is_unchanged() -> None:
    assert taken_message([8080], ALLOCATED, BIND_LOCAL) == (
        "port 8080/tcp is already in use on 127.0.0.1:8080 (bind-local publishes each port at "
        "its own number): stop what holds it, or turn bind-local off"
    )
    assert taken_message([8080], "port is already allocated", BIND_LOCAL) == (
        "one of its ports is already in use on the host: stop what holds it, or turn bind-local off"
    )


@pytest.mark.parametrize(
    "message",
    [ALLOCATED, ALLOCATED_WILDCARD, IN_USE, "PORT IS ALREADY ALLOCATED", "Address already in use"],
)
def test_is_port_conflict(message: str) -> None:
    assert is_port_conflict(message)


@pytest.mark.parametrize(
    "message",
    [
        "No such image: busybox:stable",
        'OCI runtime create failed: exec: "httpd": executable file not found in $PATH',
        'Conflict. The container name "/web" is already in use',
        "",
    ],
)
def test_is_not_port_conflict(message: str) -> None:
    assert not is_port_conflict(message)


# --- Redactor ------------------------------------------------------------------------------------


def test_redactor_masks_every_occurrence() -> None:
    redact = Redactor(["hunter2"])
    assert redact("pw=hunter2; again hunter2!") == "pw=***; again ***!"
    assert MASK == "***"


def test_redactor_masks_several_secrets() -> None:
    redact = Redactor(["alpha-secret", "beta-token"])
    assert redact("a=alpha-secret b=beta-token") == "a=*** b=***"


def test_redactor_masks_the_longest_secret_first() -> None:
    redact = Redactor(["abc", "abcdef"])
    # Had "abc" gone first, the result would be "***def".
    assert redact("x abcdef y abc z") == "x *** y *** z"


def test_redactor_longest_first_regardless_of_insertion_order() -> None:
    redact = Redactor(["pass"])
    redact.add(["password123"])
    assert redact("password123 pass") == "*** ***"


@pytest.mark.parametrize("short", ["", "a", "ab"])
def test_redactor_ignores_values_shorter_than_three(short: str) -> None:
    redact = Redactor([short])
    text = "a ab abc 0 1 true"
    assert redact(text) == text


def test_redactor_masks_a_three_character_value() -> None:
    assert Redactor(["abc"])("xabcx") == "x***x"


def test_redactor_treats_secrets_literally_not_as_patterns() -> None:
    redact = Redactor(["p.ss*word(1)"])
    assert redact("p.ss*word(1) pXssword1") == "*** pXssword1"


def test_redactor_secrets_can_be_added_later() -> None:
    redact = Redactor()
    assert redact("token-value") == "token-value"
    redact.add(["token-value"])
    assert redact("token-value") == "***"
    redact.add(["token-value"])  # again: no change
    assert redact("a token-value b") == "a *** b"


def test_redactor_handles_empty_text_and_multiline_text() -> None:
    redact = Redactor(["s3cr3t"])
    assert redact("") == ""
    assert redact("line1 s3cr3t\nline2 s3cr3t\n") == "line1 ***\nline2 ***\n"


def test_redactor_masks_a_secret_containing_newlines() -> None:
    redact = Redactor(["-----BEGIN KEY-----\nabc\n-----END KEY-----"])
    assert redact("key: -----BEGIN KEY-----\nabc\n-----END KEY-----.") == "key: ***."


# --- looks_secret --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "DB_PASSWORD",
        "POSTGRES_PASSWORD",
        "MYSQL_ROOT_PASSWD",
        "API_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "client_secret",
        "Api_Key",
    ],
)
def test_looks_secret(key: str) -> None:
    assert looks_secret(key)


@pytest.mark.parametrize("key", ["MODE", "PATH", "TZ", "LOG_LEVEL", "PGUSER", "PORT", "HOST"])
def test_does_not_look_secret(key: str) -> None:
    assert not looks_secret(key)
