"""Real containers on the real engine, driven through pytest like a user would."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from tests.conftest import HTTPD, servers_yaml
from tests.events import container_creations

pytestmark = pytest.mark.usefixtures("engine")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_built_server_is_published_on_loopback_only(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(
            web="""
            build: {context: web, args: {GREETING: hello}}
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            ports: [8080]
            post_startup: {command: ["wget", "-q", "--spider", "http://127.0.0.1:8080/"]}
            """
        ),
        """
        from urllib.request import urlopen
        from tests.conftest import bind_address, expected_host, inspect
        import pytest

        @pytest.mark.testserver("web")
        def test_page(testserver):
            # loopback, unless this engine's job publishes elsewhere (a remote engine)
            assert testserver.host == expected_host()
            assert urlopen(testserver.url(8080)).read() == b"hello\\n"
            info = inspect(testserver.container_id)
            bindings = info["NetworkSettings"]["Ports"]["8080/tcp"]
            assert {b["HostIp"] for b in bindings} == {bind_address()}
            assert testserver.port(8080) == int(bindings[0]["HostPort"])
            labels = info["Config"]["Labels"]
            assert labels["pytest-testserver.server"] == "web"
            assert labels["pytest-testserver.run"]
        """,
        {
            "web/Dockerfile": """
            FROM busybox:stable
            ARG GREETING
            RUN mkdir -p /www && echo "$GREETING" > /www/index.html
            """
        },
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_server_is_shared_by_the_session_and_started_once(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(web=HTTPD),
        """
        import pytest
        seen = set()

        @pytest.mark.testserver("web")
        def test_one(testserver):
            seen.add(testserver.container_id)

        def test_two(testservers):
            seen.add(testservers["web"].container_id)
            assert len(seen) == 1
        """,
    )
    created = container_creations(docker_api, "web")
    pytester.runpytest().assert_outcomes(passed=2)
    assert len(created.stop()) == 1  # one start: the background one at collection's end


def test_unchanged_image_is_not_rebuilt_unless_asked(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(web=HTTPD),
        """
        from tests.conftest import inspect

        def test_image(testservers):
            info = inspect(testservers["web"].container_id)
            print("\\nIMAGE", info["Image"])
        """,
    )

    def image_used(*args: str) -> str:
        result = pytester.runpytest("-s", *args)
        result.assert_outcomes(passed=1)
        return next(line.split()[1] for line in result.outlines if line.startswith("IMAGE"))

    first = image_used()
    assert image_used() == first
    rebuilt = image_used("--testserver-rebuild")
    assert rebuilt != first  # a fresh build (no cache): new layers, a new image id


def test_bind_local_publishes_the_same_number(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    suite(
        servers_yaml(
            web=f"""
            from: busybox:stable
            run: ["mkdir -p /www && echo same > /www/index.html"]
            command: ["httpd", "-f", "-p", "{port}", "-h", "/www"]
            ports: [{port}]
            post_startup: {{command: ["wget", "-q", "--spider", "http://127.0.0.1:{port}/"]}}
            """
        ),
        f"""
        from urllib.request import urlopen
        import pytest

        @pytest.mark.testserver("web")
        def test_same_port(testserver):
            assert testserver.port({port}) == {port}
            assert urlopen(f"http://{{testserver.host}}:{port}/").read() == b"same\\n"
        """,
    )
    monkeypatch.setenv("TESTSERVER_BIND_LOCAL", "yes")
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.publishes_on_this_machine
def test_bind_local_port_taken_names_port_and_server(pytester: pytest.Pytester, suite: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        suite(
            servers_yaml(
                web=f"""
                image: busybox:stable
                command: ["httpd", "-f", "-p", "{port}"]
                ports: [{port}]
                """
            ),
            """
            import pytest

            @pytest.mark.testserver("web")
            def test_web(testserver):
                pass
            """,
        )
        result = pytester.runpytest("--testserver-bind-local")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"testserver: server 'web': port {port}/tcp is already in use on 127.0.0.1:{port}*"]
    )


def test_post_startup_is_retried_until_it_succeeds(pytester: pytest.Pytester, suite: Any) -> None:
    suite(
        servers_yaml(
            slow="""
            image: busybox:stable
            command: ["sh", "-c", "sleep 1; touch /ready; exec sleep 600"]
            post_startup: {command: ["test", "-f", "/ready"], interval: 0.1}
            """,
            never="""
            image: busybox:stable
            command: ["sleep", "600"]
            post_startup:
              command: ["sh", "-c", "echo not yet; exit 7"]
              retries: 3
              interval: 0.05
            """,
        ),
        """
        def test_slow(testservers):
            code, _ = testservers["slow"].exec(["test", "-f", "/ready"])
            assert code == 0

        def test_never(testservers):
            testservers["never"]
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    assert (
        "testserver: server 'never': post_startup ['sh', '-c', 'echo not yet; exit 7'] "
        "did not succeed after 3 attempts (last exit code 7)\n"
        "--- its last output ---\n"
        "not yet\n"
    ) in result.stdout.str()


