"""Capture benchmark: kernel cost per captured syscall, user-space cost per exchange, and
capture completeness under 5k requests/s, each printed beside a baseline from the same run.

Run as root: `.venv/bin/python bench/bench_capture.py` (needs nginx). Prints numbers only; it
asserts nothing about time. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from alaz.bpf._libbpf import LIB
from alaz.capture.collector import Collector
from alaz.capture.probes import Probes
from alaz.capture.records import DATA_HOT
from alaz.clock import MonotonicClock
from alaz.conntrack import ConnTracker
from alaz.doctor import ensure_tracefs
from alaz.model import Exchange

ROOT = Path(__file__).resolve().parents[1]
BPF_STATS_RUN_TIME = 0
_INFO_RUN_TIME, _INFO_RUN_CNT = 192, 200  # offsets in struct bpf_prog_info (UAPI, stable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""user root; worker_processes 1; daemon off; pid {tmp}/nginx.pid;
error_log {tmp}/error.log; events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p;
  fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nginx did not start")


def loadgen(port: int, rate: int, seconds: float, conns: int) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/loadgen.py"),
            str(port),
            str(rate),
            str(seconds),
            str(conns),
        ],
        check=True,
        capture_output=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def prog_stats(probes: Probes) -> dict[str, tuple[int, int]]:
    stats = {}
    for obj in probes.objects:
        for name, _ in obj.programs():
            try:
                fd = obj.program_fd(name)
            except Exception:
                continue
            info = (ctypes.c_uint8 * 256)()
            size = ctypes.c_uint32(256)
            LIB.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size))
            raw = bytes(info)
            stats[name] = (
                struct.unpack_from("<Q", raw, _INFO_RUN_TIME)[0],
                struct.unpack_from("<Q", raw, _INFO_RUN_CNT)[0],
            )
    return stats


def kernel_cost(port: int, requests: int) -> tuple[list[bytes], list[list[int]]]:
    """Wall time per request with and without probes; BPF run time per captured syscall."""
    print(f"== kernel: {requests} keep-alive requests on 1 connection, flat out, 3 rounds")
    stats_fd = LIB.bpf_enable_stats(BPF_STATS_RUN_TIME)
    blobs: list[bytes] = []
    offsets: list[list[int]] = []
    base, hooked, per_sys = [], [], []
    try:
        for _ in range(3):
            r = loadgen(port, 10**9, requests / 10**9, 1)
            base.append(float(r["seconds"]) / requests * 1e6)  # type: ignore[arg-type]
            probes = Probes(ring_bytes=64 << 20)
            probes.load()
            probes.attach()
            r = loadgen(port, 10**9, requests / 10**9, 1)
            hooked.append(float(r["seconds"]) / requests * 1e6)  # type: ignore[arg-type]
            stats = prog_stats(probes)
            captured = probes.counters()["data_records"]
            l7 = sum(t for name, (t, _) in stats.items() if name.startswith(("enter_", "exit_")))
            total = sum(t for t, _ in stats.values())
            # each request is 4 captured syscalls: client send, nginx recv, nginx writev,
            # client recv (nginx's writev of head + body yields 2 records)
            per_sys.append((l7 / (4 * requests), total / (4 * requests), captured))
            assert probes.ring is not None
            blob, offs = probes.ring.read(1 << 30)
            blobs.append(blob)
            offsets.append(offs)
            probes.close()
    finally:
        if stats_fd >= 0:
            os.close(stats_fd)
    print(f"  baseline (no probes):   {statistics.median(base):7.1f} us per request")
    print(
        f"  with probes attached:   {statistics.median(hooked):7.1f} us per request "
        f"({statistics.median(h / b for h, b in zip(hooked, base, strict=True)):.2f}x)"
    )
    l7 = statistics.median(p[0] for p in per_sys)
    allp = statistics.median(p[1] for p in per_sys)
    print(
        f"  BPF run time per captured syscall (enter + exit): {l7:5.0f} ns; all programs: "
        f"{allp:.0f} ns; records per round {[p[2] for p in per_sys]} for {requests} "
        "requests x 4 captured syscalls (client send, nginx recv, nginx writev, client recv)"
    )
    return blobs, offsets


def user_cost(blobs: list[bytes], offsets: list[list[int]]) -> None:
    """Replays the captured records: decode+parse+pair+encode vs a bare decode walk."""
    print("== user space: replay of the captured records, 5 rounds each, interleaved")
    enc = msgspec.json.Encoder()
    full, bare = [], []
    exchanges = 0
    for _ in range(5):
        t0 = time.perf_counter()
        n = 0
        for blob, offs in zip(blobs, offsets, strict=True):
            out: list[Exchange] = []
            col = Collector(None, ConnTracker(MonotonicClock()), out.extend)  # type: ignore[arg-type]
            got: list[Exchange] = []
            col._decode(blob, offs, got)
            enc.encode_lines(got)
            n += len(got)
        full.append(time.perf_counter() - t0)
        exchanges = n
        t0 = time.perf_counter()
        unpack = DATA_HOT.unpack_from
        for blob, offs in zip(blobs, offsets, strict=True):
            for off in offs:
                if blob[off] == 1:
                    rec = unpack(blob, off)
                    blob[off + 128 : off + 128 + rec[6]]
        bare.append(time.perf_counter() - t0)
    records = sum(len(o) for o in offsets)
    f, b = statistics.median(full), statistics.median(bare)
    print(f"  records {records}, exchanges {exchanges} (both sides)")
    print(f"  baseline (unpack + payload slice only): {b / exchanges * 1e6:6.2f} us per exchange")
    print(
        f"  decode + parse + pair + JSON encode:    {f / exchanges * 1e6:6.2f} us per exchange "
        f"({f / b:.1f}x)"
    )


def completeness(port: int, rate: int, seconds: float) -> None:
    """The real agent under paced load: every request seen once per side? Any record lost?"""
    print(f"== agent under load: {rate} req/s for {seconds:.0f} s, 4 keep-alive connections")
    with tempfile.TemporaryDirectory() as d:
        out, ready, log = Path(d) / "out.jsonl", Path(d) / "ready", Path(d) / "agent.log"
        with open(log, "wb") as logf:
            agent = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "alaz",
                    "run",
                    "--output",
                    str(out),
                    "--ready-file",
                    str(ready),
                ],
                stderr=logf,
                stdout=subprocess.DEVNULL,
            )
            for _ in range(300):
                if ready.exists():
                    break
                time.sleep(0.1)
            t_cpu0 = _cpu_seconds(agent.pid)
            r = loadgen(port, rate, seconds, 4)
            time.sleep(1.5)
            cpu = _cpu_seconds(agent.pid) - t_cpu0
            agent.terminate()
            agent.wait(10)
        ports = set(r["ports"])  # type: ignore[arg-type]
        client = server = 0
        for line in out.read_bytes().splitlines():
            rec = json.loads(line)
            if rec["server_port"] == port and rec["client_port"] in ports:
                client += rec["role"] == "client"
                server += rec["role"] == "server"
        stats = [json.loads(x) for x in log.read_text().splitlines() if '"agent.stats"' in x]
        kernel = stats[-1]["kernel"] if stats else {}
        agent_side = {g: stats[-1].get(g) for g in ("collector", "tracker")} if stats else {}
        max_gap = max((st.get("max_poll_gap_ms", 0) for st in stats), default=0)
    sent = int(r["ok"])  # type: ignore[call-overload]
    print(f"  requests answered: {sent}  (achieved {sent / float(r['seconds']):.0f} req/s)")  # type: ignore[arg-type]
    print(
        f"  captured: client side {client} ({client / sent:.2%}), "
        f"server side {server} ({server / sent:.2%})"
    )
    print(f"  longest wait for a response: {r['max_wait_ms']} ms")
    print(f"  kernel counters: {kernel}")
    print(f"  agent counters: {agent_side}")
    print(f"  longest gap between two ring polls: {max_gap} ms (the ring holds seconds)")
    print(f"  agent CPU while loaded: {cpu / (seconds + 1.5):.1%} of one core")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    if os.geteuid() != 0 or not shutil.which("nginx"):
        raise SystemExit("run as root with nginx installed")
    ensure_tracefs()
    with tempfile.TemporaryDirectory() as d:
        nginx, port = start_nginx(Path(d))
        try:
            blobs, offsets = kernel_cost(port, 20000)
            user_cost(blobs, offsets)
            completeness(port, 5000, 10.0)
        finally:
            nginx.terminate()
            nginx.wait(5)


if __name__ == "__main__":
    main()
