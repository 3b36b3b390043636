"""What the agent loads and attaches, as plain data, and `Probes`, the live set built from it.

The BPF objects live in the package (alaz/objects/*.bpf.o). They share their maps (SHARED_MAPS):
the ring buffer, the per-socket table, the counters... The first object loaded creates them;
the others reuse their fds, so every program writes into one ring and one socket table.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources

from alaz.bpf._libbpf import LIB, check_int
from alaz.bpf.object import BpfObject
from alaz.bpf.ringbuf import RingReader
from alaz.capture.records import COUNTER_NAMES, MAX_CAPTURE, MAX_CHUNKS
from alaz.doctor import tracefs_root
from alaz.errors import BpfError, ConfigError, KernelFeatureError
from alaz.log import get_logger

__all__ = ["OBJECTS", "SHARED_MAPS", "ProbeSpec", "Probes", "required_tracepoints"]


@dataclass(frozen=True)
class ProbeSpec:
    """One BPF object and the tracepoints its programs attach to."""

    name: str  # alaz/objects/<name>.bpf.o
    tracepoints: tuple[str, ...]  # "category/name"
    optional: tuple[str, ...] = ()  # tracepoints an older or other-arch kernel may lack
    captures: bool = False  # builds data records: takes the capture settings


_DATA_CALLS = ("read", "write", "readv", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg")

OBJECTS: tuple[ProbeSpec, ...] = (
    ProbeSpec(
        "l7",
        tuple(f"syscalls/sys_{side}_{call}" for call in _DATA_CALLS for side in ("enter", "exit")),
        captures=True,
    ),
    ProbeSpec(
        "tcp_state",
        (
            "syscalls/sys_enter_connect",
            "syscalls/sys_exit_connect",
            "syscalls/sys_exit_accept4",
            "syscalls/sys_exit_accept",
            "syscalls/sys_enter_close",
            "sock/inet_sock_set_state",
        ),
        optional=("syscalls/sys_exit_accept",),
    ),
    ProbeSpec("proc", ("sched/sched_process_exec", "sched/sched_process_exit")),
    # uprobes, attached per library file as user space finds them (TlsAttacher)
    ProbeSpec("tls_openssl", (), captures=True),
    ProbeSpec("tls_go", (), captures=True),
)
SHARED_MAPS = ("events", "conns", "counters", "scope", "tls_calls", "ssl_socks")
# OpenSSL function -> the entry program; every one returns through ssl_exit_probe.
SSL_ENTRY_PROGRAMS = {
    "SSL_write": "ssl_write_enter",
    "SSL_read": "ssl_read_enter",
    "SSL_write_ex": "ssl_write_ex_enter",
    "SSL_read_ex": "ssl_read_ex_enter",
}


def required_tracepoints() -> list[str]:
    return [tp for spec in OBJECTS for tp in spec.tracepoints if tp not in spec.optional]


def _object_bytes(name: str) -> bytes:
    return resources.files("alaz.objects").joinpath(f"{name}.bpf.o").read_bytes()


def _tracepoint_exists(tp: str) -> bool:
    return os.path.isdir(f"{tracefs_root()}/events/{tp}")


def _section_tracepoint(section: str) -> str | None:
    return section.removeprefix("tracepoint/") if section.startswith("tracepoint/") else None


class Probes:
    """Every alaz BPF object, loaded with shared maps; owns the objects and the ring reader."""

    def __init__(
        self,
        capture_bytes: int = 1024,
        ring_bytes: int = 16 << 20,
        conn_table_size: int = 65536,
        self_tgid: int | None = None,
        max_chunks: int = 4,
        scope_by_cgroup: bool = False,
    ) -> None:
        if not 1 <= capture_bytes <= MAX_CAPTURE:
            raise ConfigError(f"capture size {capture_bytes}: must be 1..{MAX_CAPTURE}")
        if not 1 <= max_chunks <= MAX_CHUNKS:
            raise ConfigError(f"capture windows per syscall {max_chunks}: must be 1..{MAX_CHUNKS}")
        self.capture_bytes = capture_bytes
        self.max_chunks = max_chunks
        self.scope_by_cgroup = scope_by_cgroup
        self.ring_bytes = ring_bytes
        self.conn_table_size = conn_table_size
        self.self_tgid = os.getpid() if self_tgid is None else self_tgid
        self.objects: list[BpfObject] = []
        self.ring: RingReader | None = None
        self.skipped: list[str] = []
        self._log = get_logger("probes")

    def load(self) -> None:
        """Opens, configures and loads every object (nothing runs until `attach`)."""
        try:
            shared: dict[str, int] = {}
            for spec in OBJECTS:
                obj = BpfObject(spec.name, _object_bytes(spec.name))
                self.objects.append(obj)
                self._configure(obj, spec, shared)
                obj.load()
                if not shared:
                    shared = {m: obj.map_fd(m) for m in SHARED_MAPS}
            self.ring = RingReader(shared["events"], self.ring_bytes)
        except BaseException:
            self.close()
            raise

    def _configure(self, obj: BpfObject, spec: ProbeSpec, shared: dict[str, int]) -> None:
        values = {"self_tgid": self.self_tgid, "scope_enabled": int(self.scope_by_cgroup)}
        if spec.captures:
            values["capture_size"] = self.capture_bytes
            values["max_chunks"] = self.max_chunks
            obj.set_max_entries("scratch_map", max(1, int(LIB.libbpf_num_possible_cpus())))
        obj.set_rodata(values)
        if shared:
            for name, fd in shared.items():
                obj.reuse_map(name, fd)
        else:
            obj.set_max_entries("events", self.ring_bytes)
            obj.set_max_entries("conns", self.conn_table_size)
        for prog, section in obj.programs():
            tp = _section_tracepoint(section)
            if tp and not _tracepoint_exists(tp):
                if tp not in spec.optional:
                    raise KernelFeatureError(
                        f"attach {prog}: tracepoint {tp} is missing from {tracefs_root()}/events"
                    )
                obj.set_autoload(prog, False)
                self.skipped.append(tp)

    def attach(self) -> int:
        """Attaches every tracepoint program; returns how many. (Uprobes are attached per
        library file with `attach_openssl`.)"""
        n = 0
        for obj in self.objects:
            for prog, section in obj.programs():
                tp = _section_tracepoint(section)
                if tp in self.skipped or section.startswith(("uprobe", "uretprobe")):
                    continue
                obj.attach(prog)
                n += 1
        self._log.info("probes.attached", programs=n, skipped=self.skipped)
        return n

    def attach_openssl(self, path: str, offsets: Mapping[str, int]) -> int:
        """Attaches the SSL probes to one library file (every process mapping it), at the file
        offsets of the functions it has; returns how many probes were attached."""
        obj = next(o for o in self.objects if o.name == "tls_openssl")
        n = 0
        for func, prog in SSL_ENTRY_PROGRAMS.items():
            offset = offsets.get(func)
            if offset is None:
                continue
            obj.attach_uprobe(prog, path, offset)
            obj.attach_uprobe("ssl_exit_probe", path, offset, retprobe=True)
            n += 2
        return n

    def attach_go(self, path: str, write: int, read: int, read_rets: list[int]) -> int:
        """Attaches the Go crypto/tls probes to one executable: (*Conn).Write's entry, Read's
        entry and a uprobe at each RET of Read (never a uretprobe: Go stacks move)."""
        obj = next(o for o in self.objects if o.name == "tls_go")
        obj.attach_uprobe("go_tls_write", path, write)
        obj.attach_uprobe("go_tls_read_enter", path, read)
        for ret in read_rets:
            obj.attach_uprobe("go_tls_read_ret", path, ret)
        return 2 + len(read_rets)

    def hand_off_teardown(self) -> None:
        """Lets a child process release the kernel's probes after this process has exited.

        Releasing a probe costs the kernel an RCU grace period, serialized: ~40 ms per
        tracepoint and ~130 ms per uprobe here, so 25 tracepoints and a few dozen uprobes take
        seconds whether we close them or the process exit does. The child inherits every fd
        and exits only once this process is gone, so the release happens in its exit; our own
        detach and close then only disable the probes and drop our references (cheap). The
        child runs no Python beyond a sleep loop, so forking a threaded process is safe here.
        """
        parent = os.getpid()
        if os.fork() == 0:  # pragma: no cover - the child
            while os.getppid() == parent:
                time.sleep(0.02)
            os._exit(0)

    def detach(self) -> None:
        """Detaches every program. Each link's release waits for an RCU grace period
        (~70 ms here), so the links are destroyed from threads at once, not one by one."""
        links = [link for obj in self.objects for link in obj.links]
        if links:
            with ThreadPoolExecutor(max_workers=min(32, len(links))) as pool:
                list(pool.map(lambda link: link.destroy(), links))
        for obj in self.objects:
            obj.detach()

    def update_scope(self, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        """Adds and removes cgroup ids (v2) whose processes are captured when scoping is on."""
        if not self.objects:
            raise BpfError("update scope: probes are not loaded", 9)
        fd = self.objects[0].map_fd("scope")
        one = ctypes.c_uint8(1)
        for cgroup in add:
            key = ctypes.c_uint64(cgroup)
            check_int(
                LIB.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(one), 0),
                f"add cgroup {cgroup} to the capture scope",
            )
        for cgroup in remove:
            key = ctypes.c_uint64(cgroup)
            LIB.bpf_map_delete_elem(fd, ctypes.byref(key))  # absent is fine

    def counters(self) -> dict[str, int]:
        """The kernel-side counters, summed over CPUs."""
        if not self.objects:
            return {}
        fd = self.objects[0].map_fd("counters")
        ncpu = max(1, int(LIB.libbpf_num_possible_cpus()))
        out: dict[str, int] = {}
        for i, name in enumerate(COUNTER_NAMES):
            key = ctypes.c_uint32(i)
            vals = (ctypes.c_uint64 * ncpu)()
            check_int(LIB.bpf_map_lookup_elem(fd, ctypes.byref(key), vals), "read counters")
            out[name] = sum(vals)
        return out

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        for obj in reversed(self.objects):
            obj.close()
        self.objects.clear()
