"""Capture scope: which cgroups are captured, kept current by pods, exec events and scans."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from alaz.k8s.cgroups import ContainerCgroup, find_v2_mount, scan
from alaz.k8s.informers import Change
from alaz.k8s.scope import ScopeTracker, own_pod_uid, pod_in_scope
from alaz.k8s.store import PodInfo, Store

NODE = "worker-1"
UID_A = "11111111-2222-4333-8444-555555555555"
UID_B = "66666666-7777-4888-9999-aaaaaaaaaaaa"
CID_A = "a" * 64
CID_A2 = "c" * 64
CID_B = "b" * 64


def pod(
    uid: str = UID_A, ns: str = "shop", node: str = NODE, cids: tuple[str, ...] = ()
) -> PodInfo:
    return PodInfo(uid=uid, name=f"p-{uid[:4]}", namespace=ns, node=node, ip="10.0.0.1",
                   ips=("10.0.0.1",), container_ids=cids)  # fmt: skip


def cgroup_path(uid: str, cid: str) -> str:
    return (
        "/kubepods.slice/kubepods-besteffort.slice/"
        f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope"
    )


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[set[int], set[int]]] = []
        self.fail = False

    def __call__(self, add: set[int], remove: set[int]) -> None:
        if self.fail:
            raise OSError("map full")
        self.calls.append((set(add), set(remove)))


class FakeProc:
    """A /proc with `<pid>/cgroup` files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def process(self, pid: int, text: str) -> None:
        (self.root / str(pid)).mkdir(parents=True, exist_ok=True)
        (self.root / str(pid) / "cgroup").write_text(text)


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path)


def tracker(proc: FakeProc, store: Store, apply: Recorder, **kw: object) -> ScopeTracker:
    return ScopeTracker(store, apply, node_name=NODE, proc=str(proc.root), **kw)  # type: ignore[arg-type]


# --- the rule -------------------------------------------------------------------------------------


def test_pod_in_scope_rules() -> None:
    exclude = re.compile("^anteon")
    assert pod_in_scope(pod(), NODE, exclude)
    assert not pod_in_scope(pod(node="worker-2"), NODE, exclude)
    assert not pod_in_scope(pod(ns="kube-system"), NODE, None)
    assert not pod_in_scope(pod(ns="anteon-agents"), NODE, exclude)
    assert pod_in_scope(pod(ns="shop-anteon"), NODE, exclude)  # anchored by the user's ^
    assert pod_in_scope(pod(ns="x-monitoring"), NODE, re.compile("monitoring")) is False
    assert not pod_in_scope(pod(), NODE, None, self_pod_uid=UID_A)
    assert pod_in_scope(pod(node="anything"), "", None)  # NODE_NAME unset: the cgroup decides


def test_own_pod_uid(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "cgroup").write_text(f"0::{cgroup_path(UID_B, CID_B)}\n")
    assert own_pod_uid(str(tmp_path)) == UID_B
    (tmp_path / "self" / "cgroup").write_text("0::/user.slice\n")
    assert own_pod_uid(str(tmp_path)) == ""
    assert own_pod_uid(str(tmp_path / "missing")) == ""


# --- exec events ----------------------------------------------------------------------------------


