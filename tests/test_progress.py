"""Progress for slow images: pull lines, the build context's size, heartbeats of long steps, the
xdist relay, and output without escape sequences.

The pure pieces (the stripper, the pull aggregation, the heartbeat, the context summary) are
tested directly; what a user sees is tested through pytester on the real engine, each test with
a build of its own (a unique step, so no layer cache answers for it). Pulls cannot be tested on
the engine here (no registry): their aggregation is tested on a recorded stream.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_testserver.config import BuildSource, CopyFile, GeneratedSource
from pytest_testserver.image import (
    biggest_entries,
    context_lines,
    cut_down_hint,
    generated_dockerfile,
    plan_build,
    plan_generated,
    step_instruction,
)
from pytest_testserver.progress import Heartbeat, PullProgress, megabytes, strip_controls
from pytest_testserver.terminal import Progress, relay_from, shown_kinds, worker_events
from tests.conftest import servers_yaml

ESC = "\x1b"


# ---------------------------------------------------------------- the stripper


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[1;32;40mbold green\x1b[m", "bold green"),
        ("\x1b[2K\x1b[1Gcleared", "cleared"),  # erase line, cursor to column 1
        ("\x1b[?25lhidden cursor\x1b[?25h", "hidden cursor"),
        ("\x1b]0;a window title\x07text", "text"),  # OSC ended by BEL
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink, ended by ST
        ("\x1b(Bcharset", "charset"),
        ("\x1b7saved\x1b8", "saved"),
        ("\x9b31m8-bit csi", "8-bit csi"),
        ("bell\x07 nul\x00 del\x7f bs\x08", "bell nul del bs"),
        ("10%\r50%\r100%", "100%"),  # a progress bar redrawing itself: its last state
        ("done\r", "done"),
        ("tab\tstays", "tab\tstays"),
        ("two\nlines", "two\nlines"),
        ("été 中文 ✓", "été 中文 ✓"),
        ("", ""),
    ],
)
def test_strip_controls(raw: str, clean: str) -> None:
    assert strip_controls(raw) == clean


@given(st.text())
def test_strip_controls_leaves_no_control_character(text: str) -> None:
    out = strip_controls(text)
    assert all(c in "\t\n" or not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) for c in out)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc",))))
def test_strip_controls_keeps_printable_text(text: str) -> None:
    assert strip_controls(text) == text


# ---------------------------------------------------------------- the pull aggregation

# A pull of a two-layer image with one layer already here, as the engine streams it
# (docker-py's pull(stream=True, decode=True)), with the time each event came.
RECORDED_PULL: list[tuple[float, dict[str, Any]]] = [
    (0.0, {"status": "Pulling from library/redis", "id": "7"}),
    (0.1, {"status": "Already exists", "progressDetail": {}, "id": "aaa"}),
    (0.1, {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"}),
    (0.1, {"status": "Pulling fs layer", "progressDetail": {}, "id": "ccc"}),
    (0.5, {"status": "Waiting", "progressDetail": {}, "id": "ccc"}),
    (
        1.0,
        {
            "status": "Downloading",
            "progressDetail": {"current": 1_000_000, "total": 30_000_000},
            "progress": "[>    ]  1MB/30MB",
            "id": "bbb",
        },
    ),
    (
        3.5,
        {
            "status": "Downloading",
            "progressDetail": {"current": 12_000_000, "total": 30_000_000},
            "id": "bbb",
        },
    ),
    (
        4.0,
        {
            "status": "Downloading",
            "progressDetail": {"current": 2_000_000, "total": 10_000_000},
            "id": "ccc",
        },
    ),
    (5.0, {"status": "Verifying Checksum", "progressDetail": {}, "id": "ccc"}),
    (5.0, {"status": "Download complete", "progressDetail": {}, "id": "ccc"}),
    (
        7.0,
        {
            "status": "Downloading",
            "progressDetail": {"current": 25_000_000, "total": 30_000_000},
            "id": "bbb",
        },
    ),
    (8.0, {"status": "Download complete", "progressDetail": {}, "id": "bbb"}),
    (
        9.0,
        {
            "status": "Extracting",
            "progressDetail": {"current": 5_000_000, "total": 30_000_000},
            "id": "bbb",
        },
    ),
    (10.0, {"status": "Pull complete", "progressDetail": {}, "id": "bbb"}),
    (10.0, {"status": "Pull complete", "progressDetail": {}, "id": "ccc"}),
    (10.1, {"status": "Digest: sha256:" + "0" * 64}),
    (10.1, {"status": "Status: Downloaded newer image for redis:7"}),
]


def replay(pull: PullProgress) -> list[str]:
    lines = []
    for at, chunk in RECORDED_PULL:
        pull.feed(chunk)
        if (line := pull.line(at)) is not None:
            lines.append(line)
    return lines


def test_a_pull_is_summed_over_its_layers_and_throttled() -> None:
    pull = PullProgress("redis:7", started=0.0, every=3.0)
    lines = replay(pull)
    # nothing in the first 3 s, then at most one line every 3 s
    assert lines == [
        "pulling redis:7: 12.0 MB of 30.0 MB, 1/3 layers (4 s)",  # ccc's size not known yet
        "pulling redis:7: 35.0 MB of 40.0 MB, 2/3 layers (7 s)",
        "pulling redis:7: 40.0 MB of 40.0 MB, 3/3 layers (10 s)",
    ]
    assert pull.final(10.2) == "pulled redis:7 (40.0 MB, 2 new layers, 1 already here) in 10.2 s"


def test_a_quick_pull_has_only_its_final_line() -> None:
    pull = PullProgress("busybox:1", started=100.0)
    pull.feed({"status": "Pulling fs layer", "progressDetail": {}, "id": "x"})
    pull.feed({"status": "Downloading", "progressDetail": {"current": 5, "total": 800}, "id": "x"})
    pull.feed({"status": "Pull complete", "progressDetail": {}, "id": "x"})
    assert pull.line(100.5) is None
    assert pull.final(100.6) == "pulled busybox:1 (0.8 kB, 1 new layer) in 0.6 s"


def test_a_layer_whose_download_was_not_reported_is_sized_by_its_extraction() -> None:
    # A loopback registry: the engine sent no "Downloading" event for this layer, only its
    # extraction's (the shape of a real pull here; the final size was 0.0 kB before).
    pull = PullProgress("127.0.0.1:5000/demo/big:1", started=0.0)
    for chunk in [
        {"status": "Already exists", "progressDetail": {}, "id": "base"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "x"},
        {"status": "Verifying Checksum", "progressDetail": {}, "id": "x"},
        {"status": "Download complete", "progressDetail": {}, "id": "x"},
        {"status": "Extracting", "progressDetail": {"current": 1, "total": 12_000_000}, "id": "x"},
        {"status": "Pull complete", "progressDetail": {}, "id": "x"},
    ]:
        pull.feed(chunk)
    assert pull.final(1.0) == (
        "pulled 127.0.0.1:5000/demo/big:1 (12.0 MB, 1 new layer, 1 already here) in 1.0 s"
    )


def test_a_pull_that_transferred_nothing_says_so_not_zero_bytes() -> None:
    pull = PullProgress("x:1", started=0.0)
    pull.feed({"status": "Pulling from demo/x", "id": "1"})
    pull.feed({"status": "Digest: sha256:" + "0" * 64})
    assert pull.final(0.1) == "pulled x:1 (no new layers) in 0.1 s"
    pull.feed({"status": "Pulling fs layer", "progressDetail": {}, "id": "y"})
    pull.feed({"status": "Pull complete", "progressDetail": {}, "id": "y"})
    assert pull.final(0.2) == "pulled x:1 (size not reported, 1 new layer) in 0.2 s"


def test_a_pull_of_an_image_already_here_says_so_without_sizes() -> None:
    pull = PullProgress("x:1", started=0.0)
    pull.feed({"status": "Already exists", "progressDetail": {}, "id": "a"})
    assert pull.line(4.0) == "pulling x:1: ?, 1/1 layers (4 s)"


@pytest.mark.parametrize(
    "chunk",
    [
        {"status": "Downloading", "progressDetail": "not a mapping", "id": "a"},
        {"status": "Downloading", "progressDetail": {"current": "1", "total": None}, "id": "a"},
        {"status": "Downloading", "progressDetail": {"current": -5, "total": -1}, "id": "a"},
        {"status": "Downloading", "id": ["not", "a", "string"]},
        {"progressDetail": {"current": 1}},
        {},
    ],
)
def test_odd_pull_events_are_ignored_not_fatal(chunk: dict[str, Any]) -> None:
    pull = PullProgress("x:1", started=0.0)
    pull.feed(chunk)
    assert pull.downloaded == 0
    assert pull.total == 0


# ---------------------------------------------------------------- the heartbeat


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_heartbeat_names_a_silent_step_every_period() -> None:
    clock = Clock()
    beat = Heartbeat(lambda _: None, every=5.0, clock=clock)
    assert beat.due(10.0) is None  # no step yet: nothing to name
    clock.now = 1.0
    beat.seen("Step 2/3 : RUN sleep 60", step="RUN sleep 60", shown=True)
    assert beat.due(5.9) is None
    assert beat.due(6.0) == "building, RUN sleep 60 (5 s)"
    assert beat.due(10.9) is None  # the heartbeat itself counts as a line shown
    assert beat.due(11.0) == "building, RUN sleep 60 (10 s)"
    assert beat.due(36.0) == "building, RUN sleep 60 (35 s)"


def test_output_the_user_does_not_see_does_not_hold_the_heartbeat_back() -> None:
    clock = Clock()
    beat = Heartbeat(lambda _: None, every=5.0, clock=clock)
    beat.seen("Step 2/3 : RUN make", step="RUN make", shown=True)
    for t in (1.0, 2.0, 3.0, 4.0):
        clock.now = t
        beat.seen("cc -c x.c")  # build output: shown with -v only
    assert beat.due(5.0) == "building, RUN make (5 s)"


def test_a_new_step_restarts_the_count() -> None:
    clock = Clock()
    beat = Heartbeat(lambda _: None, every=5.0, clock=clock)
    beat.seen("Step 2/3 : RUN a", step="RUN a", shown=True)
    clock.now = 8.0
    beat.seen("Step 3/3 : RUN b", step="RUN b", shown=True)
    assert beat.due(12.0) is None
    assert beat.due(13.0) == "building, RUN b (5 s)"


def test_a_hidden_step_still_restarts_the_count() -> None:
    # our own LABEL step is shown with -v only: the heartbeat then names it, from its start
    clock = Clock()
    beat = Heartbeat(lambda _: None, every=5.0, clock=clock)
    beat.seen("Step 2/3 : RUN a", step="RUN a", shown=True)
    clock.now = 3.0
    beat.seen("Step 3/3 : LABEL x", step="LABEL x", shown=False)
    assert beat.due(7.0) is None
    assert beat.due(8.0) == "building, LABEL x (5 s)"


def test_the_heartbeat_thread_speaks_while_the_stream_is_silent_and_stops() -> None:
    said: list[str] = []
    spoke = threading.Event()

    def emit(text: str) -> None:
        said.append(text)
        spoke.set()

    beat = Heartbeat(emit, every=0.05)
    beat.seen("Step 1/1 : RUN sleep 9", step="RUN sleep 9", shown=True)
    beat.start()
    try:
        assert spoke.wait(30), "no heartbeat"
    finally:
        beat.stop()
    count = len(said)
    assert said[0].startswith("building, RUN sleep 9 (")
    spoke.clear()
    assert not spoke.wait(0.3)  # stopped: no more
    assert len(said) == count


def test_a_failing_emit_does_not_end_the_heartbeat() -> None:
    calls: list[int] = []
    twice = threading.Event()

    def emit(text: str) -> None:
        calls.append(1)
        if len(calls) >= 2:
            twice.set()
        raise OSError("the terminal is gone")

    beat = Heartbeat(emit, every=0.05)
    beat.seen("Step 1/1 : RUN x", step="RUN x", shown=True)
    beat.start()
    try:
        assert twice.wait(30)
    finally:
        beat.stop()


@pytest.mark.parametrize(
    ("line", "instruction"),
    [
        ("Step 3/8 : RUN apt-get update", "RUN apt-get update"),
        ("STEP 3/8: RUN apt-get update", "RUN apt-get update"),
        ("Step 1/2 : RUN " + "x" * 100, "RUN " + "x" * 53 + "..."),
    ],
)
def test_step_instruction(line: str, instruction: str) -> None:
    assert step_instruction(line) == instruction
    assert len(step_instruction(line)) <= 60


# ---------------------------------------------------------------- the context summary


def test_biggest_entries_sum_folders_and_name_copies_by_their_own_name(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"x" * 3000)
    (tmp_path / "data" / "b.bin").write_bytes(b"x" * 2000)
    (tmp_path / "small.txt").write_bytes(b"x" * 10)
    (tmp_path / "mid.bin").write_bytes(b"x" * 4000)
    source = GeneratedSource(
        "busybox:stable",
        copy=(
            CopyFile(tmp_path / "data", "/data"),
            CopyFile(tmp_path / "small.txt", "/s"),
            CopyFile(tmp_path / "mid.bin", "/m"),
        ),
    )
    dockerfile = len(generated_dockerfile(source).encode())
    assert 10 < dockerfile < 4000
    assert biggest_entries(plan_generated(source)) == [
        ("data", 5000),
        ("mid.bin", 4000),
        ("Dockerfile", dockerfile),
    ]


def test_a_small_context_is_only_sized(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:stable\n")
    plan = plan_build(BuildSource(tmp_path, "Dockerfile"))
    assert context_lines(plan, 10240, "hint") == ["sending build context (10.2 kB)"]


def test_a_large_context_gets_the_hint_and_its_biggest_entries(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:stable\n")
    with (tmp_path / "big.bin").open("wb") as f:
        f.truncate(60_000_000)
    spec_source = BuildSource(tmp_path, "Dockerfile")
    plan = plan_build(spec_source)
    lines = context_lines(plan, 60_010_240, "write x/.dockerignore")
    assert lines == [
        "sending build context (60.0 MB)",
        "the build context is large (60.0 MB): write x/.dockerignore; "
        "biggest: big.bin (60.0 MB), Dockerfile (0.0 kB)",
    ]


def test_the_hint_names_the_dockerignore_to_write_or_to_add_to(tmp_path: Path) -> None:
    from pytest_testserver.config import ServerSpec

    spec = ServerSpec(name="web", image=BuildSource(tmp_path, "Dockerfile"))
    assert cut_down_hint(spec) == (
        f"write {tmp_path / '.dockerignore'} to leave out what the image does not need"
    )
    (tmp_path / ".dockerignore").write_text("*.log\n")
    assert cut_down_hint(spec).startswith(f"add to {tmp_path / '.dockerignore'} ")
    generated = ServerSpec(name="web", image=GeneratedSource("busybox:stable"))
    assert "copy:" in cut_down_hint(generated)


def test_sizes() -> None:
    assert megabytes(0) == "0.0 kB"
    assert megabytes(10240) == "10.2 kB"
    assert megabytes(100_000) == "0.1 MB"
    assert megabytes(60_000_000) == "60.0 MB"


def test_progress_lines_are_shown_at_the_default_verbosity_not_with_quiet() -> None:
    assert "progress" in shown_kinds(0)
    assert "progress" in shown_kinds(1)
    assert shown_kinds(-1) == ("warning",)


# ---------------------------------------------------------------- on the real engine


@pytest.fixture
def token(docker_api: Any) -> Iterator[str]:
    """A name for this test's server and a word for its build step: a build no other run made
    (no layer cache answers for it); its images are removed afterwards."""
    name = f"p{uuid.uuid4().hex[:10]}"
    yield name
    for img in docker_api.images(name=f"pytest-testserver/{name}"):
        docker_api.remove_image(img["Id"], force=True)


def lines_of(result: pytest.RunResult) -> list[str]:
    return result.stdout.lines + result.stderr.lines


SLOW_STEP = """
    from: busybox:stable
    run: ["echo {token}; sleep 7"]
    command: ["sleep", "600"]
    wait: false
