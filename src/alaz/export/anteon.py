"""The `anteon` sink: the Go agent's backend contract, without its throughput cap.

Streams (spec §2.3), each a `Batcher` drained by its own pump with a bounded number of POSTs in
flight:

    stream        path             body key       rows/POST       in flight
    requests      /requests/       requests       BATCH_SIZE      max_in_flight (4)
    kafka         /events/kafka/   kafka_events   BATCH_SIZE/2    max_in_flight
    connections   /connections/    connections    BATCH_SIZE/2    1
    <resource>    /pod/ /svc/ ...  events         1000            1 (keeps ADD/UPDATE/DELETE order)

plus `PUT /healthcheck/` every 10 s (see `health`) and `post_metrics()` for
`POST /metrics/scrape/`. Every JSON body starts with the metadata envelope; its idempotency key is
a fresh uuid4 per batch and is kept when that batch is retried or requeued.

A batch that fails because the backend is unavailable (transport error, 429, >= 500) after the
retries is put back at the front of its queue and the stream pauses `outage_pause_s`; the queue
bound still holds, so during a long outage the oldest rows are dropped and counted. A batch the
backend refuses (other 4xx) is dropped and counted in `rejected_rows`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx
import msgspec

from alaz.config import AgentConfig
from alaz.export.batcher import Batch, Batcher
from alaz.export.client import BackendClient, Delivery, RetryPolicy, SleepFn
from alaz.export.health import AlazInfo, Callback, HealthChecker, Telemetry, _call
from alaz.export.resources import RESOURCE_KINDS, RESOURCE_PATHS, ResourceEvent, ResourceKind
from alaz.export.rows import (
    Attributor,
    ConnectionRow,
    KafkaRow,
    LocalAddresses,
    LocalClientPredicate,
    OutboundAttributor,
    request_row,
)
from alaz.log import get_logger
from alaz.model import Exchange

__all__ = ["AnteonSink", "AnteonTimings"]

BATCH_POLICY = RetryPolicy()
HEALTHCHECK_POLICY = RetryPolicy(deadline_s=5.0)
METRICS_POLICY = RetryPolicy(deadline_s=10.0)
_RESOURCE_QUEUE_ROWS = 10_000
_SIDE_QUEUE_BYTES = 16 << 20


@dataclass(frozen=True)
class AnteonTimings:
    """Every duration the sink uses; tests shorten them."""

    batch_policy: RetryPolicy = BATCH_POLICY  # JSON batches: 3 attempts within 30 s
    healthcheck_policy: RetryPolicy = HEALTHCHECK_POLICY  # within 5 s
    metrics_policy: RetryPolicy = METRICS_POLICY  # within 10 s
    healthcheck_interval_s: float = 10.0
    outage_pause_s: float = 5.0
    close_deadline_s: float = 2.5


@dataclass
class _Stream:
    """One queue + pump + in-flight bound for one endpoint."""

    path: str
    key: bytes  # the body key, e.g. b"requests"
    batcher: Batcher
    slots: int
    sent_rows: int = 0
    rejected_rows: int = 0
    requeued_batches: int = 0
    posts: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)


class AnteonSink:
    """Ships rows to BACKEND_HOST exactly as the Go agent does (see the module doc)."""

    name = "anteon"

    def __init__(
        self,
        config: AgentConfig,
        *,
        attributor: Attributor | None = None,
        is_local_client: LocalClientPredicate | None = None,
        on_stop_collection: Callback | None = None,
        on_restart: Callback | None = None,
        telemetry: Telemetry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timings: AnteonTimings = AnteonTimings(),
        sleep: SleepFn = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        backend, export = config.backend, config.export
        self._config = config
        self._timings = timings
        self._sleep = sleep
        self._attributor: Attributor = attributor or OutboundAttributor()
        self._is_local_client: LocalClientPredicate = is_local_client or LocalAddresses()
        self._on_stop_collection = on_stop_collection
        self._client = BackendClient(backend.host, transport=transport, sleep=sleep, clock=clock)
        self._log = get_logger("export.anteon")
        self._encode = msgspec.json.Encoder().encode
        self._meta_parts = self._metadata_parts()
        self._closing = False
        self._done = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        age = export.flush_interval_ms / 1000

        def batcher(name: str, rows: int, max_rows: int, max_bytes: int) -> Batcher:
            return Batcher(
                name, max_batch_rows=max(1, rows), max_rows=max_rows, max_bytes=max_bytes,
                max_age_s=age, clock=clock,
            )  # fmt: skip

        half = max(1, export.batch_size // 2)
        side_bytes = min(export.queue_bytes, _SIDE_QUEUE_BYTES)
        self.requests = _Stream(
            "/requests/", b"requests",
            batcher("requests", export.batch_size, export.queue_rows, export.queue_bytes),
            export.max_in_flight,
        )  # fmt: skip
        self.kafka = _Stream(
            "/events/kafka/", b"kafka_events",
            batcher("kafka", half, export.queue_rows, export.queue_bytes), export.max_in_flight,
        )  # fmt: skip
        self.connections = _Stream(
            "/connections/", b"connections",
            batcher("connections", half, _RESOURCE_QUEUE_ROWS, side_bytes), 1,
        )  # fmt: skip
        self.resources: dict[ResourceKind, _Stream] = {}
        for kind in RESOURCE_KINDS:
            self.resources[kind] = _Stream(
                RESOURCE_PATHS[kind], b"events",
                batcher(kind, 1000, _RESOURCE_QUEUE_ROWS, side_bytes), 1,
            )  # fmt: skip
        self.health = HealthChecker(
            self._client,
            self.metadata,
            AlazInfo(
                tracing=config.features.tracing,
                metrics=config.features.metrics,
                logs=False,  # the Go agent hard-disables log streaming, and so do we
                namespace_filter=config.k8s.namespace_filter,
            ),
            telemetry or Telemetry.from_host(),
            on_stop=self._stop_collection,
            on_restart=on_restart,
            interval_s=timings.healthcheck_interval_s,
            policy=timings.healthcheck_policy,
            sleep=sleep,
        )
        self.skipped_rows = 0  # server-side exchanges whose client row is exported instead
        self.unattributed_rows = 0  # the attributor returned None
        self.discarded_rows = 0  # arrived or waiting while collection is stopped (402)

    # --- the hot path ---------------------------------------------------------------------

    def submit(self, exchanges: Sequence[Exchange]) -> None:
        """Queue request rows for `/requests/`; never blocks."""
        if self.health.stopped:
            self.discarded_rows += len(exchanges)
            return
        encode, attribute, is_local = self._encode, self._attributor, self._is_local_client
        rows: list[bytes] = []
        for ex in exchanges:
            if ex.role != "client" and is_local(ex):
                self.skipped_rows += 1
                continue
            who = attribute(ex)
            if who is None:
                self.unattributed_rows += 1
                continue
            rows.append(encode(request_row(ex, who)))
        self.requests.batcher.put_many(rows)

    def submit_kafka(self, rows: Iterable[KafkaRow]) -> None:
        """Queue `/events/kafka/` rows."""
        self._put(self.kafka, rows)

    def submit_connections(self, rows: Iterable[ConnectionRow]) -> None:
        """Queue `/connections/` rows (the app sends them only with SEND_ALIVE_TCP_CONNECTIONS)."""
        self._put(self.connections, rows)

    def submit_resources(self, kind: ResourceKind, events: Iterable[ResourceEvent]) -> None:
        """Queue resource events for `/<kind>/` (kind: pod, svc, replicaset, ...)."""
        self._put(self.resources[kind], events)

    def _put(self, stream: _Stream, items: Iterable[object]) -> None:
        encoded = [self._encode(item) for item in items]
        if self.health.stopped:
            self.discarded_rows += len(encoded)
            return
        stream.batcher.put_many(encoded)

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Pump every stream and health-check until `aclose()`; then drain and return."""
        if self._closing:
            return  # aclose() came first and drained the queues itself
        self._run_task = asyncio.current_task()
        try:
            async with asyncio.TaskGroup() as tg:
                health = tg.create_task(self.health.run())
                await self._pump_all()
                health.cancel()
        finally:
            self._done.set()

    async def aclose(self) -> None:
        """Flush what is queued, wait for POSTs in flight (bounded), then close the client."""
        if self._closing:
            return
        self._closing = True
        for stream in self.streams():
            stream.batcher.close()
        if self._run_task is None:
            task = asyncio.ensure_future(self._pump_all())
        else:
            task = self._run_task
            if self._done.is_set():
                await self._client.aclose()
                return
        done, _ = await asyncio.wait([task], timeout=self._timings.close_deadline_s)
        if not done:
            self._log.warning("close: deadline reached, abandoning rows in flight")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()

    async def _pump_all(self) -> None:
        await asyncio.gather(*(self._pump(s) for s in self.streams()))

    def streams(self) -> list[_Stream]:
        return [self.requests, self.kafka, self.connections, *self.resources.values()]

    @property
    def telemetry(self) -> Telemetry:
        """Set `telemetry.k8s_version` once the Kubernetes API server version is known."""
        return self.health.telemetry

    # --- sending --------------------------------------------------------------------------

    def metadata(self, key: str) -> dict[str, str]:
        """The envelope (spec §2.2) for idempotency key `key`."""
        backend = self._config.backend
        return {
            "monitoring_id": backend.monitoring_id,
            "idempotency_key": key,
            "node_id": backend.node_name,
            "alaz_version": backend.alaz_version,
        }

    def _metadata_parts(self) -> tuple[bytes, bytes]:
        marker = "00000000-0000-0000-0000-000000000000"
        encoded = self._encode({"metadata": self.metadata(marker)})[:-1]
        head, tail = encoded.split(marker.encode())
        return head, tail

    def encode_body(self, stream: _Stream, batch: Batch) -> bytes:
        """`{"metadata":{...},"<key>":[row,row,...]}` from pre-encoded rows."""
        head, tail = self._meta_parts
        assert batch.key is not None
        return b"".join(
            (head, batch.key.encode(), tail, b',"', stream.key, b'":[', b",".join(batch.rows),
             b"]}")
        )  # fmt: skip

    async def post_metrics(self, body: bytes) -> Delivery:
        """POST Prometheus text to `/metrics/scrape/` (no Content-Type, as in Go)."""
        backend = self._config.backend
        # Not URL-escaped, as in Go.
        path = (
            f"/metrics/scrape/?instance={backend.node_name}&monitoring_id={backend.monitoring_id}"
        )
        delivery = await self._client.send(
            "POST", path, body, headers=None, policy=self._timings.metrics_policy
        )
        if not delivery.ok:
            self._log.info("metrics post failed", status=delivery.status, error=delivery.error)
        return delivery

    async def _pump(self, stream: _Stream) -> None:
        slots = asyncio.Semaphore(stream.slots)
        while True:
            # Take a slot before the batch: while every slot is busy the rows wait in the
            # bounded queue (where drop-oldest applies) and batches form full.
            await slots.acquire()
            batch = await stream.batcher.get()
            if batch is None:
                slots.release()
                break
            if self.health.stopped:
                self.discarded_rows += len(batch.rows)
                slots.release()
                continue
            task = asyncio.create_task(self._send(stream, batch, slots))
            stream._tasks.add(task)
            task.add_done_callback(stream._tasks.discard)
        if stream._tasks:
            await asyncio.gather(*stream._tasks)
        stream.batcher.log_drops(force=True)

    async def _send(self, stream: _Stream, batch: Batch, slots: asyncio.Semaphore) -> None:
        try:
            if batch.key is None:
                batch.key = str(uuid.uuid4())
            batch.attempts += 1
            stream.posts += 1
            body = self.encode_body(stream, batch)
            delivery = await self._client.send(
                "POST", stream.path, body, policy=self._timings.batch_policy
            )
            if delivery.ok:
                stream.sent_rows += len(batch.rows)
            elif delivery.backend_unavailable and not self._closing and not self.health.stopped:
                stream.requeued_batches += 1
                stream.batcher.requeue(batch)
                self._log.info(
                    "backend unavailable: keep batch for later", path=stream.path,
                    rows=len(batch.rows), status=delivery.status, error=delivery.error,
                )  # fmt: skip
                await self._sleep(self._timings.outage_pause_s)
            else:
                stream.rejected_rows += len(batch.rows)
                self._log.warning(
                    "drop batch: backend refused it" if not delivery.backend_unavailable
                    else "drop batch: backend unavailable while stopping",
                    path=stream.path, rows=len(batch.rows), status=delivery.status,
                    error=delivery.error,
                )  # fmt: skip
        finally:
            slots.release()

    async def _stop_collection(self) -> None:
        for stream in self.streams():
            self.discarded_rows += stream.batcher.clear()
        await _call(self._on_stop_collection)

    def stats(self) -> dict[str, int]:
        """Counters for self-metrics: per stream sent/rejected/dropped, and the sink's own."""
        out = {
            "skipped_rows": self.skipped_rows,
            "unattributed_rows": self.unattributed_rows,
            "discarded_rows": self.discarded_rows,
        }
        for s in self.streams():
            name = s.batcher.name
            out[f"{name}_sent_rows"] = s.sent_rows
            out[f"{name}_rejected_rows"] = s.rejected_rows
            out[f"{name}_dropped_rows"] = s.batcher.dropped_rows
            out[f"{name}_queued_rows"] = s.batcher.rows
        return out
