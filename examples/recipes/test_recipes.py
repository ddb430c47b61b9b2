"""The recipes of docs/how-to/recipes.md, each driven by a real client from the test machine.

Run from the repository root: ``python -m pytest examples/recipes`` (also with ``-n 4``). Clients
are the standard library's (ftplib, imaplib, http.client, sockets), so the suite needs nothing
but the plugin.
"""

from __future__ import annotations

import ftplib
import http.client
import imaplib
import os
import socket
import struct

import pytest

from pytest_testserver import ServerHandle

TIMEOUT = 10


def http_request(host: str, port: int, method: str, target: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        connection.request(method, target, headers={"Depth": "0"} if method == "PROPFIND" else {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def resp(sock: socket.socket, *parts: bytes) -> bytes:
    """A RESP (Redis) command; the reply's first line."""
    sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
    return sock.recv(4096).split(b"\r\n")[0]


# --- PostgreSQL and Redis ---------------------------------------------------------------------


@pytest.mark.testserver("postgres")
def test_postgres_answers_sql_and_its_password_was_set(testserver: ServerHandle) -> None:
    assert testserver.exec(["psql", "-tAc", "SELECT 40 + 2"]) == (0, "42\n")
    # from the test machine: the server asks for the SCRAM password set by post_startup
    with socket.create_connection((testserver.host, testserver.port(5432)), TIMEOUT) as sock:
        params = b"user\0postgres\0database\0postgres\0\0"
        sock.sendall(struct.pack(">ii", 8 + len(params), 196608) + params)
        kind, _, method = struct.unpack(">cii", sock.recv(9))
    assert (kind, method) == (b"R", 10)  # AuthenticationSASL: a password is required


@pytest.mark.testserver("redis")
def test_redis_needs_the_password_and_starts_each_test_empty(testserver: ServerHandle) -> None:
    with socket.create_connection((testserver.host, testserver.port(6379)), TIMEOUT) as sock:
        assert resp(sock, b"PING").startswith(b"-NOAUTH")
        assert resp(sock, b"AUTH", os.environ["REDIS_PASSWORD"].encode()) == b"+OK"
        assert resp(sock, b"DBSIZE") == b":0"  # reset: FLUSHALL before every test but the first
        assert resp(sock, b"SET", b"seen", b"1") == b"+OK"


@pytest.mark.testserver("redis")
def test_redis_is_reset_between_tests(testserver: ServerHandle) -> None:
    test_redis_needs_the_password_and_starts_each_test_empty(testserver)


# --- the Qt-style set -------------------------------------------------------------------------


@pytest.mark.testserver("apache")
def test_apache_serves_files_cgi_and_webdav(testserver: ServerHandle) -> None:
    host, port = testserver.host, testserver.port(80)
    assert http_request(host, port, "GET", "/") == (200, "<h1>hello from apache</h1>\n")
    assert http_request(host, port, "GET", "/cgi-bin/hello?x=1") == (200, "cgi says x=1\n")
    status, body = http_request(host, port, "PROPFIND", "/dav/")
    assert status == 207
    assert "multistatus" in body


@pytest.mark.testserver("squid", "apache")
def test_squid_proxies_to_apache_on_the_run_network(testservers: dict[str, ServerHandle]) -> None:
    squid = testservers["squid"]
    status, body = http_request(squid.host, squid.port(3128), "GET", "http://apache/")
    assert (status, body) == (200, "<h1>hello from apache</h1>\n")


@pytest.mark.testserver("vsftpd")
def test_vsftpd_lists_and_sends_over_passive_ports(testserver: ServerHandle) -> None:
    ftp = ftplib.FTP(timeout=TIMEOUT)  # noqa: S321 (vsftpd is the server under test)
    ftp.connect(testserver.host, testserver.port(21))
    try:
        assert ftp.getwelcome().startswith("220 ")
        ftp.login()  # anonymous
        assert ftp.nlst() == ["hello.txt"]
        lines: list[str] = []
        ftp.retrlines("RETR hello.txt", lines.append)
        assert lines == ["hello over FTP"]
        # the data connection went to a port of the passive range, published on its own number
        _, data_port = ftp.makepasv()
        assert 30000 <= data_port <= 30009
        assert testserver.port(data_port) == data_port
    finally:
        ftp.close()


@pytest.mark.testserver("dante", "apache")
def test_dante_connects_through_socks5(testservers: dict[str, ServerHandle]) -> None:
    dante = testservers["dante"]
    with socket.create_connection((dante.host, dante.port(1080)), TIMEOUT) as sock:
        sock.sendall(b"\x05\x01\x00")  # version 5, one method: no authentication
        assert sock.recv(2) == b"\x05\x00"
        name = b"apache"  # resolved by the proxy, on the run network
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", 80))
        assert sock.recv(10)[:2] == b"\x05\x00"  # succeeded
        sock.sendall(b"GET / HTTP/1.0\r\nHost: apache\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert reply.endswith(b"<h1>hello from apache</h1>\n")


@pytest.mark.testserver("echo")
def test_echo_over_tcp_and_udp(testserver: ServerHandle) -> None:
    with socket.create_connection((testserver.host, testserver.port(7)), TIMEOUT) as sock:
        sock.sendall(b"over tcp\n")
        assert sock.recv(64) == b"over tcp\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(TIMEOUT)
        udp.sendto(b"over udp", (testserver.host, testserver.port(7, "udp")))
        assert udp.recvfrom(64)[0] == b"over udp"


@pytest.mark.testserver("cyrus")
def test_cyrus_greets_and_lists_its_capabilities(testserver: ServerHandle) -> None:
    imap = imaplib.IMAP4(testserver.host, testserver.port(143), timeout=TIMEOUT)
    try:
        assert imap.welcome.startswith(b"* OK")
        status, capabilities = imap.capability()
        assert status == "OK"
        assert b"IMAP4rev1" in capabilities[0]
    finally:
        imap.logout()
