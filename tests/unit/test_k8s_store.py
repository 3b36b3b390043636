"""The store: IP/ClusterIP/container/cgroup lookups, owner chains, replacement and deletion."""

from __future__ import annotations

from alaz.k8s.store import (
    EndpointSliceInfo,
    OwnerRef,
    PodInfo,
    ServiceInfo,
    Store,
    WorkloadInfo,
    canonical_ip,
    strip_container_id,
)

CID = "f" * 64


def _pod(
    uid: str = "p1",
    name: str = "web-1",
    ns: str = "shop",
    ips: tuple[str, ...] = ("10.0.0.5",),
    **kw: object,
) -> PodInfo:
    return PodInfo(uid=uid, name=name, namespace=ns, ip=ips[0] if ips else "", ips=ips, **kw)  # type: ignore[arg-type]


def test_pod_by_ipv4_ipv6_and_mapped_ipv6() -> None:
    store = Store()
    pod = _pod(ips=("10.0.0.5", "fd00::5"))
    store.put_pod(pod)
    assert store.pod_for_ip("10.0.0.5") is pod
    assert store.pod_for_ip("fd00::5") is pod
    assert store.pod_for_ip("::ffff:10.0.0.5") is pod
    assert store.pod_for_ip("10.0.0.6") is None


def test_canonical_ip_forms() -> None:
    assert canonical_ip("fd00:0:0:0:0:0:0:5") == "fd00::5"
    assert canonical_ip("::ffff:10.1.2.3") == "10.1.2.3"
    assert canonical_ip("not-an-ip") == "not-an-ip"


def test_host_network_pod_is_not_indexed_by_ip() -> None:
    store = Store()
    store.put_pod(_pod(ips=("192.168.1.10",), host_network=True))
    assert store.pod_for_ip("192.168.1.10") is None
    assert "p1" in store.pods


def test_finished_pod_does_not_claim_or_steal_an_ip() -> None:
    store = Store()
    running = _pod(uid="new", name="new", ips=("10.0.0.9",), phase="Running")
    store.put_pod(running)
    store.put_pod(_pod(uid="old", name="old", ips=("10.0.0.9",), phase="Succeeded"))
    assert store.pod_for_ip("10.0.0.9") is running
    # The old pod's deletion must not remove the new pod's entry.
    store.delete_pod(_pod(uid="old", name="old", ips=("10.0.0.9",)))
    assert store.pod_for_ip("10.0.0.9") is running


def test_update_moves_ip_and_delete_forgets() -> None:
    store = Store()
    store.put_pod(_pod(ips=("10.0.0.5",)))
    moved = _pod(ips=("10.0.0.7",))
    assert store.put_pod(moved) is not None
    assert store.pod_for_ip("10.0.0.5") is None
    assert store.pod_for_ip("10.0.0.7") is moved
    store.delete_pod(moved)
    assert store.pod_for_ip("10.0.0.7") is None
    assert not store.pods


def test_pod_by_container_id_with_or_without_scheme() -> None:
    store = Store()
    pod = _pod(container_ids=(CID,))
    store.put_pod(pod)
    assert store.pod_for_container(CID) is pod
    assert store.pod_for_container(f"containerd://{CID}") is pod
    assert strip_container_id(f"cri-o://{CID}") == CID
    store.delete_pod(pod)
    assert store.pod_for_container(CID) is None


def test_cgroup_binding_follows_pod_lifetime() -> None:
    store = Store()
    pod = _pod(host_network=True, ips=("192.168.1.10",))
    store.put_pod(pod)
    store.bind_cgroup(4242, pod.key)
    assert store.pod_for_cgroup(4242) is pod
    updated = _pod(host_network=True, ips=("192.168.1.10",), phase="Running")
    store.put_pod(updated)
    assert store.pod_for_cgroup(4242) is updated  # the binding is by key, not by version
    store.delete_pod(updated)
    assert store.pod_for_cgroup(4242) is None
    assert store.cgroups_of(pod.key) == frozenset()


def test_unbind_cgroup() -> None:
    store = Store()
    store.put_pod(_pod())
    store.bind_cgroup(7, "p1")
    store.bind_cgroup(8, "p1")
    store.unbind_cgroup(7)
    assert store.cgroups_of("p1") == {8}
    assert store.pod_for_cgroup(7) is None


