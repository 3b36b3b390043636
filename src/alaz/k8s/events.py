"""Resource events for the backend, in the Go agent's shapes and with its quirks (spec §2.4.4).

`resource_events(kind, change, obj)` turns one informer change into the `(ResourceKind,
[events])` pairs to submit (`AnteonSink.submit_resources`). The quirks the backend relies on:

* a Pod without `status.podIP` produces nothing, for every change (so the backend often sees a
  pod first as UPDATE); a Pod ADD or UPDATE also produces one Container event per
  `spec.containers[]`; a DELETE produces none;
* a Container event's `uid` is always "";
* a ReplicaSet event's `name` is its owner's name (the Deployment's), "" for an orphan;
* a Service port's `dest` is `targetPort` as a number, 0 for a named targetPort;
* `cluster_ips` is null when the Service has no `spec.clusterIPs`;
* Endpoints carry ready addresses only; `type` is `targetRef.kind` ("" without a targetRef);
* the periodic resync (`Change.SYNC`) is sent as UPDATE.

EndpointSlices and Jobs feed the store only; the Go agent sends neither.
"""

from __future__ import annotations

from typing import Any

from alaz.export.resources import (
    ContainerEvent,
    ContainerPort,
    DaemonSetEvent,
    DeploymentEvent,
    EndpointAddress,
    EndpointIP,
    EndpointPort,
    EndpointsEvent,
    PodEvent,
    ReplicaSetEvent,
    ResourceEvent,
    ResourceKind,
    ServiceEvent,
    ServicePort,
    StatefulSetEvent,
)
from alaz.k8s.informers import Change
from alaz.k8s.store import EndpointsInfo, PodInfo, ServiceInfo, WorkloadInfo

__all__ = [
    "Batch",
    "container_events",
    "endpoints_event",
    "pod_event",
    "resource_events",
    "service_event",
    "wire_type",
    "workload_event",
]

Batch = list[tuple[ResourceKind, list[ResourceEvent]]]

_WORKLOAD_KINDS: dict[str, ResourceKind] = {
    "ReplicaSet": "replicaset",
    "Deployment": "deployment",
    "DaemonSet": "daemonset",
    "StatefulSet": "statefulset",
}


def wire_type(change: Change) -> str:
    """The backend's event_type for an informer change."""
    return "UPDATE" if change is Change.SYNC else change.value


def pod_event(event_type: str, pod: PodInfo) -> PodEvent | None:
    """The Pod event, or None for a pod without an IP (the Go agent skips those)."""
    if not pod.ip:
        return None
    owner = pod.owner
    return PodEvent(
        uid=pod.uid,
        event_type=event_type,
        name=pod.name,
        namespace=pod.namespace,
        ip=pod.ip,
        owner_type=owner.kind if owner else "",
        owner_name=owner.name if owner else "",
        owner_id=owner.uid if owner else "",
    )


def container_events(event_type: str, pod: PodInfo) -> list[ContainerEvent]:
    """One Container event per `spec.containers[]`, on ADD and UPDATE of a pod with an IP."""
    if event_type == "DELETE" or not pod.ip:
        return []
    return [
        ContainerEvent(
            uid="",
            event_type=event_type,
            name=c.name,
            namespace=pod.namespace,
            pod=pod.uid,
            image=c.image,
            ports=[ContainerPort(port, protocol) for port, protocol in c.ports],
        )
        for c in pod.containers
    ]


def service_event(event_type: str, svc: ServiceInfo) -> ServiceEvent:
    return ServiceEvent(
        uid=svc.uid,
        event_type=event_type,
        name=svc.name,
        namespace=svc.namespace,
        type=svc.type,
        cluster_ips=None if svc.cluster_ips is None else list(svc.cluster_ips),
        ports=[
            ServicePort(
                name=p.name,
                src=p.port,
                dest=p.target_port if isinstance(p.target_port, int) else 0,
                protocol=p.protocol,
            )
            for p in svc.ports
        ],
    )


def endpoints_event(event_type: str, eps: EndpointsInfo) -> EndpointsEvent:
    return EndpointsEvent(
        uid=eps.uid,
        event_type=event_type,
        name=eps.name,
        namespace=eps.namespace,
        addresses=[
            EndpointAddress(
                ips=[EndpointIP(a.kind, a.uid, a.name, a.namespace, a.ip) for a in s.addresses],
                ports=[EndpointPort(port, protocol, name) for port, protocol, name in s.ports],
            )
            for s in eps.subsets
        ],
    )


def workload_event(event_type: str, w: WorkloadInfo) -> tuple[ResourceKind, ResourceEvent] | None:
    """The event of a ReplicaSet, Deployment, DaemonSet or StatefulSet (None for a Job)."""
    kind = _WORKLOAD_KINDS.get(w.kind)
    if kind is None:
        return None
    if kind == "replicaset":
        owner = w.owner
        return kind, ReplicaSetEvent(
            uid=w.uid,
            event_type=event_type,
            name=owner.name if owner else "",  # the Go agent's quirk: the owner's name
            namespace=w.namespace,
            replicas=w.replicas,
            owner_type=owner.kind if owner else "",
            owner_name=owner.name if owner else "",
            owner_id=owner.uid if owner else "",
        )
    if kind == "deployment":
        return kind, DeploymentEvent(w.uid, event_type, w.name, w.namespace, w.replicas)
    if kind == "daemonset":
        return kind, DaemonSetEvent(w.uid, event_type, w.name, w.namespace)
    return kind, StatefulSetEvent(w.uid, event_type, w.name, w.namespace)


def resource_events(kind: str, change: Change, obj: Any) -> Batch:
    """The backend events for one informer change of `kind` (a `KINDS` name)."""
    event_type = wire_type(change)
    if kind == "pods":
        pod_ev = pod_event(event_type, obj)
        if pod_ev is None:
            return []
        batch: Batch = [("pod", [pod_ev])]
        containers: list[ResourceEvent] = [*container_events(event_type, obj)]
        if containers:
            batch.append(("container", containers))
        return batch
    if kind == "services":
        return [("svc", [service_event(event_type, obj)])]
    if kind == "endpoints":
        return [("endpoint", [endpoints_event(event_type, obj)])]
    if isinstance(obj, WorkloadInfo):
        found = workload_event(event_type, obj)
        return [] if found is None else [(found[0], [found[1]])]
    return []
