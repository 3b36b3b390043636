"""RedisConnection fed real redis-cli and redis-py streams (RESP2, RESP3, pipelines, pub/sub)."""

from __future__ import annotations

import random

import pytest

from alaz.protocols.pair import EGRESS, INGRESS, STATUS_ERROR, STATUS_OK
from alaz.protocols.redis import RedisConnection

from .fixtures import Replay, garbage, load, records, replay

PY = load("redis_redis_py")
CLI = load("redis_cli")
SUB2 = load("redis_pubsub_resp2")
SUB3 = load("redis_pubsub_resp3")
ALL = (PY, CLI, SUB2, SUB3)

C, PUSH = "COMMAND", "PUSHED_EVENT"
SETINFO_ERR = "ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."
PY_EXPECTED = [
    (C, "CLIENT", None, 2),
    (C, "CLIENT", None, 2),
    (C, "SET", "user:1", 1),
    (C, "GET", "user:1", 1),
    (C, "GET", "missing", 1),
    (C, "INCRBY", "counter", 1),
    (C, "RPUSH", "queue", 1),
    (C, "LRANGE", "queue", 1),
    (C, "HSET", "h:1", 1),
    (C, "HGETALL", "h:1", 1),
    (C, "LPUSH", "user:1", 2),  # WRONGTYPE
    (C, "SET", "big", 1),
    (C, "GET", "big", 1),
    *[(C, "SET", f"k:{i}", 1) for i in range(100)],  # one pipelined write
    (C, "MULTI", None, 1),
    (C, "INCRBY", "counter", 1),  # +QUEUED
    (C, "GET", "counter", 1),
    (C, "LPUSH", "queue", 1),
    (C, "EXEC", None, 1),
    (C, "NOSUCHCOMMAND", "arg", 2),
]
SUB_EXPECTED = [
    (C, "SUBSCRIBE", "news", 1),
    (C, "PSUBSCRIBE", "ev.*", 1),
    (PUSH, None, "news", 1),
    (PUSH, None, "ev.created", 1),
    (PUSH, None, "alerts", 1),
    (C, "UNSUBSCRIBE", "news", 1),
]
PUB_EXPECTED = [
    (C, "PUBLISH", "news", 1),
    (C, "PUBLISH", "ev.created", 1),
    (C, "PUBLISH", "alerts", 1),
    (C, "SET", "after", 1),
]


def run(conn: list[tuple[str, bytes]], role: str = "client", **how: object) -> Replay:
    return replay(RedisConnection, conn, role, **how)


def brief(pairs: list[object]) -> list[tuple[object, ...]]:
    """(method, command, key or channel, status) per pair."""
    out = []
    for p in pairs:
        extra = p.extra or {}  # type: ignore[attr-defined]
        name = extra.get("key", extra.get("channel"))
        out.append((p.method, extra.get("command"), name, p.status))  # type: ignore[attr-defined]
    return out


def full(pairs: list[object]) -> list[tuple[object, ...]]:
    return [
        (*b, p.path, p.req_bytes, p.resp_bytes) for b, p in zip(brief(pairs), pairs, strict=True)
    ]  # type: ignore[attr-defined]


# -- exact exchanges -------------------------------------------------------------------------------


def test_redis_py_commands_pipeline_and_transaction() -> None:
    r = run(PY.connections[0])
    assert brief(r.pairs) == PY_EXPECTED
    assert r.pairs[0].extra == {"command": "CLIENT", "error": SETINFO_ERR}
    assert (r.pairs[10].extra or {})["error"].startswith("WRONGTYPE Operation")
    assert r.pairs[2].path == "*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$3\r\nada\r\n"
    big_set, big_get = r.pairs[11], r.pairs[12]
    assert big_set.req_bytes == len("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$20000\r\n") + 20002
    assert len(big_set.path) == 1024 and big_set.path.endswith("v" * 100)  # bounded, as Go
    assert big_get.resp_bytes == len("$20000\r\n") + 20002
    stats = r.parser.stats()
    assert stats["pending"] == stats["orphans"] == stats["errors"] == 0


