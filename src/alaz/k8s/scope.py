"""Which cgroups the kernel captures: the containers of this node's pods of interest.

A cgroup v2 id is in scope when its directory names a container (`cgroups.container_of`) of a
pod that

* runs on this node (`spec.nodeName == NODE_NAME`; any node when NODE_NAME is unset),
* is not in `kube-system` and its namespace does not match EXCLUDE_NAMESPACES (searched, as Go's
  `regexp.MatchString` does),
* is not the agent's own pod.

The set is kept current from three sides:

* `on_pod(change, pod)`: the informer saw a pod change (after the store was updated);
* `on_exec(pid, cgroup_id)`: a process started; the first process of a new container reveals its
  cgroup. `/proc/<pid>/cgroup` gives the container id and the pod uid (the kubelet names the pod's
  cgroup after its uid, which the API server announced before any container started), so a new
  pod's traffic is in scope within milliseconds of its first exec;
* `reconcile(scan)`: a walk of the v2 tree (`cgroups.scan`, run off the event loop) adds what exec
  events missed (containers started before the agent) and drops cgroups that are gone.

Changes reach the kernel through `apply(add, remove)` (wired to `Probes.update_scope`). Memory is
bounded: at most `max_cgroups` container cgroups and `max_negative` remembered non-container
cgroups (host processes), both evicting the oldest.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from alaz.k8s.cgroups import ContainerCgroup, container_of, pod_uid_of, read_proc_cgroup, v2_path
from alaz.k8s.informers import Change
from alaz.k8s.store import PodInfo, Store
from alaz.log import get_logger

__all__ = ["ApplyScope", "ScopeTracker", "own_pod_uid", "pod_in_scope"]

ApplyScope = Callable[[set[int], set[int]], None]

ALWAYS_EXCLUDED = "kube-system"


def pod_in_scope(
    pod: PodInfo, node_name: str, exclude: re.Pattern[str] | None, self_pod_uid: str = ""
) -> bool:
    """True when the containers of `pod` should be captured on node `node_name`."""
    if node_name and pod.node != node_name:
        return False
    if pod.namespace == ALWAYS_EXCLUDED:
        return False
    if exclude is not None and exclude.search(pod.namespace):
        return False
    return not (self_pod_uid and pod.uid == self_pod_uid)


def own_pod_uid(proc: str = "/proc") -> str:
    """The pod uid of this process from its cgroup path ("" outside a pod)."""
    try:
        with open(f"{proc}/self/cgroup") as f:
            content = f.read()
    except OSError:
        return ""
    for line in content.splitlines():
        uid = pod_uid_of(line.partition(":")[2].partition(":")[2])
        if uid:
            return uid
    return ""


class ScopeTracker:
    """Keeps the kernel's capture scope equal to the containers of this node's pods of interest."""

    def __init__(
        self,
        store: Store,
        apply: ApplyScope,
        *,
        node_name: str = "",
        exclude: re.Pattern[str] | None = None,
        self_pod_uid: str = "",
        proc: str = "/proc",
        max_cgroups: int = 65_536,
        max_negative: int = 16_384,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.apply = apply
        self.node_name = node_name
        self.exclude = exclude
        self.self_pod_uid = self_pod_uid
        self.proc = proc
        self.max_cgroups = max_cgroups
        self.max_negative = max_negative
        self.clock = clock
        self.scoped: set[int] = set()
        self.evicted = 0
        self._cgroups: OrderedDict[int, ContainerCgroup] = OrderedDict()
        self._seen_at: dict[int, float] = {}
        self._by_pod: dict[str, set[int]] = {}  # pod uid from the path -> cgroup ids
        self._by_container: dict[str, int] = {}  # container id -> cgroup id
        self._negative: OrderedDict[int, None] = OrderedDict()
        self._retry: set[int] = set()  # additions the kernel refused, retried on the next push
        self._log = get_logger("k8s.scope", node=node_name)

    # --- inputs ----------------------------------------------------------------------------

    def on_exec(self, pid: int, cgroup_id: int) -> None:
        """A process started in cgroup `cgroup_id`; learn that cgroup if it is new."""
        if cgroup_id in self._cgroups or cgroup_id in self._negative or cgroup_id <= 1:
            return
        text = read_proc_cgroup(pid, self.proc)
        if text is None:
            return  # gone already; the next exec in that cgroup will tell
        path = v2_path(text)
        found = container_of(path) if path else None
        if path is None or found is None:
            self._remember_negative(cgroup_id)
            return
        entry = ContainerCgroup(found[0], found[1], pod_uid_of(path), path)
        self.add_cgroups([(cgroup_id, entry)])

    def on_pod(self, change: Change, pod: PodInfo, old: PodInfo | None = None) -> None:
        """The store has applied a pod change; bind its cgroups and update the scope."""
        if change is Change.SYNC:
            return
        add: set[int] = set()
        remove: set[int] = set()
        if old is not None and old.uid != pod.uid:
            remove |= self._forget_pod(old)
        if change is Change.DELETE:
            remove |= self._forget_pod(pod)
        else:
            want = pod_in_scope(pod, self.node_name, self.exclude, self.self_pod_uid)
            for cgroup in self._cgroups_for(pod):
                self.store.bind_cgroup(cgroup, pod.key)
                (add if want else remove).add(cgroup)
        self._push(add, remove)

    def add_cgroups(self, found: Iterable[tuple[int, ContainerCgroup]]) -> None:
        """Learn container cgroups (from exec events or a scan) and scope those of known pods."""
        add: set[int] = set()
        now = self.clock()
        for cgroup_id, entry in found:
            self._seen_at[cgroup_id] = now
            if cgroup_id in self._cgroups:
                continue
            self._remember(cgroup_id, entry)
            pod = self._pod_of(entry)
            if pod is None:
                continue  # pending: decided when the pod arrives (on_pod)
            self.store.bind_cgroup(cgroup_id, pod.key)
            if pod_in_scope(pod, self.node_name, self.exclude, self.self_pod_uid):
                add.add(cgroup_id)
        self._push(add, set())

    def reconcile(self, scanned: Iterable[tuple[int, ContainerCgroup]], started: float) -> None:
        """Apply a full scan that began at `started` (clock time): add new, drop vanished."""
        scanned = list(scanned)
        self.add_cgroups(scanned)
        present = {cgroup for cgroup, _ in scanned}
        gone = [
            cgroup
            for cgroup in self._cgroups
            if cgroup not in present and self._seen_at.get(cgroup, 0.0) < started
        ]
        remove = {cgroup for cgroup in gone if self._drop(cgroup)}
        self._push(set(), remove)

    # --- state -----------------------------------------------------------------------------

    def known(self) -> dict[int, ContainerCgroup]:
        return dict(self._cgroups)

    def _pod_of(self, entry: ContainerCgroup) -> PodInfo | None:
        if entry.pod_uid:
            pod = self.store.pods.get(entry.pod_uid)
            if pod is not None:
                return pod
        return self.store.pod_for_container(entry.container_id)

    def _cgroups_for(self, pod: PodInfo) -> set[int]:
        found = set(self._by_pod.get(pod.uid, ()))
        for cid in pod.container_ids:
            cgroup = self._by_container.get(cid)
            if cgroup is not None:
                found.add(cgroup)
        return found

    def _forget_pod(self, pod: PodInfo) -> set[int]:
        removed = set()
        for cgroup in self._cgroups_for(pod):
            if self._drop(cgroup):
                removed.add(cgroup)
        return removed

    def _remember(self, cgroup_id: int, entry: ContainerCgroup) -> None:
        while len(self._cgroups) >= self.max_cgroups:
            oldest = next(iter(self._cgroups))
            self.evicted += 1
            if self._drop(oldest):
                self._push(set(), {oldest})
        self._cgroups[cgroup_id] = entry
        if entry.pod_uid:
            self._by_pod.setdefault(entry.pod_uid, set()).add(cgroup_id)
        self._by_container[entry.container_id] = cgroup_id

    def _drop(self, cgroup_id: int) -> bool:
        """Forget a cgroup; True when it was in scope (the caller removes it from the kernel)."""
        entry = self._cgroups.pop(cgroup_id, None)
        self._seen_at.pop(cgroup_id, None)
        self.store.unbind_cgroup(cgroup_id)
        if entry is not None:
            held = self._by_pod.get(entry.pod_uid)
            if held is not None:
                held.discard(cgroup_id)
                if not held:
                    del self._by_pod[entry.pod_uid]
            if self._by_container.get(entry.container_id) == cgroup_id:
                del self._by_container[entry.container_id]
        return cgroup_id in self.scoped

    def _remember_negative(self, cgroup_id: int) -> None:
        self._negative[cgroup_id] = None
        if len(self._negative) > self.max_negative:
            self._negative.popitem(last=False)

    def _push(self, add: set[int], remove: set[int]) -> None:
        if self._retry:
            add = add | {cgroup for cgroup in self._retry if cgroup in self._cgroups}
            self._retry = set()
        add = add - self.scoped
        remove = (remove & self.scoped) - add
        if not add and not remove:
            return
        self.scoped |= add
        self.scoped -= remove
        self._log.debug("scope changed", added=len(add), removed=len(remove), size=len(self.scoped))
        try:
            self.apply(add, remove)
        except Exception:
            # The kernel map refused (full, or probes gone): the next push retries the additions;
            # the removals stay removed from our view.
            self.scoped -= add
            self._retry |= add
            self._log.exception("apply scope failed", added=len(add), removed=len(remove))
