"""The pytest side: options, ini settings, the marker, fixtures and session hooks.

Everything else lives in plain modules, imported only once servers are declared: a suite
without a config file pays for reading three ini values, and nobody pays for ``docker`` or
``yaml`` before they are needed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Generator, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from . import settings as run_settings
from .errors import ConfigError, EngineUnavailable, Terminated, TestserverError
from .settings import RunSettings

if TYPE_CHECKING:
    from .config import ServerConfig
    from .controller import RunOwner
    from .handle import ServerHandle
    from .lifetimes import ScopeKeys
    from .pool import ServerPool
    from .run import RunContext

DEFAULT_CONFIG = "testservers.yaml"
BIND_LOCAL_ENV = "TESTSERVER_BIND_LOCAL"
BIND_ADDRESS_ENV = "TESTSERVER_BIND_ADDRESS"  # wins over the ini: a CI job's engine decides it

settings_key = pytest.StashKey[RunSettings]()
servers_key: pytest.StashKey[ServerConfig] = pytest.StashKey()  # only when some server is declared
pool_key: pytest.StashKey[ServerPool] = pytest.StashKey()
problems_key = pytest.StashKey[list[str]]()
run_key: pytest.StashKey[RunContext] = pytest.StashKey()
controller_key: pytest.StashKey[RunOwner] = pytest.StashKey()  # on the xdist controller only
sigterm_key = pytest.StashKey[Any]()
terminated_key = pytest.StashKey[list[bool]]()  # [True] once SIGTERM arrived
kept_key = pytest.StashKey[str]()
used_key = pytest.StashKey[set[str]]()  # on an item: the servers it used
current_key = pytest.StashKey[pytest.Item]()  # on the config: the item being run
plan_key = pytest.StashKey["Plan"]()  # on the config: which selected tests need which servers
progress_key = pytest.StashKey["Progress"]()
next_key = pytest.StashKey["pytest.Item | None"]()  # on the config: the test after this one
# How far ahead of the running test warm spares are planned (without xdist: under xdist a worker
# knows only its next test).
LOOKAHEAD = 100
REPORT_LOG_LINES = 50


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testserver", "test servers in Docker containers")
    group.addoption(
        "--testserver-config",
        dest="testserver_config",
        metavar="PATH",
        help=f"the servers' YAML file (default: {DEFAULT_CONFIG} next to the pytest config)",
    )
    group.addoption(
        "--testserver-rebuild",
        action="store_true",
        dest="testserver_rebuild",
        help="rebuild every image this run uses, even when its content is unchanged",
    )
    group.addoption(
        "--testserver-keep",
        action="store_true",
        dest="testserver_keep",
        help="leave containers and the network running after the run, and print how to remove them",
    )
    group.addoption(
        "--testserver-bind-local",
        action="store_true",
        dest="testserver_bind_local",
        help="publish each port at the same number as inside the container "
        f"(also ${BIND_LOCAL_ENV} or ini testserver_bind_local)",
    )
    group.addoption(
        "--testserver-reuse",
        action="store_true",
        dest="testserver_reuse",
        help="keep session servers running after the run and adopt them in the next run of "
        "this project when their definition is unchanged (off in CI; ini testserver_reuse)",
    )
    group.addoption(
        "--testserver-reuse-clean",
        action="store_true",
        dest="testserver_reuse_clean",
        help="remove this project's kept containers (see --testserver-reuse) and exit",
    )
    group.addoption(
        "--testserver-prune",
        action="store_true",
        dest="testserver_prune",
        help="remove this project's built images that the current servers no longer use "
        "(not those a container uses) and exit",
    )
    group.addoption(
        "--testserver-list",
        action="store_true",
        dest="testserver_list",
        help="print the declared servers (image, ports, links, readiness) and exit; "
        "the engine is not contacted",
    )
    parser.addini(
        "testserver_config",
        type="string",
        default=DEFAULT_CONFIG,
        help="path of the servers' YAML file, relative to the pytest config file",
    )
    parser.addini(
        "testserver_bind_address",
        type="string",
        default="127.0.0.1",
        help="host address ports are published on (default 127.0.0.1; 0.0.0.0 for all "
        f"interfaces; ${BIND_ADDRESS_ENV} wins)",
    )
    parser.addini(
        "testserver_bind_local",
        type="bool",
        default=False,
        help="publish each port at the same number as inside the container",
    )
    parser.addini(
        "testserver_spares",
        type="string",
        default="1",
        help="fresh containers started ahead for each module-, class- or function-scoped "
        "server (default 1; 0 starts each when asked)",
    )
    parser.addini(
        "testserver_reuse",
        type="bool",
        default=False,
        help="as --testserver-reuse",
    )
    parser.addini(
        "testserver_reuse_idle",
        type="string",
        default="1800",
        help="seconds a kept container may go unused before it is removed (default 1800)",
    )
    parser.addini(
        "testserver_unavailable",
        type="string",
        default="error",
        help="what a test needing a server does when no Docker engine answers: error or skip",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "testserver(*names): the servers (declared in testservers.yaml) this test uses; they are "
        "started before it runs, and the `testserver` fixture returns the one named here",
    )
    try:
        config.stash[settings_key] = settings = read_settings(config)
        servers = read_servers(config)
        if servers is not None:
            from .config import check_settings

            check_settings(servers, settings)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[problems_key] = []
    # Registered now, so that it runs among the last cleanups: after pytest's own end-of-run work,
    # which overlaps the removal of the containers that sessionfinish began.
    config.add_cleanup(functools.partial(finish_teardown, config))
    if servers is None:
        return  # nothing declared: nothing to coordinate, nothing to clean up
    config.stash[servers_key] = servers
    config.stash[run_key] = run_context(config, settings)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "testserver-xdist")
    install_sigterm_handler(config)


def declared(config: pytest.Config) -> ServerConfig:
    """The declared servers; an empty configuration (saying where it looked) when none are."""
    servers = config.stash.get(servers_key, None)
    if servers is None:
        from .config import ServerConfig

        path, _ = config_path(config)
        servers = ServerConfig(f"{DEFAULT_CONFIG} (not found: {path})")
    return servers


def run_context(config: pytest.Config, settings: RunSettings) -> RunContext:
    """Workers take the run id, owner and folder from the controller; anyone else starts a run."""
    from .run import Owner, RunContext, lease_ttl, new_run_id

    kept = settings.keep
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput and "testserver_run_id" in workerinput:
        owner = Owner.from_labels(workerinput["testserver_owner"]) or Owner.this_process()
        return RunContext(
            run_id=str(workerinput["testserver_run_id"]),
            owner=owner,
            worker=str(workerinput.get("workerid", "gw")),
            kept=kept,
            lease_ttl=0 if kept else int(workerinput["testserver_lease_ttl"]),
            state_dir=workerinput.get("testserver_state_dir"),
        )
    return RunContext(new_run_id(), kept=kept, lease_ttl=0 if kept else lease_ttl())


class XdistHooks:
    """Registered only when pytest-xdist is installed (its hooks are unknown otherwise)."""

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        config: pytest.Config = node.config
        context = config.stash[run_key]
        owner = config.stash.get(controller_key, None)
        if owner is None:
            from .controller import RunOwner

            owner = config.stash[controller_key] = RunOwner(context)
            if owner.warning:
                warn(config, owner.warning)
        node.workerinput["testserver_run_id"] = context.run_id
        node.workerinput["testserver_owner"] = context.owner.labels()
        node.workerinput["testserver_lease_ttl"] = context.lease_ttl
        node.workerinput["testserver_state_dir"] = owner.state_path
        node.workerinput["testserver_progress"] = relay_channel(config, node)

    @pytest.hookimpl
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        owner = node.config.stash.get(controller_key, None)
        if owner is not None:
            output = getattr(node, "workeroutput", None) or {}
            owner.worker_done(bool(output.get("testserver_used")), crashed=error is not None)


def warn(config: pytest.Config, text: str) -> None:
    """A line the user must see, whatever the verbosity, outside any captured output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    line = f"testserver: warning: {text}"
    if reporter is None:
        print(line, file=sys.stderr)
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line, yellow=True)


