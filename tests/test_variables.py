"""``${NAME}`` variables: the rules (variables.py), the config errors, and real servers using them.

Unit tests first (expansion rules, ``$$``, unknown names, cycles, where each error points), then
real containers through pytester: a command taking ``${NAME}`` from ``env`` and ``secret_env``,
checks using them, and a failing ``post_startup`` and ``reset`` whose secret never shows.

The generated test files never contain a secret value: pytest shows test source in tracebacks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_testserver.config import ServerConfig, parse_config, secret_values
from pytest_testserver.errors import ConfigError
from pytest_testserver.listing import describe
from pytest_testserver.redact import Redactor
from pytest_testserver.variables import (
    VariableError,
    expand,
    expand_argv,
    references,
    resolve_env,
)
from tests.conftest import HTTPD, servers_yaml

SOURCE = "testservers.yaml"
TOKEN = "vartok-5b8e1f3a"  # secret_env TOKEN, from the environment of the test run


def parse(body: dict[str, Any]) -> ServerConfig:
    data = {"servers": {"web": {"image": "busybox:stable", **body}}}
    return parse_config(data, base=Path(), source=SOURCE)


def error_of(body: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    data: dict[str, Any] = {"servers": {"web": {"image": "busybox:stable", **body}}}
    if defaults is not None:
        data["defaults"] = defaults
    with pytest.raises(ConfigError) as excinfo:
        parse_config(data, base=Path(), source=SOURCE)
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# --- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        pytest.param("${A}", "one", id="alone"),
        pytest.param("x${A}y${B}z", "xoneytwoz", id="inside"),
        pytest.param("$$", "$", id="dollar-dollar"),
        pytest.param("$${A}", "${A}", id="escaped-reference"),
        pytest.param("$$$${A}", "$${A}", id="two-escapes"),
        pytest.param("$$${A}", "$one", id="escape-then-reference"),
        pytest.param("$A $1 $(id) $", "$A $1 $(id) $", id="bare-dollars-literal"),
        pytest.param("ready$", "ready$", id="regex-anchor"),
        pytest.param("{A} $ {A}", "{A} $ {A}", id="no-dollar-brace"),
        pytest.param("", "", id="empty"),
    ],
)
def test_expansion_rules(text: str, expanded: str) -> None:
    assert expand(text, {"A": "one", "B": "two"}) == expanded


@pytest.mark.parametrize(
    "text", ["${", "${}", "${1A}", "${A:-x}", "${A", "x ${A-B}", "${ A}", "${A.B}"]
)
def test_a_malformed_reference_is_an_error(text: str) -> None:
    with pytest.raises(VariableError, match="is not a variable reference"):
        references(text)


def test_an_inserted_value_is_not_expanded_again() -> None:
    assert expand("${A}", {"A": "${B}$$"}) == "${B}$$"


def test_a_value_stays_one_argument() -> None:
    argv = expand_argv(["redis-cli", "-a", "${P}", "ping"], {"P": "two words; rm -rf /"})
    assert argv == ("redis-cli", "-a", "two words; rm -rf /", "ping")


def test_quote_fits_a_value_to_a_regex() -> None:
    assert expand("^user ${U}$", {"U": "a.b+c"}, re.escape) == r"^user a\.b\+c$"


@given(st.text())
def test_any_literal_can_be_written_with_dollar_dollar(text: str) -> None:
    assert expand(text.replace("$", "$$"), {}) == text


def test_env_values_refer_to_env_and_secret_values() -> None:
    env = {"URL": "redis://:${PW}@${HOST}:6379", "HOST": "cache", "LIT": "$${PW}"}
    assert resolve_env(env, {"PW": "s3cret"}) == {
        "URL": "redis://:s3cret@cache:6379",
        "HOST": "cache",
        "LIT": "${PW}",
        "PW": "s3cret",
    }


def test_a_long_chain_of_env_references_resolves() -> None:
    env = {f"V{i}": f"${{V{i + 1}}}" for i in range(3000)} | {"V3000": "end"}
    assert resolve_env(env, {})["V0"] == "end"


# --- config errors: file, server, key and variable ----------------------------------------------


def test_an_unknown_name_is_an_error_naming_file_server_key_and_variable() -> None:
    assert error_of(
        {
            "command": ["redis-server", "--requirepass", "${REDIS_PASWORD}"],
            "secret_env": ["REDIS_PASSWORD"],
        }
    ) == (
        f"{SOURCE}: servers.web.command[2]: ${{REDIS_PASWORD}} is not set in this server's env "
        "or secret_env (did you mean 'REDIS_PASSWORD'?); write $${REDIS_PASWORD} for a literal "
        "${REDIS_PASWORD}"
    )


def test_the_hosts_environment_is_not_a_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLY_ON_THE_HOST", "x")
    assert "${ONLY_ON_THE_HOST} is not set" in error_of({"command": ["${ONLY_ON_THE_HOST}"]})


@pytest.mark.parametrize(
    ("body", "where"),
    [
        pytest.param({"post_startup": ["x", "${NOPE}"]}, "post_startup.command[1]", id="post"),
        pytest.param(
            {"post_startup": {"command": ["${NOPE}"], "retries": 2}},
            "post_startup.command[0]",
            id="post-mapping",
        ),
        pytest.param({"reset": ["a", "b", "${NOPE}"]}, "reset[2]", id="reset"),
        pytest.param({"entrypoint": ["a", "${NOPE}"]}, "entrypoint[1]", id="entrypoint"),
        pytest.param({"env": {"A": "x${NOPE}"}}, "env.A", id="env"),
        pytest.param({"wait": {"log": "ready ${NOPE}"}}, "wait.log", id="log"),
        pytest.param(
            {"wait": {"http": {"port": 80, "path": "/h?t=${NOPE}"}}}, "wait.http.path", id="path"
        ),
        pytest.param(
            {"wait": {"tcp": [80, {"port": 21, "expect": "${NOPE}"}]}},
            "wait.tcp[1].expect",
            id="expect",
        ),
    ],
)
def test_every_expanding_key_checks_its_names(body: dict[str, Any], where: str) -> None:
    assert error_of(body).startswith(
        f"{SOURCE}: servers.web.{where}: ${{NOPE}} is not set in this server's env or secret_env"
    )


def test_a_malformed_reference_names_the_key() -> None:
    assert error_of({"command": ["x", "${A:-default}"], "env": {"A": "1"}}) == (
        f"{SOURCE}: servers.web.command[1]: '${{A:-default}}' is not a variable reference: "
        "write ${NAME} (letters, digits, underscore), or $$ for a literal $"
    )


def test_a_reference_in_defaults_is_checked_against_each_server() -> None:
    message = error_of({}, defaults={"command": ["run", "${PORT}"]})
    assert message.startswith(f"{SOURCE}: defaults.command[1]: ${{PORT}} is not set")
    spec = parse_config(
        {
            "defaults": {"command": ["run", "${PORT}"]},
            "servers": {"web": {"image": "busybox:stable", "env": {"PORT": 80}}},
        },
        base=Path(),
        source=SOURCE,
    ).servers["web"]
    assert spec.command == ("run", "${PORT}")  # kept as written: expanded at start


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"A": "${A}"}, "env.A: variables refer to each other in a cycle: A -> A"),
        pytest.param(
            {"A": "${B}", "B": "x${C}", "C": "${A}y"},
            "env.A: variables refer to each other in a cycle: A -> B -> C -> A",
        ),
        pytest.param(
            {"OK": "1", "B": "${C}", "C": "${B}"},
            "env.B: variables refer to each other in a cycle: B -> C -> B",
        ),
    ],
)
def test_env_cycles_are_refused(env: dict[str, str], message: str) -> None:
    assert error_of({"env": env}) == f"{SOURCE}: servers.web.{message}"


def test_a_long_chain_and_a_long_cycle_of_env_references_load_at_once() -> None:
    chain = {f"V{i}": f"${{V{i + 1}}}" for i in range(20000)} | {"V20000": "end"}
    assert dict(parse({"env": chain}).servers["web"].env)["V0"] == "${V1}"
    cycle = {f"V{i}": f"${{V{(i + 1) % 20000}}}" for i in range(20000)}
    assert error_of({"env": cycle}) == (
        f"{SOURCE}: servers.web.env.V0: variables refer to each other in a cycle: "
        "V0 -> V1 -> V2 -> V3 -> V4 -> V5 -> V6 -> V7 -> V8 -> V9 -> ... (20000 variables) -> V0"
    )


def test_an_env_cycle_across_defaults_points_at_where_it_was_set() -> None:
    message = error_of({"env": {"B": "${A}"}}, defaults={"env": {"A": "${B}"}})
    assert (
        message
        == f"{SOURCE}: defaults.env.A: variables refer to each other in a cycle: A -> B -> A"
    )


def test_a_log_regex_is_checked_as_it_will_run() -> None:
    assert parse({"env": {"U": "a("}, "wait": {"log": "user ${U}$"}}).servers["web"].checks.log
    assert "is not a regular expression" in error_of({"env": {"U": "1"}, "wait": {"log": "(${U}"}})


def test_listing_shows_variables_as_written() -> None:
    config = parse(
        {
            "command": ["redis-server", "--requirepass", "${REDIS_PASSWORD}"],
            "secret_env": ["REDIS_PASSWORD"],
            "post_startup": ["redis-cli", "-a", "${REDIS_PASSWORD}", "ping"],
            "reset": ["redis-cli", "-a", "${REDIS_PASSWORD}", "FLUSHALL"],
        }
    )
    text = describe(config)
    assert "command: ['redis-server', '--requirepass', '${REDIS_PASSWORD}']" in text
    assert "post_startup ['redis-cli', '-a', '${REDIS_PASSWORD}', 'ping']" in text
    assert "reset:   ['redis-cli', '-a', '${REDIS_PASSWORD}', 'FLUSHALL']" in text


def test_an_expanded_secret_looking_env_value_is_masked() -> None:
    config = parse({"env": {"API_KEY": "key-${TENANT}-x", "TENANT": "acme"}})
    redact = Redactor(secret_values(config, {}))
    assert redact("sent key-acme-x") == "sent ***"


def test_an_env_value_holding_a_secret_is_masked_where_it_holds_it() -> None:
    config = parse({"env": {"DSN": "u:${PW}@db"}, "secret_env": ["PW"]})
    redact = Redactor(secret_values(config, {"PW": TOKEN}))
    assert redact(f"DSN=u:{TOKEN}@db") == "DSN=u:***@db"


# --- real servers -------------------------------------------------------------------------------

# A TCP server that greets each connection with its command's last argument: no shell, the
# plugin puts ${GREETING} and ${TOKEN} into that one argument.
GREETER = """
image: busybox:stable
command: [nc, -ll, -p, "2100", -e, echo, "${GREETING} ${TOKEN}"]
ports: [2100]
env: {GREETING: "220 hello", BANNER: "${GREETING} $${TOKEN}", DSN: "user:${TOKEN}@db"}
secret_env: [TOKEN]
timeout: 30
"""

READ_GREETING = """
import os, socket
import pytest

