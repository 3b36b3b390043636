"""The agent process: builds every component from the config and owns start-up and shutdown.

Start-up: host checks (fail fast, same messages as `alaz doctor`) -> load and attach probes ->
`agent.ready` (and the ready file) -> the capture loop and the sinks run in one TaskGroup.
Shutdown (SIGINT/SIGTERM): detach the probes (nothing new is captured), drain the ring one last
time, flush the sinks, close the objects; well within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Sequence
from typing import Protocol

from alaz.capture.collector import Collector
from alaz.capture.probes import Probes
from alaz.clock import MonotonicClock
from alaz.config import AgentConfig
from alaz.conntrack import ConnTracker
from alaz.doctor import check_host, format_checks
from alaz.errors import KernelFeatureError
from alaz.log import get_logger
from alaz.model import Exchange

__all__ = ["Agent", "ExchangeSink"]

_STATS_EVERY_S = 10.0
_CLOCK_REFRESH_S = 10.0
_SWEEP_EVERY_S = 30.0


class ExchangeSink(Protocol):
    """Where exchanges go (export/): non-blocking submit, background run, bounded flush."""

    def submit(self, exchanges: Sequence[Exchange]) -> None: ...

    async def run(self) -> None: ...

    async def aclose(self) -> None: ...


class Agent:
    """One agent process."""

    def __init__(self, config: AgentConfig, sinks: Sequence[ExchangeSink]) -> None:
        self.config = config
        self.sinks = sinks
        self.log = get_logger("agent")
        self.clock = MonotonicClock()
        self.tracker = ConnTracker(self.clock)
        self.probes: Probes | None = None
        self.collector: Collector | None = None
        self._stop = asyncio.Event()
        self.capturing = True

    # -- lifecycle ---------------------------------------------------------------------------

    def start_probes(self) -> None:
        failed = [c for c in check_host(mount_tracefs=True) if not c.ok]
        if failed:
            raise KernelFeatureError(
                "start: this host cannot run the agent:\n" + format_checks(failed)
            )
        cap = self.config.capture
        probes = Probes(capture_bytes=cap.capture_bytes, ring_bytes=cap.ring_bytes)
        probes.load()
        probes.attach()
        assert probes.ring is not None
        self.probes = probes
        self.collector = Collector(probes.ring, self.tracker, self._submit)

    def stop_collection(self) -> None:
        """Detaches every probe: nothing is captured until the process restarts."""
        if self.probes is not None:
            self.probes.detach()
        self.capturing = False
        self.log.warning("agent.collection_stopped")

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self.start_probes()
        self._announce_ready()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        gc.freeze()  # start-up objects never need collecting; keeps GC passes short
        try:
            async with asyncio.TaskGroup() as tg:
                sink_tasks = [tg.create_task(s.run()) for s in self.sinks]
                await self._capture_loop()
                await self._shutdown()
                for t in sink_tasks:
                    t.cancel()
        finally:
            if self.probes is not None:
                self.probes.close()

    def _announce_ready(self) -> None:
        assert self.probes is not None
        self.log.info(
            "agent.ready",
            pid=os.getpid(),
            capture_bytes=self.probes.capture_bytes,
            ring_bytes=self.probes.ring_bytes,
        )
        if self.config.ready_file:
            with open(self.config.ready_file, "w") as f:
                f.write(f"{os.getpid()}\n")

    async def _capture_loop(self) -> None:
        assert self.collector is not None
        interval = self.config.capture.poll_interval_ms / 1000
        last_stats = last_clock = last_sweep = time.monotonic()
        while not self._stop.is_set():
            self.collector.poll()
            now = time.monotonic()
            if now - last_clock >= _CLOCK_REFRESH_S:
                self.clock.refresh()
                last_clock = now
            if now - last_sweep >= _SWEEP_EVERY_S:
                self.tracker.sweep(time.clock_gettime_ns(time.CLOCK_MONOTONIC))
                last_sweep = now
            if now - last_stats >= _STATS_EVERY_S:
                self._log_stats()
                last_stats = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    async def _shutdown(self) -> None:
        self.log.info("agent.stopping")
        assert self.probes is not None and self.collector is not None
        self.probes.detach()
        self.collector.poll()  # what the kernel wrote before the links went away
        self._log_stats()
        for sink in self.sinks:
            try:
                await asyncio.wait_for(sink.aclose(), 3.0)
            except TimeoutError:
                self.log.warning("agent.sink_flush_timeout", sink=type(sink).__name__)

    def _submit(self, exchanges: list[Exchange]) -> None:
        for sink in self.sinks:
            sink.submit(exchanges)

    def _log_stats(self) -> None:
        assert self.probes is not None and self.collector is not None
        self.log.info(
            "agent.stats",
            kernel=self.probes.counters(),
            collector=vars(self.collector.stats),
            tracker=vars(self.tracker.stats),
            conns=len(self.tracker.conns),
        )
