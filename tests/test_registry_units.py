"""Pulls without an engine: references, the mirror, what the engine's words mean, the backoff,
Retry-After, the messages, and the retry loop driven by a fake engine and a fake clock.

The engine's words below are what Docker 20.10 said to the real registries of
tests/test_registry.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pytest_testserver import pulls, registry
from pytest_testserver.errors import ConfigError, EngineError, ImageError
from pytest_testserver.progress import Say
from pytest_testserver.registry import Attempt, Backoff, Failure, Reference

# ------------------------------------------------------------------------- references

DIGEST = "sha256:" + "c" * 64


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", Reference("docker.io", "library/busybox", "latest")),
        ("postgres:16", Reference("docker.io", "library/postgres", "16")),
        ("bitnami/redis:7", Reference("docker.io", "bitnami/redis", "7")),
        ("docker.io/library/redis:7", Reference("docker.io", "library/redis", "7")),
        ("index.docker.io/x/y:1", Reference("docker.io", "x/y", "1")),
        ("localhost/a/b", Reference("localhost", "a/b", "latest")),
        ("127.0.0.1:5000/demo/busybox:1", Reference("127.0.0.1:5000", "demo/busybox", "1")),
        ("ghcr.io/o/i@sha256:" + "a" * 64, Reference("ghcr.io", "o/i", "", "sha256:" + "a" * 64)),
        (
            "quay.io/o/i:2@sha256:" + "b" * 64,
            Reference("quay.io", "o/i", "2", "sha256:" + "b" * 64),
        ),
    ],
)
def test_a_reference_is_read_as_the_engine_reads_it(ref: str, expected: Reference) -> None:
    assert registry.parse_reference(ref) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("postgres:16", "mirror.example:5000/library/postgres:16"),
        ("busybox", "mirror.example:5000/library/busybox:latest"),
        ("bitnami/redis:7", "mirror.example:5000/bitnami/redis:7"),
        (
            "docker.io/library/redis@sha256:" + "c" * 64,
            "mirror.example:5000/library/redis@sha256:" + "c" * 64,
        ),
        ("ghcr.io/o/i:1", "ghcr.io/o/i:1"),  # not Docker Hub's: as it is
        ("127.0.0.1:5000/a/b:1", "127.0.0.1:5000/a/b:1"),
    ],
)
def test_the_mirror_serves_docker_hub_images_only(ref: str, expected: str) -> None:
    assert registry.mirrored(ref, "mirror.example:5000") == expected
    assert registry.mirrored(ref, "") == ref


@pytest.mark.parametrize("value", ["http://mirror:5000", "mirror:5000/", "a b", "mirror:5000?x"])
def test_a_mirror_that_is_not_an_address_is_one_line(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        registry.mirror_setting(value, "$TESTSERVER_REGISTRY_MIRROR")
    assert str(caught.value).startswith("$TESTSERVER_REGISTRY_MIRROR: ")  # as every setting
    assert "is not a registry address (such as mirror.example:5000, no scheme)" in str(caught.value)


def test_a_mirror_may_have_a_port_and_a_path() -> None:
    for value in ("mirror.example", "mirror.example:5000", "10.0.0.1:5000/hub", "[::1]:5000"):
        assert registry.mirror_setting(f" {value} ", "ini x") == value
    assert registry.mirror_setting("", "ini x") == ""


# ------------------------------------------------------------------------- what a failure means

ENGINE_SAID = {
    Failure.TRANSIENT: [
        "received unexpected HTTP status: 503 Service Unavailable",
        "received unexpected HTTP status: 502 Bad Gateway",
        'Get "https://r.example/v2/": net/http: TLS handshake timeout',
        "read tcp 10.0.0.2:4242->1.2.3.4:443: read: connection reset by peer",
        'Get "https://r.example/v2/x/blobs/sha256:aa": unexpected EOF',
    ],
    Failure.RATE_LIMITED: [
        "toomanyrequests: You have reached your pull rate limit. You may increase the limit by "
        "authenticating and upgrading: https://www.docker.com/increase-rate-limit",
    ],
    Failure.UNAUTHORIZED: [
        'Head "http://127.0.0.1:15556/v2/demo/busybox/manifests/1": no basic auth credentials',
        'Head "https://ghcr.io/v2/o/i/manifests/1": unauthorized',
    ],
    Failure.DENIED_OR_MISSING: [
        "pull access denied for nope, repository does not exist or may require 'docker login': "
        "denied: requested access to the resource is denied",
    ],
    Failure.NOT_FOUND: [
        "manifest for 127.0.0.1:15555/demo/nope:1 not found: manifest unknown: manifest unknown",
    ],
    Failure.UNREACHABLE: [
        'Get "http://127.0.0.1:25999/v2/": dial tcp 127.0.0.1:25999: connect: connection refused',
    ],
    Failure.NO_SUCH_HOST: [
        'Get "https://nosuchhost.invalid:5000/v2/": dial tcp: lookup nosuchhost.invalid on '
        "10.0.0.1:53: no such host",
    ],
    Failure.PLATFORM: [
        "no matching manifest for linux/s390x in the manifest list entries",
    ],
    Failure.CREDENTIALS: [
        "pull failed: DockerException: Credentials store error: StoreError('docker-credential-x "
        "not installed or not available in PATH')",
    ],
}


@pytest.mark.parametrize(
    ("text", "failure"),
    [(text, failure) for failure, texts in ENGINE_SAID.items() for text in texts],
)
def test_the_engines_words_are_classified(text: str, failure: Failure) -> None:
    assert registry.classify(text, 500) is failure


def test_only_transient_rate_limited_and_unreachable_failures_are_retried() -> None:
    retried = {f for f in Failure if f.retried}
    assert retried == {Failure.TRANSIENT, Failure.RATE_LIMITED, Failure.UNREACHABLE}


# ------------------------------------------------------------------------- the backoff


def attempt(number: int, failure: Failure = Failure.TRANSIENT) -> Attempt:
    return Attempt(number, failure, "received unexpected HTTP status: 503", float(number))


def test_the_backoff_doubles_up_to_its_cap_and_stops_after_its_attempts() -> None:
    backoff = Backoff(attempts=8, first=1.0, cap=10.0)
    waits = [backoff.next_wait(attempt(n), 0.0, 1000.0) for n in range(1, 9)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, None]


def test_the_backoff_never_waits_past_the_image_budget() -> None:
    backoff = Backoff()
    assert backoff.next_wait(attempt(1), now=10.0, deadline=11.5) == 1.0
    assert backoff.next_wait(attempt(2), now=10.0, deadline=11.5) is None  # 2 s: past it


def test_a_retry_after_wins_over_the_backoff_and_is_bounded_by_the_budget() -> None:
    backoff = Backoff()
    limited = attempt(1, Failure.RATE_LIMITED)
    assert backoff.next_wait(limited, 0.0, 100.0, retry_after=7.0) == 7.0
    assert backoff.next_wait(limited, 0.0, 100.0, retry_after=600.0) is None


@pytest.mark.parametrize("failure", [f for f in Failure if not f.retried])
def test_a_failure_no_second_try_mends_is_not_retried(failure: Failure) -> None:
    assert Backoff().next_wait(attempt(1, failure), 0.0, 1000.0) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2", 2.0), (" 30 ", 30.0), ("99999", 3600.0), ("soon", None), ("", None), ("-1", None)],
)
def test_retry_after_is_read_in_seconds(value: str, seconds: float | None) -> None:
    assert registry.parse_retry_after(value) == seconds


def test_retry_after_may_be_an_http_date() -> None:
    now = 1_700_000_000.0
    assert registry.parse_retry_after("Tue, 14 Nov 2023 22:13:40 GMT", now=now) == 20.0
    assert registry.parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=now) == 0.0


class _Limited(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def do_HEAD(self) -> None:
        type(self).seen.append((self.command, self.path, self.headers.get("User-Agent", "")))
        self.send_response(429)
        self.send_header("Retry-After", "3")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def limited_registry() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Limited)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def test_the_registry_is_asked_when_to_come_back_with_one_head(limited_registry: str) -> None:
    _Limited.seen.clear()
    assert registry.retry_after(f"{limited_registry}/demo/x:1") == 3.0
    assert _Limited.seen == [("HEAD", "/v2/demo/x/manifests/1", registry.USER_AGENT)]


def test_a_registry_that_does_not_answer_gives_no_retry_after() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens
    assert registry.retry_after(f"127.0.0.1:{port}/demo/x:1", timeout=1.0) is None


# ------------------------------------------------------------------------- the retry loop


class FakeEngine:
    """Pull answers in order: an exception to raise, or a list of chunks to stream."""

    def __init__(self, answers: list[Exception | list[dict[str, Any]]], here: bool = False):
        self.answers = answers
        self.pulls: list[tuple[str, str | None]] = []
        self.here = here

    def pull(
        self,
        ref: str,
        *,
        on_chunk: Callable[[Mapping[str, Any]], None] | None = None,
        platform: str | None = None,
    ) -> None:
        self.pulls.append((ref, platform))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        for chunk in answer:
            if on_chunk is not None:
                on_chunk(chunk)
        self.here = True

    def image_exists(self, ref: str) -> bool:
        return self.here

    def repo_digest(self, ref: str) -> str:
        return f"{ref.rsplit(':', 1)[0]}@sha256:{'d' * 64}" if self.here else ""

    @staticmethod
    def credentials_for(host: str) -> tuple[str, str]:
        return "/home/ci/.docker/config.json", ""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


UNAVAILABLE = EngineError("received unexpected HTTP status: 503 Service Unavailable", 500)
LAYER = [
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "l1"},
    {"status": "Extracting", "progressDetail": {"current": 1, "total": 2_500_000}, "id": "l1"},
    {"status": "Pull complete", "progressDetail": {}, "id": "l1"},
]


def pulling(clock: Clock, **kw: Any) -> pulls.Pulling:
    kw.setdefault("deadline", clock.now + 900)
    return pulls.Pulling("db", sleep=clock.sleep, clock=clock, **kw)


def said() -> tuple[list[str], Say]:
    lines: list[str] = []

    def say(text: str, *, periodic: bool) -> None:
        lines.append(text)

    return lines, say


def test_a_pull_failing_twice_is_tried_again_with_a_line_per_retry() -> None:
    clock, (lines, say) = Clock(), said()
    engine = FakeEngine([UNAVAILABLE, UNAVAILABLE, LAYER])
    digest = pulls.ensure(engine, "r.example/db:1", pulling(clock), say)  # type: ignore[arg-type]
    assert digest == "r.example/db@sha256:" + "d" * 64
    assert clock.slept == [1.0, 2.0]
    assert lines == [
        "pulling r.example/db:1: attempt 1 failed (received unexpected HTTP status: 503 Service "
        "Unavailable); trying again in 1.0 s",
        "pulling r.example/db:1: attempt 2 failed (received unexpected HTTP status: 503 Service "
        "Unavailable); trying again in 2.0 s",
        "pulled r.example/db:1 (2.5 MB, 1 new layer) in 0.0 s (attempt 3, 3.0 s in all)",
    ]


def test_retries_end_at_the_budget_and_the_error_lists_the_attempts() -> None:
    clock = Clock()
    engine = FakeEngine([UNAVAILABLE] * 5)
    with pytest.raises(ImageError) as caught:
        pulls.pull(engine, "r.example/db:1", pulling(clock, deadline=clock.now + 5), None)  # type: ignore[arg-type]
    assert clock.slept == [1.0, 2.0]  # a third wait (4 s) would end past the budget
    assert str(caught.value) == (
        "testserver: server 'db': image r.example/db:1 cannot be pulled: the registry r.example "
        "kept failing; 3 attempt(s): 1) at 0.0 s: received unexpected HTTP status: 503 Service "
        "Unavailable; 2) at 1.0 s: received unexpected HTTP status: 503 Service Unavailable; "
        "3) at 3.0 s: received unexpected HTTP status: 503 Service Unavailable"
    )


def test_a_rate_limit_waits_for_the_registrys_retry_after() -> None:
    clock, (lines, say) = Clock(), said()
    limited = EngineError(ENGINE_SAID[Failure.RATE_LIMITED][0], 500)
    engine = FakeEngine([limited, LAYER])
    asked: list[str] = []

    def ask(ref: str) -> float:
        asked.append(ref)
        return 7.0

    pulls.pull(engine, "r.example/db:1", pulling(clock, ask_retry_after=ask), say)  # type: ignore[arg-type]
    assert (asked, clock.slept) == (["r.example/db:1"], [7.0])
    assert lines[0].endswith("trying again in 7.0 s (the registry's Retry-After)")


def test_a_login_failure_is_not_retried_and_names_the_config_file() -> None:
    clock = Clock()
    denied = EngineError(ENGINE_SAID[Failure.UNAUTHORIZED][0], 500)
    engine = FakeEngine([denied])
    with pytest.raises(ImageError) as caught:
        pulls.pull(engine, "127.0.0.1:15556/demo/busybox:1", pulling(clock), None)  # type: ignore[arg-type]
    assert clock.slept == []
    assert str(caught.value) == (
        "testserver: server 'db': image 127.0.0.1:15556/demo/busybox:1 cannot be pulled: the "
        'registry 127.0.0.1:15556 wants a login (Head "http://127.0.0.1:15556/v2/demo/busybox/'
        'manifests/1": no basic auth credentials); run `docker login 127.0.0.1:15556` (or give '
        "CI the credentials); /home/ci/.docker/config.json has no credentials for 127.0.0.1:15556"
    )


def test_what_the_engine_says_is_redacted_before_it_is_shown() -> None:
    clock, (lines, say) = Clock(), said()
    leaky = EngineError("received unexpected HTTP status: 503 for token s3cr3t-t0ken", 500)
    engine = FakeEngine([leaky, leaky])

    def redact(text: str) -> str:
        return text.replace("s3cr3t-t0ken", "****")

    with pytest.raises(ImageError) as caught:
        pulls.pull(
            engine,  # type: ignore[arg-type]
            "r.example/db:1",
            pulling(clock, redact=redact, backoff=Backoff(attempts=2)),
            say,
        )
    shown = "\n".join([*lines, str(caught.value)])
    assert "****" in shown
    assert "s3cr3t-t0ken" not in shown


def test_never_refuses_a_missing_image_and_pulls_nothing() -> None:
    engine = FakeEngine([])
    policy = pulls.Pulling("db", policy="never", policy_source="pull: never")
    with pytest.raises(ImageError) as caught:
        pulls.ensure(engine, "r.example/db:1", policy, None)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "testserver: server 'db': image r.example/db:1 is not here, and pull: never does not "
        "pull it: pull it first (docker pull r.example/db:1), or let the run pull it"
    )
    assert engine.pulls == []


def test_always_pulls_an_image_that_is_here_once_per_run_and_missing_does_not() -> None:
    engine = FakeEngine([LAYER], here=True)
    firsts = iter([True, False])
    always = pulls.Pulling("db", policy="always", first=lambda ref: next(firsts))
    pulls.ensure(engine, "r.example/db:1", always, None)  # type: ignore[arg-type]
    pulls.ensure(engine, "r.example/db:1", always, None)  # type: ignore[arg-type]
    pulls.ensure(engine, "r.example/db:1", pulls.Pulling("db"), None)  # type: ignore[arg-type]
    assert engine.pulls == [("r.example/db:1", None)]


def test_the_platform_goes_to_the_pull() -> None:
    engine = FakeEngine([LAYER])
    pulls.ensure(engine, "r.example/db:1", pulls.Pulling("db", platform="linux/arm64"), None)  # type: ignore[arg-type]
    assert engine.pulls == [("r.example/db:1", "linux/arm64")]


# ------------------------------------------------------------------------- the messages


def test_each_failure_says_what_to_do() -> None:
    def message(failure: Failure, ref: str = "postgres:16") -> str:
        return registry.failure_message(ref, failure, "the engine's words", [attempt(1, failure)])

    assert message(Failure.NOT_FOUND).endswith(
        "the registry docker.io has no tag 16 of the repository library/postgres "
        "(the engine's words): check the name"
    )
    assert "run `docker login`" in message(Failure.UNAUTHORIZED)
    assert "run `docker login r.example:5000`" in message(
        Failure.UNAUTHORIZED, "r.example:5000/a:1"
    )
    assert "check the name, or run `docker login`" in message(Failure.DENIED_OR_MISSING)
    limited = message(Failure.RATE_LIMITED)
    assert "Docker Hub allows anonymous pulls only so often" in limited
    assert (
        "log in (`docker login`) for a higher limit, or set ini testserver_registry_mirror"
        in limited
    )
    assert "the Docker engine cannot reach the registry docker.io" in message(Failure.UNREACHABLE)
    assert "set platform: to one the image has" in message(Failure.PLATFORM)


# ------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("pull", "sometimes", "servers.db.pull: 'sometimes' is not one of missing, always, never"),
        ("pull", True, "servers.db.pull: must be a string"),
        (
            "platform",
            "linux amd64",
            "servers.db.platform: 'linux amd64' is not a platform (os/arch[/variant], such as "
            "linux/amd64)",
        ),
        ("platform", "Linux/AMD64", "servers.db.platform: 'Linux/AMD64' is not a platform"),
    ],
)
def test_pull_and_platform_are_checked_like_every_key(key: str, value: object, error: str) -> None:
    from pytest_testserver.config import parse_config

    data = {"servers": {"db": {"image": "busybox:stable", key: value}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base=Path(), source="testservers.yaml")
    assert str(caught.value).startswith(f"testservers.yaml: {error}")
    assert "\n" not in str(caught.value)


def test_pull_and_platform_are_read() -> None:
    from pytest_testserver.config import parse_config

    server = {"image": "busybox:stable", "pull": "always", "platform": "linux/arm64/v8"}
    data = {"servers": {"db": server}}
    spec = parse_config(data, base=Path(), source="testservers.yaml").servers["db"]
    assert (spec.pull, spec.platform) == ("always", "linux/arm64/v8")
    default = parse_config(
        {"servers": {"db": {"image": "busybox:stable"}}}, base=Path(), source="x"
    ).servers["db"]
    assert (default.pull, default.platform) == ("missing", None)


YAML = """
servers:
  db:
    image: postgres:16
    pull: always
    platform: linux/amd64
