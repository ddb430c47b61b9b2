"""Images: the generated Dockerfile, the build-context tar, the content hash, and the build.

The plugin assembles the build context itself (binary-safe, modes preserved, symlinks kept as
links) and tags the result with a hash of everything that went into it, so an unchanged server
is never rebuilt.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import pulls
from .config import BuildSource, CopyFile, GeneratedSource, ImageSource, ServerSpec
from .errors import EngineError, ImageError
from .identity import LABEL_PREFIX, project_digest
from .progress import LARGE_CONTEXT, Heartbeat, Say, megabytes, strip_controls

if TYPE_CHECKING:
    from .engine import Engine

HASH_VERSION = b"pytest-testserver image v1\n"
GENERATED_DOCKERFILE = "Dockerfile"
COPY_ROOT = "_testserver_copy"
BUILD_LOG_TAIL = 25
# Docker's classic builder ("Step 2/5 : RUN ..."); Podman's (buildah: "STEP 2/5: RUN ...").
_STEP = re.compile(r"^(?:Step (\d+)/\d+ : |STEP (\d+)/\d+: )")
# Labels of a built image: stable, never a run's (an image outlives the run that built it, and no
# run's teardown or leak check may count it); what --testserver-prune selects by.
LABEL_IMAGE = LABEL_PREFIX + "image"  # "1": built by the plugin
LABEL_IMAGE_PROJECT = LABEL_PREFIX + "image-project"  # run.project_digest of the root folder
LABEL_IMAGE_SERVER = LABEL_PREFIX + "image-server"
LABEL_IMAGE_CONTENT = LABEL_PREFIX + "image-content"  # the plan's digest


@dataclass(frozen=True)
class Entry:
    """One member of the build context."""

    name: str  # path inside the context, POSIX separators
    kind: str  # "file", "dir" or "symlink"
    mode: int
    source: Path | None = None  # a file on disk
    data: bytes | None = None  # or bytes in memory (a generated Dockerfile)
    link: str = ""


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build needs; ``digest`` hashes all of it."""

    entries: tuple[Entry, ...]
    dockerfile: str
    buildargs: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    # A generated Dockerfile's instructions in the user's words ("" for the plugin's own), in
    # order; empty for the user's own Dockerfile. Derived from ``dockerfile``: not hashed.
    steps: tuple[str, ...] = ()

    def digest(self) -> str:
        h = hashlib.sha256(HASH_VERSION)
        meta = {"dockerfile": self.dockerfile, "args": self.buildargs, "target": self.target}
        h.update(json.dumps(meta, sort_keys=True).encode())
        for entry in sorted(self.entries, key=lambda e: e.name):
            h.update(json.dumps([entry.name, entry.kind, entry.mode, entry.link]).encode())
            h.update(_content_digest(entry))
        return h.hexdigest()

    def write_tar(self, fileobj: IO[bytes]) -> None:
        with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in self.entries:
                info = tarfile.TarInfo(entry.name)
                info.mode = entry.mode
                info.mtime = 0  # reproducible: only content and modes matter
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.link
                    tar.addfile(info)
                elif entry.data is not None:
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
                else:
                    assert entry.source is not None
                    with entry.source.open("rb") as f:
                        info.size = os.fstat(f.fileno()).st_size
                        tar.addfile(info, f)


def _entry_size(entry: Entry) -> int:
    if entry.data is not None:
        return len(entry.data)
    if entry.kind == "file" and entry.source is not None:
        try:
            return entry.source.stat().st_size
        except OSError:
            return 0
    return 0


def biggest_entries(plan: BuildPlan, count: int = 3) -> list[tuple[str, int]]:
    """The context's largest top-level entries (a folder counts all it holds), largest first.

    A ``copy:`` entry is named by its file or folder name, not by the plugin's own
    ``_testserver_copy/<n>/`` folder around it.
    """
    sizes: dict[str, int] = {}
    for entry in plan.entries:
        parts = entry.name.split("/")
        key = parts[2] if parts[0] == COPY_ROOT and len(parts) >= 3 else parts[0]
        sizes[key] = sizes.get(key, 0) + _entry_size(entry)
    ranked = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(name, size) for name, size in ranked[:count] if size > 0]


