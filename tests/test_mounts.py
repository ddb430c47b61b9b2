"""volumes (anonymous, named, read-only binds) and env_file.

Parsing is tested directly (no engine); what a user does through pytest runs real containers
with pytester, and every run must leave no labelled volume behind (the ``engine`` fixture).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_testserver.config import ServerConfig, load_config, parse_config
from pytest_testserver.envfile import parse_env_text
from pytest_testserver.errors import ConfigError
from pytest_testserver.mounts import (
    AnonymousVolume,
    BindMount,
    NamedVolume,
    engine_mounts,
)
from pytest_testserver.validate import Where
from tests.conftest import servers_yaml

SOURCE = "testservers.yaml"


def parse(data: object, base: Path) -> ServerConfig:
    return parse_config(data, base=base, source=SOURCE)


def error_of(data: object, base: Path) -> str:
    with pytest.raises(ConfigError) as excinfo:
        parse(data, base)
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def server(**keys: Any) -> dict[str, Any]:
    return {"servers": {"db": {"image": "busybox:stable", **keys}}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config folder with a folder to bind; a secret folder lives outside it."""
    root = tmp_path / "project"
    (root / "www").mkdir(parents=True)
    (root / "www" / "index.html").write_text("hello\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("s3cret\n")
    return root


# --- volumes: parsing ---------------------------------------------------------------------------


def test_each_form_of_volume_parses(project: Path) -> None:
    config = parse(
        server(
            volumes=[
                "/var/lib/anon",
                "pgdata:/var/lib/data",
                "cache:/cache:ro",
                "./www:/var/www:ro",
                {"path": "/anon2/"},
                {"name": "pgdata", "path": "/second"},
                {"src": "www", "path": "/www2", "read_only": True},
            ]
        ),
        project,
    )
    www = (project / "www").resolve()
    assert config.servers["db"].volumes == (
        AnonymousVolume("/var/lib/anon"),
        NamedVolume("pgdata", "/var/lib/data"),
        NamedVolume("cache", "/cache", read_only=True),
        BindMount(www, "/var/www"),
        AnonymousVolume("/anon2"),
        NamedVolume("pgdata", "/second"),
        BindMount(www, "/www2"),
    )


@pytest.mark.parametrize(
    ("volumes", "expected"),
    [
        pytest.param(
            ["/srv:/data"],
            "volumes[0]: '/srv': an absolute host path is never mounted; name a folder inside "
            "the config file's folder, such as ./data",
            id="absolute-host-path",
        ),
        pytest.param(
            ["./www:/var/www"],
            "volumes[0]: './www:/var/www': a bind mount must end with :ro (read-only: the "
            "engine is root, and would write into your project as root)",
            id="writable-short-bind",
        ),
        pytest.param(
            [{"src": "www", "path": "/var/www"}],
            "volumes[0].read_only: a bind mount needs read_only: true (the engine is root, and "
            "would write into your project as root)",
            id="bind-without-read-only",
        ),
        pytest.param(
            [{"src": "www", "path": "/var/www", "read_only": False}],
            "volumes[0].read_only: a bind mount needs read_only: true (the engine is root, and "
            "would write into your project as root)",
            id="writable-bind",
        ),
        pytest.param(
            ["pg data:/data"],
            "volumes[0]: 'pg data' is not a volume name (letters, digits, _ . -, starting with "
            "a letter or digit, at most 64 characters)",
            id="bad-name",
        ),
        pytest.param(
            [{"name": "-x", "path": "/data"}],
            "volumes[0].name: '-x' is not a volume name (letters, digits, _ . -, starting with "
            "a letter or digit, at most 64 characters)",
            id="bad-name-long-form",
        ),
        pytest.param(["v:/data:rx"], "volumes[0]: 'rx' is not a mount mode: ro or rw", id="mode"),
        pytest.param(["a:b:c:d"], "volumes[0]: 'a:b:c:d' is not SOURCE:PATH[:ro]", id="parts"),
        pytest.param(["/"], "volumes[0]: / cannot be mounted over: name a folder", id="root"),
        pytest.param(
            ["v:data"],
            "volumes[0]: 'data' is not an absolute path of plain characters (letters, digits, "
            "and . _ / @ + = : , -)",
            id="relative-target",
        ),
        pytest.param(["/a/../b"], "volumes[0]: '/a/../b' must not contain '..'", id="dotdot"),
        pytest.param(
            ["/data", "v:/data/"], "volumes[1]: /data is already mounted by volumes[0]", id="twice"
        ),
        pytest.param(
            [{"name": "v", "src": "www", "path": "/x"}],
            "volumes[0]: name and src exclude each other: a volume is named, or binds a folder",
            id="name-and-src",
        ),
        pytest.param(
            [{"name": "v"}], "volumes[0]: needs path: where the container sees it", id="np"
        ),
        pytest.param(
            [{"path": "/x", "read_only": True}],
            "volumes[0].read_only: an anonymous volume starts empty: read-only, it stays so",
            id="read-only-anonymous",
        ),
        pytest.param(
            [{"path": "/x", "mode": "ro"}],
            "volumes[0].mode: unknown key; known keys: name, src, path, read_only",
            id="unknown-key",
        ),
        pytest.param("/data", "volumes: must be a list, not str '/data'", id="not-a-list"),
    ],
)
def test_bad_volumes_are_one_line_errors(project: Path, volumes: object, expected: str) -> None:
    assert error_of(server(volumes=volumes), project) == f"{SOURCE}: servers.db.{expected}"


def test_a_bind_source_going_up_is_refused(project: Path) -> None:
    assert error_of(server(volumes=["../outside:/x:ro"]), project) == (
        f"{SOURCE}: servers.db.volumes[0]: '../outside' leads outside {project}"
    )


def test_a_bind_source_symlinked_outside_is_refused(project: Path) -> None:
    (project / "link").symlink_to(project.parent / "outside")
    data = server(volumes=[{"src": "link", "path": "/x", "read_only": True}])
    assert error_of(data, project) == (
        f"{SOURCE}: servers.db.volumes[0].src: 'link' leads outside {project}"
    )


def test_servers_sharing_a_volume_must_share_alike(project: Path) -> None:
    data = {
        "servers": {
            "a": {"image": "busybox:stable", "volumes": ["v:/data"]},
            "b": {"image": "busybox:stable", "volumes": ["v:/data"], "share": "worker"},
        }
    }
    assert error_of(data, project) == (
        f"{SOURCE}: servers.b.volumes: volume 'v' is also mounted by 'a', which has share: run, "
        "but 'b' has share: worker; servers sharing a volume must share alike (one volume per "
        "run, or per xdist worker): give 'a' share: worker"
    )


def test_binds_are_read_only_and_anonymous_volumes_labelled_for_the_engine(project: Path) -> None:
    config = parse(server(volumes=["/anon", "v:/named", "./www:/www:ro"]), project)
    mounts = engine_mounts(config.servers["db"].volumes, lambda n: f"run-vol-{n}", {"l": "1"})
    assert [(m.kind, m.target, m.source, m.read_only, m.labels) for m in mounts] == [
        ("volume", "/anon", None, False, (("l", "1"),)),
        ("volume", "/named", "run-vol-v", False, ()),
        ("bind", "/www", str((project / "www").resolve()), True, ()),
    ]


# --- env_file: parsing --------------------------------------------------------------------------


def env_of(text: str) -> dict[str, str]:
    return parse_env_text(text, ".env", Where(SOURCE, "servers.db.env_file"))


def test_dotenv_lines() -> None:
    text = (
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "export EXPORTED=yes\n"
        "  SPACED = around  \n"
        "INLINE=value # a comment\n"
        "HASH=a#b\n"
        "EMPTY=\n"
        "SINGLE='$(id) ${HOME} `id` \\n # kept'\n"
        'DOUBLE="say \\"hi\\"\\n\\tend \\$x $HOME" # comment\n'
        "CRLF=yes\r\n"
        "EQUALS=a=b\n"
    )
    assert env_of(text) == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "around",
        "INLINE": "value",
        "HASH": "a#b",
        "EMPTY": "",
        "SINGLE": "$(id) ${HOME} `id` \\n # kept",
        "DOUBLE": 'say "hi"\n\tend \\$x $HOME',
        "CRLF": "yes",
        "EQUALS": "a=b",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "A=1\nhunter2\n",
            ".env:2: is not KEY=VALUE (comments start with #; no variable is read from the host)",
            id="no-equals",
        ),
        pytest.param(
            "1A=x\n",
            ".env:1: '1A' is not a valid variable name (letters, digits, underscore)",
            id="bad-key",
        ),
        pytest.param(
            "A='open\n", ".env:1: the value of A has no closing ' (a value is one line)", id="sq"
        ),
        pytest.param(
            'A="open\n', '.env:1: the value of A has no closing " (a value is one line)', id="dq"
        ),
        pytest.param(
            "A='x' y\n", ".env:1: the value of A has text after its closing quote", id="after"
        ),
        pytest.param("A=1\n\nA=2\n", ".env:3: A is already set on line 1", id="twice"),
        pytest.param("A=x\x00y\n", ".env:1: contains a NUL character", id="nul"),
    ],
)
def test_bad_dotenv_lines_name_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        env_of(text)
    assert str(excinfo.value) == f"{SOURCE}: servers.db.env_file: {expected}"
    assert "hunter2" not in str(excinfo.value)


