"""Can this node run the agent? Each check says what is missing, and why, in plain words.

Two kinds of check:

* **required** (`Check.required` is true): without it the agent cannot load, attach or capture.
  `check_host()` returns only these; `alaz run` runs them first and refuses to start with the same
  messages when one fails.
* **advisory**: the agent runs, but something around it is off or missing (CAP_SYS_PTRACE and
  uprobes for TLS capture, cgroup v2 for pod scoping, the host PID namespace, the Kubernetes API
  and its RBAC, the backend). `check_node()` and `check_cluster()` return these; they never
  stop `alaz run`.

`run_doctor()` is `alaz doctor`: every check, one line each (`ok`, `FAIL`, `warn`), then a
summary; the exit status is 1 when a required check failed. The Helm chart runs it as an init
container, so a node that cannot run the agent says why in
`kubectl logs <pod> -c doctor`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import platform
import resource
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TextIO

from alaz.errors import AlazError

__all__ = [
    "CAPABILITIES",
    "RBAC_VERBS",
    "Capability",
    "Check",
    "KubeAccess",
    "check_backend",
    "check_cluster",
    "check_config",
    "check_host",
    "check_kubernetes",
    "check_node",
    "ensure_tracefs",
    "format_checks",
    "rbac_rules",
    "run_doctor",
    "tracefs_root",
]

BTF_PATH = "/sys/kernel/btf/vmlinux"
TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
PROC_STATUS = "/proc/self/status"
UPROBE_PMU = "/sys/bus/event_source/devices/uprobe/type"
CGROUP_ROOT = "/sys/fs/cgroup"
LOCKDOWN = "/sys/kernel/security/lockdown"
MIN_KERNEL = (5, 11)  # task-local storage and BTF task pointers in tracing programs
MEMCG_KERNEL = (5, 11)  # BPF memory charged to the memory cgroup, no more RLIMIT_MEMLOCK
MEMLOCK_NEED = 64 << 20  # ring buffer (16 MiB default) + socket table + program images, rounded up
CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_SYS_RESOURCE, CAP_PERFMON, CAP_BPF = 19, 21, 24, 38, 39


class Capability(NamedTuple):
    """A capability the agent uses: its bit, why, and whether the agent cannot start without it."""

    bit: int
    why: str
    required: bool


# What the agent needs, and why (the same words are in the chart's values.yaml and
# docs/deploy.md; the chart grants exactly these, tests/unit/test_chart.py checks it).
CAPABILITIES: dict[str, Capability] = {
    "CAP_BPF": Capability(
        CAP_BPF, "needed to create BPF maps and load BPF programs (bpf(2))", True
    ),
    "CAP_PERFMON": Capability(
        CAP_PERFMON,
        "needed to load tracing programs and attach them to tracepoints and uprobes "
        "(perf_event_open(2))",
        True,
    ),
    "CAP_SYS_PTRACE": Capability(
        CAP_SYS_PTRACE,
        "TLS capture needs it to open the libssl and Go binaries of processes in other "
        "containers (/proc/<pid>/root, /proc/<pid>/exe); without it only plain-text traffic "
        "and TLS in the agent's own mount namespace are seen",
        False,
    ),
}

RBAC_VERBS = ("get", "list", "watch")


def rbac_rules() -> tuple[tuple[str, str], ...]:
    """(API group, resource) of every kind the Kubernetes collector lists and watches, read from
    its own table, so this check (and the chart's ClusterRole, which a test compares with it)
    follows the code."""
    from alaz.k8s.informers import KINDS

    rules = []
    for spec in KINDS.values():
        parts = spec.path.strip("/").split("/")  # api/v1/pods | apis/apps/v1/deployments
        rules.append(("" if parts[0] == "api" else parts[1], spec.name))
    return tuple(rules)


@dataclass(frozen=True)
class Check:
    """One finding. `required=False` marks an advisory check: it never stops `alaz run`."""

    name: str
    ok: bool
    detail: str
    required: bool = True

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.required else "warn")


# -- tracefs ----------------------------------------------------------------------------------


def tracefs_root() -> str:
    """Where libbpf looks for tracepoints: debugfs's tracing dir when present, else tracefs."""
    return DEBUGFS_TRACING if os.path.isdir(f"{DEBUGFS_TRACING}/events") else TRACEFS


def ensure_tracefs() -> None:
    """Mounts tracefs at /sys/kernel/tracing when nothing provides tracepoints yet.

    Mounting needs CAP_SYS_ADMIN; the chart instead mounts the host's tracefs (hostPath), so the
    agent never needs that capability.
    """
    if os.path.isdir(f"{tracefs_root()}/events"):
        return
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(b"tracefs", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise AlazError(
            f"mount tracefs at {TRACEFS}: {os.strerror(err)}; mount it on the host "
            f"(mount -t tracefs tracefs {TRACEFS}) and into the container"
        )


# -- host checks (required) -------------------------------------------------------------------


def _kernel_version(release: str | None = None) -> tuple[int, int]:
    parts = (release or platform.release()).split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _effective_caps() -> int:
    try:
        with open(PROC_STATUS) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _has(caps: int, bit: int) -> bool:
    return bool(caps >> bit & 1)


def _check_kernel() -> Check:
    ver = _kernel_version()
    ok = ver >= MIN_KERNEL
    need = f"{MIN_KERNEL[0]}.{MIN_KERNEL[1]}"
    return Check(
        "kernel",
        ok,
        platform.release()
        + (
            ""
            if ok
            else f": too old, the probes need Linux {need}+ (task-local storage in "
            "tracing programs, the BPF ring buffer, CAP_BPF)"
        ),
    )


def _check_capability(name: str, caps: int) -> Check:
    bit, why, required = CAPABILITIES[name]
    title = f"capability {name}"
    if _has(caps, bit):
        return Check(title, True, "present", required)
    if required and _has(caps, CAP_SYS_ADMIN):  # CAP_SYS_ADMIN implies BPF and PERFMON
        return Check(title, True, "covered by CAP_SYS_ADMIN", required)
    short = name.removeprefix("CAP_")
    return Check(
        title,
        False,
        f"missing {name}: {why}; add {short} to the container's capabilities "
        "(the Helm chart does), or run as root on the host",
        required,
    )


def _check_btf() -> Check:
    if os.path.exists(BTF_PATH):
        return Check("btf", True, BTF_PATH)
    return Check(
        "btf",
        False,
        f"{BTF_PATH} is missing: the kernel was built without CONFIG_DEBUG_INFO_BTF, which CO-RE "
        "programs need",
    )


def _check_tracefs(caps: int, mount_error: str | None = None) -> Check:
    root = tracefs_root()
    if os.path.isdir(f"{root}/events"):
        return Check("tracefs", True, root)
    how = (
        f"mount it on the host (mount -t tracefs tracefs {TRACEFS}); the Helm chart mounts the "
        "host's tracefs into the pod"
    )
    if mount_error:
        return Check("tracefs", False, f"not mounted, and {mount_error}")
    if not _has(caps, CAP_SYS_ADMIN):
        how += "; alaz run cannot mount it itself without CAP_SYS_ADMIN"
    return Check("tracefs", False, f"tracefs is not mounted at {TRACEFS}: {how}")


def _check_tracepoints(tracepoints: Sequence[str]) -> Check:
    root = tracefs_root()
    if not os.path.isdir(f"{root}/events"):
        return Check("tracepoints", False, "cannot list tracepoints: tracefs is not mounted")
    missing = [tp for tp in tracepoints if not os.path.isdir(f"{root}/events/{tp}")]
    if missing:
        hint = (
            " (syscall tracepoints need CONFIG_FTRACE_SYSCALLS)"
            if any(tp.startswith("syscalls/") for tp in missing)
            else ""
        )
        return Check("tracepoints", False, f"the kernel lacks {', '.join(missing)}{hint}")
    return Check("tracepoints", True, f"all {len(tracepoints)} present under {root}/events")


def _check_libbpf() -> Check:
    from alaz.bpf._libbpf import load_libbpf

    try:
        major, minor = load_libbpf()
    except AlazError as exc:
        return Check("libbpf", False, str(exc))
    if major < 1:
        return Check("libbpf", False, f"libbpf {major}.{minor} is too old: 1.0+ is needed")
    return Check("libbpf", True, f"libbpf.so.1 {major}.{minor}")


def _check_memlock(caps: int, limits: tuple[int, int] | None = None) -> Check:
    if _kernel_version() >= MEMCG_KERNEL:
        return Check("memlock", True, "not needed: the kernel charges BPF memory to the cgroup")
    soft, hard = limits or resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if hard == resource.RLIM_INFINITY:
        return Check("memlock", True, "RLIMIT_MEMLOCK can be raised to unlimited")
    if _has(caps, CAP_SYS_RESOURCE):
        return Check("memlock", True, "CAP_SYS_RESOURCE lets libbpf raise RLIMIT_MEMLOCK")
    if soft != resource.RLIM_INFINITY and soft < MEMLOCK_NEED:
        return Check(
            "memlock",
            False,
            f"missing CAP_SYS_RESOURCE and RLIMIT_MEMLOCK is {soft >> 10} KiB: kernels before "
            f"{MEMCG_KERNEL[0]}.{MEMCG_KERNEL[1]} charge BPF maps to RLIMIT_MEMLOCK, and the "
            f"agent needs about {MEMLOCK_NEED >> 20} MiB; add SYS_RESOURCE (chart value "
            "extraCapabilities) or raise the limit",
        )
    return Check("memlock", True, f"RLIMIT_MEMLOCK is {soft >> 20} MiB")


def _check_lockdown() -> Check:
    try:
        with open(LOCKDOWN) as f:
            text = f.read()
    except OSError:
        return Check("lockdown", True, "not reported (securityfs not mounted): assuming none")
    mode = text[text.find("[") + 1 : text.find("]")] if "[" in text else text.strip()
    if mode == "confidentiality":
        return Check(
            "lockdown",
            False,
            "the kernel is locked down in confidentiality mode, which forbids BPF programs that "
            "read kernel memory; boot with lockdown=integrity or none",
        )
    return Check("lockdown", True, mode or "none")


def check_host(mount_tracefs: bool = False) -> list[Check]:
    """The required checks, in the order a person would fix them.

    With `mount_tracefs`, tries to mount tracefs first (what `alaz run` does).
    """
    from alaz.capture.probes import required_tracepoints

    mount_error = None
    if mount_tracefs:
        try:
            ensure_tracefs()
        except AlazError as exc:
            mount_error = str(exc)
    caps = _effective_caps()
    return [
        _check_kernel(),
        *(_check_capability(name, caps) for name, cap in CAPABILITIES.items() if cap.required),
        _check_btf(),
        _check_tracefs(caps, mount_error),
        _check_tracepoints(required_tracepoints()),
        _check_libbpf(),
        _check_memlock(caps),
        _check_lockdown(),
    ]


# -- node checks (advisory) -------------------------------------------------------------------


def _check_uprobes() -> Check:
    if os.path.exists(UPROBE_PMU):
        return Check("uprobes", True, f"supported ({UPROBE_PMU})", required=False)
    return Check(
        "uprobes",
        False,
        f"{UPROBE_PMU} is missing (CONFIG_UPROBE_EVENTS): TLS capture (uprobes on SSL_read/"
        "SSL_write and Go crypto/tls) cannot work on this node",
        required=False,
    )


def _check_cgroup() -> Check:
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return Check("cgroup", True, f"v2 (unified hierarchy at {CGROUP_ROOT})", required=False)
    if os.path.exists(f"{CGROUP_ROOT}/unified/cgroup.controllers"):
        return Check(
            "cgroup",
            True,
            f"hybrid: v1 controllers, v2 at {CGROUP_ROOT}/unified",
            required=False,
        )
    if os.path.isdir(CGROUP_ROOT) and os.listdir(CGROUP_ROOT):
        detail = "v1 only"
    else:
        detail = f"no cgroup filesystem at {CGROUP_ROOT}"
    return Check(
        "cgroup",
        False,
        f"{detail}: telling pods apart by cgroup id needs cgroup v2 (all requests still captured)",
        required=False,
    )


def _check_pid_namespace() -> Check:
    nspid: list[str] = []
    try:
        with open(PROC_STATUS) as f:
            nspid = next((ln.split()[1:] for ln in f if ln.startswith("NSpid:")), [])
    except OSError:
        pass
    if len(nspid) <= 1:
        return Check("pid namespace", True, "the host's (hostPID)", required=False)
    return Check(
        "pid namespace",
        False,
        "a container's own, not the host's: the kernel reports host pids, which this /proc "
        "cannot see; run the pod with hostPID: true (the chart does)",
        required=False,
    )


def check_node() -> list[Check]:
    """Advisory checks of this node: optional capabilities, uprobes, cgroup version, PID
    namespace."""
    caps = _effective_caps()
    optional = [_check_capability(n, caps) for n, c in CAPABILITIES.items() if not c.required]
    return [*optional, _check_uprobes(), _check_cgroup(), _check_pid_namespace()]


def check_config(environ: Mapping[str, str]) -> Check:
    """The agent's settings (the Go agent's environment variables) parse and validate."""
    from alaz.config import load_config

    try:
        config = load_config(environ)
    except AlazError as exc:
        return Check("config", False, str(exc))
    sink = f"backend {config.backend.host}" if config.backend_enabled else "JSON lines"
    return Check("config", True, f"valid; rows go to {sink}")


# -- cluster checks (advisory) ----------------------------------------------------------------


class KubeAccess(Protocol):
    """What the Kubernetes check asks the API server (a fake in tests)."""

    async def list_pods(self) -> None:
        """Lists one pod in any namespace; raises on an error."""

    async def can(self, verb: str, group: str, resource: str) -> bool:
        """A SelfSubjectAccessReview: may this identity `verb` `resource` cluster-wide?"""


def _in_cluster(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and environ.get("IN_CLUSTER") != "false"


def _kubeconfig(environ: Mapping[str, str]) -> str | None:
    path = environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return path if os.path.exists(path.split(os.pathsep)[0]) else None


class _KubeAsyncioAccess:
    """`KubeAccess` through kubernetes-asyncio (imported only when a cluster is configured)."""

    def __init__(self, kube: Any, api_client: Any, timeout: float) -> None:
        self._kube = kube
        self.api = api_client
        self._timeout = timeout

    @classmethod
    async def connect(cls, environ: Mapping[str, str], timeout: float) -> _KubeAsyncioAccess:
        kube = importlib.import_module("kubernetes_asyncio")
        cfg = kube.client.Configuration()
        if _in_cluster(environ):
            kube.config.load_incluster_config(client_configuration=cfg)
        else:
            await kube.config.load_kube_config(
                config_file=_kubeconfig(environ), client_configuration=cfg
            )
        return cls(kube, kube.client.ApiClient(configuration=cfg), timeout)

    async def list_pods(self) -> None:
        core = self._kube.client.CoreV1Api(self.api)
        await core.list_pod_for_all_namespaces(limit=1, _request_timeout=self._timeout)

    async def can(self, verb: str, group: str, resource: str) -> bool:
        c = self._kube.client
        review = c.V1SelfSubjectAccessReview(
            spec=c.V1SelfSubjectAccessReviewSpec(
                resource_attributes=c.V1ResourceAttributes(
                    verb=verb, group=group, resource=resource
                )
            )
        )
        api = c.AuthorizationV1Api(self.api)
        answer = await api.create_self_subject_access_review(
            body=review, _request_timeout=self._timeout
        )
        return bool(answer.status.allowed)

    async def aclose(self) -> None:
        await self.api.close()


def _api_error(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        reason = getattr(exc, "reason", "") or ""
        return f"HTTP {status} {reason}".strip()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _rbac_gaps(access: KubeAccess) -> list[str]:
    asks = [(verb, group, res) for group, res in rbac_rules() for verb in RBAC_VERBS]
    answers = await asyncio.gather(*(access.can(*ask) for ask in asks))
    return [
        f"{verb} {res}" + (f".{group}" if group else "")
        for (verb, group, res), allowed in zip(asks, answers, strict=True)
        if not allowed
    ]


async def check_kubernetes(
    environ: Mapping[str, str], access: KubeAccess | None = None, timeout: float = 5.0
) -> Check:
    """Can the agent reach the API server and list/watch what it needs? (advisory)"""
    name = "kubernetes"
    if access is None and not _in_cluster(environ) and not _kubeconfig(environ):
        return Check(
            name,
            True,
            "not in a cluster (no in-cluster service account, no KUBECONFIG): requests are "
            "not named after Kubernetes objects",
            required=False,
        )
    owned: _KubeAsyncioAccess | None = None
    try:
        if access is None:
            owned = access = await _KubeAsyncioAccess.connect(environ, timeout)
        return await _check_api(access, timeout)
    except ImportError:
        return Check(name, False, "kubernetes-asyncio is not installed", required=False)
    except Exception as exc:  # config loading: a broken kubeconfig, a missing token file
        return Check(name, False, f"load the client config: {_api_error(exc)}", required=False)
    finally:
        if owned is not None:
            await owned.aclose()


async def _check_api(access: KubeAccess, timeout: float) -> Check:
    name = "kubernetes"
    try:
        async with asyncio.timeout(timeout * 2):
            await access.list_pods()
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status in (401, 403):
            why = "forbidden" if status == 403 else "unauthorized"
            return Check(
                name,
                False,
                f"the API server answered, but listing pods is {why} ({_api_error(exc)}): "
                "check the ClusterRole and ClusterRoleBinding of the agent's service account",
                required=False,
            )
        return Check(name, False, f"cannot reach the API server: {_api_error(exc)}", required=False)
    try:
        async with asyncio.timeout(timeout * 2):
            gaps = await _rbac_gaps(access)
    except Exception as exc:
        return Check(
            name,
            True,
            f"can list pods; could not review the other permissions ({_api_error(exc)})",
            required=False,
        )
    if gaps:
        return Check(
            name,
            False,
            f"can list pods, but RBAC denies: {', '.join(gaps)} (the agent's ClusterRole "
            "needs get/list/watch on each)",
            required=False,
        )
    return Check(
        name, True, f"API reachable; RBAC allows all {len(rbac_rules())} kinds", required=False
    )


async def check_backend(
    environ: Mapping[str, str], timeout: float = 3.0, transport: Any = None
) -> Check:
    """Does BACKEND_HOST answer HTTP at all? Any status counts as reachable. (advisory)"""
    host = environ.get("BACKEND_HOST", "")
    if not host:
        return Check(
            "backend", True, "BACKEND_HOST not set: rows are written as JSON lines", required=False
        )
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as client:
            response = await client.get(host)
    except httpx.HTTPError as exc:
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else _api_error(exc)
        return Check("backend", False, f"cannot reach {host}: {what}", required=False)
    return Check("backend", True, f"{host} answers (HTTP {response.status_code})", required=False)


async def check_cluster(
    environ: Mapping[str, str], access: KubeAccess | None = None
) -> list[Check]:
    """The advisory checks that talk to the network: Kubernetes API and RBAC, the backend."""
    kube, backend = await asyncio.gather(check_kubernetes(environ, access), check_backend(environ))
    return [kube, backend]


# -- output -----------------------------------------------------------------------------------


def format_checks(checks: Sequence[Check]) -> str:
    """One line per check: `ok  `, `FAIL` or `warn`, the name, the detail."""
    return "\n".join(f"{c.status:<4} {c.name}: {c.detail}" for c in checks)


def run_doctor(environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """`alaz doctor`: prints every check and a summary; 1 when a required check failed."""
    env = os.environ if environ is None else environ
    stream = out or sys.stdout
    checks = [*check_host(), *check_node(), check_config(env), *asyncio.run(check_cluster(env))]
    print(format_checks(checks), file=stream)
    failed = [c for c in checks if c.status == "FAIL"]
    warned = [c for c in checks if c.status == "warn"]
    if failed:
        summary = f"{len(failed)} problem(s) found: this node cannot run alaz"
    else:
        summary = "this node can run alaz"
    if warned:
        summary += f" ({len(warned)} warning(s))"
    print(f"\n{summary}", file=stream)
    return 1 if failed else 0