def test_pipeline_of_100_pairs_in_order_from_one_write() -> None:
    r = run(PY.connections[0])
    pipeline = r.pairs[13:113]
    assert [p.path for p in pipeline] == [
        f"*3\r\n$3\r\nSET\r\n${len(f'k:{i}')}\r\nk:{i}\r\n${len(str(i))}\r\n{i}\r\n"
        for i in range(100)
    ]
    assert len({(p.req_first_enter_ns, p.resp_first_enter_ns) for p in pipeline}) == 1
    assert all(p.resp_bytes == len(b"+OK\r\n") for p in pipeline)


def test_transaction_replies_pair_with_queued_commands() -> None:
    r = run(PY.connections[0])
    multi, incr, get, lpush, exec_ = r.pairs[113:118]
    assert [p.resp_bytes for p in (multi, incr, get, lpush)] == [5, 9, 9, 9]  # +OK, +QUEUED
    assert exec_.resp_bytes == len(b"*3\r\n:2\r\n$1\r\n2\r\n:5\r\n")


def test_redis_cli_ping_auth_and_info() -> None:
    got = [full(run(conn).pairs) for conn in CLI.connections]
    auth = "*3\r\n$4\r\nAUTH\r\n$4\r\n****\r\n$4\r\n****\r\n"
    assert got == [
        [("PING", "PING", None, 1, "*1\r\n$4\r\nPING\r\n", 14, 7)],
        [
            (
                C,
                "SET",
                "greeting",
                1,
                "*3\r\n$3\r\nSET\r\n$8\r\ngreeting\r\n$11\r\nhello world\r\n",
                45,
                5,
            )
        ],
        [(C, "GET", "greeting", 1, "*2\r\n$3\r\nGET\r\n$8\r\ngreeting\r\n", 27, 18)],
        [(C, "AUTH", None, 1, auth, 48, 5)],
        [(C, "AUTH", None, 2, auth, 54, 64)],
        [(C, "DEL", "greeting", 1, "*2\r\n$3\r\nDEL\r\n$8\r\ngreeting\r\n", 27, 4)],
        [
            (C, "AUTH", None, 1, auth, 48, 5),
            (C, "INFO", None, 1, "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n", 26, 587),
        ],
    ]


@pytest.mark.parametrize("capture", [SUB2, SUB3], ids=["resp2", "resp3"])
def test_pubsub_pushes_are_reversed_events(capture: object) -> None:
    sub, pub = capture.connections  # type: ignore[attr-defined]
    r = run(sub)
    pairs = [p for p in r.pairs if (p.extra or {}).get("command") not in ("CLIENT", "HELLO")]
    assert brief(pairs) == SUB_EXPECTED
    subscribe, _, news, created, _, _ = pairs
    assert subscribe.resp_bytes == 68  # both confirmations answer the one SUBSCRIBE
    assert [p.reversed for p in pairs] == [False, False, True, True, True, False]
    kind = ">" if capture is SUB3 else "*"
    assert news.path == f"{kind}3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    assert created.extra == {"kind": "pmessage", "pattern": "ev.*", "channel": "ev.created"}
    assert (news.req_bytes, news.resp_bytes) == (38, 0)
    assert news.resp_first_exit_ns == news.req_last_exit_ns  # one-way: the read's own time
    assert r.parser.stats()["pushes"] == 3
    assert brief([p for p in run(pub).pairs if p.extra["command"] != "CLIENT"])[-4:] == (
        PUB_EXPECTED
    )


def test_server_side_sees_the_same_exchanges() -> None:
    for capture in ALL:
        for conn in capture.connections:
            assert full(run(conn, "server").pairs) == full(run(conn).pairs)


