"""Secrets never reach any output, whatever the verbosity, even when the server prints them.

The secrets here: a ``secret_env`` variable taken from the test run's environment, the values of
``env`` variables whose names look secret (PASSWORD, SECRET, KEY, PASS), and a build argument whose
name looks secret. Each scenario runs a real server that prints them, through pytest at several
verbosities with a junit XML report, and checks that no secret value appears anywhere in stdout,
stderr or the XML, and that ``***`` does (the masked text did reach the output).

The generated test files never contain a secret value themselves: pytest shows test source in
tracebacks, and that is the user's own code, not the plugin's output.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import servers_yaml

pytestmark = pytest.mark.usefixtures("engine")

ENV_SECRET = "envtok-6f1d2c9a"  # secret_env API_TOKEN, from the environment of the test run
PASSWORD = "yamlpw-83b1e07d"  # env DB_PASSWORD, written in testservers.yaml
SESSION = "yamlsecret-2d4f"  # env SESSION_SECRET
SIGNING = "yamlkey-91c3a5"  # env SIGNING_KEY
SMTP = "yamlpass-4e7b"  # env SMTP_PASS
BUILD_SECRET = "buildkey-5c2e9f41"  # build arg SIGNING_KEY
PLAIN = "plain-visible-7a3e"  # env GREETING: not a secret, shown as is
SECRETS = (ENV_SECRET, PASSWORD, SESSION, SIGNING, SMTP, BUILD_SECRET)

ENV = f"""
secret_env: [API_TOKEN]
env:
  DB_PASSWORD: {PASSWORD}
  SESSION_SECRET: {SESSION}
  SIGNING_KEY: {SIGNING}
  SMTP_PASS: {SMTP}
  GREETING: {PLAIN}
"""
PRINT_ENV = "echo token=$API_TOKEN pw=$DB_PASSWORD; env | sort"

VERBOSITIES = [
    pytest.param(["-q"], id="quiet"),
    pytest.param([], id="default"),
    pytest.param(["-v", "-rA"], id="v-rA"),
    pytest.param(["-vv", "-rA", "-l", "--tb=long"], id="vv-rA-showlocals-tblong"),
]


@pytest.fixture(autouse=True)
def secret_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", ENV_SECRET)


def server(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n" + textwrap.dedent(ENV).strip()


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, str]:
    """Run the suite with a junit XML report; everything a user could see, as one text."""
    xml = pytester.path / "report.xml"
    result = pytester.runpytest(*args, f"--junitxml={xml}")
    text = "\n".join([result.stdout.str(), result.stderr.str(), xml.read_text(encoding="utf-8")])
    return result, text


def leaks(text: str) -> list[str]:
    """The lines of ``text`` that carry a secret value."""
    return [line for line in text.splitlines() if any(secret in line for secret in SECRETS)]


def assert_masked(text: str, *expected: str) -> None:
    assert not leaks(text)
    assert "***" in text
    for fragment in expected:
        assert fragment in text, fragment


@pytest.mark.parametrize("args", VERBOSITIES)
def test_a_server_that_prints_its_environment_and_exits(
    pytester: pytest.Pytester, suite: Any, args: list[str]
) -> None:
    """The exited error's log tail shows the environment, secrets masked."""
    suite(
        servers_yaml(
            leaky=server(
                f"""
                image: busybox:stable
                command: ["sh", "-c", "{PRINT_ENV}; exit 1"]
                post_startup: {{command: ["false"], interval: 0.2}}
                """
            )
        ),
        """
        import pytest

        @pytest.mark.testserver("leaky")
        def test_it(testserver):
            pass
        """,
    )
    result, text = run(pytester, *args)
    result.assert_outcomes(errors=1)
    assert_masked(
        text,
        "the container exited with code 1 before it was ready",
        "token=*** pw=***",
        "API_TOKEN=***",
        "DB_PASSWORD=***",
        "SESSION_SECRET=***",
        "SIGNING_KEY=***",
        "SMTP_PASS=***",
        f"GREETING={PLAIN}",
    )


