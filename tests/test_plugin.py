"""What a user drives through pytest without needing an engine: options, ini, markers, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import HTTPD, servers_yaml

UNREACHABLE = "unix:///nonexistent/docker.sock"


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)


def test_importing_the_plugin_imports_neither_docker_nor_yaml() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pytest_testserver.plugin
        heavy = sorted(m for m in ("docker", "yaml", "requests") if m in sys.modules)
        print(heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_suite_without_config_or_servers_is_untouched(
    pytester: pytest.Pytester, no_engine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a process of its own: this one has imported docker long ago (other tests, the conftest).
    pytester.makeconftest(
        """
        import sys
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_unconfigure(config):  # after the plugin's own end-of-run work
            heavy = sorted(m for m in ("docker", "requests") if m in sys.modules)
            loaded = config.pluginmanager.hasplugin("pytest_testserver.plugin")
            print(f"plugin loaded: {loaded}; heavy at the end: {heavy}")
        """
    )
    pytester.makepyfile(
        """
        import sys

        def test_plain():
            assert "docker" not in sys.modules
        """
    )
    # Only this plugin: another one installed here (pytest-docker-tools, say) may import docker
    # at load, which says nothing of ours.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess("-s", "-p", "pytest_testserver.plugin")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["plugin loaded: True; heavy at the end: []"])
    assert "testserver" not in result.stdout.str().replace("plugins: ", "").split("collected")[1]


def test_unreachable_engine_fails_only_tests_that_need_a_server_with_one_line(
    pytester: pytest.Pytester, suite: object, no_engine: None
) -> None:
    suite(  # type: ignore[operator]
        servers_yaml(web=HTTPD),
        """
        import pytest

        @pytest.mark.testserver("web")
        def test_needs_web(testserver):
            pass

        def test_needs_nothing():
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            f"testserver: server 'web': cannot reach the Docker engine at {UNREACHABLE}: "
            "No such file or directory; start Docker or set DOCKER_HOST"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_unreachable_engine_can_skip_instead(
    pytester: pytest.Pytester, suite: object, no_engine: None
) -> None:
    suite(  # type: ignore[operator]
        servers_yaml(web=HTTPD),
        """
        def test_needs_web(testservers):
            testservers["web"]
        """,
    )
    pytester.makeini("[pytest]\ntestserver_unavailable = skip\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED*testserver: server 'web': cannot reach the Docker engine at *"]
    )


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        pytest.param(
            "servers:\n  web:\n    image: busybox\n    ports: [8080, 70000]\n",
            "testservers.yaml: servers.web.ports[1]: 70000 is not a port (1-65535)",
            id="port",
        ),
        pytest.param(
            "servers:\n  web:\n    image: busybox\n    prots: [8080]\n",
            "testservers.yaml: servers.web.prots: unknown key (did you mean 'ports'?); *",
            id="did-you-mean",
        ),
        pytest.param(
            "servers:\n  web:\n    image: 'busybox; rm -rf /'\n",
            "testservers.yaml: servers.web.image: 'busybox; rm -rf /' is not a valid image "
            "reference*",
            id="image",
        ),
        pytest.param(
            "servers:\n  web:\n    image: busybox\n  web:\n    image: busybox\n",
            "testservers.yaml: line 4: duplicate key 'web' (first on line 2)",
            id="duplicate",
        ),
        pytest.param(
            "servers: [\n",
            "testservers.yaml: line 2: *",
            id="syntax",
        ),
        pytest.param(
            "servers:\n  web:\n    image: busybox\n    links: [web]\n",
            "testservers.yaml: servers.web.links: links form a cycle: web -> web",
            id="cycle",
        ),
    ],
)
def test_bad_config_is_a_one_line_usage_error(
    pytester: pytest.Pytester, yaml: str, message: str
) -> None:
    (pytester.path / "testservers.yaml").write_text(yaml)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert len([line for line in result.stderr.lines if line.strip()]) == 1
    assert "Traceback" not in result.stderr.str()