# -- splitting, truncation, garbage, loss ----------------------------------------------------------


@pytest.mark.parametrize("pieces", [1, 2, 3, 5, 7, 64, 1024])
def test_every_split_gives_the_same_exchanges_and_sizes(pieces: int) -> None:
    for capture in ALL:
        for conn in capture.connections:
            assert full(run(conn, pieces=pieces).pairs) == full(run(conn).pairs)


@pytest.mark.parametrize("seed", range(5))
def test_random_splits_give_the_same_exchanges(seed: int) -> None:
    conn = PY.connections[0]
    assert full(run(conn, rng=random.Random(seed)).pairs) == full(run(conn).pairs)


def test_kernel_capture_of_1k_skips_big_values_by_count() -> None:
    r = run(PY.connections[0], cap=1024)
    whole = run(PY.connections[0]).pairs
    # the 100-command write is cut at 1 KiB: its first 33 commands pair, the rest is lost
    assert brief(r.pairs) == brief(whole[:46] + whole[113:])
    assert full(r.pairs[11:13]) == full(whole[11:13])  # 20 kB SET / GET skipped by count
    assert r.parser.stats()["orphans"] == 67


@pytest.mark.parametrize("cap", [3, 10, 30, 100, 1024])
def test_truncation_never_invents_an_exchange(cap: int) -> None:
    for capture in ALL:
        for conn in capture.connections:
            known = brief(run(conn).pairs)
            r = run(conn, cap=cap)
            assert r.parser.stats()["errors"] == 0
            for got, pair in zip(brief(r.pairs), r.pairs, strict=True):
                if pair.path.endswith("..."):  # an argument was cut: fewer facts, none made up
                    assert any(got[0] in (k[0], C) and got[3] == k[3] for k in known)
                    assert got[1] is None or any(got[1] == k[1] for k in known)
                else:
                    assert got in known


def test_garbage_then_a_real_stream_resyncs() -> None:
    for seed in range(20):
        r = Replay(RedisConnection("client"))
        r.feed(EGRESS, garbage(seed, 100))
        r.feed(INGRESS, garbage(seed + 1, 100))
        r.run(records(PY.connections[0]))
        assert brief(r.pairs) == PY_EXPECTED, seed


def test_lost_records_resync() -> None:
    recs = list(records(PY.connections[0]))
    r = Replay(RedisConnection("client"))
    r.run(recs[:7])  # up to GET user:1, whose reply is lost
    r.parser.lost()
    r.run(recs[8:])
    assert brief(r.pairs) == PY_EXPECTED[:3] + PY_EXPECTED[4:]
    assert r.parser.stats()["lost_events"] == 1


# -- credentials -----------------------------------------------------------------------------------


def test_passwords_never_leave() -> None:
    for capture in (CLI, SUB3):
        (secret,) = capture.secrets
        for conn in capture.connections:
            for role in ("client", "server"):
                for how in ({}, {"pieces": 1}, {"pieces": 11}, {"cap": 40}):
                    r = run(conn, role, **how)
                    assert secret not in repr(r.pairs) + repr(r.parser.stats())


@pytest.mark.parametrize(
    ("args", "path_args"),
    [
        ([b"AUTH", b"s3cr3t"], [b"AUTH", b"****"]),
        ([b"HELLO", b"3", b"AUTH", b"bob", b"s3cr3t"], [b"HELLO", b"3", b"AUTH", b"****", b"****"]),
        (
            [b"CONFIG", b"SET", b"requirepass", b"s3cr3t"],
            [b"CONFIG", b"SET", b"requirepass", b"****"],
        ),
        (
            [b"ACL", b"SETUSER", b"bob", b"on", b">s3cr3t", b"~*"],
            [b"ACL", b"SETUSER", b"bob", b"on", b"****", b"~*"],
        ),
        (
            [b"MIGRATE", b"h", b"6379", b"k", b"0", b"5000", b"AUTH2", b"bob", b"s3cr3t"],
            [b"MIGRATE", b"h", b"6379", b"k", b"0", b"5000", b"AUTH2", b"****", b"****"],
        ),
        ([b"HELLO", *[b"x"] * 20, b"AUTH", b"bob", b"s3cr3t"], [b"HELLO", b"****"]),
    ],
)
def test_secret_arguments_are_masked(args: list[bytes], path_args: list[bytes]) -> None:
    cmd = resp(args)
    for how in ({}, {"pieces": 2}):
        r = run([("c", cmd), ("s", b"+OK\r\n")], **how)
        (pair,) = r.pairs
        assert pair.path == resp(path_args).decode()
        assert "s3cr3t" not in repr(pair)
        assert pair.req_bytes == len(cmd)