def install_sigterm_handler(config: pytest.Config) -> None:
    """SIGTERM ends the run like Ctrl-C does: through teardown, so containers are removed.

    The handler raises ``Terminated``, a ``KeyboardInterrupt``: pytest stops the session for it
    wherever it lands (a build, a lock wait, an engine call, a test), and no ``except Exception``
    can swallow it. The exit status becomes 143 at the end of the session. Once teardown has
    begun, a further SIGTERM only marks the status: the removal runs to its end.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone else handles it; do not take it away
    terminated = config.stash[terminated_key] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        first = not terminated
        terminated.append(True)
        if first and not tearing_down(config):
            raise Terminated("testserver: terminated by SIGTERM")

    config.stash[sigterm_key] = signal.signal(signal.SIGTERM, on_sigterm)


def tearing_down(config: pytest.Config) -> bool:
    pool = config.stash.get(pool_key, None)
    return pool is not None and pool.closing


def exit_status(config: pytest.Config, status: int) -> int:
    """143 after SIGTERM, whatever pytest made of the interruption."""
    if config.stash.get(terminated_key, None):
        return 128 + signal.SIGTERM
    return status


def read_settings(config: pytest.Config) -> RunSettings:
    return RunSettings(
        bind_address=run_settings.bind_address(
            os.environ.get(BIND_ADDRESS_ENV) or config.getini("testserver_bind_address"),
            f"${BIND_ADDRESS_ENV}"
            if os.environ.get(BIND_ADDRESS_ENV)
            else "ini testserver_bind_address",
        ),
        bind_local=bool(
            config.getoption("testserver_bind_local")
            or config.getini("testserver_bind_local")
            or run_settings.flag(os.environ.get(BIND_LOCAL_ENV, ""))
        ),
        keep=bool(config.getoption("testserver_keep")),
        rebuild=bool(config.getoption("testserver_rebuild")),
        unavailable=run_settings.unavailable(
            config.getini("testserver_unavailable"), "ini testserver_unavailable"
        ),
        spares=run_settings.spares(config.getini("testserver_spares"), "ini testserver_spares"),
        reuse=bool(config.getoption("testserver_reuse") or config.getini("testserver_reuse")),
        reuse_idle=run_settings.idle_time(
            config.getini("testserver_reuse_idle"), "ini testserver_reuse_idle"
        ),
        project=str(config.rootpath),
    )


def config_path(config: pytest.Config) -> tuple[Path, bool]:
    """The YAML file to read, and whether the user named it (then it must exist)."""
    option = config.getoption("testserver_config")
    if option:
        return config.invocation_params.dir / option, True
    ini = str(config.getini("testserver_config"))
    base = config.inipath.parent if config.inipath else config.rootpath
    return base / ini, ini != DEFAULT_CONFIG


def read_servers(config: pytest.Config) -> ServerConfig | None:
    """The servers of the YAML file and of conftest hooks, validated and combined; None if none."""
    sources: list[tuple[object, Path, str]] = []
    path, named = config_path(config)
    has_file = path.is_file()
    if named and not has_file:
        raise missing_config(path)
    hooks = config.hook.pytest_testserver_servers.get_hookimpls()
    if not hooks and not has_file:
        return None
    from .config import combine, display_path, parse_config

    document = None
    if has_file:
        from .configcache import YamlDocument

        workerinput: dict[str, Any] = getattr(config, "workerinput", None) or {}
        folder = workerinput.get("testserver_state_dir")  # the controller's choice
        document = YamlDocument.read(path, display_path(path), folder)
        sources.append((document.data, path.parent, document.shown))
    for impl in hooks:
        result = impl.function(**{name: config for name in impl.argnames})
        if result is not None:
            where = Path(getattr(impl.plugin, "__file__", None) or config.rootpath / "conftest.py")
            sources.append(
                (result, where.parent, f"{display_path(where)}::{impl.function.__name__}")
            )
    if not sources:
        return None
    names = [declared_names(data) for data, _, _ in sources]
    configs = [
        parse_config(
            data,
            base=base,
            source=source,
            declared_elsewhere=tuple(n for j, other in enumerate(names) if j != i for n in other),
        )
        for i, (data, base, source) in enumerate(sources)
    ]
    combined = combine(configs)
    if document is not None:
        document.remember()  # it validated: the next run with the same bytes skips PyYAML
    return combined


def missing_config(path: Path) -> ConfigError:
    from .validate import show  # quoted and escaped: a path is one line, whatever it holds

    return ConfigError(f"testserver: config file {show(str(path), limit=300)} does not exist")


def declared_names(data: object) -> list[str]:
    servers = data.get("servers") if isinstance(data, dict) else None
    return [name for name in servers if isinstance(name, str)] if isinstance(servers, dict) else []


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def get_pool(config: pytest.Config) -> ServerPool:
    pool = config.stash.get(pool_key, None)
    if pool is None:
        from .pool import ServerPool

        context = config.stash[run_key]
        if not context.worker:
            config.stash[progress_key] = Progress(config)
        pool = ServerPool(
            declared(config),
            config.stash[settings_key],
            context,
            shared=context.worker is not None,
            on_event=config.stash[progress_key] if not context.worker else worker_warnings(config),
        )
        config.stash[pool_key] = pool
    return pool


def relay_channel(config: pytest.Config, node: Any) -> Any:
    """A channel of the worker's own execnet gateway, for its progress lines.

    xdist sends a worker's reports only when a test is done and its other output at the end,
    so a build under xdist would be silent; execnet can send a channel inside ``workerinput``,
    and the worker writes (kind, text) pairs on it as they come. The callback runs in execnet's
    receiver thread, and the controller runs no test whose capture a line could break, so it
    writes at once.
    """
    progress = config.stash.get(progress_key, None)
    if progress is None:
        progress = config.stash[progress_key] = Progress(config)
    worker = str(node.workerinput.get("workerid", node.gateway.id))
    channel = node.gateway.newchannel()

    def on_message(message: object) -> None:
        if isinstance(message, (tuple, list)) and len(message) == 2:
            kind, text = message
            progress.relay(worker, str(kind), str(text))

    channel.setcallback(on_message, endmarker=None)
    return channel


def worker_warnings(config: pytest.Config) -> Any:
    """A worker's terminal is not shown: its warnings go to its stderr, which xdist relays;
    its progress lines go to the controller on the channel ``relay_channel`` made."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", None) or {}
    channel = workerinput.get("testserver_progress")
    shown = shown_kinds(config.get_verbosity())

    def on_event(kind: str, text: str) -> None:
        if kind == "warning":
            print(f"testserver: warning: {text}", file=sys.stderr)
        elif channel is not None and kind in shown:
            with contextlib.suppress(Exception):  # the controller has gone: nobody to tell
                channel.send((kind, text))

    return on_event