"""


def test_the_mirror_and_the_pull_option_are_in_the_header_and_the_list(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pytester.path / "testservers.yaml").write_text(YAML)
    pytester.makeini("[pytest]\ntestserver_registry_mirror = mirror.example:5000\n")
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    listed = pytester.runpytest("--testserver-list", "--testserver-pull=never")
    listed.stdout.fnmatch_lines(
        [
            "    pull:    always, platform linux/amd64",
            "testserver: Docker Hub images pulled from the mirror mirror.example:5000; "
            "pull never for every server (--testserver-pull)",
        ]
    )
    monkeypatch.setenv("TESTSERVER_REGISTRY_MIRROR", "env.example")  # wins over the ini
    header = pytester.runpytest()
    header.assert_outcomes(passed=1)
    header.stdout.fnmatch_lines(["testserver: Docker Hub images pulled from the mirror env.ex*"])


def test_a_bad_mirror_or_pull_option_stops_the_run_in_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pytester.path / "testservers.yaml").write_text(YAML)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    bad_pull = pytester.runpytest("--testserver-pull=sometimes")
    assert bad_pull.ret == pytest.ExitCode.USAGE_ERROR
    bad_pull.stderr.fnmatch_lines(["*--testserver-pull: invalid choice: 'sometimes'*"])
    monkeypatch.setenv("TESTSERVER_REGISTRY_MIRROR", "https://mirror.example")
    bad_mirror = pytester.runpytest()
    assert bad_mirror.ret == pytest.ExitCode.USAGE_ERROR
    bad_mirror.stderr.fnmatch_lines(
        [
            "ERROR: $TESTSERVER_REGISTRY_MIRROR: 'https://mirror.example' is not a registry "
            "address (such as mirror.example:5000, no scheme)"
        ]
    )


def test_a_pull_that_stalls_until_the_budget_is_one_line_with_what_it_had() -> None:
    from pytest_testserver.errors import EngineStalled

    class Stalling(FakeEngine):
        def pull(self, ref: str, **kw: Any) -> None:
            on_chunk = kw["on_chunk"]
            on_chunk({"status": "Pulling fs layer", "progressDetail": {}, "id": "l1"})
            raise EngineStalled("unix:///var/run/docker.sock", "no answer to pull within 4s")

    clock = Clock()
    with pytest.raises(ImageError) as caught:
        pulls.pull(Stalling([]), "r.example/db:1", pulling(clock), None)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "testserver: server 'db': image r.example/db:1 cannot be pulled: the pull made no "
        "progress until the image_timeout ran out (no answer to pull within 4s; pulling "
        "r.example/db:1: ?, 0/1 layers (0 s)): the registry r.example, or the engine's way to "
        "it, stalled"
    )
    assert clock.slept == []
