"""Export: where completed exchanges go (the only package that touches httpx).

Wiring, from the app::

    from alaz.export.wiring import build_exporter   # or build_sinks(...) -> list[Sink]

    exporter = build_exporter(
        config,                          # alaz.config.load_config()
        on_stop_collection=detach_probes,  # backend said 402: stop capturing (sync or async)
        on_restart=request_exit,           # backend said 200 after a 402: exit, k8s restarts us
        is_local_client=conntrack.is_local_client,  # optional; default: client IP is ours
        attributor=k8s_store.attribute,             # optional; default: everything "outbound"
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(exporter.run())   # pumps, health check; returns after aclose()
        ...                              # the pipeline calls exporter.submit(list_of_exchanges)
        await exporter.aclose()          # on shutdown: flush, drain within a deadline

`submit()` is a plain call from the hot path: it encodes rows and puts them in a bounded batcher;
when export is slower than traffic the oldest rows are dropped and counted, never the producer
blocked. `exporter.anteon` (an `AnteonSink`, or None without BACKEND_HOST) also takes Kafka rows,
alive connections, Kubernetes resource events and the metrics body, and holds the health-check
telemetry (`exporter.anteon.telemetry.k8s_version = "v1.29.2"`).

Modules: `batcher` (shared bounded batcher), `rows` (Exchange -> backend rows, the Attributor
and local-client seams), `resources` (Kubernetes resource events), `client` (HTTP + the Go
retry policy), `health` (health check, 402/200 semantics), `anteon` and `jsonl` (the sinks),
`wiring` (Sink protocol, Exporter, build_sinks, build_exporter). The backend contract is
documented in docs/backend-api.md.
"""

from alaz.export.anteon import AnteonSink, AnteonTimings
from alaz.export.batcher import Batch, Batcher
from alaz.export.client import BackendClient, Delivery, RetryPolicy
from alaz.export.health import HealthChecker, Telemetry
from alaz.export.jsonl import JsonlSink
from alaz.export.resources import ResourceKind
from alaz.export.rows import (
    Attribution,
    Attributor,
    ConnectionRow,
    KafkaRow,
    LocalAddresses,
    LocalClientPredicate,
    OutboundAttributor,
    RequestRow,
    request_row,
)
from alaz.export.wiring import Exporter, Sink, build_exporter, build_sinks

__all__ = [
    "AnteonSink",
    "AnteonTimings",
    "Attribution",
    "Attributor",
    "BackendClient",
    "Batch",
    "Batcher",
    "ConnectionRow",
    "Delivery",
    "Exporter",
    "HealthChecker",
    "JsonlSink",
    "KafkaRow",
    "LocalAddresses",
    "LocalClientPredicate",
    "OutboundAttributor",
    "RequestRow",
    "ResourceKind",
    "RetryPolicy",
    "Sink",
    "Telemetry",
    "build_exporter",
    "build_sinks",
    "request_row",
]
