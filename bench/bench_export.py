"""Export throughput: rows/s encoded and POSTed by the anteon sink to a local backend.

    .venv/bin/python bench/bench_export.py [--rows 200000] [--rounds 3]

The backend is a minimal HTTP/1.1 server in a child process (so it does not share our core); it
parses every body and counts the rows it got. Measured in the same run, interleaved per round:

* baseline `json.dumps`: the same rows as Python lists through the standard library encoder, one
  `json.dumps` per 1000-row body (what a naive exporter pays before any I/O);
* encode only: `AnteonSink.submit()` (filter, attribute, map, encode, batch) without sending;
* encode + POST: `submit()` from a simulated pipeline (chunks of 1000 with a yield to the loop in
  between), until the backend has acknowledged every row.

Medians over the rounds; peak RSS and the batcher's peak against its bound show memory stays put.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import statistics
import time
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import orjson

from alaz.config import load_config
from alaz.export.anteon import AnteonSink
from alaz.export.health import Telemetry
from alaz.export.rows import OutboundAttributor, request_row
from alaz.model import Exchange

CHUNK = 1000


def make_exchanges(n: int) -> list[Exchange]:
    return [
        Exchange(
            protocol="HTTP",
            role="client",
            pid=4242,
            tid=4242,
            comm="checkout",
            fd=7,
            cgroup_id=12345,
            client_ip="10.244.1.17",
            client_port=40000 + i % 20000,
            server_ip="10.96.41.7",
            server_port=8080,
            method="GET" if i % 3 else "POST",
            path=f"/api/v1/orders?id={i}",
            status=200 if i % 10 else 503,
            latency_ns=1_843_211 + i,
            start_time_ms=1_727_184_000_000 + i,
            tls=bool(i % 2),
            req_bytes=312,
            resp_bytes=1840,
            host="orders.shop.svc" if i % 4 else None,
        )
        for i in range(n)
    ]


# --- the local backend (child process) -----------------------------------------------------------


def _serve(conn: Connection, counted: Synchronized[int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                length = 0
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    if h[:15].lower() == b"content-length:":
                        length = int(h[15:])
                body = await reader.readexactly(length)
                if line.startswith(b"POST /requests/"):
                    with counted.get_lock():
                        counted.value += len(orjson.loads(body)["requests"])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=128)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop

    asyncio.run(main())


# --- the measurements ----------------------------------------------------------------------------


def bench_json_dumps(exchanges: list[Exchange]) -> float:
    attribute = OutboundAttributor()
    start = time.perf_counter()
    for i in range(0, len(exchanges), CHUNK):
        rows = [list(request_row(ex, attribute(ex))) for ex in exchanges[i : i + CHUNK]]
        json.dumps({"metadata": {"idempotency_key": "k"}, "requests": rows}).encode()
    return time.perf_counter() - start


def new_sink(url: str, rows: int) -> AnteonSink:
    env = {"BACKEND_HOST": url, "MONITORING_ID": "bench", "NODE_NAME": "bench-node"}
    config = load_config(env, queue_rows=max(rows, 100_000))
    return AnteonSink(config, telemetry=Telemetry("", "", ""), is_local_client=lambda ex: False)


async def bench_encode_only(exchanges: list[Exchange]) -> float:
    sink = new_sink("http://127.0.0.1:9", len(exchanges))
    start = time.perf_counter()
    for i in range(0, len(exchanges), CHUNK):
        sink.submit(exchanges[i : i + CHUNK])
    while (batch := sink.requests.batcher.take_ready()) is not None:  # form the bodies too
        batch.key = "00000000-0000-4000-8000-000000000000"
        sink.encode_body(sink.requests, batch)
    elapsed = time.perf_counter() - start
    sink.requests.batcher.close()
    await sink.aclose()
    return elapsed


async def bench_post(
    exchanges: list[Exchange], url: str, counted: Synchronized[int]
) -> tuple[float, dict[str, int]]:
    sink = new_sink(url, len(exchanges))
    task = asyncio.create_task(sink.run())
    before = counted.value
    start = time.perf_counter()
    for i in range(0, len(exchanges), CHUNK):
        sink.submit(exchanges[i : i + CHUNK])
        await asyncio.sleep(0)
    while counted.value - before < len(exchanges):
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    await sink.aclose()
    await task
    b = sink.requests.batcher
    return elapsed, {
        "sent": sink.requests.sent_rows,
        "dropped": b.dropped_rows,
        "posts": sink.requests.posts,
        "peak_rows": b.peak_rows,
        "peak_bytes": b.peak_bytes,
        "bound_rows": b.max_rows,
        "bound_bytes": b.max_bytes,
    }


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds / 1000:8.1f} k rows/s  {seconds / n * 1e6:6.2f} us/row"


async def main(args: Any) -> None:
    ctx = mp.get_context("fork")
    counted: Synchronized[int] = ctx.Value("q", 0)
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(child, counted), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{parent.recv()}"
    exchanges = make_exchanges(args.rows)
    times: dict[str, list[float]] = {"json": [], "encode": [], "post": []}
    last: dict[str, int] = {}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await bench_post(exchanges[: CHUNK * 5], url, counted)  # warm up the connection pool
    for _ in range(args.rounds):
        times["json"].append(bench_json_dumps(exchanges))
        times["encode"].append(await bench_encode_only(exchanges))
        elapsed, last = await bench_post(exchanges, url, counted)
        times["post"].append(elapsed)
    parent.send("stop")
    server.join(5)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    n = args.rows
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"rows per run: {n}, rounds: {args.rounds}, batch 1000, 4 POSTs in flight (medians)")
    print(f"  baseline: stdlib json.dumps, encode only   {rate(n, med['json'])}")
    print(
        f"  alaz: submit() + bodies, encode only       {rate(n, med['encode'])}"
        f"   ({med['json'] / med['encode']:.2f}x the baseline)"
    )
    print(
        f"  alaz: encode + POST to a local backend     {rate(n, med['post'])}"
        f"   (HTTP adds {(med['post'] - med['encode']) / n * 1e6:.2f} us/row)"
    )
    print(
        f"  backend counted {counted.value} rows over {args.rounds + 1} runs; last run: "
        f"{last['posts']} POSTs, sent {last['sent']}, dropped {last['dropped']}"
    )
    print(
        f"  queue peak {last['peak_rows']} rows / {last['peak_bytes'] / 2**20:.1f} MiB "
        f"(bound {last['bound_rows']} rows / {last['bound_bytes'] / 2**20:.0f} MiB); "
        f"peak RSS {rss / 1024:.0f} MiB ({rss_before / 1024:.0f} MiB with the "
        f"{n} input exchanges built)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
