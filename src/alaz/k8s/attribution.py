"""Name both ends of an exchange after Kubernetes objects, as the Go agent does (spec §1.9).

From the client's view:

* `from` is the pod owning the client process: for a client-side exchange, the pod of its
  cgroup (`cgroup_id` -> container -> pod; this also names hostNetwork pods, whose IP is the
  node's), else the pod whose IP is `client_ip`;
* `to` is, first match wins, the Service whose ClusterIP is `server_ip`, the pod whose IP it is
  (with `endpoint_services`, the Service whose EndpointSlices hold that pod IP instead: what a
  connect-time load balancer such as Cilium's socket LB leaves us), the pod of a loopback
  destination (the client's own pod: same network namespace), or `outbound` named by the Host
  header / `:authority`, else the IP.

For a server-side exchange (exported when its client is not on this node), `to` is the pod of
the server process (its cgroup) before the IP rules, since after DNAT the server only sees its
pod IP.

`K8sAttributor` is the `Attributor` seam of the anteon sink: it drops (None) an exchange whose
client is not a known pod, as the Go agent does. `describe` gives the JSON-lines objects:

    {"type": "pod"|"service"|"outbound", "uid", "name", "namespace",
     "owner": {"type", "name", "uid"} | null}
"""

from __future__ import annotations

import msgspec

from alaz.export.rows import Attribution
from alaz.k8s.store import OwnerRef, PodInfo, ServiceInfo, Store
from alaz.model import Exchange

__all__ = ["K8sAttributor", "Peer", "PeerOwner", "describe"]

_LOOPBACK_PREFIXES = ("127.", "::1", "::ffff:127.")
_new = tuple.__new__


class PeerOwner(msgspec.Struct, frozen=True, gc=False):
    """The workload behind a pod (Deployment, StatefulSet, DaemonSet, CronJob, ...)."""

    type: str
    name: str
    uid: str


class Peer(msgspec.Struct, frozen=True, gc=False, omit_defaults=False):
    """One end of an exchange, as written in JSON lines."""

    type: str  # "pod" | "service" | "outbound"
    uid: str
    name: str
    namespace: str
    owner: PeerOwner | None = None


class K8sAttributor:
    """`Attributor` over a `Store`: (from, to) types and uids for the backend rows."""

    def __init__(self, store: Store, *, endpoint_services: bool = False) -> None:
        self.store = store
        self.endpoint_services = endpoint_services

    def __call__(self, exchange: Exchange, /) -> Attribution | None:
        # The per-exchange hot path: the common cases are inlined as plain dict lookups.
        ex = exchange
        store = self.store
        src = None
        if ex.role == "client":
            src = store.cgroup_index.get(ex.cgroup_id)
        if src is None:
            src = store.pod_ip_index.get(ex.client_ip) or store.pod_for_ip(ex.client_ip)
            if src is None:
                return None
        ip = ex.server_ip
        if ex.role == "client":
            svc = store.service_ip_index.get(ip)
            if svc is not None:
                return _new(Attribution, ("pod", src.uid, "service", svc.uid))
            pod = store.pod_ip_index.get(ip)
            if pod is not None and not self.endpoint_services:
                return _new(Attribution, ("pod", src.uid, "pod", pod.uid))
        dst = self.destination(ex, src)
        if dst is None:
            return _new(Attribution, ("pod", src.uid, "outbound", ex.host or ip))
        if isinstance(dst, ServiceInfo):
            return _new(Attribution, ("pod", src.uid, "service", dst.uid))
        return _new(Attribution, ("pod", src.uid, "pod", dst.uid))

    def source(self, ex: Exchange) -> PodInfo | None:
        """The pod of the client."""
        if ex.role == "client":
            pod = self.store.pod_for_cgroup(ex.cgroup_id)
            if pod is not None:
                return pod
        return self.store.pod_for_ip(ex.client_ip)

    def destination(self, ex: Exchange, src: PodInfo | None) -> PodInfo | ServiceInfo | None:
        """The service or pod the client addressed; None for an outbound destination."""
        store = self.store
        if ex.role == "server":
            pod = store.pod_for_cgroup(ex.cgroup_id)
            if pod is not None:
                return pod
        ip = ex.server_ip
        svc = store.service_for_ip(ip)
        if svc is not None:
            return svc
        pod = store.pod_for_ip(ip)
        if pod is not None:
            if self.endpoint_services:
                svc = store.service_for_endpoint_ip(ip)
                if svc is not None:
                    return svc
            return pod
        if src is not None and not src.host_network and ip.startswith(_LOOPBACK_PREFIXES):
            return src
        return None

    def describe(self, exchange: Exchange) -> tuple[Peer, Peer]:
        """(from, to) for JSON lines; an unknown end is `outbound`, named by its IP (or Host)."""
        src = self.source(exchange)
        dst = self.destination(exchange, src)
        from_peer = self._pod_peer(src) if src else _outbound(exchange.client_ip)
        if dst is None:
            to_peer = _outbound(exchange.host or exchange.server_ip)
        elif isinstance(dst, ServiceInfo):
            to_peer = Peer("service", dst.uid, dst.name, dst.namespace, None)
        else:
            to_peer = self._pod_peer(dst)
        return from_peer, to_peer

    def _pod_peer(self, pod: PodInfo) -> Peer:
        owner = _peer_owner(self.store.top_owner(pod.owner))
        return Peer("pod", pod.uid, pod.name, pod.namespace, owner)


def describe(store: Store, exchange: Exchange) -> tuple[Peer, Peer]:
    """`K8sAttributor(store).describe(exchange)`, for one-off use."""
    return K8sAttributor(store).describe(exchange)


def _outbound(name: str) -> Peer:
    return Peer("outbound", name, name, "", None)


def _peer_owner(ref: OwnerRef | None) -> PeerOwner | None:
    return None if ref is None else PeerOwner(ref.kind, ref.name, ref.uid)