def test_env_file_merges_under_env(project: Path) -> None:
    (project / "db.env").write_text("USER=app\nDB_PASSWORD=from-file\nMODE=file\n")
    data = {
        "defaults": {"env": {"MODE": "defaults"}},
        "servers": {"db": {"image": "busybox:stable", "env_file": "db.env", "env": {"X": 1}}},
    }
    spec = parse(data, project).servers["db"]
    assert dict(spec.env) == {
        "USER": "app",
        "DB_PASSWORD": "from-file",
        "MODE": "defaults",
        "X": "1",
    }
    assert spec.env_file is not None
    assert spec.env_file.keys == ("USER", "DB_PASSWORD", "MODE")
    assert "from-file" not in repr(spec)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("../outside/secret.txt", "'../outside/secret.txt' leads outside", id="up"),
        pytest.param("link.env", "'link.env' leads outside", id="symlink"),
        pytest.param("www", "'www' is not a file", id="folder"),
        pytest.param("none.env", "'none.env' does not exist in", id="missing"),
    ],
)
def test_env_file_is_confined_like_copy_src(project: Path, value: str, expected: str) -> None:
    (project / "link.env").symlink_to(project.parent / "outside" / "secret.txt")
    message = error_of(server(env_file=value), project)
    assert message.startswith(f"{SOURCE}: servers.db.env_file: {expected}"), message