@pytest.mark.parametrize("args", VERBOSITIES)
def test_a_post_startup_check_that_prints_secrets_and_fails(
    pytester: pytest.Pytester, suite: Any, args: list[str]
) -> None:
    """NotReady shows the check's last output and the server's log, secrets masked."""
    suite(
        servers_yaml(
            probe=server(
                """
                image: busybox:stable
                command: ["sh", "-c", "echo serving with $API_TOKEN; exec sleep 600"]
                post_startup:
                  command: ["sh", "-c", "echo probe saw $API_TOKEN $SMTP_PASS $GREETING; exit 3"]
                  retries: 2
                  interval: 0.1
                """
            )
        ),
        """
        def test_it(testservers):
            testservers["probe"]
        """,
    )
    result, text = run(pytester, *args)
    result.assert_outcomes(failed=1)
    assert_masked(
        text,
        "did not succeed after 2 attempts (last exit code 3)",
        "--- its last output ---",
        f"probe saw *** *** {PLAIN}",
        "serving with ***",
    )


FAILING_TEST = """
    from pathlib import Path

    import pytest
    from pytest_testserver.config import load_config

    @pytest.mark.testserver("echo")
    def test_fails(testserver):
        spec = load_config(Path("testservers.yaml")).servers["echo"]
        spec_repr, handle_repr = repr(spec), repr(testserver)
        print("spec:", spec_repr)
        print("handle:", handle_repr)
        assert False, "the test itself failed"
"""


@pytest.mark.parametrize("args", VERBOSITIES)
def test_a_failing_test_gets_the_server_log_masked_in_the_report_and_junit(
    pytester: pytest.Pytester, suite: Any, args: list[str]
) -> None:
    """The report section, its junit property, and the reprs a traceback shows."""
    suite(
        servers_yaml(
            echo=server(
                f"""
                image: busybox:stable
                command: ["sh", "-c", "{PRINT_ENV}; exec httpd -f -p 8080 -h /"]
                ports: [8080]
                """
            )
        ),
        FAILING_TEST,
    )
    result, text = run(pytester, *args)
    result.assert_outcomes(failed=1)
    assert_masked(
        text,
        "testserver echo: last 50 log lines",
        "token=*** pw=***",
        "SIGNING_KEY=***",
        f"GREETING={PLAIN}",
        "spec: ServerSpec(name='echo'",
        "handle: <ServerHandle echo 127.0.0.1",
    )
    xml = (pytester.path / "report.xml").read_text(encoding="utf-8")
    assert 'name="testserver echo: last 50 log lines"' in xml
    assert "token=*** pw=***" in xml


def test_exec_and_logs_mask_secrets_unless_raw(pytester: pytest.Pytester, suite: Any) -> None:
    """exec and logs are masked by default, raw on request; the container runs unprivileged."""
    suite(
        servers_yaml(
            echo=server(
                f"""
                image: busybox:stable
                command: ["sh", "-c", "{PRINT_ENV}; exec httpd -f -p 8080 -h /"]
                ports: [8080]
                """
            )
        ),
        """
        import os

        import pytest

        @pytest.mark.testserver("echo")
        def test_exec(testserver):
            code, masked = testserver.exec(["env"])
            assert code == 0
            for key in ("API_TOKEN", "DB_PASSWORD", "SESSION_SECRET", "SIGNING_KEY", "SMTP_PASS"):
                assert f"{key}=***" in masked.splitlines()
            assert "GREETING=plain-visible-7a3e" in masked.splitlines()
            code, raw = testserver.exec(["env"], raw=True)
            assert code == 0
            assert "***" not in raw
            assert "API_TOKEN=" + os.environ["API_TOKEN"] in raw.splitlines()
            assert "token=*** pw=***" in testserver.logs()
            assert "token=" + os.environ["API_TOKEN"] in testserver.logs(raw=True)
            with pytest.raises(TypeError, match="argument list"):
                testserver.exec("env")  # a string is refused: no shell is involved

        @pytest.mark.testserver("echo")
        def test_the_container_holding_the_secrets_is_isolated_from_the_host(testserver):
            from pytest_testserver.engine import Engine

            api = Engine.connect().api
            info = api.inspect_container(testserver.container_id)
            api.close()
            host = info["HostConfig"]
            assert host["Privileged"] is False
            assert host["NetworkMode"] != "host"
            assert not host["NetworkMode"].startswith("container:")
            assert host.get("PidMode", "") != "host"
            assert host.get("IpcMode", "") != "host"
            assert not host.get("UsernsMode")
            assert not host.get("Binds")
            assert not host.get("Mounts")
            assert info["Mounts"] == []
            assert not host.get("CapAdd")
            assert not host.get("Devices")
            bindings = [b for ports in host["PortBindings"].values() for b in ports]
            assert bindings
            assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}
        """,
    )
    result, text = run(pytester, "-vv", "-rA", "-l")
    result.assert_outcomes(passed=2)
    assert not leaks(text)