"""

TEST_USES_IT = """
import pytest

@pytest.mark.testserver("{token}")
def test_it(testserver):
    pass
"""


@pytest.mark.usefixtures("engine")
def test_a_long_step_shows_heartbeats_at_the_default_verbosity(
    pytester: pytest.Pytester, suite: Any, token: str
) -> None:
    suite(
        servers_yaml(**{token: SLOW_STEP.format(token=token)}),
        TEST_USES_IT.format(token=token),
    )
    result = pytester.runpytest("-p", "no:randomly")
    step = f"run[[]0[]] (step 1 of 1): echo {token}; sleep 7"  # the user's step, as written
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"testserver: {token}: sending build context (*kB)",
            f"testserver: building {token}: {step}",
            f"testserver: {token}: building, {step} (* s)",
            f"testserver: {token} ready in *",
        ]
    )
    assert not any("the build context is large" in line for line in lines_of(result))


@pytest.mark.usefixtures("engine")
def test_under_xdist_the_controller_shows_the_workers_lines(
    pytester: pytest.Pytester, suite: Any, token: str
) -> None:
    suite(
        servers_yaml(**{token: SLOW_STEP.format(token=token)}),
        TEST_USES_IT.format(token=token),
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    step = f"run[[]0[]] (step 1 of 1): echo {token}; sleep 7"
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"[[]gw?[]] testserver: {token}: sending build context (*kB)",
            f"[[]gw?[]] testserver: building {token}: {step}",
            f"[[]gw?[]] testserver: {token}: building, {step} (* s)",
            f"[[]gw?[]] testserver: {token} ready in *",
        ]
    )


@pytest.mark.usefixtures("engine")
def test_a_large_build_context_shows_its_size_and_the_dockerignore_hint(
    pytester: pytest.Pytester, suite: Any, token: str
) -> None:
    suite(
        servers_yaml(
            **{
                token: """
                build: {context: ctx}
                command: ["sleep", "600"]
                wait: false
                """
            }
        ),
        TEST_USES_IT.format(token=token),
        {"ctx/Dockerfile": f"FROM busybox:stable\nRUN echo {token}\n"},
    )
    with (pytester.path / "ctx" / "big.bin").open("wb") as f:
        f.truncate(60_000_000)  # just above the 50 MB threshold; sparse, so cheap to make
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    ignore = pytester.path / "ctx" / ".dockerignore"
    result.stdout.fnmatch_lines(
        [
            f"testserver: {token}: sending build context (60.0 MB)",
            f"testserver: {token}: the build context is large (60.0 MB): write {ignore} to "
            "leave out what the image does not need; biggest: big.bin (60.0 MB), Dockerfile *",
        ]
    )


@pytest.mark.usefixtures("engine")
def test_a_build_failure_shows_its_output_without_escape_sequences(
    pytester: pytest.Pytester, suite: Any, token: str
) -> None:
    # red, a window title ended by BEL, reset: printf makes the bytes, in the build's output
    coloured = f"printf '\\\\033[31m\\\\033]0;title\\\\007red-{token}\\\\033[0m\\\\n'; exit 3"
    suite(
        servers_yaml(
            **{
                token: f"""
                from: busybox:stable
                run: ["{coloured}"]
                command: ["sleep", "600"]
                """
            }
        ),
        TEST_USES_IT.format(token=token),
    )
    result = pytester.runpytest("-p", "no:randomly", "-v")
    result.assert_outcomes(errors=1)
    lines = lines_of(result)
    assert any(line.rstrip().endswith(f"red-{token}") for line in lines), lines  # the tail
    assert any("build failed at " in line for line in lines), lines
    text = "\n".join(lines)
    assert ESC not in text
    assert "\x07" not in text


@pytest.mark.usefixtures("engine")
def test_heartbeats_kept_while_a_test_runs_are_shown_once_when_it_ends(
    pytester: pytest.Pytester, suite: Any, token: str
) -> None:
    # The server starts in the background when collection ends; the first test does not use it
    # and runs until its image is built, so every heartbeat comes while that test's output is
    # captured and waits for its end: only the newest is news by then.
    suite(
        servers_yaml(**{token: SLOW_STEP.format(token=token).replace("sleep 7", "sleep 12")}),
        f"""
        import time
        import pytest
        from tests.conftest import engine_api

        def test_first():
            api = engine_api()
            try:
                deadline = time.monotonic() + 600
                while not api.images(name="pytest-testserver/{token}"):
                    assert time.monotonic() < deadline, "the image was never built"
                    time.sleep(0.2)
            finally:
                api.close()

        @pytest.mark.testserver("{token}")
        def test_second(testserver):
            pass
        """,
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    beats = [line for line in result.stdout.lines if f"testserver: {token}: building, " in line]
    assert len(beats) == 1, result.stdout.lines
    seconds = int(beats[0].rsplit("(", 1)[1].split()[0])
    assert seconds >= 10, beats  # the second heartbeat or a later one, not the first


# ---------------------------------------------------------------- the terminal relay (no pytest)


def recording_progress(verbosity: int = 0) -> tuple[Progress, list[str]]:
    written: list[str] = []
    progress = Progress(
        verbosity, write=written.append, warn=lambda text: written.append(f"WARN {text}")
    )
    return progress, written


def in_thread(fn: Any, *args: Any) -> None:
    thread = threading.Thread(target=fn, args=args)
    thread.start()
    thread.join()


def test_lines_from_a_background_start_wait_for_the_main_thread_newest_heartbeat_only() -> None:
    progress, written = recording_progress()
    in_thread(progress, "ready", "web: ready")
    in_thread(progress, "heartbeat", "web: building, RUN a (5 s)")
    in_thread(progress, "heartbeat", "db: building, RUN b (5 s)")
    in_thread(progress, "heartbeat", "web: building, RUN a (10 s)")
    assert written == []  # a test runs: its capture must not let them through
    progress.flush()
    assert written == [
        "testserver: web: ready",
        "testserver: db: building, RUN b (5 s)",
        "testserver: web: building, RUN a (10 s)",
    ]


def test_while_the_main_thread_waits_for_servers_lines_are_written_as_they_come() -> None:
    progress, written = recording_progress()
    with progress.waiting():
        in_thread(progress, "ready", "web: ready")
        assert written == ["testserver: web: ready"]
    in_thread(progress, "ready", "db: ready")
    assert written == ["testserver: web: ready"]


def test_kinds_the_verbosity_hides_are_dropped_and_warnings_go_to_warn() -> None:
    progress, written = recording_progress(verbosity=-1)
    progress("ready", "web: ready")
    progress("warning", "something odd")
    assert written == ["WARN something odd"]


def test_a_workers_lines_are_relayed_with_its_id_and_odd_messages_ignored() -> None:
    progress, written = recording_progress()

    class Channel:
        def setcallback(self, callback: Any, endmarker: object) -> None:
            self.callback = callback

    channel = relay_from(progress, "gw1", Channel())
    channel.callback(("ready", "web: ready"))
    channel.callback("not a pair")
    channel.callback(("instance", "hidden at the default verbosity"))
    assert written == ["[gw1] testserver: web: ready"]


def test_a_worker_sends_what_its_verbosity_shows_and_prints_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sent: list[object] = []

    class Channel:
        def send(self, message: object) -> None:
            sent.append(message)

    on_event = worker_events(Channel(), verbosity=0)
    on_event("ready", "web: ready")
    on_event("build-output", "hidden")
    on_event("warning", "careful")
    assert sent == [("ready", "web: ready")]
    assert capsys.readouterr().err == "testserver: warning: careful\n"
    worker_events(None, 0)("ready", "no controller to tell")  # no channel: nothing breaks
