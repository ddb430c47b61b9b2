"""Finding the engine (pure: files and environments, never an engine call), and the engine
helpers that decide TLS, kinds, healthchecks and reachability."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import docker.tls
import pytest
import requests

from pytest_testserver import engine as engine_module
from pytest_testserver import locate as locate_module
from pytest_testserver.config import ServerSpec, parse_config
from pytest_testserver.errors import EngineUnavailable, StartError
from pytest_testserver.locate import Location, context_id, locate, socket_candidates, usable_socket
from pytest_testserver.readiness import (
    PublishedRefused,
    Target,
    check_reachable,
    healthcheck_argv,
    tcp_ready,
    unanswered_hint,
    unreachable_remedy,
)
from tests.conftest import require_module


def write_context(
    config: Path, name: str, host: str, *, tls: bool = False, skip: bool = False
) -> Path | None:
    """A context as `docker context create` stores it; its TLS folder if it has one."""
    meta = config / "contexts" / "meta" / context_id(name)
    meta.mkdir(parents=True)
    body = {"Name": name, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip}}}
    (meta / "meta.json").write_text(json.dumps(body))
    if tls:
        folder = config / "contexts" / "tls" / context_id(name) / "docker"
        folder.mkdir(parents=True)
        for file in ("ca.pem", "cert.pem", "key.pem"):
            (folder / file).write_text("-")
        return folder
    return None


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir()
    return folder


def test_context_ids_are_the_clis() -> None:
    assert context_id("ci") == hashlib.sha256(b"ci").hexdigest()


def test_docker_host_wins_over_every_context(config: Path) -> None:
    write_context(config, "ci", "tcp://ctx:2376")
    (config / "config.json").write_text(json.dumps({"currentContext": "ci"}))
    env = {"DOCKER_HOST": "tcp://h:2375", "DOCKER_CONTEXT": "ci", "DOCKER_CONFIG": str(config)}
    found = locate(env)
    assert (found.address, found.why, found.tls) == ("tcp://h:2375", "DOCKER_HOST", False)


def test_docker_context_wins_over_the_current_one(config: Path) -> None:
    write_context(config, "ci", "tcp://ctx:2376")
    (config / "config.json").write_text(json.dumps({"currentContext": "broken-on-purpose"}))
    found = locate({"DOCKER_CONTEXT": "ci", "DOCKER_CONFIG": str(config)})
    assert found.address == "tcp://ctx:2376"
    assert found.why == "Docker context 'ci' (DOCKER_CONTEXT)"


def test_the_current_context_with_its_tls_files(config: Path) -> None:
    folder = write_context(config, "remote", "tcp://build:2376", tls=True)
    (config / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    found = locate({"DOCKER_CONFIG": str(config)})
    assert found == Location(
        "tcp://build:2376",
        f"current Docker context 'remote' ({config / 'config.json'})",
        tls=True,
        tls_verify=True,
        cert_path=str(folder),
    )


def test_skip_tls_verify_keeps_tls_without_verification(config: Path) -> None:
    write_context(config, "remote", "tcp://build:2376", tls=True, skip=True)
    found = locate({"DOCKER_CONTEXT": "remote", "DOCKER_CONFIG": str(config)})
    assert (found.tls, found.tls_verify) == (True, False)


def test_config_folder_defaults_to_home(tmp_path: Path) -> None:
    write_context(tmp_path / ".docker", "ssh-box", "ssh://me@box")
    found = locate({"HOME": str(tmp_path), "DOCKER_CONTEXT": "ssh-box"})
    assert found.address == "ssh://me@box"
    assert found.scheme == "ssh"
    assert not found.is_local_socket


@pytest.fixture
def only_our_sockets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The candidates are this test's paths only: this machine's /var/run/docker.sock must not
    decide the outcome."""
    paths = [str(tmp_path / "a.sock"), str(tmp_path / "b.sock")]
    monkeypatch.setattr(locate_module, "socket_candidates", lambda env: paths)
    return paths


def bind_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    return sock


def test_the_first_usable_socket_is_chosen(only_our_sockets: list[str], config: Path) -> None:
    with bind_socket(only_our_sockets[1]):
        found = locate({"DOCKER_CONFIG": str(config)})
        assert found == Location(f"unix://{only_our_sockets[1]}", f"found {only_our_sockets[1]}")
        with bind_socket(only_our_sockets[0]):
            assert locate({"DOCKER_CONFIG": str(config)}).address.endswith("a.sock")


