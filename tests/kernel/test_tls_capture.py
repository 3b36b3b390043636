"""TLS plaintext through the real probes: OpenSSL (SSL_read/SSL_write and the _ex pair, the
system libssl and psycopg's bundled copy) and Go crypto/tls (normal and stripped builds), each
side recorded once with `tls: true`, and no garbage record from the ciphertext."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import need
from tests.kernel.conftest import ROOT, AgentProcess, free_port, wait_for_port
from tests.kernel.dbservers import postgres_server
from tests.kernel.tlsbuild import GoBuild, go_builder, gotls, gotls_stripped  # noqa: F401

pytestmark = pytest.mark.kernel
SERVER = ROOT / "tests/kernel/servers/http_server.py"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("certs")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(d, 0o755)
    os.chmod(key, 0o644)
    return str(cert), str(key)


def _records(
    agent: AgentProcess, path: str, count: int, timeout: float = 10
) -> list[dict[str, Any]]:
    return agent.wait_records(lambda r: r["path"] == path, count, timeout=timeout)


def _both_sides(recs: list[dict[str, Any]], client_comm: str, server_comm: str) -> None:
    assert sorted(r["role"] for r in recs) == ["client", "server"], recs
    for r in recs:
        assert r["tls"] is True and r["status"] == 200 and r["method"] == "GET", r
        assert r["comm"] == (client_comm if r["role"] == "client" else server_comm), r


def _no_garbage(agent: AgentProcess, port: int) -> None:
    """Every record on the port is TLS plaintext: the ciphertext made none."""
    recs = [r for r in agent.records() if r["server_port"] == port]
    assert recs and all(r["tls"] and r["method"] == "GET" for r in recs), recs


@pytest.fixture
def nginx_tls(certs: tuple[str, str], tmp_path: Path) -> Iterator[int]:
    need(shutil.which("nginx") is not None, "nginx is not installed")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""user root; worker_processes 1; daemon off; pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log; events {{ worker_connections 64; }}
http {{ access_log off; client_body_temp_path {tmp_path}/b; proxy_temp_path {tmp_path}/p;
  fastcgi_temp_path {tmp_path}/f; uwsgi_temp_path {tmp_path}/u; scgi_temp_path {tmp_path}/s;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {certs[0]};
           ssl_certificate_key {certs[1]}; location / {{ return 200 "tls ok\\n"; }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(conf)])
    try:
        wait_for_port("127.0.0.1", port)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def test_httpx_to_nginx_https(agent: AgentProcess, nginx_tls: int) -> None:
    """Python's ssl (SSL_write_ex/SSL_read_ex) as client, nginx (SSL_read/SSL_write) server."""
    with httpx.Client(verify=False) as client:
        assert client.get(f"https://127.0.0.1:{nginx_tls}/tls/httpx?a=1").status_code == 200
    recs = _records(agent, "/tls/httpx?a=1", 2)
    _both_sides(recs, Path("/proc/self/comm").read_text().strip(), "nginx")
    assert next(r for r in recs if r["role"] == "client")["pid"] == os.getpid()
    _no_garbage(agent, nginx_tls)


def test_curl_to_python_tls_server(agent: AgentProcess, certs: tuple[str, str]) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(SERVER), "127.0.0.1", str(port), *certs])
    try:
        wait_for_port("127.0.0.1", port)
        curl = subprocess.run(
            ["curl", "-sk", f"https://127.0.0.1:{port}/tls/curl"], capture_output=True, check=True
        )
        assert b"you asked for /tls/curl" in curl.stdout
        recs = _records(agent, "/tls/curl", 2)
        _both_sides(recs, "curl", Path(f"/proc/{server.pid}/comm").read_text().strip())
        assert next(r for r in recs if r["role"] == "server")["pid"] == server.pid
        _no_garbage(agent, port)
    finally:
        server.terminate()
        server.wait(5)


def test_psql_and_psycopg_bundled_libssl_to_postgres(agent: AgentProcess) -> None:
    import psycopg

    with postgres_server(ssl=True) as pg:
        dsn = f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres sslmode=require"
        out = subprocess.run(
            ["psql", dsn, "-Atc", "SELECT 4242"], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "4242"
        recs = agent.wait_records(lambda r: r["path"] == "SELECT 4242" and r["role"] == "client", 1)
        assert len(recs) == 1 and recs[0]["tls"] and recs[0]["comm"] == "psql"
        assert recs[0]["protocol"] == "POSTGRES" and recs[0]["status"] == 1
        # psycopg's wheel carries its own libssl-<hash>.so.3: found by the periodic rescan
        deadline = time.monotonic() + 20
        found: list[dict[str, Any]] = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < deadline and not found:
                conn.execute("SELECT 'bundled'")
                found = agent.wait_records(
                    lambda r: r["path"] == "SELECT 'bundled'" and r["pid"] == os.getpid(),
                    1,
                    timeout=1.0,
                )
        assert found and found[0]["tls"] and found[0]["protocol"] == "POSTGRES"


def test_redis_cli_tls(agent: AgentProcess, certs: tuple[str, str], tmp_path: Path) -> None:
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            certs[0],
            "--tls-key-file",
            certs[1],
            "--tls-ca-cert-file",
            certs[0],
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        out = subprocess.run(
            ["redis-cli", "--tls", "--insecure", "-p", str(port), "SET", "alaz:tls", "v"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "OK"
        recs = agent.wait_records(
            lambda r: (
                r["protocol"] == "REDIS" and r["server_port"] == port and r["role"] == "client"
            ),
            1,
        )
        assert len(recs) == 1 and recs[0]["tls"] and recs[0]["extra"]["key"] == "alaz:tls"
    finally:
        server.terminate()
        server.wait(5)


@pytest.mark.parametrize("build", ["gotls", "gotls_stripped"])
def test_go_client_and_server(
    agent: AgentProcess, build: str, request: pytest.FixtureRequest
) -> None:
    """Both started after the agent; HTTP/1.1 (GODEBUG turns HTTP/2 off on both sides)."""
    binary: GoBuild = request.getfixturevalue(build)
    env = {**os.environ, "GODEBUG": "http2client=0,http2server=0"}
    server = subprocess.Popen(
        [str(binary.path), "server", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        addr = server.stdout.readline().split()[1]
        port = int(addr.rsplit(":", 1)[1])
        path = f"/go/{build}"
        deadline = time.monotonic() + 15  # the new processes are scanned within about 1 s
        recs: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(recs) < 2:
            subprocess.run(
                [str(binary.path), "client", f"https://{addr}{path}"],
                env=env,
                capture_output=True,
                check=True,
            )
            recs = agent.wait_records(
                lambda r: r["path"] == path and r["server_port"] == port, 2, timeout=2
            )
        roles = {r["role"] for r in recs}
        assert roles == {"client", "server"}, recs
        assert all(r["tls"] and r["status"] == 200 for r in recs)
        assert all(r["comm"] == binary.path.name[:15] for r in recs)
    finally:
        server.kill()
        server.wait(5)