def greeting(handle):
    with socket.create_connection((handle.host, handle.port(2100)), timeout=5) as sock:
        data = b""
        while not data.endswith(b"\\n"):
            chunk = sock.recv(100)
            if not chunk:
                break
            data += chunk
    return data
"""


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TOKEN", TOKEN)
    return TOKEN


def output_of(result: pytest.RunResult) -> str:
    return result.stdout.str() + result.stderr.str()


@pytest.mark.usefixtures("engine", "token")
def test_a_command_takes_variables_from_env_and_secret_env(
    pytester: pytest.Pytester, suite: Any
) -> None:
    """The command, the expect and post_startup use variables; an env value uses another and
    keeps a literal $${TOKEN}; post_startup checks inside the container what each became."""
    checks = r"""
wait: {tcp: {port: 2100, expect: "${GREETING} "}}
post_startup:
  - sh
  - -c
  - 'test "$0" = "$TOKEN" && test "$BANNER" = "$1" && test "$DSN" = "user:$TOKEN@db"'
  - "${TOKEN}"
  - "220 hello $${TOKEN}"
"""
    suite(
        servers_yaml(greeter=GREETER + checks),
        READ_GREETING
        + """
@pytest.mark.testserver("greeter")
def test_it(testserver):
    assert greeting(testserver) == f"220 hello {os.environ['TOKEN']}\\n".encode()
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert TOKEN not in output_of(result)


