"""Cost per protocol message of each L7 parser on the recorded fixtures, beside a baseline.

Run: .venv/bin/python bench/bench_protocols.py [--rounds N]

For each fixture the recorded chunks are fed, one record per chunk, to a new parser (client
role), the whole stream over and over; the time is divided by the number of protocol messages
in it (PostgreSQL messages, MySQL packets, RESP top-level values, AMQP frames). Creating the
parsers (once per connection) is left out of the timing.

Baseline, measured in the same run on the same bytes: what any parser must pay at least -- walk
each direction's stream message by message with one length read (struct.unpack_from) per
message, or for RESP one line search per line plus a skip per bulk string. No content, no
pairing, no carry across records. Target: the parser at most 5 us per message.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.unit.fixtures import load  # noqa: E402

from alaz.protocols.pair import EGRESS, INGRESS  # noqa: E402
from alaz.protocols.registry import PARSERS  # noqa: E402

CASES = [
    ("POSTGRES", "postgres_psql"),
    ("POSTGRES", "postgres_psycopg"),
    ("MYSQL", "mysql_pymysql"),
    ("MYSQL", "mysql_prepared"),
    ("REDIS", "redis_redis_py"),
    ("REDIS", "redis_pubsub_resp3"),
    ("AMQP", "amqp_pika"),
]
_BE32 = struct.Struct(">I").unpack_from
_AMQP = struct.Struct(">BHI").unpack_from


def walk_pg(stream: bytes) -> int:
    pos, n, count = 0, len(stream), 0
    while pos < n and stream[pos] == 0:  # startup-phase untyped messages
        pos += _BE32(stream, pos)[0]
        count += 1
    if stream[pos : pos + 1] in (b"N", b"S") and stream[pos + 1 : pos + 2] != b"\0":
        pos += 1  # the one-byte SSL answer
    while pos + 5 <= n:
        if stream[pos] == 0:
            pos += _BE32(stream, pos)[0]
        else:
            pos += 1 + _BE32(stream, pos + 1)[0]
        count += 1
    return count


def walk_mysql(stream: bytes) -> int:
    pos, n, count = 0, len(stream), 0
    while pos + 4 <= n:
        pos += 4 + (stream[pos] | stream[pos + 1] << 8 | stream[pos + 2] << 16)
        count += 1
    return count


def walk_amqp(stream: bytes) -> int:
    pos, n, count = 0, len(stream), 0
    if stream.startswith(b"AMQP"):
        pos, count = 8, 1
    while pos + 7 <= n:
        pos += 8 + _AMQP(stream, pos)[2]
        count += 1
    return count


def walk_resp(stream: bytes) -> int:
    """Top-level RESP values: one find per line, bulk bodies skipped by length."""
    pos, n, count, depth = 0, len(stream), 0, [0]
    find = stream.find
    while pos < n:
        eol = find(b"\r\n", pos)
        t = stream[pos]
        size = int(stream[pos + 1 : eol]) if t in b"$*%~>" else 0
        pos = eol + 2
        if t == 36 and size >= 0:  # $
            pos += size + 2
        if t in b"*%~>" and size > 0:
            depth.append(size * (2 if t == 37 else 1))
            continue
        while len(depth) > 1:
            depth[-1] -= 1
            if depth[-1]:
                break
            depth.pop()
        if len(depth) == 1:
            count += 1
    return count


WALKERS: dict[str, Callable[[bytes], int]] = {
    "POSTGRES": walk_pg,
    "MYSQL": walk_mysql,
    "REDIS": walk_resp,
    "AMQP": walk_amqp,
}


def best_of(fn: Callable[[], Any], rounds: int, setup: Callable[[], None] = lambda: None) -> float:
    best = float("inf")
    for _ in range(rounds):
        setup()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(protocol: str, name: str, rounds: int, loops: int) -> tuple[str, int, int, float, float]:
    capture = load(name)
    cls = PARSERS[protocol]
    conns = [
        [(EGRESS if d == "c" else INGRESS, chunk, len(chunk)) for d, chunk in conn]
        for conn in capture.connections
    ]
    streams = [
        b"".join(c for d, c in conn if d == way) for conn in capture.connections for way in "cs"
    ]
    walker = WALKERS[protocol]
    messages = sum(walker(s) for s in streams)
    pairs = 0
    for conn in conns:
        parser = cls("client")
        for i, (way, data, size) in enumerate(conn):
            pairs += len(parser.feed(way, data, size, i * 10, i * 10 + 5))
        pairs += len(parser.close(10**12))

    def parse() -> None:
        for parser, conn in fresh:
            feed = parser.feed
            t = 0
            for way, data, size in conn:
                feed(way, data, size, t, t + 5)
                t += 10

    def baseline() -> None:
        for _ in range(loops):
            for s in streams:
                walker(s)

    fresh: list[tuple[Any, list[tuple[int, bytes, int]]]] = []

    def new_parsers() -> None:  # a connection's setup is not a per-message cost
        fresh[:] = [(cls("client"), conn) for _ in range(loops) for conn in conns]

    per = loops * messages
    return (
        name,
        messages,
        pairs,
        best_of(parse, rounds, new_parsers) / per * 1e6,
        best_of(baseline, rounds) / per * 1e6,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--loops", type=int, default=20)
    args = ap.parse_args()
    print(
        f"{'fixture':<22}{'messages':>9}{'pairs':>7}{'parser us/msg':>15}"
        f"{'baseline us/msg':>17}{'ratio':>7}"
    )
    worst = 0.0
    for protocol, name in CASES:
        fixture, messages, pairs, parser_us, base_us = bench(
            protocol, name, args.rounds, args.loops
        )
        worst = max(worst, parser_us)
        print(
            f"{fixture:<22}{messages:>9}{pairs:>7}{parser_us:>15.2f}{base_us:>17.2f}"
            f"{parser_us / base_us:>7.1f}"
        )
    print(f"worst parser cost: {worst:.2f} us per message (target <= 5)")
    return 0 if worst <= 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
