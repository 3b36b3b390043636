"""Least privilege, shown on the real kernel: the agent captures with only the capabilities the
Helm chart grants (every other one dropped, no_new_privs set, as in the container), each of those
capabilities is needed, and `alaz doctor` names the one that is missing.

The capability set is read from the chart itself (rendered with the Helm SDK), so the chart and
this evidence cannot drift apart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from alaz.doctor import CAPABILITIES, ensure_tracefs, tracefs_root
from tests.conftest import need
from tests.kernel.conftest import ROOT

pytestmark = pytest.mark.kernel

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
for _var in ("BACKEND_HOST", "KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
    ENV.pop(_var, None)

LOAD_AND_ATTACH = (
    "from alaz.capture.probes import Probes\n"
    "p = Probes()\n"
    "try:\n"
    "    p.load(); print('attached', p.attach())\n"
    "finally:\n"
    "    p.close()\n"
)


@pytest.fixture(scope="module")
def chart_caps() -> list[str]:
    """`securityContext.capabilities.add` of the agent container in the default chart."""
    try:
        import helm_python
        import yaml
    except ImportError:
        need(False, "pip install helm-python-sdk (test extra) to render the chart")
        raise
    chart = helm_python.Chart.load(str(ROOT / "charts" / "alaz"))
    try:
        text = chart.render({}, name="alaz", namespace="t", is_install=True)
    finally:
        chart.close()
    ds = yaml.safe_load(text["alaz/templates/daemonset.yaml"])
    [agent] = ds["spec"]["template"]["spec"]["containers"]
    sc = agent["securityContext"]
    assert sc["privileged"] is False and sc["capabilities"]["drop"] == ["ALL"]
    caps: list[str] = sc["capabilities"]["add"]
    return caps


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    need(shutil.which("setpriv") is not None, "setpriv (util-linux) is not installed")
    need(shutil.which("curl") is not None, "curl is not installed")
    with open("/proc/sys/kernel/cap_last_cap") as f:
        need(int(f.read()) >= 39, "this kernel does not know CAP_BPF/CAP_PERFMON (Linux 5.8+)")
    ensure_tracefs()  # as the host would have it; the chart mounts the host's tracefs


def confine(caps: list[str]) -> list[str]:
    """setpriv arguments: root keeps only `caps` in every set, and no_new_privs is on (the
    container runtime's doing for `drop: [ALL]`, `add: caps`, allowPrivilegeEscalation false)."""
    spec = ",".join(["-all", *(f"+{c.lower()}" for c in caps)])
    return [
        "setpriv",
        "--no-new-privs",
        f"--inh-caps={spec}",
        f"--ambient-caps={spec}",
        f"--bounding-set={spec}",
        "--",
    ]


def cap_mask(caps: list[str]) -> int:
    return sum(1 << CAPABILITIES[f"CAP_{c}"].bit for c in caps)


class ConfinedAgent:
    """`alaz run` under `confine(caps)`, JSON lines to a file."""

    def __init__(self, tmp: Path, caps: list[str], wrap: list[str] | None = None) -> None:
        self.out, self.ready, self.log = tmp / "rows.jsonl", tmp / "ready", tmp / "agent.log"
        cmd = [
            *confine(caps),
            sys.executable,
            "-m",
            "alaz",
            "run",
            "--output",
            str(self.out),
            "--ready-file",
            str(self.ready),
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*(wrap or []), *cmd], stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT, env=ENV
            )

    def wait_ready(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def status(self) -> dict[str, str]:
        lines = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        return dict(line.split(":\t", 1) for line in lines if ":\t" in line)

    def rows(self, path: str) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        rows = [orjson.loads(line) for line in self.out.read_bytes().splitlines() if line.strip()]
        return [r for r in rows if r.get("path") == path]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@pytest.fixture
def confined(tmp_path: Path, chart_caps: list[str]) -> Iterator[ConfinedAgent]:
    agent = ConfinedAgent(tmp_path, chart_caps)
    yield agent
    agent.stop()


def test_chart_grants_exactly_what_the_doctor_knows(chart_caps: list[str]) -> None:
    assert chart_caps == ["BPF", "PERFMON", "SYS_PTRACE"]
    assert [f"CAP_{c}" for c in chart_caps] == list(CAPABILITIES)


def test_agent_captures_http_with_only_the_chart_capabilities(
    confined: ConfinedAgent, chart_caps: list[str], python_server: tuple[int, int]
) -> None:
    assert confined.wait_ready(), confined.log.read_text()[-3000:]
    status = confined.status()
    # the process that loaded and attached the probes holds exactly the chart's capabilities
    assert int(status["CapEff"], 16) == cap_mask(chart_caps)
    assert int(status["CapBnd"], 16) == cap_mask(chart_caps)
    assert status["NoNewPrivs"].strip() == "1"

    port, server_pid = python_server
    path = f"/least-privilege/{os.getpid()}"
    subprocess.run(
        ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"], check=True, timeout=10
    )
    deadline = time.monotonic() + 15
    while len(confined.rows(path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = confined.rows(path)
    assert {r["role"] for r in rows} == {"client", "server"}, rows
    for r in rows:
        assert (r["method"], r["status"], r["server_port"]) == ("GET", 200, port)
    assert [r["pid"] for r in rows if r["role"] == "server"] == [server_pid]
    assert confined.stop() == 0, confined.log.read_text()[-3000:]


@pytest.mark.parametrize("dropped", ["BPF", "PERFMON"])
def test_bpf_and_perfmon_are_each_needed_by_the_kernel(chart_caps: list[str], dropped: str) -> None:
    """Without the doctor in the way: loading the programs itself fails with EPERM."""
    rest = [c for c in chart_caps if c != dropped]
    proc = subprocess.run(
        [*confine(rest), sys.executable, "-c", LOAD_AND_ATTACH],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode != 0, proc.stdout
    assert "Operation not permitted (EPERM)" in proc.stderr
    ok = subprocess.run(
        [*confine(chart_caps), sys.executable, "-c", LOAD_AND_ATTACH],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=120,
    )
    assert ok.returncode == 0 and "attached" in ok.stdout, ok.stderr[-3000:]


@pytest.mark.parametrize("dropped", ["BPF", "PERFMON"])
def test_doctor_names_the_dropped_capability(chart_caps: list[str], dropped: str) -> None:
    rest = [c for c in chart_caps if c != dropped]
    proc = subprocess.run(
        [*confine(rest), sys.executable, "-m", "alaz", "doctor"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode != 0
    failed = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    assert any(f"CAP_{dropped}" in ln and "missing" in ln for ln in failed), proc.stdout
    assert not any(f"CAP_{c}" in ln for c in rest for ln in failed), proc.stdout


def test_doctor_passes_with_the_chart_capabilities(chart_caps: list[str]) -> None:
    proc = subprocess.run(
        [*confine(chart_caps), sys.executable, "-m", "alaz", "doctor"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout


def test_without_host_tracefs_only_sys_admin_could_mount_it(
    tmp_path: Path, chart_caps: list[str]
) -> None:
    """Why the chart mounts the host's tracefs: with only BPF and PERFMON the agent cannot
    mount it itself, and says so; mounting is the one thing CAP_SYS_ADMIN would be for."""
    need(shutil.which("unshare") is not None, "unshare (util-linux) is not installed")
    need(tracefs_root() == "/sys/kernel/tracing", "tracefs comes from debugfs on this host")
    hide = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'while umount /sys/kernel/tracing 2>/dev/null; do :; done; exec "$@"',
        "hide-tracefs",
    ]
    (tmp_path / "a").mkdir()
    agent = ConfinedAgent(tmp_path / "a", chart_caps, wrap=hide)
    assert not agent.wait_ready(30)
    assert agent.stop() != 0
    log = agent.log.read_text()
    assert "tracefs" in log and "mount" in log, log[-3000:]

    (tmp_path / "b").mkdir()
    admin = ConfinedAgent(tmp_path / "b", [*chart_caps, "SYS_ADMIN"], wrap=hide)
    try:
        assert admin.wait_ready(), admin.log.read_text()[-3000:]
        time.sleep(1)  # app.py writes the ready file just before it installs its SIGTERM handler
    finally:
        assert admin.stop() == 0


OPEN_OTHER_ROOT = (
    "import os, sys\n"
    "pid = sys.argv[1]\n"
    "for what, path in (('root', f'/proc/{pid}/root/lib/libssl.so.3'),"
    " ('exe', f'/proc/{pid}/exe')):\n"
    "    try:\n"
    "        with open(path, 'rb') as f: f.read(4)\n"
    "        print(what, 'ok')\n"
    "    except OSError as e:\n"
    "        print(what, e.strerror)\n"
)


@pytest.fixture
def other_root(tmp_path: Path) -> Iterator[int]:
    """A process in its own root directory (as a container's process is): /lib/libssl.so.3
    exists only there. Yields its pid."""
    libssl = Path("/usr/lib/x86_64-linux-gnu/libssl.so.3")
    need(libssl.exists(), "libssl3 is not installed")
    (tmp_path / "lib").mkdir()
    shutil.copy(libssl, tmp_path / "lib" / "libssl.so.3")
    code = (
        f"import os, time; os.chroot({str(tmp_path)!r}); os.chdir('/'); "
        "print(1, flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"1\n"
    yield proc.pid
    proc.kill()
    proc.wait()


def test_sys_ptrace_opens_binaries_in_other_containers(
    chart_caps: list[str], other_root: int
) -> None:
    """TLS capture probes the libssl (or Go binary) a process maps, read through
    /proc/<pid>/root or /proc/<pid>/exe when the process lives in another mount namespace; the
    kernel allows that only with CAP_SYS_PTRACE (PERFMON alone reads /proc/<pid>/maps)."""
    assert "SYS_PTRACE" in chart_caps
    rest = [c for c in chart_caps if c != "SYS_PTRACE"]
    cmd = [sys.executable, "-c", OPEN_OTHER_ROOT, str(other_root)]
    without = subprocess.run([*confine(rest), *cmd], capture_output=True, text=True, timeout=30)
    assert without.stdout.split("\n")[:2] == ["root Permission denied", "exe Permission denied"]
    maps = subprocess.run(
        [*confine(rest), "head", "-c", "1", f"/proc/{other_root}/maps"],
        capture_output=True,
        timeout=30,
    )
    assert maps.returncode == 0  # discovering what a process maps needs no SYS_PTRACE
    with_it = subprocess.run(
        [*confine(chart_caps), *cmd], capture_output=True, text=True, timeout=30
    )
    assert with_it.stdout.split("\n")[:2] == ["root ok", "exe ok"], with_it.stderr


def test_doctor_warns_without_sys_ptrace_but_passes(chart_caps: list[str]) -> None:
    rest = [c for c in chart_caps if c != "SYS_PTRACE"]
    code = "import sys\nfrom alaz.doctor import run_doctor\nsys.exit(run_doctor())"
    proc = subprocess.run(
        [*confine(rest), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warn capability CAP_SYS_PTRACE: missing CAP_SYS_PTRACE: TLS capture" in proc.stdout
    assert "FAIL" not in proc.stdout
