"""The pytest side: options, ini settings, the marker, fixtures, and the hooks that run whether
or not servers are declared.

Once servers are declared, ``pytest_configure`` registers a ``TestserverSession`` (session.py)
that holds the run's servers and state, and whose methods are the hooks of the run. Everything
else lives in plain modules, imported only once servers are declared: a suite without a config
file pays for reading a few ini values, and nobody pays for ``docker`` or ``yaml`` before they
are needed.
"""

from __future__ import annotations

import functools
import os
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import ConfigError, EngineUnavailable, TestserverError
from .session import TestserverSession, XdistHooks, used_key
from .settings import RunSettings
from .sources import (
    BIND_ADDRESS_ENV,
    BIND_LOCAL_ENV,
    DEFAULT_CONFIG,
    SETTINGS_OPTIONS,
    ComposeSource,
    Declaration,
    config_path,
    nothing_declared,
    read_servers,
    read_settings,
)

if TYPE_CHECKING:
    from .config import ServerConfig
    from .handle import ServerHandle

session_key = pytest.StashKey[TestserverSession]()  # only when some server is declared
single_name_key = pytest.StashKey[str]()  # on an item: the one server its `testserver` names
current_key = pytest.StashKey[pytest.Item]()  # the test being set up (its fixtures come next)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("testserver", "test servers in Docker containers")
    group.addoption(
        "--testserver-config",
        dest="testserver_config",
        metavar="PATH",
        help=f"the servers' YAML file (default: {DEFAULT_CONFIG} next to the pytest config)",
    )
    group.addoption(
        "--testserver-compose",
        action="append",
        dest="testserver_compose",
        metavar="PATH",
        help="a compose file whose services are the servers (repeat it: later files override "
        "earlier ones); ini testserver_compose",
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
        "--testserver-pull",
        dest="testserver_pull",
        choices=("missing", "always", "never"),
        default=None,
        help="when images are pulled, for every server (over its pull: key): missing (when "
        "not here), always (once per run: moving tags) or never (offline)",
    )
    group.addoption(
        "--testserver-list",
        action="store_true",
        dest="testserver_list",
        help="print the declared servers (image, ports, links, readiness) and exit; "
        "the engine is not contacted",
    )
    group.addoption(
        "--testserver-doctor",
        action="store_true",
        dest="testserver_doctor",
        help="print the engine, where the tests run, how servers will be reached and why, "
        "start one tiny server and reach it, and exit (what a bug report should contain)",
    )
    parser.addini(
        "testserver_config",
        type="string",
        default=DEFAULT_CONFIG,
        help="path of the servers' YAML file, relative to the pytest config file",
    )
    parser.addini(
        "testserver_compose",
        type="args",
        default=[],
        help="compose files whose services are the servers, relative to the pytest config "
        "file (later files override earlier ones)",
    )
    parser.addini(
        "testserver_compose_profiles",
        type="args",
        default=[],
        help="the compose profiles to enable ($COMPOSE_PROFILES wins)",
    )
    parser.addini(
        "testserver_bind_address",
        type="string",
        default="",
        help="host address ports are published on (default 127.0.0.1, or a remote engine's "
        f"own address; 0.0.0.0 for all interfaces; ${BIND_ADDRESS_ENV} wins)",
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
        "testserver_registry_mirror",
        type="string",
        default="",
        help="pull Docker Hub images from this registry (host[:port], such as "
        "mirror.example:5000; $TESTSERVER_REGISTRY_MIRROR wins)",
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
    config.pluginmanager.register(fixtures(config), "testserver-fixtures")
    settings, servers = read_config(config)
    if servers is None:
        return  # nothing declared: nothing to coordinate, nothing to clean up
    session = config.stash[session_key] = TestserverSession(config, settings, servers)
    config.pluginmanager.register(session, "testserver-session")
    # Registered now, so that it runs among the last cleanups: after pytest's own end-of-run work,
    # which overlaps the removal of the containers that sessionfinish began.
    config.add_cleanup(session.finish_teardown)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(session), "testserver-xdist")
    session.install_sigterm_handler()


