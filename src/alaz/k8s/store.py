"""The Kubernetes store: slim objects and the indexes that name both ends of a request (pure).

Nothing here does I/O: the informers feed it (`put_*` / `delete_*`), the cgroup tracker binds
node-local cgroups to pods (`bind_cgroup`), and the hot path reads it (`pod_for_ip`,
`service_for_ip`, `pod_for_cgroup`). Every lookup is one dict access on a ready key.

Objects keep only the fields the agent uses (msgspec Structs, no GC tracking), so memory grows
with the cluster's pods and services, not with the size of their API objects.

    Store
    ├── pods         uid -> PodInfo
    │   ├── by IP        status.podIPs (not hostNetwork pods, not finished pods)
    │   ├── by container containerStatuses[].containerID (scheme stripped)
    │   └── by cgroup    this node's cgroup v2 ids, bound by the cgroup tracker
    ├── services     uid -> ServiceInfo, by ClusterIP (spec.clusterIPs, "None" skipped)
    ├── workloads    uid -> WorkloadInfo (ReplicaSet, Deployment, DaemonSet, StatefulSet, Job)
    └── slices       EndpointSlice endpoint IP -> service (for connect-time load balancers)
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator

import msgspec

__all__ = [
    "ContainerInfo",
    "EndpointSliceInfo",
    "EndpointTarget",
    "EndpointsInfo",
    "EndpointsSubset",
    "OwnerRef",
    "PodInfo",
    "ServiceInfo",
    "ServicePortInfo",
    "Store",
    "WorkloadInfo",
    "canonical_ip",
    "strip_container_id",
]

# Pod phases whose IP may already belong to another pod.
_FINISHED = frozenset({"Succeeded", "Failed"})
# Owner kinds whose owner is the workload a person names (ReplicaSet -> Deployment, Job -> CronJob).
_INTERMEDIATE = frozenset({"ReplicaSet", "Job"})
_MAX_OWNER_DEPTH = 4


class OwnerRef(msgspec.Struct, frozen=True, gc=False):
    """An owner reference, or a resolved workload: kind, name, uid."""

    kind: str
    name: str
    uid: str


class ContainerInfo(msgspec.Struct, frozen=True, gc=False):
    """One `spec.containers[]` entry: what the backend's container events carry."""

    name: str
    image: str
    ports: tuple[tuple[int, str], ...] = ()  # (containerPort, protocol)


class PodInfo(msgspec.Struct, frozen=True, gc=False):
    """The fields of a Pod the agent uses."""

    uid: str
    name: str
    namespace: str
    node: str = ""  # spec.nodeName
    ip: str = ""  # status.podIP, as the API gives it
    ips: tuple[str, ...] = ()  # status.podIPs, canonical text
    host_network: bool = False
    phase: str = ""
    owner: OwnerRef | None = None  # ownerReferences[0]
    container_ids: tuple[str, ...] = ()  # bare ids, no "containerd://"
    containers: tuple[ContainerInfo, ...] = ()
    resource_version: str = ""

    @property
    def key(self) -> str:
        """The store key: the uid, or namespace/name for objects without one (test servers)."""
        return self.uid or f"{self.namespace}/{self.name}"


class ServicePortInfo(msgspec.Struct, frozen=True, gc=False):
    name: str
    port: int
    target_port: int | str  # a number, or the name of a container port
    protocol: str


class ServiceInfo(msgspec.Struct, frozen=True, gc=False):
    """The fields of a Service the agent uses."""

    uid: str
    name: str
    namespace: str
    type: str = "ClusterIP"
    cluster_ip: str = ""
    cluster_ips: tuple[str, ...] | None = None  # None when the API sent none (the wire keeps null)
    ports: tuple[ServicePortInfo, ...] = ()
    resource_version: str = ""

    @property
    def key(self) -> str:
        return self.uid or f"{self.namespace}/{self.name}"


