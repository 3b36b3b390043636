"""`PUT /healthcheck/` and what it does to the agent (spec §2.4.5, §1.1).

Every `interval_s` (10 s; the first one 10 s after start, as in Go) the agent PUTs
`{"metadata", "alaz_info", "telemetry"}`. The status decides:

* 402 Payment Required: stop collecting. `on_stop` is called once (the app detaches its probes,
  the sinks discard and stop sending), and the checks go on.
* 200 while stopped: `on_restart` is called (the app exits so Kubernetes restarts the pod).
* anything else, or no answer: ignored.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from alaz.export.client import BackendClient, Delivery, RetryPolicy, SleepFn
from alaz.log import get_logger

__all__ = [
    "CLOUD_PROVIDERS",
    "AlazInfo",
    "Callback",
    "HealthChecker",
    "Telemetry",
    "cloud_provider",
    "kernel_version",
]

Callback = Callable[[], object]  # may return an awaitable
_HEALTHCHECK_POLICY = RetryPolicy(deadline_s=5.0)

CLOUD_PROVIDERS = {
    "Amazon EC2": "AWS",
    "Google": "GCP",
    "Microsoft Corporation": "Azure",
    "DigitalOcean": "DigitalOcean",
}


def kernel_version(proc_version: Path = Path("/proc/version")) -> str:
    """The 3rd whitespace field of the first line of /proc/version ("" if unreadable)."""
    try:
        fields = proc_version.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return ""
    return fields[2] if len(fields) > 2 else ""


def cloud_provider(board_vendor: Path = Path("/sys/class/dmi/id/board_vendor")) -> str:
    """AWS, GCP, Azure, DigitalOcean or "" from the DMI board vendor, mapped as Go maps it."""
    try:
        vendor = board_vendor.read_text().strip()
    except OSError:
        return ""
    return CLOUD_PROVIDERS.get(vendor, "")


class AlazInfo(msgspec.Struct, frozen=True):
    """`alaz_info` of the health check."""

    tracing: bool
    metrics: bool
    logs: bool
    namespace_filter: str


@dataclass
class Telemetry:
    """`telemetry` of the health check; `k8s_version` is filled once the API server is known."""

    kernel_version: str
    k8s_version: str
    cloud_provider: str

    @classmethod
    def from_host(cls) -> Telemetry:
        return cls(kernel_version(), "", cloud_provider())


class HealthChecker:
    """The periodic health check and its stop/restart state machine."""

    def __init__(
        self,
        client: BackendClient,
        metadata: Callable[[str], dict[str, str]],
        info: AlazInfo,
        telemetry: Telemetry,
        *,
        on_stop: Callback | None = None,
        on_restart: Callback | None = None,
        interval_s: float = 10.0,
        policy: RetryPolicy = _HEALTHCHECK_POLICY,
        sleep: SleepFn = asyncio.sleep,
    ) -> None:
        self._client = client
        self._metadata = metadata
        self.info = info
        self.telemetry = telemetry
        self._on_stop = on_stop
        self._on_restart = on_restart
        self._interval_s = interval_s
        self._policy = policy
        self._sleep = sleep
        self._log = get_logger("export.health")
        self.stopped = False
        self.checks = 0
        self.last_status: int | None = None

    def body(self) -> bytes:
        return msgspec.json.encode(
            {
                "metadata": self._metadata(str(uuid.uuid4())),
                "alaz_info": self.info,
                "telemetry": {
                    "kernel_version": self.telemetry.kernel_version,
                    "k8s_version": self.telemetry.k8s_version,
                    "cloud_provider": self.telemetry.cloud_provider,
                },
            }
        )

    async def run(self) -> None:
        """Check forever, the first time one interval after start."""
        while True:
            await self._sleep(self._interval_s)
            await self.check()

    async def check(self) -> Delivery:
        """One health check, and the transition it causes."""
        delivery = await self._client.send("PUT", "/healthcheck/", self.body(), policy=self._policy)
        self.checks += 1
        self.last_status = delivery.status
        if delivery.status == 402 and not self.stopped:
            self._log.warning(
                "payment required: stop collecting; the agent restarts once payment is made"
            )
            self.stopped = True
            await _call(self._on_stop)
        elif delivery.status == 200 and self.stopped:
            self._log.warning("payment made: restart")
            self.stopped = False
            await _call(self._on_restart)
        elif not delivery.ok and delivery.status != 402:
            self._log.info("health check failed", status=delivery.status, error=delivery.error)
        return delivery


async def _call(callback: Callback | None) -> None:
    if callback is None:
        return
    result = callback()
    if inspect.isawaitable(result):
        await result
