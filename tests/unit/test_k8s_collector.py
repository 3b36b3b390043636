"""The collector end to end against a kmock API server in its own process.

kmock plays the API server (see tests/kernel/kmock.py): list + watch fill the store, pods come
and go, a scripted 410 forces a relist, the server is killed and restarted, resyncs re-send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from alaz.config import KubernetesConfig
from alaz.errors import ConfigError
from alaz.export.resources import ResourceEvent, ResourceKind
from alaz.k8s import K8sCollector
from alaz.k8s.informers import KubernetesApi, open_api
from alaz.model import Exchange
from tests.kernel import kmock
from tests.kernel.kmock import KmockServer

kmock_server = kmock.kmock_server

FAST: dict[str, Any] = {"backoff_s": (0.05, 0.2), "rescan_s": 3600.0}


def ex(**changes: Any) -> Exchange:
    fields: dict[str, Any] = dict(
        protocol="HTTP", role="client", pid=100, tid=100, comm="curl", fd=3, cgroup_id=0,
        client_ip="10.244.1.17", client_port=40000, server_ip="10.96.41.7", server_port=8080,
        method="GET", path="/", status=200, latency_ns=1000, start_time_ms=1, tls=False,
        req_bytes=1, resp_bytes=1, host=None,
    )  # fmt: skip
    fields.update(changes)
    return Exchange(**fields)


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[ResourceKind, ResourceEvent]] = []
        self.scope: list[tuple[set[int], set[int]]] = []

    def resources(self, kind: ResourceKind, events: list[ResourceEvent]) -> None:
        self.events.extend((kind, e) for e in events)

    def apply(self, add: set[int], remove: set[int]) -> None:
        self.scope.append((set(add), set(remove)))

    def of(self, kind: str, event_type: str | None = None) -> list[Any]:
        return [e for k, e in self.events if k == kind and event_type in (None, e.event_type)]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class Running:
    def __init__(self, collector: K8sCollector, sink: Sink, api_client: Any) -> None:
        self.collector = collector
        self.sink = sink
        self.api_client = api_client
        self.task: asyncio.Task[None] | None = None


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "cgroup").write_text("0::/user.slice\n")
    return tmp_path


async def start(server: KmockServer, proc: Path, **options: Any) -> Running:
    cfg = client.Configuration()
    cfg.host = server.url
    api_client = client.ApiClient(cfg)
    sink = Sink()
    opts = {**FAST, **options}
    config = opts.pop("config", KubernetesConfig())
    collector = K8sCollector(
        config,
        kmock.NODE,
        on_resources=sink.resources,
        on_scope=sink.apply,
        api=KubernetesApi(api_client),
        cgroup_mount=str(proc / "no-cgroup-tree"),
        proc=str(proc),
        **opts,
    )
    running = Running(collector, sink, api_client)
    running.task = asyncio.create_task(collector.run())
    await collector.wait_synced(10)
    return running


@pytest.fixture
async def running(kmock_server: KmockServer, fake_proc: Path) -> AsyncIterator[Running]:
    r = await start(kmock_server, fake_proc)
    yield r
    await stop(r)


async def stop(r: Running) -> None:
    await r.collector.aclose()
    assert r.task is not None
    await r.task
    await r.api_client.close()


async def test_list_and_watch_fill_the_store(running: Running) -> None:
    store = running.collector.store
    assert set(store.pods) == {
        kmock.POD_CHECKOUT, kmock.POD_FRONTEND, kmock.POD_EXPORTER, kmock.POD_DB,
        kmock.POD_COREDNS, kmock.POD_PENDING,
    }  # fmt: skip
    assert store.pod_for_ip("10.244.1.17") is store.pods[kmock.POD_CHECKOUT]
    assert store.pod_for_ip("fd00:10:244:1::17") is store.pods[kmock.POD_CHECKOUT]
    assert store.service_for_ip("10.96.41.7") is not None
    assert store.pod_for_container(kmock.CID_DB) is store.pods[kmock.POD_DB]
    src, dst = running.collector.describe(ex())
    assert src.owner is not None and src.owner.name == "checkout"
    assert (dst.type, dst.name) == ("service", "checkout")
    sink = running.sink
    assert {e.name for e in sink.of("pod", "ADD")} == {
        "checkout-7d9f8b6c5-x2k4q",
        "frontend-6b8c9d-p9z8q",
        "node-exporter-7xk2p",
        "db-0",
        "coredns-5d78c9869d-abcde",
    }  # fmt: skip  (the pending pod has no IP: not sent)
    assert len(sink.of("container", "ADD")) == 6
    assert {k for k, _ in sink.events} == {
        "pod", "container", "svc", "endpoint", "replicaset", "deployment", "daemonset",
        "statefulset",
    }  # fmt: skip
    # kmock replays every object as ADDED when a watch starts: no duplicate events.
    await asyncio.sleep(0.2)
    assert len(sink.of("pod")) == 5


async def test_pod_added_and_deleted_during_the_run(
    kmock_server: KmockServer, fake_proc: Path
) -> None:
    r = await start(kmock_server, fake_proc)
    try:
        uid = "b1b2b3b4-c5c6-4d7d-8e8e-f9f9f9f9f9f9"
        cid = "9" * 64
        # The container's first process execs before the API has told us about the pod.
        (fake_proc / "4242").mkdir()
        (fake_proc / "4242" / "cgroup").write_text(
            "0::/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope\n"
        )
        r.collector.on_exec(4242, 90001)
        assert r.sink.scope == []
        new = kmock.pod("cart-1", "shop", uid, ips=("10.244.1.77",),
                        containers=(("cart", "acme/cart:2", cid, 9000),))  # fmt: skip
        await kmock_server.create("/api/v1/namespaces/shop/pods", new)
        await until(lambda: r.collector.store.pod_for_ip("10.244.1.77") is not None, 2.0)
        await until(lambda: r.sink.scope == [({90001}, set())], 2.0)
        got = r.collector.attributor(ex(cgroup_id=90001, client_ip="10.244.1.77"))
        assert got is not None and got.from_uid == uid
        assert [e.name for e in r.sink.of("pod", "ADD") if e.uid == uid] == ["cart-1"]
        await kmock_server.delete("/api/v1/namespaces/shop/pods/cart-1")
        await until(lambda: uid not in r.collector.store.pods)
        assert r.collector.store.pod_for_ip("10.244.1.77") is None
        await until(lambda: r.sink.scope[-1] == (set(), {90001}))
        assert [e.name for e in r.sink.of("pod", "DELETE")] == ["cart-1"]
        assert r.collector.attributor(ex(cgroup_id=90001, client_ip="10.244.1.77")) is None
    finally:
        await stop(r)


async def test_scripted_410_relists_without_losing_attribution(
    kmock_server: KmockServer, fake_proc: Path
) -> None:
    kmock_server.script_watch(
        "v1/pods",
        [
            {"type": "BOOKMARK", "object": {"apiVersion": "v1", "kind": "Pod",
                                            "metadata": {"resourceVersion": "12"}}},
            {"type": "ERROR", "object": {"apiVersion": "v1", "kind": "Status",
                                         "status": "Failure", "code": 410, "reason": "Expired",
                                         "message": "too old resource version: 10 (12)"}},
        ],
    )  # fmt: skip
    r = await start(kmock_server, fake_proc)
    lost: list[int] = []

    async def sample() -> None:
        while True:
            if r.collector.attributor(ex()) is None:
                lost.append(1)
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    try:
        pods = r.collector.informer("pods")
        await until(lambda: pods.lists >= 2 and pods.watches >= 2)
        paths = [p for m, p in kmock_server.requests() if p.startswith("/api/v1/pods")]
        lists = [p for p in paths if "watch=" not in p]
        watches = [p for p in paths if "watch=true" in p]
        assert len(lists) == 2
        assert len(watches) >= 2
        # Both watches start from their list's resourceVersion (kmock's literal '...').
        assert all("resourceVersion=..." in w for w in watches[:2])
        assert lost == []
        assert r.sink.of("pod", "DELETE") == []  # nothing vanished across the relist
    finally:
        sampler.cancel()
        await stop(r)


async def test_api_server_killed_and_restarted(kmock_server: KmockServer, fake_proc: Path) -> None:
    r = await start(kmock_server, fake_proc)
    try:
        informers = r.collector.informers
        lists_before = {inf.spec.name: inf.lists for inf in informers}
        kmock_server.kill()
        await until(lambda: all(inf.errors >= 1 for inf in informers))
        # The API is down: what we knew still attributes.
        assert r.collector.attributor(ex()) is not None
        extra = kmock.pod("late-1", "shop", "c1c2c3c4-d5d6-4e7e-8f8f-0a0a0a0a0a0a",
                          ips=("10.244.1.88",))  # fmt: skip
        kmock_server.restart([("v1/pods", extra)])
        await until(lambda: r.collector.store.pod_for_ip("10.244.1.88") is not None)
        await until(lambda: all(inf.lists > lists_before[inf.spec.name] for inf in informers))
        assert r.collector.store.pod_for_ip("10.244.1.17") is not None
        # Watching works again: a pod created now arrives by watch, not by relist.
        lists_now = r.collector.informer("pods").lists
        more = kmock.pod("late-2", "shop", "d1d2d3d4-e5e6-4f7f-8a8a-0b0b0b0b0b0b",
                         ips=("10.244.1.89",))  # fmt: skip
        await kmock_server.create("/api/v1/namespaces/shop/pods", more)
        await until(lambda: r.collector.store.pod_for_ip("10.244.1.89") is not None)
        assert r.collector.informer("pods").lists == lists_now
    finally:
        await stop(r)


async def test_resync_resends_every_object_as_update(
    kmock_server: KmockServer, fake_proc: Path
) -> None:
    r = await start(kmock_server, fake_proc, resync_s=0.2)
    try:
        before = len(r.sink.of("pod", "UPDATE"))
        assert before == 0
        await until(lambda: len(r.sink.of("svc", "UPDATE")) >= 4)
        updates = r.sink.of("pod", "UPDATE")
        assert {e.name for e in updates} >= {"checkout-7d9f8b6c5-x2k4q", "db-0"}
        assert r.sink.of("container", "UPDATE")
        assert r.sink.of("replicaset", "UPDATE")[0].name == "checkout"  # owner name quirk
        # A resync does not touch the store or the scope.
        assert r.sink.scope == []
    finally:
        await stop(r)


async def test_disabled_collector_returns_at_once() -> None:
    collector = K8sCollector(KubernetesConfig(enabled=False), "n1", self_pod_uid="")
    async with asyncio.timeout(1):
        await collector.run()
    await collector.aclose()
    assert collector.store.stats()["pods"] == 0
    assert collector.describe(ex())[1].type == "outbound"


async def test_kubeconfig_outside_the_cluster(
    kmock_server: KmockServer, fake_proc: Path, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {kmock_server.url}\n"
        "contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n"
        "users:\n- name: test\n  user:\n    token: abc\n"
    )
    config = KubernetesConfig(in_cluster=False, kubeconfig=str(kubeconfig))
    collector = K8sCollector(config, kmock.NODE, cgroup_mount="/nonexistent",
                             proc=str(fake_proc), **FAST)  # fmt: skip
    task = asyncio.create_task(collector.run())
    try:
        await collector.wait_synced(10)
        assert kmock.POD_CHECKOUT in collector.store.pods
    finally:
        await collector.aclose()
        await task


async def test_in_cluster_without_a_cluster_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="in-cluster"):
        await open_api(KubernetesConfig(in_cluster=True))
