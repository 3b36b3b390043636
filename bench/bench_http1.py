"""Cost of Http1Connection.feed() per exchange, beside a minimal-parse baseline from the same run.

Run: .venv/bin/python bench/bench_http1.py [--rounds N]

Cases (steady state on one keep-alive connection, one record per syscall):
  single    a curl-like GET (one record) + an nginx-like 200 with a small body (one record)
  pipeline  10 GETs in one record + their 10 responses in one record (cost per exchange)

Baseline: what any parser must pay at least -- per message, `find(b"\\r\\n\\r\\n")` plus a split of
the first line -- on the same payloads. No header lookups, no framing, no pairing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from alaz.protocols.http1 import EGRESS, INGRESS, Http1Connection

REQUEST = (
    b"GET /api/v1/users?id=42 HTTP/1.1\r\n"
    b"Host: users.default.svc.cluster.local:8080\r\n"
    b"User-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)
BODY = b'{"id":42,"name":"ada","roles":["admin"]}\n'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.25.3\r\n"
    b"Date: Tue, 07 May 2024 10:00:00 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n" % len(BODY)
) + BODY
DEPTH = 10


def best_of(fn: Callable[[int], None], loops: int, rounds: int) -> float:
    """Best wall time of `rounds` runs of fn(loops), in seconds per loop."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(loops)
        best = min(best, time.perf_counter() - t0)
    return best / loops


def parser_loop(requests: bytes, responses: bytes, expect: int) -> Callable[[int], None]:
    conn = Http1Connection("client")
    feed = conn.feed
    req_len, resp_len = len(requests), len(responses)
    got = [*feed(EGRESS, requests, req_len, 0, 1), *feed(INGRESS, responses, resp_len, 2, 3)]
    assert len(got) == expect

    def run(loops: int) -> None:
        t = 10
        for _ in range(loops):
            feed(EGRESS, requests, req_len, t, t + 1)
            feed(INGRESS, responses, resp_len, t + 2, t + 3)
            t += 4

    return run


def baseline_loop(requests: bytes, responses: bytes, count: int) -> Callable[[int], None]:
    """find the head end and split the first line of every message; nothing else."""
    req_size, resp_size = len(requests) // count, len(responses) // count

    def run(loops: int) -> None:
        for _ in range(loops):
            for data, size in ((requests, req_size), (responses, resp_size)):
                pos = 0
                for _ in range(count):
                    data.find(b"\r\n\r\n", pos)
                    data[pos : data.find(b"\r\n", pos)].split(b" ", 2)
                    pos += size

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="runs per case; the best one counts")
    parser.add_argument("--loops", type=int, default=20000, help="exchanges-batches per run")
    args = parser.parse_args()

    cases = [
        ("single", REQUEST, RESPONSE, 1, args.loops),
        ("pipeline", REQUEST * DEPTH, RESPONSE * DEPTH, DEPTH, args.loops // DEPTH),
    ]
    print(f"python {sys.version.split()[0]}, best of {args.rounds} runs")
    print(f"request {len(REQUEST)} B, response {len(RESPONSE)} B, pipeline depth {DEPTH}")
    print(f"{'case':<10}{'feed() us/exchange':>20}{'baseline us/exchange':>22}{'ratio':>8}")
    for name, requests, responses, count, loops in cases:
        ours = best_of(parser_loop(requests, responses, count), loops, args.rounds) / count
        base = best_of(baseline_loop(requests, responses, count), loops, args.rounds) / count
        print(f"{name:<10}{ours * 1e6:>20.2f}{base * 1e6:>22.2f}{ours / base:>7.1f}x")


if __name__ == "__main__":
    main()
