"""The agent process as an operator sees it: health endpoints, clean and quick shutdown,
`alaz doctor` on this node."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.kernel.conftest import ROOT, AgentProcess, free_port

pytestmark = pytest.mark.kernel


def test_health_endpoints_and_a_clean_quick_stop(tmp_path: Path) -> None:
    port = free_port()
    agent = AgentProcess(tmp_path, env={"ALAZ_HEALTH_PORT": str(port)})
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200  # probes attached
        metrics = httpx.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200
        names = {line.split()[0] for line in metrics.text.splitlines()}
        assert {
            "alaz_kernel_ringbuf_drop_data",
            "alaz_capturing",
            "alaz_tracker_exchanges",
            "alaz_export_jsonl_dropped_rows",
        } <= names, names
    finally:
        t0 = time.monotonic()
        rc = agent.stop()
        took = time.monotonic() - t0
    assert rc == 0, agent.log.read_text()[-3000:]
    assert took < 5.0, f"shutdown took {took:.1f} s"
    log = agent.log.read_text()
    assert '"agent.stopping"' in log and '"agent.stats"' in log


def test_doctor_passes_on_this_node() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alaz", "doctor"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    for name in ("btf", "tracefs", "tracepoints", "libbpf"):
        assert name in proc.stdout
