"""Fixtures for kernel tests: the real agent as a subprocess, real servers, network namespaces."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import need
from tests.kernel.dbservers import mariadb, postgres, rabbitmq, redis  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def _kernel_ready() -> None:
    need(os.geteuid() == 0, "kernel tests need root")
    need(os.path.exists("/sys/kernel/btf/vmlinux"), "kernel tests need BTF")


def free_port(family: int = socket.AF_INET) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0, netns: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if netns:
            ok = (
                subprocess.run(
                    ["ip", "netns", "exec", netns, "bash", "-c", f"</dev/tcp/{host}/{port}"],
                    capture_output=True,
                ).returncode
                == 0
            )
            if ok:
                return
        else:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


class AgentProcess:
    """`alaz run` writing JSON lines to a file; `records()` reads what it wrote so far."""

    def __init__(self, tmp: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.out = tmp / "records.jsonl"
        self.ready = tmp / "ready"
        self.log = tmp / "agent.log"
        self._log_f = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alaz",
                "run",
                "--output",
                str(self.out),
                "--ready-file",
                str(self.ready),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log_f,
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT / "src"),
                "ALAZ_HEALTH_PORT": "0",  # a free port: several agents run at once in tests
                **(env or {}),
            },
        )
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"agent did not become ready:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.05)

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        lines = self.out.read_bytes().splitlines()
        return [orjson.loads(line) for line in lines if line.strip()]

    def wait_records(
        self, match: Callable[[dict[str, Any]], bool], count: int, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Waits until at least `count` records match, then a little longer for extras."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [r for r in self.records() if match(r)]
            if len(found) >= count:
                time.sleep(1.5)  # a second flush, so duplicates would show up
                return [r for r in self.records() if match(r)]
            time.sleep(0.1)
        return found

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_f.close()
        return int(self.proc.returncode)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path_factory.mktemp("agent"))
    yield a
    rc = a.stop()
    assert rc == 0, f"agent exited with {rc}:\n{a.log.read_text()[-4000:]}"


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nginx (from apt) on 127.0.0.1 and [::1], one worker; yields its port."""
    need(shutil.which("nginx") is not None, "nginx is not installed (apt-get install nginx)")
    d = tmp_path_factory.mktemp("nginx")
    port = free_port()
    (d / "big").write_bytes(b"x" * (1 << 20))
    conf = d / "nginx.conf"
    conf.write_text(f"""
user root; worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 100000; sendfile off;
  server {{
    listen 127.0.0.1:{port}; listen [::1]:{port};
    location = /big {{ root {d}; }}
    location /missing {{ return 404 "no\\n"; }}
    location / {{ return 200 "hello $request_uri\\n"; }}
  }}
}}
""")
    proc = subprocess.Popen(
        ["nginx", "-p", str(d), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture(scope="module")
def python_server() -> Iterator[tuple[int, int]]:
    """A Python ThreadingHTTPServer in its own process; yields (port, pid)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/kernel/servers/http_server.py"), "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(5)


@contextlib.contextmanager
def netns_pod() -> Iterator[tuple[str, str, str]]:
    """A network namespace with its own IP on a veth pair: (name, pod_ip, host_ip).

    The addresses exist only on this machine (no default route); the namespace and the links
    are removed afterwards.
    """
    need(shutil.which("ip") is not None, "iproute2 is not installed")
    tag = f"{os.getpid() % 10000}"
    ns, host_if, pod_if = f"alaz-t{tag}", f"alz{tag}h", f"alz{tag}p"
    octet = 10 + os.getpid() % 200
    host_ip, pod_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        ip("link", "set", pod_if, "netns", ns)
        ip("addr", "add", f"{host_ip}/24", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", ns, "addr", "add", f"{pod_ip}/24", "dev", pod_if)
        ip("-n", ns, "link", "set", pod_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns, pod_ip, host_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
