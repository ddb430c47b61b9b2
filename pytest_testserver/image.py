"""Images: the generated Dockerfile, the build-context tar, the content hash, and the build.

The plugin assembles the build context itself (binary-safe, modes preserved, symlinks kept as
links) and tags the result with a hash of everything that went into it, so an unchanged server
is never rebuilt.
"""

from __future__ import annotations

import contextlib
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

from .config import BuildSource, CopyFile, GeneratedSource, ImageSource, ServerSpec
from .errors import EngineError, ImageError

if TYPE_CHECKING:
    from .engine import Engine

HASH_VERSION = b"pytest-testserver image v1\n"
GENERATED_DOCKERFILE = "Dockerfile"
COPY_ROOT = "_testserver_copy"
BUILD_LOG_TAIL = 25
_STEP = re.compile(r"^(?:Step \d+/\d+ : |STEP \d+/\d+: )")  # Docker's; Podman's (buildah)


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


def generated_dockerfile(source: GeneratedSource) -> str:
    lines = [f"FROM {source.base}"]
    if packages := list(source.install):
        lines += [
            "ARG DEBIAN_FRONTEND=noninteractive",
            f"RUN {_json(['apt-get', 'update'])}",
            f"RUN {_json(['apt-get', 'install', '-y', '--no-install-recommends', *packages])}",
        ]
    for i, copy in enumerate(source.copy):
        lines.append(f"COPY {_json([_copy_name(i, copy), copy.dst])}")
    for step in source.run:
        argv = ["/bin/sh", "-c", step] if isinstance(step, str) else list(step)
        lines.append(f"RUN {_json(argv)}")
    return "\n".join(lines) + "\n"


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
    entries = [
        Entry(GENERATED_DOCKERFILE, "file", 0o644, data=generated_dockerfile(source).encode())
    ]
    for i, copy in enumerate(source.copy):
        name = _copy_name(i, copy).rstrip("/")
        if copy.src.is_dir():
            entries.append(Entry(name, "dir", 0o755))
            entries += _tree_entries(copy.src, name + "/", lambda _: True)
        else:
            mode = copy.mode if copy.mode is not None else copy.src.stat().st_mode & 0o7777
            entries.append(Entry(name, "file", mode, source=copy.src))
    return BuildPlan(tuple(entries), GENERATED_DOCKERFILE)


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


def build(
    engine: Engine,
    spec: ServerSpec,
    plan: BuildPlan,
    tag: str,
    labels: Mapping[str, str],
    *,
    nocache: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> None:
    """Build ``plan`` as ``tag``; a failure names the failing step and shows the log tail."""
    tail: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
    step = ""
    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as context:
        plan.write_tar(context)
        context.seek(0)
        chunks = engine.build(
            context,
            tag=tag,
            dockerfile=plan.dockerfile,
            buildargs=dict(plan.buildargs),
            target=plan.target,
            labels=labels,
            nocache=nocache,
        )
        for chunk in chunks:
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = " ".join(str(chunk.get("error") or detail.get("message", "")).split())
                where = f" at {step}" if step else ""
                raise ImageError(spec.name, f"build failed{where}: {message}", "\n".join(tail))
            for line in str(chunk.get("stream", "")).splitlines():
                if not line.strip():
                    continue
                tail.append(line)
                if _STEP.match(line):
                    step = line
                if on_line is not None:
                    on_line(line)


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
) -> None:
    """Make ``image`` exist: pulled, or built once per content hash.

    ``lock(tag)`` is held while the image is looked up and built, so that of several processes
    wanting it one builds and the others find it; ``rebuild(tag)`` is asked under that lock.
    """
    if image.plan is None:
        if not engine.image_exists(image.ref):
            try:
                engine.pull(image.ref)
            except EngineError as exc:
                raise ImageError(
                    spec.name, f"image {image.ref} is not here and cannot be pulled: {exc}"
                ) from None
        return
    with lock(image.ref) if lock is not None else contextlib.nullcontext():
        forced = rebuild(image.ref)
        if forced or not engine.image_exists(image.ref):
            build(engine, spec, image.plan, image.ref, labels, nocache=forced, on_line=on_line)