def context_lines(plan: BuildPlan, size: int, where: str) -> list[str]:
    """What is said before a build context of ``size`` bytes is sent: its size, and when it is
    large, where it can be cut down (``where``: the .dockerignore to write, or the copy: list)."""
    lines = [f"sending build context ({megabytes(size)})"]
    if size > LARGE_CONTEXT:
        biggest = ", ".join(f"{name} ({megabytes(n)})" for name, n in biggest_entries(plan))
        lines.append(f"the build context is large ({megabytes(size)}): {where}; biggest: {biggest}")
    return lines


def _content_digest(entry: Entry) -> bytes:
    if entry.data is not None:
        return hashlib.sha256(entry.data).digest()
    if entry.kind != "file" or entry.source is None:
        return b""
    h = hashlib.sha256()
    with entry.source.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _json(args: list[str]) -> str:
    # JSON (exec) form everywhere: no value can end a line, start a new instruction or be
    # expanded by the builder.
    return json.dumps(args)


# The one shell script of a generated Dockerfile: a constant. The packages (validated Debian
# names) reach it as positional parameters, "$@", so no value is ever part of a shell string.
# One step: the package lists fetched, used and dropped together, so no cached `apt-get update`
# layer outlives the mirror it indexed; the downloaded .debs go too (apt-get clean).
# DEBIAN_FRONTEND is exported inside the script: this step only, not the image nor later steps.
INSTALL_SCRIPT = (
    "export DEBIAN_FRONTEND=noninteractive"
    " && apt-get update"
    ' && apt-get install -y --no-install-recommends "$@"'
    " && apt-get clean"
    " && rm -rf /var/lib/apt/lists/*"
)
STEP_TEXT_LIMIT = 60


def install_argv(packages: tuple[str, ...]) -> list[str]:
    """The exec-form argv of the install step; "sh" is the script's $0."""
    return ["/bin/sh", "-c", INSTALL_SCRIPT, "sh", *packages]


def step_argv(step: str | tuple[str, ...]) -> list[str]:
    return ["/bin/sh", "-c", step] if isinstance(step, str) else list(step)