class WorkloadInfo(msgspec.Struct, frozen=True, gc=False):
    """A ReplicaSet, Deployment, DaemonSet, StatefulSet or Job."""

    kind: str
    uid: str
    name: str
    namespace: str
    replicas: int = 0  # status.replicas
    owner: OwnerRef | None = None  # ownerReferences[0]
    resource_version: str = ""

    @property
    def key(self) -> str:
        return self.uid or f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> OwnerRef:
        return OwnerRef(self.kind, self.name, self.uid)


class EndpointTarget(msgspec.Struct, frozen=True, gc=False):
    """One ready address of an Endpoints subset."""

    ip: str
    kind: str = ""  # targetRef.kind ("Pod"), "" without a targetRef
    uid: str = ""
    name: str = ""
    namespace: str = ""


class EndpointsSubset(msgspec.Struct, frozen=True, gc=False):
    addresses: tuple[EndpointTarget, ...] = ()
    ports: tuple[tuple[int, str, str], ...] = ()  # (port, protocol, name)


class EndpointsInfo(msgspec.Struct, frozen=True, gc=False):
    """A core/v1 Endpoints object (ready addresses only, as the Go agent sends them)."""

    uid: str
    name: str
    namespace: str
    subsets: tuple[EndpointsSubset, ...] = ()
    resource_version: str = ""

    @property
    def key(self) -> str:
        return self.uid or f"{self.namespace}/{self.name}"


class EndpointSliceInfo(msgspec.Struct, frozen=True, gc=False):
    """A discovery/v1 EndpointSlice: its service and its ready endpoint IPs."""

    uid: str
    name: str
    namespace: str
    service: str = ""  # label kubernetes.io/service-name
    ips: tuple[str, ...] = ()
    resource_version: str = ""

    @property
    def key(self) -> str:
        return self.uid or f"{self.namespace}/{self.name}"