def resp(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


# -- RESP corners ----------------------------------------------------------------------------------


def test_inline_commands_and_resp3_types() -> None:
    conn = [
        ("c", b"PING\r\n"),
        ("s", b"+PONG\r\n"),
        ("c", resp([b"HGETALL", b"h"])),
        ("s", b"|1\r\n+ttl\r\n:10\r\n%2\r\n+a\r\n,1.5\r\n+b\r\n#t\r\n"),  # attribute, then a map
        ("c", resp([b"GET", b"nope"])),
        ("s", b"_\r\n"),
        ("c", resp([b"EVAL", b"return 1", b"0"])),
        ("s", b"!21\r\nSYNTAX invalid syntax\r\n"),
        ("c", resp([b"SMEMBERS", b"s"])),
        ("s", b"~2\r\n*1\r\n$1\r\nx\r\n=7\r\ntxt:abc\r\n"),
    ]
    r = run(conn)
    assert brief(r.pairs) == [
        ("PING", "PING", None, STATUS_OK),
        (C, "HGETALL", "h", STATUS_OK),
        (C, "GET", "nope", STATUS_OK),
        (C, "EVAL", None, STATUS_ERROR),
        (C, "SMEMBERS", "s", STATUS_OK),
    ]
    assert r.pairs[0].path == "PING\r\n"
    assert r.pairs[1].resp_bytes == len(conn[3][1])
    assert (r.pairs[3].extra or {})["error"] == "SYNTAX invalid syntax"


def test_big_value_beyond_capture_is_skipped_by_count() -> None:
    value = b"x" * 100_000
    reply = b"$100000\r\n" + value + b"\r\n"
    p = RedisConnection("client")
    p.feed(EGRESS, resp([b"GET", b"big"]) + resp([b"GET", b"small"]), 44, 1, 2)
    out = p.feed(INGRESS, reply[:1024], len(reply), 3, 4)  # the kernel captured 1 KiB
    out += p.feed(INGRESS, b"$2\r\nok\r\n", 8, 5, 6)
    assert [(x.path, x.resp_bytes) for x in out] == [
        ("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n", len(reply)),
        ("*2\r\n$3\r\nGET\r\n$5\r\nsmall\r\n", 8),
    ]


def test_unsubscribe_everything_absorbs_the_extra_confirmations() -> None:
    conn = [
        ("c", resp([b"SUBSCRIBE", b"a", b"b"])),
        (
            "s",
            b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
        ),
        ("c", resp([b"UNSUBSCRIBE"])),
        ("s", b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n"),
        ("s", b">3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"),
        ("c", resp([b"GET", b"k"])),
        ("s", b"$1\r\nv\r\n"),
    ]
    r = run(conn)
    assert brief(r.pairs) == [
        (C, "SUBSCRIBE", "a", 1),
        (C, "UNSUBSCRIBE", None, 1),
        (C, "GET", "k", 1),
    ]
    assert r.parser.stats()["absorbed_confirms"] == 1


def test_role_must_be_client_or_server() -> None:
    with pytest.raises(ValueError, match="role"):
        RedisConnection("proxy")
