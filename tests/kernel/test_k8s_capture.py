"""The Kubernetes view end to end: a kmock API server, "pods" that are network namespaces and
cgroups named the way the kubelet names them, real traffic between them, and the records
naming both ends after pods and their owners. Processes outside the pods are not captured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alaz.k8s.cgroups import find_v2_mount
from tests.conftest import need
from tests.kernel.conftest import ROOT, AgentProcess, netns_pod, wait_for_port
from tests.kernel.kmock import NODE, KmockServer, pod, workload

pytestmark = pytest.mark.kernel
SERVER = ROOT / "tests/kernel/servers/http_server.py"


class PodCgroup:
    """A container cgroup the way containerd + the systemd driver name it."""

    def __init__(self, v2: str, pod_uid: str, container_id: str) -> None:
        slice_ = f"kubepods.slice/kubepods-pod{pod_uid.replace('-', '_')}.slice"
        self.parent = Path(v2) / "kubepods.slice"
        self.pod_dir = Path(v2) / slice_
        self.path = self.pod_dir / f"cri-containerd-{container_id}.scope"
        self.path.mkdir(parents=True, exist_ok=True)

    def run(self, argv: list[str], netns: str | None = None) -> subprocess.Popen[bytes]:
        """Starts `argv` inside this cgroup (and network namespace). The cgroup comes first:
        `ip netns exec` remounts /sys, where the cgroup hierarchy is no longer mounted."""
        inner = f'echo $$ > {self.path}/cgroup.procs && exec "$@"'
        netns_prefix = ["ip", "netns", "exec", netns] if netns else []
        return subprocess.Popen(
            ["sh", "-c", inner, "sh", *netns_prefix, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def remove(self) -> None:
        for d in (self.path, self.pod_dir):
            with contextlib.suppress(OSError):
                d.rmdir()


def _kubeconfig(tmp: Path, url: str) -> Path:
    path = tmp / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: k, cluster: {{server: "{url}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
current-context: c
""")
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    v2 = find_v2_mount()
    need(v2 is not None, "no cgroup v2 hierarchy on this host")
    assert v2 is not None
    with netns_pod() as (ns, pod_ip, host_ip):
        ids = {k: str(uuid.uuid4()) for k in ("dep", "rs", "api", "web", "extra")}
        cids = {k: uuid.uuid4().hex + uuid.uuid4().hex for k in ("api", "web", "extra")}
        seed = [
            ("apps/v1/deployments", workload("Deployment", "api", "shop", ids["dep"])),
            (
                "apps/v1/replicasets",
                workload(
                    "ReplicaSet",
                    "api-5f7d",
                    "shop",
                    ids["rs"],
                    owner=("Deployment", "api", ids["dep"]),
                ),
            ),
            (
                "v1/pods",
                pod(
                    "api-5f7d-q1",
                    "shop",
                    ids["api"],
                    ips=(pod_ip,),
                    owner=("ReplicaSet", "api-5f7d", ids["rs"]),
                    containers=(("api", "api:1", cids["api"], 8000),),
                ),
            ),
            (
                "v1/pods",
                pod(
                    "web-0",
                    "web",
                    ids["web"],
                    ips=(host_ip,),
                    containers=(("web", "web:1", cids["web"], 0),),
                ),
            ),
        ]
        api = KmockServer(seed=seed)
        api.start()
        groups = {k: PodCgroup(v2, ids[k], cids[k]) for k in ("api", "web", "extra")}
        env = {
            "IN_CLUSTER": "false",
            "KUBECONFIG": str(_kubeconfig(tmp_path, api.url)),
            "NODE_NAME": NODE,
            "K8S_COLLECTOR_ENABLED": "true",
        }
        agent = AgentProcess(tmp_path, env=env)
        server = groups["api"].run([sys.executable, str(SERVER), pod_ip, "8000"], netns=ns)
        try:
            wait_for_port(pod_ip, 8000)
            yield {
                "agent": agent,
                "api": api,
                "groups": groups,
                "ids": ids,
                "cids": cids,
                "pod_ip": pod_ip,
                "host_ip": host_ip,
                "ns": ns,
            }
        finally:
            server.terminate()
            server.wait(5)
            assert agent.stop() == 0
            api.close()
            time.sleep(0.2)
            for g in groups.values():
                g.remove()


