"""Images pulled from real registries on loopback, as CI meets them: a plain pull of tens of MB,
a registry that fails twice, a rate limit with Retry-After, logins (auths and a credential
helper), a missing image, an unreachable registry, the pull policies, a mirror, a digest, a
platform, and -n 4 pulling one image once.

The registries are Debian's docker-registry, with a failing proxy in front when a test needs one
(tests/registries.py). Pulls are counted by the registry's own log or the proxy's count, never by
what the plugin says.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.conftest import servers_yaml
from tests.registries import (
    BIG_BYTES,
    BIG_LAYERS,
    USER,
    Registries,
    Registry,
    free_port,
    pulls_in_log,
    session_registries,
)

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture(scope="session")
def registries(docker_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    yield from session_registries(docker_api, tmp_path_factory.mktemp("registries"))


@pytest.fixture(scope="session")
def open_registry(registries: Registries) -> Registry:
    return registries.start_registry(login=False)


@pytest.fixture(scope="session")
def login_registry(registries: Registries) -> Registry:
    return registries.start_registry(login=True)


RUNS = 'command: ["sleep", "600"]'
TESTS = """
    import pytest

    @pytest.mark.testserver("box")
    def test_box(testserver):
        assert testserver.container_id
"""


def one_server(ref: str, extra: str = "") -> str:
    return servers_yaml(box=f"image: {ref}\n{RUNS}\n{textwrap.dedent(extra)}")


def output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def the_error(result: pytest.RunResult) -> str:
    """The plugin's one-line error for server 'box', as the test's failure shows it."""
    found = [line for line in result.outlines if "testserver: server 'box'" in line]
    assert found, output(result)
    return found[0][found[0].index("testserver:") :]


# ------------------------------------------------------------------------- plain pulls


def test_a_multi_layer_pull_shows_bytes_and_layers_and_its_digest(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, digest = registries.push_big(open_registry)
    # Through a proxy that sends each layer at 3 MB/s: the pull takes seconds, long enough
    # for the progress lines (one every 3 s) to show.
    proxy = registries.start_proxy(open_registry, rate=3_000_000)
    pulled = ref.replace(open_registry.host, proxy.host)
    suite(one_server(pulled), TESTS)
    try:
        result = pytester.runpytest("-v", "-p", "no:randomly", "--junitxml=junit.xml")
    finally:
        registries.forget(pulled)
        proxy.stop()
    result.assert_outcomes(passed=1)
    text = output(result)
    progress = re.findall(
        rf"box: pulling {re.escape(pulled)}: ([\d.]+) MB of ([\d.]+) MB, (\d+)/(\d+) layers", text
    )
    assert progress, text
    assert int(progress[-1][3]) >= BIG_LAYERS
    final = re.search(
        rf"box: pulled {re.escape(pulled)} \(([\d.]+) MB, (\d+) new layers(?:, \d+ already here)?\)"
        r" in [\d.]+ s",
        text,
    )
    assert final, text
    assert float(final.group(1)) * 1_000_000 >= BIG_BYTES * 0.95
    assert int(final.group(2)) == BIG_LAYERS
    # -v names the digest the tag resolved to, and so does the junit report
    repository = pulled.rsplit(":", 1)[0]
    assert f"box: image {pulled} is {repository}@{digest}" in text
    junit = ElementTree.parse(pytester.path / "junit.xml")
    properties = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert properties["testserver box image"] == f"{repository}@{digest}"
    assert proxy.counts()["pulls"] == 1


def test_an_image_named_by_its_digest_is_pulled_and_runs(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, digest = registries.push(open_registry, "bydigest")
    by_digest = f"{ref.rsplit(':', 1)[0]}@{digest}"
    suite(one_server(by_digest), TESTS)
    try:
        result = pytester.runpytest("-v")
    finally:
        registries.forget(by_digest)
    result.assert_outcomes(passed=1)
    assert f"box: image {by_digest} is {by_digest}" in output(result)


# ------------------------------------------------------------------------- retries


def test_a_registry_failing_twice_is_tried_again_and_the_pull_succeeds(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, _ = registries.push(open_registry, "flaky")
    proxy = registries.start_proxy(open_registry, fail=(503, 503))
    pulled = ref.replace(open_registry.host, proxy.host)
    suite(one_server(pulled), TESTS)
    began = time.monotonic()
    try:
        result = pytester.runpytest()
    finally:
        took = time.monotonic() - began
        registries.forget(pulled)
        proxy.stop()
    result.assert_outcomes(passed=1)
    text = output(result)
    retries = re.findall(
        rf"box: pulling {re.escape(pulled)}: attempt (\d) failed \(received unexpected HTTP "
        r"status: 503 Service Unavailable\); trying again in [\d.]+ s",
        text,
    )
    assert retries == ["1", "2"], text
    final = rf"box: pulled {re.escape(pulled)} \(.*\) in [\d.]+ s \(attempt 3, [\d.]+ s in all\)"
    assert re.search(final, text), text
    counts = proxy.counts()
    assert (counts["pulls"], counts["failed"]) == (3, 4)  # HEAD and GET of two attempts
    print(f"a pull failing twice succeeded; the run took {took:.1f} s")


def test_a_rate_limit_waits_as_long_as_the_registrys_retry_after_says(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, _ = registries.push(open_registry, "limited")
    # every manifest request within 2 s of the first is answered 429 with Retry-After
    proxy = registries.start_proxy(open_registry, limit_for=2.0)
    pulled = ref.replace(open_registry.host, proxy.host)
    suite(one_server(pulled), TESTS)
    try:
        result = pytester.runpytest()
    finally:
        registries.forget(pulled)
        proxy.stop()
    result.assert_outcomes(passed=1)
    text = output(result)
    assert re.search(
        rf"box: pulling {re.escape(pulled)}: attempt 1 failed \(toomanyrequests: .*\); trying "
        r"again in [12]\.0 s \(the registry's Retry-After\)",
        text,
    ), text
    counts = proxy.counts()
    # the second attempt came after the limit: without Retry-After (1 s) it would have failed
    assert (counts["pulls"], len(counts["probes"])) == (2, 1), counts


def test_a_rate_limit_longer_than_the_image_budget_says_log_in_or_use_a_mirror(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, _ = registries.push(open_registry, "overlimit")
    proxy = registries.start_proxy(open_registry, limit_for=600.0)
    pulled = ref.replace(open_registry.host, proxy.host)
    suite(one_server(pulled, "image_timeout: 30"), TESTS)
    try:
        result = pytester.runpytest()
    finally:
        proxy.stop()
    result.assert_outcomes(errors=1)
    error = the_error(result)
    assert error.startswith(
        f"testserver: server 'box': image {pulled} cannot be pulled: the registry {proxy.host} "
        "limits how often it may be pulled (toomanyrequests: You have reached your pull rate "
        "limit."
    ), error
    assert f"log in (`docker login {proxy.host}`) for a higher limit" in error
    assert "testserver_registry_mirror / $TESTSERVER_REGISTRY_MIRROR to a mirror" in error
    assert re.search(r"the registry asks to wait \d+ s \(Retry-After\)", error), error
    assert proxy.counts()["pulls"] == 1


def test_a_registry_that_stalls_mid_pull_ends_at_the_image_budget(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, _ = registries.push_big(open_registry, "stalled")
    proxy = registries.start_proxy(open_registry, stall_blobs=True)
    pulled = ref.replace(open_registry.host, proxy.host)
    suite(one_server(pulled, "image_timeout: 4"), TESTS)
    try:
        result = pytester.runpytest()
    finally:
        proxy.stop()
        registries.forget(pulled)
    result.assert_outcomes(errors=1)
    error = the_error(result)
    assert error.startswith(
        f"testserver: server 'box': image {pulled} cannot be pulled: the pull made no progress "
        "until the image_timeout ran out (no answer to pull within "
    ), error
    assert error.endswith(f"the registry {proxy.host}, or the engine's way to it, stalled"), error


def test_an_unreachable_registry_is_tried_within_the_budget_and_said_so(
    pytester: pytest.Pytester, suite: Any
) -> None:
    host = f"127.0.0.1:{free_port()}"  # nobody listens
    ref = f"{host}/nobody/here:1"
    suite(one_server(ref, "image_timeout: 2.5"), TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    error = the_error(result)
    assert error.startswith(
        f"testserver: server 'box': image {ref} cannot be pulled: the Docker engine cannot "
        f"reach the registry {host} ("
    ), error
    assert "connection refused" in error
    assert re.search(r"; 2 attempt\(s\): 1\) at 0\.\d s: .*; 2\) at [\d.]+ s: ", error), error


# ------------------------------------------------------------ errors that say what to do


def test_a_missing_image_names_registry_repository_and_tag(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref = f"{open_registry.host}/t{registries.token}/nope:1"
    suite(one_server(ref), TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert the_error(result) == (
        f"testserver: server 'box': image {ref} cannot be pulled: the registry "
        f"{open_registry.host} has no tag 1 of the repository t{registries.token}/nope "
        f"(manifest for {ref} not found: manifest unknown: manifest unknown): check the name"
    )


def test_a_registry_that_wants_a_login_says_docker_login_and_which_file_was_read(
    pytester: pytest.Pytester,
    suite: Any,
    registries: Registries,
    login_registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ref, _ = registries.push(login_registry, "private")
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    suite(one_server(ref), TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    host = login_registry.host
    assert the_error(result) == (
        f"testserver: server 'box': image {ref} cannot be pulled: the registry {host} wants a "
        f'login (Head "http://{host}/v2/t{registries.token}/private/manifests/1": no basic '
        f"auth credentials); run `docker login {host}` (or give CI the credentials); "
        f"{config / 'config.json'} has no credentials for {host}"
    )


def test_credentials_from_docker_login_pull_and_never_show(
    pytester: pytest.Pytester,
    suite: Any,
    registries: Registries,
    login_registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ref, _ = registries.push(login_registry, "loggedin")
    monkeypatch.setenv("DOCKER_CONFIG", str(login_registry.docker_config(tmp_path / "docker")))
    suite(one_server(ref), TESTS)
    try:
        result = pytester.runpytest("-v", "--junitxml=junit.xml")
    finally:
        registries.forget(ref)
    result.assert_outcomes(passed=1)
    shown = output(result) + (pytester.path / "junit.xml").read_text()
    assert f"box: pulled {ref}" in shown
    assert login_registry.password not in shown


def test_a_credential_helper_on_path_gives_the_login(
    pytester: pytest.Pytester,
    suite: Any,
    registries: Registries,
    login_registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ref, _ = registries.push(login_registry, "helped")
    bin_dir, asked = tmp_path / "bin", tmp_path / "asked.txt"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testserver-fake"
    # docker-credential-* protocol: `get` reads the server's address on stdin and answers JSON.
    helper.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        f"read -r server\n"
        f'printf "%s\\n" "$server" >> {asked}\n'
        f'printf \'{{"ServerURL":"%s","Username":"{USER}",'
        f'"Secret":"{login_registry.password}"}}\' "$server"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    config = tmp_path / "docker"
    config.mkdir()
    helpers = {"credHelpers": {login_registry.host: "testserver-fake"}}
    (config / "config.json").write_text(json.dumps(helpers))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    suite(one_server(ref), TESTS)
    try:
        result = pytester.runpytest("-v")
    finally:
        registries.forget(ref)
    result.assert_outcomes(passed=1)
    assert asked.read_text().split() == [login_registry.host]  # the helper was asked, once
    assert login_registry.password not in output(result)


def test_a_credential_helper_that_is_missing_is_one_line_naming_it(
    pytester: pytest.Pytester,
    suite: Any,
    registries: Registries,
    login_registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ref = f"{login_registry.host}/t{registries.token}/whatever:1"
    config = tmp_path / "docker"
    config.mkdir()
    helpers = {"credHelpers": {login_registry.host: "testserver-absent"}}
    (config / "config.json").write_text(json.dumps(helpers))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    suite(one_server(ref), TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    error = the_error(result)
    assert error.startswith(
        f"testserver: server 'box': image {ref} cannot be pulled: the credential helper for "
        f"{login_registry.host} failed ("
    ), error
    assert "docker-credential-testserver-absent" in error
    assert error.endswith(
        f"credentials for {login_registry.host} came from {config / 'config.json'} "
        "(credHelpers: docker-credential-testserver-absent)"
    ), error


# ------------------------------------------------------------------------- pull policy


def test_pull_never_refuses_a_missing_image_in_one_line(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, _ = registries.push(open_registry, "offline")
    suite(one_server(ref), TESTS)
    result = pytester.runpytest("--testserver-pull=never")
    result.assert_outcomes(errors=1)
    assert the_error(result) == (
        f"testserver: server 'box': image {ref} is not here, and --testserver-pull=never does "
        f"not pull it: pull it first (docker pull {ref}), or let the run pull it"
    )
    assert pulls_in_log(open_registry, f"t{registries.token}/offline") == 0


def test_pull_always_pulls_an_image_that_is_here_once_per_run(
    pytester: pytest.Pytester,
    suite: Any,
    registries: Registries,
    open_registry: Registry,
    docker_api: Any,
) -> None:
    ref, _ = registries.push(open_registry, "moving")
    docker_api.pull(ref.rsplit(":", 1)[0], tag="1")  # here before the run
    repository = f"t{registries.token}/moving"
    before = pulls_in_log(open_registry, repository)
    body = f"image: {ref}\n{RUNS}\npull: always"
    suite(
        servers_yaml(one=body, two=body),
        """
        import pytest

        @pytest.mark.testserver("one", "two")
        def test_both(testservers):
            assert len(testservers) == 2
        """,
    )
    try:
        result = pytester.runpytest()
    finally:
        registries.forget(ref)
    result.assert_outcomes(passed=1)
    assert pulls_in_log(open_registry, repository) - before == 1


# ------------------------------------------------------------------------- mirror, platform


def test_a_mirror_serves_docker_hub_images_and_is_shown(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    name = f"t{registries.token}mirrored"
    registries.push_as(open_registry, f"{open_registry.host}/library/{name}", "busybox:stable")
    suite(one_server(f"{name}:1"), TESTS)
    pytester.makeini(f"[pytest]\ntestserver_registry_mirror = {open_registry.host}\n")
    mirrored = f"{open_registry.host}/library/{name}:1"
    try:
        result = pytester.runpytest("-v")
    finally:
        registries.forget(mirrored)
    result.assert_outcomes(passed=1)
    text = output(result)
    assert f"testserver: Docker Hub images pulled from the mirror {open_registry.host}" in text
    assert f"box: pulled {mirrored}" in text
    assert pulls_in_log(open_registry, f"library/{name}") == 1
    listed = pytester.runpytest("--testserver-list")
    listed.stdout.fnmatch_lines(
        [f"testserver: Docker Hub images pulled from the mirror {open_registry.host}"]
    )


def test_a_platform_the_image_does_not_have_is_one_line(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, _ = registries.push(open_registry, "onearch")
    suite(one_server(ref, "platform: linux/s390x"), TESTS)
    try:
        result = pytester.runpytest()
    finally:
        registries.forget(ref)
    result.assert_outcomes(errors=1)
    assert the_error(result) == (
        f"testserver: server 'box': image {ref} is for linux/amd64, not for the platform "
        "linux/s390x that platform: asks for (the registry has no such variant): set platform: "
        "to one the image has, or leave it out"
    )


# ------------------------------------------------------------------------- xdist


def test_four_workers_pull_one_image_once(
    pytester: pytest.Pytester, suite: Any, registries: Registries, open_registry: Registry
) -> None:
    ref, _ = registries.push(open_registry, "shared")
    # share: worker: every worker starts a container of its own, from the one image
    suite(
        servers_yaml(box=f"image: {ref}\n{RUNS}\nshare: worker"),
        "\n".join(
            f"""
