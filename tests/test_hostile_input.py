"""Hostile input: whatever reaches the configuration, the answer is a valid config or one line.

For any value of any field, of any whole document and of any YAML text or bytes, loading either
yields a ``ServerConfig`` whose every value is safe to hand to the engine, or raises the plugin's
``ConfigError`` with a one-line message starting ``testservers.yaml: `` and naming the key path.
Never another exception, never an engine call.

Two halves:

- hypothesis properties over every server field, over whole documents (directly and through a
  YAML file), and over the YAML reader with arbitrary text and bytes;
- a corpus of named hostile cases run through pytest itself (pytester), each checking the one-line
  usage error a user sees.

A case that shows a bug is kept and marked ``xfail(strict=True, reason="BUG: ...")``: it starts
failing (XPASS) as soon as the bug is fixed, so the marker cannot outlive the fix. The properties
tolerate exactly those bugs' signatures (``KNOWN_BUGS``), so they keep exploring meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from pytest_testserver import image, variables
from pytest_testserver.config import (
    GENERATED_KEYS,
    SERVER_KEYS,
    SOURCE_KEYS,
    BuildSource,
    GeneratedSource,
    ImageSource,
    ServerConfig,
    ServerSpec,
    parse_config,
)
from pytest_testserver.containeroptions import (
    CAP_ADD_ALLOWED,
    CAPABILITIES,
    ULIMIT_NAMES,
    ContainerOptions,
)
from pytest_testserver.errors import ConfigError
from pytest_testserver.mounts import AnonymousVolume, BindMount, NamedVolume
from pytest_testserver.portspec import MAX_RANGE
from pytest_testserver.validate import MAX_COPY_BYTES
from pytest_testserver.yamlfile import read_yaml

SOURCE = "testservers.yaml"
REPO = Path(__file__).resolve().parents[1]

# Sized for CI: the whole file runs in about half a minute. Each field gets its own 100 examples
# (1800 in all); the properties mixing fields, and the YAML reader, get 250 each.
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
FUZZ_EACH_FIELD = settings(FUZZ, max_examples=100)


class Tripwire:
    """A unix socket standing in for the engine: it answers nothing and counts who connected.

    Independent of how the plugin is laid out: whatever module reaches for the engine, in this
    process or in a pytest it starts, connects to $DOCKER_HOST.
    """

    def __init__(self) -> None:
        import socket
        import tempfile
        import threading

        self.folder = tempfile.mkdtemp(prefix="ts-trip-")  # short: a socket path has 107 bytes
        self.path = os.path.join(self.folder, "docker.sock")
        self.contacts = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(16)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            self.contacts += 1
            conn.close()  # the client fails at once, as with an engine that hangs up

    def close(self) -> None:
        import shutil
        import socket

        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(5)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    wire.close()


@pytest.fixture(autouse=True)
def no_engine_call(monkeypatch: pytest.MonkeyPatch, tripwire: Tripwire) -> Iterator[None]:
    """A tripwire: nothing in this file may reach for the engine."""
    monkeypatch.setenv("DOCKER_HOST", tripwire.docker_host)
    for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(key, raising=False)
    before = tripwire.contacts
    yield
    assert tripwire.contacts == before, "the engine was contacted while loading a configuration"


def test_the_tripwire_fires_when_a_server_is_really_needed(
    pytester: pytest.Pytester, tripwire: Tripwire
) -> None:
    """The positive control: a valid server, a test that needs it: the engine is contacted."""
    (pytester.path / "testservers.yaml").write_text(
        "servers:\n  web:\n    image: busybox:stable\n    command: [sleep, '600']\n"
    )
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.testserver('web')\ndef test_it(testserver):\n    pass\n"
    )
    before = tripwire.contacts
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    # (not tests.conftest's wait_for: a fresh interpreter imports this file without docker)
    deadline = time.monotonic() + 10
    while tripwire.contacts == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tripwire.contacts > before, "the positive control never reached the tripwire"
    tripwire.contacts = before  # seen: not this file's business past this test


# --- known bugs ---------------------------------------------------------------------------------
# Each is pinned by a strict xfail in the corpus below. The properties let exactly these
# signatures through so that one known bug does not stop them finding the next; delete an entry
# when its xfail starts passing.

# Exceptions other than ConfigError: none known at present (the huge-int, path-resolution and
# YAML-constructor crashes are fixed and now asserted outright).
KNOWN_BUGS: dict[str, Callable[[BaseException], bool]] = {}


def known_bug(exc: BaseException) -> str | None:
    return next((name for name, matches in KNOWN_BUGS.items() if matches(exc)), None)


# --- strategies ---------------------------------------------------------------------------------

NAUGHTY = [
    "",
    " ",
    "busybox; rm -rf /",
    "$(reboot)",
    "`reboot`",
    "busybox | sh",
    "busybox && reboot",
    "a\nb",
    "a\r\nb",
    "\n",
    "\r",
    "\x00",
    "a\x00b",
    "\u2028",
    "\x85",
    "\x0b",
    "\x1b[2J",
    "\t",
    "w\u0435b",  # Cyrillic e
    "busyb\u043ex",  # Cyrillic o
    "\uff18\uff10\uff18\uff10",  # fullwidth 8080
    "\u0668\u0660",  # Arabic-Indic 80
    "/etc\u2215passwd",  # division slash
    "..\u2215..\u2215etc",
    "../",
    "../../etc/passwd",
    "/etc/passwd",
    "~",
    "~root",
    "*",
    "?",
    "[a]",
    "${HOME}",
    "$HOME",
    # ${NAME} variables: the names the fuzzed env and secret_env may define, and broken forms
    "${API_TOKEN}",
    "${DB_PASSWORD}",
    "$${HOME}",
    "$$",
    "$",
    "${",
    "${}",
    "${A:-x}",
    "${1}",
    "${API_TOKEN",
    "${\x00}",
    "${\u0435}",
    "'",
    '"',
    "\\",
    "%s",
    "{}",
    "-",
    "--help",
    "-rf",
    "FROM scratch",
    "RUN rm -rf /",
    "\nRUN touch /pwned",
    'x" && reboot && "',
    "x'; reboot; '",
    "\ud800",
    "\udcff",
    "\u202e",  # right-to-left override
    "\ufeff",
    "\u200b",
    "\U0001d7e0",  # mathematical double-struck 8
    "busybox:stable",
    "busybox",
    "web",
    "db",
    "8080",
    "53/udp",
    "0755",
    "/app",
    "/",
    "127.0.0.1",
    "true",
    "null",
    "0x1F",
    "1e400",
    ".nan",
]

texts = st.one_of(
    st.text(max_size=20),
    st.builds(str.__mul__, st.just("a"), st.sampled_from([255, 256, 300, 5000])),
    st.sampled_from(NAUGHTY),
    st.lists(st.sampled_from(NAUGHTY), min_size=2, max_size=4).map("".join),
)


def rarely(strategy: st.SearchStrategy[Any], otherwise: st.SearchStrategy[Any]) -> Any:
    """``strategy`` in about one draw in ten, ``otherwise`` in the others."""
    return st.integers(0, 9).flatmap(lambda i: strategy if i == 0 else otherwise)


BOUNDARIES = [0, -1, 1, 65535, 65536, 86400, 86401, 10**6, 10**6 + 1, 2**31, 2**63, 2**64]
ints = rarely(
    # More digits than Python will print; built lazily, as hypothesis reprs its strategies.
    st.builds(pow, st.just(10), st.sampled_from([4300, 4301, 5000])),
    st.one_of(
        st.integers(),
        st.sampled_from([*BOUNDARIES, -(2**63), 10**20, 10**30, -(10**30)]),
    ),
)
floats = st.one_of(
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 0.5, 86400.5]),
)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
hashables = st.one_of(scalars, st.tuples(ints, texts))
yamlish = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(hashables, children, max_size=4),
    ),
    max_leaves=5,
)


def mapping_of(known: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Some of the known keys with their values, and once in a while a key nobody knows."""
    extra = st.dictionaries(hashables, yamlish, min_size=1, max_size=1)
    fixed = st.fixed_dictionaries({}, optional=known)
    return st.tuples(fixed, st.integers(0, 7), extra).map(
        lambda t: {**t[0], **t[2]} if t[1] == 0 else t[0]
    )


