"""TlsAttacher: finds TLS code in processes and attaches the TLS uprobes, once per file.

At start-up every process is scanned; afterwards each exec is scanned at once, again ~50 ms
later and ~1 s later (a program maps libssl only when it first imports or dlopens it), so a
process started after the agent is covered within about a second. A library file (device and
inode) gets its probes once, whichever processes map it. Scans run in the capture loop under a
time budget, and the queue of pids to scan is bounded (the excess is dropped and counted).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alaz.capture.probes import Probes
from alaz.errors import AlazError
from alaz.log import get_logger
from alaz.tls import GoTarget, Target, TargetScanner, UprobeTarget

__all__ = ["TlsAttachStats", "TlsAttacher"]

_RESCANS_S = (0.0, 0.05, 1.0)  # after an exec
_MAX_QUEUE = 4096
# Long-running processes load TLS libraries without exec'ing (Python imports psycopg, which
# maps its own libssl): every process is rescanned this often (cached: ~4 ms for ~100).
_FULL_RESCAN_S = 5.0


@dataclass
class TlsAttachStats:
    files_attached: int = 0
    probes_attached: int = 0
    attach_failures: int = 0
    scans: int = 0
    queue_dropped: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # path -> last error (bounded)


class TlsAttacher:
    """Scans processes for OpenSSL and Go crypto/tls and attaches the probes."""

    def __init__(
        self,
        probes: Probes,
        scanner: TargetScanner | None = None,
        wanted: Callable[[int], bool] | None = None,
        cgroup_of: Callable[[int], int | None] | None = None,
    ) -> None:
        """`wanted(cgroup_id)` limits the probes to processes in scope (Kubernetes: the pods of
        this node), so the TLS calls of everything else (kubelet, containerd...) never trap;
        `cgroup_of(pid)` gives a running process's cgroup id for the periodic scans."""
        self.probes = probes
        self.scanner = scanner or TargetScanner()
        self.wanted = wanted
        self.cgroup_of = cgroup_of
        self.attached: set[tuple[int, int]] = set()
        self.stats = TlsAttachStats()
        self._due: list[tuple[float, int]] = []  # (when, pid), kept short
        self._next_full = time.monotonic() + _FULL_RESCAN_S
        self._log = get_logger("tls")

    def scan_all(self) -> None:
        if self.wanted is None or self.cgroup_of is None:
            for target in self.scanner.scan_all().values():
                self._attach(target)
            return
        for name in os.listdir("/proc"):
            if name.isdigit():
                cgroup = self.cgroup_of(int(name))
                if cgroup is not None and self.wanted(cgroup):
                    for target in self.scanner.scan_pid(int(name)):
                        self._attach(target)

    def on_exec(self, pid: int, cgroup_id: int | None = None) -> None:
        if self.wanted is not None and cgroup_id is not None and not self.wanted(cgroup_id):
            return  # not in scope now; the periodic scan catches it if it joins the scope
        if len(self._due) + len(_RESCANS_S) > _MAX_QUEUE:
            self.stats.queue_dropped += 1
            return
        now = time.monotonic()
        self._due.extend((now + delay, pid) for delay in _RESCANS_S)

    def poll(self, budget_s: float = 0.005) -> None:
        """Runs the scans that are due, for at most about `budget_s` (5 ms per 20 ms poll: a
        node that execs thousands of processes a second costs at most a quarter of a core here,
        the rest wait in the bounded queue)."""
        now = time.monotonic()
        if now >= self._next_full:
            self._next_full = now + _FULL_RESCAN_S
            self.scan_all()
        if not self._due:
            return
        deadline = now + budget_s
        later: list[tuple[float, int]] = []
        for i, (when, pid) in enumerate(self._due):
            if time.monotonic() > deadline:
                later.extend(self._due[i:])
                break
            if when > now:
                later.append((when, pid))
                continue
            self.stats.scans += 1
            for target in self.scanner.scan_pid(pid):
                self._attach(target)
        self._due = later

    def _attach(self, target: Target) -> None:
        key = (target.dev, target.ino)
        if key in self.attached:
            return
        self.attached.add(key)  # tried once per file, whatever the outcome
        try:
            if isinstance(target, UprobeTarget):
                n = self.probes.attach_openssl(target.path, target.offsets)
            elif isinstance(target, GoTarget):
                n = self.probes.attach_go(
                    target.path,
                    target.write_offset,
                    target.read_offset,
                    list(target.read_ret_offsets),
                )
            else:
                return
        except AlazError as exc:
            self.stats.attach_failures += 1
            if len(self.stats.failures) < 100:
                self.stats.failures[target.path] = str(exc)
            self._log.warning("tls.attach_failed", path=target.path, error=str(exc))
            return
        self.stats.files_attached += 1
        self.stats.probes_attached += n
        self._log.info("tls.attached", path=target.path, kind=type(target).__name__, probes=n)