def test_owner_chain_replicaset_to_deployment() -> None:
    store = Store()
    dep = OwnerRef("Deployment", "checkout", "d1")
    store.put_workload(WorkloadInfo("ReplicaSet", "rs1", "checkout-7d9f", "shop", 3, dep))
    assert store.top_owner(OwnerRef("ReplicaSet", "checkout-7d9f", "rs1")) == dep


def test_owner_chain_job_to_cronjob() -> None:
    store = Store()
    cron = OwnerRef("CronJob", "nightly", "c1")
    store.put_workload(WorkloadInfo("Job", "j1", "nightly-2891", "ops", 0, cron))
    assert store.top_owner(OwnerRef("Job", "nightly-2891", "j1")) == cron


def test_owner_chain_stops_at_direct_owners_and_unknowns() -> None:
    store = Store()
    sts = OwnerRef("StatefulSet", "db", "s1")
    ds = OwnerRef("DaemonSet", "agent", "ds1")
    orphan_rs = OwnerRef("ReplicaSet", "lonely", "rs9")
    store.put_workload(WorkloadInfo("ReplicaSet", "rs9", "lonely", "x", 1, None))
    assert store.top_owner(sts) == sts
    assert store.top_owner(ds) == ds
    assert store.top_owner(orphan_rs) == orphan_rs
    unknown = OwnerRef("ReplicaSet", "unknown", "nope")
    assert store.top_owner(unknown) == unknown
    assert store.top_owner(None) is None


def test_service_by_cluster_ips_dual_stack_and_headless() -> None:
    store = Store()
    svc = ServiceInfo("s1", "checkout", "shop", cluster_ip="10.96.0.7",
                      cluster_ips=("10.96.0.7", "fd00:96::7"))  # fmt: skip
    headless = ServiceInfo("s2", "db", "shop", cluster_ip="None", cluster_ips=("None",))
    store.put_service(svc)
    store.put_service(headless)
    assert store.service_for_ip("10.96.0.7") is svc
    assert store.service_for_ip("fd00:96::7") is svc
    assert store.service_for_ip("::ffff:10.96.0.7") is svc
    assert store.service_for_ip("None") is None
    assert store.service_named("shop", "db") is headless
    store.delete_service(svc)
    assert store.service_for_ip("10.96.0.7") is None


def test_service_without_cluster_ips_uses_cluster_ip() -> None:
    store = Store()
    svc = ServiceInfo("s1", "old", "shop", cluster_ip="10.96.0.8", cluster_ips=None)
    store.put_service(svc)
    assert store.service_for_ip("10.96.0.8") is svc


def test_endpoint_slices_map_pod_ips_to_their_service() -> None:
    store = Store()
    svc = ServiceInfo("s1", "checkout", "shop", cluster_ip="10.96.0.7")
    store.put_service(svc)
    eps = EndpointSliceInfo("e1", "checkout-abc", "shop", "checkout", ("10.0.0.5",))
    store.put_slice(eps)
    assert store.service_for_endpoint_ip("10.0.0.5") is svc
    store.delete_slice(eps)
    assert store.service_for_endpoint_ip("10.0.0.5") is None


def test_objects_without_uid_are_keyed_by_namespace_and_name() -> None:
    store = Store()
    a = PodInfo(uid="", name="a", namespace="x", ip="10.0.0.1", ips=("10.0.0.1",))
    b = PodInfo(uid="", name="b", namespace="x", ip="10.0.0.2", ips=("10.0.0.2",))
    store.put_pod(a)
    store.put_pod(b)
    assert set(store.pods) == {"x/a", "x/b"}


def test_stats_and_pods_on_node() -> None:
    store = Store()
    store.put_pod(_pod(uid="a", name="a", node="n1"))
    store.put_pod(_pod(uid="b", name="b", node="n2", ips=("10.0.0.6",)))
    assert [p.uid for p in store.pods_on_node("n1")] == ["a"]
    assert store.stats()["pods"] == 2
    assert store.stats()["pod_ips"] == 2