def list_of(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(st.one_of(items, yamlish), max_size=4)


PATHS = [
    "web",
    "files",
    "files/index.html",
    "files/sub",
    "escape",
    "escape_dir/passwd",
    "loop",
    "big.bin",
    ".",
    "..",
    "../..",
    "/etc/passwd",
    "web/Dockerfile",
    "missing",
]
paths = st.one_of(
    st.sampled_from(PATHS),
    texts,
    st.lists(
        st.sampled_from([".", "..", "files", "escape_dir", "web", "\u2215", "\x00", "a" * 300]),
        min_size=1,
        max_size=5,
    ).map("/".join),
)
argvs = st.one_of(list_of(texts), texts, yamlish)
env_mappings = st.one_of(
    st.dictionaries(
        st.one_of(texts, hashables, st.sampled_from(["API_TOKEN", "DB_PASSWORD", "A\nB"])),
        st.one_of(texts, ints, floats, st.booleans(), yamlish),
        max_size=4,
    ),
    yamlish,
)
ports = st.one_of(ints, texts, st.sampled_from(["53/udp", "80/tcp", "80/sctp", "0", "65536"]))
# ports: entries also take ranges, fixed host ports and Compose's long syntax.
# Bounded: these are also written into strings, and str() refuses more than 4300 digits.
port_numbers = st.one_of(
    st.sampled_from([0, 1, 21, 2121, 30000, 30009, 65535, 65536, 10**20]),
    st.integers(-(10**6), 10**6),
)
port_spans = st.one_of(
    port_numbers.map(str),
    st.tuples(port_numbers, port_numbers).map(lambda t: f"{t[0]}-{t[1]}"),
    texts,
)
port_entries = st.one_of(
    ports,
    port_spans,
    st.tuples(port_spans, port_spans, st.sampled_from(["", "/tcp", "/udp", "/sctp", "/"])).map(
        lambda t: f"{t[0]}:{t[1]}{t[2]}"
    ),
    st.sampled_from(
        [
            "1-256",
            "1-257",
            "1-1000",
            "30009-30000",
            "127.0.0.1:2121:21",
            "[::1]:21:21",
            "21:",
            ":21",
        ]
    ),
    mapping_of(
        {
            "target": st.one_of(port_numbers, ints, port_spans, yamlish),
            "published": st.one_of(port_numbers, ints, port_spans, yamlish),
            "protocol": st.one_of(st.sampled_from(["tcp", "udp", "sctp"]), texts, yamlish),
        }
    ),
)
names = st.one_of(st.sampled_from(["web", "db", "cache", "nope"]), texts)
banner_checks = mapping_of({"port": ports, "expect": st.one_of(texts, yamlish)})
numbers = st.one_of(ints, floats, yamlish)

sizes = st.one_of(
    texts,
    ints,
    floats,
    st.sampled_from(
        ["64m", "64M", "1k", "4k", "16g", "17g", "0m", "1.5g", "64mb", "64m,exec", "size=1m"]
    ),
)
CAP_SAMPLES = ["NET_ADMIN", "cap_sys_nice", "SYS_ADMIN", "CAP_SYS_MODULE", "ALL", "all", "NOPE"]
caps = st.one_of(st.one_of(list_of(st.one_of(texts, st.sampled_from(CAP_SAMPLES)))), yamlish)
limits = st.one_of(ints, texts, st.just("unlimited"), yamlish)
SYSCTL_SAMPLES = [
    "net.ipv4.ip_forward",
    "net.core.somaxconn",
    "net.core.rmem_max",
    "kernel.shmmax",
    "kernel.core_pattern",
    "fs.mqueue.msg_max",
    "vm.swappiness",
]

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "build": st.one_of(
        paths,
        mapping_of(
            {
                "context": paths,
                "dockerfile": st.one_of(st.sampled_from(["Dockerfile", "../escape"]), paths),
                "args": env_mappings,
                "target": st.one_of(texts, yamlish),
            }
        ),
        yamlish,
    ),
    "image": st.one_of(texts, yamlish),
    "from": st.one_of(texts, yamlish),
    "install": st.one_of(list_of(texts), yamlish),
    "copy": st.one_of(
        list_of(
            mapping_of(
                {
                    "src": paths,
                    "dst": st.one_of(texts, st.sampled_from(["/app", "/app/../etc"])),
                    "mode": st.one_of(texts, ints, yamlish),
                }
            )
        ),
        yamlish,
    ),
    "before_install": st.one_of(list_of(st.one_of(texts, list_of(texts))), yamlish),
    "run": st.one_of(list_of(st.one_of(texts, list_of(texts))), yamlish),
    "command": argvs,
    "env": env_mappings,
    "secret_env": st.one_of(list_of(texts), yamlish),
    "ports": st.one_of(list_of(port_entries), yamlish),
    "hostname": st.one_of(texts, yamlish),
    "domain": st.one_of(texts, yamlish),
    "aliases": st.one_of(list_of(texts), yamlish),
    "links": st.one_of(list_of(names), yamlish),
    "post_startup": st.one_of(
        argvs,
        mapping_of({"command": argvs, "retries": numbers, "interval": numbers}),
    ),
    "timeout": numbers,
    "image_timeout": numbers,
    "env_file": st.one_of(
        st.sampled_from(["files/app.env", "files/bad.env", "files/binary.env", "escape"]),
        paths,
        yamlish,
    ),
    "volumes": st.one_of(
        list_of(
            st.one_of(
                texts,
                st.sampled_from(
                    [
                        "/data",
                        "v:/data",
                        "v:/data:ro",
                        "./files:/www:ro",
                        "./files:/www",
                        "../files:/x:ro",
                        "escape_dir:/x:ro",
                        "./escape_dir:/x:ro",
                        "/etc:/x:ro",
                        "v:/data:rx",
                        "v::ro",
                        ":/x",
                        "v:/",
                        "a b:/x",
                    ]
                ),
                st.builds(lambda a, b: f"{a}:{b}", texts, texts),
                st.builds(lambda a, b: f"./{a}:{b}:ro", paths, texts),
                mapping_of(
                    {
                        "name": st.one_of(texts, st.just("pgdata")),
                        "src": paths,
                        "path": st.one_of(texts, st.sampled_from(["/data", "/a/../b", "/"])),
                        "read_only": st.one_of(st.booleans(), yamlish),
                    }
                ),
            )
        ),
        yamlish,
    ),
    "share": st.one_of(st.sampled_from(["run", "worker"]), texts, yamlish),
    "restart": st.one_of(st.sampled_from(["fresh", "never"]), texts, yamlish),
    "pull": st.one_of(
        st.sampled_from(["missing", "always", "never", "Always", ""]), texts, yamlish
    ),
    "platform": st.one_of(
        st.sampled_from(["linux/amd64", "linux/arm64/v8", "linux", "Linux/AMD64", "a//b", "-x"]),
        texts,
        yamlish,
    ),
    "scope": st.one_of(st.sampled_from(["session", "module", "class", "function"]), texts, yamlish),
    "reset": argvs,
    "init": st.one_of(st.booleans(), texts, yamlish),
    "user": st.one_of(
        texts, ints, st.sampled_from(["1000", "1000:1000", "www:web", "a:b:c", "-u"]), yamlish
    ),
    "working_dir": st.one_of(texts, st.sampled_from(["/srv", "/srv/../etc", "srv"]), yamlish),
    "entrypoint": st.one_of(argvs, st.just([])),
    "tmpfs": st.one_of(
        list_of(
            st.one_of(
                texts,
                st.sampled_from(["/run", "/", "/proc", "/dev/shm", "/run/"]),
                mapping_of(
                    {
                        "path": st.one_of(texts, st.sampled_from(["/run", "/sys"])),
                        "size": sizes,
                        "mode": st.one_of(texts, ints, st.just("1777"), yamlish),
                    }
                ),
            )
        ),
        yamlish,
    ),
    "cap_add": caps,
    "cap_drop": caps,
    "shm_size": st.one_of(sizes, yamlish),
    "ulimits": st.one_of(
        st.dictionaries(
            st.one_of(st.sampled_from(["nofile", "core", "nproc", "files"]), texts),
            st.one_of(limits, mapping_of({"soft": limits, "hard": limits})),
            max_size=3,
        ),
        yamlish,
    ),
    "sysctls": st.one_of(
        st.dictionaries(
            st.one_of(st.sampled_from(SYSCTL_SAMPLES), texts),
            st.one_of(ints, texts, floats, yamlish),
            max_size=3,
        ),
        yamlish,
    ),
    "healthcheck": st.one_of(
        mapping_of(
            {
                "test": st.one_of(argvs, st.just(["CMD-SHELL", "true"])),
                "interval": numbers,
                "timeout": numbers,
                "retries": numbers,
                "start_period": numbers,
            }
        ),
        yamlish,
    ),
    "wait": st.one_of(
        st.sampled_from([False, None, True]),
        mapping_of(
            {
                "tcp": st.one_of(
                    ports,
                    list_of(ports),
                    banner_checks,
                    list_of(st.one_of(ports, banner_checks)),
                ),
                "http": st.one_of(
                    ports,
                    list_of(
                        st.one_of(
                            ports,
                            mapping_of(
                                {
                                    "port": ports,
                                    "path": st.one_of(texts, st.just("/health")),
                                    "status": st.one_of(numbers, list_of(numbers)),
                                }
                            ),
                        )
                    ),
                ),
                "log": st.one_of(texts, yamlish),
                "healthcheck": st.one_of(st.booleans(), yamlish),
            }
        ),
        yamlish,
    ),
}


@st.composite
def server_bodies(draw: st.DrawFn) -> dict[Any, Any]:
    keys = draw(st.lists(st.sampled_from(SERVER_KEYS), unique=True, max_size=6))
    body: dict[Any, Any] = {key: draw(FIELDS[key]) for key in keys}
    if not any(key in body for key in SOURCE_KEYS) and draw(st.booleans()):
        body["from" if draw(st.booleans()) else "image"] = "busybox:stable"  # to get deeper
    if draw(st.integers(0, 9)) == 0:
        body.update(draw(st.dictionaries(hashables, yamlish, min_size=1, max_size=1)))
    return body


documents = st.one_of(
    yamlish,
    mapping_of(
        {
            "defaults": st.one_of(server_bodies(), yamlish),
            "servers": st.one_of(
                st.dictionaries(names, st.one_of(server_bodies(), yamlish), max_size=3),
                yamlish,
            ),
        }
    ),
)

