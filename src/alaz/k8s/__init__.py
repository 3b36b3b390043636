"""The Kubernetes view: informers -> store -> attribution, capture scope and backend events.

`K8sCollector` is the one object the app wires:

    collector = K8sCollector(
        config.k8s, config.backend.node_name,
        on_resources=anteon.submit_resources,   # (kind, events) -> None, or None
        on_scope=lambda add, remove: probes.update_scope(add=add, remove=remove),  # or None
    )
    tg.create_task(collector.run())            # returns at once when K8S_COLLECTOR_ENABLED=false
    anteon_attributor = collector.attributor   # the `Attributor` seam of the anteon sink
    collector.on_exec(pid, cgroup_id)          # from every process exec event
    from_, to = collector.describe(exchange)   # JSON-lines `from` / `to` (msgspec Structs)
    await collector.aclose()                   # on shutdown

Importing this package does not import kubernetes-asyncio; `run()` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from alaz.config import KubernetesConfig
from alaz.export.resources import ResourceEvent, ResourceKind
from alaz.k8s.attribution import K8sAttributor, Peer, PeerOwner
from alaz.k8s.cgroups import find_v2_mount, scan
from alaz.k8s.events import resource_events
from alaz.k8s.informers import KINDS, Change, Informer, KubeApi, informers_for, open_api
from alaz.k8s.scope import ApplyScope, ScopeTracker, own_pod_uid
from alaz.k8s.store import PodInfo, ServiceInfo, Store, WorkloadInfo
from alaz.log import get_logger
from alaz.model import Exchange

__all__ = [
    "DEFAULT_KINDS",
    "K8sAttributor",
    "K8sCollector",
    "OnResources",
    "Peer",
    "PeerOwner",
    "Store",
]

OnResources = Callable[[ResourceKind, list[ResourceEvent]], None]

DEFAULT_KINDS: tuple[str, ...] = tuple(KINDS)
_WORKLOADS = frozenset({"replicasets", "deployments", "daemonsets", "statefulsets", "jobs"})


class K8sCollector:
    """Informers for pods, services, endpoints(+slices) and workloads, feeding a `Store`; a
    `ScopeTracker` for the kernel's capture scope; backend resource events.

    `api` replaces the kubernetes-asyncio client (tests); `informer_options` go to every
    `Informer` (resync_s, backoff_s, watch_timeout_s, page_size).
    """

    def __init__(
        self,
        config: KubernetesConfig,
        node_name: str,
        on_resources: OnResources | None = None,
        on_scope: ApplyScope | None = None,
        *,
        api: KubeApi | None = None,
        kinds: Sequence[str] = DEFAULT_KINDS,
        rescan_s: float = 30.0,
        cgroup_mount: str | None = None,
        proc: str = "/proc",
        self_pod_uid: str | None = None,
        endpoint_services: bool = False,
        **informer_options: Any,
    ) -> None:
        self.config = config
        self.node_name = node_name
        self.on_resources = on_resources
        self.on_scope = on_scope
        self.kinds = tuple(kinds)
        self.rescan_s = rescan_s
        self.store = Store()
        self.attributor = K8sAttributor(self.store, endpoint_services=endpoint_services)
        self.scope = ScopeTracker(
            self.store,
            self._apply_scope,
            node_name=node_name,
            exclude=config.exclude_namespaces,
            self_pod_uid=own_pod_uid(proc) if self_pod_uid is None else self_pod_uid,
            proc=proc,
        )
        self.informers: list[Informer[Any, Any]] = []
        self._api = api
        self._api_client: Any = None
        self._cgroup_mount = cgroup_mount
        self._informer_options = informer_options
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._log = get_logger("k8s", node=node_name)

    # --- what the app calls ----------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until `aclose()`; returns at once when the collector is disabled."""
        if not self.config.enabled:
            self._log.info("Kubernetes collector disabled (K8S_COLLECTOR_ENABLED=false)")
            self._done.set()
            return
        if self._stop.is_set():
            self._done.set()
            return
        self._running = True
        try:
            api = self._api
            if api is None:
                api, self._api_client = await open_api(self.config)
            self.informers = informers_for(
                api, self.kinds, self._on_change, **self._informer_options
            )
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(inf.run()) for inf in self.informers]
                tasks.append(tg.create_task(self._rescan_loop()))
                await self._stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            if self._api_client is not None:
                await self._api_client.close()
                self._api_client = None
            self._done.set()

    async def aclose(self) -> None:
        """Stop the informers and close the API client."""
        self._stop.set()
        if self._running:
            await self._done.wait()

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until every informer has applied its first list."""
        async with asyncio.timeout(timeout):
            while not self.informers:
                await asyncio.sleep(0.01)
            await asyncio.gather(*(inf.synced.wait() for inf in self.informers))

    def on_exec(self, pid: int, cgroup_id: int) -> None:
        """A process exec event: learn its cgroup (a new container's first process)."""
        self.scope.on_exec(pid, cgroup_id)

    def describe(self, exchange: Exchange) -> tuple[Peer, Peer]:
        """(from, to) of an exchange for JSON lines."""
        return self.attributor.describe(exchange)

    def informer(self, kind: str) -> Informer[Any, Any]:
        for inf in self.informers:
            if inf.spec.name == kind:
                return inf
        raise KeyError(kind)

    # --- internals -------------------------------------------------------------------------

    def _on_change(self, kind: str, change: Change, obj: Any, old: Any) -> None:
        if change is not Change.SYNC:
            self._apply_store(kind, change, obj, old)
        if kind == "pods":
            self.scope.on_pod(change, obj, old)
        if self.on_resources is not None:
            for resource_kind, events in resource_events(kind, change, obj):
                self.on_resources(resource_kind, events)

    def _apply_store(self, kind: str, change: Change, obj: Any, old: Any) -> None:
        store = self.store
        if kind == "pods":
            assert isinstance(obj, PodInfo)
            if old is not None and old.key != obj.key:
                store.delete_pod(old)
            if change is Change.DELETE:
                store.delete_pod(obj)
            else:
                store.put_pod(obj)
        elif kind == "services":
            assert isinstance(obj, ServiceInfo)
            if old is not None and old.key != obj.key:
                store.delete_service(old)
            if change is Change.DELETE:
                store.delete_service(obj)
            else:
                store.put_service(obj)
        elif kind in _WORKLOADS:
            assert isinstance(obj, WorkloadInfo)
            if old is not None and old.key != obj.key:
                store.delete_workload(old)
            if change is Change.DELETE:
                store.delete_workload(obj)
            else:
                store.put_workload(obj)
        elif kind == "endpointslices":
            if old is not None and old.key != obj.key:
                store.delete_slice(old)
            if change is Change.DELETE:
                store.delete_slice(obj)
            else:
                store.put_slice(obj)

    def _apply_scope(self, add: set[int], remove: set[int]) -> None:
        if self.on_scope is not None:
            self.on_scope(add, remove)

    async def _rescan_loop(self) -> None:
        mount = self._cgroup_mount or find_v2_mount()
        if mount is None:
            self._log.warning("no cgroup v2 mount: containers are found by exec events only")
            return
        while True:
            started = self.scope.clock()
            try:
                found = await asyncio.to_thread(lambda: list(scan(mount)))
            except OSError as exc:
                self._log.warning("scan cgroups failed", mount=mount, error=str(exc))
            else:
                self.scope.reconcile(found, started)
            await asyncio.sleep(self.rescan_s)
