"""A tiny HTTP/1.1 server for the kubelet's probes and for Prometheus.

`/healthz`, `/readyz` and `/metrics` on one port (Helm value `containerPort`, default 8181).

Stdlib only (`asyncio.start_server`): the agent has no web framework and needs none for three
GET routes. Each connection carries one request and is closed after the answer (probes open a
new connection every time), and everything a client can make it hold is bounded:

* the request head (request line + headers) is at most `max_request_bytes` (default 8 KiB),
  a larger one gets 431 and the connection is closed;
* a client has `timeout` seconds (default 5 s) to send its head; a slow one is dropped;
* at most `max_connections` connections are served at once; more are closed unanswered.

Routes (GET or HEAD; anything else gets 405):

* `/healthz`: 200 while the event loop runs (a wedged loop cannot answer, and the kubelet's
  liveness probe times out), the liveness probe;
* `/readyz`: 200 when `is_ready()` is true (the probes are attached), else 503;
* `/metrics`: the Prometheus text `metrics()` returns, or 404 when there is no callable.

A callback that raises answers 500 (`/readyz`: 503); it never takes the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from alaz.log import get_logger

__all__ = ["DEFAULT_PORT", "HealthServer"]

DEFAULT_PORT = 8181  # the Go agent's only containerPort (Helm value `containerPort`)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TEXT = "text/plain; charset=utf-8"
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


class HealthServer:
    """Serves the health, readiness and metrics endpoints of one agent process.

    `port=0` binds a free port; `port` then tells which one was bound.
    """

    def __init__(
        self,
        host: str,
        port: int,
        is_ready: Callable[[], bool],
        metrics: Callable[[], str] | None = None,
        *,
        max_request_bytes: int = 8192,
        timeout: float = 5.0,
        max_connections: int = 64,
    ) -> None:
        self.host = host
        self.port = port
        self._is_ready = is_ready
        self._metrics = metrics
        self._max_request_bytes = max_request_bytes
        self._timeout = timeout
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._log = get_logger("health")

    async def start(self) -> None:
        """Binds and starts serving; raises OSError when the port is taken."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=self._max_request_bytes
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._log.info("health.listening", host=self.host, port=self.port)

    async def aclose(self) -> None:
        """Stops listening and drops open connections. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- one connection ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._handlers) >= self._max_connections or task is None:
            writer.close()
            return
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        except asyncio.CancelledError:
            pass  # aclose() drops open connections; end quietly (asyncio logs a raised one)
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            await self._send(writer, 408, "request timeout\n")
            return
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, "request head too large\n")
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._send(writer, 400, "bad request\n")
            return
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            await self._send(writer, 405, "only GET and HEAD\n", extra={"Allow": "GET, HEAD"})
            return
        status, body, ctype = self._route(target.split("?", 1)[0])
        await self._send(writer, status, body, ctype=ctype, head_only=method == "HEAD")

    def _route(self, path: str) -> tuple[int, str, str]:
        if path == "/healthz":
            return 200, "ok\n", _TEXT
        if path == "/readyz":
            return self._readiness()
        if path == "/metrics" and self._metrics is not None:
            return self._scrape(self._metrics)
        return 404, "not found\n", _TEXT

    def _readiness(self) -> tuple[int, str, str]:
        try:
            ready = bool(self._is_ready())
        except Exception as exc:
            self._log.warning("health.ready_check_failed", error=repr(exc))
            return 503, "not ready: readiness check failed\n", _TEXT
        return (200, "ready\n", _TEXT) if ready else (503, "not ready\n", _TEXT)

    def _scrape(self, metrics: Callable[[], str]) -> tuple[int, str, str]:
        try:
            return 200, metrics(), _PROMETHEUS
        except Exception as exc:
            self._log.warning("health.metrics_failed", error=repr(exc))
            return 500, "metrics failed\n", _TEXT

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        body: str,
        *,
        ctype: str = _TEXT,
        head_only: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        data = body.encode()
        headers = {
            "Content-Type": ctype,
            "Content-Length": str(len(data)),
            "Cache-Control": "no-store",
            "Connection": "close",
            **(extra or {}),
        }
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(data)
        await writer.drain()