def shown_kinds(verbosity: int) -> tuple[str, ...]:
    """-q: warnings only; default: engine, build steps, progress and heartbeats (pulls, build
    contexts, long steps) and ready lines; -v: the build output and every fresh container too."""
    if verbosity < 0:
        return ("warning",)
    default = ("warning", "engine", "build-step", "progress", "heartbeat", "ready")
    return (*default, "build-output", "instance") if verbosity > 0 else default


class Progress:
    """Engine, build and ready lines on the terminal, outside of any test's captured output.

    A line from a server started in the background while a test runs waits for the main
    thread (the end of that test, or a test waiting for a server): turning capture off from
    another thread would let the running test's output through.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str]] = []
        self._waiting = 0  # the main thread waits for servers: any thread may write
        self._shown = shown_kinds(config.get_verbosity())

    def __call__(self, kind: str, text: str) -> None:
        if kind not in self._shown:
            return
        with self._lock:
            if not self._waiting and threading.current_thread() is not threading.main_thread():
                if kind == "heartbeat":
                    # Kept while a test runs: only the newest of a server's heartbeats is news.
                    server = text.partition(": ")[0]
                    self._pending = [
                        (k, t)
                        for k, t in self._pending
                        if k != "heartbeat" or t.partition(": ")[0] != server
                    ]
                self._pending.append((kind, text))
                return
        self._write(kind, text)

    def relay(self, worker: str, kind: str, text: str) -> None:
        """A line from an xdist worker (already filtered by the worker's verbosity, the same
        as ours), written now and marked with the worker's id."""
        if kind in self._shown:
            self._write(kind, text, prefix=f"[{worker}] ")

    def _write(self, kind: str, text: str, prefix: str = "") -> None:
        if kind == "warning":
            warn(self._config, text)
            return
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capture = self._config.pluginmanager.get_plugin("capturemanager")
        with self._lock, capture.global_and_fixture_disabled() if capture else nullcontext():
            reporter.ensure_newline()
            writer = self._config.get_terminal_writer()
            if writer.width_of_current_line:  # xdist's progress dots do not end their line
                writer.line()
            reporter.write_line(f"{prefix}testserver: {text}")

    def flush(self) -> None:
        """Write the lines kept from background starts (from the main thread)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for kind, text in pending:
            self._write(kind, text)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """The main thread waits for servers: lines are written as they come."""
        self.flush()
        with self._lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1


def waiting_for_servers(config: pytest.Config) -> contextlib.AbstractContextManager[None]:
    progress = config.stash.get(progress_key, None)
    return progress.waiting() if progress is not None else nullcontext()


def flush_progress(config: pytest.Config) -> None:
    progress = config.stash.get(progress_key, None)
    if progress is not None:
        progress.flush()


def pytest_report_header(config: pytest.Config) -> list[str]:
    servers = config.stash.get(servers_key, None)
    if servers is None or not servers.servers:
        return []
    settings = config.stash[settings_key]
    from .locate import locate

    mode = "same numbers as inside (bind-local)" if settings.bind_local else "ephemeral ports"
    try:
        location = locate()
        engine = f"engine {location.address} ({location.why})"
    except EngineUnavailable as exc:
        engine = f"engine {exc.address}: {exc.reason}"
    return [
        f"testserver: {len(servers.servers)} server(s) from {servers.source}; "
        f"{engine}; published on {settings.bind_address}, {mode}"
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("testserver_reuse_clean"):
        return clean_kept(config)
    if config.getoption("testserver_prune"):
        return prune_images(config)
    if not config.getoption("testserver_list"):
        return None
    try:
        settings = read_settings(config)
        servers = read_servers(config)
        if servers is not None:
            from .config import check_settings

            check_settings(servers, settings)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    from .listing import describe

    sys.stdout.write(describe(servers or declared(config)))
    return 0


def clean_kept(config: pytest.Config) -> int:
    """--testserver-reuse-clean: this project's kept containers go; nothing else is touched."""
    from .errors import UnsafeFolder
    from .reuse import clean

    try:
        sys.stdout.write(clean(str(config.rootpath)) + "\n")
    except (TestserverError, OSError, UnsafeFolder) as exc:
        sys.stderr.write(f"testserver: --testserver-reuse-clean: {exc}\n")
        return 1
    return 0