def test_env_file_key_cannot_also_be_a_secret_env(project: Path) -> None:
    (project / ".env").write_text("PGPASSWORD=x\n")
    message = error_of(server(env_file=".env", secret_env=["PGPASSWORD"]), project)
    assert message == (
        f"{SOURCE}: servers.db.secret_env[0]: PGPASSWORD is also set in env; a secret comes "
        "only from the host"
    )


def test_bad_env_file_text_is_one_line_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / ".env").write_bytes(b"OK=1\n\xff\xfe\n")
    (pytester.path / "testservers.yaml").write_text(
        "servers:\n  db:\n    image: busybox:stable\n    env_file: .env\n"
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: testservers.yaml: servers.db.env_file: .env is not UTF-8 text (byte 5)"]
    )


# --- through pytest, no engine: the listing and confinement errors ------------------------------


def test_the_listing_shows_volumes_and_env_file_with_secrets_masked(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "www").mkdir()
    (pytester.path / "db.env").write_text("USER=app\nDB_PASSWORD=pw-27182818\n")
    (pytester.path / "testservers.yaml").write_text(
        servers_yaml(
            db="""
            image: busybox:stable
            env_file: db.env
            command: ["echo", "pw-27182818"]
            volumes: [/anon, "pgdata:/data", "./www:/var/www:ro"]
            """
        )
    )
    result = pytester.runpytest("--testserver-list")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "    command: ['echo', '***']",
            f"    volumes: /anon (anonymous), pgdata:/data, {pytester.path.resolve()}/www -> "
            "/var/www (bind, read-only)",
            "    env_file: db.env (USER=app, DB_PASSWORD=***)",
        ]
    )
    assert "pw-27182818" not in result.stdout.str()


def test_the_listing_shows_no_volumes_line_when_none_is_set(pytester: pytest.Pytester) -> None:
    (pytester.path / "testservers.yaml").write_text("servers:\n  a:\n    image: busybox:stable\n")
    result = pytester.runpytest("--testserver-list")
    assert result.ret == 0
    assert "volumes:" not in result.stdout.str()
    assert "env_file:" not in result.stdout.str()


