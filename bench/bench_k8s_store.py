"""Memory and lookup cost of the Kubernetes store for a synthetic 5,000-pod, 2,000-service cluster.

Run: .venv/bin/python bench/bench_k8s_store.py [--pods N] [--services N] [--rounds N]

Memory (tracemalloc): everything the store keeps, built the way the informers build it (API JSON
decoded by msgspec into slim objects, then indexed; the JSON itself is freed). Beside it, the
same pods deserialized into kubernetes-asyncio's generated models (what `Watch().stream()` or a
`list_pod_for_all_namespaces()` keep), measured on a sample and scaled.
Targets: store <= 50 MiB; lookup <= 1 us.

Lookups (best of --rounds, ns per call) beside a plain `dict.get` on the same keys in the same run:
pod by IP, service by ClusterIP, pod by cgroup id, the anteon `Attributor` on a client exchange,
and `describe` (both JSON-lines ends with the owner chain resolved).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
import tracemalloc
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import msgspec

from alaz.k8s.attribution import K8sAttributor
from alaz.k8s.informers import KINDS
from alaz.k8s.store import PodInfo, ServiceInfo, Store, WorkloadInfo
from alaz.model import Exchange

MiB = 1 << 20
NAMESPACES = [f"team-{i:02d}" for i in range(40)]


def pod_json(i: int, rs: tuple[str, str]) -> dict[str, Any]:
    ns = NAMESPACES[i % len(NAMESPACES)]
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    cid = f"{i:064x}"
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": f"{rs[0]}-{i:05x}", "generateName": f"{rs[0]}-", "namespace": ns,
            "uid": f"00000000-0000-4000-8000-{i:012x}", "resourceVersion": str(100000 + i),
            "creationTimestamp": "2024-09-24T10:11:12Z",
            "labels": {"app": rs[0], "pod-template-hash": "7d9f8b6c5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs[0],
                                 "uid": rs[1], "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
                               "time": "2024-09-24T10:11:20Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:status": {"f:podIP": {}, "f:phase": {}}}}],
        },
        "spec": {
            "containers": [{"name": "app", "image": f"registry.example.com/{rs[0]}:1.{i % 9}",
                            "ports": [{"name": "http", "containerPort": 8080,
                                       "protocol": "TCP"}],
                            "env": [{"name": "LOG_LEVEL", "value": "info"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                            "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                              "mountPath": "/var/run/secrets/kubernetes.io/"}],
                            "terminationMessagePath": "/dev/termination-log",
                            "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "nodeName": f"node-{i % 50:02d}",
            "serviceAccountName": "default",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": {
            "phase": "Running", "hostIP": "192.168.0.1", "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": "2024-09-24T10:11:12Z", "qosClass": "Burstable",
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": "2024-09-24T10:11:20Z"}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0,
                                   "started": True, "image": f"registry.example.com/{rs[0]}:1",
                                   "imageID": "registry.example.com/x@sha256:" + "0" * 64,
                                   "containerID": f"containerd://{cid}",
                                   "state": {"running": {"startedAt": "2024-09-24T10:11:19Z"}}}],
        },
    }  # fmt: skip


def service_json(i: int) -> dict[str, Any]:
    ns = NAMESPACES[i % len(NAMESPACES)]
    return {
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": f"svc-{i:04d}", "namespace": ns, "resourceVersion": str(i),
                     "uid": f"11111111-0000-4000-8000-{i:012x}"},
        "spec": {"type": "ClusterIP", "clusterIP": f"10.96.{i >> 8}.{i & 255}",
                 "clusterIPs": [f"10.96.{i >> 8}.{i & 255}"], "ipFamilies": ["IPv4"],
                 "selector": {"app": f"app-{i}"}, "sessionAffinity": "None",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }  # fmt: skip


def cluster(pods: int, services: int) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    replicasets = [(f"app-{j:04d}-7d9f8b6c5", f"22222222-0000-4000-8000-{j:012x}")
                   for j in range(max(1, (pods + 2) // 3))]  # fmt: skip
    rs_json = [
        json.dumps({"metadata": {"name": name, "namespace": NAMESPACES[j % len(NAMESPACES)],
                                 "uid": uid, "ownerReferences": [
                                     {"kind": "Deployment", "name": name[:-10],
                                      "uid": f"33333333-0000-4000-8000-{j:012x}"}]},
                    "status": {"replicas": 3}}).encode()
        for j, (name, uid) in enumerate(replicasets)
    ]  # fmt: skip
    dep_json = [
        json.dumps({"metadata": {"name": name[:-10], "namespace": NAMESPACES[j % len(NAMESPACES)],
                                 "uid": f"33333333-0000-4000-8000-{j:012x}"},
                    "status": {"replicas": 3}}).encode()
        for j, (name, _) in enumerate(replicasets)
    ]  # fmt: skip
    pod_bytes = [json.dumps(pod_json(i, replicasets[i // 3])).encode() for i in range(pods)]
    svc_bytes = [json.dumps(service_json(i)).encode() for i in range(services)]
    return pod_bytes, svc_bytes, rs_json, dep_json


def build(
    pods: list[bytes], services: list[bytes], rss: list[bytes], deps: list[bytes]
) -> tuple[Store, dict[str, Any]]:
    """What the informers do: decode into slim objects, keep them (informer cache), index them."""
    store = Store()
    caches: dict[str, dict[str, Any]] = {}

    def feed(kind: str, bodies: list[bytes]) -> None:
        spec = KINDS[kind]
        decoder = msgspec.json.Decoder(spec.wire)
        cache = caches.setdefault(kind, {})
        for body in bodies:
            obj = spec.convert(decoder.decode(body))
            cache[f"{obj.namespace}/{obj.name}"] = obj
            if isinstance(obj, PodInfo):
                store.put_pod(obj)
            elif isinstance(obj, ServiceInfo):
                store.put_service(obj)
            elif isinstance(obj, WorkloadInfo):
                store.put_workload(obj)

    feed("deployments", deps)
    feed("replicasets", rss)
    feed("services", services)
    feed("pods", pods)
    for i, pod in enumerate(store.pods.values()):
        if pod.node == "node-00":
            store.bind_cgroup(10_000 + i, pod.key)
    return store, caches


def measure(fn: Callable[[], Any]) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return result, used


def generated_models_bytes(pods: list[bytes]) -> int:
    """Bytes held by `pods` deserialized into kubernetes-asyncio V1Pod models (client excluded)."""
    from kubernetes_asyncio.client import ApiClient

    async def run() -> int:
        async with ApiClient() as api:  # needs a loop for its (unused) HTTP session
            texts = [body.decode() for body in pods]
            deserialize = api.deserialize
            models, used = measure(
                lambda: [deserialize(SimpleNamespace(data=t), "V1Pod") for t in texts]
            )
            assert len(models) == len(pods)
            return used

    return asyncio.run(run())


def best_ns(fn: Callable[[int], None], loops: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(loops)
        best = min(best, time.perf_counter() - t0)
    return best / loops * 1e9


def lookups(store: Store, rounds: int) -> list[tuple[str, float]]:
    rng = random.Random(1)
    pod_ips = [p.ips[0] for p in store.pods.values()]
    svc_ips = [s.cluster_ip for s in store.services.values()]
    keys = [rng.choice(pod_ips) for _ in range(1024)]
    svc_keys = [rng.choice(svc_ips) for _ in range(1024)]
    cgroups = list(store.bound_cgroups())
    cg_keys = [rng.choice(cgroups) for _ in range(1024)]
    plain = {ip: i for i, ip in enumerate(pod_ips)}
    attributor = K8sAttributor(store)
    pod0 = store.pods[next(iter(store.bound_cgroups().values()))]
    exchange = Exchange(
        protocol="HTTP", role="client", pid=1, tid=1, comm="x", fd=3,
        cgroup_id=cg_keys[0], client_ip=pod0.ips[0], client_port=40000,
        server_ip=svc_keys[0], server_port=80, method="GET", path="/", status=200,
        latency_ns=1, start_time_ms=1, tls=False, req_bytes=1, resp_bytes=1,
    )  # fmt: skip
    to_pod = msgspec.structs.replace(exchange, server_ip=keys[1])

    def loop(get: Callable[[Any], Any], ks: list[Any]) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n // 1024):
                for k in ks:
                    get(k)

        return run

    def call(fn: Callable[[Exchange], Any], e: Exchange) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                fn(e)

        return run

    assert store.pod_for_ip(keys[0]) is not None and attributor(exchange) is not None
    n = 1024 * 200
    return [
        ("baseline dict.get (pod IP keys)", best_ns(loop(plain.get, keys), n, rounds)),
        ("store.pod_for_ip", best_ns(loop(store.pod_for_ip, keys), n, rounds)),
        ("store.service_for_ip", best_ns(loop(store.service_for_ip, svc_keys), n, rounds)),
        ("store.pod_for_cgroup", best_ns(loop(store.pod_for_cgroup, cg_keys), n, rounds)),
        ("K8sAttributor(exchange) -> service", best_ns(call(attributor, exchange), n // 4, rounds)),
        ("K8sAttributor(exchange) -> pod", best_ns(call(attributor, to_pod), n // 4, rounds)),
        ("describe(exchange) (JSON lines)", best_ns(call(attributor.describe, exchange), n // 4,
                                                    rounds)),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model-sample", type=int, default=250)
    args = parser.parse_args()

    pods, services, rss, deps = cluster(args.pods, args.services)
    (store, caches), used = measure(lambda: build(pods, services, rss, deps))
    sample = pods[: args.model_sample]
    model_used = generated_models_bytes(sample)
    model_scaled = model_used * len(pods) / max(1, len(sample))
    input_bytes = sum(map(len, pods)) + sum(map(len, services))

    print(f"cluster: {len(store.pods)} pods, {len(store.services)} services, "
          f"{len(store.workloads)} workloads; API JSON {input_bytes / MiB:.1f} MiB")  # fmt: skip
    print(f"store stats: {store.stats()}")
    print()
    print(f"{'memory':44} {'MiB':>9}")
    print(f"{'store + informer caches (slim msgspec)':44} {used / MiB:9.2f}   target <= 50 MiB")
    print(f"{'baseline: kubernetes-asyncio V1Pod models':44} {model_scaled / MiB:9.2f}   "
          f"(pods only; {len(sample)} measured, scaled)")  # fmt: skip
    print()
    print(f"{'lookup':44} {'ns/call':>9}")
    for name, ns in lookups(store, args.rounds):
        print(f"{name:44} {ns:9.1f}")
    print("target: lookup <= 1000 ns")
    del caches


if __name__ == "__main__":
    main()
