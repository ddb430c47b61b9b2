"""Port ranges and fixed host ports on the real engine, driven through pytest like a user would.

Host ports are found free at test time (the engine and this machine are shared with other
runs); a fixed host port is reached on that very number.
"""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest

from tests.conftest import bind_address, servers_yaml

pytestmark = pytest.mark.usefixtures("engine")

# busybox httpd without -f goes to the background: the first serves one port of the range, the
# second (in the foreground) is the server's own port, which the default readiness check tries.
TWO_HTTPD = """
    from: busybox:stable
    run: ["mkdir -p /www && echo ok > /www/index.html"]
    command: ["sh", "-c", "httpd -p {inner} -h /www && exec httpd -f -p 8080 -h /www"]
"""


def is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((bind_address(), port))
        except OSError:
            return False
    return True


def free_range(count: int) -> int:
    """The first of ``count`` consecutive host ports free right now, below the ephemeral range
    (where the engine's own choices and outgoing connections land)."""
    for _ in range(200):
        start = random.randrange(20000, 32000)
        if all(is_free(start + i) for i in range(count)):
            return start
    raise AssertionError(f"no {count} consecutive free ports found")


def test_a_range_is_published_port_by_port_and_not_waited_for(
    pytester: pytest.Pytester, suite: Any
) -> None:
    # Only 8080 and 30003 listen: were the range part of the default readiness check, the
    # server would never be ready (its timeout is short to fail fast).
    suite(
        servers_yaml(
            ftp=TWO_HTTPD.format(inner=30003)
            + '    ports: [8080, "30000-30009"]\n    timeout: 30\n'
        ),
        """
        from urllib.request import urlopen
        import pytest

        @pytest.mark.testserver("ftp")
        def test_range(testserver):
            ports = testserver.ports
            assert sorted(ports) == sorted(
                ["8080/tcp", *(f"{n}/tcp" for n in range(30000, 30010))]
            )
            assert len(set(ports.values())) == 11  # each container port its own host port
            assert urlopen(testserver.url(30003)).read() == b"ok\\n"
            assert urlopen(testserver.url(8080)).read() == b"ok\\n"
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.publishes_on_this_machine
def test_fixed_host_ports_are_reachable_on_their_numbers(
    pytester: pytest.Pytester, suite: Any
) -> None:
    single, passive = free_range(1), free_range(5)
    inner = passive + 2
    suite(
        servers_yaml(
            ftp=TWO_HTTPD.format(inner=inner)
            + f'    ports: ["{single}:8080", "{passive}-{passive + 4}:{passive}-{passive + 4}"]\n'
        ),
        f"""
        from urllib.request import urlopen
        import pytest
        from tests.conftest import bind_address, inspect

        @pytest.mark.testserver("ftp")
        def test_fixed(testserver):
            assert testserver.port(8080) == {single}
            assert urlopen(f"http://{{testserver.host}}:{single}/").read() == b"ok\\n"
            # The passive range: the same number outside as inside, as vsftpd announces it.
            assert [testserver.port(n) for n in range({passive}, {passive + 5})] == list(
                range({passive}, {passive + 5})
            )
            assert urlopen(f"http://{{testserver.host}}:{inner}/").read() == b"ok\\n"
            bindings = inspect(testserver.container_id)["NetworkSettings"]["Ports"]
            assert bindings["8080/tcp"] == [{{"HostIp": bind_address(), "HostPort": "{single}"}}]
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.publishes_on_this_machine
def test_a_fixed_host_port_serves_every_xdist_worker_from_one_container(
    pytester: pytest.Pytester, suite: Any
) -> None:
    port = free_range(1)
    suite(
        servers_yaml(ftp=TWO_HTTPD.format(inner=8081) + f'    ports: ["{port}:8080"]\n'),
        f"""
        from urllib.request import urlopen
        import pytest

        @pytest.mark.parametrize("n", range(4))
        @pytest.mark.testserver("ftp")
        def test_fixed(testserver, n):
            assert testserver.port(8080) == {port}
            assert urlopen(f"http://{{testserver.host}}:{port}/").read() == b"ok\\n"
        """,
    )
    pytester.runpytest("-n", "2").assert_outcomes(passed=4)


@pytest.mark.publishes_on_this_machine
def test_a_taken_fixed_host_port_names_port_entry_and_server(
    pytester: pytest.Pytester, suite: Any
) -> None:
    with socket.socket() as holder:
        holder.bind((bind_address(), 0))
        holder.listen()
        port = holder.getsockname()[1]
        suite(
            servers_yaml(
                web=f"""
                image: busybox:stable
                command: ["httpd", "-f", "-p", "8080"]
                ports: [9090, "{port}:8080"]
                """
            ),
            """
            import pytest

            @pytest.mark.testserver("web")
            def test_web(testserver):
                pass
            """,
        )
        result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    # [[]1] is a literal [1] to fnmatch.
    result.stdout.fnmatch_lines(
        [
            f"testserver: server 'web': port 8080/tcp is already in use on "
            f"{bind_address()}:{port} (ports[[]1]: {port}:8080/tcp fixes its host port): stop "
            "what holds it, or give it another host port"
        ]
    )


def test_a_tcp_and_a_udp_port_of_one_number_each_keep_their_host_port(
    pytester: pytest.Pytester, suite: Any
) -> None:
    # The echo service's 7 and 7/udp: the reachability check after ready must go to the TCP
    # one's host port, not to the UDP one's (which refuses a TCP connect).
    suite(
        servers_yaml(
            echo="""
    from: busybox:stable
    run: ["mkdir -p /www && echo ok > /www/index.html"]
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: [8080, "8080/udp"]
    wait: {tcp: 8080}
    timeout: 30
"""
        ),
        """
        from urllib.request import urlopen
        import pytest

        @pytest.mark.testserver("echo")
        def test_both(testserver):
            assert testserver.port(8080) != testserver.port(8080, "udp")
            assert urlopen(testserver.url(8080)).read() == b"ok\\n"
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)
