"""Kubernetes resource events as the backend expects them (spec §2.4.4).

One msgspec Struct per kind; field names and order are the wire format. The Kubernetes informers
build these and hand them to `AnteonSink.submit_resources(kind, events)`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "EVENT_TYPES",
    "RESOURCE_KINDS",
    "RESOURCE_PATHS",
    "ContainerEvent",
    "ContainerPort",
    "DaemonSetEvent",
    "DeploymentEvent",
    "EndpointAddress",
    "EndpointIP",
    "EndpointPort",
    "EndpointsEvent",
    "PodEvent",
    "ReplicaSetEvent",
    "ResourceEvent",
    "ResourceKind",
    "ServiceEvent",
    "ServicePort",
    "StatefulSetEvent",
]

ResourceKind = Literal[
    "pod", "svc", "replicaset", "deployment", "endpoint", "container", "daemonset", "statefulset"
]
RESOURCE_KINDS: tuple[ResourceKind, ...] = (
    "pod", "svc", "replicaset", "deployment", "endpoint", "container", "daemonset", "statefulset",
)  # fmt: skip
RESOURCE_PATHS: dict[ResourceKind, str] = {kind: f"/{kind}/" for kind in RESOURCE_KINDS}
EVENT_TYPES = ("ADD", "UPDATE", "DELETE")


class _Event(msgspec.Struct, frozen=True, gc=False):
    pass


class PodEvent(_Event, frozen=True, gc=False):
    uid: str
    event_type: str
    name: str
    namespace: str
    ip: str
    owner_type: str
    owner_name: str
    owner_id: str


class ServicePort(_Event, frozen=True, gc=False):
    name: str
    src: int
    dest: int  # 0 for a named targetPort
    protocol: str


class ServiceEvent(_Event, frozen=True):
    uid: str
    event_type: str
    name: str
    namespace: str
    type: str
    cluster_ips: list[str] | None
    ports: list[ServicePort]


class ReplicaSetEvent(_Event, frozen=True, gc=False):
    uid: str
    event_type: str
    name: str  # the owner's name, as the Go agent sends it
    namespace: str
    replicas: int
    owner_type: str
    owner_name: str
    owner_id: str


class DeploymentEvent(_Event, frozen=True, gc=False):
    uid: str
    event_type: str
    name: str
    namespace: str
    replicas: int


class EndpointIP(_Event, frozen=True, gc=False):
    type: str
    id: str
    name: str
    namespace: str
    ip: str


class EndpointPort(_Event, frozen=True, gc=False):
    port: int
    protocol: str
    name: str


class EndpointAddress(_Event, frozen=True):
    ips: list[EndpointIP]
    ports: list[EndpointPort]


class EndpointsEvent(_Event, frozen=True):
    uid: str
    event_type: str
    name: str
    namespace: str
    addresses: list[EndpointAddress]


class ContainerPort(_Event, frozen=True, gc=False):
    port: int
    protocol: str


class ContainerEvent(_Event, frozen=True):
    uid: str  # always "" on the wire
    event_type: str
    name: str
    namespace: str
    pod: str  # the pod UID
    image: str
    ports: list[ContainerPort]


class DaemonSetEvent(_Event, frozen=True, gc=False):
    uid: str
    event_type: str
    name: str
    namespace: str


class StatefulSetEvent(_Event, frozen=True, gc=False):
    uid: str
    event_type: str
    name: str
    namespace: str


ResourceEvent = (
    PodEvent
    | ServiceEvent
    | ReplicaSetEvent
    | DeploymentEvent
    | EndpointsEvent
    | ContainerEvent
    | DaemonSetEvent
    | StatefulSetEvent
)