def test_the_default_context_means_the_local_socket(
    only_our_sockets: list[str], config: Path
) -> None:
    (config / "config.json").write_text(json.dumps({"currentContext": "default"}))
    with bind_socket(only_our_sockets[0]):
        assert locate({"DOCKER_CONFIG": str(config)}).address == f"unix://{only_our_sockets[0]}"
        named = locate({"DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "default"})
        assert named.address == f"unix://{only_our_sockets[0]}"


def test_no_socket_at_all_names_the_default(only_our_sockets: list[str], config: Path) -> None:
    found = locate({"DOCKER_CONFIG": str(config)})
    assert found.address == "unix:///var/run/docker.sock"
    assert "no engine socket found" in found.why


def test_socket_candidates_in_the_order_users_expect() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/7", "HOME": "/home/u"}
    assert socket_candidates(env) == [
        "/var/run/docker.sock",
        "/run/user/7/docker.sock",
        "/home/u/.docker/run/docker.sock",
        "/run/podman/podman.sock",
        "/run/user/7/podman/podman.sock",
    ]
    assert socket_candidates({}) == ["/var/run/docker.sock", "/run/podman/podman.sock"]


def test_only_sockets_are_usable(tmp_path: Path) -> None:
    plain = tmp_path / "file.sock"
    plain.write_text("")
    assert not usable_socket(str(plain))
    assert not usable_socket(str(tmp_path / "missing.sock"))
    assert not usable_socket("\0")
    with bind_socket(str(tmp_path / "real.sock")):
        assert usable_socket(str(tmp_path / "real.sock"))


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        pytest.param(None, "names a context that does not exist (no ", id="missing"),
        pytest.param(b"{not json", "is not valid JSON", id="malformed"),
        pytest.param(b"[1, 2]", "is not a JSON object", id="not-an-object"),
        pytest.param(b'{"Endpoints": {}}', "has no Endpoints.docker.Host", id="no-host"),
        pytest.param(b" " * (locate_module.MAX_CONFIG_BYTES + 1), "is over", id="oversized"),
    ],
)
def test_a_broken_context_is_one_line_naming_it(
    config: Path, meta: bytes | None, message: str
) -> None:
    if meta is not None:
        folder = config / "contexts" / "meta" / context_id("ci")
        folder.mkdir(parents=True)
        (folder / "meta.json").write_bytes(meta)
    with pytest.raises(EngineUnavailable) as caught:
        locate({"DOCKER_CONTEXT": "ci", "DOCKER_CONFIG": str(config)})
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert "context 'ci'" in text
    assert "docker context use" in text


def test_a_malformed_config_json_is_named(config: Path) -> None:
    (config / "config.json").write_text("{")
    with pytest.raises(EngineUnavailable, match=r"config\.json is not valid JSON"):
        locate({"DOCKER_CONFIG": str(config)})


