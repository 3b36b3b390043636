"""Attribution from the client's view: from = client pod, to = service > pod > outbound."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from alaz.export.rows import Attribution, request_row
from alaz.k8s.attribution import K8sAttributor, Peer, describe
from alaz.k8s.informers import KINDS
from alaz.k8s.store import PodInfo, ServiceInfo, Store, WorkloadInfo
from alaz.model import Exchange
from tests.kernel import kmock

_KIND = {
    "v1/pods": "pods",
    "v1/services": "services",
    "discovery.k8s.io/v1/endpointslices": "endpointslices",
    "apps/v1/replicasets": "replicasets",
    "apps/v1/deployments": "deployments",
    "apps/v1/daemonsets": "daemonsets",
    "apps/v1/statefulsets": "statefulsets",
}
CLIENT_CGROUP = 5001
EXPORTER_CGROUP = 5002
DB_CGROUP = 5003


def seeded_store() -> Store:
    store = Store()
    for resource, obj in kmock.SEED:
        kind = _KIND.get(resource)
        if kind is None:
            continue
        spec = KINDS[kind]
        slim = spec.convert(msgspec.json.decode(json.dumps(obj), type=spec.wire))
        if isinstance(slim, PodInfo):
            store.put_pod(slim)
        elif isinstance(slim, ServiceInfo):
            store.put_service(slim)
        elif isinstance(slim, WorkloadInfo):
            store.put_workload(slim)
        else:
            store.put_slice(slim)
    store.bind_cgroup(CLIENT_CGROUP, kmock.POD_CHECKOUT)
    store.bind_cgroup(EXPORTER_CGROUP, kmock.POD_EXPORTER)
    store.bind_cgroup(DB_CGROUP, kmock.POD_DB)
    return store


def ex(**changes: Any) -> Exchange:
    fields: dict[str, Any] = dict(
        protocol="HTTP", role="client", pid=100, tid=100, comm="curl", fd=3,
        cgroup_id=CLIENT_CGROUP, client_ip="10.244.1.17", client_port=40000,
        server_ip="10.96.41.7", server_port=8080, method="GET", path="/", status=200,
        latency_ns=1000, start_time_ms=1, tls=False, req_bytes=1, resp_bytes=1, host=None,
    )  # fmt: skip
    fields.update(changes)
    return Exchange(**fields)


@pytest.fixture
def attributor() -> K8sAttributor:
    return K8sAttributor(seeded_store())


def test_client_pod_to_service(attributor: K8sAttributor) -> None:
    assert attributor(ex()) == Attribution("pod", kmock.POD_CHECKOUT, "service", kmock.SVC_CHECKOUT)


def test_service_by_ipv6_cluster_ip(attributor: K8sAttributor) -> None:
    got = attributor(ex(server_ip="fd00:96::29"))
    assert got == Attribution("pod", kmock.POD_CHECKOUT, "service", kmock.SVC_CHECKOUT)


def test_client_pod_to_pod_ip(attributor: K8sAttributor) -> None:
    got = attributor(ex(server_ip="10.244.2.5"))
    assert got == Attribution("pod", kmock.POD_CHECKOUT, "pod", kmock.POD_FRONTEND)


def test_to_pod_by_ipv6_and_mapped(attributor: K8sAttributor) -> None:
    store = attributor.store
    store.put_pod(PodInfo("v6", "v6", "x", ip="fd00::9", ips=("fd00::9",)))
    assert attributor(ex(server_ip="fd00::9")) == Attribution(
        "pod", kmock.POD_CHECKOUT, "pod", "v6"
    )
    assert attributor(ex(server_ip="::ffff:10.244.2.5")) == Attribution(
        "pod", kmock.POD_CHECKOUT, "pod", kmock.POD_FRONTEND
    )


def test_outbound_named_by_host_else_ip(attributor: K8sAttributor) -> None:
    got = attributor(ex(server_ip="93.184.216.34", host="example.com"))
    assert got == Attribution("pod", kmock.POD_CHECKOUT, "outbound", "example.com")
    got = attributor(ex(server_ip="93.184.216.34"))
    assert got == Attribution("pod", kmock.POD_CHECKOUT, "outbound", "93.184.216.34")


def test_source_by_ip_when_cgroup_unknown(attributor: K8sAttributor) -> None:
    got = attributor(ex(cgroup_id=999, client_ip="10.244.2.5"))
    assert got is not None and got.from_uid == kmock.POD_FRONTEND


def test_unknown_source_is_dropped(attributor: K8sAttributor) -> None:
    assert attributor(ex(cgroup_id=999, client_ip="192.168.1.50")) is None


def test_host_network_client_is_named_by_its_cgroup(attributor: K8sAttributor) -> None:
    # The exporter runs with hostNetwork: its source IP is the node's, which names no pod.
    got = attributor(ex(cgroup_id=EXPORTER_CGROUP, client_ip="192.168.1.10"))
    assert got == Attribution("pod", kmock.POD_EXPORTER, "service", kmock.SVC_CHECKOUT)
    assert attributor(ex(cgroup_id=999, client_ip="192.168.1.10")) is None


def test_host_network_destination_is_outbound_ip(attributor: K8sAttributor) -> None:
    got = attributor(ex(server_ip="192.168.1.10", server_port=9100))
    assert got == Attribution("pod", kmock.POD_CHECKOUT, "outbound", "192.168.1.10")


def test_server_side_names_the_server_pod_by_cgroup(attributor: K8sAttributor) -> None:
    # A server-side exchange of db-0 (cgroup DB_CGROUP) from the frontend on another node.
    got = attributor(
        ex(role="server", cgroup_id=DB_CGROUP, client_ip="10.244.2.5", server_ip="10.244.1.30")
    )
    assert got == Attribution("pod", kmock.POD_FRONTEND, "pod", kmock.POD_DB)
    # The server's own cgroup must not be taken for the client's.
    got = attributor(ex(role="server", cgroup_id=DB_CGROUP, client_ip="203.0.113.9"))
    assert got is None


def test_loopback_destination_is_the_clients_own_pod(attributor: K8sAttributor) -> None:
    got = attributor(ex(server_ip="127.0.0.1", server_port=15000))
    assert got == Attribution("pod", kmock.POD_CHECKOUT, "pod", kmock.POD_CHECKOUT)


def test_endpoint_services_option_maps_pod_ip_to_its_service() -> None:
    store = seeded_store()
    plain = K8sAttributor(store)
    socket_lb = K8sAttributor(store, endpoint_services=True)
    e = ex(cgroup_id=DB_CGROUP, client_ip="10.244.1.30", server_ip="10.244.1.17")
    assert plain(e) == Attribution("pod", kmock.POD_DB, "pod", kmock.POD_CHECKOUT)
    assert socket_lb(e) == Attribution("pod", kmock.POD_DB, "service", kmock.SVC_CHECKOUT)


def test_describe_shapes_for_json_lines(attributor: K8sAttributor) -> None:
    src, dst = attributor.describe(ex())
    assert json.loads(msgspec.json.encode(src)) == {
        "type": "pod",
        "uid": kmock.POD_CHECKOUT,
        "name": "checkout-7d9f8b6c5-x2k4q",
        "namespace": "shop",
        "owner": {"type": "Deployment", "name": "checkout", "uid": kmock.DEP_CHECKOUT},
    }
    assert json.loads(msgspec.json.encode(dst)) == {
        "type": "service",
        "uid": kmock.SVC_CHECKOUT,
        "name": "checkout",
        "namespace": "shop",
        "owner": None,
    }


def test_describe_owner_kinds(attributor: K8sAttributor) -> None:
    _, db = attributor.describe(ex(server_ip="10.244.1.30"))
    assert db.owner is not None and (db.owner.type, db.owner.name) == ("StatefulSet", "db")
    src, _ = attributor.describe(ex(cgroup_id=EXPORTER_CGROUP, client_ip="192.168.1.10"))
    assert src.owner is not None and src.owner.type == "DaemonSet"
    _, coredns = attributor.describe(ex(server_ip="10.244.1.2"))
    assert coredns.owner is None


def test_describe_unknown_ends_are_outbound(attributor: K8sAttributor) -> None:
    src, dst = attributor.describe(
        ex(cgroup_id=999, client_ip="192.168.1.50", server_ip="1.1.1.1", host="one.one")
    )
    assert src == Peer("outbound", "192.168.1.50", "192.168.1.50", "", None)
    assert dst == Peer("outbound", "one.one", "one.one", "", None)
    assert describe(attributor.store, ex()) == attributor.describe(ex())


def test_rows_use_the_attribution(attributor: K8sAttributor) -> None:
    e = ex()
    who = attributor(e)
    assert who is not None
    row = request_row(e, who)
    assert (row.from_type, row.from_uid, row.to_type, row.to_uid) == (
        "pod",
        kmock.POD_CHECKOUT,
        "service",
        kmock.SVC_CHECKOUT,
    )


def test_deleted_pod_stops_attributing(attributor: K8sAttributor) -> None:
    store = attributor.store
    store.delete_pod(store.pods[kmock.POD_FRONTEND])
    got = attributor(ex(server_ip="10.244.2.5"))
    assert got == Attribution("pod", kmock.POD_CHECKOUT, "outbound", "10.244.2.5")
