"""What the app calls: `build_sinks`/`build_exporter`, the `Sink` protocol, the `Exporter`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import httpx

from alaz.config import AgentConfig
from alaz.export.anteon import AnteonSink, AnteonTimings
from alaz.export.health import Callback, Telemetry
from alaz.export.jsonl import JsonlSink
from alaz.export.rows import Attributor, LocalClientPredicate
from alaz.model import Exchange

__all__ = ["Exporter", "Sink", "build_exporter", "build_sinks"]


@runtime_checkable
class Sink(Protocol):
    """What every sink offers the app."""

    name: str

    def submit(self, exchanges: Sequence[Exchange]) -> None:
        """Queue exchanges; never blocks, never raises for back-pressure (drops are counted)."""

    async def run(self) -> None:
        """Run the background work until `aclose()`; returns once drained."""

    async def aclose(self) -> None:
        """Flush and drain within a deadline, release resources. Idempotent."""


class Exporter:
    """Fans `submit` out to every sink and runs them together; itself a `Sink`."""

    name = "exporter"

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = tuple(sinks)
        self.anteon = next((s for s in sinks if isinstance(s, AnteonSink)), None)
        self.jsonl = next((s for s in sinks if isinstance(s, JsonlSink)), None)

    def submit(self, exchanges: Sequence[Exchange]) -> None:
        for sink in self.sinks:
            sink.submit(exchanges)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for sink in self.sinks:
                tg.create_task(sink.run())

    async def aclose(self) -> None:
        await asyncio.gather(*(sink.aclose() for sink in self.sinks))


def build_sinks(
    config: AgentConfig,
    *,
    attributor: Attributor | None = None,
    is_local_client: LocalClientPredicate | None = None,
    on_stop_collection: Callback | None = None,
    on_restart: Callback | None = None,
    telemetry: Telemetry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timings: AnteonTimings | None = None,
) -> list[Sink]:
    """The sinks `config` asks for: `AnteonSink` when BACKEND_HOST is set; `JsonlSink` when no
    backend is set (to `output`, default stdout) or when `output` is given.

    `on_stop_collection` runs when the backend answers a health check with 402 (detach probes);
    `on_restart` when a later health check answers 200 (exit so Kubernetes restarts the pod).
    Either may be sync or async. `attributor` and `is_local_client` are the seams for the
    Kubernetes store and the connection tracker (see `alaz.export.rows`).
    """
    sinks: list[Sink] = []
    if config.backend_enabled:
        sinks.append(
            AnteonSink(
                config,
                attributor=attributor,
                is_local_client=is_local_client,
                on_stop_collection=on_stop_collection,
                on_restart=on_restart,
                telemetry=telemetry,
                transport=transport,
                timings=timings or AnteonTimings(),
            )
        )
    if config.output is not None or not config.backend_enabled:
        sinks.append(JsonlSink(config.output or "-", export=config.export))
    return sinks


def build_exporter(
    config: AgentConfig,
    *,
    attributor: Attributor | None = None,
    is_local_client: LocalClientPredicate | None = None,
    on_stop_collection: Callback | None = None,
    on_restart: Callback | None = None,
    telemetry: Telemetry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    timings: AnteonTimings | None = None,
) -> Exporter:
    """`build_sinks` behind one `Exporter` (a single `Sink` fanning out to all of them)."""
    return Exporter(
        build_sinks(
            config,
            attributor=attributor,
            is_local_client=is_local_client,
            on_stop_collection=on_stop_collection,
            on_restart=on_restart,
            telemetry=telemetry,
            transport=transport,
            timings=timings,
        )
    )