def brief(text: str, limit: int = STEP_TEXT_LIMIT) -> str:
    """A step's text on one short line, for progress and error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _step_text(step: str | tuple[str, ...]) -> str:
    return step if isinstance(step, str) else json.dumps(list(step))


def generated_instructions(source: GeneratedSource) -> list[tuple[str, str]]:
    """Each Dockerfile instruction with the user's step it is ("" for the plugin's own FROM).

    The step names are the keys as the user wrote them, indexed as configuration errors index
    them (``run[0]`` is the first run step), so a build message points at the YAML, not at a
    Dockerfile the user never sees.
    """
    user: list[tuple[str, str, str]] = []  # (instruction, key, text)
    for i, step in enumerate(source.before_install):
        user.append((f"RUN {_json(step_argv(step))}", f"before_install[{i}]", _step_text(step)))
    if source.install:
        user.append(
            (f"RUN {_json(install_argv(source.install))}", "install", " ".join(source.install))
        )
    for i, copy in enumerate(source.copy):
        instruction = f"COPY {_json([_copy_name(i, copy), copy.dst])}"
        user.append((instruction, f"copy[{i}]", f"{copy.src.name} -> {copy.dst}"))
    for i, step in enumerate(source.run):
        user.append((f"RUN {_json(step_argv(step))}", f"run[{i}]", _step_text(step)))
    named = [
        (line, f"{key} (step {n} of {len(user)}): {brief(text)}")
        for n, (line, key, text) in enumerate(user, 1)
    ]
    return [(f"FROM {source.base}", ""), *named]


def generated_dockerfile(source: GeneratedSource) -> str:
    return _dockerfile_text(generated_instructions(source))


def _dockerfile_text(instructions: list[tuple[str, str]]) -> str:
    return "".join(line + "\n" for line, _ in instructions)


def _copy_name(i: int, copy: CopyFile) -> str:
    # The builder expands $VARS and wildcards in COPY sources even in JSON form: the context
    # name is ours, plain, whatever the file is called on the host.
    plain = re.fullmatch(r"[A-Za-z0-9_.-]+", copy.src.name) and copy.src.name not in (".", "..")
    name = f"{COPY_ROOT}/{i}/{copy.src.name if plain else 'file'}"
    return name + "/" if copy.src.is_dir() else name


def _tree_entries(root: Path, prefix: str, keep: Callable[[str], bool]) -> Iterator[Entry]:
    """Every directory, file and symlink under ``root``, in a stable order."""
    # os.walk does not descend into symlinked folders: they go in as links.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in [*dirnames, *sorted(filenames)]:
            path = Path(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not keep(rel):
                continue
            st = path.lstat()
            mode = st.st_mode & 0o7777
            arc = f"{prefix}{rel}"
            if path.is_symlink():
                yield Entry(arc, "symlink", mode, link=os.readlink(path))
            elif path.is_dir():
                yield Entry(arc, "dir", mode)
            elif path.is_file():
                yield Entry(arc, "file", mode, source=path)


def plan_generated(source: GeneratedSource) -> BuildPlan:
    instructions = generated_instructions(source)
    dockerfile = _dockerfile_text(instructions).encode()
    entries = [Entry(GENERATED_DOCKERFILE, "file", 0o644, data=dockerfile)]
    for i, copy in enumerate(source.copy):
        name = _copy_name(i, copy).rstrip("/")
        if copy.src.is_dir():
            entries.append(Entry(name, "dir", 0o755))
            entries += _tree_entries(copy.src, name + "/", lambda _: True)
        else:
            mode = copy.mode if copy.mode is not None else copy.src.stat().st_mode & 0o7777
            entries.append(Entry(name, "file", mode, source=copy.src))
    steps = tuple(step for _, step in instructions)
    return BuildPlan(tuple(entries), GENERATED_DOCKERFILE, steps=steps)


def plan_build(source: BuildSource) -> BuildPlan:
    ignore = read_dockerignore(source.context)
    always = {source.dockerfile, ".dockerignore"}
    entries = _tree_entries(source.context, "", lambda rel: rel in always or not ignore(rel))
    return BuildPlan(tuple(entries), source.dockerfile, source.args, source.target)


def plan_for(spec: ServerSpec) -> BuildPlan | None:
    if isinstance(spec.image, GeneratedSource):
        return plan_generated(spec.image)
    if isinstance(spec.image, BuildSource):
        return plan_build(spec.image)
    return None


def image_tag(spec: ServerSpec, plan: BuildPlan) -> str:
    return f"pytest-testserver/{spec.name.lower()}:{plan.digest()[:24]}"


# .dockerignore: the patterns of moby/patternmatcher, as the docker CLI applies them.
def read_dockerignore(context: Path) -> Callable[[str], bool]:
    path = context / ".dockerignore"
    if not path.is_file():
        return lambda _: False
    with path.open(encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in lines:
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
        rules.append((negate, re.compile(_pattern_regex(pattern))))

    def ignored(rel: str) -> bool:
        parts = rel.split("/")
        parents = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, regex in rules:
            if any(regex.fullmatch(p) for p in parents):
                result = not negate
        return result

    return ignored


def _pattern_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out.append(f"[{'^' + body[1:] if body.startswith('^') else body}]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def is_step(line: str) -> bool:
    """A build log line that starts a Dockerfile step ("Step 2/5 : RUN ...", Podman's
    "STEP 2/5: RUN ...")."""
    return bool(_STEP.match(line))


def user_step(plan: BuildPlan, line: str) -> str | None:
    """The step a build log line starts, as the user knows it; None for any other line and for
    the plugin's own steps (a generated FROM, the LABEL step of the build's labels).

    A generated Dockerfile's step is named by its key ("run[1] (step 3 of 4): make"): the
    builder's "Step 5/7" counts instructions the user never wrote. The user's own Dockerfile
    is theirs, so its steps are shown as the builder numbers them.
    """
    found = _STEP.match(line)
    if found is None:
        return None
    if not plan.steps:
        return None if f"LABEL {LABEL_PREFIX}" in line else line
    number = int(found.group(1) or found.group(2))
    return (plan.steps[number - 1] or None) if 0 < number <= len(plan.steps) else None


def image_labels(spec: ServerSpec, plan: BuildPlan, project: str) -> dict[str, str]:
    """The labels a built image carries: the plugin's mark, project, server and content."""
    return {
        LABEL_IMAGE: "1",
        LABEL_IMAGE_PROJECT: project_digest(project),
        LABEL_IMAGE_SERVER: spec.name,
        LABEL_IMAGE_CONTENT: plan.digest(),
    }


