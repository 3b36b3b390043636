"""`alaz doctor` checks against fake files, fake limits and fake (or local) API servers."""

from __future__ import annotations

import io
import json
import platform
import resource
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from alaz import doctor
from alaz.doctor import Check
from alaz.errors import AlazError

CAP = {"BPF": 1 << 39, "PERFMON": 1 << 38, "SYS_ADMIN": 1 << 21, "SYS_RESOURCE": 1 << 24}


def _status(tmp_path: Path, caps: int, nspid: str = "4242") -> str:
    p = tmp_path / "status"
    p.write_text(f"Name:\tpython\nNSpid:\t{nspid}\nCapInh:\t0\nCapEff:\t{caps:016x}\n")
    return str(p)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Points every host path at a fake tree; call it to set caps, kernel and tracepoints."""

    def setup(
        caps: int = CAP["BPF"] | CAP["PERFMON"],
        release: str = "6.18.4-test",
        tracepoints: tuple[str, ...] | None = None,
        btf: bool = True,
    ) -> None:
        tracing = tmp_path / "tracing"
        if tracepoints is not None:
            for tp in tracepoints:
                (tracing / "events" / tp).mkdir(parents=True)
        if btf:
            (tmp_path / "vmlinux").write_bytes(b"\x9f\xeb")
        monkeypatch.setattr(doctor, "TRACEFS", str(tracing))
        monkeypatch.setattr(doctor, "DEBUGFS_TRACING", str(tmp_path / "debug" / "tracing"))
        monkeypatch.setattr(doctor, "BTF_PATH", str(tmp_path / "vmlinux"))
        monkeypatch.setattr(doctor, "PROC_STATUS", _status(tmp_path, caps))
        monkeypatch.setattr(doctor, "LOCKDOWN", str(tmp_path / "lockdown"))
        monkeypatch.setattr(platform, "release", lambda: release)

    return setup


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


# -- Check and formatting -----------------------------------------------------------------------


def test_status_words_and_format() -> None:
    checks = [
        Check("a", True, "fine"),
        Check("b", False, "broken"),
        Check("c", False, "meh", required=False),
    ]
    assert [c.status for c in checks] == ["ok", "FAIL", "warn"]
    assert doctor.format_checks(checks) == "ok   a: fine\nFAIL b: broken\nwarn c: meh"


# -- required host checks -----------------------------------------------------------------------


def test_check_host_all_good_on_fake_tree(host: Callable[..., None]) -> None:
    from alaz.capture.probes import required_tracepoints

    host(tracepoints=tuple(required_tracepoints()))
    checks = doctor.check_host()
    assert all(c.required for c in checks)
    bad = [c for c in checks if not c.ok and c.name != "libbpf"]
    assert bad == []
    assert {
        "kernel",
        "capability CAP_BPF",
        "capability CAP_PERFMON",
        "btf",
        "tracefs",
        "tracepoints",
        "memlock",
        "lockdown",
    } <= _by_name(checks).keys()


@pytest.mark.parametrize(
    ("caps", "missing"),
    [
        (0, {"CAP_BPF", "CAP_PERFMON"}),
        (CAP["BPF"], {"CAP_PERFMON"}),
        (CAP["PERFMON"], {"CAP_BPF"}),
        (CAP["BPF"] | CAP["PERFMON"], set()),
        (CAP["SYS_ADMIN"], set()),
    ],
)
def test_each_capability_is_named_with_its_reason(
    host: Callable[..., None], caps: int, missing: set[str]
) -> None:
    host(caps=caps, tracepoints=())
    checks = [c for c in doctor.check_host() if c.name.startswith("capability ")]
    failed = {c.name.removeprefix("capability ") for c in checks if not c.ok}
    assert failed == missing
    for c in checks:
        if not c.ok:
            name = c.name.removeprefix("capability ")
            assert f"missing {name}" in c.detail
            assert ("bpf(2)" if name == "CAP_BPF" else "perf_event_open(2)") in c.detail
        elif caps == CAP["SYS_ADMIN"]:
            assert "CAP_SYS_ADMIN" in c.detail


def test_old_kernel_fails(host: Callable[..., None]) -> None:
    host(release="5.4.0-150-generic", tracepoints=())
    kernel = _by_name(doctor.check_host())["kernel"]
    assert not kernel.ok and "5.11+" in kernel.detail


def test_missing_btf(host: Callable[..., None]) -> None:
    host(btf=False, tracepoints=())
    btf = _by_name(doctor.check_host())["btf"]
    assert not btf.ok and "CONFIG_DEBUG_INFO_BTF" in btf.detail


def test_tracefs_not_mounted_says_how(host: Callable[..., None]) -> None:
    host(tracepoints=None)
    checks = _by_name(doctor.check_host())
    assert not checks["tracefs"].ok
    assert "mount -t tracefs" in checks["tracefs"].detail
    assert "CAP_SYS_ADMIN" in checks["tracefs"].detail  # the fake process lacks it
    assert not checks["tracepoints"].ok


def test_missing_tracepoints_are_named(host: Callable[..., None]) -> None:
    host(tracepoints=("sched/sched_process_exec", "sock/inet_sock_set_state"))
    tps = _by_name(doctor.check_host())["tracepoints"]
    assert not tps.ok
    assert "syscalls/sys_enter_read" in tps.detail and "CONFIG_FTRACE_SYSCALLS" in tps.detail
    assert "sched/sched_process_exec" not in tps.detail


def test_debugfs_tracing_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "debug" / "tracing" / "events").mkdir(parents=True)
    monkeypatch.setattr(doctor, "DEBUGFS_TRACING", str(tmp_path / "debug" / "tracing"))
    assert doctor.tracefs_root() == str(tmp_path / "debug" / "tracing")


def test_mount_error_is_reported(
    host: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    host(tracepoints=None)

    def refuse() -> None:
        raise AlazError("mount tracefs at /x: Operation not permitted")

    monkeypatch.setattr(doctor, "ensure_tracefs", refuse)
    tracefs = _by_name(doctor.check_host(mount_tracefs=True))["tracefs"]
    assert not tracefs.ok and "Operation not permitted" in tracefs.detail


@pytest.mark.parametrize(
    ("release", "caps", "limits", "ok"),
    [
        ("6.1.0", 0, (64 << 10, 64 << 10), True),  # memcg accounting: no limit applies
        ("5.10.0", 0, (64 << 10, 64 << 10), False),
        ("5.10.0", CAP["SYS_RESOURCE"], (64 << 10, 64 << 10), True),
        ("5.10.0", 0, (64 << 10, resource.RLIM_INFINITY), True),
        ("5.10.0", 0, (128 << 20, 128 << 20), True),
    ],
)
def test_memlock_on_old_kernels(
    monkeypatch: pytest.MonkeyPatch, release: str, caps: int, limits: tuple[int, int], ok: bool
) -> None:
    monkeypatch.setattr(platform, "release", lambda: release)
    check = doctor._check_memlock(caps, limits)
    assert check.ok is ok
    if not ok:
        assert "CAP_SYS_RESOURCE" in check.detail and "64 KiB" in check.detail


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("[none] integrity confidentiality\n", True),
        ("none [integrity] confidentiality\n", True),
        ("none integrity [confidentiality]\n", False),
    ],
)
def test_lockdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, ok: bool) -> None:
    (tmp_path / "lockdown").write_text(text)
    monkeypatch.setattr(doctor, "LOCKDOWN", str(tmp_path / "lockdown"))
    check = doctor._check_lockdown()
    assert check.ok is ok
    if not ok:
        assert "confidentiality" in check.detail


# -- advisory node checks ------------------------------------------------------------------------


def test_node_checks_are_advisory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "UPROBE_PMU", str(tmp_path / "nope"))
    monkeypatch.setattr(doctor, "CGROUP_ROOT", str(tmp_path / "cgroup"))
    monkeypatch.setattr(doctor, "PROC_STATUS", _status(tmp_path, 0, nspid="4242\t7"))
    checks = _by_name(doctor.check_node())
    assert {c.status for c in checks.values()} == {"warn"}
    assert "CONFIG_UPROBE_EVENTS" in checks["uprobes"].detail
    assert "missing CAP_SYS_PTRACE: TLS capture" in checks["capability CAP_SYS_PTRACE"].detail
    assert "no cgroup filesystem" in checks["cgroup"].detail
    assert "hostPID" in checks["pid namespace"].detail


@pytest.mark.parametrize(
    ("layout", "ok", "word"),
    [
        ("cgroup.controllers", True, "v2"),
        ("unified/cgroup.controllers", True, "hybrid"),
        ("memory/tasks", False, "v1 only"),
    ],
)
def test_cgroup_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str, ok: bool, word: str
) -> None:
    f = tmp_path / "cgroup" / layout
    f.parent.mkdir(parents=True)
    f.write_text("")
    monkeypatch.setattr(doctor, "CGROUP_ROOT", str(tmp_path / "cgroup"))
    check = doctor._check_cgroup()
    assert (check.ok, check.required) == (ok, False) and word in check.detail


def test_uprobes_host_pid_and_ptrace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "type").write_text("7\n")
    monkeypatch.setattr(doctor, "UPROBE_PMU", str(tmp_path / "type"))
    monkeypatch.setattr(doctor, "PROC_STATUS", _status(tmp_path, 1 << 19, nspid="4242"))
    assert doctor._check_uprobes().ok
    assert doctor._check_pid_namespace().ok
    ptrace = _by_name(doctor.check_node())["capability CAP_SYS_PTRACE"]
    assert ptrace.ok and not ptrace.required
    # CAP_SYS_ADMIN does not stand in for CAP_SYS_PTRACE
    monkeypatch.setattr(doctor, "PROC_STATUS", _status(tmp_path, CAP["SYS_ADMIN"]))
    assert _by_name(doctor.check_node())["capability CAP_SYS_PTRACE"].status == "warn"


def test_config_check() -> None:
    assert doctor.check_config({}).ok
    bad = doctor.check_config({"BACKEND_HOST": "https://b.example"})
    assert not bad.ok and bad.required and "MONITORING_ID" in bad.detail
    assert not doctor.check_config({"ALAZ_CAPTURE_BYTES": "lots"}).ok


# -- Kubernetes -----------------------------------------------------------------------------------


class FakeAccess:
    def __init__(
        self, list_error: Exception | None = None, denied: frozenset[tuple[str, str]] = frozenset()
    ) -> None:
        self.list_error = list_error
        self.denied = denied
        self.asked: list[tuple[str, str, str]] = []

    async def list_pods(self) -> None:
        if self.list_error:
            raise self.list_error

    async def can(self, verb: str, group: str, resource: str) -> bool:
        self.asked.append((verb, group, resource))
        return (verb, resource) not in self.denied


class ApiError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


async def test_kubernetes_not_in_a_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    check = await doctor.check_kubernetes({})
    assert check.ok and not check.required and "not in a cluster" in check.detail


async def test_kubernetes_all_allowed() -> None:
    access = FakeAccess()
    check = await doctor.check_kubernetes({}, access)
    assert check.ok and "RBAC allows" in check.detail
    assert len(access.asked) == len(doctor.rbac_rules()) * 3
    assert ("watch", "discovery.k8s.io", "endpointslices") in access.asked
    assert ("list", "batch", "jobs") in access.asked


def test_rbac_rules_follow_the_collectors_kinds() -> None:
    from alaz.k8s.informers import KINDS

    rules = doctor.rbac_rules()
    assert [res for _, res in rules] == list(KINDS)
    assert ("", "pods") in rules and ("apps", "deployments") in rules


async def test_kubernetes_rbac_gaps_are_named() -> None:
    access = FakeAccess(denied=frozenset({("watch", "endpointslices"), ("list", "deployments")}))
    check = await doctor.check_kubernetes({}, access)
    assert check.status == "warn"
    assert "watch endpointslices.discovery.k8s.io" in check.detail
    assert "list deployments.apps" in check.detail
    assert "pods" not in check.detail.split("denies:")[1]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ApiError(403, "Forbidden"), "forbidden (HTTP 403 Forbidden)"),
        (ApiError(401, "Unauthorized"), "unauthorized"),
        (OSError("connection refused"), "cannot reach the API server"),
    ],
)
async def test_kubernetes_list_failures(error: Exception, words: str) -> None:
    check = await doctor.check_kubernetes({}, FakeAccess(list_error=error))
    assert check.status == "warn" and words in check.detail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def fake_apiserver() -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """A minimal API server (aiohttp): lists pods, answers access reviews per `state`."""
    pytest.importorskip("kubernetes_asyncio")
    from aiohttp import web

    state: dict[str, Any] = {"pods_status": 200, "deny": set(), "auth": []}

    async def pods(request: web.Request) -> web.Response:
        state["auth"].append(request.headers.get("Authorization"))
        if state["pods_status"] != 200:
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Forbidden",
                "code": state["pods_status"],
            }
            return web.json_response(body, status=state["pods_status"])
        return web.json_response(
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"},
                "items": [],
            }
        )

    async def review(request: web.Request) -> web.Response:
        body = await request.json()
        attrs = body["spec"]["resourceAttributes"]
        allowed = (attrs["verb"], attrs["resource"]) not in state["deny"]
        body["status"] = {"allowed": allowed}
        return web.json_response(body, status=201)

    app = web.Application()
    app.router.add_get("/api/v1/pods", pods)
    app.router.add_post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield port, state
    await runner.cleanup()


def _kubeconfig(tmp_path: Path, port: int) -> str:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "s3cret"}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return str(path)


async def test_kubernetes_asyncio_against_local_apiserver(
    fake_apiserver: tuple[int, dict[str, Any]], tmp_path: Path
) -> None:
    port, state = fake_apiserver
    env = {"KUBECONFIG": _kubeconfig(tmp_path, port)}
    check = await doctor.check_kubernetes(env)
    assert check.ok, check.detail
    assert state["auth"] == ["Bearer s3cret"]

    state["deny"] = {("watch", "statefulsets")}
    check = await doctor.check_kubernetes(env)
    assert check.status == "warn" and "watch statefulsets.apps" in check.detail

    state["pods_status"] = 403
    check = await doctor.check_kubernetes(env)
    assert check.status == "warn" and "forbidden" in check.detail


async def test_kubernetes_asyncio_unreachable(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_asyncio")
    env = {"KUBECONFIG": _kubeconfig(tmp_path, _free_port())}
    check = await doctor.check_kubernetes(env, timeout=2)
    assert check.status == "warn" and "cannot reach the API server" in check.detail


async def test_kubernetes_broken_kubeconfig(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes_asyncio")
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\n")
    check = await doctor.check_kubernetes({"KUBECONFIG": str(tmp_path / "kc")})
    assert check.status == "warn" and "load the client config" in check.detail


# -- backend ------------------------------------------------------------------------------------


async def test_backend_not_set() -> None:
    check = await doctor.check_backend({})
    assert check.ok and "JSON lines" in check.detail


async def test_backend_any_status_is_reachable() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(404)

    transport = httpx.MockTransport(answer)
    check = await doctor.check_backend({"BACKEND_HOST": "https://b.example/api"}, 1, transport)
    assert check.ok and "HTTP 404" in check.detail
    assert seen == ["https://b.example/api"]


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (httpx.ConnectError("refused"), "ConnectError: refused"),
        (httpx.ReadTimeout("x"), "timed out"),
    ],
)
async def test_backend_unreachable(exc: Exception, words: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    check = await doctor.check_backend(
        {"BACKEND_HOST": "https://b.example"}, 1, httpx.MockTransport(fail)
    )
    assert check.status == "warn" and words in check.detail and not check.required


# -- run_doctor -----------------------------------------------------------------------------------


def _patch_all(monkeypatch: pytest.MonkeyPatch, host: list[Check], node: list[Check]) -> None:
    monkeypatch.setattr(doctor, "check_host", lambda: host)
    monkeypatch.setattr(doctor, "check_node", lambda: node)


def test_run_doctor_fails_only_on_required(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_all(
        monkeypatch,
        [Check("kernel", True, "6.18")],
        [Check("uprobes", False, "missing", required=False)],
    )
    out = io.StringIO()
    assert doctor.run_doctor({}, out) == 0
    assert "warn uprobes: missing" in out.getvalue()
    assert "this node can run alaz (1 warning(s))" in out.getvalue()

    _patch_all(monkeypatch, [Check("capability CAP_BPF", False, "missing CAP_BPF")], [])
    out = io.StringIO()
    assert doctor.run_doctor({}, out) == 1
    assert "FAIL capability CAP_BPF" in out.getvalue()
    assert "1 problem(s) found" in out.getvalue()