def _get(group: PodCgroup, url: str) -> None:
    proc = group.run(["curl", "-s", "-o", "/dev/null", url])
    assert proc.wait(10) == 0


def _until(agent: AgentProcess, path: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    return agent.wait_records(lambda r: r["path"] == path, count, timeout=timeout)


def test_both_ends_named_after_pods_and_owners(cluster: dict[str, Any]) -> None:
    agent, groups = cluster["agent"], cluster["groups"]
    url = f"http://{cluster['pod_ip']}:8000"
    deadline = time.monotonic() + 15  # the informers list the cluster, then scope the pods
    while time.monotonic() < deadline and not _until(agent, "/warm", 2, timeout=0.5):
        _get(groups["web"], f"{url}/warm")
    _get(groups["web"], f"{url}/named")
    recs = _until(agent, "/named", 2)
    assert sorted(r["role"] for r in recs) == ["client", "server"]
    for r in recs:
        assert r["from"]["type"] == "pod" and r["from"]["name"] == "web-0", r
        assert r["from"]["namespace"] == "web" and r["from"]["uid"] == cluster["ids"]["web"]
        assert r["to"]["type"] == "pod" and r["to"]["name"] == "api-5f7d-q1", r
        assert r["to"]["owner"] == {
            "type": "Deployment",
            "name": "api",
            "uid": cluster["ids"]["dep"],
        }
        assert (r["client_ip"], r["server_ip"], r["status"]) == (
            cluster["host_ip"],
            cluster["pod_ip"],
            200,
        )


def test_processes_outside_pods_are_not_captured(cluster: dict[str, Any]) -> None:
    agent, groups = cluster["agent"], cluster["groups"]
    url = f"http://{cluster['pod_ip']}:8000"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not _until(agent, "/warm2", 2, timeout=0.5):
        _get(groups["web"], f"{url}/warm2")
    subprocess.run(["curl", "-s", "-o", "/dev/null", f"{url}/from-the-host"], check=True)
    recs = _until(agent, "/from-the-host", 1)
    assert [r["role"] for r in recs] == ["server"]  # the pod's side only
    # the server names its client by IP, which is web-0's here
    assert recs[0]["to"]["name"] == "api-5f7d-q1" and recs[0]["from"]["name"] == "web-0"


def test_a_pod_added_and_deleted_during_the_run(cluster: dict[str, Any]) -> None:
    agent, api, groups = cluster["agent"], cluster["api"], cluster["groups"]
    url = f"http://{cluster['pod_ip']}:8000"
    new = pod(
        "late-1",
        "web",
        cluster["ids"]["extra"],
        ips=("10.213.255.9",),
        containers=(("late", "late:1", cluster["cids"]["extra"], 0),),
    )
    asyncio.run(api.create("/api/v1/namespaces/web/pods", new))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not agent.wait_records(
        lambda r: r["path"] == "/late" and r["role"] == "client", 1, timeout=0.5
    ):
        _get(groups["extra"], f"{url}/late")
    recs = [r for r in _until(agent, "/late", 2) if r["role"] == "client"]
    assert recs and all(r["from"]["name"] == "late-1" for r in recs)
    asyncio.run(api.delete("/api/v1/namespaces/web/pods/late-1"))
    time.sleep(2.0)  # the delete reaches the informer, the scope drops the pod's cgroup
    _get(groups["extra"], f"{url}/after-delete")
    recs = _until(agent, "/after-delete", 1)
    assert [r["role"] for r in recs] == ["server"]
    assert os.path.isdir(groups["extra"].path)
