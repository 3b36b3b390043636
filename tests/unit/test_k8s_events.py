"""Backend resource events from informer changes: shapes, quirks, schemas (spec §2.4.4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from alaz.k8s.events import resource_events
from alaz.k8s.informers import KINDS, Change
from tests.kernel.kmock import SEED

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
_FILES = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
_REGISTRY: Registry[Any] = Registry().with_resources(
    (s["$id"], Resource.from_contents(s)) for s in _FILES.values()
)
METADATA = {
    "monitoring_id": "2b7c6a8e-1f0d-4c43-9d5e-7e8f3a1b2c4d",
    "idempotency_key": "8e7d6c5b-4a39-4281-9706-f5e4d3c2b1a0",
    "node_id": "worker-1",
    "alaz_version": "v0.1.0",
}

_RESOURCE_TO_KIND = {
    "v1/pods": "pods",
    "v1/services": "services",
    "v1/endpoints": "endpoints",
    "discovery.k8s.io/v1/endpointslices": "endpointslices",
    "apps/v1/replicasets": "replicasets",
    "apps/v1/deployments": "deployments",
    "apps/v1/daemonsets": "daemonsets",
    "apps/v1/statefulsets": "statefulsets",
}


def slim(kind: str, obj: dict[str, Any]) -> Any:
    spec = KINDS[kind]
    return spec.convert(msgspec.json.decode(json.dumps(obj), type=spec.wire))


def seeded(name: str, resource: str = "v1/pods") -> tuple[str, Any]:
    for res, obj in SEED:
        if res == resource and obj["metadata"]["name"] == name:
            kind = _RESOURCE_TO_KIND[resource]
            return kind, slim(kind, obj)
    raise KeyError(name)


def wire(kind: str, change: Change, obj: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for resource_kind, events in resource_events(kind, change, obj):
        out.setdefault(resource_kind, []).extend(json.loads(msgspec.json.encode(events)))
    return out


def validate(resource_kind: str, events: list[dict[str, Any]]) -> None:
    schema = _FILES[f"{resource_kind}.json"]
    document = {"metadata": METADATA, "events": events}
    Draft202012Validator(schema, registry=_REGISTRY).validate(document)


def test_pod_add_sends_pod_and_one_container_event_per_container() -> None:
    kind, pod = seeded("checkout-7d9f8b6c5-x2k4q")
    out = wire(kind, Change.ADD, pod)
    assert out["pod"] == [
        {
            "uid": "5b0c0f0e-3c41-4a58-9f0e-0a1d2e3f4a5b",
            "event_type": "ADD",
            "name": "checkout-7d9f8b6c5-x2k4q",
            "namespace": "shop",
            "ip": "10.244.1.17",
            "owner_type": "ReplicaSet",
            "owner_name": "checkout-7d9f8b6c5",
            "owner_id": "2d3e4f50-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        }
    ]
    assert out["container"] == [
        {
            "uid": "",
            "event_type": "ADD",
            "name": "app",
            "namespace": "shop",
            "pod": "5b0c0f0e-3c41-4a58-9f0e-0a1d2e3f4a5b",
            "image": "ghcr.io/acme/checkout:1.4.2",
            "ports": [{"port": 8080, "protocol": "TCP"}],
        },
        {
            "uid": "",
            "event_type": "ADD",
            "name": "envoy",
            "namespace": "shop",
            "pod": "5b0c0f0e-3c41-4a58-9f0e-0a1d2e3f4a5b",
            "image": "envoyproxy/envoy:v1.30",
            "ports": [],
        },
    ]
    validate("pod", out["pod"])
    validate("container", out["container"])


def test_pod_delete_sends_no_container_events() -> None:
    kind, pod = seeded("checkout-7d9f8b6c5-x2k4q")
    out = wire(kind, Change.DELETE, pod)
    assert [e["event_type"] for e in out["pod"]] == ["DELETE"]
    assert "container" not in out


@pytest.mark.parametrize("change", [Change.ADD, Change.UPDATE, Change.DELETE, Change.SYNC])
def test_pod_without_ip_is_skipped_for_every_change(change: Change) -> None:
    kind, pod = seeded("checkout-7d9f8b6c5-pend1")
    assert pod.ip == ""
    assert wire(kind, change, pod) == {}


def test_resync_is_sent_as_update() -> None:
    kind, pod = seeded("db-0")
    out = wire(kind, Change.SYNC, pod)
    assert {e["event_type"] for e in out["pod"] + out["container"]} == {"UPDATE"}


def test_pod_without_owner_has_empty_owner_fields() -> None:
    kind, pod = seeded("coredns-5d78c9869d-abcde")
    (event,) = wire(kind, Change.UPDATE, pod)["pod"]
    assert (event["owner_type"], event["owner_name"], event["owner_id"]) == ("", "", "")
    validate("pod", [event])


def test_service_named_target_port_is_zero_and_cluster_ips_list() -> None:
    kind, svc = seeded("checkout", "v1/services")
    out = wire(kind, Change.ADD, svc)
    assert out["svc"] == [
        {
            "uid": "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b",
            "event_type": "ADD",
            "name": "checkout",
            "namespace": "shop",
            "type": "ClusterIP",
            "cluster_ips": ["10.96.41.7", "fd00:96::29"],
            "ports": [
                {"name": "http", "src": 8080, "dest": 8080, "protocol": "TCP"},
                {"name": "grpc", "src": 9090, "dest": 0, "protocol": "TCP"},
            ],
        }
    ]
    validate("svc", out["svc"])


def test_service_without_cluster_ips_sends_null() -> None:
    obj = {"metadata": {"name": "ext", "namespace": "a", "uid": "u"},
           "spec": {"type": "ExternalName", "externalName": "example.com"}}  # fmt: skip
    out = wire("services", Change.ADD, slim("services", obj))
    assert out["svc"][0]["cluster_ips"] is None
    assert out["svc"][0]["ports"] == []
    validate("svc", out["svc"])


def test_replicaset_name_is_the_owners_name() -> None:
    kind, rs = seeded("checkout-7d9f8b6c5", "apps/v1/replicasets")
    (event,) = wire(kind, Change.UPDATE, rs)["replicaset"]
    assert event == {
        "uid": "2d3e4f50-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
        "event_type": "UPDATE",
        "name": "checkout",
        "namespace": "shop",
        "replicas": 1,
        "owner_type": "Deployment",
        "owner_name": "checkout",
        "owner_id": "77aa88bb-99cc-4ddd-8eee-ffff00001111",
    }
    validate("replicaset", [event])


def test_deployment_daemonset_statefulset_shapes() -> None:
    kind, dep = seeded("checkout", "apps/v1/deployments")
    (d,) = wire(kind, Change.ADD, dep)["deployment"]
    assert d == {"uid": dep.uid, "event_type": "ADD", "name": "checkout", "namespace": "shop",
                 "replicas": 1}  # fmt: skip
    validate("deployment", [d])
    _, ds = seeded("node-exporter", "apps/v1/daemonsets")
    (e,) = wire("daemonsets", Change.DELETE, ds)["daemonset"]
    assert e == {"uid": ds.uid, "event_type": "DELETE", "name": "node-exporter",
                 "namespace": "monitoring"}  # fmt: skip
    validate("daemonset", [e])
    _, sts = seeded("db", "apps/v1/statefulsets")
    (s,) = wire("statefulsets", Change.ADD, sts)["statefulset"]
    assert s["name"] == "db"
    validate("statefulset", [s])


def test_endpoints_ready_addresses_only() -> None:
    eps = slim("endpoints", next(o for r, o in SEED if r == "v1/endpoints"))
    (event,) = wire("endpoints", Change.ADD, eps)["endpoint"]
    assert event["addresses"] == [
        {
            "ips": [
                {
                    "type": "Pod",
                    "id": "5b0c0f0e-3c41-4a58-9f0e-0a1d2e3f4a5b",
                    "name": "checkout-7d9f8b6c5-x2k4q",
                    "namespace": "shop",
                    "ip": "10.244.1.17",
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP", "name": "http"}],
        }
    ]
    validate("endpoint", [event])


def test_endpoint_without_target_ref_has_empty_type() -> None:
    obj = {"metadata": {"name": "ext", "namespace": "a", "uid": "u"},
           "subsets": [{"addresses": [{"ip": "1.2.3.4"}], "ports": [{"port": 80}]}]}  # fmt: skip
    (event,) = wire("endpoints", Change.ADD, slim("endpoints", obj))["endpoint"]
    assert event["addresses"][0]["ips"][0] == {
        "type": "",
        "id": "",
        "name": "",
        "namespace": "",
        "ip": "1.2.3.4",
    }
    assert event["addresses"][0]["ports"] == [{"port": 80, "protocol": "TCP", "name": ""}]
    validate("endpoint", [event])


def test_slices_and_jobs_send_nothing() -> None:
    slice_obj = next(o for r, o in SEED if r == "discovery.k8s.io/v1/endpointslices")
    assert wire("endpointslices", Change.ADD, slim("endpointslices", slice_obj)) == {}
    job = {"metadata": {"name": "j", "namespace": "a", "uid": "u"}}
    assert wire("jobs", Change.ADD, slim("jobs", job)) == {}
