"""TlsAttacher: once per file, only processes in scope, failures counted (fake probes)."""

from __future__ import annotations

from typing import Any

from alaz.capture.tls_attach import TlsAttacher
from alaz.errors import BpfAttachError
from alaz.tls import UprobeTarget


class FakeProbes:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, int]]] = []
        self.fail = fail

    def attach_openssl(self, path: str, offsets: dict[str, int]) -> int:
        if self.fail:
            raise BpfAttachError(f"attach uprobe to {path}", 2)
        self.calls.append((path, dict(offsets)))
        return 2 * len(offsets)


class FakeScanner:
    def __init__(self, targets: dict[int, list[Any]]) -> None:
        self.targets = targets
        self.scanned: list[int] = []

    def scan_pid(self, pid: int) -> list[Any]:
        self.scanned.append(pid)
        return self.targets.get(pid, [])

    def scan_all(self) -> dict[tuple[int, int], Any]:
        return {(t.dev, t.ino): t for ts in self.targets.values() for t in ts}


LIBSSL = UprobeTarget(
    "/lib/libssl.so.3",
    1,
    42,
    "3.x",
    (3, 0),
    "symbol-versions",
    {"SSL_write": 0x100, "SSL_read": 0x200},
    None,
)


def test_each_file_is_attached_once_whichever_processes_map_it() -> None:
    probes = FakeProbes()
    attacher = TlsAttacher(probes, FakeScanner({10: [LIBSSL], 11: [LIBSSL]}))  # type: ignore[arg-type]
    for pid in (10, 11):
        attacher.on_exec(pid)
    attacher.poll(budget_s=1.0)
    assert probes.calls == [("/lib/libssl.so.3", {"SSL_write": 0x100, "SSL_read": 0x200})]
    assert attacher.stats.files_attached == 1 and attacher.stats.probes_attached == 4


def test_processes_out_of_scope_are_not_scanned() -> None:
    scanner = FakeScanner({10: [LIBSSL]})
    attacher = TlsAttacher(FakeProbes(), scanner, wanted={7}.__contains__)  # type: ignore[arg-type]
    attacher.on_exec(10, cgroup_id=8)
    attacher.poll(budget_s=1.0)
    assert scanner.scanned == []
    attacher.on_exec(10, cgroup_id=7)
    attacher.poll(budget_s=1.0)
    assert scanner.scanned == [10]


def test_a_failed_attach_is_counted_and_not_retried() -> None:
    attacher = TlsAttacher(FakeProbes(fail=True), FakeScanner({10: [LIBSSL]}))  # type: ignore[arg-type]
    attacher.scan_all()
    attacher.scan_all()
    assert attacher.stats.attach_failures == 1
    assert "/lib/libssl.so.3" in attacher.stats.failures
