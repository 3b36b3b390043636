"""AmqpConnection fed a real pika <-> RabbitMQ stream: publish, deliver, get, several channels."""

from __future__ import annotations

import random
import struct

import pytest

from alaz.protocols.amqp import AmqpConnection
from alaz.protocols.pair import EGRESS, INGRESS, STATUS_ERROR, STATUS_NONE, STATUS_OK

from .fixtures import Replay, garbage, load, records, replay

PIKA = load("amqp_pika")
CONN = PIKA.connections[0]
BIG = 140_000

PUB, DEL, GET = "PUBLISH", "DELIVER", "GET"
EXPECTED = [
    (PUB, 0, "orders", "order.created", 1, 9, False),
    (PUB, 0, "orders", "order.created", 1, 9, False),
    (PUB, 0, "orders", "order.created", 1, BIG, False),  # several body frames
    (PUB, 0, "", "q.mail", 2, 11, False),
    (PUB, 0, "", "q.mail", 2, 11, False),
    (GET, 1, "orders", "order.created", 1, 9, False),
    (GET, 1, "orders", "order.created", 1, 9, False),
    (DEL, 0, "", "q.mail", 2, 11, True),
    (DEL, 0, "", "q.mail", 2, 11, True),
    (DEL, 0, "orders", "order.created", 3, BIG, True),
    (GET, 1, None, None, 1, None, False),  # GetEmpty
    (PUB, 0, "orders", "order.created", 3, 9, False),  # on a confirm channel
    (PUB, 0, "no-such-exchange", "x", 3, 4, False),  # the broker then closes channel 3
]


def run(conn: list[tuple[str, bytes]], role: str = "client", **how: object) -> Replay:
    return replay(AmqpConnection, conn, role, **how)


def brief(pairs: list[object]) -> list[tuple[object, ...]]:
    out = []
    for p in pairs:
        e = p.extra or {}  # type: ignore[attr-defined]
        out.append(
            (
                p.method,
                p.status,
                e.get("exchange"),
                e.get("routing_key"),  # type: ignore[attr-defined]
                e.get("channel"),
                e.get("body_size"),
                p.reversed,
            )
        )  # type: ignore[attr-defined]
    return out


def sizes(pairs: list[object]) -> list[tuple[int, int]]:
    return [(p.req_bytes, p.resp_bytes) for p in pairs]  # type: ignore[attr-defined]


def test_publish_deliver_get_on_several_channels() -> None:
    r = run(CONN)
    assert brief(r.pairs) == EXPECTED
    assert all(p.path == "" and p.protocol == "AMQP" for p in r.pairs)
    assert all((p.extra or {})["vhost"] == "/" for p in r.pairs)
    first_get, second_get, empty = r.pairs[5], r.pairs[6], r.pairs[10]
    assert [(p.extra or {}).get("message_count") for p in (first_get, second_get)] == [2, 1]
    assert (empty.extra or {})["empty"] is True and (empty.extra or {})["queue"] == "q.orders"
    assert empty.resp_bytes == 13  # Basic.GetEmpty
    delivered = r.pairs[7].extra or {}
    assert delivered["delivery_tag"] == 1 and delivered["redelivered"] is False
    assert str(delivered["consumer_tag"]).startswith("ctag")
    stats = r.parser.stats()
    assert (stats["confirms"], stats["channel_errors"]) == (1, 1)
    assert stats["acks"] == 4 and stats["errors"] == stats["desyncs"] == 0