YAML_TOKENS = [
    "servers:",
    "defaults:",
    "web:",
    "image:",
    "ports:",
    "env:",
    "\n",
    "\n  ",
    "\n    ",
    " ",
    "- ",
    "&a ",
    "*a",
    "<<: ",
    "? ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "!!python/object/apply:os.system ",
    "!!python/name:os.system",
    "!!set ",
    "!!binary ",
    "!!timestamp ",
    "!!float ",
    "!!int ",
    "!!str ",
    "!!map ",
    "!ruby/object ",
    "2001-02-30",
    "2001-12-14t21:59:43.10-99:99",
    "0x",
    "0o8",
    "1e400",
    "9" * 5000,
    '"\\ud800"',
    '"\\0"',
    '"\\N"',
    "|",
    ">-",
    "---",
    "...",
    "%YAML 1.1",
    "%TAG ! tag:x,2000:",
    "!",
    "#",
    "'",
    '"',
    "\t",
    "\x00",
    "\ufeff",
    "\x85",
    "busybox",
    "1",
    "null",
    "~",
    "[1]",
    "{1: x}",
]
yaml_soup = st.lists(st.sampled_from(YAML_TOKENS), max_size=25).map("".join)


# --- checking one outcome -----------------------------------------------------------------------

LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SAFE_REF = re.compile(r"[A-Za-z0-9._:/@+\[\]-]+")  # no space, quote, $, ;, |, &, `, newline
CONTAINER_PATH = re.compile(r"/[A-Za-z0-9._/@+=:,-]*")
APT = re.compile(r"[a-z0-9][a-z0-9+.:=~-]*", re.IGNORECASE)
STAGE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


NO_SOURCE = f"{SOURCE}: servers.web: needs one of build, image or from"
CYCLE = f"{SOURCE}: servers.web.links: links form a cycle: "


def names_key(prefix: str, field: str) -> re.Pattern[str]:
    """A message about ``prefix.field`` or anything under it."""
    return re.compile(rf"{re.escape(SOURCE)}: {re.escape(prefix)}\.{field}(?:[.\[]|: )")


def check_message(message: str, where: re.Pattern[str] | None = None) -> None:
    """One line, starting with the file; with ``where``, naming that key path."""
    assert message == message.strip(), message
    assert message.startswith(f"{SOURCE}: "), message
    assert where is None or where.match(message), message
    assert len(message.splitlines()) == 1, message


def dockerfile_is_exec_form(source: GeneratedSource) -> None:
    """Every line of the generated Dockerfile is one instruction; RUN and COPY take JSON arrays."""
    lines = image.generated_dockerfile(source).splitlines()
    steps = len(source.before_install) + bool(source.install) + len(source.copy) + len(source.run)
    assert len(lines) == 1 + steps, lines
    assert lines[0] == f"FROM {source.base}"
    for line in lines[1:]:
        instruction, _, rest = line.partition(" ")
        assert instruction in ("RUN", "COPY"), line
        args = json.loads(rest)
        assert isinstance(args, list)
        assert all(isinstance(a, str) for a in args)
    if source.install:  # the packages only ever as arguments of the constant script
        install = json.loads(lines[1 + len(source.before_install)].partition(" ")[2])
        assert install == image.install_argv(source.install)
        assert install[2] == image.INSTALL_SCRIPT


def inside(path: Path, base: Path) -> bool:
    return path.resolve().is_relative_to(base.resolve())


def assert_safe(spec: ServerSpec, base: Path) -> None:
    """What an accepted server may carry to the engine: nothing that breaks out of its field."""
    assert LABEL.fullmatch(spec.name), spec.name
    assert LABEL.fullmatch(spec.hostname), spec.hostname
    for name in (spec.domain or "", *spec.aliases):
        assert not name or all(LABEL.fullmatch(label) for label in name.split(".")), name
    assert all(1 <= p.number <= 65535 and p.protocol in ("tcp", "udp") for p in spec.ports)
    assert all(p.host is None or 1 <= p.host <= 65535 for p in spec.ports)
    assert len(set(spec.ports)) == len(spec.ports)
    fixed = [(p.host, p.protocol) for p in spec.ports if p.host is not None]
    assert len(set(fixed)) == len(fixed)
    entries = [p.entry for p in spec.ports]
    assert all(entries.count(i) <= MAX_RANGE for i in set(entries))
    if fixed:
        assert spec.scope == "session"
        assert spec.share == "run"
    assert math.isfinite(spec.timeout)
    assert 0 < spec.timeout <= 86400
    assert 0 < spec.image_timeout <= 86400
    for key, value in spec.env:
        assert ENV_KEY.fullmatch(key), key
        assert isinstance(value, str)
        assert "\x00" not in value
    assert all(ENV_KEY.fullmatch(key) for key in spec.secret_env)
    if spec.command is not None:
        assert spec.command
        assert all(isinstance(a, str) and "\x00" not in a for a in spec.command)
    if spec.post_startup is not None:
        check = spec.post_startup
        assert check.command
        assert all("\x00" not in a for a in check.command)
        assert check.retries is None or 1 <= check.retries <= 1_000_000
        assert check.interval is None or (
            math.isfinite(check.interval) and 0 < check.interval <= 86400
        )
    assert spec.share in ("run", "worker")
    targets = [volume.path for volume in spec.volumes]
    assert len(targets) == len(set(targets))
    for volume in spec.volumes:
        assert CONTAINER_PATH.fullmatch(volume.path), volume.path
        assert ".." not in volume.path.split("/")
        assert volume.path not in ("", "/")
        if isinstance(volume, BindMount):
            assert inside(volume.src, base), volume.src
            assert volume.src.is_dir() or volume.src.is_file()
        elif isinstance(volume, NamedVolume):
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", volume.name), volume.name
        else:
            assert isinstance(volume, AnonymousVolume)
    if spec.env_file is not None:
        assert inside(spec.env_file.path, base), spec.env_file.path
        assert set(spec.env_file.keys) <= dict(spec.env).keys()
    source = spec.image
    if isinstance(source, ImageSource):
        assert SAFE_REF.fullmatch(source.ref), source.ref
    elif isinstance(source, BuildSource):
        assert source.context.is_dir()
        assert inside(source.context, base)
        dockerfile = source.context / source.dockerfile
        assert dockerfile.is_file()
        assert inside(dockerfile, source.context)
        assert all(ENV_KEY.fullmatch(key) for key, _ in source.args)
        assert source.target is None or STAGE.fullmatch(source.target)
    else:
        assert isinstance(source, GeneratedSource)
        assert SAFE_REF.fullmatch(source.base), source.base
        assert all(APT.fullmatch(p) for p in source.install)
        for copy in source.copy:
            assert copy.src.exists(), copy.src
            assert inside(copy.src, base), copy.src
            assert CONTAINER_PATH.fullmatch(copy.dst), copy.dst
            assert ".." not in copy.dst.split("/")
            assert copy.mode is None or 0 <= copy.mode <= 0o7777
        for step in (*source.before_install, *source.run):
            parts = [step] if isinstance(step, str) else list(step)
            assert parts
            assert all(isinstance(p, str) and "\x00" not in p for p in parts)
        dockerfile_is_exec_form(source)
    names = {*(key for key, _ in spec.env), *spec.secret_env}
    texts_ = [value for _, value in spec.env]
    texts_ += [*(spec.command or ()), *(spec.reset or ())]
    texts_ += list(spec.post_startup.command) if spec.post_startup else []
    assert_safe_options(spec.options)
    if spec.wait is not None:
        assert all(1 <= p <= 65535 for p in spec.wait.tcp)
        for banner in spec.wait.banners:
            assert 1 <= banner.port <= 65535
            assert banner.expect
            assert "\x00" not in banner.expect
            texts_.append(banner.expect)
        texts_ += [http.path for http in spec.wait.http]
        texts_ += [spec.wait.log] if spec.wait.log is not None else []
        for http in spec.wait.http:
            assert 1 <= http.port <= 65535
            assert http.status
            assert all(100 <= s <= 599 for s in http.status)
            assert http.path.startswith("/")
            assert http.path.isascii(), http.path
            assert not any(c.isspace() or not c.isprintable() for c in http.path)
        if spec.wait.log is not None:
            re.compile(variables.expand(spec.wait.log, dict.fromkeys(names, "?"), re.escape))
    # every reference names a variable of the server, so expansion at start cannot fail
    for text in texts_:
        assert set(variables.references(text)) <= names, text
    variables.resolve_env(dict(spec.env), dict.fromkeys(spec.secret_env, "secret"))


USER_PART = r"(?:[A-Za-z_][A-Za-z0-9_.-]*|[0-9]+)"
USER = re.compile(rf"{USER_PART}(?::{USER_PART})?")
TMPFS_DATA = re.compile(r"(?:size=[0-9]+)?,?(?:mode=[0-7]{1,4})?")
SYSCTL = re.compile(r"[a-z0-9_]+(?:\.[A-Za-z0-9_-]+)+")