def prune_images(config: pytest.Config) -> int:
    """--testserver-prune: this project's images the current servers do not use go."""
    from .prune import prune

    try:
        servers = read_servers(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None

    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # each image as it goes: a removal can take a while

    try:
        prune(str(config.rootpath), servers, emit)
    except (TestserverError, OSError) as exc:
        sys.stderr.write(f"testserver: --testserver-prune: {exc}\n")
        return 1
    return 0


def redacted(config: pytest.Config, text: str) -> str:
    """Secrets masked, once servers are declared (without any, there are none to mask)."""
    return get_pool(config).redact(text) if run_key in config.stash else text


def fail(config: pytest.Config, exc: TestserverError) -> NoReturn:
    message = redacted(config, str(exc))
    if isinstance(exc, EngineUnavailable) and config.stash[settings_key].unavailable == "skip":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def start_servers(
    config: pytest.Config, names: list[str], asked_by: str, item: pytest.Item | None = None
) -> dict[str, ServerHandle]:
    from .config import require_server

    try:
        for name in names:
            require_server(declared(config), name, asked_by)
        pool = get_pool(config)
        test, keys = (item.nodeid, scope_keys(item)) if item is not None else (None, None)
        with waiting_for_servers(config):
            return pool.get_many(names, test=test, keys=keys)
    except (KeyboardInterrupt, pytest.exit.Exception):
        raise  # Ctrl-C, SIGTERM, pytest.exit(): the run ends, through teardown
    except TestserverError as exc:
        error: TestserverError | str = exc
    except Exception as exc:
        # A bug of ours or the SDK's: show the traceback, but as redacted text — pytest's own
        # rendering would print the frames' locals with --showlocals, secrets included.
        import traceback

        text = "".join(traceback.format_exception(exc))
        error = f"testserver: unexpected error starting {', '.join(names)}:\n{text}"
    # Outside the except blocks: no "during handling of the above exception" in the report.
    if isinstance(error, TestserverError):
        fail(config, error)
    pytest.fail(redacted(config, error), pytrace=False)


def marker_names(item: pytest.Item) -> list[str]:
    names: list[str] = []
    for marker in item.iter_markers("testserver"):
        for arg in marker.args:
            if not isinstance(arg, str):
                pytest.fail(
                    f"testserver: @pytest.mark.testserver on {item.nodeid} takes server names "
                    f"(strings), not {arg!r}",
                    pytrace=False,
                )
            names.append(arg)
    return list(dict.fromkeys(names))


class ServerMap(Mapping[str, "ServerHandle"]):
    """``testservers["web"]``: the server's handle, started on first use."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._servers = declared(config)

    def __getitem__(self, name: str) -> ServerHandle:
        if not isinstance(name, str):
            raise TypeError(f"testservers[...] takes a server name (a string), not {name!r}")
        item = self._config.stash.get(current_key, None)
        handle = start_servers(self._config, [name], "testservers[...]", item)[name]
        if item is not None:
            item.stash.setdefault(used_key, set()).add(name)
        return handle

    def __contains__(self, name: object) -> bool:
        return name in self._servers.servers  # declared; asking does not start it

    def __iter__(self) -> Iterator[str]:
        return iter(self._servers.servers)

    def __len__(self) -> int:
        return len(self._servers.servers)

    def __repr__(self) -> str:
        return f"<testservers {', '.join(self._servers.servers) or '(none declared)'}>"


def single_server_name(item: pytest.Item) -> str:
    """The one server the nearest marker names, for the ``testserver`` fixture."""
    marker = item.get_closest_marker("testserver")
    names = list(marker.args) if marker else []
    if len(names) != 1:
        found = f"names {', '.join(map(repr, names))}" if names else "is missing"
        pytest.fail(
            f'testserver: the `testserver` fixture needs a @pytest.mark.testserver("name") marker '
            f"naming exactly one server, but on {item.nodeid} it {found}; "
            'use the `testservers` fixture for several (testservers["name"])',
            pytrace=False,
        )
    return str(names[0])


@pytest.hookimpl
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Not tryfirst: pytest's skipping plugin must first decide (skip, skipif, xfail(run=False))
    # that the test runs at all. Still before fixtures (the runner's setup is registered before
    # this plugin, so it is called after it): every server the markers name starts now,
    # independent ones concurrently.
    config = item.config
    config.stash[current_key] = item
    flush_progress(config)
    names = marker_names(item)
    item.stash[used_key] = set(names)
    if "testserver" in getattr(item, "fixturenames", ()):
        single_server_name(item)  # a misused marker fails before anything starts
    if names:
        start_servers(config, names, f"@pytest.mark.testserver on {item.nodeid}", item)
    prepare_spares(config, item)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    # Outermost: a scoped server's container goes once every fixture using it is torn down.
    try:
        return (yield)
    finally:
        pool = item.config.stash.get(pool_key, None)
        if pool is not None and pool.scoped:
            pool.release_scopes(scope_keys(nextitem) if nextitem is not None else None)
        flush_progress(item.config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    item.config.stash[next_key] = nextitem  # under xdist, the only test known to come next


def scope_keys(item: pytest.Item) -> ScopeKeys:
    """The test's key for each scope, as pytest's fixtures scope them: outside a class, a
    class-scoped server is the test's own."""
    module = item.getparent(pytest.Module)
    cls = item.getparent(pytest.Class)
    return {
        "function": item.nodeid,
        "class": (cls or item).nodeid,
        "module": (module or item).nodeid,
    }


@dataclass
class Plan:
    """The selected tests that will run, in order, and the servers their markers name."""

    items: list[pytest.Item]
    position: dict[str, int]
    servers: dict[str, list[str]]  # node id -> server names
    worker: bool  # an xdist worker runs an unknown part of the items, in an unknown order


def runs(item: pytest.Item) -> bool:
    """Whether a skip or xfail(run=False) marker keeps the test from running (pytest's own
    evaluation; a condition that cannot be evaluated is pytest's error, at setup)."""
    try:
        from _pytest.skipping import evaluate_skip_marks, evaluate_xfail_marks

        if evaluate_skip_marks(item) is not None:
            return False
        xfail = evaluate_xfail_marks(item)
        return xfail is None or xfail.run or bool(item.config.option.runxfail)
    except Exception:
        return False


def planned_servers(item: pytest.Item) -> list[str]:
    names = (a for m in item.iter_markers("testserver") for a in m.args if isinstance(a, str))
    return list(dict.fromkeys(names))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Start, in the background, every session server a selected test that runs needs, and
    a first spare of each scoped one: starting overlaps collection's end and the other tests."""
    config = session.config
    if servers_key not in config.stash or config.option.collectonly or not session.items:
        return
    items = [item for item in session.items if runs(item)]
    plan = Plan(
        items=items,
        position={item.nodeid: i for i, item in enumerate(items)},
        servers={item.nodeid: names for item in items if (names := planned_servers(item))},
        worker=config.stash[run_key].worker is not None,
    )
    config.stash[plan_key] = plan
    servers = declared(config).servers
    needed = {name for names in plan.servers.values() for name in names if name in servers}
    if not needed:
        return
    pool = get_pool(config)
    pool.prestart(sorted(needed))
    if not plan.worker:
        prepare_spares(config, None)


def prepare_spares(config: pytest.Config, item: pytest.Item | None) -> None:
    """Spares for the tests after ``item`` (from the first test when None)."""
    plan = config.stash.get(plan_key, None)
    pool = config.stash.get(pool_key, None)
    if plan is None or pool is None or not pool.scoped:
        return
    if item is None:
        upcoming = plan.items[:LOOKAHEAD]
    elif plan.worker:
        upcoming = [nextitem] if (nextitem := config.stash.get(next_key, None)) else []
    else:
        start = plan.position.get(item.nodeid, -1) + 1
        upcoming = plan.items[start : start + LOOKAHEAD] if start else []
    for name, scope in pool.scoped.items():
        keys = [
            scope_keys(test)[scope]
            for test in upcoming
            if name in plan.servers.get(test.nodeid, ())
        ]
        if keys:
            pool.prepare_spares(name, keys)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    used = item.stash.get(used_key, set())
    pool = item.config.stash.get(pool_key, None)
    if report.failed and used and pool is not None:
        started = pool.started()
        for name in sorted(used & started.keys()):
            try:
                tail = started[name].logs(tail=REPORT_LOG_LINES)
            except Exception as exc:  # a report must never fail because a log is unavailable
                tail = f"(log unavailable: {exc})"
            title = f"testserver {name}: last {REPORT_LOG_LINES} log lines"
            report.sections.append((title, tail or "(the server printed nothing)"))
            item.user_properties.append((title, tail))  # junitxml writes these as properties
    return report


@pytest.fixture(scope="session")
def testservers(pytestconfig: pytest.Config) -> ServerMap:
    """Every declared server by name; a server starts on first use and lives for the session."""
    return ServerMap(pytestconfig)


@pytest.fixture
def testserver(request: pytest.FixtureRequest, testservers: ServerMap) -> ServerHandle:
    """The handle of the one server named by the nearest ``@pytest.mark.testserver`` marker."""
    assert isinstance(request.node, pytest.Item)
    return testservers[single_server_name(request.node)]


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    # trylast makes this the innermost wrapper: the code after yield runs right after session
    # fixtures are torn down, before the terminal summary (which reports what went wrong).
    config = session.config
    owner = config.stash.get(controller_key, None)
    finished = (
        pytest.ExitCode.OK,
        pytest.ExitCode.TESTS_FAILED,
        pytest.ExitCode.NO_TESTS_COLLECTED,
    )
    if owner is not None and exitstatus not in finished:
        # Ctrl-C or SIGTERM on the xdist controller: remove the servers now, not after xdist has
        # waited for its workers to stop; finish() sweeps once more when they have.
        record(config, owner.sweep(force=True))
    try:
        yield
    finally:
        if run_key in config.stash and config.stash[run_key].worker:
            # A worker finishes before the controller sweeps the run: no removal in flight then.
            pool = config.stash.get(pool_key, None)
            workeroutput: dict[str, Any] | None = getattr(config, "workeroutput", None)
            if workeroutput is not None:
                workeroutput["testserver_used"] = pool is not None and pool.used_engine
            close_pool(config)
        else:
            begin_teardown(config)
        owner = config.stash.get(controller_key, None)
        if owner is not None:  # the xdist controller: every worker is done (or dead) by now
            del config.stash[controller_key]
            record(config, owner.finish())
        session.exitstatus = exit_status(config, session.exitstatus)


def record(config: pytest.Config, outcome: tuple[list[str], str | None]) -> None:
    """Teardown problems and a --testserver-keep note, for the terminal summary."""
    problems, kept = outcome
    config.stash[problems_key].extend(problems)
    if kept:
        config.stash[kept_key] = kept


def close_pool(config: pytest.Config) -> None:
    pool = config.stash.get(pool_key, None)
    if pool is not None:
        config.stash[problems_key].extend(pool.redact(p) for p in pool.close())


def begin_teardown(config: pytest.Config) -> None:
    pool = config.stash.get(pool_key, None)
    if pool is not None:
        pool.begin_close()


def finish_teardown(config: pytest.Config) -> None:
    """Wait for the removal; what went wrong is told after the summary it missed."""
    pool = config.stash.get(pool_key, None)
    problems = [pool.redact(p) for p in pool.finish_close()] if pool is not None else []
    if not problems:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for problem in problems:
        line = f"testserver: warning: teardown: {problem}"
        if reporter is not None:
            reporter.write_line(line, yellow=True)
        else:
            print(line, file=sys.stderr)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    pool = config.stash.get(pool_key, None)
    problems = config.stash.get(problems_key, [])
    message = pool.keep_message() if pool is not None else None
    message = message or config.stash.get(kept_key, None)
    if not problems and not message:
        return
    terminalreporter.section("testserver")
    for problem in problems:
        terminalreporter.write_line(f"testserver: warning: teardown: {problem}", yellow=True)
    if message:
        terminalreporter.write_line(message)


def pytest_unconfigure(config: pytest.Config) -> None:
    # A safety net for runs that never reached sessionfinish (an error during startup); the
    # cleanup registered in pytest_configure waits for the removal.
    begin_teardown(config)
    owner = config.stash.get(controller_key, None)
    if owner is not None:
        record(config, owner.finish())
    previous = config.stash.get(sigterm_key, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
