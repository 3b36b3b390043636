"""HealthServer over real sockets: routes, readiness flips, bounds (size, time, connections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from alaz.healthserver import HealthServer


class Flag:
    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> bool:
        return self.ready


@pytest.fixture
async def flag() -> Flag:
    return Flag()


@pytest.fixture
async def server(flag: Flag) -> AsyncIterator[HealthServer]:
    srv = HealthServer("127.0.0.1", 0, flag, lambda: "# TYPE alaz_up gauge\nalaz_up 1\n")
    await srv.start()
    yield srv
    await srv.aclose()


async def _get(srv: HealthServer, path: str, method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as client:
        return await client.request(method, path, timeout=5)


async def _raw(srv: HealthServer, data: bytes, *, close_write: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(data)
    await writer.drain()
    if close_write:
        writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_healthz_is_ok(server: HealthServer) -> None:
    r = await _get(server, "/healthz")
    assert (r.status_code, r.text) == (200, "ok\n")
    assert r.headers["connection"] == "close"


async def test_readyz_follows_the_callable(server: HealthServer, flag: Flag) -> None:
    r = await _get(server, "/readyz")
    assert r.status_code == 503 and "not ready" in r.text
    flag.ready = True
    r = await _get(server, "/readyz?verbose=1")
    assert (r.status_code, r.text) == (200, "ready\n")


async def test_metrics_serves_prometheus_text(server: HealthServer) -> None:
    r = await _get(server, "/metrics")
    assert r.status_code == 200
    assert r.text == "# TYPE alaz_up gauge\nalaz_up 1\n"
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")


async def test_metrics_404_without_callable(flag: Flag) -> None:
    async with HealthServer("127.0.0.1", 0, flag) as srv:
        assert (await _get(srv, "/metrics")).status_code == 404
        assert (await _get(srv, "/healthz")).status_code == 200


async def test_unknown_path_and_method(server: HealthServer) -> None:
    assert (await _get(server, "/nope")).status_code == 404
    r = await _get(server, "/healthz", method="POST")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


async def test_head_has_no_body(server: HealthServer) -> None:
    raw = await _raw(server, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 3" in head
    assert body == b""


async def test_garbage_request_line_is_400(server: HealthServer) -> None:
    raw = await _raw(server, b"HELLO\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_oversized_head_is_431(flag: Flag) -> None:
    async with HealthServer("127.0.0.1", 0, flag, max_request_bytes=1024) as srv:
        big = b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 4096 + b"\r\n\r\n"
        raw = await _raw(srv, big)
        assert raw.startswith(b"HTTP/1.1 431 ")
        # a head just under the limit still works
        ok = b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 900 + b"\r\n\r\n"
        assert (await _raw(srv, ok)).startswith(b"HTTP/1.1 200 ")


async def test_slow_client_times_out(flag: Flag) -> None:
    async with HealthServer("127.0.0.1", 0, flag, timeout=0.2) as srv:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        raw = await _raw(srv, b"GET /healthz HTTP/1.1\r\n")  # never finishes its head
        assert raw.startswith(b"HTTP/1.1 408 ")
        assert loop.time() - t0 < 3


async def test_client_closing_early_does_not_break_the_server(server: HealthServer) -> None:
    assert await _raw(server, b"GET /hea", close_write=True) == b""
    assert (await _get(server, "/healthz")).status_code == 200


async def test_connection_limit(flag: Flag) -> None:
    async with HealthServer("127.0.0.1", 0, flag, max_connections=2, timeout=2) as srv:
        held = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        # a third connection is closed without an answer while two are held open
        try:
            answer = await _raw(srv, b"GET /healthz HTTP/1.1\r\n\r\n")
        except ConnectionResetError:
            answer = b""
        assert answer == b""
        for _, w in held:
            w.close()
        await asyncio.sleep(0.05)
        assert (await _get(srv, "/healthz")).status_code == 200


@pytest.mark.parametrize(
    ("ready", "metrics", "path", "status"),
    [(lambda: 1 / 0, None, "/readyz", 503), (lambda: True, lambda: str(1 / 0), "/metrics", 500)],
)
async def test_callbacks_that_raise(
    ready: Callable[[], bool], metrics: Callable[[], str] | None, path: str, status: int
) -> None:
    async with HealthServer("127.0.0.1", 0, ready, metrics) as srv:
        assert (await _get(srv, path)).status_code == status
        assert (await _get(srv, "/healthz")).status_code == 200


async def test_aclose_stops_listening_and_is_idempotent(flag: Flag) -> None:
    srv = HealthServer("127.0.0.1", 0, flag)
    await srv.start()
    port = srv.port
    held = await asyncio.open_connection("127.0.0.1", port)  # an open, idle connection
    await asyncio.sleep(0.05)
    await asyncio.wait_for(srv.aclose(), 2)  # does not wait for the idle client
    await srv.aclose()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    held[1].close()


async def test_port_in_use_raises(server: HealthServer, flag: Flag) -> None:
    other = HealthServer("127.0.0.1", server.port, flag)
    with pytest.raises(OSError):
        await other.start()
