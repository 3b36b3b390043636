"""Real HTTP/1.1 traffic through real servers, captured by the real kernel probes."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import need
from tests.kernel.conftest import ROOT, AgentProcess, netns_pod, wait_for_port

pytestmark = pytest.mark.kernel


def _by(role: str, port: int, path: str | None = None):  # type: ignore[no-untyped-def]
    def match(r: dict[str, Any]) -> bool:
        return (
            r["role"] == role and r["server_port"] == port and (path is None or r["path"] == path)
        )

    return match


def _curl(url: str, *extra: str) -> tuple[int, float]:
    need(shutil.which("curl") is not None, "curl is not installed")
    t0 = time.monotonic_ns()
    proc = subprocess.Popen(["curl", "-s", "-o", "/dev/null", *extra, url])
    assert proc.wait(10) == 0
    return proc.pid, time.monotonic_ns() - t0


def test_curl_to_python_server_both_sides(
    agent: AgentProcess, python_server: tuple[int, int]
) -> None:
    port, server_pid = python_server
    curl_pid, elapsed = _curl(f"http://127.0.0.1:{port}/hello?x=1&y=two")

    clients = agent.wait_records(_by("client", port, "/hello?x=1&y=two"), 1)
    servers = agent.wait_records(_by("server", port, "/hello?x=1&y=two"), 1)
    assert len(clients) == 1 and len(servers) == 1, (clients, servers)
    c, s = clients[0], servers[0]
    assert (c["method"], c["status"], c["protocol"], c["tls"]) == ("GET", 200, "HTTP", False)
    assert (s["method"], s["status"]) == ("GET", 200)
    assert c["pid"] == curl_pid and c["comm"] == "curl"
    assert s["pid"] == server_pid
    for r in (c, s):
        assert r["client_ip"] == "127.0.0.1" and r["server_ip"] == "127.0.0.1"
        assert r["client_port"] == c["client_port"] != 0
        assert 0 < r["latency_ns"] <= elapsed
    assert s["latency_ns"] <= c["latency_ns"]  # the server's view is inside the client's
    body = len(b"you asked for /hello?x=1&y=two\n")
    assert c["resp_bytes"] == s["resp_bytes"] > body
    assert c["req_bytes"] == s["req_bytes"] > 0
    now_ms = time.time() * 1000
    assert now_ms - 30_000 < c["start_time_ms"] <= now_ms


def test_nginx_ipv4_and_ipv6(agent: AgentProcess, nginx: int) -> None:
    _curl(f"http://127.0.0.1:{nginx}/v4")
    _curl(f"http://[::1]:{nginx}/v6")
    _curl(f"http://127.0.0.1:{nginx}/missing")
    for path, ip, status in (
        ("/v4", "127.0.0.1", 200),
        ("/v6", "::1", 200),
        ("/missing", "127.0.0.1", 404),
    ):
        for role in ("client", "server"):
            recs = agent.wait_records(_by(role, nginx, path), 1)
            assert len(recs) == 1, (role, path, recs)
            r = recs[0]
            assert (r["method"], r["status"], r["client_ip"], r["server_ip"]) == (
                "GET",
                status,
                ip,
                ip,
            )
            assert r["comm"] == ("curl" if role == "client" else "nginx")


def test_keepalive_client_many_requests(
    agent: AgentProcess, python_server: tuple[int, int]
) -> None:
    port, _ = python_server
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(20):
        conn.request("POST" if i % 2 else "GET", f"/ka/{i}", body=b"z" * i if i % 2 else None)
        resp = conn.getresponse()
        resp.read()
    local_port = conn.sock.getsockname()[1]
    conn.close()
    match = lambda role: lambda r: r["role"] == role and r["client_port"] == local_port  # noqa: E731
    for role in ("client", "server"):
        recs = agent.wait_records(match(role), 20)
        assert [r["path"] for r in recs] == [f"/ka/{i}" for i in range(20)], role
        assert [r["status"] for r in recs] == [201 if i % 2 else 200 for i in range(20)]
        assert [r["method"] for r in recs] == ["POST" if i % 2 else "GET" for i in range(20)]
    client_recs = agent.wait_records(match("client"), 20)
    assert {r["pid"] for r in client_recs} == {os.getpid()}


def test_pipelined_requests_in_one_write(agent: AgentProcess, nginx: int) -> None:
    paths = [f"/pipe/{i}" for i in range(10)]
    wire = b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths)
    with socket.create_connection(("127.0.0.1", nginx)) as s:
        local_port = s.getsockname()[1]
        s.sendall(wire)
        got = b""
        deadline = time.monotonic() + 5
        while got.count(b"HTTP/1.1 200") < 10 and time.monotonic() < deadline:
            got += s.recv(65536)
    for role in ("client", "server"):
        recs = agent.wait_records(
            lambda r, role=role: r["role"] == role and r["client_port"] == local_port, 10
        )
        assert [r["path"] for r in recs] == paths, role
        assert all(r["status"] == 200 for r in recs)


def test_large_and_chunked_bodies(
    agent: AgentProcess, nginx: int, python_server: tuple[int, int]
) -> None:
    port, _ = python_server
    _curl(f"http://127.0.0.1:{nginx}/big")
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/chunked")
    chunked = conn.getresponse().read()
    conn.request("GET", "/size/300000")  # keep-alive: the next request must still pair
    sized = conn.getresponse().read()
    conn.request("GET", "/after")
    conn.getresponse().read()
    conn.close()
    big = agent.wait_records(_by("client", nginx, "/big"), 1)
    assert len(big) == 1 and big[0]["status"] == 200 and big[0]["resp_bytes"] > 1 << 20
    for path, body in (("/chunked", chunked), ("/size/300000", sized)):
        recs = agent.wait_records(_by("client", port, path), 1)
        assert len(recs) == 1 and recs[0]["status"] == 200
        assert recs[0]["resp_bytes"] > len(body)
    assert len(agent.wait_records(_by("server", port, "/after"), 1)) == 1


def test_server_in_a_network_namespace(agent: AgentProcess, tmp_path: Any) -> None:
    """A "pod" with its own IP: the server runs inside a namespace, the client outside."""
    with netns_pod() as (ns, pod_ip, host_ip):
        port = 18080
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                str(ROOT / "tests/kernel/servers/http_server.py"),
                pod_ip,
                str(port),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(pod_ip, port)
            curl_pid, _ = _curl(f"http://{pod_ip}:{port}/in-pod")
            for role in ("client", "server"):
                recs = agent.wait_records(_by(role, port, "/in-pod"), 1)
                assert len(recs) == 1, (role, recs)
                r = recs[0]
                assert (r["client_ip"], r["server_ip"], r["status"]) == (host_ip, pod_ip, 200)
            assert agent.wait_records(_by("client", port, "/in-pod"), 1)[0]["pid"] == curl_pid
        finally:
            server.terminate()
            server.wait(5)


def test_agent_never_captures_its_own_traffic(
    agent: AgentProcess, python_server: tuple[int, int], tmp_path: Any
) -> None:
    """A second agent ships rows to a local backend over HTTP. The first agent sees that
    traffic; the second one never records its own."""
    port, _ = python_server
    env = {"BACKEND_HOST": f"http://127.0.0.1:{port}", "MONITORING_ID": "m", "NODE_NAME": "n"}
    second = AgentProcess(tmp_path, env=env)
    try:
        for i in range(3):
            _curl(f"http://127.0.0.1:{port}/for-the-backend/{i}")
        posts = agent.wait_records(
            lambda r: r["pid"] == second.proc.pid and r["path"] == "/requests/", 1, timeout=15
        )
        assert posts and posts[0]["method"] == "POST" and posts[0]["role"] == "client"
        assert posts[0]["status"] == 201
        seen_by_second = second.wait_records(lambda r: r["path"].startswith("/for-the"), 6)
        assert len(seen_by_second) == 6  # it does capture other processes, both sides
        assert all(r["pid"] != second.proc.pid for r in second.records())
    finally:
        assert second.stop() == 0