def pytest_unconfigure(config: pytest.Config) -> None:
    fixtures = config.pluginmanager.get_plugin("testserver-fixtures")
    if fixtures is not None:
        config.pluginmanager.unregister(fixtures)
    session = config.stash.get(session_key, None)
    if session is None:
        return
    del config.stash[session_key]
    try:
        session.unconfigure()
    finally:
        for name in ("testserver-xdist", "testserver-session"):
            plugin = config.pluginmanager.get_plugin(name)
            if plugin is not None:
                config.pluginmanager.unregister(plugin)


def read_config(config: pytest.Config) -> tuple[RunSettings, ServerConfig | None]:
    """The run's settings and the declared servers (None if none), checked together; bad
    configuration is a usage error."""
    try:
        settings = read_settings(
            ini=config.getini,
            options={name: config.getoption(name) for name in SETTINGS_OPTIONS},
            environ=os.environ,
            project=str(config.rootpath),
        )
        servers = declared_servers(config)
        if servers is not None:
            from .config import check_settings

            check_settings(servers, settings)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    return settings, servers


def yaml_path(config: pytest.Config) -> tuple[Path, bool]:
    """The YAML file to read, and whether the user named it (then it must exist)."""
    return config_path(
        config.getoption("testserver_config"),
        str(config.getini("testserver_config")),
        invocation_dir=config.invocation_params.dir,
        ini_dir=config.inipath.parent if config.inipath else config.rootpath,
    )


def declared_servers(config: pytest.Config) -> ServerConfig | None:
    """The servers of the YAML file and of conftest hooks (sources.py combines them)."""
    path, named = yaml_path(config)
    declarations = [
        Declaration(
            call=functools.partial(impl.function, **{name: config for name in impl.argnames}),
            where=Path(getattr(impl.plugin, "__file__", None) or config.rootpath / "conftest.py"),
            function=impl.function.__name__,
        )
        for impl in config.hook.pytest_testserver_servers.get_hookimpls()
    ]
    workerinput: dict[str, Any] = getattr(config, "workerinput", None) or {}
    state_dir = workerinput.get("testserver_state_dir")  # the controller's choice
    return read_servers(path, named, declarations, state_dir, compose_source(config))


def compose_source(config: pytest.Config) -> ComposeSource:
    """The compose files named by ``--testserver-compose`` or ini ``testserver_compose`` (none:
    testservers.yaml's ``compose:`` may name some), the ini's profiles, the environment."""
    option = config.getoption("testserver_compose")
    ini = [str(p) for p in config.getini("testserver_compose")]
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    paths = [config.invocation_params.dir / p for p in option] if option else []
    paths = paths or [ini_dir / p for p in ini]
    profiles = tuple(str(p) for p in config.getini("testserver_compose_profiles"))
    return ComposeSource(tuple(paths), profiles, os.environ)


def declared(config: pytest.Config) -> ServerConfig:
    """The declared servers; an empty configuration (saying where it looked) when none are."""
    session = config.stash.get(session_key, None)
    return session.servers if session is not None else nothing_declared(yaml_path(config)[0])


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_report_header(config: pytest.Config) -> list[str]:
    # Here, not on the session: pytest orders header lines by when plugins were registered.
    session = config.stash.get(session_key, None)
    if session is None or not session.servers.servers:
        return []
    servers, settings = session.servers, session.settings
    from .locate import locate

    mode = "same numbers as inside (bind-local)" if settings.bind_local else "ephemeral ports"
    where = settings.bind_address
    try:
        location = locate()
        engine = f"engine {location.address} ({location.why})"
        if not settings.bind_address_set and not location.is_local_socket:
            where = "the engine host's address"  # resolved at the first start (reach.py)
    except EngineUnavailable as exc:
        engine = f"engine {exc.address}: {exc.reason}"
    return [
        f"testserver: {len(servers.servers)} server(s) from {servers.source}; "
        f"{engine}; published on {where}, {mode}",
        *registry_lines(settings),
        # compose keys ignored, variables unset: a line each (a warning would fail -W error)
        *(f"testserver: {note}" for note in servers.notes),
    ]


