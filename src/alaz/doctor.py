"""Can this node run the agent? Each check says what is missing, in plain words.

`alaz doctor` prints every check; `alaz run` runs the same checks first and refuses to start
with the same messages when one fails.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from alaz.errors import AlazError

__all__ = ["Check", "check_host", "ensure_tracefs", "format_checks", "tracefs_root"]

BTF_PATH = "/sys/kernel/btf/vmlinux"
TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
MIN_KERNEL = (5, 8)  # BPF ring buffer
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def tracefs_root() -> str:
    """Where libbpf looks for tracepoints: debugfs's tracing dir when present, else tracefs."""
    return DEBUGFS_TRACING if os.path.isdir(f"{DEBUGFS_TRACING}/events") else TRACEFS


def ensure_tracefs() -> None:
    """Mounts tracefs at /sys/kernel/tracing when nothing provides tracepoints yet (root only)."""
    if os.path.isdir(f"{tracefs_root()}/events"):
        return
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(b"tracefs", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise AlazError(f"mount tracefs at {TRACEFS}: {os.strerror(err)}; mount it on the host "
                        f"(mount -t tracefs tracefs {TRACEFS}) or mount it into the container")


def _kernel_version() -> tuple[int, int]:
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _check_caps() -> Check:
    caps = _effective_caps()
    has = lambda c: bool(caps >> c & 1)  # noqa: E731
    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return Check("capabilities", True, "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) present")
    missing = [n for c, n in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")) if not has(c)]
    return Check("capabilities", False,
                 f"missing {', '.join(missing)}: needed to load BPF programs and attach them to "
                 "tracepoints (or run as root / with CAP_SYS_ADMIN)")


def _check_kernel() -> Check:
    ver = _kernel_version()
    ok = ver >= MIN_KERNEL
    return Check("kernel", ok, f"{platform.release()}" + ("" if ok else
                 f": too old, the BPF ring buffer needs Linux {MIN_KERNEL[0]}.{MIN_KERNEL[1]}+"))


def _check_btf() -> Check:
    if os.path.exists(BTF_PATH):
        return Check("btf", True, BTF_PATH)
    return Check("btf", False, f"{BTF_PATH} is missing: the kernel was built without "
                 "CONFIG_DEBUG_INFO_BTF, which CO-RE programs need")


def _check_tracefs() -> Check:
    root = tracefs_root()
    if os.path.isdir(f"{root}/events"):
        return Check("tracefs", True, root)
    return Check("tracefs", False, f"tracefs is not mounted at {TRACEFS} (alaz run mounts it "
                 f"when it can; else: mount -t tracefs tracefs {TRACEFS})")


def _check_tracepoints(tracepoints: list[str]) -> Check:
    root = tracefs_root()
    if not os.path.isdir(f"{root}/events"):
        return Check("tracepoints", False, "cannot list tracepoints: tracefs is not mounted")
    missing = [tp for tp in tracepoints if not os.path.isdir(f"{root}/events/{tp}")]
    if missing:
        return Check("tracepoints", False, f"missing: {', '.join(missing)}")
    return Check("tracepoints", True, f"{len(tracepoints)} present")


def _check_libbpf() -> Check:
    from alaz.bpf._libbpf import load_libbpf

    try:
        major, minor = load_libbpf()
    except AlazError as exc:
        return Check("libbpf", False, str(exc))
    if major < 1:
        return Check("libbpf", False, f"libbpf {major}.{minor} is too old: 1.0+ is needed")
    return Check("libbpf", True, f"libbpf.so.1 {major}.{minor}")


def check_host(mount_tracefs: bool = False) -> list[Check]:
    """Every check, in the order a person would fix them."""
    from alaz.capture.probes import required_tracepoints

    if mount_tracefs:
        try:
            ensure_tracefs()
        except AlazError:
            pass  # the tracefs check below reports it
    return [_check_kernel(), _check_caps(), _check_btf(), _check_tracefs(),
            _check_tracepoints(required_tracepoints()), _check_libbpf()]


def format_checks(checks: list[Check]) -> str:
    return "\n".join(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks)