@pytest.mark.testserver("box")
def test_box_{i}(testserver):
    assert testserver.container_id
"""
            for i in range(8)
        ).join(["import pytest\n", ""]),
    )
    try:
        result = pytester.runpytest_subprocess("-n", "4", "-p", "no:randomly")
    finally:
        registries.forget(ref)
    result.assert_outcomes(passed=8)
    assert pulls_in_log(open_registry, f"t{registries.token}/shared") == 1


def test_pull_always_under_xdist_pulls_once_per_run(
    pytester: pytest.Pytester,
    suite: Any,
    registries: Registries,
    open_registry: Registry,
    docker_api: Any,
) -> None:
    ref, _ = registries.push(open_registry, "alwaysshared")
    docker_api.pull(ref.rsplit(":", 1)[0], tag="1")  # here before the run
    repository = f"t{registries.token}/alwaysshared"
    before = pulls_in_log(open_registry, repository)
    suite(
        servers_yaml(box=f"image: {ref}\n{RUNS}\nshare: worker"),
        "\n".join(
            f"""
@pytest.mark.testserver("box")
def test_box_{i}(testserver):
    assert testserver.container_id
"""
            for i in range(4)
        ).join(["import pytest\n", ""]),
    )
    try:
        result = pytester.runpytest_subprocess(
            "-n", "2", "-p", "no:randomly", "--testserver-pull=always"
        )
    finally:
        registries.forget(ref)
    result.assert_outcomes(passed=4)
    assert pulls_in_log(open_registry, repository) - before == 1
