"""HTTP to the backend, with the Go agent's retry policy (spec §2.1).

The Go agent uses hashicorp/go-retryablehttp with RetryMax 2, so a call makes at most 3 attempts:

* retried: transport errors (connect, reset, timeout), 400, 429 and every status >= 500;
* not retried: anything else, including 402 and 404;
* waits between attempts: 1 s then 2 s (exponential from 1 s, capped at 5 s), or the Retry-After
  of a 429/503 response;
* each attempt times out after 10 s, and the whole call (attempts plus waits) has a deadline:
  30 s for a JSON batch, 5 s for the health check, 10 s for metrics.

The body is sent unchanged on every attempt, so a batch keeps its idempotency key across retries.
`sleep` and `clock` are injectable so tests need not wait real seconds.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import httpx
import orjson

from alaz import __version__
from alaz.log import get_logger

__all__ = [
    "JSON_HEADERS",
    "USER_AGENT",
    "BackendClient",
    "Delivery",
    "RetryPolicy",
    "SleepFn",
    "is_retryable",
]

SleepFn = Callable[[float], Awaitable[None]]
USER_AGENT = f"alaz-python/{__version__}"
JSON_HEADERS: Mapping[str, str] = {
    "Content-Type": "application/json",
    "Accept": "application/json",
}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one call may try (defaults: the Go agent's JSON batch POST)."""

    attempts: int = 3
    wait_min_s: float = 1.0
    wait_max_s: float = 5.0
    attempt_timeout_s: float = 10.0
    deadline_s: float = 30.0

    def with_deadline(self, deadline_s: float) -> RetryPolicy:
        return replace(self, deadline_s=deadline_s)

    def backoff(self, attempt: int, response: httpx.Response | None) -> float:
        """The wait after failed attempt number `attempt` (0-based), as go-retryablehttp does."""
        if response is not None and response.status_code in (429, 503):
            after = _retry_after(response.headers.get("Retry-After"))
            if after is not None:
                return after
        return float(min(self.wait_min_s * (2**attempt), self.wait_max_s))


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one call: the last status (None after a transport error) and attempts."""

    status: int | None
    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def backend_unavailable(self) -> bool:
        """The backend could not take it (down, overloaded): worth keeping the rows for later."""
        return self.status is None or self.status == 429 or self.status >= 500


def is_retryable(status: int | None) -> bool:
    """go-retryablehttp's policy as configured by the Go agent."""
    return status is None or status in (400, 429) or status >= 500


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class BackendClient:
    """One httpx.AsyncClient for every call to BACKEND_HOST, with retries.

    Keep-alive on; proxies from HTTPS_PROXY/NO_PROXY are honoured (the Go agent ignores them);
    TLS is verified against the system CA bundle, as Go does.
    """

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: SleepFn = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 32,
    ) -> None:
        self._base = base_url  # concatenated verbatim with each path, as in Go
        self._sleep = sleep
        self._clock = clock
        self._log = get_logger("export.client")
        self._http = httpx.AsyncClient(
            transport=transport,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=ssl.create_default_context() if transport is None else True,
            trust_env=True,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = JSON_HEADERS,
        policy: RetryPolicy = RetryPolicy(),
    ) -> Delivery:
        """Send `body` to base+path with retries; never raises for HTTP or transport trouble."""
        url = self._base + path
        start = self._clock()
        status: int | None = None
        error: str | None = None
        attempt = 0
        while True:
            response, error = await self._attempt(method, url, body, headers, policy, start)
            status = response.status_code if response is not None else None
            attempt += 1
            if response is not None and response.status_code == 200:
                self._log_row_errors(path, response)
            if not is_retryable(status) or attempt >= policy.attempts:
                break
            wait = policy.backoff(attempt - 1, response)
            if self._clock() - start + wait >= policy.deadline_s:
                error = error or f"deadline {policy.deadline_s:g}s reached"
                break
            await self._sleep(wait)
        return Delivery(status, attempt, error)

    async def _attempt(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        policy: RetryPolicy,
        start: float,
    ) -> tuple[httpx.Response | None, str | None]:
        remaining = policy.deadline_s - (self._clock() - start)
        timeout = max(0.001, min(policy.attempt_timeout_s, remaining))
        try:
            response = await self._http.request(
                method, url, content=body, headers=headers, timeout=timeout
            )
            await response.aread()
        except httpx.HTTPError as exc:  # transport errors, timeouts, protocol errors
            return None, f"{type(exc).__name__}: {exc}"
        return response, None

    def _log_row_errors(self, path: str, response: httpx.Response) -> None:
        """A 200 may list rows the backend rejected; like Go, only log them."""
        try:
            payload = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        errors = payload.get("errors")
        if isinstance(errors, list) and errors:
            self._log.warning(
                "backend rejected rows", path=path, msg=payload.get("msg"),
                count=len(errors), first=errors[0],
            )  # fmt: skip