def test_config_option_is_relative_to_the_invocation_folder(
    pytester: pytest.Pytester,
) -> None:
    sub = pytester.mkdir("conf")
    (sub / "servers.yaml").write_text("servers:\n  web:\n    image: busybox\n    ports: [0]\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--testserver-config", "conf/servers.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: conf/servers.yaml: servers.web.ports[[]0]: 0 is not a port*"]
    )


def test_ini_config_path_is_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    sub = pytester.mkdir("ci")
    (sub / "servers.yaml").write_text("servers:\n  web:\n    image: busybox\n")
    pytester.makeini("[pytest]\ntestserver_config = ci/servers.yaml\n")
    pytester.makepyfile(
        """
        def test_declared(testservers):
            assert list(testservers) == ["web"]
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_named_config_file_must_exist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--testserver-config", "missing.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: testserver: config file '*/missing.yaml' does not exist"])


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        pytest.param(
            "testserver_bind_address = localhost",
            "ERROR: ini testserver_bind_address: 'localhost' is not an IP address*",
            id="bind-address",
        ),
        pytest.param(
            "testserver_unavailable = skipp",
            "ERROR: ini testserver_unavailable: 'skipp' is not one of error, skip "
            "(did you mean 'skip'?)",
            id="unavailable",
        ),
    ],
)
def test_bad_ini_values_are_usage_errors(pytester: pytest.Pytester, ini: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        pytest.param(
            "",
            'testserver: the `testserver` fixture needs a @pytest.mark.testserver("name") marker '
            "naming exactly one server, but on test_suite.py::test_it it is missing; "
            'use the `testservers` fixture for several (testservers["name"])',
            id="none",
        ),
        pytest.param(
            '@pytest.mark.testserver("web", "db")',
            "testserver: the `testserver` fixture needs * but on test_suite.py::test_it it "
            "names 'web', 'db'; use the `testservers` fixture*",
            id="several",
        ),
        pytest.param(
            '@pytest.mark.testserver("wbe")',
            "testserver: @pytest.mark.testserver on test_suite.py::test_it names 'wbe', which is "
            "not declared in testservers.yaml (did you mean 'web'?); declared servers: web, db",
            id="unknown",
        ),
        pytest.param(
            "@pytest.mark.testserver(42)",
            "testserver: @pytest.mark.testserver on test_suite.py::test_it takes server names "
            "(strings), not 42",
            id="not-a-name",
        ),
    ],
)
def test_marker_mistakes_are_clear_errors(
    pytester: pytest.Pytester, suite: object, no_engine: None, marker: str, message: str
) -> None:
    suite(  # type: ignore[operator]
        servers_yaml(web=HTTPD, db=HTTPD),
        f"""
        import pytest

        {marker}
        def test_it(testserver):
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message.replace("[", "[[]")])
    assert "Traceback" not in result.stdout.str()


def test_unknown_server_in_testservers_mapping(
    pytester: pytest.Pytester, suite: object, no_engine: None
) -> None:
    suite(  # type: ignore[operator]
        servers_yaml(web=HTTPD),
        """
        def test_it(testservers):
            testservers["wbe"]
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["testserver: testservers[[]...] names 'wbe', which is not declared in testservers.yaml*"]
    )


def test_options_are_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "test servers in Docker containers:",
            "*--testserver-config=PATH*",
            "*--testserver-rebuild*",
            "*--testserver-keep*",
            "*--testserver-bind-local*",
        ]
    )
    for ini in ("testserver_config", "testserver_bind_address", "testserver_bind_local"):
        result.stdout.fnmatch_lines([f"  {ini} *"])


def test_share_worker_with_bind_local_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "testservers.yaml").write_text(
        "servers:\n  web:\n    image: busybox\n    ports: [8080]\n    share: worker\n"
    )
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--testserver-bind-local")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: testservers.yaml: servers.web.share: worker cannot be combined with "
            "bind-local: every xdist worker would publish the same port numbers; "
            "use share: run (the default)"
        ]
    )


def test_a_marker_naming_a_server_without_any_declared_is_one_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_suite="""
        import pytest

        @pytest.mark.testserver("web")
        def test_it():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*testserver: @pytest.mark.testserver on test_suite.py::test_it names 'web', which is "
            "not declared in testservers.yaml (not found: *testservers.yaml); declared servers: "
            "none"
        ]
    )
    assert "KeyError" not in result.stdout.str()