@pytest.mark.parametrize(
    ("volume", "expected"),
    [
        pytest.param(
            '"../outside:/var/www:ro"',
            "servers.web.volumes[0]: '../outside' leads outside",
            id="up",
        ),
        pytest.param(
            "{src: link, path: /var/www, read_only: true}",
            "servers.web.volumes[0].src: 'link' leads outside",
            id="symlink",
        ),
    ],
)
def test_a_bind_outside_the_config_folder_is_a_usage_error(
    pytester: pytest.Pytester, volume: str, expected: str
) -> None:
    project = pytester.path / "project"
    (pytester.path / "outside").mkdir()
    project.mkdir()
    (project / "link").symlink_to(pytester.path / "outside")
    (project / "testservers.yaml").write_text(
        f"servers:\n  web:\n    image: busybox:stable\n    volumes: [{volume}]\n"
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--testserver-config", "project/testservers.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = f"ERROR: project/testservers.yaml: {expected} {project}"
    assert result.stderr.lines[0] == error, result.stderr.lines
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


# --- on the engine ------------------------------------------------------------------------------


def volume_gone(api: Any, name: str) -> bool:
    import docker.errors

    try:
        api.inspect_volume(name)
    except docker.errors.NotFound:
        return True
    return False


@pytest.mark.usefixtures("engine")
def test_a_named_volume_is_shared_by_the_run_and_removed_at_its_end(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(
            writer="""
            from: busybox:stable
            command: ["sh", "-c", "echo written-by-writer > /data/note && exec sleep 600"]
            volumes: ["shared:/data"]
            post_startup: ["test", "-s", "/data/note"]
            """,
            reader="""
            from: busybox:stable
            command: ["sleep", "600"]
            volumes: [{name: shared, path: /in, read_only: true}]
            wait: false
            """,
        ),
        """
        import json
        import pytest
        from tests.conftest import inspect

        @pytest.mark.testserver("writer", "reader")
        def test_read(testservers):
            code, out = testservers["reader"].exec(["cat", "/in/note"])
            assert (code, out) == (0, "written-by-writer\\n")
            code, _ = testservers["reader"].exec(["touch", "/in/x"])
            assert code != 0  # mounted read-only there
            names = {
                s: [m["Name"] for m in inspect(h.container_id)["Mounts"]]
                for s, h in testservers.items()
            }
            assert names["writer"] == names["reader"]
            with open("volumes.json", "w") as f:
                json.dump(names["writer"], f)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    (name,) = json.loads((pytester.path / "volumes.json").read_text())
    assert name.startswith("testserver-")
    assert name.endswith("-vol-shared")
    assert volume_gone(docker_api, name)


@pytest.mark.usefixtures("engine")
def test_a_named_volume_of_the_run_is_removed_under_xdist(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    """Two workers, one volume of the run (made by the first to need it, swept at the end)."""
    suite(
        servers_yaml(
            a="""
            from: busybox:stable
            command: ["sleep", "600"]
            volumes: ["shared:/data"]
            wait: false
            """,
        ),
        """
        import pytest
        from tests.conftest import inspect

        @pytest.mark.parametrize("i", range(4))
        @pytest.mark.testserver("a")
        def test_mount(testserver, i):
            (mount,) = inspect(testserver.container_id)["Mounts"]
            with open(f"volume-{i}.txt", "w") as f:
                f.write(mount["Name"])
        """,
    )
    result = pytester.runpytest("-n", "2")
    result.assert_outcomes(passed=4)
    names = {(pytester.path / f"volume-{i}.txt").read_text() for i in range(4)}
    assert len(names) == 1
    assert volume_gone(docker_api, names.pop())


@pytest.mark.usefixtures("engine")
def test_an_anonymous_volume_is_labelled_and_goes_with_its_container(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(
            a="""
            from: busybox:stable
            command: ["sh", "-c", "echo kept > /scratch/f && exec sleep 600"]
            volumes: [/scratch]
            post_startup: ["test", "-s", "/scratch/f"]
            """,
        ),
        """
        import pytest
        from tests.conftest import engine_api, inspect

        @pytest.mark.testserver("a")
        def test_mount(testserver):
            (mount,) = inspect(testserver.container_id)["Mounts"]
            assert mount["Type"] == "volume" and mount["Destination"] == "/scratch"
            api = engine_api()
            try:
                labels = api.inspect_volume(mount["Name"])["Labels"]
            finally:
                api.close()
            assert labels["pytest-testserver.server"] == "a"
            with open("volume.txt", "w") as f:
                f.write(mount["Name"])
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert volume_gone(docker_api, (pytester.path / "volume.txt").read_text())


@pytest.mark.engine_on_local_socket
@pytest.mark.usefixtures("engine")
def test_a_bind_mount_is_read_only_inside(pytester: pytest.Pytester, suite: Any) -> None:
    suite(
        servers_yaml(
            web="""
            from: busybox:stable
            command: ["sleep", "600"]
            volumes: ["./site:/var/www:ro"]
            wait: false
            """,
        ),
        """
        import pytest

        @pytest.mark.testserver("web")
        def test_bind(testserver):
            assert testserver.exec(["cat", "/var/www/index.html"]) == (0, "from the host\\n")
            code, out = testserver.exec(["sh", "-c", "echo changed > /var/www/index.html"])
            assert code != 0 and "Read-only file system" in out, out
            code, out = testserver.exec(["touch", "/var/www/new"])
            assert code != 0 and "Read-only file system" in out, out
        """,
        {"site/index.html": "from the host\n"},
    )
    # The container's root may read the folder however it is owned: world-readable here.
    os.chmod(pytester.path / "site", 0o755)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert (pytester.path / "site" / "index.html").read_text() == "from the host\n"
    assert sorted(p.name for p in (pytester.path / "site").iterdir()) == ["index.html"]


@pytest.fixture
def tcp_engine() -> Iterator[str]:
    """The local engine's socket, forwarded from a TCP port on loopback: to the plugin, an
    engine at tcp://127.0.0.1:PORT, one whose paths it cannot assume are this machine's."""
    from pytest_testserver.locate import locate

    path = locate().address.removeprefix("unix://")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(path)
            sockets.extend([client, upstream])
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)
        for s in sockets:
            s.close()


@pytest.mark.engine_on_local_socket
@pytest.mark.usefixtures("engine")
def test_a_bind_mount_is_refused_for_an_engine_not_on_this_machine(
    pytester: pytest.Pytester, suite: Any, tcp_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", tcp_engine)
    suite(
        servers_yaml(
            web="""
            image: busybox:stable
            command: ["sleep", "600"]
            volumes: [{src: site, path: /var/www, read_only: true}]
            wait: false
            """,
        ),
        """
        import pytest

        @pytest.mark.testserver("web")
        def test_bind(testserver):
            pass
        """,
        {"site/index.html": "x\n"},
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    site = (pytester.path / "site").resolve()
    error = (
        f"testserver: server 'web': volumes[0]: a bind mount needs an engine on this "
        f"machine's own socket, but the engine is at {tcp_engine}, where {site} would name "
        "a path on the engine's host: use copy: to put the files into the image"
    )
    assert error in result.stdout.lines


@pytest.mark.usefixtures("engine")
def test_env_file_values_reach_the_container_and_secrets_are_masked_in_its_log(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(
            echo="""
            from: busybox:stable
            env_file: echo.env
            env: {OVERRIDDEN: by-env}
            command: ["sh", "-c", "echo \\"greeting=$GREETING pw=$DB_PASSWORD\\"; exec sleep 600"]
            wait: {log: "greeting="}
            """,
        ),
        """
        import pytest

        @pytest.mark.testserver("echo")
        def test_env(testserver):
            code, out = testserver.exec(["env"], raw=True)
            assert code == 0
            env = dict(line.split("=", 1) for line in out.splitlines())
            assert env["GREETING"] == "hello there"
            assert env["LITERAL"] == "$(id) ${HOME}"
            assert env["OVERRIDDEN"] == "by-env"
            # not one literal: the traceback shows this line
            assert env["DB_PASSWORD"] == "pw-" + "16180339"
            assert False, "fails, to show the server's log"
        """,
        {
            "echo.env": """
            # the echo server's settings
            export GREETING="hello there"
            LITERAL='$(id) ${HOME}'
            OVERRIDDEN=by-file
            DB_PASSWORD=pw-16180339
            """
        },
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*fails, to show the server's log*",
            "*- testserver echo: last 50 log lines -*",
            "greeting=hello there pw=***",
        ]
    )
    assert "pw-16180339" not in result.stdout.str()


def test_load_config_reads_the_env_file_beside_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "testservers.yaml").write_text(
        "servers:\n  a:\n    image: busybox:stable\n    env_file: a.env\n"
    )
    (tmp_path / "a.env").write_text("A=1\n")
    spec = load_config(tmp_path / "testservers.yaml").servers["a"]
    assert dict(spec.env) == {"A": "1"}


def test_the_keep_message_says_how_to_remove_kept_volumes() -> None:
    from pytest_testserver.reaper import keep_message

    text = keep_message("0123456789", 1, ["testserver-0123456789"], ["testserver-0123456789-vol-v"])
    assert text.endswith(
        "&& docker network rm testserver-0123456789 && docker volume rm testserver-0123456789-vol-v"
    )