@pytest.mark.usefixtures("engine", "token")
def test_a_failing_post_startup_never_shows_the_secret(
    pytester: pytest.Pytester, suite: Any
) -> None:
    check = r"""
post_startup:
  command: [sh, -c, 'echo "got $0 dsn=$DSN"; exit 4', "${TOKEN}"]
  retries: 2
"""
    suite(
        servers_yaml(greeter=GREETER + check),
        """
        import pytest

        @pytest.mark.testserver("greeter")
        def test_it(testserver):
            pass
        """,
    )
    result = pytester.runpytest("-rA", "-vv", "-l")
    result.assert_outcomes(errors=1)
    text = output_of(result)
    assert TOKEN not in text
    assert (
        "testserver: server 'greeter': post_startup ['sh', '-c', 'echo \"got $0 dsn=$DSN\"; "
        "exit 4', '${TOKEN}'] did not succeed after 2 attempts (last exit code 4)"
    ) in text
    assert "--- its last output ---\ngot *** dsn=user:***@db\n" in text


@pytest.mark.usefixtures("engine", "token")
def test_a_failing_reset_never_shows_the_secret(pytester: pytest.Pytester, suite: Any) -> None:
    reset = """
reset: [sh, -c, 'echo "reset with $0"; exit 3', "${TOKEN}"]
"""
    suite(
        servers_yaml(greeter=GREETER + reset),
        """
        import pytest

        @pytest.mark.testserver("greeter")
        def test_first(testserver):
            pass

        @pytest.mark.testserver("greeter")
        def test_second(testserver):
            pass
        """,
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1, errors=1)
    text = output_of(result)
    assert TOKEN not in text
    assert (
        "testserver: server 'greeter': reset ['sh', '-c', 'echo \"reset with $0\"; exit 3', "
        "'${TOKEN}'] exited with code 3"
    ) in text
    assert "--- its last output ---\nreset with ***\n" in text


