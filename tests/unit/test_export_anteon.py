"""Contract tests of the anteon sink against a real local HTTP server that records every request."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from alaz.config import AgentConfig, load_config
from alaz.export.anteon import AnteonSink, AnteonTimings
from alaz.export.client import BackendClient, RetryPolicy
from alaz.export.health import Telemetry
from alaz.export.resources import (
    RESOURCE_KINDS,
    ContainerEvent,
    ContainerPort,
    DaemonSetEvent,
    DeploymentEvent,
    EndpointAddress,
    EndpointIP,
    EndpointPort,
    EndpointsEvent,
    PodEvent,
    ReplicaSetEvent,
    ResourceEvent,
    ServiceEvent,
    ServicePort,
    StatefulSetEvent,
)
from alaz.export.rows import ConnectionRow, KafkaRow
from alaz.model import Exchange

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
MONITORING_ID = "2b7c6a8e-1f0d-4c43-9d5e-7e8f3a1b2c4d"
NODE = "worker-1"

# --- a real HTTP/1.1 backend ---------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"msg":"ok","errors":[]}'
    headers: dict[str, str] = field(default_factory=dict)


class FakeBackend:
    """asyncio HTTP/1.1 server with keep-alive; scripted replies per path; records requests."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.replies: dict[str, deque[Reply]] = defaultdict(deque)
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, path: str, *replies: Reply) -> None:
        self.replies[path].extend(replies)

    def at(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", port or self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append(Seen(method, target, headers, body))
                queue = self.replies.get(target.split("?", 1)[0])
                reply = queue.popleft() if queue else Reply()
                if self.delay:
                    await asyncio.sleep(self.delay)
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    f"HTTP/1.1 {reply.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(reply.body)}\r\n{extra}\r\n".encode()
                    + reply.body
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def backend() -> Any:
    server = FakeBackend()
    await server.start()
    yield server
    await server.stop()


# --- schemas -------------------------------------------------------------------------------------


def _load_schemas() -> tuple[dict[str, Any], Registry[Any]]:
    schemas = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    return schemas, registry


SCHEMA_FILES, REGISTRY = _load_schemas()
SCHEMA_FOR_PATH = {
    "/requests/": "requests.json",
    "/events/kafka/": "kafka_events.json",
    "/connections/": "connections.json",
    "/healthcheck/": "healthcheck.json",
    **{f"/{kind}/": f"{kind}.json" for kind in RESOURCE_KINDS},
}


def validate(schema: str, document: Any) -> None:
    Draft202012Validator(SCHEMA_FILES[schema], registry=REGISTRY).validate(document)


# --- helpers -------------------------------------------------------------------------------------


def exchange(i: int, **changes: Any) -> Exchange:
    fields: dict[str, Any] = dict(
        protocol="HTTP", role="client", pid=100, tid=100, comm="curl", fd=3, cgroup_id=1,
        client_ip="10.244.1.17", client_port=40000 + i % 20000, server_ip="10.96.41.7",
        server_port=8080, method="GET", path=f"/item/{i}", status=200, latency_ns=1_000_000,
        start_time_ms=1_727_184_000_000 + i, tls=False, req_bytes=100, resp_bytes=200,
        host=None,
    )  # fmt: skip
    fields.update(changes)
    return Exchange(**fields)


def config(url: str, **overrides: Any) -> AgentConfig:
    env = {
        "BACKEND_HOST": url,
        "MONITORING_ID": MONITORING_ID,
        "NODE_NAME": NODE,
        "TRACING_ENABLED": "true",
        "EXCLUDE_NAMESPACES": "^anteon.*",
    }
    overrides.setdefault("flush_interval_ms", 20)
    return load_config(env, **overrides)


class FakeTime:
    """Injected sleep + clock: sleeping advances the clock without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


FAST = AnteonTimings(
    batch_policy=RetryPolicy(wait_min_s=0.01, wait_max_s=0.05, deadline_s=2.0),
    healthcheck_policy=RetryPolicy(wait_min_s=0.01, deadline_s=1.0),
    healthcheck_interval_s=3600.0,
    outage_pause_s=0.02,
)
TELEMETRY = Telemetry("5.15.0-1051-azure", "", "Azure")


def make_sink(cfg: AgentConfig, **kwargs: Any) -> AnteonSink:
    kwargs.setdefault("timings", FAST)
    kwargs.setdefault("telemetry", TELEMETRY)
    kwargs.setdefault("is_local_client", lambda ex: False)
    return AnteonSink(cfg, **kwargs)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def row_paths(seen: list[Seen]) -> list[str]:
    return [row[14] for s in seen for row in s.json()["requests"]]


RESOURCE_SAMPLES: dict[str, ResourceEvent] = {
    "pod": PodEvent("5b0c", "UPDATE", "checkout-x2k4q", "shop", "10.244.1.17", "ReplicaSet",
                    "checkout-7d9f8b6c5", "2d3e"),
    "svc": ServiceEvent("f1e2", "ADD", "checkout", "shop", "ClusterIP", None,
                        [ServicePort("http", 8080, 0, "TCP")]),
    "replicaset": ReplicaSetEvent("2d3e", "UPDATE", "checkout", "shop", 3, "Deployment",
                                  "checkout", "77aa"),
    "deployment": DeploymentEvent("77aa", "UPDATE", "checkout", "shop", 3),
    "endpoint": EndpointsEvent("ab12", "UPDATE", "checkout", "shop", [EndpointAddress(
        [EndpointIP("Pod", "5b0c", "checkout-x2k4q", "shop", "10.244.1.17")],
        [EndpointPort(8080, "TCP", "http")])]),
    "container": ContainerEvent("", "ADD", "app", "shop", "5b0c", "ghcr.io/acme/checkout:1.4.2",
                                [ContainerPort(8080, "TCP")]),
    "daemonset": DaemonSetEvent("c3d4", "ADD", "fluent-bit", "logging"),
    "statefulset": StatefulSetEvent("c3d5", "DELETE", "db", "shop"),
}  # fmt: skip


# --- the contract --------------------------------------------------------------------------------


def test_every_schema_is_valid_draft_2020_12() -> None:
    assert len(SCHEMA_FILES) >= 14
    for schema in SCHEMA_FILES.values():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)


async def test_every_endpoint_method_path_headers_and_body(backend: FakeBackend) -> None:
    sink = make_sink(config(backend.url))
    task = asyncio.create_task(sink.run())
    sink.submit(
        [
            exchange(1),
            exchange(2, tls=True, host="api.stripe.com", method="POST", status=201),
            exchange(3, method="BREW"),
        ]
    )
    sink.submit_kafka(
        [KafkaRow(1727184001000, 2210043, "10.244.2.9", "pod", "9d8c", 37012, "10.96.100.12",
                  "service", "7a6b", 9092, "orders", 3, "order-42", '{"id":42}', "PUBLISH",
                  False)]
    )  # fmt: skip
    sink.submit_connections(
        [ConnectionRow(1727184030000, "10.244.2.9", "pod", "9d8c", 44810, "10.96.0.10",
                       "service", "c0ff", 53)]
    )  # fmt: skip
    for kind, event in RESOURCE_SAMPLES.items():
        sink.submit_resources(kind, [event])  # type: ignore[arg-type]
    await sink.health.check()
    metrics = await sink.post_metrics(b"# TYPE node_load1 gauge\nnode_load1 0.42\n")
    await until(lambda: all(backend.at(p) for p in SCHEMA_FOR_PATH))
    await sink.aclose()
    await task

    assert metrics.ok
    assert {s.path for s in backend.seen} == {*SCHEMA_FOR_PATH, "/metrics/scrape/"}
    for seen in backend.seen:
        if seen.path == "/metrics/scrape/":
            assert seen.method == "POST"
            assert seen.target == f"/metrics/scrape/?instance={NODE}&monitoring_id={MONITORING_ID}"
            assert "content-type" not in seen.headers
            assert seen.body.startswith(b"# TYPE node_load1")
            continue
        assert seen.method == ("PUT" if seen.path == "/healthcheck/" else "POST"), seen.path
        assert seen.target == seen.path  # no query string, trailing slash kept
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["accept"] == "application/json"
        body = seen.json()
        validate(SCHEMA_FOR_PATH[seen.path], body)
        assert body["metadata"]["monitoring_id"] == MONITORING_ID
        assert body["metadata"]["node_id"] == NODE
        assert list(body["metadata"]) == [
            "monitoring_id", "idempotency_key", "node_id", "alaz_version",
        ]  # fmt: skip

    rows = {row[14]: row for s in backend.at("/requests/") for row in s.json()["requests"]}
    assert rows["/item/1"] == [
        1727184000001, 1000000, "10.244.1.17", "pod", "", 40001, "10.96.41.7", "outbound",
        "10.96.41.7", 8080, "HTTP", 200, "", "GET", "/item/1", False,
    ]  # fmt: skip
    assert rows["/item/2"][7:11] == ["outbound", "api.stripe.com", 8080, "HTTPS"]
    assert rows["/item/2"][15] is True
    assert rows["/item/3"][13] == "Unknown"
    health = backend.at("/healthcheck/")[0].json()
    assert health["alaz_info"] == {
        "tracing": True, "metrics": False, "logs": False, "namespace_filter": "^anteon.*",
    }  # fmt: skip
    assert health["telemetry"] == {
        "kernel_version": "5.15.0-1051-azure", "k8s_version": "", "cloud_provider": "Azure",
    }  # fmt: skip
    assert backend.at("/pod/")[0].json()["events"][0]["owner_name"] == "checkout-7d9f8b6c5"
    assert backend.at("/svc/")[0].json()["events"][0]["cluster_ips"] is None


async def test_idempotency_key_kept_across_retries_and_fresh_per_batch(
    backend: FakeBackend,
) -> None:
    backend.script("/requests/", Reply(500), Reply(500))
    sink = make_sink(config(backend.url, batch_size=2, max_in_flight=1))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1), exchange(2)])
    await until(lambda: len(backend.at("/requests/")) == 3)
    sink.submit([exchange(3), exchange(4)])
    await until(lambda: len(backend.at("/requests/")) == 4)
    await sink.aclose()
    await task

    posts = backend.at("/requests/")
    keys = [p.json()["metadata"]["idempotency_key"] for p in posts]
    assert keys[0] == keys[1] == keys[2]
    assert posts[0].body == posts[1].body == posts[2].body
    assert keys[3] != keys[0]
    assert sink.requests.sent_rows == 4


async def test_a_requeued_batch_keeps_its_key(backend: FakeBackend) -> None:
    backend.script("/requests/", *[Reply(503)] * 5)  # 3 attempts, requeue, 2 more, then 200
    sink = make_sink(config(backend.url, batch_size=2, max_in_flight=1))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1), exchange(2)])
    await until(lambda: sink.requests.sent_rows == 2)
    await sink.aclose()
    await task
    posts = backend.at("/requests/")
    assert len(posts) == 6 and sink.requests.requeued_batches == 1
    assert len({p.body for p in posts}) == 1


async def test_aclose_before_run_still_flushes(backend: FakeBackend) -> None:
    sink = make_sink(config(backend.url))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1)])
    await sink.aclose()  # run() has not had a chance to start
    await task
    assert row_paths(backend.at("/requests/")) == ["/item/1"]


@pytest.mark.parametrize(
    ("status", "attempts"),
    [(500, 3), (502, 3), (503, 3), (429, 3), (400, 3), (404, 1), (402, 1), (401, 1), (200, 1)],
)
async def test_retry_policy_by_status(backend: FakeBackend, status: int, attempts: int) -> None:
    backend.script("/requests/", *[Reply(status)] * 3)
    fake = FakeTime()
    client = BackendClient(backend.url, sleep=fake.sleep, clock=fake.clock)
    delivery = await client.send("POST", "/requests/", b"{}")
    await client.aclose()
    assert delivery.status == status
    assert delivery.attempts == attempts == len(backend.at("/requests/"))
    assert fake.sleeps == [1.0, 2.0][: attempts - 1]


async def test_retry_stops_at_first_success(backend: FakeBackend) -> None:
    backend.script("/requests/", Reply(503), Reply(200))
    fake = FakeTime()
    client = BackendClient(backend.url, sleep=fake.sleep, clock=fake.clock)
    delivery = await client.send("POST", "/requests/", b"{}")
    await client.aclose()
    assert (delivery.status, delivery.attempts, fake.sleeps) == (200, 2, [1.0])


async def test_retry_after_is_honoured(backend: FakeBackend) -> None:
    backend.script("/requests/", Reply(429, headers={"Retry-After": "3"}), Reply(200))
    fake = FakeTime()
    client = BackendClient(backend.url, sleep=fake.sleep, clock=fake.clock)
    delivery = await client.send("POST", "/requests/", b"{}")
    await client.aclose()
    assert delivery.ok
    assert fake.sleeps == [3.0]


async def test_retry_after_beyond_the_deadline_gives_up(backend: FakeBackend) -> None:
    backend.script("/requests/", Reply(429, headers={"Retry-After": "40"}))
    fake = FakeTime()
    client = BackendClient(backend.url, sleep=fake.sleep, clock=fake.clock)
    delivery = await client.send("POST", "/requests/", b"{}")  # 30 s deadline
    await client.aclose()
    assert (delivery.status, delivery.attempts, fake.sleeps) == (429, 1, [])


async def test_transport_errors_are_retried() -> None:
    port = _free_port()
    fake = FakeTime()
    client = BackendClient(f"http://127.0.0.1:{port}", sleep=fake.sleep, clock=fake.clock)
    delivery = await client.send("POST", "/requests/", b"{}")
    await client.aclose()
    assert delivery.status is None and delivery.error
    assert delivery.attempts == 3
    assert fake.sleeps == [1.0, 2.0]


async def test_refused_batch_is_dropped_and_counted(backend: FakeBackend) -> None:
    backend.script("/requests/", Reply(404))
    sink = make_sink(config(backend.url, batch_size=3))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(i) for i in range(3)])
    await until(lambda: sink.requests.rejected_rows == 3)
    sink.submit([exchange(9)])
    await until(lambda: sink.requests.sent_rows == 1)
    await sink.aclose()
    await task
    assert len(backend.at("/requests/")) == 2


async def test_200_with_row_errors_is_only_logged(backend: FakeBackend) -> None:
    backend.script("/requests/", Reply(200, b'{"msg":"x","errors":[{"request_num":0}]}'))
    sink = make_sink(config(backend.url, batch_size=2))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1), exchange(2)])
    await until(lambda: sink.requests.sent_rows == 2)
    await sink.aclose()
    await task
    assert len(backend.at("/requests/")) == 1


# --- health check --------------------------------------------------------------------------------


async def test_402_stops_collection_then_200_restarts(backend: FakeBackend) -> None:
    backend.script("/healthcheck/", Reply(402), Reply(402), Reply(402))
    calls: list[str] = []
    timings = AnteonTimings(healthcheck_interval_s=0.03, outage_pause_s=0.01)
    sink = make_sink(
        config(backend.url),
        timings=timings,
        on_stop_collection=lambda: calls.append("stop"),
        on_restart=lambda: calls.append("restart"),
    )
    task = asyncio.create_task(sink.run())
    await until(lambda: calls == ["stop"])
    assert sink.health.stopped
    sink.submit([exchange(i) for i in range(5)])  # nothing is queued or sent while stopped
    assert sink.requests.batcher.rows == 0
    await until(lambda: len(backend.at("/healthcheck/")) >= 3)
    assert backend.at("/requests/") == []
    assert calls == ["stop"]  # stop is called once, checks go on
    await until(lambda: calls == ["stop", "restart"])
    await sink.aclose()
    await task
    assert backend.at("/requests/") == []
    assert sink.discarded_rows == 5


async def test_async_callbacks_are_awaited(backend: FakeBackend) -> None:
    backend.script("/healthcheck/", Reply(402), Reply(200))
    calls: list[str] = []

    async def stop() -> None:
        calls.append("stop")

    async def restart() -> None:
        calls.append("restart")

    sink = make_sink(config(backend.url), on_stop_collection=stop, on_restart=restart)
    await sink.health.check()
    await sink.health.check()
    await sink.aclose()
    assert calls == ["stop", "restart"]


async def test_other_healthcheck_answers_are_ignored(backend: FakeBackend) -> None:
    backend.script("/healthcheck/", Reply(500), Reply(500), Reply(500), Reply(200))
    calls: list[str] = []
    sink = make_sink(config(backend.url), on_restart=lambda: calls.append("restart"))
    await sink.health.check()
    await sink.health.check()  # 200 while not stopped: nothing happens
    await sink.aclose()
    assert calls == [] and not sink.health.stopped
    keys = {s.json()["metadata"]["idempotency_key"] for s in backend.at("/healthcheck/")}
    assert len(keys) == 2  # one key per check, shared by its retries


# --- outages and back-pressure -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_backend_down_at_start_then_up_gets_every_row() -> None:
    server = FakeBackend()
    server.port = _free_port()
    cfg = config(server.url, batch_size=50, queue_rows=10_000, queue_bytes=4 << 20)
    sink = make_sink(cfg)
    task = asyncio.create_task(sink.run())
    sent = 0
    for _ in range(10):  # traffic while the backend is down
        sink.submit([exchange(sent + i) for i in range(100)])
        sent += 100
        await asyncio.sleep(0.02)
    assert sink.requests.requeued_batches > 0
    await server.start()
    for _ in range(5):  # and after it comes up
        sink.submit([exchange(sent + i) for i in range(100)])
        sent += 100
        await asyncio.sleep(0.01)
    await until(lambda: len(set(row_paths(server.at("/requests/")))) == sent, timeout=10)
    await sink.aclose()
    await task
    await server.stop()
    assert set(row_paths(server.at("/requests/"))) == {f"/item/{i}" for i in range(sent)}
    assert sink.requests.batcher.dropped_rows == 0
    assert sink.requests.batcher.peak_bytes <= cfg.export.queue_bytes
    assert sink.requests.batcher.peak_rows <= cfg.export.queue_rows


async def test_slow_backend_drops_oldest_rows_and_counts_them(backend: FakeBackend) -> None:
    backend.delay = 0.05
    cfg = config(backend.url, batch_size=10, queue_rows=40, max_in_flight=1)
    sink = make_sink(cfg)
    task = asyncio.create_task(sink.run())
    total = 0
    for _ in range(20):
        sink.submit([exchange(total + i) for i in range(25)])
        total += 25
        await asyncio.sleep(0.005)
    batcher = sink.requests.batcher
    assert batcher.dropped_rows > 0
    assert batcher.peak_rows <= 40
    await until(
        lambda: batcher.rows == 0 and sink.requests.sent_rows + batcher.dropped_rows == total
    )
    await sink.aclose()
    await task

    got = [int(p.rsplit("/", 1)[1]) for p in row_paths(backend.at("/requests/"))]
    assert len(got) == len(set(got)) == total - batcher.dropped_rows
    assert set(range(total - 40, total)) <= set(got)  # the newest rows all arrive
    missing = sorted(set(range(total)) - set(got))
    assert missing and missing[-1] < total - 40  # only older rows were dropped


async def test_aclose_flushes_what_is_queued(backend: FakeBackend) -> None:
    sink = make_sink(config(backend.url, flush_interval_ms=60_000, batch_size=1000))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(i) for i in range(7)])
    await asyncio.sleep(0.05)
    assert backend.at("/requests/") == []  # neither full nor old yet
    await sink.aclose()
    await task
    assert sorted(row_paths(backend.at("/requests/"))) == sorted(f"/item/{i}" for i in range(7))


async def test_batches_hold_at_most_batch_size_rows(backend: FakeBackend) -> None:
    sink = make_sink(config(backend.url, batch_size=100))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(i) for i in range(1050)])
    await until(lambda: sink.requests.sent_rows == 1050)
    await sink.aclose()
    await task
    sizes = sorted(len(s.json()["requests"]) for s in backend.at("/requests/"))
    assert sizes == [50] + [100] * 10
    kafka = make_sink(config(backend.url, batch_size=100)).kafka.batcher
    assert kafka.max_batch_rows == 50  # kafka and connections use half of BATCH_SIZE


async def test_server_side_rows_only_when_the_client_is_not_local(backend: FakeBackend) -> None:
    local = {"10.244.1.17"}
    sink = make_sink(config(backend.url), is_local_client=lambda ex: ex.client_ip in local)
    task = asyncio.create_task(sink.run())
    sink.submit(
        [
            exchange(1),  # client side: always
            exchange(2, role="server"),  # its client is local: its client row is the one
            exchange(3, role="server", client_ip="203.0.113.9", client_port=5555),
        ]
    )
    await until(lambda: sink.requests.sent_rows == 2)
    await sink.aclose()
    await task
    rows = {r[14]: r for s in backend.at("/requests/") for r in s.json()["requests"]}
    assert set(rows) == {"/item/1", "/item/3"}
    assert rows["/item/3"][2] == "203.0.113.9" and rows["/item/3"][5] == 5555
    assert rows["/item/3"][6] == "10.96.41.7" and rows["/item/3"][9] == 8080
    assert sink.skipped_rows == 1


async def test_attributor_names_both_ends_or_drops(backend: FakeBackend) -> None:
    from alaz.export.rows import Attribution

    def attribute(ex: Exchange) -> Attribution | None:
        if ex.client_ip != "10.244.1.17":
            return None
        return Attribution("pod", "pod-uid", "service", "svc-uid")

    sink = make_sink(config(backend.url), attributor=attribute)
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1), exchange(2, client_ip="10.0.0.1")])
    await until(lambda: sink.requests.sent_rows == 1)
    await sink.aclose()
    await task
    (row,) = [r for s in backend.at("/requests/") for r in s.json()["requests"]]
    assert row[3:5] == ["pod", "pod-uid"] and row[7:9] == ["service", "svc-uid"]
    assert sink.unattributed_rows == 1