def assert_safe_options(options: ContainerOptions) -> None:
    """What the container options may carry: fixed lists, plain paths, bounded numbers."""
    assert options.user is None or USER.fullmatch(options.user), options.user
    for path in (options.working_dir, *(t.path for t in options.tmpfs)):
        assert path is None or CONTAINER_PATH.fullmatch(path), path
        assert path is None or ".." not in path.split("/")
    for argv in (options.entrypoint or (), options.healthcheck.test if options.healthcheck else ()):
        assert all(isinstance(a, str) and "\x00" not in a for a in argv)
    for mount in options.tmpfs:
        assert mount.path != "/"
        assert mount.path.split("/")[1] not in ("proc", "sys", "dev")
        assert not set(",:=") & set(mount.path), mount.path
        assert TMPFS_DATA.fullmatch(mount.options()), mount.options()
    for size in (options.shm_size, *(t.size for t in options.tmpfs)):
        assert size is None or 4096 <= size <= 16 << 30
    assert set(options.cap_add) <= set(CAP_ADD_ALLOWED), options.cap_add
    assert set(options.cap_drop) <= {*CAPABILITIES, "ALL"}, options.cap_drop
    assert not set(options.cap_add) & set(options.cap_drop)
    for limit in options.ulimits:
        assert limit.name in ULIMIT_NAMES
        assert all(isinstance(n, int) and -1 <= n < 2**63 for n in (limit.soft, limit.hard))
    for name, value in options.sysctls:
        assert SYSCTL.fullmatch(name), name
        assert value.isascii(), value
        assert value.isprintable(), value
        assert len(value) <= 256, value
    if options.healthcheck is not None:
        check = options.healthcheck
        assert check.test
        assert check.test[0] not in ("CMD", "CMD-SHELL", "NONE")
        for seconds in (check.interval, check.timeout, check.start_period):
            assert seconds is None or (math.isfinite(seconds) and 0.001 <= seconds <= 86400)
    assert set(options.create_kwargs()) <= {"user", "working_dir", "entrypoint", "healthcheck"}
    assert set(options.host_config_kwargs()) <= {
        "tmpfs",
        "cap_add",
        "cap_drop",
        "shm_size",
        "ulimits",
        "sysctls",
    }


def outcome(data: object, base: Path, where: re.Pattern[str] | None = None) -> str:
    """Parse ``data``: "ok", "error" (a proper ConfigError) or the name of a known bug."""
    try:
        config = parse_config(data, base=base, source=SOURCE)
    except ConfigError as exc:
        check_message(str(exc), where)
        return "error"
    except Exception as exc:
        bug = known_bug(exc)
        if bug is None:
            raise
        return bug
    assert isinstance(config, ServerConfig)
    assert config.source == SOURCE
    for name, spec in config.servers.items():
        assert spec.name == name
        assert_safe(spec, base)
        assert set(spec.links) <= set(config.servers)
    return "ok"


def read_outcome(path: Path) -> str:
    try:
        read_yaml(path, SOURCE)
    except ConfigError as exc:
        check_message(str(exc))
        return "error"
    except Exception as exc:
        bug = known_bug(exc)
        if bug is None:
            raise
        return bug
    return "ok"


# --- the properties -----------------------------------------------------------------------------


def make_project(folder: Path) -> Path:
    """A config folder with a build context, files to copy and traps: links out, a loop, a giant."""
    (folder / "web").mkdir(parents=True)
    (folder / "web" / "Dockerfile").write_text("FROM busybox:stable\n")
    (folder / "files" / "sub").mkdir(parents=True)
    (folder / "files" / "index.html").write_text("ok\n")
    (folder / "files" / "sub" / "a.txt").write_text("a\n")
    (folder / "files" / "app.env").write_text("A=1\nexport B='two'\nDB_PASSWORD=\"x y\"\n")
    (folder / "files" / "bad.env").write_text("A=1\nnot a line\nB='open\n")
    (folder / "files" / "binary.env").write_bytes(b"A=\xff\x00\n")
    (folder / "escape").symlink_to("/etc/passwd")
    (folder / "escape_dir").symlink_to("/etc")
    (folder / "loop").symlink_to("loop")
    with (folder / "big.bin").open("wb") as f:
        f.truncate(MAX_COPY_BYTES + (1 << 20))  # sparse: costs no disk
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("hostile") / "project")


def test_every_server_field_is_fuzzed() -> None:
    assert set(FIELDS) == set(SERVER_KEYS)


def body_with(field: str, value: object) -> dict[str, Any]:
    if field in SOURCE_KEYS:
        return {field: value}
    if field in GENERATED_KEYS:
        return {"from": "busybox:stable", field: value}
    return {"image": "busybox:stable", field: value}


@pytest.mark.parametrize("field", SERVER_KEYS)
@FUZZ_EACH_FIELD
@given(data=st.data())
def test_any_value_of_a_field_is_a_config_or_a_one_line_error_naming_it(
    project: Path, field: str, data: st.DataObject
) -> None:
    value = data.draw(FIELDS[field], label=field)
    where = names_key("servers.web", field)
    if value is None and field in SOURCE_KEYS:  # a null source is no source
        where = re.compile(re.escape(NO_SOURCE) + "$")
    outcome({"servers": {"web": body_with(field, value)}}, project, where)


@FUZZ
@given(field=st.sampled_from(SERVER_KEYS), data=st.data())
def test_any_value_of_a_field_in_defaults_is_a_config_or_a_one_line_error_naming_it(
    project: Path, field: str, data: st.DataObject
) -> None:
    value = data.draw(FIELDS[field], label=field)
    where = names_key("defaults", field).pattern
    # What only the server can be blamed for: no source at all, or linking to itself.
    where += f"|{re.escape(NO_SOURCE)}$|{re.escape(CYCLE)}"
    outcome(
        {"defaults": body_with(field, value), "servers": {"web": {}}}, project, re.compile(where)
    )


@FUZZ
@given(document=documents)
def test_any_document_is_a_config_or_a_one_line_error(project: Path, document: object) -> None:
    outcome(document, project)


@FUZZ
@given(document=documents)
def test_any_document_through_a_yaml_file_is_a_config_or_a_one_line_error(
    project: Path, document: object
) -> None:
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except (yaml.YAMLError, ValueError):  # tuple keys, ints past Python's str() limit
        reject()
    path = project.parent / "fuzzed.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        data = read_yaml(path, SOURCE)
    except ConfigError as exc:
        check_message(str(exc))
        return
    outcome(data, project)


@FUZZ
@given(text=st.one_of(st.text(), yaml_soup))
def test_any_text_read_as_yaml_is_a_value_or_a_one_line_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "testservers.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    read_outcome(path)


