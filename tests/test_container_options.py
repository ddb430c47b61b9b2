"""Container options on the real engine, each observed from inside the container it made: the
user and working folder, capabilities, tmpfs and shm mounts, ulimits, sysctls, a replaced or
cleared entrypoint, and a server's own health check with ``wait: {healthcheck: true}``.

Every run goes through pytest (pytester), as a user drives it; the ``engine`` fixture checks
that nothing labelled is left behind.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import servers_yaml

SLEEPER = """
    image: busybox:stable
    command: ["sleep", "600"]
    wait: false
    timeout: 60
    """

# bits of /proc/self/status CapEff (linux/capability.h)
CAP_NET_BIND_SERVICE = 10
CAP_SYS_NICE = 23


def test_user_and_working_dir_are_what_the_server_runs_with(
    pytester: pytest.Pytester, suite: Any, engine: Any
) -> None:
    suite(
        servers_yaml(
            ids=SLEEPER + 'user: "1234:5678"\n    working_dir: /srv/data\n',
            # busybox:stable has no /etc/passwd: this image brings the names
            named="""
            from: busybox:stable
            run: ["echo 'www:x:33:44::/:/bin/false' > /etc/passwd && echo 'web:x:44:' > /etc/group"]
            command: ["sleep", "600"]
            user: www:web
            wait: false
            timeout: 60
            """,
        ),
        """
import pytest

@pytest.mark.testserver("ids", "named")
def test_inside(testservers):
    ids = testservers["ids"]
    assert ids.exec(["id", "-u"]) == (0, "1234\\n")
    assert ids.exec(["id", "-g"]) == (0, "5678\\n")
    assert ids.exec(["pwd"]) == (0, "/srv/data\\n")
    # PID 1 runs so too, not only what is exec'd
    code, status = ids.exec(["cat", "/proc/1/status"])
    assert code == 0
    assert "Uid:\\t1234\\t1234\\t1234\\t1234" in status, status
    named = testservers["named"]
    assert named.exec(["id", "-u"]) == (0, "33\\n")
    assert named.exec(["id", "-gn"]) == (0, "web\\n")
""",
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_capabilities_mounts_limits_and_sysctls_are_seen_inside(
    pytester: pytest.Pytester, suite: Any, engine: Any
) -> None:
    wanted = (1 << CAP_NET_BIND_SERVICE) | (1 << CAP_SYS_NICE)
    suite(
        servers_yaml(
            box=SLEEPER
            + """cap_drop: [ALL]
    cap_add: [net_bind_service, CAP_SYS_NICE]
    tmpfs: [/run/scratch, {path: /cache, size: 2m, mode: "1770"}]
    shm_size: 8m
    ulimits: {nofile: {soft: 100, hard: 200}, core: 0}
    sysctls:
      net.ipv4.ip_local_port_range: "20000 30000"
      net.core.somaxconn: 511
      kernel.shmmax: 1234567
""",
            plain=SLEEPER,
        ),
        f"""
import pytest

def mount(server, path):
    code, mounts = server.exec(["cat", "/proc/mounts"])
    assert code == 0
    found = [line.split() for line in mounts.splitlines() if line.split()[1] == path]
    assert len(found) == 1, mounts
    return found[0]

def cap_eff(server):
    code, status = server.exec(["cat", "/proc/1/status"])
    line = next(l for l in status.splitlines() if l.startswith("CapEff:"))
    return int(line.split()[1], 16)

