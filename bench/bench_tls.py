"""TLS probes: exec -> probes attached, and the per-call cost of the SSL uprobes, each beside a
baseline from the same run. Run as root: `.venv/bin/python bench/bench_tls.py`. Loopback only.

Per-call cost: a Python TLS client/server pair on loopback (SSL_write_ex/SSL_read_ex on both
ends) runs N request/response round trips, with no probes and with the agent's probes attached
(syscalls + SSL uprobes); the BPF run time of the uprobe programs per call comes from bpf_stats.
"""

from __future__ import annotations

import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_capture import BPF_STATS_RUN_TIME, prog_stats

from alaz.bpf._libbpf import LIB
from alaz.capture.probes import Probes
from alaz.capture.tls_attach import TlsAttacher
from alaz.doctor import ensure_tracefs

ROUNDS, CALLS = 3, 5000


def _certs(d: Path) -> tuple[str, str]:
    cert, key = d / "c.pem", d / "k.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def round_trips(cert: str, key: str, n: int) -> float:
    """µs per request/response over TLS (both ends in this process, two threads)."""
    srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv_ctx.load_cert_chain(cert, key)
    cli_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cli_ctx.check_hostname = False
    cli_ctx.verify_mode = ssl.CERT_NONE
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve() -> None:
        conn, _ = lsock.accept()
        with srv_ctx.wrap_socket(conn, server_side=True) as s:
            for _ in range(n):
                s.recv(4096)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    t = threading.Thread(target=serve)
    t.start()
    with cli_ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as c:
        t0 = time.perf_counter()
        for _ in range(n):
            c.sendall(b"GET /bench HTTP/1.1\r\nHost: b\r\n\r\n")
            c.recv(4096)
        dt = time.perf_counter() - t0
    t.join()
    lsock.close()
    return dt / n * 1e6


def exec_to_attach(probes: Probes) -> list[float]:
    """ms from a new process's exec to its libssl's probes being attached (fresh attacher
    each time, so the library is not already known)."""
    out = []
    for _ in range(5):
        attacher = TlsAttacher(probes)
        proc = subprocess.Popen([sys.executable, "-c", "import ssl, time; time.sleep(3)"])
        t0 = time.monotonic()
        attacher.on_exec(proc.pid)
        while not attacher.attached and time.monotonic() - t0 < 3:
            attacher.poll(budget_s=0.05)
            time.sleep(0.002)
        out.append((time.monotonic() - t0) * 1000)
        proc.kill()
        proc.wait()
        for obj in probes.objects:  # drop the uprobes again for the next round
            if obj.name == "tls_openssl":
                obj.detach()
    return out


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    ensure_tracefs()
    with tempfile.TemporaryDirectory() as d:
        cert, key = _certs(Path(d))
        base, hooked, per_call = [], [], []
        stats_fd = LIB.bpf_enable_stats(BPF_STATS_RUN_TIME)
        try:
            for _ in range(ROUNDS):
                base.append(round_trips(cert, key, CALLS))
                probes = Probes()
                probes.load()
                probes.attach()
                TlsAttacher(probes).scan_all()
                hooked.append(round_trips(cert, key, CALLS))
                st = prog_stats(probes)
                ssl_ns = sum(t for name, (t, _) in st.items() if name.startswith("ssl_"))
                ssl_calls = st.get("ssl_exit_probe", (0, 0))[1]
                per_call.append(ssl_ns / max(ssl_calls, 1))
                if _ == ROUNDS - 1:
                    attach_ms = exec_to_attach(probes)
                probes.close()
        finally:
            os.close(stats_fd)
    print(
        f"== TLS round trips (Python ssl both ends, SSL_write_ex/SSL_read_ex), {CALLS} x "
        f"{ROUNDS} rounds"
    )
    print(f"  baseline (no probes):          {statistics.median(base):7.1f} us per round trip")
    print(
        f"  all probes + SSL uprobes:      {statistics.median(hooked):7.1f} us per round trip "
        f"({statistics.median(h / b for h, b in zip(hooked, base, strict=True)):.2f}x)"
    )
    print(
        f"  BPF run time per SSL call (entry + return programs): "
        f"{statistics.median(per_call):.0f} ns (uprobe trap overhead not included)"
    )
    print(
        f"== exec -> libssl probes attached, 5 new Python processes: median "
        f"{statistics.median(attach_ms):.1f} ms, max {max(attach_ms):.1f} ms "
        f"(baseline: the 1 s target)"
    )


if __name__ == "__main__":
    main()