@pytest.mark.usefixtures("engine")
def test_a_missing_secret_fails_the_start_by_name(pytester: pytest.Pytester, suite: Any) -> None:
    suite(
        servers_yaml(greeter=GREETER),
        """
        import pytest

        @pytest.mark.testserver("greeter")
        def test_it(testserver):
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*testserver: server 'greeter': secret_env TOKEN is not set in the environment*"]
    )


@pytest.mark.usefixtures("token")
def test_testserver_list_shows_the_unexpanded_form(pytester: pytest.Pytester, suite: Any) -> None:
    suite(servers_yaml(greeter=GREETER), "def test_nothing(): pass\n")
    result = pytester.runpytest("--testserver-list")
    assert (
        "command: ['nc', '-ll', '-p', '2100', '-e', 'echo', '${GREETING} ${TOKEN}']"
        in output_of(result)
    )
    assert TOKEN not in output_of(result)


@pytest.mark.usefixtures("engine")
def test_a_log_pattern_matches_a_value_literally(pytester: pytest.Pytester, suite: Any) -> None:
    """Unescaped, "v1.2+$" would need the line to end in a run of 2s: it ends in "+"."""
    server = """
image: busybox:stable
command: [sh, -c, 'echo "READY $TAG"; exec sleep 60']
env: {TAG: "v1.2+"}
timeout: 10
wait: {log: "^READY ${TAG}$"}
"""
    suite(
        servers_yaml(tagged=server),
        """
        import pytest

        @pytest.mark.testserver("tagged")
        def test_it(testserver):
            pass
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize(
    ("page", "outcome"),
    [pytest.param("index.html", "passed", id="found"), pytest.param("missing", "errors")],
)
def test_an_http_path_takes_a_variable(
    pytester: pytest.Pytester, suite: Any, page: str, outcome: str
) -> None:
    server = HTTPD + (
        f"    env: {{PAGE: {page}}}\n    timeout: {60 if outcome == 'passed' else 4}\n"
        "    wait: {http: {port: 8080, path: '/${PAGE}'}}\n"
    )
    suite(
        servers_yaml(web=server),
        """
        import pytest

        @pytest.mark.testserver("web")
        def test_it(testserver):
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(**{outcome: 1})
    if outcome == "errors":  # named as written
        result.stdout.fnmatch_lines(
            ["*wait.http 8080/${PAGE} (expecting 200) was still unmet (status 404)"]
        )


@pytest.mark.usefixtures("engine", "token")
def test_an_entrypoint_takes_variables(pytester: pytest.Pytester, suite: Any) -> None:
    """The entrypoint expands like the command: the secret reaches the server, never the output."""
    greeter = """
image: busybox:stable
entrypoint: [nc, -ll, -p, "${PORT}", -e, echo, "${TOKEN}"]
command: [ignored]
env: {PORT: "2100"}
secret_env: [TOKEN]
ports: [2100]
timeout: 30
"""
    suite(
        servers_yaml(greeter=greeter),
        READ_GREETING
        + """
@pytest.mark.testserver("greeter")
def test_it(testserver):
    assert greeting(testserver).startswith(os.environ['TOKEN'].encode())
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert TOKEN not in output_of(result)