def registry_lines(settings: RunSettings) -> list[str]:
    """The run's pull settings, when they are not the defaults: the header's and the list's."""
    parts = []
    if settings.registry_mirror:
        parts.append(f"Docker Hub images pulled from the mirror {settings.registry_mirror}")
    if settings.pull:
        parts.append(f"pull {settings.pull} for every server (--testserver-pull)")
    return [f"testserver: {'; '.join(parts)}"] if parts else []


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("testserver_reuse_clean"):
        return clean_kept(config)
    if config.getoption("testserver_prune"):
        return prune_images(config)
    if config.getoption("testserver_doctor"):
        from .doctor import report

        settings, _ = read_config(config)
        return report(settings, lambda line: sys.stdout.write(line + "\n"))
    if not config.getoption("testserver_list"):
        return None
    settings, servers = read_config(config)
    from .listing import describe

    sys.stdout.write(describe(servers or declared(config)))
    sys.stdout.write("".join(line + "\n" for line in registry_lines(settings)))
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
        servers = declared_servers(config)
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


@pytest.hookimpl
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Here, not on the session (registered later, so called earlier): not tryfirst, pytest's
    # skipping plugin and the conftests' own setup hooks must first decide (skip, skipif,
    # xfail(run=False)) that the test runs at all. Still before fixtures (the runner's setup is
    # registered before this plugin, so it is called after it): every server the markers name
    # starts now, independent ones concurrently.
    item.config.stash[current_key] = item  # the test whose fixtures come next
    session = item.config.stash.get(session_key, None)
    if session is not None:
        session.current = item
        session.flush_progress()
    names = marker_names(item)
    item.stash[used_key] = set(names)
    if "testserver" in getattr(item, "fixturenames", ()):
        # a misused marker fails before anything starts; the fixture reuses the answer
        item.stash[single_name_key] = single_server_name(item)
    if session is not None:
        session.setup(item, names)
    elif names:
        start_servers(item.config, names, f"@pytest.mark.testserver on {item.nodeid}", item)


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


def start_servers(
    config: pytest.Config, names: list[str], asked_by: str, item: pytest.Item | None = None
) -> dict[str, ServerHandle]:
    session = config.stash.get(session_key, None)
    if session is not None:
        return session.start(names, asked_by, item)
    # Nothing declared: asking for a server is a one-line error that says where we looked.
    from .config import require_server

    message = None
    try:
        for name in names:
            require_server(declared(config), name, asked_by)
    except TestserverError as exc:
        message = str(exc)
    if message is not None:  # outside the except block: no "during handling of" in the report
        pytest.fail(message, pytrace=False)
    return {}


class ServerMap(Mapping[str, "ServerHandle"]):
    """``testservers["web"]``: the server's handle, started on first use."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._servers = declared(config)

    def __getitem__(self, name: str) -> ServerHandle:
        if not isinstance(name, str):
            raise TypeError(f"testservers[...] takes a server name (a string), not {name!r}")
        session = self._config.stash.get(session_key, None)
        item = session.current if session is not None else None
        handle = start_servers(self._config, [name], "testservers[...]", item)[name]
        if item is not None:
            item.stash.setdefault(used_key, set()).add(name)
        return handle

    def for_current_test(self) -> ServerHandle:
        """The handle of the one server named by the marker nearest the test being set up."""
        item = self._config.stash[current_key]
        name = item.stash.get(single_name_key, None)
        return self[name if name is not None else single_server_name(item)]

    def __contains__(self, name: object) -> bool:
        return name in self._servers.servers  # declared; asking does not start it

    def __iter__(self) -> Iterator[str]:
        return iter(self._servers.servers)

    def __len__(self) -> int:
        return len(self._servers.servers)

    def __repr__(self) -> str:
        return f"<testservers {', '.join(self._servers.servers) or '(none declared)'}>"


def fixtures(config: pytest.Config) -> types.ModuleType:
    """The fixtures, as functions that know the run's config, in a plugin object of their own.

    Neither takes ``request`` (nor ``pytestconfig``, which does): pytest makes a new fixture
    definition for ``request`` at every test that asks for it, several times the plugin's own
    cost per test. Closures, not methods: pytest deprecates fixtures that are methods of an
    instance.
    """
    holder = types.ModuleType("pytest_testserver.fixtures")

    @pytest.fixture(scope="session", name="testservers")
    def testservers() -> ServerMap:
        """Every declared server by name; a server starts on first use and lives for the
        session."""
        return ServerMap(config)

    @pytest.fixture(name="testserver")
    def testserver(testservers: ServerMap) -> ServerHandle:
        """The handle of the one server named by the nearest ``@pytest.mark.testserver``
        marker."""
        return testservers.for_current_test()

    holder.testservers = testservers  # type: ignore[attr-defined]
    holder.testserver = testserver  # type: ignore[attr-defined]
    return holder