RUN_MARKS = """
    import pytest

    def test_plain(): pass

    @pytest.mark.skip
    def test_skip(): pass

    @pytest.mark.skipif(True, reason="r")
    def test_skipif_true(): pass

    @pytest.mark.skipif(False, reason="r")
    def test_skipif_false(): pass

    @pytest.mark.skipif("sys.platform != 'no-such-platform'")
    def test_skipif_string(): pass

    @pytest.mark.skipif("feature_off")
    def test_skipif_namespace(): pass

    @pytest.mark.skipif("undefined_name")
    def test_skipif_bad_condition(): pass

    @pytest.mark.xfail(run=False)
    def test_xfail_not_run(): pass

    @pytest.mark.xfail("sys.platform == 'no-such-platform'", run=False)
    def test_xfail_condition_false(): pass

    @pytest.mark.xfail
    def test_xfail_runs(): pass
"""


@pytest.mark.parametrize("runxfail", [False, True])
def test_will_run_reads_skip_and_xfail_marks_as_pytest_does(
    pytester: pytest.Pytester, runxfail: bool
) -> None:
    # will_run is the one use of pytest's private _pytest.skipping (which tests the plan starts
    # servers for): string conditions and pytest_markeval_namespace need pytest's evaluation.
    # A pytest that moves that API makes this fail, rather than quietly planning skipped tests.
    pytester.makeconftest(
        """
        from pytest_testserver.session import _unconditionally_kept_from_running, will_run

        def pytest_markeval_namespace():
            return {"feature_off": True}

        def pytest_collection_modifyitems(items):
            for item in items:
                print(f"will_run {item.name} {will_run(item)}")
                print(f"fallback {item.name} {not _unconditionally_kept_from_running(item)}")
        """
    )
    pytester.makepyfile(RUN_MARKS)
    result = pytester.runpytest("-s", "--collect-only", "-q", *(["--runxfail"] * runxfail))
    seen = dict(line.split()[1:] for line in result.stdout.lines if line.startswith("will_run "))
    assert seen == {
        "test_plain": "True",
        "test_skip": "False",
        "test_skipif_true": "False",
        "test_skipif_false": "True",
        "test_skipif_string": "False",
        "test_skipif_namespace": "False",
        "test_skipif_bad_condition": "False",  # pytest's error, at setup: no server for it
        "test_xfail_not_run": str(runxfail),
        "test_xfail_condition_false": "True",
        "test_xfail_runs": "True",
    }
    # Without the private API: unconditional marks only, any string condition is planned.
    fallback = dict(
        line.split()[1:] for line in result.stdout.lines if line.startswith("fallback ")
    )
    strings = ("test_skipif_string", "test_skipif_namespace", "test_skipif_bad_condition")
    assert fallback == {**seen, **dict.fromkeys(strings, "True")}


def test_a_mark_condition_pytest_cannot_evaluate_is_its_error_at_setup_not_ours(
    pytester: pytest.Pytester, no_engine: None
) -> None:
    (pytester.path / "testservers.yaml").write_text(servers_yaml(web=HTTPD))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.skipif("undefined_name")
        @pytest.mark.testserver("web")
        def test_bad_condition(testserver): pass

        def test_ok(): pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*Error evaluating 'skipif' condition*"])
    assert "INTERNALERROR" not in result.stdout.str()
