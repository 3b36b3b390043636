"""List + watch informers over kubernetes-asyncio, decoding straight into slim objects.

One `Informer` per kind keeps a cache (namespace/name -> slim object) and reports changes to a
handler as `Change.ADD`, `UPDATE`, `DELETE`, plus `SYNC` for the periodic resync that re-sends
every object (the Go agent's informers resync every 120 s and the backend relies on it).

The loop is client-go's reflector, simplified:

    list (paged, limit=500)  -> replace the cache: ADD new, UPDATE changed, DELETE gone
    watch from the list's resourceVersion, allowWatchBookmarks, timeoutSeconds 300..600
       ADDED/MODIFIED -> ADD or UPDATE (an identical object is a duplicate and is dropped)
       DELETED        -> DELETE
       BOOKMARK       -> remember its resourceVersion
       ERROR 410      -> relist at once (the cache stays: nothing is lost meanwhile)
    the stream ends   -> watch again from the last resourceVersion seen
    any other failure -> back off (0.5 s doubling to 30 s, with jitter), then relist

kubernetes-asyncio provides configuration (in-cluster token refresh, kubeconfig, TLS) and the
request; the bodies are read raw (`_preload_content=False`) and decoded by msgspec into structs
holding only the fields the agent uses, never into the generated models (which cost ~1 ms and
tens of KiB per pod). resourceVersions are opaque strings: test servers that send `'...'` or
none at all work, and so does a server that replays every object as ADDED on each watch.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from alaz.config import KubernetesConfig
from alaz.errors import ConfigError, KubeApiError, ResourceGone
from alaz.k8s.store import (
    ContainerInfo,
    EndpointsInfo,
    EndpointSliceInfo,
    EndpointsSubset,
    EndpointTarget,
    OwnerRef,
    PodInfo,
    ServiceInfo,
    ServicePortInfo,
    WorkloadInfo,
    canonical_ip,
    intern,
    strip_container_id,
)
from alaz.log import get_logger

__all__ = [
    "KINDS",
    "Change",
    "Informer",
    "KindSpec",
    "KubeApi",
    "KubeApiError",
    "KubernetesApi",
    "ResourceGone",
    "SlimObject",
    "informers_for",
    "open_api",
]

SlimObject = PodInfo | ServiceInfo | WorkloadInfo | EndpointsInfo | EndpointSliceInfo
T = TypeVar("T", bound=SlimObject)
W = TypeVar("W")

MAX_LINE = 16 << 20  # one watch event; larger is a broken stream


class Change(enum.Enum):
    ADD = "ADD"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SYNC = "SYNC"  # periodic resync: the backend wants it as UPDATE, the store ignores it


# --- the API seam ------------------------------------------------------------------------------


class KubeApi(Protocol):
    """The two calls an informer makes; `KubernetesApi` is the real one, tests may fake it."""

    async def list_page(self, path: str, limit: int, cont: str | None) -> bytes:
        """GET a list page; raises KubeApiError (ResourceGone for 410)."""
        ...

    def watch(
        self, path: str, resource_version: str, timeout_s: int
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """A watch stream as an iterator of raw JSON lines."""
        ...


class KubernetesApi:
    """`KubeApi` over a kubernetes-asyncio `ApiClient` (auth, TLS and token refresh are its)."""

    def __init__(self, api_client: Any, read_slack_s: float = 30.0) -> None:
        self._api = api_client
        self._read_slack_s = read_slack_s

    async def list_page(self, path: str, limit: int, cont: str | None) -> bytes:
        query: list[tuple[str, object]] = [("limit", limit)]
        if cont:
            query.append(("continue", cont))
        resp = await self._get(path, query, timeout=60)
        try:
            body: bytes = await resp.read()
        finally:
            resp.release()
        _raise_for_status(resp.status, body, path)
        return body

    @asynccontextmanager
    async def watch(
        self, path: str, resource_version: str, timeout_s: int
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        query: list[tuple[str, object]] = [
            ("watch", "true"),  # lower case, as client-go sends it
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_s),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        import aiohttp  # kubernetes-asyncio's transport

        # No total or read timeout on a watch (the idle timeout below ends a silent one), but a
        # connect timeout, so an unreachable server is retried in seconds, not minutes.
        timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15, sock_read=None)
        resp = await self._get(path, query, timeout=timeout)
        try:
            if resp.status >= 300:
                _raise_for_status(resp.status, await resp.read(), path)
            yield _lines(resp.content, timeout_s + self._read_slack_s)
        finally:
            resp.close()

    async def _get(self, path: str, query: list[tuple[str, object]], timeout: object) -> Any:
        try:
            return await self._api.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (TimeoutError, OSError) as exc:
            raise KubeApiError(f"request {path}: {exc!r}") from exc
        except Exception as exc:  # aiohttp.ClientError and friends, not typed here
            if type(exc).__module__.startswith(("aiohttp", "kubernetes_asyncio")):
                raise KubeApiError(f"request {path}: {exc!r}") from exc
            raise


async def _lines(content: Any, idle_s: float) -> AsyncIterator[bytes]:
    """Split a chunked body into lines; a silence longer than `idle_s` ends the stream."""
    buf = b""
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk: bytes = await content.readany()
        except TimeoutError:
            return
        except Exception as exc:
            raise KubeApiError(f"read watch stream: {exc!r}") from exc
        if not chunk:
            if buf.strip():
                yield buf
            return
        buf += chunk
        if b"\n" not in chunk:
            if len(buf) > MAX_LINE:
                raise KubeApiError(f"read watch stream: a line is over {MAX_LINE} bytes")
            continue
        *complete, buf = buf.split(b"\n")
        for line in complete:
            if line.strip():
                yield line


def _raise_for_status(status: int, body: bytes, path: str) -> None:
    if status < 300:
        return
    message = f"request {path}: HTTP {status}: {body[:200]!r}"
    if status == 410:
        raise ResourceGone(message, status)
    raise KubeApiError(message, status)


async def open_api(config: KubernetesConfig) -> tuple[KubernetesApi, Any]:
    """Build the API seam from config: in-cluster, or a kubeconfig (KUBECONFIG or ~/.kube/config).

    Returns (api, api_client); close the client with `await api_client.close()`.
    """
    from kubernetes_asyncio import client as k8s_client
    from kubernetes_asyncio import config as k8s_config

    configuration = k8s_client.Configuration()
    try:
        if config.in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(
                config_file=config.kubeconfig, client_configuration=configuration
            )
    except Exception as exc:  # ConfigException, OSError, yaml errors
        where = "in-cluster" if config.in_cluster else (config.kubeconfig or "~/.kube/config")
        raise ConfigError(f"load Kubernetes config ({where}): {exc}") from exc
    api_client = k8s_client.ApiClient(configuration)
    return KubernetesApi(api_client), api_client


# --- wire shapes: only the fields used ---------------------------------------------------------


class _Base(msgspec.Struct, rename="camel"):
    pass


class _OwnerRef(_Base):
    kind: str = ""
    name: str = ""
    uid: str = ""


class _Meta(_Base):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    owner_references: list[_OwnerRef] | None = None


class _SliceMeta(_Meta):
    labels: dict[str, str] | None = None


class _ListMeta(_Base):
    resource_version: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class _List(msgspec.Struct, Generic[W]):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[W] | None = None


class _Event(msgspec.Struct):
    type: str = ""
    object: msgspec.Raw = msgspec.Raw(b"{}")


class _Status(_Base):
    code: int = 0
    reason: str = ""
    message: str = ""


class _Bookmark(_Base):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


class _ContainerPort(_Base):
    container_port: int = 0
    protocol: str = "TCP"


class _Container(_Base):
    name: str = ""
    image: str = ""
    ports: list[_ContainerPort] | None = None


class _PodSpec(_Base):
    node_name: str = ""
    host_network: bool = False
    containers: list[_Container] | None = None


class _ContainerStatus(_Base):
    container_id: str = msgspec.field(default="", name="containerID")


class _PodIP(_Base):
    ip: str = ""


class _PodStatus(_Base):
    phase: str = ""
    pod_ip: str = msgspec.field(default="", name="podIP")
    pod_ips: list[_PodIP] | None = msgspec.field(default=None, name="podIPs")
    container_statuses: list[_ContainerStatus] | None = None
    init_container_statuses: list[_ContainerStatus] | None = None
    ephemeral_container_statuses: list[_ContainerStatus] | None = None


class _Pod(_Base):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    spec: _PodSpec = msgspec.field(default_factory=_PodSpec)
    status: _PodStatus = msgspec.field(default_factory=_PodStatus)


class _ServicePort(_Base):
    name: str = ""
    port: int = 0
    target_port: int | str = 0
    protocol: str = "TCP"


class _ServiceSpec(_Base):
    type: str = "ClusterIP"
    cluster_ip: str = msgspec.field(default="", name="clusterIP")
    cluster_ips: list[str] | None = msgspec.field(default=None, name="clusterIPs")
    ports: list[_ServicePort] | None = None


class _Service(_Base):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    spec: _ServiceSpec = msgspec.field(default_factory=_ServiceSpec)


class _Replicas(_Base):
    replicas: int = 0


class _Workload(_Base):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    status: _Replicas = msgspec.field(default_factory=_Replicas)


class _TargetRef(_Base):
    kind: str = ""
    uid: str = ""
    name: str = ""
    namespace: str = ""


class _EndpointAddress(_Base):
    ip: str = ""
    target_ref: _TargetRef | None = None


class _EndpointPort(_Base):
    port: int = 0
    protocol: str = "TCP"
    name: str = ""


class _Subset(_Base):
    addresses: list[_EndpointAddress] | None = None
    ports: list[_EndpointPort] | None = None


class _Endpoints(_Base):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    subsets: list[_Subset] | None = None


class _Conditions(_Base):
    ready: bool | None = None


class _SliceEndpoint(_Base):
    addresses: list[str] | None = None
    conditions: _Conditions = msgspec.field(default_factory=_Conditions)


class _EndpointSlice(_Base):
    metadata: _SliceMeta = msgspec.field(default_factory=_SliceMeta)
    endpoints: list[_SliceEndpoint] | None = None


# --- wire -> slim ------------------------------------------------------------------------------


def _owner(meta: _Meta) -> OwnerRef | None:
    refs = meta.owner_references
    if not refs:
        return None
    ref = refs[0]
    return OwnerRef(intern(ref.kind), ref.name, ref.uid)


def _pod(w: _Pod) -> PodInfo:
    m, spec, st = w.metadata, w.spec, w.status
    ips = [p.ip for p in st.pod_ips or () if p.ip] or ([st.pod_ip] if st.pod_ip else [])
    ids = [
        strip_container_id(cs.container_id)
        for group in (st.container_statuses, st.init_container_statuses,
                      st.ephemeral_container_statuses)
        for cs in group or ()
        if cs.container_id
    ]  # fmt: skip
    containers = tuple(
        ContainerInfo(
            c.name,
            c.image,
            tuple((p.container_port, intern(p.protocol)) for p in c.ports or ()),
        )
        for c in spec.containers or ()
    )
    return PodInfo(
        uid=m.uid,
        name=m.name,
        namespace=intern(m.namespace),
        node=intern(spec.node_name),
        ip=st.pod_ip,
        ips=tuple(canonical_ip(ip) for ip in ips),
        host_network=spec.host_network,
        phase=intern(st.phase),
        owner=_owner(m),
        container_ids=tuple(ids),
        containers=containers,
        resource_version=m.resource_version,
    )


def _service(w: _Service) -> ServiceInfo:
    m, spec = w.metadata, w.spec
    return ServiceInfo(
        uid=m.uid,
        name=m.name,
        namespace=intern(m.namespace),
        type=intern(spec.type),
        cluster_ip=spec.cluster_ip,
        cluster_ips=None if spec.cluster_ips is None else tuple(spec.cluster_ips),
        ports=tuple(
            ServicePortInfo(p.name, p.port, p.target_port, intern(p.protocol))
            for p in spec.ports or ()
        ),
        resource_version=m.resource_version,
    )


def _workload(kind: str) -> Callable[[_Workload], WorkloadInfo]:
    def convert(w: _Workload) -> WorkloadInfo:
        m = w.metadata
        return WorkloadInfo(
            kind=kind,
            uid=m.uid,
            name=m.name,
            namespace=intern(m.namespace),
            replicas=w.status.replicas,
            owner=_owner(m),
            resource_version=m.resource_version,
        )

    return convert


def _endpoints(w: _Endpoints) -> EndpointsInfo:
    m = w.metadata
    subsets = []
    for s in w.subsets or ():
        targets = []
        for a in s.addresses or ():
            ref = a.target_ref or _TargetRef()
            targets.append(
                EndpointTarget(a.ip, intern(ref.kind), ref.uid, ref.name, intern(ref.namespace))
            )
        ports = tuple((p.port, intern(p.protocol), p.name) for p in s.ports or ())
        subsets.append(EndpointsSubset(tuple(targets), ports))
    return EndpointsInfo(m.uid, m.name, intern(m.namespace), tuple(subsets), m.resource_version)


def _slice(w: _EndpointSlice) -> EndpointSliceInfo:
    m = w.metadata
    service = (m.labels or {}).get("kubernetes.io/service-name", "")
    ips = tuple(
        canonical_ip(ip)
        for ep in w.endpoints or ()
        if ep.conditions.ready is not False
        for ip in ep.addresses or ()
    )
    return EndpointSliceInfo(m.uid, m.name, intern(m.namespace), service, ips, m.resource_version)


@dataclass(frozen=True)
class KindSpec(Generic[W, T]):
    """How to list, watch and decode one kind."""

    name: str  # the resource: "pods", "services", ...
    path: str  # the all-namespaces collection path
    wire: type[W]
    convert: Callable[[W], T]


KINDS: dict[str, KindSpec[Any, Any]] = {
    spec.name: spec
    for spec in (
        KindSpec("pods", "/api/v1/pods", _Pod, _pod),
        KindSpec("services", "/api/v1/services", _Service, _service),
        KindSpec("endpoints", "/api/v1/endpoints", _Endpoints, _endpoints),
        KindSpec(
            "endpointslices", "/apis/discovery.k8s.io/v1/endpointslices", _EndpointSlice, _slice
        ),
        KindSpec("replicasets", "/apis/apps/v1/replicasets", _Workload, _workload("ReplicaSet")),
        KindSpec("deployments", "/apis/apps/v1/deployments", _Workload, _workload("Deployment")),
        KindSpec("daemonsets", "/apis/apps/v1/daemonsets", _Workload, _workload("DaemonSet")),
        KindSpec("statefulsets", "/apis/apps/v1/statefulsets", _Workload, _workload("StatefulSet")),
        KindSpec("jobs", "/apis/batch/v1/jobs", _Workload, _workload("Job")),
    )
}


# --- the informer ------------------------------------------------------------------------------

Handler = Callable[[Change, T, T | None], None]


def _key(obj: SlimObject) -> str:
    return f"{obj.namespace}/{obj.name}"


class Informer(Generic[W, T]):
    """List + watch one kind into a cache; report changes to `handler(change, new, old)`.

    `handler` runs in the event loop and must not block; an exception in it is logged and the
    informer goes on. `synced` is set once the first list has been applied.
    """

    def __init__(
        self,
        api: KubeApi,
        spec: KindSpec[W, T],
        handler: Handler[T],
        *,
        resync_s: float = 120.0,
        page_size: int = 500,
        watch_timeout_s: tuple[int, int] = (300, 600),
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.api = api
        self.spec = spec
        self.handler = handler
        self.resync_s = resync_s
        self.page_size = page_size
        self.watch_timeout_s = watch_timeout_s
        self.backoff_s = backoff_s
        self.items: dict[str, T] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.lists = 0  # counters, for logs and tests
        self.watches = 0
        self.errors = 0
        self.duplicates = 0
        self._list_decoder = msgspec.json.Decoder(_List[spec.wire])  # type: ignore[name-defined]
        self._obj_decoder = msgspec.json.Decoder(spec.wire)
        self._event_decoder = msgspec.json.Decoder(_Event)
        self._log = get_logger("k8s.informer", kind=spec.name)

    async def run(self) -> None:
        """List and watch until cancelled; never returns on API errors (it backs off)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._resync_loop())
            await self._reflect()

    async def _reflect(self) -> None:
        delay = self.backoff_s[0]
        while True:
            try:
                await self._list_and_replace()
                delay = self.backoff_s[0]
                while True:
                    started = time.monotonic()
                    await self._watch_once()
                    if time.monotonic() - started > 1.0:
                        delay = self.backoff_s[0]
                    else:  # a server (or proxy) that ends watches at once must not spin us
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self.backoff_s[1])
            except ResourceGone as exc:
                self._log.info("relist: resourceVersion expired", error=str(exc))
                continue
            except (KubeApiError, msgspec.DecodeError) as exc:
                self.errors += 1
                wait = delay * random.uniform(0.8, 1.2)
                self._log.warning("list/watch failed; retrying", error=str(exc), wait_s=wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_s[1])

    async def _list_and_replace(self) -> None:
        items, rv = await self._list_all()
        fresh: dict[str, T] = {}
        for wire in items:
            obj = self.spec.convert(wire)
            fresh[_key(obj)] = obj
        old_items, self.items = self.items, fresh
        for key, obj in fresh.items():
            old = old_items.get(key)
            if old is None:
                self._emit(Change.ADD, obj, None)
            elif old != obj:
                self._emit(Change.UPDATE, obj, old)
        for key in old_items.keys() - fresh.keys():
            self._emit(Change.DELETE, old_items[key], None)
        self.resource_version = rv
        self.lists += 1
        self.synced.set()
        self._log.debug("listed", items=len(fresh), resource_version=rv)

    async def _list_all(self) -> tuple[list[W], str]:
        items: list[W] = []
        cont: str | None = None
        limit = self.page_size
        while True:
            try:
                body = await self.api.list_page(self.spec.path, limit, cont)
            except ResourceGone:
                if cont is None:
                    raise
                # The continue token expired mid-list: start over in one unpaged request.
                items, cont, limit = [], None, 0
                continue
            page = self._list_decoder.decode(body)
            items.extend(page.items or ())
            cont = page.metadata.continue_ or None
            if cont is None:
                return items, page.metadata.resource_version

    async def _watch_once(self) -> None:
        timeout = random.randint(*self.watch_timeout_s)
        async with self.api.watch(self.spec.path, self.resource_version, timeout) as lines:
            self.watches += 1
            async for line in lines:
                self._on_line(line)

    def _on_line(self, line: bytes) -> None:
        event = self._event_decoder.decode(line)
        kind = event.type
        if kind in ("ADDED", "MODIFIED"):
            self._upsert(self.spec.convert(self._obj_decoder.decode(event.object)))
        elif kind == "DELETED":
            self._delete(self.spec.convert(self._obj_decoder.decode(event.object)))
        elif kind == "BOOKMARK":
            rv = msgspec.json.decode(event.object, type=_Bookmark).metadata.resource_version
            if rv:
                self.resource_version = rv
        elif kind == "ERROR":
            status = msgspec.json.decode(event.object, type=_Status)
            message = f"watch {self.spec.path}: {status.code} {status.reason}: {status.message}"
            if status.code == 410:
                raise ResourceGone(message, 410)
            raise KubeApiError(message, status.code)

    def _upsert(self, obj: T) -> None:
        key = _key(obj)
        old = self.items.get(key)
        if obj.resource_version:
            self.resource_version = obj.resource_version
        if old is not None and old == obj:
            self.duplicates += 1  # a replayed ADDED (test servers) or a no-op update
            return
        self.items[key] = obj
        self._emit(Change.ADD if old is None else Change.UPDATE, obj, old)

    def _delete(self, obj: T) -> None:
        old = self.items.pop(_key(obj), None)
        if obj.resource_version:
            self.resource_version = obj.resource_version
        if old is not None:
            self._emit(Change.DELETE, obj, old)  # the final state, and the cached one

    def resync(self) -> None:
        """Re-send every cached object as `Change.SYNC`."""
        for obj in list(self.items.values()):
            self._emit(Change.SYNC, obj, obj)

    async def _resync_loop(self) -> None:
        if self.resync_s <= 0:
            return
        await self.synced.wait()
        while True:
            await asyncio.sleep(self.resync_s)
            self.resync()

    def _emit(self, change: Change, obj: T, old: T | None) -> None:
        try:
            self.handler(change, obj, old)
        except Exception:
            self._log.exception("handler failed", change=change.value, name=_key(obj))


def informers_for(
    api: KubeApi,
    kinds: Sequence[str],
    handler: Callable[[str, Change, Any, Any], None],
    **options: Any,
) -> list[Informer[Any, Any]]:
    """One informer per kind name (keys of `KINDS`), all reporting to `handler(kind, ...)`."""

    def bind(kind: str) -> Handler[Any]:
        return lambda change, new, old: handler(kind, change, new, old)

    return [Informer(api, KINDS[kind], bind(kind), **options) for kind in kinds]