def test_sizes_count_every_frame_and_times_come_from_records() -> None:
    r = run(CONN)
    big_pub, big_del = r.pairs[2], r.pairs[9]
    frame_overhead = 8
    body_frames = -(-BIG // (131072 - frame_overhead))  # frame_max 131072
    assert big_pub.req_bytes == 36 + 22 + BIG + body_frames * frame_overhead
    assert big_del.req_bytes > BIG and big_del.resp_bytes == 0
    for p in r.pairs:
        if p.method != GET:  # one-way: the message's own records
            assert p.resp_bytes == 0 and p.resp_last_exit_ns == p.req_last_exit_ns
        assert p.req_first_enter_ns <= p.req_last_exit_ns
    assert big_pub.req_first_exit_ns < big_pub.req_last_exit_ns  # it spanned several writes


def test_server_side_sees_the_same_messages() -> None:
    assert brief(run(CONN, "server").pairs) == EXPECTED


@pytest.mark.parametrize("pieces", [1, 2, 3, 7, 8, 1024])
def test_every_split_gives_the_same_messages(pieces: int) -> None:
    whole = run(CONN).pairs
    cut = run(CONN, pieces=pieces).pairs
    assert brief(cut) == EXPECTED
    assert sizes(cut) == sizes(whole)


@pytest.mark.parametrize("seed", range(5))
def test_random_splits_give_the_same_messages(seed: int) -> None:
    assert brief(run(CONN, rng=random.Random(seed)).pairs) == EXPECTED


def test_kernel_capture_of_1k_skips_bodies_by_count() -> None:
    r = run(CONN, pieces=65536, cap=1024)
    got = brief(r.pairs)
    assert (PUB, 0, "orders", "order.created", 1, 9, False) in got
    assert (DEL, 0, "orders", "order.created", 3, BIG, True) in got  # body skipped by count
    for item in got:
        assert item in EXPECTED
    assert r.parser.stats()["errors"] == 0


@pytest.mark.parametrize("cap", [4, 7, 12, 100, 1024])
def test_truncation_never_invents_a_message(cap: int) -> None:
    r = run(CONN, cap=cap)
    assert r.parser.stats()["errors"] == 0
    for item in brief(r.pairs):
        assert item in EXPECTED


def test_credentials_never_leave() -> None:
    (secret,) = PIKA.secrets
    (start_ok,) = [c for d, c in CONN if d == "c" and c[7:11] == b"\x00\x0a\x00\x0b"]
    assert secret.encode() in start_ok  # SASL PLAIN: \0user\0password
    for role in ("client", "server"):
        for how in ({}, {"pieces": 5}, {"cap": 64}):
            r = run(CONN, role, **how)
            assert secret not in repr(r.pairs) + repr(r.parser.stats())


def test_garbage_then_a_real_stream_resyncs() -> None:
    for seed in range(10):
        r = Replay(AmqpConnection("client"))
        r.feed(EGRESS, garbage(seed, 64))
        r.feed(INGRESS, garbage(seed + 7, 64))
        r.run(records(CONN))
        assert brief(r.pairs) == EXPECTED, seed


def test_heartbeats_between_frames_are_ignored() -> None:
    beat = b"\x08\x00\x00\x00\x00\x00\x00\xce"
    # before every record that starts with a frame (not inside a frame split across reads)
    conn = [
        (d, beat + c) if i > 2 and c[0] in (1, 2, 3, 8) else (d, c) for i, (d, c) in enumerate(CONN)
    ]
    beats = sum(1 for a, b in zip(conn, CONN, strict=True) if a != b)
    assert beats > 40
    r = run(conn)
    assert brief(r.pairs) == EXPECTED
    assert r.parser.stats()["heartbeats"] == beats


def test_lost_records_drop_partial_messages_then_resync() -> None:
    recs = list(records(CONN))
    big = next(i for i, (way, _, t) in enumerate(recs) if t > 60000 and way == EGRESS)
    r = Replay(AmqpConnection("client"))
    r.run(recs[: big + 1])  # the big publish is being assembled ...
    r.parser.lost()  # ... and part of it is lost
    r.run(recs[big + 2 :])
    got = brief(r.pairs)
    assert (PUB, 0, "orders", "order.created", 1, BIG, False) not in got
    assert got[-3:] == EXPECTED[-3:]


def method_frame(channel: int, cls: int, method: int, args: bytes) -> bytes:
    payload = struct.pack(">HH", cls, method) + args
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


def test_get_refused_by_channel_close_is_an_error() -> None:
    get = method_frame(5, 60, 70, b"\x00\x00\x07missing\x00")
    text = b"NOT_FOUND - no queue 'missing'"
    close = method_frame(5, 20, 40, b"\x01\x94" + bytes([len(text)]) + text + b"\x00\x3c\x00\x46")
    p = AmqpConnection("client")
    p.feed(EGRESS, b"AMQP\x00\x00\x09\x01", 8, 1, 2)
    p.feed(EGRESS, get, len(get), 3, 4)
    (pair,) = p.feed(INGRESS, close, len(close), 5, 6)
    assert (pair.method, pair.status) == (GET, STATUS_ERROR)
    assert pair.extra == {
        "queue": "missing",
        "channel": 5,
        "reply_code": 404,
        "error": "NOT_FOUND - no queue 'missing'",
    }
    assert STATUS_OK != STATUS_NONE  # GET pairs carry a real status, PUBLISH/DELIVER do not


def test_role_must_be_client_or_server() -> None:
    with pytest.raises(ValueError, match="role"):
        AmqpConnection("broker")
