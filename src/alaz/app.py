"""The agent process: builds every component from the config and owns start-up and shutdown.

Start-up: host checks (fail fast, same messages as `alaz doctor`) -> load and attach probes ->
`agent.ready` (and the ready file) -> the capture loop, the sinks and the Kubernetes view run
in one TaskGroup. Shutdown (SIGINT/SIGTERM, or a restart the backend asked for): detach the
probes (nothing new is captured), drain the ring one last time, flush the sinks, close the
objects; well within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from alaz.capture.collector import Collector
from alaz.capture.probes import Probes
from alaz.capture.records import ProcEvent
from alaz.clock import MonotonicClock
from alaz.config import AgentConfig, KubernetesConfig
from alaz.conntrack import ConnTracker
from alaz.doctor import check_host, format_checks
from alaz.errors import KernelFeatureError
from alaz.log import get_logger
from alaz.model import Exchange

__all__ = ["Agent", "ExchangeSink", "kubernetes_available"]

_STATS_EVERY_S = 10.0
_CLOCK_REFRESH_S = 10.0
_SWEEP_EVERY_S = 30.0


class ExchangeSink(Protocol):
    """Where exchanges go (export/): non-blocking submit, background run, bounded flush."""

    def submit(self, exchanges: Sequence[Exchange]) -> None: ...

    async def run(self) -> None: ...

    async def aclose(self) -> None: ...


def kubernetes_available(cfg: KubernetesConfig, environ: dict[str, str] | None = None) -> bool:
    """Whether there is a Kubernetes API to watch: in a pod (IN_CLUSTER, the default), the
    service env the kubelet sets; outside, a kubeconfig. On a plain host: no (the agent then
    captures every process and names ends by address)."""
    env = os.environ if environ is None else environ
    if not cfg.enabled:
        return False
    if cfg.in_cluster:
        return "KUBERNETES_SERVICE_HOST" in env
    path = cfg.kubeconfig or env.get("KUBECONFIG") or "~/.kube/config"
    return Path(path).expanduser().exists()


@functools.cache
def _v2_mount() -> str | None:
    from alaz.k8s.cgroups import find_v2_mount

    return find_v2_mount()


def _cgroup_id(pid: int) -> int | None:
    """The cgroup v2 id (the directory's inode) of a running process, or None."""
    from alaz.k8s.cgroups import read_proc_cgroup, v2_path

    text = read_proc_cgroup(pid)
    mount = _v2_mount()
    path = v2_path(text) if text else None
    if path is None or mount is None:
        return None
    try:
        return os.stat(f"{mount}{path}").st_ino
    except OSError:
        return None


class Agent:
    """One agent process: probes -> collector -> tracker -> sinks, with the Kubernetes view."""

    def __init__(self, config: AgentConfig) -> None:
        from alaz.export.wiring import build_sinks

        self.config = config
        self.log = get_logger("agent")
        self.clock = MonotonicClock()
        self.tracker = ConnTracker(self.clock)
        self.probes: Probes | None = None
        self.collector: Collector | None = None
        self.k8s: Any = None
        self.health: Any = None
        self.tls: Any = None
        self._max_poll_gap = 0.0
        self._scope: set[int] = set()  # cgroup ids captured (Kubernetes: this node's pods)
        self._stop = asyncio.Event()
        self.capturing = False
        if kubernetes_available(config.k8s):
            from alaz.k8s import K8sCollector

            self.k8s = K8sCollector(
                config.k8s,
                config.backend.node_name,
                on_resources=self._on_resources,
                on_scope=self._on_scope,
            )
        elif config.k8s.enabled:
            self.log.info(
                "agent.no_kubernetes",
                detail="no cluster config found: capturing "
                "every process on this host, ends named by address",
            )
        self.sinks: Sequence[ExchangeSink] = build_sinks(
            config,
            attributor=self.k8s.attributor if self.k8s is not None else None,
            on_stop_collection=self.stop_collection,
            on_restart=self.request_stop,
        )
        self._anteon = next((s for s in self.sinks if hasattr(s, "submit_resources")), None)

    # -- lifecycle ---------------------------------------------------------------------------

    def start_probes(self) -> None:
        failed = [c for c in check_host(mount_tracefs=True) if not c.ok]
        if failed:
            raise KernelFeatureError(
                "start: this host cannot run the agent:\n" + format_checks(failed)
            )
        cap = self.config.capture
        probes = Probes(
            capture_bytes=cap.capture_bytes,
            ring_bytes=cap.ring_bytes,
            scope_by_cgroup=self.k8s is not None,
        )
        probes.load()
        probes.attach()
        assert probes.ring is not None
        self.probes = probes
        self.collector = Collector(probes.ring, self.tracker, self._submit, on_proc=self._on_proc)
        from alaz.capture.tls_attach import TlsAttacher

        if self.k8s is not None:
            self.tls = TlsAttacher(probes, wanted=self._scope.__contains__, cgroup_of=_cgroup_id)
        else:
            self.tls = TlsAttacher(probes)
        self.tls.scan_all()
        self.capturing = True

    def stop_collection(self) -> None:
        """Detaches every probe: nothing is captured until the process restarts."""
        if self.probes is not None:
            self.probes.detach()
        self.capturing = False
        self.log.warning("agent.collection_stopped")

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        await self._start_health()
        # Loading verifies every program (seconds): off the loop, so /healthz keeps answering.
        await asyncio.to_thread(self.start_probes)
        self._announce_ready()
        gc.freeze()  # start-up objects never need collecting; keeps GC passes short
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(s.run()) for s in self.sinks]
                if self.k8s is not None:
                    tasks.append(tg.create_task(self.k8s.run()))
                await self._capture_loop()
                await self._shutdown()
                for t in tasks:
                    t.cancel()
        finally:
            if self.probes is not None:
                self.probes.close()
            if self.health is not None:
                await self.health.aclose()

    async def _start_health(self) -> None:
        """/healthz, /readyz (ready once every probe is attached) and /metrics. A port in use
        is logged, not fatal: capture matters more than the probe endpoint."""
        port = self.config.health_port
        if port < 0:
            return
        from alaz.healthserver import HealthServer

        server = HealthServer(
            "0.0.0.0", port, is_ready=lambda: self.capturing, metrics=self.metrics_text
        )
        try:
            await server.start()
        except OSError as exc:
            self.log.warning("agent.health_port_unavailable", port=port, error=str(exc))
            return
        self.health = server

    def _announce_ready(self) -> None:
        assert self.probes is not None
        self.log.info(
            "agent.ready",
            pid=os.getpid(),
            capture_bytes=self.probes.capture_bytes,
            ring_bytes=self.probes.ring_bytes,
            kubernetes=self.k8s is not None,
        )
        if self.config.ready_file:
            with open(self.config.ready_file, "w") as f:
                f.write(f"{os.getpid()}\n")

    async def _capture_loop(self) -> None:
        assert self.collector is not None
        interval = self.config.capture.poll_interval_ms / 1000
        last_stats = last_clock = last_sweep = last_poll = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            # how late this poll is: a slow loop is what fills the ring and drops records
            self._max_poll_gap = max(self._max_poll_gap, started - last_poll)
            last_poll = started
            self.collector.poll()
            if self.tls is not None and self.capturing:
                self.tls.poll()
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
        self.probes.hand_off_teardown()  # the kernel's slow release happens after we exit
        self.probes.detach()
        self.collector.poll()  # what the kernel wrote before the links went away
        self._log_stats()
        closers = [s.aclose() for s in self.sinks]
        if self.k8s is not None:
            closers.append(self.k8s.aclose())
        for closer in closers:
            try:
                await asyncio.wait_for(closer, 3.0)
            except TimeoutError:
                self.log.warning("agent.close_timeout")

    # -- callbacks ---------------------------------------------------------------------------

    def _submit(self, exchanges: list[Exchange]) -> None:
        if self.k8s is not None:
            describe = self.k8s.describe
            for ex in exchanges:
                ex.from_, ex.to = describe(ex)
        for sink in self.sinks:
            sink.submit(exchanges)

    def _on_proc(self, event: int, pid: int, cgroup_id: int) -> None:
        if event == ProcEvent.EXEC:
            if self.k8s is not None:
                self.k8s.on_exec(pid, cgroup_id)
            if self.tls is not None:
                self.tls.on_exec(pid, cgroup_id)

    def _on_scope(self, add: set[int], remove: set[int]) -> None:
        self._scope |= add
        self._scope -= remove
        if self.probes is not None:
            self.probes.update_scope(add=add, remove=remove)

    def _on_resources(self, kind: Any, events: list[Any]) -> None:
        if self._anteon is not None:
            self._anteon.submit_resources(kind, events)

    def _stats(self) -> dict[str, dict[str, Any]]:
        """Every component's counters by group: the one source of the stats log and /metrics."""
        groups: dict[str, dict[str, Any]] = {}
        if self.probes is not None and self.probes.objects:
            groups["kernel"] = self.probes.counters()
        if self.collector is not None:
            groups["collector"] = vars(self.collector.stats)
        groups["tracker"] = vars(self.tracker.stats)
        if self.tls is not None:
            groups["tls"] = vars(self.tls.stats)
        export: dict[str, Any] = {}
        for sink in self.sinks:
            stats = getattr(sink, "stats", None)
            if callable(stats):
                export.update(stats())
        groups["export"] = export
        return groups

    def metrics_text(self) -> str:
        """The agent's own counters in the Prometheus text format (GET /metrics): kernel drops
        and records, collector, tracker, TLS attach and every sink's rows (sent, dropped...)."""
        lines = [
            f"alaz_{group}_{key} {value}"
            for group, values in self._stats().items()
            for key, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        lines.append(f"alaz_capturing {int(self.capturing)}")
        lines.append(f"alaz_connections {len(self.tracker.conns)}")
        return "\n".join(lines) + "\n"

    def _log_stats(self) -> None:
        self.log.info(
            "agent.stats",
            **self._stats(),
            conns=len(self.tracker.conns),
            max_poll_gap_ms=round(self._max_poll_gap * 1000, 1),
        )
        self._max_poll_gap = 0.0
