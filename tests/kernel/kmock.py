"""A kmock Kubernetes API server in its own process, seeded with a small cluster, for tests.

    python -m tests.kernel.kmock --port 18080 [--seed seed.json]    # prints "READY <port>"

kmock 0.8 emulates list/watch/create/patch/delete of built-in kinds in memory. Patched here the
way `reference/testbed-scripts/kmock_server.py` does: kmock recognises only `?watch=true`, while
kubernetes-asyncio's generated calls send `?watch=True` (the real apiserver accepts both).

Control commands, one JSON line on stdin each, answered by one "OK <json>" line on stdout:

    {"op": "script_watch", "resource": "v1/pods", "events": [...], "times": 1}
        the next `times` watches of that resource get these events instead of the emulator's
        (a BOOKMARK, an ERROR 410 Gone, ...); later watches fall through to the emulator
    {"op": "requests"}          every request seen so far: [[method, path?query], ...]
    {"op": "ping"}

`KmockServer` runs it from a test: `start()`, `kill()` (SIGKILL: the API server dies),
`restart()` (same port, same seed plus `extra`), HTTP helpers to create/patch/delete objects
(which kmock turns into watch events), and `command()`. The `kmock_server` fixture yields one
started on a free port with `SEED`.

Differences from a real apiserver: list resourceVersion is the literal '...', objects keep the
resourceVersion/uid they were given, every watch first replays all objects as ADDED, and
bookmarks, 410, timeoutSeconds and paging are not emulated unless scripted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

# --- the seeded cluster --------------------------------------------------------------------------

NODE = "worker-1"
CID_CHECKOUT = "a" * 63 + "1"
CID_CHECKOUT_SIDECAR = "a" * 63 + "2"
CID_FRONTEND = "b" * 63 + "1"
CID_EXPORTER = "c" * 63 + "1"
CID_DB = "d" * 63 + "1"
CID_COREDNS = "e" * 63 + "1"

POD_CHECKOUT = "5b0c0f0e-3c41-4a58-9f0e-0a1d2e3f4a5b"
POD_FRONTEND = "6c1d1f1f-4d52-4b69-8f1f-1b2e3f405b6c"
POD_EXPORTER = "7d2e2a2a-5e63-4c7a-9a2a-2c3f40516c7d"
POD_DB = "8e3f3b3b-6f74-4d8b-8b3b-3d4051627d8e"
POD_COREDNS = "9f404c4c-7085-4e9c-9c4c-4e5162738e9f"
POD_PENDING = "a0515d5d-8196-4fad-8d5d-5f6273849fa0"
RS_CHECKOUT = "2d3e4f50-6a7b-4c8d-9e0f-1a2b3c4d5e6f"
DEP_CHECKOUT = "77aa88bb-99cc-4ddd-8eee-ffff00001111"
RS_FRONTEND = "3e4f5061-7b8c-4d9e-8f10-2b3c4d5e6f70"
DEP_FRONTEND = "88bb99cc-aadd-4eee-9fff-000011112222"
DS_EXPORTER = "c3d4e5f6-1111-4222-8333-444455556666"
STS_DB = "d4e5f607-2222-4333-9444-555566667777"
SVC_CHECKOUT = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
SVC_DB = "e2f3a4b5-c6d7-4e8f-9a0b-1c2d3e4f5a6b"
EP_CHECKOUT = "ab12cd34-0000-4000-8000-000000000001"


def _meta(
    name: str, ns: str, uid: str, rv: str, owner: tuple[str, str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv}
    if owner:
        kind, oname, ouid = owner
        group = (
            "apps/v1" if kind in ("ReplicaSet", "Deployment", "DaemonSet", "StatefulSet") else "v1"
        )
        meta["ownerReferences"] = [
            {"apiVersion": group, "kind": kind, "name": oname, "uid": ouid, "controller": True}
        ]
    return meta


def pod(
    name: str,
    ns: str,
    uid: str,
    *,
    ips: tuple[str, ...] = (),
    node: str = NODE,
    owner: tuple[str, str, str] | None = None,
    containers: tuple[tuple[str, str, str, int], ...] = (),  # (name, image, container id, port)
    host_network: bool = False,
    phase: str = "Running",
    rv: str = "10",
) -> dict[str, Any]:
    """A Pod as the API server returns it (the fields alaz reads, plus some it ignores)."""
    status: dict[str, Any] = {"phase": phase, "hostIP": "192.168.1.10"}
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    statuses = [
        {"name": c, "image": img, "containerID": f"containerd://{cid}", "ready": True}
        for c, img, cid, _ in containers
        if cid
    ]
    if statuses:
        status["containerStatuses"] = statuses
    spec: dict[str, Any] = {
        "nodeName": node,
        "containers": [
            {
                "name": c,
                "image": img,
                "ports": [{"containerPort": port, "protocol": "TCP"}] if port else [],
                "resources": {},
            }
            for c, img, _, port in containers
        ],
    }
    if host_network:
        spec["hostNetwork"] = True
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**_meta(name, ns, uid, rv, owner), "labels": {"app": name.split("-")[0]}},
        "spec": spec,
        "status": status,
    }


def workload(
    kind: str,
    name: str,
    ns: str,
    uid: str,
    *,
    replicas: int = 0,
    owner: tuple[str, str, str] | None = None,
    rv: str = "5",
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "batch/v1" if kind == "Job" else "apps/v1",
        "kind": kind,
        "metadata": _meta(name, ns, uid, rv, owner),
        "spec": {"replicas": replicas} if kind != "Job" else {},
        "status": {"replicas": replicas} if kind != "Job" else {},
    }
    return obj


def service(
    name: str,
    ns: str,
    uid: str,
    cluster_ips: list[str] | None,
    ports: list[dict[str, Any]],
    *,
    rv: str = "7",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "ClusterIP", "ports": ports}
    if cluster_ips is not None:
        spec["clusterIP"] = cluster_ips[0]
        spec["clusterIPs"] = cluster_ips
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, ns, uid, rv),
        "spec": spec,
    }


SEED: list[tuple[str, dict[str, Any]]] = [
    ("apps/v1/deployments", workload("Deployment", "checkout", "shop", DEP_CHECKOUT, replicas=1)),
    ("apps/v1/replicasets", workload("ReplicaSet", "checkout-7d9f8b6c5", "shop", RS_CHECKOUT,
                                     replicas=1, owner=("Deployment", "checkout", DEP_CHECKOUT))),
    ("apps/v1/deployments", workload("Deployment", "frontend", "web", DEP_FRONTEND, replicas=1)),
    ("apps/v1/replicasets", workload("ReplicaSet", "frontend-6b8c9d", "web", RS_FRONTEND,
                                     replicas=1, owner=("Deployment", "frontend", DEP_FRONTEND))),
    ("apps/v1/daemonsets", workload("DaemonSet", "node-exporter", "monitoring", DS_EXPORTER)),
    ("apps/v1/statefulsets", workload("StatefulSet", "db", "shop", STS_DB, replicas=1)),
    ("v1/pods", pod("checkout-7d9f8b6c5-x2k4q", "shop", POD_CHECKOUT,
                    ips=("10.244.1.17", "fd00:10:244:1::17"),
                    owner=("ReplicaSet", "checkout-7d9f8b6c5", RS_CHECKOUT),
                    containers=(("app", "ghcr.io/acme/checkout:1.4.2", CID_CHECKOUT, 8080),
                                ("envoy", "envoyproxy/envoy:v1.30", CID_CHECKOUT_SIDECAR, 0)))),
    ("v1/pods", pod("frontend-6b8c9d-p9z8q", "web", POD_FRONTEND, ips=("10.244.2.5",),
                    node="worker-2", owner=("ReplicaSet", "frontend-6b8c9d", RS_FRONTEND),
                    containers=(("web", "nginx:1.27", CID_FRONTEND, 80),))),
    ("v1/pods", pod("node-exporter-7xk2p", "monitoring", POD_EXPORTER, ips=("192.168.1.10",),
                    owner=("DaemonSet", "node-exporter", DS_EXPORTER), host_network=True,
                    containers=(("exporter", "prom/node-exporter:v1.8", CID_EXPORTER, 9100),))),
    ("v1/pods", pod("db-0", "shop", POD_DB, ips=("10.244.1.30",),
                    owner=("StatefulSet", "db", STS_DB),
                    containers=(("postgres", "postgres:16", CID_DB, 5432),))),
    ("v1/pods", pod("coredns-5d78c9869d-abcde", "kube-system", POD_COREDNS, ips=("10.244.1.2",),
                    containers=(("coredns", "coredns:1.11", CID_COREDNS, 53),))),
    ("v1/pods", pod("checkout-7d9f8b6c5-pend1", "shop", POD_PENDING, phase="Pending",
                    owner=("ReplicaSet", "checkout-7d9f8b6c5", RS_CHECKOUT),
                    containers=(("app", "ghcr.io/acme/checkout:1.4.2", "", 8080),))),
    ("v1/services", service("checkout", "shop", SVC_CHECKOUT, ["10.96.41.7", "fd00:96::29"], [
        {"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "port": 9090, "targetPort": "grpc", "protocol": "TCP"}])),
    ("v1/services", service("db", "shop", SVC_DB, ["None"], [
        {"name": "pg", "port": 5432, "targetPort": 5432, "protocol": "TCP"}])),
    ("v1/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": _meta("checkout", "shop", EP_CHECKOUT, "8"),
        "subsets": [{
            "addresses": [{"ip": "10.244.1.17", "targetRef": {
                "kind": "Pod", "uid": POD_CHECKOUT, "name": "checkout-7d9f8b6c5-x2k4q",
                "namespace": "shop"}}],
            "notReadyAddresses": [{"ip": "10.244.1.99"}],
            "ports": [{"port": 8080, "protocol": "TCP", "name": "http"}]}]}),
    ("discovery.k8s.io/v1/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {**_meta("checkout-x7k2m", "shop", "es-checkout-1", "9"),
                     "labels": {"kubernetes.io/service-name": "checkout"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.17"], "conditions": {"ready": True}}]}),
]  # fmt: skip


# --- the server process --------------------------------------------------------------------------


async def _serve(port: int, seed: list[tuple[str, dict[str, Any]]]) -> None:
    import kmock
    from kmock._internal import parsing

    original = parsing.guess_k8s

    def guess_lowercased(k8s: Any, method: Any, query: Any) -> Any:
        return original(k8s, method, {**query, "watch": str(query.get("watch", "")).lower()})

    parsing.guess_k8s = guess_lowercased

    async with kmock.KubernetesEmulator() as k, kmock.Server(k, host="127.0.0.1", port=port):
        k.resources.load_bundled()
        for resource, obj in seed:
            meta = obj["metadata"]
            k.objects[kmock.resource(resource), meta.get("namespace"), meta["name"]] = obj
        print("READY", port, flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return  # the test went away
            command = json.loads(line)
            op = command["op"]
            result: Any = None
            if op == "script_watch":
                res = kmock.resource(command["resource"])
                times = int(command.get("times", 1))
                k["watch", res][:times] << tuple(command["events"])
            elif op == "requests":
                result = [[str(r.method), str(r.url.path_qs)] for r in list(k)]
            print("OK", json.dumps(result), flush=True)


def main() -> None:
    # Run as a script, this file's folder would come first on sys.path and `import kmock` would
    # import this file; the library is meant.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--seed", help="JSON file: [[resource, object], ...]; default: SEED")
    args = parser.parse_args()
    seed: list[tuple[str, dict[str, Any]]] = SEED
    if args.seed is not None:
        seed = [(r, o) for r, o in json.loads(Path(args.seed).read_text())]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, seed))


# --- the test side -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KmockServer:
    """A kmock API server process on 127.0.0.1:`port`, seeded with `seed`."""

    def __init__(
        self, seed: list[tuple[str, dict[str, Any]]] | None = None, port: int | None = None
    ) -> None:
        self.seed = list(SEED if seed is None else seed)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self._seed_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        self._seed_file.close()

    def start(self, extra: list[tuple[str, dict[str, Any]]] = ()) -> None:  # type: ignore[assignment]
        """Start the process (same port as before) and wait for READY."""
        Path(self._seed_file.name).write_text(json.dumps([*self.seed, *extra]))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.kernel.kmock",
                "--port",
                str(self.port),
                "--seed",
                self._seed_file.name,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"kmock did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL the server: connections drop, the port closes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, extra: list[tuple[str, dict[str, Any]]] = ()) -> None:  # type: ignore[assignment]
        self.kill()
        self.start(extra)

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            os.unlink(self._seed_file.name)

    def command(self, op: str, **args: Any) -> Any:
        """Send a control command; returns its result."""
        assert (
            self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        )
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith("OK "):
            raise RuntimeError(f"kmock command {op} failed: {line!r}")
        return json.loads(line[3:])

    def script_watch(self, resource: str, events: list[dict[str, Any]], times: int = 1) -> None:
        self.command("script_watch", resource=resource, events=events, times=times)

    def requests(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.command("requests")]

    async def create(self, collection: str, obj: dict[str, Any]) -> None:
        """POST `obj` to a namespaced collection path, e.g. /api/v1/namespaces/shop/pods."""
        async with httpx.AsyncClient(base_url=self.url) as client:
            (await client.post(collection, json=obj)).raise_for_status()

    async def patch(self, path: str, body: dict[str, Any]) -> None:
        headers = {"content-type": "application/merge-patch+json"}
        async with httpx.AsyncClient(base_url=self.url) as client:
            (await client.patch(path, json=body, headers=headers)).raise_for_status()

    async def delete(self, path: str) -> None:
        async with httpx.AsyncClient(base_url=self.url) as client:
            (await client.delete(path)).raise_for_status()


@pytest.fixture
def kmock_server() -> Iterator[KmockServer]:
    """A started kmock server seeded with `SEED`, killed after the test."""
    server = KmockServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


if __name__ == "__main__":
    main()