@pytest.mark.parametrize("args", VERBOSITIES)
def test_a_failing_build_step_that_echoes_a_secret_build_arg(
    pytester: pytest.Pytester, suite: Any, args: list[str]
) -> None:
    """The build log tail of the ImageError, and the build output shown live with -v, mask a
    build arg whose name looks secret."""
    suite(
        servers_yaml(
            broken=f"""
            build: {{context: broken, args: {{SIGNING_KEY: {BUILD_SECRET}, LABEL: {PLAIN}}}}}
            """
        ),
        """
        def test_it(testservers):
            testservers["broken"]
        """,
        {
            "broken/Dockerfile": """
            FROM busybox:stable
            ARG SIGNING_KEY
            ARG LABEL
            RUN echo "signing $LABEL with $SIGNING_KEY" && exit 3
            """
        },
    )
    result, text = run(pytester, *args)
    result.assert_outcomes(failed=1)
    assert_masked(text, "build failed at Step", f"signing {PLAIN} with ***")


def test_reprs_of_the_configuration_hold_no_secret_values(tmp_path: Path) -> None:
    from pytest_testserver.config import load_config
    from pytest_testserver.handle import ServerHandle

    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM busybox:stable\n")
    (tmp_path / "testservers.yaml").write_text(
        servers_yaml(
            web=server("image: busybox:stable\nports: [8080]"),
            built=f"build: {{context: ctx, args: {{SIGNING_KEY: {BUILD_SECRET}}}}}",
        )
    )
    config = load_config(tmp_path / "testservers.yaml")
    handle = ServerHandle(
        name="web",
        host="127.0.0.1",
        ports={config.servers["web"].ports[0]: 49153},
        container_id="0123456789abcdef",
        ip="172.17.0.2",
        engine=lambda: None,  # type: ignore[arg-type,return-value]
        redact=lambda text: text,
    )
    for text in (repr(config), str(config), repr(config.servers["built"].image), repr(handle)):
        assert not leaks(text), text
    assert "secret_env=('API_TOKEN',)" in repr(config.servers["web"])


def test_a_malformed_secret_looking_env_value_is_not_shown_in_the_usage_error(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "testservers.yaml").write_text(
        servers_yaml(web=f"image: busybox:stable\nenv: {{DB_PASSWORD: [{PASSWORD}]}}")
    )
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.strip()] == [
        "ERROR: testservers.yaml: servers.web.env.DB_PASSWORD: must be a string, a number or a "
        "boolean, not a list"
    ]
    assert not leaks(result.stdout.str() + result.stderr.str())


BREAK_READINESS = """
import os

import pytest

import pytest_testserver.readiness


@pytest.fixture(autouse=True)
def broken_readiness(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError({message})

    monkeypatch.setattr(pytest_testserver.readiness, "wait_until_ready", fail)
"""


def break_readiness(pytester: pytest.Pytester, message: str) -> None:
    """A server whose readiness check raises RuntimeError(<message, a Python expression>)."""
    pytester.makeconftest(BREAK_READINESS.format(message=message))
    pytester.makepyfile(
        test_suite="""
        def test_it(testservers):
            testservers["echo"]
        """
    )
    (pytester.path / "testservers.yaml").write_text(
        servers_yaml(echo=server("image: busybox:stable\ncommand: [sleep, '600']"))
    )


@pytest.mark.parametrize(
    "args", [pytest.param(["--tb=long"], id="tb-long"), pytest.param(["-l"], id="showlocals")]
)
def test_an_unexpected_error_while_starting_does_not_show_secrets(
    pytester: pytest.Pytester, args: list[str]
) -> None:
    """Shown as redacted text: no frame (nor its locals, such as the container's env) is printed."""
    break_readiness(pytester, '"an unexpected failure inside the plugin"')
    result, text = run(pytester, *args)
    result.assert_outcomes(failed=1)
    assert "testserver: unexpected error starting echo:" in text
    assert "RuntimeError: an unexpected failure inside the plugin" in text
    assert not leaks(text)


@pytest.mark.parametrize("args", VERBOSITIES)
def test_an_unexpected_error_quoting_a_secret_shows_it_masked(
    pytester: pytest.Pytester, args: list[str]
) -> None:
    # The generated conftest holds no secret: it reads the token from the environment.
    break_readiness(pytester, '"an unexpected failure quoting " + os.environ["API_TOKEN"]')
    result, text = run(pytester, *args)
    result.assert_outcomes(failed=1)
    assert_masked(text, "RuntimeError: an unexpected failure quoting ***")