@pytest.mark.testserver("box", "plain")
def test_inside(testservers):
    box, plain = testservers["box"], testservers["plain"]
    assert cap_eff(box) == {wanted}
    assert cap_eff(plain) & {wanted} == 1 << {CAP_NET_BIND_SERVICE}  # the default set: no nice

    kind, options = mount(box, "/run/scratch")[2], mount(box, "/run/scratch")[3].split(",")
    assert kind == "tmpfs"
    assert {{"noexec", "nosuid", "nodev"}} <= set(options), options
    cache = mount(box, "/cache")[3].split(",")
    assert "size=2048k" in cache and "mode=1770" in cache, cache
    assert box.exec(["stat", "-c", "%a", "/cache"]) == (0, "1770\\n")
    assert "size=8192k" in mount(box, "/dev/shm")[3].split(",")
    assert "size=8192k" not in mount(plain, "/dev/shm")[3].split(",")

    assert box.exec(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"]) == (0, "100\\n200\\n0\\n")

    def sysctl(server, name):
        code, value = server.exec(["cat", "/proc/sys/" + name.replace(".", "/")])
        assert code == 0, value
        return value.split()

    assert sysctl(box, "net.ipv4.ip_local_port_range") == ["20000", "30000"]
    assert sysctl(box, "net.core.somaxconn") == ["511"]
    assert sysctl(box, "kernel.shmmax") == ["1234567"]
    assert sysctl(plain, "net.ipv4.ip_local_port_range") != ["20000", "30000"]
""",
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1)


ENTRYPOINT_IMAGE = {"ep/Dockerfile": 'FROM busybox:stable\nENTRYPOINT ["sh", "-c", "exit 7"]\n'}


def test_entrypoint_replaces_the_images_and_an_empty_one_clears_it(
    pytester: pytest.Pytester, suite: Any, engine: Any
) -> None:
    # The image's ENTRYPOINT exits 7 at once: a server that stays up did not run it.
    body = """
    build: ep
    post_startup: ["true"]
    timeout: 60
    """
    suite(
        servers_yaml(
            replaced=body + 'entrypoint: ["sleep"]\n    command: ["600"]\n',
            cleared=body + 'entrypoint: []\n    command: ["sleep", "601"]\n',
            kept=body + 'command: ["sleep", "602"]\n',
        ),
        """
import pytest

@pytest.mark.testserver("replaced", "cleared")
def test_inside(testservers):
    assert testservers["replaced"].exec(["cat", "/proc/1/cmdline"]) == (0, "sleep\\x00600\\x00")
    assert testservers["cleared"].exec(["cat", "/proc/1/cmdline"]) == (0, "sleep\\x00601\\x00")

def test_the_images_entrypoint_without_the_option(testservers):
    testservers["kept"]
""",
        ENTRYPOINT_IMAGE,
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*testserver: server 'kept': the container exited with code 7 before it was ready*"]
    )


def test_a_servers_own_healthcheck_makes_wait_healthcheck_work_with_any_image(
    pytester: pytest.Pytester, suite: Any, engine: Any
) -> None:
    # busybox has no HEALTHCHECK: the server's own is what the wait sees.
    suite(
        servers_yaml(
            healthy="""
            image: busybox:stable
            command: ["sh", "-c", "sleep 1; touch /ready; exec sleep 600"]
            healthcheck: {test: ["test", "-e", "/ready"], interval: 0.2}
            wait: {healthcheck: true}
            timeout: 60
            """,
            sick="""
            image: busybox:stable
            command: ["sleep", "600"]
            healthcheck: {test: ["cat", "/nonexistent/ready"], interval: 0.2, retries: 2}
            wait: {healthcheck: true}
            timeout: 8
            """,
            none="""
            image: busybox:stable
            command: ["sleep", "600"]
            wait: {healthcheck: true}
            timeout: 8
            """,
        ),
        """
from pytest_testserver.readiness import healthcheck_argv
from tests.conftest import inspect

def test_healthy(testservers):
    healthy = testservers["healthy"]
    # ready means healthy, and healthy means the file its test looks for was there
    assert healthy.exec(["test", "-e", "/ready"])[0] == 0
    # the container's own check is the server's: what the engine runs, and what the plugin
    # execs itself under Podman
    test = inspect(healthy.container_id)["Config"]["Healthcheck"]["Test"]
    assert test == ["CMD", "test", "-e", "/ready"]
    assert healthcheck_argv(test) == ["test", "-e", "/ready"]

def test_sick(testservers):
    testservers["sick"]

def test_none(testservers):
    testservers["none"]
""",
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*testserver: server 'sick': not ready within 8s*: wait.healthcheck was still unmet "
            "(health: *; its test exited 1: cat: can't open '/nonexistent/ready': No such file "
            "or directory)*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*wait.healthcheck: neither the image (HEALTHCHECK) nor the server (healthcheck:) "
            "defines a health check*"
        ]
    )


def test_an_option_the_engine_refuses_is_a_one_line_start_error(
    pytester: pytest.Pytester, suite: Any, engine: Any
) -> None:
    """A user the image does not have: validated as a name, refused by the engine at start."""
    suite(
        servers_yaml(box=SLEEPER + "user: nosuchuser\n"),
        """
def test_it(testservers):
    testservers["box"]
""",
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*testserver: server 'box'*nosuchuser*"])
    assert "Traceback" not in result.stdout.str()


def test_the_listing_shows_the_options_that_are_set(pytester: pytest.Pytester) -> None:
    (pytester.path / "testservers.yaml").write_text(
        servers_yaml(
            box="""
            image: busybox:stable
            user: "1000:1000"
            working_dir: /srv
            entrypoint: ["sleep"]
            command: ["600"]
            tmpfs: [/run, {path: /cache, size: 1m, mode: "0700"}]
            cap_drop: [all]
            cap_add: [chown]
            shm_size: 1g
            ulimits: {nofile: 1024, core: {soft: 0, hard: unlimited}}
            sysctls: {net.core.somaxconn: 1024}
            healthcheck: {test: ["true"]}
            """,
            plain="image: busybox:stable\n",
        )
    )
    result = pytester.runpytest("--testserver-list")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "box",
            "    options: user 1000:1000; working_dir /srv; entrypoint ['sleep']; tmpfs /run; "
            "tmpfs /cache (size 1m, mode 0700); cap_add CHOWN; cap_drop ALL; "
            "shm_size 1g; ulimit nofile 1024:1024; ulimit core 0:unlimited; "
            "sysctl net.core.somaxconn=1024; healthcheck ['true']",
            "plain",
        ]
    )
    plain = result.stdout.str().split("\nplain\n")[1]
    assert "options:" not in plain