@pytest.mark.parametrize(
    ("env", "tls", "verify", "cert_path"),
    [
        ({}, False, False, None),
        ({"DOCKER_TLS_VERIFY": "1"}, True, True, "CONFIG"),
        ({"DOCKER_TLS_VERIFY": ""}, False, False, None),
        ({"DOCKER_CERT_PATH": "/certs"}, True, False, "/certs"),
        ({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs"}, True, True, "/certs"),
    ],
)
def test_docker_host_tls_follows_docker_pys_rules(
    config: Path, env: dict[str, str], tls: bool, verify: bool, cert_path: str | None
) -> None:
    found = locate({"DOCKER_HOST": "tcp://h:2376", "DOCKER_CONFIG": str(config), **env})
    expected = str(config) if cert_path == "CONFIG" else cert_path
    assert (found.tls, found.tls_verify, found.cert_path) == (tls, verify, expected)


def test_environ_hands_the_same_engine_to_a_child(config: Path) -> None:
    folder = write_context(config, "remote", "tcp://build:2376", tls=True)
    found = locate({"DOCKER_CONTEXT": "remote", "DOCKER_CONFIG": str(config)})
    again = locate({**found.environ(), "DOCKER_CONFIG": str(config)})
    assert (again.address, again.tls, again.tls_verify, again.cert_path) == (
        "tcp://build:2376",
        True,
        True,
        str(folder),
    )


# --- engine helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "kind"),
    [
        ({"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]}, "podman"),
        ({"Components": [{"Name": "Engine", "Version": "20.10.24"}]}, "docker"),
        ({"Components": "garbage"}, "docker"),
        ({}, "docker"),
    ],
)
def test_engine_kind(version: dict[str, object], kind: str) -> None:
    assert engine_module.engine_kind(version) == kind


@pytest.mark.parametrize(
    ("test", "argv"),
    [
        (["CMD", "pg_isready", "-q"], ["pg_isready", "-q"]),
        (
            ["CMD-SHELL", "curl -f localhost || exit 1"],
            ["/bin/sh", "-c", "curl -f localhost || exit 1"],
        ),
        (["NONE"], None),
        (["CMD"], None),
        ([], None),
        (None, None),
        (["CMD", 1], None),
    ],
)
def test_healthcheck_argv(test: object, argv: list[str] | None) -> None:
    assert healthcheck_argv(test) == argv


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "engine-ca.pem"
    path.write_text("-")
    return path


def test_the_engines_ca_wins_over_requests_ca_bundle(
    ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    url = "https://127.0.0.1:1/v1.41/version"
    plain = requests.Session()
    plain.verify = str(ca_file)
    try:  # what requests does on its own: the variable replaces the session's CA
        assert plain.merge_environment_settings(url, {}, False, None, None)["verify"] != str(
            ca_file
        )
    finally:
        plain.close()
    client = engine_module.DeadlineClient(
        base_url="tcp://127.0.0.1:1",
        version="1.41",
        tls=docker.tls.TLSConfig(ca_cert=str(ca_file), verify=True),
    )
    try:
        assert client.merge_environment_settings(url, {}, False, None, None)["verify"] == str(
            ca_file
        )
        client.verify = False  # verification off stays off, whatever the variables say
        assert client.merge_environment_settings(url, {}, False, None, None)["verify"] is False
    finally:
        client.close()


def test_tls_and_ssh_failures_are_told_apart() -> None:
    where = Location("tcp://h:2376", "DOCKER_HOST", tls=True, tls_verify=True, cert_path="/c")
    try:
        raise requests.exceptions.SSLError("wrapped") from ssl.SSLCertVerificationError(
            1, "certificate verify failed"
        )
    except requests.exceptions.SSLError as exc:
        found = engine_module._tls_or_auth(exc, where)
    assert found is not None
    assert found[0].startswith("TLS with the engine failed")
    assert "DOCKER_CERT_PATH" in found[1]
    assert "/c" in found[1]

    paramiko = require_module("paramiko", "docker-py's ssh:// transport raises its exceptions")
    ssh = engine_module._tls_or_auth(
        paramiko.AuthenticationException("Authentication failed."), where
    )
    assert ssh is not None
    assert ssh[0].startswith("SSH authentication failed")
    assert engine_module._tls_or_auth(ConnectionRefusedError(111, "refused"), where) is None


def test_source_address() -> None:
    assert engine_module.source_address("127.0.0.1") == "127.0.0.1"
    assert engine_module.source_address("not an address") == ""


# --- reachability -------------------------------------------------------------------------------

SPEC_YAML = {
    "servers": {
        "web": {"image": "busybox:stable", "ports": [8080, "53/udp"], "wait": {"log": "x"}},
        "udp": {"image": "busybox:stable", "ports": ["53/udp"], "wait": {"log": "x"}},
        "loose": {"image": "busybox:stable", "ports": [8080], "wait": False},
    }
}


def spec(name: str) -> ServerSpec:
    return parse_config(SPEC_YAML, base=Path("."), source="t").servers[name]


@pytest.fixture
def listening() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    yield int(server.getsockname()[1])
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_published_port_that_answers_passes(listening: int) -> None:
    check_reachable(spec("web"), Target("", "127.0.0.1", {8080: listening}, direct=False), "x")


def test_a_published_port_that_does_not_answer_is_named(listening: int) -> None:
    port = closed_port()
    target = Target("", "127.0.0.1", {8080: port}, direct=False)
    with pytest.raises(StartError) as caught:
        check_reachable(spec("web"), target, "tcp://127.0.0.1:2375")
    text = str(caught.value)
    assert "\n" not in text
    assert "server 'web'" in text
    assert f"published at 127.0.0.1:{port} does not answer from this machine" in text
    assert "tcp://127.0.0.1:2375" in text


def test_no_check_when_nothing_says_it_listens_or_it_was_proven() -> None:
    port = closed_port()
    check_reachable(spec("loose"), Target("", "127.0.0.1", {8080: port}, direct=False), "x")
    proven = Target("", "127.0.0.1", {8080: port}, direct=False, proven=True)
    check_reachable(spec("web"), proven, "x")
    check_reachable(spec("udp"), Target("", "127.0.0.1", {53: port}, direct=False), "x")


def test_a_server_refusing_at_its_own_address_too_is_not_out_of_reach() -> None:
    port = closed_port()  # neither the published port nor the "container" answers
    check_reachable(spec("web"), Target("127.0.0.1", "127.0.0.1", {8080: port}), "x")


def test_unanswered_hint() -> None:
    remote = Target("", "build", {}, direct=False)
    assert "its published port at build may not be reachable from here" in unanswered_hint(
        remote, "Connection refused", "tcp://build:2376"
    )
    assert unanswered_hint(remote, "status 404", "tcp://build:2376") == ""
    assert unanswered_hint(Target("10.0.0.2", "h", {}), "Connection refused", "x") == ""


@pytest.mark.parametrize(
    ("value", "sessions"),
    [("", 8), ("32", 32), ("0", 8), ("1001", 8), ("²", 8), ("-4", 8), ("eight", 8)],
)
def test_ssh_sessions_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, sessions: int
) -> None:
    monkeypatch.setenv("TESTSERVER_SSH_SESSIONS", value)
    assert engine_module.ssh_sessions() == sessions


# --- a published port that refuses while the server answers at its own address ----------------


def test_a_refused_published_port_with_the_server_answering_at_its_own_address(
    listening: int,
) -> None:
    # the container's own address answers (here: loopback), the published one refuses: the
    # published address is out of reach, said at the second round in a row (a second apart)
    # instead of at the timeout
    published = closed_port()
    target = Target("127.0.0.1", "127.0.0.1", {listening: published}, direct=False)
    assert tcp_ready(target, listening) == (False, "Connection refused")  # once: not yet
    assert target.own_answered == 1
    target.own_checked = 0.0  # a second later
    with pytest.raises(PublishedRefused) as caught:
        tcp_ready(target, listening)
    assert caught.value.published == ("127.0.0.1", published)
    assert caught.value.ip == "127.0.0.1"


def test_a_server_that_begins_to_listen_between_the_probes_is_no_refused_port(
    listening: int,
) -> None:
    # the published port refused a moment before the server listened; at the next round it
    # answers there too: ready, never "published out of reach" (a late server on a remote engine)
    published = closed_port()
    target = Target("127.0.0.1", "127.0.0.1", {listening: published}, direct=False)
    assert tcp_ready(target, listening) == (False, "Connection refused")
    assert target.own_answered == 1
    target.published[listening] = listening  # now the published address answers too
    target.own_checked = 0.0
    assert tcp_ready(target, listening) == (True, "")


def test_a_refused_published_port_with_nothing_at_its_own_address_is_not_ready_yet() -> None:
    port = closed_port()
    target = Target("127.0.0.1", "127.0.0.1", {port: closed_port()}, direct=False)
    assert tcp_ready(target, port) == (False, "Connection refused")
    asked = target.own_checked
    assert asked > 0
    # asked again only after OWN_ADDRESS_INTERVAL: the next tight poll does not connect twice
    assert tcp_ready(target, port) == (False, "Connection refused")
    assert target.own_checked == asked


def test_an_own_address_that_is_not_routable_is_never_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published = closed_port()
    real = socket.create_connection
    asked: list[tuple[str, int]] = []

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        asked.append(address)
        if address[0] == "192.0.2.1":  # a remote engine's subnet: no route from here
            raise OSError(113, "No route to host")
        return real(address, timeout=timeout)

    monkeypatch.setattr(socket, "create_connection", connect)
    target = Target("192.0.2.1", "127.0.0.1", {8080: published}, direct=False)
    assert tcp_ready(target, 8080) == (False, "Connection refused")
    assert target.own_unroutable
    target.own_checked = 0.0
    assert tcp_ready(target, 8080) == (False, "Connection refused")
    assert asked == [("127.0.0.1", published), ("192.0.2.1", 8080), ("127.0.0.1", published)]


def test_the_remedy_for_a_local_engine_names_the_job_container_case() -> None:
    text = unreachable_remedy("unix:///var/run/docker.sock")
    assert "leave testserver_bind_address and $TESTSERVER_BIND_ADDRESS unset" in text
    assert "CI recipes" in text
    assert "tunnel" in unreachable_remedy("tcp://10.0.0.2:2375")


def test_an_own_address_where_every_port_answers_is_not_the_container(
    monkeypatch: pytest.MonkeyPatch, listening: int
) -> None:
    # A transparent proxy on the way accepts a connection to any address and port: what
    # answered is not the container, and the refused published port is only "not ready yet".
    real = socket.create_connection

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        if address[0] == "198.51.100.7":  # the container's address, intercepted on the way
            return real(("127.0.0.1", listening), timeout=timeout)
        return real(address, timeout=timeout)

    monkeypatch.setattr(socket, "create_connection", connect)
    target = Target("198.51.100.7", "127.0.0.1", {9999: closed_port()}, direct=False)
    for _ in range(3):
        target.own_checked = 0.0
        assert tcp_ready(target, 9999) == (False, "Connection refused")
    assert target.own_unroutable