def test_crashing_server_fails_at_once_with_exit_code_and_log(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(
            crash="""
            image: busybox:stable
            command: ["sh", "-c", "echo MARKER-dying; sleep 0.3; exit 3"]
            post_startup: {command: ["false"], retries: 1000, interval: 0.5}
            """
        ),
        """
        import pytest

        @pytest.mark.testserver("crash")
        def test_crash(testserver):
            pass

        @pytest.mark.testserver("crash")
        def test_crash_again(testserver):
            pass
        """,
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=2)
    # With 1000 retries every 0.5 s, only noticing the exit can end the wait this soon.
    result.stdout.fnmatch_lines(
        [
            "testserver: server 'crash': the container exited with code 3 before it was ready",
            "--- last lines of the log of 'crash' ---",
            "MARKER-dying",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_linked_servers_reach_each_other_by_name(pytester: pytest.Pytester, suite: Any) -> None:
    suite(
        servers_yaml(
            web=HTTPD + "    aliases: [www]\n",
            client="""
            image: busybox:stable
            command: ["sleep", "600"]
            links: [web]
            """,
        ),
        """
        import pytest

        @pytest.mark.testserver("client")
        def test_reach(testserver, testservers):
            for name in ("web", "web.test.local", "www", "www.test.local"):
                code, out = testserver.exec(["wget", "-qO-", f"http://{name}:8080/"])
                assert (code, out) == (0, "ok\\n"), name
            assert testservers["web"].ip
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_lone_server_needs_no_network(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(web=HTTPD),
        """
        from tests.conftest import inspect

        def test_web(testservers):
            info = inspect(testservers["web"].container_id)
            # the engine's default network (Docker's "bridge", Podman's "podman"), not the run's
            assert list(info["NetworkSettings"]["Networks"]) in (["bridge"], ["podman"])
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("assert False, 'the test failed'", id="failure"),
        pytest.param("raise KeyboardInterrupt", id="ctrl-c"),
    ],
)
def test_containers_are_removed_whatever_happened(
    pytester: pytest.Pytester, suite: Any, body: str
) -> None:
    suite(
        servers_yaml(
            web=HTTPD, client="image: busybox:stable\ncommand: [sleep, '600']\nlinks: [web]"
        ),
        f"""
        def test_it(testservers):
            testservers["client"]
            {body}
        """,
    )
    result = pytester.runpytest_inprocess(no_reraise_ctrlc=True)
    assert result.ret != 0
    # the `engine` fixture asserts that no labelled container or network is left


def test_keep_leaves_containers_and_says_how_to_remove_them(
    pytester: pytest.Pytester, suite: Any, docker_api: Any
) -> None:
    suite(
        servers_yaml(web=HTTPD),
        """
        def test_it(testservers):
            testservers["web"]
        """,
    )
    result = pytester.runpytest("--testserver-keep")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "testserver: kept 1 container(s) of run * (--testserver-keep); later runs leave "
            "them alone; remove them with: "
            "docker rm -f $(docker ps -aq --filter label=pytest-testserver.run=*)"
        ]
    )
    kept = docker_api.containers(filters={"label": f"pytest-testserver.pid={os.getpid()}"})
    assert [c["State"] for c in kept] == ["running"]
    docker_api.remove_container(kept[0]["Id"], force=True)


def test_build_failure_names_the_step_and_shows_the_log(
    pytester: pytest.Pytester, suite: Any
) -> None:
    suite(
        servers_yaml(
            broken="""
            from: busybox:stable
            run: ["mkdir -p /www", "echo building-BROKEN; exit 42"]
            """
        ),
        """
        def test_it(testservers):
            testservers["broken"]
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(
        [
            # the step as the user wrote it; then Docker's wording, or Podman's (buildah)
            r"testserver: server 'broken': build failed at run\[1\] \(step 2 of 2\): "
            r"echo building-BROKEN; exit 42: "
            r"(The command .* returned a non-zero code: 42|.*exit status 42)",
            "--- last lines of the log of 'broken' ---",
            ".*building-BROKEN.*",
        ]
    )


def test_secret_env_reaches_the_server_but_never_the_output(
    pytester: pytest.Pytester, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "s3cr3t-value-123")
    suite(
        servers_yaml(
            leaky="""
            image: busybox:stable
            command: ["sh", "-c", "echo token=$API_TOKEN pass=$DB_PASSWORD; exit 1"]
            secret_env: [API_TOKEN]
            env: {DB_PASSWORD: hunter2-pw}
            post_startup: {command: ["true"], interval: 0.5}
            """
        ),
        """
        def test_it(testservers):
            testservers["leaky"]
        """,
    )
    result = pytester.runpytest("-rA", "-vv")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "token=*** pass=***" in output
    assert "s3cr3t-value-123" not in output
    assert "hunter2-pw" not in output


def test_a_removal_that_fails_is_reported_after_the_summary(
    pytester: pytest.Pytester, suite: Any
) -> None:
    # The removal runs while pytest ends the run, so its problems come after the summary line.
    suite(
        servers_yaml(web=HTTPD),
        """
        from pytest_testserver import engine
        from pytest_testserver.errors import EngineError

        real_remove = engine.Engine.remove_container

        def remove_then_complain(self, container):
            real_remove(self, container)  # really removed: nothing may leak from this test
            raise EngineError("the engine had a bad day", 500)

        def test_it(testservers):
            testservers["web"]
            # not monkeypatch: it would be undone before the session's teardown
            engine.Engine.remove_container = remove_then_complain
        """,
    )
    from pytest_testserver import engine

    real_remove = engine.Engine.remove_container
    try:
        result = pytester.runpytest_inprocess()
    finally:
        engine.Engine.remove_container = real_remove  # type: ignore[method-assign]
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*1 passed*",
            "testserver: warning: teardown: could not remove the container of 'web' (*): "
            "the engine had a bad day",
        ]
    )