def step_instruction(line: str, limit: int = 60) -> str:
    """The instruction of a step line ("RUN sleep 7"), shortened for a one-line heartbeat."""
    text = _STEP.sub("", line, count=1).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build(
    engine: Engine,
    spec: ServerSpec,
    plan: BuildPlan,
    tag: str,
    labels: Mapping[str, str],
    *,
    nocache: bool = False,
    on_line: Callable[[str], None] | None = None,
    on_progress: Say | None = None,
    where: str = "",
) -> None:
    """Build ``plan`` as ``tag``; a failure names the failing step and shows the log tail.

    ``on_line`` gets every line of the builder's output, ``on_progress`` the context's size
    before it is sent and (``periodic``) a heartbeat naming a step that runs long without a
    line the user saw (a step is shown when it is the user's: ``user_step``). ``where`` says how
    to cut down a large context. Every line is stripped of escape sequences and control
    characters.
    """
    tail: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
    step = ""
    heartbeat = Heartbeat(functools.partial(on_progress, periodic=True)) if on_progress else None
    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as context:
        plan.write_tar(context)
        size = context.tell()
        context.seek(0)
        if on_progress is not None:
            for text in context_lines(plan, size, where or "a smaller context builds faster"):
                on_progress(text, periodic=False)
        chunks = engine.build(
            context,
            tag=tag,
            dockerfile=plan.dockerfile,
            buildargs=dict(plan.buildargs),
            target=plan.target,
            labels=labels,
            nocache=nocache,
        )
        if heartbeat is not None:
            heartbeat.start()
        try:
            for chunk in chunks:
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail") or {}
                    text = strip_controls(str(chunk.get("error") or detail.get("message", "")))
                    message = " ".join(text.split())
                    at = f" at {step}" if step else ""
                    raise ImageError(spec.name, f"build failed{at}: {message}", "\n".join(tail))
                for line in strip_controls(str(chunk.get("stream", ""))).splitlines():
                    if not line.strip():
                        continue
                    tail.append(line)
                    starts = is_step(line)
                    # the user's name for the step; None for the plugin's own (shown with -v)
                    named = user_step(plan, line) if starts else None
                    if starts:
                        # A failure in a hidden step (the base image) is named by the builder.
                        step = named or line
                    if heartbeat is not None:
                        heartbeat.seen(
                            line,
                            step=(named or step_instruction(line)) if starts else None,
                            shown=named is not None,
                        )
                    if on_line is not None:
                        on_line(line)
        finally:
            if heartbeat is not None:
                heartbeat.stop()


@dataclass(frozen=True)
class ImageRef:
    """The image a server runs: a reference, and the build plan behind it (None: pulled)."""

    ref: str
    plan: BuildPlan | None = None


def resolve(spec: ServerSpec) -> ImageRef:
    """What ``spec`` runs, without asking the engine: a build's tag is its content hash."""
    plan = plan_for(spec)
    if plan is None:
        assert isinstance(spec.image, ImageSource)
        return ImageRef(spec.image.ref)
    return ImageRef(image_tag(spec, plan), plan)


def is_missing_image(exc: EngineError) -> bool:
    return exc.status == 404 and "no such image" in str(exc).lower()


def ensure_image(
    engine: Engine,
    spec: ServerSpec,
    image: ImageRef,
    labels: Mapping[str, str],
    *,
    rebuild: Callable[[str], bool] = lambda tag: False,
    lock: Callable[[str], AbstractContextManager[Any]] | None = None,
    on_line: Callable[[str], None] | None = None,
    on_progress: Say | None = None,
    pulling: pulls.Pulling | None = None,
) -> str:
    """Make ``image`` exist: pulled (as ``pulling`` says: ``pulls.ensure``), or built once per
    content hash; a pulled image's registry digest ("" for a build).

    ``lock(tag)`` is held while the image is looked up and built, so that of several processes
    wanting it one builds and the others find it; ``rebuild(tag)`` is asked under that lock.
    """
    if image.plan is None:
        return pulls.ensure(engine, image.ref, pulling or pulls.Pulling(spec.name), on_progress)
    with lock(image.ref) if lock is not None else contextlib.nullcontext():
        forced = rebuild(image.ref)
        if forced or not engine.image_exists(image.ref):
            build(
                engine,
                spec,
                image.plan,
                image.ref,
                labels,
                nocache=forced,
                on_line=on_line,
                on_progress=on_progress,
                where=cut_down_hint(spec),
            )
    return ""


def cut_down_hint(spec: ServerSpec) -> str:
    """How a large build context is made smaller: what is sent is the build's context folder
    (less what its .dockerignore leaves out), or every ``copy:`` source whole."""
    if isinstance(spec.image, BuildSource):
        ignore = spec.image.context / ".dockerignore"
        verb = "add to" if ignore.is_file() else "write"
        return f"{verb} {ignore} to leave out what the image does not need"
    return "copy: sends each source whole; copy only what the image needs"