def test_exec_of_known_pod_is_scoped_and_bound(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    store.put_pod(pod())
    t = tracker(proc, store, apply)
    proc.process(100, f"0::{cgroup_path(UID_A, CID_A)}\n")
    t.on_exec(100, 7001)
    assert apply.calls == [({7001}, set())]
    assert store.pod_for_cgroup(7001) is store.pods[UID_A]
    t.on_exec(101, 7001)  # a second process in the same container: nothing to do, no /proc read
    assert len(apply.calls) == 1


def test_exec_before_the_pod_is_known_waits_for_the_pod(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    t = tracker(proc, store, apply)
    proc.process(100, f"0::{cgroup_path(UID_A, CID_A)}\n")
    t.on_exec(100, 7001)
    assert apply.calls == []
    new = pod()
    store.put_pod(new)
    t.on_pod(Change.ADD, new)
    assert apply.calls == [({7001}, set())]
    assert store.pod_for_cgroup(7001) is new


def test_exec_matched_by_container_id_when_path_has_no_pod_uid(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    t = tracker(proc, store, apply)
    proc.process(100, f"0::/system.slice/docker-{CID_A}.scope\n")
    t.on_exec(100, 7001)
    assert apply.calls == []
    with_status = pod(cids=(CID_A,))
    store.put_pod(with_status)
    t.on_pod(Change.UPDATE, with_status)
    assert apply.calls == [({7001}, set())]


def test_exec_of_excluded_pods_is_not_scoped(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    store.put_pod(pod(ns="kube-system"))
    store.put_pod(pod(uid=UID_B, ns="anteon"))
    t = tracker(proc, store, apply, exclude=re.compile("^anteon$"))
    proc.process(100, f"0::{cgroup_path(UID_A, CID_A)}\n")
    proc.process(200, f"0::{cgroup_path(UID_B, CID_B)}\n")
    t.on_exec(100, 7001)
    t.on_exec(200, 7002)
    assert apply.calls == []
    assert store.pod_for_cgroup(7001) is not None  # still bound: attribution works regardless


def test_agents_own_pod_is_not_scoped(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    store.put_pod(pod())
    t = tracker(proc, store, apply, self_pod_uid=UID_A)
    proc.process(100, f"0::{cgroup_path(UID_A, CID_A)}\n")
    t.on_exec(100, 7001)
    assert apply.calls == []


def test_host_processes_are_remembered_negatively_and_bounded(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    t = tracker(proc, store, apply, max_negative=4)
    proc.process(100, "0::/system.slice/sshd.service\n")
    for cgroup in range(10, 20):
        t.on_exec(100, cgroup)
    assert len(t._negative) == 4
    os.remove(proc.root / "100" / "cgroup")
    t.on_exec(100, 19)  # remembered: /proc is not read again (it would fail now)
    assert apply.calls == []


def test_v1_only_container_line_is_not_trusted_for_the_v2_id(proc: FakeProc) -> None:
    # On a v1-only host the kernel's cgroup id is the v2 root for every process: scoping the
    # v1 container would capture everything.
    store, apply = Store(), Recorder()
    store.put_pod(pod())
    t = tracker(proc, store, apply)
    proc.process(100, f"11:memory:/kubepods/besteffort/pod{UID_A}/{CID_A}\n0::/\n")
    t.on_exec(100, 7001)
    assert apply.calls == []


def test_vanished_process_is_retried_on_the_next_exec(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    store.put_pod(pod())
    t = tracker(proc, store, apply)
    t.on_exec(100, 7001)  # no /proc/100: gone before we looked
    proc.process(101, f"0::{cgroup_path(UID_A, CID_A)}\n")
    t.on_exec(101, 7001)
    assert apply.calls == [({7001}, set())]


# --- pod changes ----------------------------------------------------------------------------------


def test_pod_delete_removes_its_cgroups(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    p = pod()
    store.put_pod(p)
    t = tracker(proc, store, apply)
    t.add_cgroups([(7001, ContainerCgroup("containerd", CID_A, UID_A, "/a")),
                   (7002, ContainerCgroup("containerd", CID_A2, UID_A, "/b"))])  # fmt: skip
    assert apply.calls == [({7001, 7002}, set())]
    store.delete_pod(p)
    t.on_pod(Change.DELETE, p)
    assert apply.calls[-1] == (set(), {7001, 7002})
    assert t.scoped == set()
    assert t.known() == {}


def test_pod_moving_to_another_node_leaves_scope(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    p = pod()
    store.put_pod(p)
    t = tracker(proc, store, apply)
    t.add_cgroups([(7001, ContainerCgroup("containerd", CID_A, UID_A, "/a"))])
    moved = pod(node="worker-2")
    store.put_pod(moved)
    t.on_pod(Change.UPDATE, moved, p)
    assert apply.calls[-1] == (set(), {7001})


def test_resync_changes_nothing(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    p = pod()
    store.put_pod(p)
    t = tracker(proc, store, apply)
    t.add_cgroups([(7001, ContainerCgroup("containerd", CID_A, UID_A, "/a"))])
    t.on_pod(Change.SYNC, p, p)
    assert len(apply.calls) == 1


def test_failed_apply_is_retried_on_the_next_push(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    store.put_pod(pod())
    store.put_pod(pod(uid=UID_B))
    t = tracker(proc, store, apply)
    apply.fail = True
    t.add_cgroups([(7001, ContainerCgroup("containerd", CID_A, UID_A, "/a"))])
    assert t.scoped == set()
    apply.fail = False
    t.add_cgroups([(7002, ContainerCgroup("containerd", CID_B, UID_B, "/b"))])
    assert apply.calls == [({7001, 7002}, set())]


def test_known_cgroups_are_bounded(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    store.put_pod(pod())
    t = tracker(proc, store, apply, max_cgroups=3)
    for i in range(6):
        t.add_cgroups([(8000 + i, ContainerCgroup("containerd", f"{i:064x}", UID_A, f"/{i}"))])
    assert len(t.known()) == 3
    assert t.scoped == {8003, 8004, 8005}
    assert t.evicted == 3


# --- scans ----------------------------------------------------------------------------------------


def test_reconcile_adds_new_and_drops_vanished(proc: FakeProc) -> None:
    store, apply = Store(), Recorder()
    store.put_pod(pod())
    now = [100.0]
    t = tracker(proc, store, apply, clock=lambda: now[0])
    a = ContainerCgroup("containerd", CID_A, UID_A, "/a")
    a2 = ContainerCgroup("containerd", CID_A2, UID_A, "/a2")
    t.reconcile([(7001, a), (7002, a2)], started=100.0)
    assert apply.calls == [({7001, 7002}, set())]
    now[0] = 200.0
    # 7003 arrived by exec after the next scan started: the scan did not see it yet; keep it.
    t.add_cgroups([(7003, ContainerCgroup("containerd", "d" * 64, UID_A, "/a3"))])
    t.reconcile([(7001, a)], started=150.0)
    assert apply.calls[-1] == (set(), {7002})
    assert t.scoped == {7001, 7003}


# --- the real cgroup v2 tree (root) ---------------------------------------------------------------


def _real_v2_mount() -> str | None:
    mount = find_v2_mount()
    if mount is None or os.geteuid() != 0 or not os.access(mount, os.W_OK):
        return None
    return mount


@pytest.mark.skipif(_real_v2_mount() is None, reason="needs root and a writable cgroup v2 mount")
def test_real_container_cgroup_is_scoped_within_2s_of_its_first_exec() -> None:
    mount = _real_v2_mount()
    assert mount is not None
    pod_uid = str(uuid.uuid4())
    cid = uuid.uuid4().hex * 2
    base = Path(mount) / "kubepods.slice" / "kubepods-besteffort.slice"
    pod_dir = base / f"kubepods-besteffort-pod{pod_uid.replace('-', '_')}.slice"
    leaf = pod_dir / f"cri-containerd-{cid}.scope"
    created = [p for p in (base.parent, base, pod_dir, leaf) if not p.exists()]
    leaf.mkdir(parents=True, exist_ok=True)
    # A process that waits, is moved into the container cgroup, then execs (as runc does).
    child = subprocess.Popen(["sh", "-c", "read x; exec sleep 30"], stdin=subprocess.PIPE)
    try:
        (leaf / "cgroup.procs").write_text(str(child.pid))
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        store, apply = Store(), Recorder()
        p = PodInfo(uid=pod_uid, name="new", namespace="shop", node=NODE, ip="10.0.0.50",
                    ips=("10.0.0.50",))  # fmt: skip
        store.put_pod(p)
        t = ScopeTracker(store, apply, node_name=NODE)
        cgroup_id = os.stat(leaf).st_ino
        started = time.monotonic()
        t.on_exec(child.pid, cgroup_id)  # what the kernel's exec event delivers
        elapsed = time.monotonic() - started
        assert apply.calls == [({cgroup_id}, set())]
        assert elapsed < 2.0
        assert store.pod_for_cgroup(cgroup_id) is p
        # The scan of the real tree finds the same cgroup with the same id.
        found = {ino: c for ino, c in scan(mount)}
        assert found[cgroup_id].container_id == cid
        assert found[cgroup_id].pod_uid == pod_uid
    finally:
        child.kill()
        child.wait()
        time.sleep(0.05)
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