@FUZZ
@given(data=st.one_of(st.binary(), yaml_soup.map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_any_bytes_read_as_yaml_are_a_value_or_a_one_line_error(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "testservers.yaml"
    path.write_bytes(data)
    read_outcome(path)


def test_loading_fuzzed_documents_never_imports_the_docker_sdk(tmp_path: Path) -> None:
    """The pure config path, in a fresh interpreter: no docker, no engine module, no requests."""
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})

        from hypothesis import HealthCheck, given, settings
        from pytest_testserver.errors import ConfigError
        from pytest_testserver.yamlfile import read_yaml

        from tests.test_hostile_input import documents, known_bug, make_project, outcome, yaml_soup

        project = make_project(Path({str(tmp_path)!r}) / "project")
        seen = set()

        @settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(documents)
        def fuzz(document):
            seen.add(outcome(document, project))

        @settings(max_examples=50, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(yaml_soup)
        def fuzz_yaml(text):
            path = project.parent / "soup.yaml"
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            try:
                data = read_yaml(path, "testservers.yaml")
            except ConfigError:
                return
            except Exception as exc:
                if known_bug(exc) is None:
                    raise
                return
            seen.add(outcome(data, project))

        fuzz()
        fuzz_yaml()
        loaded = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("docker", "requests", "urllib3")
            or m in ("pytest_testserver.engine", "pytest_testserver.pool")
        )
        print("outcomes:", sorted(seen))
        print("loaded:", loaded)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "loaded: []" in lines, done.stdout
    assert any(line.startswith("outcomes:") and "'error'" in line for line in lines), done.stdout


# --- the corpus: named hostile cases, as a user meets them --------------------------------------


def glob(expected: str) -> str:
    """``expected`` as an fnmatch pattern: ``*`` is a wildcard, everything else literal."""
    return re.sub(r"([\[\]?])", r"[\1]", expected)


def server_yaml(body: str, name: str = "web") -> str:
    return f"servers:\n  {name}:\n{textwrap.indent(textwrap.dedent(body).strip(), '    ')}\n"


def assert_one_line_usage_error(result: pytest.RunResult, expected: str) -> None:
    """Exit status 4 and exactly one non-empty stderr line: ``ERROR: <expected>``."""
    lines = [line for line in result.errlines if line.strip()]
    assert result.ret == pytest.ExitCode.USAGE_ERROR, (result.ret, result.outlines, lines)
    assert len(lines) == 1, lines
    result.stderr.fnmatch_lines([glob(f"ERROR: {expected}")], consecutive=True)
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.fixture
def hostile_project(pytester: pytest.Pytester) -> Path:
    """The pytester folder with a build context, files, and symlinks pointing out of it."""
    folder = pytester.path
    (folder / "web").mkdir()
    (folder / "web" / "Dockerfile").write_text("FROM busybox:stable\n")
    (folder / "web" / "Dockerfile.evil").symlink_to("/etc/passwd")
    (folder / "files").mkdir()
    (folder / "files" / "index.html").write_text("ok\n")
    (folder / "passwd").symlink_to("/etc/passwd")
    (folder / "etc").symlink_to("/etc")
    (folder / "loop").symlink_to("loop")
    (folder.parent / "outside.txt").write_text("not yours\n")
    with (folder / "huge.bin").open("wb") as f:
        f.truncate(MAX_COPY_BYTES + (1 << 20))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    return folder


def run_config(pytester: pytest.Pytester, text: str, *args: str) -> pytest.RunResult:
    (pytester.path / "testservers.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    return pytester.runpytest(*args)


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(reason=f"BUG: {reason}", strict=True)


IMAGE = "image: busybox:stable"
FROM = "from: busybox:stable"
NOT_A_REF = "is not a valid image reference (such as busybox:stable)"
NOT_A_HOST = "is not a valid host name (RFC 1123 label)"
NOT_A_DOMAIN = "is not a valid domain name (RFC 1123)"
NOT_A_VAR = "is not a valid variable name (letters, digits, underscore)"
NOT_A_PORT = "is not a port (a number 1-65535, optionally /tcp or /udp)"
NOT_A_PORT_ENTRY = (
    'is not a port entry (8080, "53/udp", "30000-30009", "2121:21", or a mapping with target)'
)
NOT_A_PATH = "is not an absolute path of plain characters (letters, digits, and . _ / @ + = : , -)"
NUL = "must not contain a NUL character"
BAD_TIMEOUT = "invalid value for 'timeout': "  # a !!tag PyYAML cannot build; its own reason

CASES = [
    # shell metacharacters where a name or reference goes
    pytest.param(
        'image: "busybox; rm -rf /"',
        f"servers.web.image: 'busybox; rm -rf /' {NOT_A_REF}",
        id="image-semicolon",
    ),
    pytest.param(
        'image: "$(reboot)"', f"servers.web.image: '$(reboot)' {NOT_A_REF}", id="image-subshell"
    ),
    pytest.param(
        "image: 'busybox:`reboot`'",
        f"servers.web.image: 'busybox:`reboot`' {NOT_A_REF}",
        id="image-backticks",
    ),
    pytest.param(
        'image: "busybox | sh"', f"servers.web.image: 'busybox | sh' {NOT_A_REF}", id="image-pipe"
    ),
    pytest.param(
        'image: "busybox && reboot"',
        f"servers.web.image: 'busybox && reboot' {NOT_A_REF}",
        id="image-and",
    ),
    pytest.param(
        'from: "busybox;rm -rf /"',
        f"servers.web.from: 'busybox;rm -rf /' {NOT_A_REF}",
        id="from-semicolon",
    ),
    pytest.param(
        'from: "busybox:stable\\nRUN touch /pwned"',
        "servers.web.from: must be a single line: 'busybox:stable\\nRUN touch /pwned'",
        id="from-dockerfile-injection",
    ),
    pytest.param(
        f'{IMAGE}\nhostname: "web; reboot"',
        f"servers.web.hostname: 'web; reboot' {NOT_A_HOST}",
        id="hostname-semicolon",
    ),
    pytest.param(
        f'{IMAGE}\nhostname: "$(reboot)"',
        f"servers.web.hostname: '$(reboot)' {NOT_A_HOST}",
        id="hostname-subshell",
    ),
    pytest.param(
        f"{IMAGE}\nhostname: '`reboot`'",
        f"servers.web.hostname: '`reboot`' {NOT_A_HOST}",
        id="hostname-backticks",
    ),
    pytest.param(
        f'{IMAGE}\nhostname: "web|nc"',
        f"servers.web.hostname: 'web|nc' {NOT_A_HOST}",
        id="hostname-pipe",
    ),
    pytest.param(
        f'{IMAGE}\nhostname: "web&&reboot"',
        f"servers.web.hostname: 'web&&reboot' {NOT_A_HOST}",
        id="hostname-and",
    ),
    pytest.param(
        f'{IMAGE}\ndomain: "test.local; reboot"',
        f"servers.web.domain: 'test.local; reboot' {NOT_A_DOMAIN}",
        id="domain-semicolon",
    ),
    # newlines
    pytest.param(
        f'{IMAGE}\nhostname: "web\\nevil"',
        f"servers.web.hostname: 'web\\nevil' {NOT_A_HOST}",
        id="hostname-newline",
    ),
    pytest.param(
        f'{IMAGE}\ndomain: "test\\n.local"',
        f"servers.web.domain: 'test\\n.local' {NOT_A_DOMAIN}",
        id="domain-newline",
    ),
    pytest.param(
        f'{IMAGE}\naliases: ["www\\nevil"]',
        f"servers.web.aliases[0]: 'www\\nevil' {NOT_A_DOMAIN}",
        id="alias-newline",
    ),
    pytest.param(
        f'{IMAGE}\nenv: {{"A\\nB": x}}',
        f"servers.web.env.'A\\nB': 'A\\nB' {NOT_A_VAR}",
        id="env-key-newline",
    ),
    pytest.param(
        f'{IMAGE}\nenv: {{"A;reboot": x}}',
        f"servers.web.env.'A;reboot': 'A;reboot' {NOT_A_VAR}",
        id="env-key-semicolon",
    ),
    pytest.param(
        f'{IMAGE}\nsecret_env: ["TOKEN\\nX"]',
        f"servers.web.secret_env[0]: 'TOKEN\\nX' {NOT_A_VAR}",
        id="secret-env-newline",
    ),
    pytest.param(
        'build: {context: web, args: {"A\\nB": x}}',
        f"servers.web.build.args.'A\\nB': 'A\\nB' {NOT_A_VAR}",
        id="build-arg-key-newline",
    ),
    pytest.param(
        'build: {context: web, args: {"$(reboot)": x}}',
        f"servers.web.build.args.'$(reboot)': '$(reboot)' {NOT_A_VAR}",
        id="build-arg-key-subshell",
    ),
    pytest.param(
        'build: {context: web, target: "final\\nFROM evil"}',
        "servers.web.build.target: 'final\\nFROM evil' is not a build stage name "
        "(letters, digits, _ . -)",
        id="build-target-newline",
    ),
    pytest.param(
        f'{FROM}\ncopy: [{{src: files, dst: "/app\\nRUN reboot"}}]',
        f"servers.web.copy[0].dst: '/app\\nRUN reboot' {NOT_A_PATH}",
        id="copy-dst-newline",
    ),
    pytest.param(
        f'{FROM}\ninstall: ["curl\\nRUN reboot"]',
        "servers.web.install[0]: 'curl\\nRUN reboot' is not a Debian package name",
        id="install-newline",
    ),
    # NUL bytes
    pytest.param('image: "busybox\\0"', f"servers.web.image: {NUL}", id="image-nul"),
    pytest.param(f'{IMAGE}\nhostname: "web\\0"', f"servers.web.hostname: {NUL}", id="hostname-nul"),
    pytest.param(
        f'{IMAGE}\ncommand: ["httpd\\0", "-f"]', f"servers.web.command[0]: {NUL}", id="command-nul"
    ),
    pytest.param(f'{IMAGE}\nenv: {{A: "x\\0y"}}', f"servers.web.env.A: {NUL}", id="env-value-nul"),
    pytest.param(
        f'{IMAGE}\nenv: {{"A\\0": x}}', f"servers.web.env.'A\\x00': {NUL}", id="env-key-nul"
    ),
    pytest.param(f'{FROM}\nrun: ["echo\\0"]', f"servers.web.run[0]: {NUL}", id="run-step-nul"),
    pytest.param(
        f'{FROM}\ncopy: [{{src: "files\\0", dst: /app}}]',
        f"servers.web.copy[0].src: {NUL}",
        id="copy-src-nul",
    ),
    # unicode look-alikes: shown ASCII-escaped, so that they cannot pass for their twins
    pytest.param(
        'image: "busyb\\u043ex"',
        f"servers.web.image: 'busyb\\u043ex' {NOT_A_REF}",
        id="image-cyrillic-o",
    ),
    pytest.param(
        'image: "busybox:st\\u0430ble"',
        f"servers.web.image: 'busybox:st\\u0430ble' {NOT_A_REF}",
        id="image-tag-cyrillic-a",
    ),
    pytest.param(
        f'{IMAGE}\nhostname: "w\\u0435b"',
        f"servers.web.hostname: 'w\\u0435b' {NOT_A_HOST}",
        id="hostname-cyrillic-e",
    ),
    pytest.param(
        f'{IMAGE}\naliases: ["\\u0430pi.test"]',
        f"servers.web.aliases[0]: '\\u0430pi.test' {NOT_A_DOMAIN}",
        id="alias-cyrillic-a",
    ),
    pytest.param(
        f'{IMAGE}\nports: ["\\uff18\\uff10\\uff18\\uff10"]',
        f"servers.web.ports[0]: '\\uff18\\uff10\\uff18\\uff10' {NOT_A_PORT_ENTRY}",
        id="port-fullwidth-digits",
    ),
    pytest.param(
        f'{IMAGE}\nports: ["\\u0668\\u0660"]',
        f"servers.web.ports[0]: '\\u0668\\u0660' {NOT_A_PORT_ENTRY}",
        id="port-arabic-indic-digits",
    ),
    pytest.param(
        f'{IMAGE}\nports: ["30000-\uff13\uff10\uff10\uff10\uff19"]',
        f"servers.web.ports[0]: '30000-\\uff13\\uff10\\uff10\\uff10\\uff19' {NOT_A_PORT_ENTRY}",
        id="port-range-fullwidth-digits",
    ),
    pytest.param(
        f'{IMAGE}\nports: [{{target: "\u0662\u0661", published: 2121}}]',
        "servers.web.ports[0].target: '\\u0662\\u0661' is not a port or a range of ports "
        "(such as 21 or 30000-30009)",
        id="port-mapping-arabic-indic-digits",
    ),
    pytest.param(
        f'{IMAGE}\nports: ["1-{10**30}"]',
        f"servers.web.ports[0]: '1-{10**30}' {NOT_A_PORT_ENTRY}",
        id="port-range-huge",
    ),
    pytest.param(
        f'{IMAGE}\nenv: {{"P\\u0410SSWORD": x}}',
        f"servers.web.env.'P\\u0410SSWORD': 'P\\u0410SSWORD' {NOT_A_VAR}",
        id="env-key-cyrillic-a",
    ),
    pytest.param(
        f'{FROM}\ncopy: [{{src: files, dst: "/etc\\u2215passwd"}}]',
        f"servers.web.copy[0].dst: '/etc\\u2215passwd' {NOT_A_PATH}",
        id="copy-dst-division-slash",
    ),
    pytest.param(
        f'{FROM}\ncopy: [{{src: "..\\u2215outside.txt", dst: /x}}]',
        "servers.web.copy[0].src: '..\\u2215outside.txt' does not exist in *",
        id="copy-src-division-slash",
    ),
    # paths that lead out of the config folder
    pytest.param(
        f"{FROM}\ncopy: [{{src: ../outside.txt, dst: /x}}]",
        "servers.web.copy[0].src: '../outside.txt' leads outside *",
        id="copy-src-dotdot",
    ),
    pytest.param(
        f"{FROM}\ncopy: [{{src: files/../../../../../../../etc/passwd, dst: /x}}]",
        "servers.web.copy[0].src: 'files/../../../../../../../etc/passwd' leads outside *",
        id="copy-src-deep-dotdot",
    ),
    pytest.param(
        f"{FROM}\ncopy: [{{src: /etc/passwd, dst: /x}}]",
        "servers.web.copy[0].src: '/etc/passwd' must be relative to *",
        id="copy-src-absolute",
    ),
    pytest.param(
        f"{FROM}\ncopy: [{{src: passwd, dst: /x}}]",
        "servers.web.copy[0].src: 'passwd' leads outside *",
        id="copy-src-symlink-to-etc-passwd",
    ),
    pytest.param(
        f"{FROM}\ncopy: [{{src: etc/passwd, dst: /x}}]",
        "servers.web.copy[0].src: 'etc/passwd' leads outside *",
        id="copy-src-through-symlinked-folder",
    ),
    pytest.param(
        f"{FROM}\ncopy: [{{src: huge.bin, dst: /x}}]",
        "servers.web.copy[0].src: 257 MiB is more than 256 MiB to copy into an image",
        id="copy-src-over-the-size-cap",
    ),
    pytest.param(
        f"{FROM}\ncopy: [{{src: files, dst: /app/../etc}}]",
        "servers.web.copy[0].dst: '/app/../etc' must not contain '..'",
        id="copy-dst-dotdot",
    ),
    pytest.param(
        "build: etc", "servers.web.build.context: 'etc' leads outside *", id="build-context-symlink"
    ),
    pytest.param(
        "build: ..", "servers.web.build.context: '..' leads outside *", id="build-context-dotdot"
    ),
    pytest.param(
        "build: /etc",
        "servers.web.build.context: '/etc' must be relative to *",
        id="build-context-absolute",
    ),
    pytest.param(
        "build: {context: web, dockerfile: ../../etc/passwd}",
        "servers.web.build.dockerfile: '../../etc/passwd' leads outside *",
        id="build-dockerfile-dotdot",
    ),
    pytest.param(
        "build: {context: web, dockerfile: Dockerfile.evil}",
        "servers.web.build.dockerfile: 'Dockerfile.evil' leads outside *",
        id="build-dockerfile-symlink",
    ),
    # huge, negative and not-a-number values
    pytest.param(
        f"{IMAGE}\nports: [{10**30}]",
        f"servers.web.ports[0]: {10**30} is not a port (1-65535)",
        id="port-10e30",
    ),
    pytest.param(
        f"{IMAGE}\nports: [-80]",
        "servers.web.ports[0]: -80 is not a port (1-65535)",
        id="port-negative",
    ),
    pytest.param(
        f"{IMAGE}\nports: [{'9' * 5000}]",
        "line 4: invalid value for 'ports': a number with more than 4300 digits",
        id="port-5000-digits-in-yaml",
    ),
    pytest.param(
        f"{IMAGE}\ntimeout: 1.0e+308",
        "servers.web.timeout: 1e+308 seconds is more than a day",
        id="timeout-1e308",
    ),
    pytest.param(
        f"{IMAGE}\ntimeout: {10**30}",
        f"servers.web.timeout: {10**30} seconds is more than a day",
        id="timeout-10e30",
    ),
    pytest.param(
        f"{IMAGE}\ntimeout: -5",
        "servers.web.timeout: -5 is not a positive number of seconds",
        id="timeout-negative",
    ),
    pytest.param(
        f"{IMAGE}\ntimeout: .nan",
        "servers.web.timeout: nan is not a positive number of seconds",
        id="timeout-nan",
    ),
    pytest.param(
        f"{IMAGE}\ntimeout: -.inf",
        "servers.web.timeout: -inf is not a positive number of seconds",
        id="timeout-minus-inf",
    ),
    pytest.param(
        f"{IMAGE}\npost_startup: {{command: ['true'], retries: {10**20}}}",
        f"servers.web.post_startup.retries: {10**20} is out of range (1-1000000)",
        id="retries-10e20",
    ),
    pytest.param(
        f"{IMAGE}\npost_startup: {{command: ['true'], interval: .nan}}",
        "servers.web.post_startup.interval: nan is not a positive number of seconds",
        id="interval-nan",
    ),
    pytest.param(
        f"{IMAGE}\npost_startup: {{command: ['true'], interval: -0.5}}",
        "servers.web.post_startup.interval: -0.5 is not a positive number of seconds",
        id="interval-negative",
    ),
    pytest.param(
        f"{IMAGE}\nwait: {{http: {{port: 80, status: {10**30}}}}}",
        f"servers.web.wait.http.status: {10**30} is not an HTTP status (100-599)",
        id="http-status-10e30",
    ),
    # ${NAME} variables come from the server's env and secret_env only, never from the host
    pytest.param(
        f'{IMAGE}\ncommand: [sh, -c, "echo ${{HOME}}; reboot"]',
        "servers.web.command[2]: ${HOME} is not set in this server's env or secret_env; write "
        "$${HOME} for a literal ${HOME}",
        id="command-host-variable",
    ),
    pytest.param(
        f'{IMAGE}\ncommand: ["${{A:-$(reboot)}}"]\nenv: {{A: x}}',
        "servers.web.command[0]: '${A:-$(reboot)}' is not a variable reference: write ${NAME} "
        "(letters, digits, underscore), or $$ for a literal $",
        id="command-default-subshell",
    ),
    pytest.param(
        f'{IMAGE}\nenv: {{A: "${{B}}", B: "${{A}}"}}',
        "servers.web.env.A: variables refer to each other in a cycle: A -> B -> A",
        id="env-cycle",
    ),
    pytest.param(
        f'{IMAGE}\nwait: {{tcp: {{port: 21, expect: "220 ${{\\u0435}}"}}}}',
        "servers.web.wait.tcp.expect: '${\\u0435}' is not a variable reference: write ${NAME} "
        "(letters, digits, underscore), or $$ for a literal $",
        id="expect-cyrillic-name",
    ),
    pytest.param(
        f"{IMAGE}\nwait: {{tcp: {{port: 21, expect: 220}}}}",
        "servers.web.wait.tcp.expect: must be a string, not int 220",
        id="expect-int",
    ),
    pytest.param(
        f"{IMAGE}\nwait: {{http: {{port: 80, status: [200, {10**30}]}}}}",
        f"servers.web.wait.http.status[1]: {10**30} is not an HTTP status (100-599)",
        id="http-status-list-10e30",
    ),
    # a command is an argument list, never a shell line
    pytest.param(
        f'{IMAGE}\ncommand: "httpd -f; rm -rf /"',
        'servers.web.command: must be a list of arguments such as ["httpd", "-f"], not the string '
        "'httpd -f; rm -rf /' (no shell is involved)",
        id="command-as-shell-string",
    ),
    pytest.param(
        f'{IMAGE}\npost_startup: {{command: "wget -q localhost && reboot"}}',
        'servers.web.post_startup.command: must be a list of arguments such as ["httpd", "-f"], '
        "not the string 'wget -q localhost && reboot' (no shell is involved)",
        id="post-startup-command-as-shell-string",
    ),
    pytest.param(
        f'{IMAGE}\npost_startup: "wget -q localhost"',
        "servers.web.post_startup: must be a mapping, not str",
        id="post-startup-as-shell-string",
    ),
    # container options: no shell, no free-form option string, no capability that escapes
    pytest.param(
        f'{IMAGE}\nentrypoint: "/entry.sh; reboot"',
        'servers.web.entrypoint: must be a list of arguments such as ["httpd", "-f"], not the '
        "string '/entry.sh; reboot' (no shell is involved)",
        id="entrypoint-as-shell-string",
    ),
    pytest.param(
        f"{IMAGE}\nhealthcheck: {{test: [CMD-SHELL, 'curl localhost || exit 1']}}",
        "servers.web.healthcheck.test[0]: 'CMD-SHELL': give the argv itself; it runs as is, "
        "never through a shell",
        id="healthcheck-cmd-shell",
    ),
    pytest.param(
        f"{IMAGE}\ncap_add: [SYS_ADMIN]",
        "servers.web.cap_add[0]: SYS_ADMIN is refused: it mounts filesystems and makes "
        "namespaces: the classic container escape",
        id="cap-add-sys-admin",
    ),
    pytest.param(
        f"{IMAGE}\ncap_add: [CAP_SYS_MODULE]",
        "servers.web.cap_add[0]: SYS_MODULE is refused: it loads modules into the host kernel",
        id="cap-add-sys-module",
    ),
    pytest.param(
        f'{IMAGE}\ntmpfs: [{{path: /run, size: "64m,exec,suid"}}]',
        "servers.web.tmpfs[0].size: '64m,exec,suid' is not a size such as 64m (a whole number "
        "and k, m or g)",
        id="tmpfs-options-smuggled-in-size",
    ),
    pytest.param(
        f'{IMAGE}\ntmpfs: ["/run,exec"]',
        "servers.web.tmpfs[0]: '/run,exec': a tmpfs path must not hold , : or = (mount option "
        "separators)",
        id="tmpfs-options-smuggled-in-path",
    ),
    pytest.param(
        f"{IMAGE}\nsysctls: {{kernel.core_pattern: '|/tmp/pwn'}}",
        "servers.web.sysctls.kernel.core_pattern: 'kernel.core_pattern' is not a sysctl of the "
        "container's own namespaces: *",
        id="sysctl-core-pattern",
    ),
    pytest.param(
        f'{IMAGE}\nsysctls: {{net.ipv4.ip_forward: "1\\nkernel.modprobe=/x"}}',
        "servers.web.sysctls.net.ipv4.ip_forward: must be a single line: '1\\nkernel.modprobe=/x'",
        id="sysctl-value-newline",
    ),
    pytest.param(
        f'{IMAGE}\nuser: "root; reboot"',
        "servers.web.user: 'root; reboot' is not a user: name, uid, name:group or uid:gid "
        "(names of letters, digits, _ . -; ids 0-4294967294)",
        id="user-semicolon",
    ),
    pytest.param(
        f"{IMAGE}\nuser: 1000:50",
        'servers.web.user: 60050 is ambiguous as a user: quote it, such as "1000" or "1000:50"',
        id="user-base-60",
    ),
    pytest.param(
        f"{IMAGE}\nworking_dir: /srv/../../etc",
        "servers.web.working_dir: '/srv/../../etc' must not contain '..'",
        id="working-dir-dotdot",
    ),
    # YAML itself
    pytest.param(
        f"{IMAGE}\nports: [80]\nports: [22]",
        "line 5: duplicate key 'ports' (first on line 4)",
        id="duplicate-field",
    ),
    pytest.param(
        f"{IMAGE}\nenv:\n  TOKEN: a\n  TOKEN: b",
        "line 6: duplicate key 'TOKEN' (first on line 5)",
        id="duplicate-env-key",
    ),
    pytest.param(
        f"{IMAGE}\nenv: {{[a, b]: c}}",
        "line 4: keys must be strings, not ['a', 'b']",
        id="list-as-key",
    ),
    # found by this file
    pytest.param(
        f'{IMAGE}\nwait: {{log: "[z-\\na]"}}',
        "servers.web.wait.log: '[z-\\na]' is not a regular expression: bad character range z-* at "
        "position 1",
        id="log-regex-error-with-newline",
    ),
    pytest.param(
        f'{IMAGE}\nwait: {{http: {{port: 8080, path: "/health\\u2215x"}}}}',
        "servers.web.wait.http.path: '/health\\u2215x' is not a URL path (it starts with /, is "
        "ASCII, has no spaces)",
        id="http-path-division-slash",
    ),
    pytest.param(
        f'{FROM}\ncopy: [{{src: "\\ud800", dst: /x}}]',
        "servers.web.copy[0].src: '\\ud800' cannot be resolved (UnicodeEncodeError)",
        id="copy-src-lone-surrogate",
    ),
    pytest.param(
        'build: "\\ud800"',
        "servers.web.build.context: '\\ud800' cannot be resolved (UnicodeEncodeError)",
        id="build-context-lone-surrogate",
    ),
    pytest.param(
        f"{FROM}\ncopy: [{{src: {'a' * 300}, dst: /x}}]",
        f"servers.web.copy[0].src: '{'a' * 27}...{'a' * 28}' cannot be resolved "
        "(File name too long)",
        id="copy-src-name-too-long",
    ),
    pytest.param(
        f"build: {'a' * 300}",
        f"servers.web.build.context: '{'a' * 27}...{'a' * 28}' cannot be resolved "
        "(File name too long)",
        id="build-context-name-too-long",
    ),
    pytest.param(
        f"{FROM}\ncopy: [{{src: loop, dst: /x}}]",
        "servers.web.copy[0].src: 'loop' cannot be resolved (a symlink loop)",
        id="copy-src-symlink-loop",
    ),
    pytest.param(
        "build: loop",
        "servers.web.build.context: 'loop' cannot be resolved (a symlink loop)",
        id="build-context-symlink-loop",
    ),
    *(
        pytest.param(f"{IMAGE}\ntimeout: {tagged}", f"line 4: {message}", id=f"yaml-tag-{name}")
        for name, tagged, message in [
            ("empty-int", '!!int ""', f"{BAD_TIMEOUT}string index out of range"),
            ("empty-float", '!!float ""', f"{BAD_TIMEOUT}string index out of range"),
            ("sign-only-int", '!!int "-"', f"{BAD_TIMEOUT}string index out of range"),
            (
                "bad-timestamp",
                "!!timestamp soon",
                f"{BAD_TIMEOUT}'NoneType' object has no attribute 'groupdict'",
            ),
            ("bad-bool", "!!bool maybe", f"{BAD_TIMEOUT}'maybe'"),
            ("map-of-a-list", "!!map [1, 2]", "a !!map tag on something that is not a mapping"),
        ]
    ),
    pytest.param(
        f'{IMAGE}\nvolumes: ["./etc:/x:ro"]',
        "servers.web.volumes[0]: './etc' leads outside *",
        id="volumes-bind-through-symlinked-folder",
    ),
    pytest.param(
        f'{IMAGE}\nvolumes: ["../files:/x:ro"]',
        "servers.web.volumes[0]: '../files' leads outside *",
        id="volumes-bind-dotdot",
    ),
    pytest.param(
        f'{IMAGE}\nvolumes: ["/etc:/x:ro"]',
        "servers.web.volumes[0]: '/etc': an absolute host path is never mounted; name a folder "
        "inside the config file's folder, such as ./data",
        id="volumes-absolute-host-path",
    ),
    pytest.param(
        f"{IMAGE}\nvolumes: [{{src: files, path: /x, read_only: false}}]",
        "servers.web.volumes[0].read_only: a bind mount needs read_only: true (the engine is "
        "root, and would write into your project as root)",
        id="volumes-writable-bind",
    ),
    pytest.param(
        f'{IMAGE}\nvolumes: ["v;rm -rf ~:/x"]',
        "servers.web.volumes[0]: 'v;rm -rf ~' is not a volume name (letters, digits, _ . -, "
        "starting with a letter or digit, at most 64 characters)",
        id="volumes-shell-in-a-name",
    ),
    pytest.param(
        f'{IMAGE}\nvolumes: ["v:/\\u0430pp"]',
        "servers.web.volumes[0]: '/\\u0430pp' is not an absolute path of plain characters "
        "(letters, digits, and . _ / @ + = : , -)",
        id="volumes-look-alike-path",
    ),
    pytest.param(
        f"{IMAGE}\nenv_file: passwd",
        "servers.web.env_file: 'passwd' leads outside *",
        id="env-file-symlink-to-etc-passwd",
    ),
    pytest.param(
        f"{IMAGE}\nenv_file: loop",
        "servers.web.env_file: 'loop' cannot be resolved (a symlink loop)",
        id="env-file-symlink-loop",
    ),
    pytest.param(
        f"{IMAGE}\nenv_file: ../outside.txt",
        "servers.web.env_file: '../outside.txt' leads outside *",
        id="env-file-dotdot",
    ),
    pytest.param(
        "<<: {image: busybox, image: evil}",
        "line 3: duplicate key 'image' (first on line 3)",
        id="duplicate-key-inside-merge",
    ),
    pytest.param(
        "<<: {[1]: x}",
        "line 3: keys must be strings, not [1]",
        id="unhashable-key-inside-merge",
    ),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_hostile_value_is_a_one_line_usage_error(
    pytester: pytest.Pytester, hostile_project: Path, body: str, expected: str
) -> None:
    result = run_config(pytester, server_yaml(body))
    assert_one_line_usage_error(result, f"{SOURCE}: {expected}")


DOCUMENT_CASES = [
    pytest.param(
        "servers:\n  web:\n    image: busybox\n  web:\n    image: evil\n",
        "line 4: duplicate key 'web' (first on line 2)",
        id="duplicate-server",
    ),
    pytest.param(
        "servers:\n  1: {image: busybox}\n",
        "line 2: keys must be strings, not 1",
        id="int-server-name",
    ),
    pytest.param(
        "servers: &s\n  web:\n    <<: *s\n",
        "line 3: found unconstructable recursive node",
        id="merge-of-itself",
    ),
    pytest.param("servers: [\n", "line 2: *", id="unclosed-bracket"),
    pytest.param("servers: {web: {image: busybox}\n", "line 2: *", id="unclosed-brace"),
    pytest.param("\ufeffservers:\n\tweb: {}\n", "line 2: *", id="tab-after-bom"),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENT_CASES)
def test_a_hostile_document_is_a_one_line_usage_error(
    pytester: pytest.Pytester, hostile_project: Path, text: str, expected: str
) -> None:
    result = run_config(pytester, text)
    assert_one_line_usage_error(result, f"{SOURCE}: {expected}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("servers: []\n", "servers: must be a mapping, not list", id="servers-list"),
        pytest.param(
            "servers: false\n", "servers: must be a mapping, not bool", id="servers-false"
        ),
        pytest.param("servers: 0\n", "servers: must be a mapping, not int", id="servers-zero"),
        pytest.param(
            "defaults: ''\nservers: {}\n",
            "defaults: must be a mapping, not str",
            id="defaults-empty-string",
        ),
    ],
)
def test_a_falsy_non_mapping_top_level_value_is_refused(
    pytester: pytest.Pytester, hostile_project: Path, text: str, expected: str
) -> None:
    result = run_config(pytester, text)
    assert_one_line_usage_error(result, f"{SOURCE}: {expected}")


@pytest.mark.parametrize(
    ("tag", "where"),
    [
        ("!!python/object/apply:os.system", "top"),
        ("!!python/object/apply:os.system", "servers"),
        ("!!python/object/apply:os.system", "image"),
        ("!!python/object/apply:os.system", "command"),
        ("!!python/object/apply:subprocess.call", "image"),
        ("!!python/object/new:subprocess.Popen", "image"),
        ("!!python/name:os.system", "image"),
        ("!!python/module:os", "image"),
    ],
)
def test_python_tags_are_refused_and_nothing_runs(
    pytester: pytest.Pytester, tmp_path: Path, tag: str, where: str
) -> None:
    pwned = tmp_path / "pwned"
    payload = f'{tag} ["touch {pwned}"]'
    text = {
        "top": f"{payload}\n",
        "servers": f"servers: {payload}\n",
        "image": server_yaml(f"image: {payload}"),
        "command": server_yaml(f"image: busybox\ncommand: [{payload}]"),
    }[where]
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run_config(pytester, text)
    line = {"top": 1, "servers": 1, "image": 3, "command": 4}[where]
    assert_one_line_usage_error(
        result,
        f"{SOURCE}: line {line}: could not determine a constructor for the tag "
        f"'tag:yaml.org,2002:{tag[2:]}'",
    )
    assert not pwned.exists()


CONFTEST = """
import math

def pytest_testserver_servers():
    return {{"servers": {{"web": {body}}}}}
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            '{"image": "busybox", "ports": [10**30]}',
            f"servers.web.ports[0]: {10**30} is not a port (1-65535)",
            id="port-10e30",
        ),
        pytest.param(
            '{"image": "busybox", "timeout": math.nan}',
            "servers.web.timeout: nan is not a positive number of seconds",
            id="timeout-nan",
        ),
        pytest.param(
            '{"image": "busybox", "env": {("A", 1): "x"}}',
            "servers.web.env: keys must be strings, not ('A', 1)",
            id="tuple-key",
        ),
        pytest.param(
            '{"image": "busybox", "ports": [10**5000]}',
            "servers.web.ports[0]: <a number too long to show> is not a port (1-65535)",
            id="port-5000-digits",
        ),
        pytest.param(
            '{"image": "busybox", "timeout": 10**5000}',
            "servers.web.timeout: <a number too long to show> seconds is more than a day",
            id="timeout-5000-digits",
        ),
        pytest.param(
            '{"image": "busybox", "post_startup": {"command": ["true"], "retries": 10**5000}}',
            "servers.web.post_startup.retries: <a number too long to show> is out of range "
            "(1-1000000)",
            id="retries-5000-digits",
        ),
        pytest.param(
            '{"image": "busybox", "wait": {"http": {"port": 80, "status": 10**5000}}}',
            "servers.web.wait.http.status: <a number too long to show> is not an HTTP status "
            "(100-599)",
            id="http-status-5000-digits",
        ),
        pytest.param(
            '{"image": "busybox", "env": {"A": 10**5000}}',
            "servers.web.env.A: must be a finite number of sensible size",
            id="env-value-5000-digits",
        ),
        pytest.param(
            '{"image": "busybox", "env": {10**5000: "x"}}',
            "servers.web.env: keys must be strings, not <a number too long to show>",
            id="env-key-5000-digits",
        ),
    ],
)
def test_hostile_values_from_a_conftest_hook_are_one_line_usage_errors(
    pytester: pytest.Pytester, body: str, expected: str
) -> None:
    pytester.makeconftest(CONFTEST.format(body=body))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest()
    assert_one_line_usage_error(result, f"conftest.py::pytest_testserver_servers: {expected}")


def test_a_hostile_marker_name_fails_the_test_in_one_line_without_the_engine(
    pytester: pytest.Pytester, hostile_project: Path
) -> None:
    (pytester.path / "testservers.yaml").write_text(server_yaml(IMAGE))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.testserver("web; rm -rf /\\n$(reboot)")
        def test_it():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            glob(
                "*testserver: @pytest.mark.testserver on *::test_it names "
                "'web; rm -rf /\\n$(reboot)', which is not declared in testservers.yaml*"
            )
        ]
    )
    assert "cannot reach the Docker engine" not in result.stdout.str()


def test_a_hostile_ini_value_is_a_one_line_usage_error(
    pytester: pytest.Pytester, hostile_project: Path
) -> None:
    pytester.makeini("[pytest]\ntestserver_bind_address = 127.0.0.1; rm -rf /\n")
    result = pytester.runpytest()
    assert_one_line_usage_error(
        result,
        "ini testserver_bind_address: '127.0.0.1; rm -rf /' is not an IP address "
        "(such as 127.0.0.1 or 0.0.0.0)",
    )


def test_a_config_path_with_a_newline_is_a_one_line_usage_error(
    pytester: pytest.Pytester, hostile_project: Path
) -> None:
    result = pytester.runpytest("--testserver-config", "missing\nERROR: forged.yaml")
    assert_one_line_usage_error(
        result, "testserver: config file '/*/missing\\nERROR: forged.yaml' does not exist"
    )


def test_a_missing_config_path_is_named_in_full(
    pytester: pytest.Pytester, hostile_project: Path
) -> None:
    result = pytester.runpytest("--testserver-config", "missing.yaml")
    shown = ascii(str(pytester.path / "missing.yaml"))
    assert len(shown) > 60
    assert_one_line_usage_error(result, f"testserver: config file {shown} does not exist")


# --- resource exhaustion: run in a fresh interpreter, with a deadline ---------------------------

PARSE_SCRIPT = """
import sys
from pathlib import Path
from pytest_testserver.config import load_config
from pytest_testserver.errors import ConfigError
try:
    config = load_config(Path(sys.argv[1]))
except ConfigError as exc:
    print("ConfigError:", exc)
except BaseException as exc:
    print("crash:", type(exc).__name__)
else:
    print("ok:", len(config.servers), "servers")
"""


def parse_in_fresh_interpreter(tmp_path: Path, text: str, seconds: float = 3.0) -> str:
    """What loading ``text`` prints; fails the test if it takes longer than ``seconds``."""
    path = tmp_path / "testservers.yaml"
    path.write_text(text)
    try:
        done = subprocess.run(
            [sys.executable, "-c", PARSE_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading the configuration took more than {seconds}s", pytrace=False)
    return done.stdout.strip()


def chain(n: int) -> Iterator[str]:
    for i in range(n):
        link = f", links: [s{i + 1}]" if i + 1 < n else ""
        yield f"  s{i}: {{image: busybox{link}}}\n"


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ["servers:\n  web:\n    image: busybox\n    hostname:\n"]
    lines.append("      - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
    for i in range(1, 10):
        lines.append(f"      - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n")
    out = parse_in_fresh_interpreter(tmp_path, "".join(lines))
    assert out.startswith("ConfigError: testservers.yaml: servers.web.hostname: must be a string")


def test_a_lattice_of_links_loads_at_once(tmp_path: Path) -> None:
    text = ["servers:\n"]
    for layer in range(40):
        for j in range(2):
            links = f", links: [s{layer + 1}x0, s{layer + 1}x1]" if layer < 39 else ""
            text.append(f"  s{layer}x{j}: {{image: busybox{links}}}\n")
    assert parse_in_fresh_interpreter(tmp_path, "".join(text)) == "ok: 80 servers"


def test_a_long_chain_of_links_loads(tmp_path: Path) -> None:
    text = "servers:\n" + "".join(chain(1000))
    assert parse_in_fresh_interpreter(tmp_path, text) == "ok: 1000 servers"


def test_a_long_cycle_is_refused_in_one_line(tmp_path: Path) -> None:
    text = "servers:\n" + "".join(chain(50)).replace(
        "{image: busybox}", "{image: busybox, links: [s0]}"
    )
    out = parse_in_fresh_interpreter(tmp_path, text)
    assert out.startswith("ConfigError: testservers.yaml: servers.s0.links: links form a cycle: s0")
    assert len(out.splitlines()) == 1