def canonical_ip(ip: str) -> str:
    """The canonical text of an address (IPv6 compressed, IPv4-mapped IPv6 as IPv4); `ip` when
    it is not an address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def strip_container_id(container_id: str) -> str:
    """`containerd://<id>` (or docker://, cri-o://) -> `<id>`."""
    _, sep, bare = container_id.rpartition("://")
    return bare if sep else container_id


_intern = sys.intern


class Store:
    """Pods, services and workloads of the cluster, indexed for attribution. Pure: no I/O."""

    def __init__(self) -> None:
        self.pods: dict[str, PodInfo] = {}
        self.services: dict[str, ServiceInfo] = {}
        self.workloads: dict[str, WorkloadInfo] = {}
        # The hot-path indexes, public for one-lookup access (read them, never write them).
        self.pod_ip_index: dict[str, PodInfo] = {}
        self._pod_container: dict[str, PodInfo] = {}
        self._pod_cgroup: dict[int, str] = {}  # cgroup v2 id -> pod key
        self.cgroup_index: dict[int, PodInfo] = {}  # the same, resolved (one lookup)
        self._cgroups_of: dict[str, set[int]] = {}  # pod key -> cgroup ids
        self.service_ip_index: dict[str, ServiceInfo] = {}
        self._service_name: dict[tuple[str, str], ServiceInfo] = {}
        self._slices: dict[str, EndpointSliceInfo] = {}
        self._slice_ip: dict[str, tuple[str, str]] = {}  # endpoint IP -> (namespace, service)

    # --- hot-path lookups ------------------------------------------------------------------

    def pod_for_ip(self, ip: str) -> PodInfo | None:
        """The pod that owns `ip` (IPv4 or IPv6; IPv4-mapped IPv6 is tried as IPv4)."""
        pod = self.pod_ip_index.get(ip)
        if pod is None and ip.startswith("::ffff:"):
            pod = self.pod_ip_index.get(ip[7:])
        return pod

    def service_for_ip(self, ip: str) -> ServiceInfo | None:
        """The service whose ClusterIP is `ip`."""
        svc = self.service_ip_index.get(ip)
        if svc is None and ip.startswith("::ffff:"):
            svc = self.service_ip_index.get(ip[7:])
        return svc

    def pod_for_cgroup(self, cgroup_id: int) -> PodInfo | None:
        """The pod whose container runs in this node's cgroup `cgroup_id`."""
        return self.cgroup_index.get(cgroup_id)

    def pod_for_container(self, container_id: str) -> PodInfo | None:
        """The pod running container `container_id` (bare id or with its runtime scheme)."""
        pod = self._pod_container.get(container_id)
        if pod is None and "://" in container_id:
            pod = self._pod_container.get(strip_container_id(container_id))
        return pod

    def service_for_endpoint_ip(self, ip: str) -> ServiceInfo | None:
        """A service that has `ip` among its EndpointSlice endpoints (the first one seen)."""
        name = self._slice_ip.get(ip)
        return None if name is None else self._service_name.get(name)

    def service_named(self, namespace: str, name: str) -> ServiceInfo | None:
        return self._service_name.get((namespace, name))

    def workload(self, uid: str) -> WorkloadInfo | None:
        return self.workloads.get(uid)

    def top_owner(self, ref: OwnerRef | None) -> OwnerRef | None:
        """The workload a person names: ReplicaSet -> its Deployment, Job -> its CronJob.

        An owner the store does not know (or one without an owner) is returned as it is.
        """
        seen = 0
        while ref is not None and ref.kind in _INTERMEDIATE and seen < _MAX_OWNER_DEPTH:
            known = self.workloads.get(ref.uid)
            if known is None or known.owner is None:
                return ref
            ref = known.owner
            seen += 1
        return ref

    # --- pods ------------------------------------------------------------------------------

    def put_pod(self, pod: PodInfo) -> PodInfo | None:
        """Add or replace a pod; returns the version it replaced (same key)."""
        key = pod.key
        old = self.pods.get(key)
        if old is not None:
            self._unindex_pod(old)
        self.pods[key] = pod
        self._index_pod(pod)
        for cgroup in self._cgroups_of.get(key, ()):
            self.cgroup_index[cgroup] = pod
        return old

    def delete_pod(self, pod: PodInfo) -> PodInfo | None:
        """Forget a pod (and its cgroups); returns the stored version."""
        old = self.pods.pop(pod.key, None)
        if old is not None:
            self._unindex_pod(old)
        for cgroup in self._cgroups_of.pop(pod.key, ()):
            self._pod_cgroup.pop(cgroup, None)
            self.cgroup_index.pop(cgroup, None)
        return old

    def _index_pod(self, pod: PodInfo) -> None:
        if not pod.host_network and pod.phase not in _FINISHED:
            for ip in pod.ips:
                self.pod_ip_index[ip] = pod
        for cid in pod.container_ids:
            self._pod_container[cid] = pod

    def _unindex_pod(self, pod: PodInfo) -> None:
        key = pod.key
        for ip in pod.ips:
            held = self.pod_ip_index.get(ip)
            if held is not None and held.key == key:
                del self.pod_ip_index[ip]
        for cid in pod.container_ids:
            held = self._pod_container.get(cid)
            if held is not None and held.key == key:
                del self._pod_container[cid]

    # --- node-local cgroups ----------------------------------------------------------------

    def bind_cgroup(self, cgroup_id: int, pod_key: str) -> None:
        """Record that `cgroup_id` (a v2 id on this node) belongs to the pod `pod_key`."""
        previous = self._pod_cgroup.get(cgroup_id)
        if previous == pod_key:
            return
        if previous is not None:
            self._cgroups_of.get(previous, set()).discard(cgroup_id)
        self._pod_cgroup[cgroup_id] = pod_key
        self._cgroups_of.setdefault(pod_key, set()).add(cgroup_id)
        pod = self.pods.get(pod_key)
        if pod is not None:
            self.cgroup_index[cgroup_id] = pod
        else:
            self.cgroup_index.pop(cgroup_id, None)

    def unbind_cgroup(self, cgroup_id: int) -> None:
        self.cgroup_index.pop(cgroup_id, None)
        key = self._pod_cgroup.pop(cgroup_id, None)
        if key is not None:
            held = self._cgroups_of.get(key)
            if held is not None:
                held.discard(cgroup_id)
                if not held:
                    del self._cgroups_of[key]

    def cgroups_of(self, pod_key: str) -> frozenset[int]:
        return frozenset(self._cgroups_of.get(pod_key, ()))

    def bound_cgroups(self) -> dict[int, str]:
        """A copy of cgroup id -> pod key."""
        return dict(self._pod_cgroup)

    # --- services --------------------------------------------------------------------------

    def put_service(self, svc: ServiceInfo) -> ServiceInfo | None:
        old = self.services.get(svc.key)
        if old is not None:
            self._unindex_service(old)
        self.services[svc.key] = svc
        for ip in _service_ips(svc):
            self.service_ip_index[ip] = svc
        self._service_name[(svc.namespace, svc.name)] = svc
        return old

    def delete_service(self, svc: ServiceInfo) -> ServiceInfo | None:
        old = self.services.pop(svc.key, None)
        if old is not None:
            self._unindex_service(old)
        return old

    def _unindex_service(self, svc: ServiceInfo) -> None:
        for ip in _service_ips(svc):
            held = self.service_ip_index.get(ip)
            if held is not None and held.key == svc.key:
                del self.service_ip_index[ip]
        held = self._service_name.get((svc.namespace, svc.name))
        if held is not None and held.key == svc.key:
            del self._service_name[(svc.namespace, svc.name)]

    # --- workloads -------------------------------------------------------------------------

    def put_workload(self, workload: WorkloadInfo) -> WorkloadInfo | None:
        old = self.workloads.get(workload.key)
        self.workloads[workload.key] = workload
        return old

    def delete_workload(self, workload: WorkloadInfo) -> WorkloadInfo | None:
        return self.workloads.pop(workload.key, None)

    # --- endpoint slices -------------------------------------------------------------------

    def put_slice(self, eps: EndpointSliceInfo) -> EndpointSliceInfo | None:
        old = self._slices.get(eps.key)
        if old is not None:
            self._unindex_slice(old)
        self._slices[eps.key] = eps
        if eps.service:
            name = (eps.namespace, eps.service)
            for ip in eps.ips:
                self._slice_ip.setdefault(ip, name)
        return old

    def delete_slice(self, eps: EndpointSliceInfo) -> EndpointSliceInfo | None:
        old = self._slices.pop(eps.key, None)
        if old is not None:
            self._unindex_slice(old)
        return old

    def _unindex_slice(self, eps: EndpointSliceInfo) -> None:
        name = (eps.namespace, eps.service)
        for ip in eps.ips:
            if self._slice_ip.get(ip) == name:
                del self._slice_ip[ip]

    # --- introspection ---------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Sizes of every index (for logs and the health endpoint)."""
        return {
            "pods": len(self.pods),
            "pod_ips": len(self.pod_ip_index),
            "containers": len(self._pod_container),
            "cgroups": len(self._pod_cgroup),
            "services": len(self.services),
            "service_ips": len(self.service_ip_index),
            "workloads": len(self.workloads),
            "slices": len(self._slices),
            "slice_ips": len(self._slice_ip),
        }

    def pods_on_node(self, node: str) -> Iterator[PodInfo]:
        return (pod for pod in self.pods.values() if pod.node == node)


def _service_ips(svc: ServiceInfo) -> tuple[str, ...]:
    ips = svc.cluster_ips if svc.cluster_ips else (svc.cluster_ip,)
    return tuple(canonical_ip(ip) for ip in ips if ip and ip != "None")


def intern(text: str) -> str:
    """Share one copy of strings that repeat across objects (namespaces, node names, kinds)."""
    return _intern(text)
