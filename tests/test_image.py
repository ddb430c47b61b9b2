"""Unit tests of pytest_testserver.image without an engine.

Covered: the generated Dockerfile (before_install, the one install step), the user's steps in
build output, a built image's labels, the build-context plan (.dockerignore, symlinks, modes), the
tar it writes, its content digest and the image tag. ``build`` and ``ensure_image`` need a Docker
engine and are not tested here.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from pytest_testserver import validate
from pytest_testserver.config import BuildSource, CopyFile, GeneratedSource, ImageSource, ServerSpec
from pytest_testserver.identity import LABEL_PREFIX, LABEL_RUN, RunContext, project_digest
from pytest_testserver.image import (
    INSTALL_SCRIPT,
    LABEL_IMAGE,
    LABEL_IMAGE_CONTENT,
    LABEL_IMAGE_PROJECT,
    LABEL_IMAGE_SERVER,
    BuildPlan,
    Entry,
    generated_dockerfile,
    image_labels,
    image_tag,
    plan_build,
    plan_for,
    plan_generated,
    user_step,
)

INSTRUCTIONS = {"FROM", "RUN", "COPY"}


def parse_dockerfile(text: str) -> list[tuple[str, object]]:
    """(instruction, argument) per line; RUN and COPY arguments must be JSON lists of strings."""
    assert text.endswith("\n")
    result: list[tuple[str, object]] = []
    for line in text.splitlines():
        instruction, _, rest = line.partition(" ")
        assert instruction in INSTRUCTIONS, line
        if instruction in ("RUN", "COPY"):
            args = json.loads(rest)
            assert isinstance(args, list), line
            assert all(isinstance(a, str) for a in args), line
            result.append((instruction, args))
        else:
            result.append((instruction, rest))
    return result


def tar_members(plan: BuildPlan) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    buf = io.BytesIO()
    plan.write_tar(buf)
    buf.seek(0)
    members: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=buf, mode="r") as tar:
        for info in tar.getmembers():
            f = tar.extractfile(info) if info.isfile() else None
            members[info.name] = (info, f.read() if f is not None else None)
    return members


def write(path: Path, data: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    path.chmod(mode)
    return path


# --- the generated Dockerfile --------------------------------------------------------------------


def test_generated_dockerfile_with_only_a_base() -> None:
    assert generated_dockerfile(GeneratedSource(base="busybox:stable")) == "FROM busybox:stable\n"


def test_generated_dockerfile_with_every_part(tmp_path: Path) -> None:
    conf = write(tmp_path / "app.conf", "x")
    site = tmp_path / "site"
    site.mkdir()
    source = GeneratedSource(
        base="debian:bookworm-slim",
        install=("curl", "ca-certificates"),
        copy=(CopyFile(conf, "/etc/app.conf", 0o600), CopyFile(site, "/srv/www")),
        run=("echo ready > /ready", ("touch", "/done")),
    )
    assert generated_dockerfile(source) == (
        "FROM debian:bookworm-slim\n"
        f"RUN {json.dumps(['/bin/sh', '-c', INSTALL_SCRIPT, 'sh', 'curl', 'ca-certificates'])}\n"
        'COPY ["_testserver_copy/0/app.conf", "/etc/app.conf"]\n'
        'COPY ["_testserver_copy/1/site/", "/srv/www"]\n'
        'RUN ["/bin/sh", "-c", "echo ready > /ready"]\n'
        'RUN ["touch", "/done"]\n'
    )


def test_generated_dockerfile_without_packages_has_no_apt_lines() -> None:
    text = generated_dockerfile(GeneratedSource(base="busybox", run=("true",)))
    assert "apt-get" not in text
    assert "DEBIAN_FRONTEND" not in text


@pytest.mark.parametrize(
    "step",
    [
        pytest.param('echo a"]\nRUN ["rm", "-rf", "/"]', id="quote-bracket-newline"),
        pytest.param('"]', id="quote-bracket"),
        pytest.param("line one\nFROM scratch", id="newline-new-instruction"),
        pytest.param("a\r\nRUN evil", id="crlf"),
        pytest.param("ends with a backslash \\", id="trailing-backslash"),
        pytest.param("echo $HOME ${PATH} `id` $(id)", id="expansions"),
        pytest.param("unicode \u2028 separator \u00e9", id="unicode"),
        pytest.param("tab\tand\x0bvertical", id="control-characters"),
    ],
)
def test_a_run_step_cannot_break_out_of_its_line(step: str) -> None:
    source = GeneratedSource(base="busybox", run=(step, ("printf", step)))
    text = generated_dockerfile(source)
    assert "\r" not in text
    lines = parse_dockerfile(text)
    assert lines == [
        ("FROM", "busybox"),
        ("RUN", ["/bin/sh", "-c", step]),
        ("RUN", ["printf", step]),
    ]
    # Every JSON line ends its instruction: no continuation backslash at the end of a line.
    for line in text.splitlines()[1:]:
        assert line.endswith("]")


def test_every_line_of_a_full_dockerfile_parses(tmp_path: Path) -> None:
    conf = write(tmp_path / 'we"ird]name.conf', "x")
    source = GeneratedSource(
        base="debian:bookworm-slim",
        install=("curl=7.88.1-10+deb12u5",),
        copy=(CopyFile(conf, "/etc/x.conf"),),
        run=("a\nb", ("c", '"]')),
    )
    lines = parse_dockerfile(generated_dockerfile(source))
    assert [instruction for instruction, _ in lines] == ["FROM", "RUN", "COPY", "RUN", "RUN"]
    assert lines[1] == ("RUN", ["/bin/sh", "-c", INSTALL_SCRIPT, "sh", "curl=7.88.1-10+deb12u5"])
    # the context name is plain whatever the host file is called: no $ or wildcard to expand
    assert lines[2] == ("COPY", ["_testserver_copy/0/file", "/etc/x.conf"])
    assert lines[3] == ("RUN", ["/bin/sh", "-c", "a\nb"])
    assert lines[4] == ("RUN", ["c", '"]'])


def test_before_install_steps_come_first_in_the_order_written(tmp_path: Path) -> None:
    conf = write(tmp_path / "app.conf", "x")
    source = GeneratedSource(
        base="debian:bookworm-slim",
        before_install=(("install", "-d", "/etc/apt/keyrings"), "echo 'exit 101' > /p"),
        install=("curl",),
        copy=(CopyFile(conf, "/etc/app.conf"),),
        run=("echo done",),
    )
    assert parse_dockerfile(generated_dockerfile(source)) == [
        ("FROM", "debian:bookworm-slim"),
        ("RUN", ["install", "-d", "/etc/apt/keyrings"]),
        ("RUN", ["/bin/sh", "-c", "echo 'exit 101' > /p"]),
        ("RUN", ["/bin/sh", "-c", INSTALL_SCRIPT, "sh", "curl"]),
        ("COPY", ["_testserver_copy/0/app.conf", "/etc/app.conf"]),
        ("RUN", ["/bin/sh", "-c", "echo done"]),
    ]


def test_before_install_without_install_is_just_steps() -> None:
    source = GeneratedSource(base="busybox", before_install=("true",), run=(("false",),))
    assert parse_dockerfile(generated_dockerfile(source)) == [
        ("FROM", "busybox"),
        ("RUN", ["/bin/sh", "-c", "true"]),
        ("RUN", ["false"]),
    ]


def test_install_is_one_step_with_this_exact_argv() -> None:
    source = GeneratedSource(base="debian:bookworm-slim", install=("curl", "libpq5=15.6-0+deb12u1"))
    lines = parse_dockerfile(generated_dockerfile(source))
    assert lines == [
        ("FROM", "debian:bookworm-slim"),
        (
            "RUN",
            [
                "/bin/sh",
                "-c",
                "export DEBIAN_FRONTEND=noninteractive"
                " && apt-get update"
                ' && apt-get install -y --no-install-recommends "$@"'
                " && apt-get clean"
                " && rm -rf /var/lib/apt/lists/*",
                "sh",
                "curl",
                "libpq5=15.6-0+deb12u1",
            ],
        ),
    ]


@pytest.mark.parametrize(
    "packages",
    [
        ("curl",),
        ("pkg-one", "pkg-two", "pkg-three"),
        ("libfoo+bar", "pkg:amd64=1:2.3~rc1-4+b1"),
        ("x" * 200,),
    ],
)
def test_package_names_never_reach_the_shell_script(packages: tuple[str, ...]) -> None:
    """The script is the same constant whatever the packages; each is one positional argument
    after $0, in the order given: nothing of a name is ever parsed by the shell."""
    text = generated_dockerfile(GeneratedSource(base="debian", install=packages))
    [(_, argv)] = [line for line in parse_dockerfile(text) if line[0] == "RUN"]
    assert isinstance(argv, list)
    assert argv[:4] == ["/bin/sh", "-c", INSTALL_SCRIPT, "sh"]
    assert tuple(argv[4:]) == packages
    assert '"$@"' in INSTALL_SCRIPT  # quoted: each name stays one word


def test_debian_frontend_is_set_for_the_install_step_only() -> None:
    source = GeneratedSource(base="debian", install=("curl",), run=("env",))
    lines = parse_dockerfile(generated_dockerfile(source))
    # exported inside the install script: no ARG or ENV reaches the run steps or the image
    assert [line for line in lines if "DEBIAN_FRONTEND" in json.dumps(line)] == [lines[1]]
    assert INSTALL_SCRIPT.startswith("export DEBIAN_FRONTEND=noninteractive && ")


# --- the user's steps in build output --------------------------------------------------------


@pytest.fixture
def steps_plan(tmp_path: Path) -> BuildPlan:
    conf = write(tmp_path / "app.conf", "x")
    return plan_generated(
        GeneratedSource(
            base="debian:bookworm-slim",
            before_install=("echo   preseed\n  more",),
            install=("curl", "ca-certificates"),
            copy=(CopyFile(conf, "/etc/app.conf"),),
            run=(("touch", "/done"), "x" * 200),
        )
    )


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1, None),  # FROM: the plugin's
        (2, "before_install[0] (step 1 of 5): echo preseed more"),
        (3, "install (step 2 of 5): curl ca-certificates"),
        (4, "copy[0] (step 3 of 5): app.conf -> /etc/app.conf"),
        (5, 'run[0] (step 4 of 5): ["touch", "/done"]'),
        (6, f"run[1] (step 5 of 5): {'x' * 57}..."),
        (7, None),  # the LABEL step the build's labels add
    ],
)
@pytest.mark.parametrize("form", ["Step {n}/7 : RUN whatever", "STEP {n}/7: RUN whatever"])
def test_build_lines_name_the_users_step(
    steps_plan: BuildPlan, number: int, expected: str | None, form: str
) -> None:
    assert user_step(steps_plan, form.format(n=number)) == expected


@pytest.mark.parametrize("line", [" ---> Running in 1234", "Successfully built abc", "Step x/7 :"])
def test_other_build_lines_are_no_step(steps_plan: BuildPlan, line: str) -> None:
    assert user_step(steps_plan, line) is None


def test_the_users_own_dockerfile_keeps_the_builders_numbers(tmp_path: Path) -> None:
    write(tmp_path / "Dockerfile", "FROM busybox\nRUN true\n")
    plan = plan_build(BuildSource(tmp_path, "Dockerfile"))
    assert user_step(plan, "Step 2/3 : RUN true") == "Step 2/3 : RUN true"
    assert user_step(plan, "STEP 1/2: FROM busybox") == "STEP 1/2: FROM busybox"
    assert user_step(plan, f"Step 3/3 : LABEL {LABEL_PREFIX}image=1") is None
    assert user_step(plan, "Removing intermediate container 1") is None


# --- the labels of a built image ---------------------------------------------------------------


def test_a_built_image_carries_stable_labels_and_no_run_label(
    steps_plan: BuildPlan, tmp_path: Path
) -> None:
    spec = ServerSpec("web", GeneratedSource(base="busybox"))
    labels = image_labels(spec, steps_plan, str(tmp_path))
    assert labels == {
        LABEL_IMAGE: "1",
        LABEL_IMAGE_PROJECT: project_digest(str(tmp_path)),
        LABEL_IMAGE_SERVER: "web",
        LABEL_IMAGE_CONTENT: steps_plan.digest(),
    }
    run_labels = RunContext("abc").labels("web")
    assert LABEL_RUN in run_labels
    assert not set(labels) & set(run_labels)  # nothing of the run, nor of its owner


def test_the_project_digest_follows_the_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    other = tmp_path / "other"
    other.mkdir()
    assert project_digest(str(tmp_path / "link")) == project_digest(str(tmp_path / "real"))
    assert project_digest(str(tmp_path / "real" / ".")) == project_digest(str(tmp_path / "real"))
    assert project_digest(str(other)) != project_digest(str(tmp_path / "real"))


# --- plan_generated and write_tar ----------------------------------------------------------------


@pytest.fixture
def generated(tmp_path: Path) -> GeneratedSource:
    """A copied file with a configured mode, one with its own mode, and a copied folder."""
    files = tmp_path / "files"
    conf = write(files / "app.conf", "listen 8080\n", 0o644)
    script = write(files / "start.sh", "#!/bin/sh\nexec httpd\n", 0o750)
    site = files / "site"
    write(site / "index.html", "<h1>hi</h1>\n", 0o644)
    write(site / "cgi" / "run.sh", "#!/bin/sh\n", 0o755)
    write(site / "private.key", "k\n", 0o600)
    (site / "cgi").chmod(0o711)
    return GeneratedSource(
        base="busybox:stable",
        copy=(
            CopyFile(conf, "/etc/app.conf", 0o600),
            CopyFile(script, "/start.sh"),
            CopyFile(site, "/srv/www"),
        ),
        run=("true",),
    )


def test_plan_generated_tar_contains_the_dockerfile_and_the_copied_files(
    generated: GeneratedSource,
) -> None:
    plan = plan_generated(generated)
    assert plan.dockerfile == "Dockerfile"
    members = tar_members(plan)
    assert sorted(members) == [
        "Dockerfile",
        "_testserver_copy/0/app.conf",
        "_testserver_copy/1/start.sh",
        "_testserver_copy/2/site",
        "_testserver_copy/2/site/cgi",
        "_testserver_copy/2/site/cgi/run.sh",
        "_testserver_copy/2/site/index.html",
        "_testserver_copy/2/site/private.key",
    ]
    info, data = members["Dockerfile"]
    assert data == generated_dockerfile(generated).encode()
    assert info.mode == 0o644
    assert members["_testserver_copy/0/app.conf"][1] == b"listen 8080\n"
    assert members["_testserver_copy/2/site/cgi/run.sh"][1] == b"#!/bin/sh\n"


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        pytest.param("_testserver_copy/0/app.conf", 0o600, id="configured-mode"),
        pytest.param("_testserver_copy/1/start.sh", 0o750, id="file-keeps-its-mode"),
        pytest.param("_testserver_copy/2/site", 0o755, id="copied-folder"),
        pytest.param("_testserver_copy/2/site/index.html", 0o644, id="folder-file-644"),
        pytest.param("_testserver_copy/2/site/cgi/run.sh", 0o755, id="folder-file-755"),
        pytest.param("_testserver_copy/2/site/private.key", 0o600, id="folder-file-600"),
        pytest.param("_testserver_copy/2/site/cgi", 0o711, id="subfolder-mode"),
    ],
)
def test_tar_members_have_the_right_mode(generated: GeneratedSource, name: str, mode: int) -> None:
    info, _ = tar_members(plan_generated(generated))[name]
    assert oct(info.mode) == oct(mode)


def test_tar_members_have_mtime_zero_and_the_right_types(generated: GeneratedSource) -> None:
    members = tar_members(plan_generated(generated))
    for info, _ in members.values():
        assert info.mtime == 0, info.name
    assert members["_testserver_copy/2/site"][0].isdir()
    assert members["_testserver_copy/2/site/cgi"][0].isdir()
    assert members["_testserver_copy/0/app.conf"][0].isfile()


def test_the_tar_is_byte_for_byte_reproducible(generated: GeneratedSource) -> None:
    first, second = io.BytesIO(), io.BytesIO()
    plan_generated(generated).write_tar(first)
    for copy in generated.copy:
        os.utime(copy.src, (1, 1))
    plan_generated(generated).write_tar(second)
    assert first.getvalue() == second.getvalue()


def test_plan_for_picks_the_plan_by_source(generated: GeneratedSource) -> None:
    spec = ServerSpec(name="web", image=generated)
    assert plan_for(spec) == plan_generated(generated)
    assert plan_for(ServerSpec(name="web", image=ImageSource("busybox"))) is None


# --- plan_build: .dockerignore and symlinks ------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM busybox:stable\nCOPY . /app\n")
    write(ctx / "app.py", "print('hi')\n")
    write(ctx / "debug.log", "noise\n")
    write(ctx / "keep.log", "wanted\n")
    write(ctx / "sub" / "trace.log", "nested logs are not matched by *.log\n")
    write(ctx / "build" / "out.bin", "artifact\n")
    write(ctx / "build" / "deep" / "x.o", "artifact\n")
    write(ctx / "secret.txt", "root secret\n")
    write(ctx / "a" / "b" / "secret.txt", "nested secret\n")
    write(ctx / "a" / "b" / "public.txt", "public\n")
    write(
        ctx / ".dockerignore",
        "# comment line\n\n*.log\nbuild/\n**/secret.txt\n!keep.log\n",
    )
    return ctx


def names_of(plan: BuildPlan) -> set[str]:
    return {entry.name for entry in plan.entries}


def test_plan_build_honors_dockerignore(context: Path) -> None:
    plan = plan_build(BuildSource(context=context, dockerfile="Dockerfile"))
    assert names_of(plan) == {
        ".dockerignore",
        "Dockerfile",
        "a",
        "a/b",
        "a/b/public.txt",
        "app.py",
        "keep.log",
        "sub",
        "sub/trace.log",
    }


@pytest.mark.parametrize(
    ("name", "excluded_by"),
    [
        pytest.param("debug.log", "*.log", id="star-log"),
        pytest.param("build", "build/", id="folder"),
        pytest.param("build/out.bin", "build/", id="file-in-folder"),
        pytest.param("build/deep/x.o", "build/", id="deep-file-in-folder"),
        pytest.param("secret.txt", "**/secret.txt", id="double-star-root"),
        pytest.param("a/b/secret.txt", "**/secret.txt", id="double-star-nested"),
    ],
)
def test_plan_build_leaves_out_ignored_paths(context: Path, name: str, excluded_by: str) -> None:
    plan = plan_build(BuildSource(context=context, dockerfile="Dockerfile"))
    assert name not in names_of(plan), f"{name} should be excluded by {excluded_by}"


def test_a_negated_pattern_re_includes(context: Path) -> None:
    plan = plan_build(BuildSource(context=context, dockerfile="Dockerfile"))
    assert "keep.log" in names_of(plan)
    assert "debug.log" not in names_of(plan)


def test_the_dockerfile_and_dockerignore_are_always_included(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(ctx / "docker" / "Dockerfile.test", "FROM busybox\n")
    write(ctx / "app.py", "x")
    write(ctx / "other.txt", "x")
    write(ctx / ".dockerignore", "*\n.dockerignore\ndocker/\n!app.py\n")
    plan = plan_build(BuildSource(context=ctx, dockerfile="docker/Dockerfile.test"))
    assert names_of(plan) == {".dockerignore", "app.py", "docker/Dockerfile.test"}
    assert plan.dockerfile == "docker/Dockerfile.test"


def test_an_ignored_folder_can_have_a_file_re_included(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM busybox\n")
    write(ctx / "build" / "keep.txt", "x")
    write(ctx / "build" / "drop.txt", "x")
    write(ctx / ".dockerignore", "/build\n!build/keep.txt\n")
    names = names_of(plan_build(BuildSource(context=ctx, dockerfile="Dockerfile")))
    assert "build/keep.txt" in names
    assert "build/drop.txt" not in names


@pytest.mark.parametrize(
    ("pattern", "kept", "dropped"),
    [
        pytest.param("*.tmp", ["sub/a.tmp"], ["a.tmp"], id="star-is-one-level"),
        pytest.param("**/*.tmp", [], ["a.tmp", "sub/a.tmp"], id="double-star-any-level"),
        pytest.param("?.tmp", ["ab.tmp"], ["a.tmp"], id="question-mark"),
        pytest.param("[a-b].tmp", ["c.tmp"], ["a.tmp", "b.tmp"], id="class"),
        pytest.param("sub/*", ["a.tmp"], ["sub/a.tmp"], id="folder-star"),
    ],
)
def test_dockerignore_pattern_syntax(
    tmp_path: Path, pattern: str, kept: list[str], dropped: list[str]
) -> None:
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM busybox\n")
    for name in {*kept, *dropped}:
        write(ctx / name, "x")
    write(ctx / ".dockerignore", pattern + "\n")
    names = names_of(plan_build(BuildSource(context=ctx, dockerfile="Dockerfile")))
    for name in kept:
        assert name in names
    for name in dropped:
        assert name not in names


def test_without_dockerignore_everything_is_included(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM busybox\n")
    write(ctx / "x.log", "x")
    write(ctx / "sub" / "y", "y")
    names = names_of(plan_build(BuildSource(context=ctx, dockerfile="Dockerfile")))
    assert names == {"Dockerfile", "x.log", "sub", "sub/y"}


@pytest.fixture
def context_with_links(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    write(outside / "secret.txt", "do not send me\n")
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM busybox\n")
    write(ctx / "real.txt", "real\n")
    (ctx / "to-outside.txt").symlink_to(outside / "secret.txt")
    (ctx / "to-real.txt").symlink_to("real.txt")
    (ctx / "to-folder").symlink_to(outside, target_is_directory=True)
    (ctx / "dangling").symlink_to("does-not-exist")
    return ctx


def test_symlinks_are_kept_as_symlinks(context_with_links: Path, tmp_path: Path) -> None:
    plan = plan_build(BuildSource(context=context_with_links, dockerfile="Dockerfile"))
    entries = {entry.name: entry for entry in plan.entries}
    assert set(entries) == {
        "Dockerfile",
        "real.txt",
        "to-outside.txt",
        "to-real.txt",
        "to-folder",
        "dangling",
    }
    assert entries["to-outside.txt"].kind == "symlink"
    assert entries["to-outside.txt"].link == str(tmp_path / "outside" / "secret.txt")
    assert entries["to-real.txt"] == Entry(
        "to-real.txt", "symlink", entries["to-real.txt"].mode, link="real.txt"
    )
    assert entries["to-folder"].kind == "symlink"
    assert entries["dangling"].kind == "symlink"

    members = tar_members(plan)
    for name in ("to-outside.txt", "to-real.txt", "to-folder", "dangling"):
        assert members[name][0].issym(), name
    assert members["to-real.txt"][0].linkname == "real.txt"
    assert not any(name.startswith("to-folder/") for name in members)
    assert all(data != b"do not send me\n" for _, data in members.values())


def test_the_digest_does_not_read_through_symlinks(
    context_with_links: Path, tmp_path: Path
) -> None:
    source = BuildSource(context=context_with_links, dockerfile="Dockerfile")
    before = plan_build(source).digest()
    (tmp_path / "outside" / "secret.txt").write_text("changed outside the context\n")
    assert plan_build(source).digest() == before


# --- BuildPlan.digest ----------------------------------------------------------------------------


@pytest.fixture
def small_context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM busybox\nCOPY app.sh /\n")
    write(ctx / "Dockerfile.alt", "FROM busybox\nCOPY app.sh /\n")
    write(ctx / "app.sh", "echo hi\n", 0o755)
    return ctx


def digest_of(ctx: Path, **kwargs: object) -> str:
    fields: dict[str, object] = {"context": ctx, "dockerfile": "Dockerfile", **kwargs}
    return plan_build(BuildSource(**fields)).digest()  # type: ignore[arg-type]


def test_digest_is_a_sha256_hex_and_stable(small_context: Path) -> None:
    plan = plan_build(BuildSource(context=small_context, dockerfile="Dockerfile"))
    assert re.fullmatch(r"[0-9a-f]{64}", plan.digest())
    assert digest_of(small_context) == plan.digest()  # a second plan of the same folder


def test_digest_is_the_same_in_another_process_and_folder(
    small_context: Path, tmp_path: Path
) -> None:
    """The tag is found again by the next run: another interpreter (another hash seed), the
    same content copied elsewhere."""
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "elsewhere" / "ctx"
    shutil.copytree(small_context, copy, symlinks=True)
    code = (
        "import sys; from pathlib import Path; "
        "from pytest_testserver.config import BuildSource; "
        "from pytest_testserver.image import plan_build; "
        "print(plan_build(BuildSource(context=Path(sys.argv[1]), dockerfile='Dockerfile'))"
        ".digest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code, str(copy)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert digests == {digest_of(small_context)}


def test_digest_ignores_mtimes(small_context: Path) -> None:
    before = digest_of(small_context)
    for path in small_context.iterdir():
        os.utime(path, (1_000_000, 1_000_000))
    os.utime(small_context, (2_000_000, 2_000_000))
    assert digest_of(small_context) == before


def test_digest_changes_with_file_content(small_context: Path) -> None:
    before = digest_of(small_context)
    write(small_context / "app.sh", "echo bye\n", 0o755)
    assert digest_of(small_context) != before


def test_digest_changes_with_a_mode(small_context: Path) -> None:
    before = digest_of(small_context)
    (small_context / "app.sh").chmod(0o644)
    assert digest_of(small_context) != before


def test_digest_changes_with_a_new_file(small_context: Path) -> None:
    before = digest_of(small_context)
    write(small_context / "new.txt", "")
    assert digest_of(small_context) != before


def test_digest_changes_with_a_renamed_file(small_context: Path) -> None:
    before = digest_of(small_context)
    (small_context / "app.sh").rename(small_context / "app2.sh")
    assert digest_of(small_context) != before


def test_digest_changes_with_the_dockerfile_content(small_context: Path) -> None:
    before = digest_of(small_context)
    write(small_context / "Dockerfile", "FROM busybox\nCOPY app.sh /bin/\n")
    assert digest_of(small_context) != before


def test_digest_changes_with_the_dockerfile_chosen(small_context: Path) -> None:
    assert digest_of(small_context, dockerfile="Dockerfile.alt") != digest_of(small_context)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param((), (("VERSION", "1"),), id="added"),
        pytest.param((("VERSION", "1"),), (("VERSION", "2"),), id="value"),
        pytest.param((("VERSION", "1"),), (("RELEASE", "1"),), id="name"),
    ],
)
def test_digest_changes_with_build_args(
    small_context: Path, first: tuple[tuple[str, str], ...], second: tuple[tuple[str, str], ...]
) -> None:
    assert digest_of(small_context, args=first) != digest_of(small_context, args=second)


def test_digest_changes_with_the_target(small_context: Path) -> None:
    assert digest_of(small_context, target="final") != digest_of(small_context)
    assert digest_of(small_context, target="final") != digest_of(small_context, target="debug")


def test_digest_changes_with_a_symlink_target(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(ctx / "Dockerfile", "FROM busybox\n")
    (ctx / "link").symlink_to("a")
    before = digest_of(ctx)
    (ctx / "link").unlink()
    (ctx / "link").symlink_to("b")
    assert digest_of(ctx) != before


def test_generated_digest_changes_with_a_copied_file_mode(generated: GeneratedSource) -> None:
    before = plan_generated(generated).digest()
    conf = generated.copy[0]
    changed = GeneratedSource(
        base=generated.base,
        copy=(CopyFile(conf.src, conf.dst, 0o640), *generated.copy[1:]),
        run=generated.run,
    )
    assert plan_generated(changed).digest() != before
    assert plan_generated(generated).digest() == before


def test_generated_digest_changes_with_a_run_step(generated: GeneratedSource) -> None:
    changed = GeneratedSource(base=generated.base, copy=generated.copy, run=("false",))
    assert plan_generated(changed).digest() != plan_generated(generated).digest()


def test_generated_digest_changes_with_a_before_install_step(generated: GeneratedSource) -> None:
    changed = GeneratedSource(
        base=generated.base, copy=generated.copy, run=generated.run, before_install=("true",)
    )
    assert plan_generated(changed).digest() != plan_generated(generated).digest()


def test_generated_digest_ignores_mtimes(generated: GeneratedSource) -> None:
    before = plan_generated(generated).digest()
    for copy in generated.copy:
        os.utime(copy.src, (5, 5))
    assert plan_generated(generated).digest() == before


# --- image_tag -----------------------------------------------------------------------------------


def test_image_tag_format(small_context: Path) -> None:
    source = BuildSource(context=small_context, dockerfile="Dockerfile")
    plan = plan_build(source)
    tag = image_tag(ServerSpec(name="Web-1", image=source), plan)
    assert re.fullmatch(r"pytest-testserver/web-1:[0-9a-f]{24}", tag)
    assert tag == f"pytest-testserver/web-1:{plan.digest()[:24]}"
    # The tag is itself a valid image reference.
    assert validate.image_ref(tag, validate.Where("tag")) == tag


def test_image_tag_changes_with_content(small_context: Path) -> None:
    source = BuildSource(context=small_context, dockerfile="Dockerfile")
    spec = ServerSpec(name="web", image=source)
    before = image_tag(spec, plan_build(source))
    write(small_context / "app.sh", "echo changed\n", 0o755)
    assert image_tag(spec, plan_build(source)) != before
