"""PostgresConnection fed real psql and psycopg 3 streams: split, truncated, garbled, resumed."""

from __future__ import annotations

import random

import pytest

from alaz.protocols.pair import EGRESS, INGRESS, STATUS_ERROR, STATUS_OK
from alaz.protocols.postgres import PostgresConnection

from .fixtures import Replay, garbage, load, records, replay, shape

PSQL = load("postgres_psql")
PSYCOPG = load("postgres_psycopg")
AUTH = load("postgres_auth")
TLS = load("postgres_tls")

S, X, T = "SIMPLE_QUERY", "EXTENDED_QUERY", "CLOSE_OR_TERMINATE"
BIG_SELECT = "SELECT n, repeat('x', 40) AS pad FROM generate_series(1, 1000) AS n;"
PSQL_EXPECTED = [
    (
        S,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric);",
        1,
        "CREATE TABLE",
    ),
    (S, "INSERT INTO items VALUES (1, 'apple', 1.50), (2, 'pear', 2.25);", 1, "INSERT 0 2"),
    (S, "SELECT id, name, price FROM items ORDER BY id;", 1, "SELECT 2"),
    (S, "SELECT 1 AS a ; SELECT 'two' AS b;", 1, "SELECT 1"),
    (S, "SELECT * FROM missing_table;", 2, None),
    (S, "COPY items (id, name, price) FROM STDIN;", 1, "COPY 2"),
    (S, "COPY items TO STDOUT;", 1, "COPY 4"),
    (S, BIG_SELECT, 1, "SELECT 1000"),
    (S, "BEGIN;", 1, "BEGIN"),
    (S, "UPDATE items SET price = price * 2 WHERE id = 1;", 1, "UPDATE 1"),
    (S, "COMMIT;", 1, "COMMIT"),
    (T, "TERMINATE", 1, None),
]

INSERT = "INSERT INTO accounts VALUES ($1, $2, $3)"
BALANCE = "SELECT balance FROM accounts WHERE id = $1"
ADD = "UPDATE accounts SET balance = balance + $1 WHERE id = $2"
MD5 = "SELECT n, md5(n::text) FROM generate_series(1, $1) AS n"
PSYCOPG_EXPECTED = [
    (S, "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance int)", 1),
    (X, INSERT, 1),
    (X, "SELECT owner, balance FROM accounts WHERE id = $1", 1),
    (X, f"PREPARE _pg3_0 AS {BALANCE}", 1),  # prepare=True: Parse + Sync, no Execute
    *[(X, BALANCE, 1)] * 3,  # Bind/Execute of the named statement
    *[(X, INSERT, 1)] * 20,  # the pipeline: 20 inserts ...
    (X, "SELECT count(*) FROM accounts", 1),  # ... and a select before one Sync
    (X, ADD, 1),
    (X, ADD, 1),
    (X, INSERT, 2),  # the duplicate key; the UPDATE after it was skipped by the server
    (X, "SELEC owner FROM accounts WHERE id = $1", 2),  # ErrorResponse answers the Parse
    (X, MD5, 1),
    (S, "COPY accounts (id, owner, balance) FROM STDIN", 1),
    (S, "COPY (SELECT id FROM accounts ORDER BY id) TO STDOUT", 1),
    (T, "TERMINATE", 1),
]


def run(conn: list[tuple[str, bytes]], role: str = "client", **how: object) -> Replay:
    return replay(PostgresConnection, conn, role, **how)


def cut_short(got: tuple[object, ...], known: list[tuple[object, ...]]) -> bool:
    """A pair whose SQL the capture cut ("..." appended) that matches a real one's start."""
    method, path, status = got
    assert isinstance(path, str) and path.endswith("...")
    return any(k[0] == method and k[2] == status and str(k[1]).startswith(path[:-3]) for k in known)


# -- exact exchanges -------------------------------------------------------------------------------


def test_psql_simple_queries_copy_errors_and_terminate() -> None:
    r = run(PSQL.connections[0])
    assert shape(r.pairs, "tag") == PSQL_EXPECTED
    error = r.pairs[4].extra or {}
    assert error["sqlstate"] == "42P01"
    assert error["error"] == 'relation "missing_table" does not exist'
    assert error["severity"] == "ERROR"
    assert all(p.extra and p.extra["database"] == "shop" for p in r.pairs)
    assert all(p.extra and p.extra["user"] == "postgres" for p in r.pairs)
    assert r.parser.stats()["errors"] == 0
    assert r.parser.stats()["pending"] == 0


def test_psql_sizes_and_times_come_from_the_records() -> None:
    conn = PSQL.connections[0]
    r = run(conn)
    big = r.pairs[7]
    (big_resp,) = [c for d, c in conn if d == "s" and c.startswith(b"T\x00\x00\x000")]
    assert big.resp_bytes == len(big_resp)  # 1000 DataRows in one record
    assert (big.extra or {})["rows"] == 1000
    copy_in = r.pairs[5]
    assert copy_in.req_bytes == 46 + 36  # the Query, then CopyData + CopyDone
    assert copy_in.req_first_enter_ns < copy_in.req_last_exit_ns
    for p in r.pairs[:-1]:
        assert p.req_first_enter_ns < p.req_first_exit_ns <= p.resp_first_enter_ns
        assert p.resp_first_exit_ns <= p.resp_last_exit_ns
    terminate = r.pairs[-1]
    assert (terminate.req_bytes, terminate.resp_bytes) == (5, 0)
    assert terminate.resp_first_exit_ns == terminate.req_last_exit_ns


def test_psycopg_extended_protocol_pipelines_and_named_statements() -> None:
    r = run(PSYCOPG.connections[0])
    assert shape(r.pairs) == PSYCOPG_EXPECTED
    assert [(p.extra or {}).get("statement") for p in r.pairs[3:7]] == ["_pg3_0"] * 4
    dup = r.pairs[30].extra or {}
    assert (dup["sqlstate"], dup["error"]) == (
        "23505",
        'duplicate key value violates unique constraint "accounts_pkey"',
    )
    assert (r.pairs[31].extra or {})["sqlstate"] == "42601"
    assert (r.pairs[32].extra or {})["rows"] == 1000
    stats = r.parser.stats()
    assert stats["skipped_after_error"] == 1
    assert stats["errors"] == stats["unanswered_requests"] == stats["mismatches"] == 0


def test_pipeline_pairs_each_execute_with_its_own_answer() -> None:
    r = run(PSYCOPG.connections[0])
    pipeline = r.pairs[7:28]
    assert [(p.extra or {}).get("tag") for p in pipeline] == ["INSERT 0 1"] * 20 + ["SELECT 1"]
    # one write per statement or several, one read for all answers: all end in that read
    assert len({p.resp_last_exit_ns for p in pipeline}) == 1
    starts = [p.req_first_enter_ns for p in pipeline]
    assert starts == sorted(starts) and len(set(starts)) > 1
    # the last group before Sync includes the Sync and ends at ReadyForQuery
    assert pipeline[-1].req_bytes == 70 + 5 and pipeline[0].req_bytes == 120


def test_server_side_sees_the_same_exchanges() -> None:
    for capture in (PSQL, PSYCOPG):
        conn = capture.connections[0]
        assert shape(run(conn, "server").pairs) == shape(run(conn).pairs)


# -- splitting, truncation, garbage, loss ----------------------------------------------------------


@pytest.mark.parametrize("pieces", [1, 2, 3, 5, 7, 64, 1024])
def test_every_split_gives_the_same_exchanges_and_sizes(pieces: int) -> None:
    for capture in (PSQL, PSYCOPG):
        conn = capture.connections[0]
        whole = run(conn).pairs
        cut = run(conn, pieces=pieces).pairs
        assert shape(cut, "tag", "rows") == shape(whole, "tag", "rows")
        assert [(p.req_bytes, p.resp_bytes) for p in cut] == [
            (p.req_bytes, p.resp_bytes) for p in whole
        ]


@pytest.mark.parametrize("seed", range(5))
def test_random_splits_give_the_same_exchanges(seed: int) -> None:
    conn = PSYCOPG.connections[0]
    cut = run(conn, rng=random.Random(seed)).pairs
    assert shape(cut, "sqlstate") == shape(run(conn).pairs, "sqlstate")


def test_kernel_capture_of_1k_keeps_every_exchange_and_true_sizes() -> None:
    conn = PSQL.connections[0]
    whole = run(conn).pairs
    r = run(conn, cap=1024)
    assert shape(r.pairs) == shape(whole)
    assert [p.resp_bytes for p in r.pairs] == [p.resp_bytes for p in whole]
    big = r.pairs[7]
    assert (big.extra or {})["truncated"] is True  # its rows past 1 KiB were never seen
    assert big.status == STATUS_OK
    assert r.parser.stats()["truncated_responses"] == 1
    assert not any((p.extra or {}).get("truncated") for p in r.pairs if p is not big)


@pytest.mark.parametrize("cap", [5, 16, 64, 200, 1024])
def test_truncation_never_invents_an_exchange(cap: int) -> None:
    for capture in (PSQL, PSYCOPG, AUTH):
        for conn in capture.connections:
            known = shape(run(conn).pairs)
            r = run(conn, cap=cap)
            assert r.parser.stats()["errors"] == 0
            for got in shape(r.pairs):
                assert got in known or cut_short(got, known)


def test_big_result_cut_by_capture_is_truncated_but_sized() -> None:
    conn = PSYCOPG.connections[0]
    r = run(conn, cap=1024)
    (md5,) = [p for p in r.pairs if p.path == MD5]
    assert md5.status == STATUS_OK and (md5.extra or {})["truncated"] is True
    assert md5.resp_bytes == next(p for p in run(conn).pairs if p.path == MD5).resp_bytes


def test_garbage_then_a_real_stream_resyncs() -> None:
    for seed in range(20):
        r = Replay(PostgresConnection("client"))
        r.feed(EGRESS, garbage(seed, 300))
        r.feed(INGRESS, garbage(seed + 100, 300))
        r.run(records(PSQL.connections[0]))
        assert shape(r.pairs, "tag") == PSQL_EXPECTED, seed
        assert r.parser.stats()["errors"] == 0


def test_garbage_inside_a_stream_is_survived() -> None:
    conn = PSQL.connections[0]
    recs = list(records(conn))
    r = Replay(PostgresConnection("client"))
    r.run(recs[:10])
    r.feed(INGRESS, b"Z\x00\x00\x00\x05I" + garbage(1, 50))  # plausible start, then junk
    r.feed(EGRESS, garbage(2, 40))
    r.run(recs[10:])
    got = shape(r.pairs, "tag")
    assert got[-4:] == PSQL_EXPECTED[-4:]
    assert r.parser.stats()["errors"] == 0


def test_lost_records_resync_on_the_next_request() -> None:
    recs = list(records(PSQL.connections[0]))
    split = next(i for i, (_, d, _) in enumerate(recs) if d.startswith(b"Q\x00\x00\x00\x0bBEGIN"))
    r = Replay(PostgresConnection("client"))
    r.run(recs[: split - 3])
    r.parser.lost()
    r.run(recs[split:])
    assert shape(r.pairs, "tag")[-4:] == PSQL_EXPECTED[-4:]
    assert r.parser.stats()["lost_events"] == 1


def test_joining_mid_stream_names_unknown_statements() -> None:
    recs = list(records(PSYCOPG.connections[0]))
    # start right after the Parse of _pg3_0 and its answer: the statement text was never seen
    parse = next(i for i, (_, d, _) in enumerate(recs) if d.startswith(b"P\x00\x00\x00<_pg3_0"))
    r = Replay(PostgresConnection("client")).run(recs[parse + 2 :])
    assert shape(r.pairs[:3]) == [(X, "EXECUTE _pg3_0 *values*", STATUS_OK)] * 3
    assert (r.pairs[0].extra or {}).get("database") is None  # no startup message seen


# -- startup, authentication, TLS ------------------------------------------------------------------


def test_passwords_never_leave_in_any_field() -> None:
    assert len(AUTH.secrets) == 3
    for conn in AUTH.connections:
        password_msgs = [c[5:-1] for d, c in conn if d == "c" and c[:1] == b"p"]
        assert password_msgs  # cleartext, md5 hash, SCRAM messages
        for role in ("client", "server"):
            for how in ({}, {"pieces": 1}, {"pieces": 9}, {"cap": 16}):
                r = run(conn, role, **how)
                text = repr(r.pairs) + repr(r.parser.stats())
                for secret in AUTH.secrets:
                    assert secret not in text
                for msg in password_msgs:
                    assert msg.decode("latin-1") not in text


def test_authenticated_sessions_know_their_user() -> None:
    users = []
    for conn in AUTH.connections:
        r = run(conn)
        assert shape(r.pairs, "tag") == [
            (S, "BEGIN", 1, "BEGIN"),
            (S, "SELECT current_user", 1, "SELECT 1"),
            (S, "COMMIT", 1, "COMMIT"),
            (T, "TERMINATE", 1, None),
        ]
        users.append({(p.extra or {})["user"] for p in r.pairs})
    assert users == [{"alaz_clear"}, {"alaz_md5"}, {"alaz_scram"}]


def test_tls_after_ssl_request_stops_the_parser() -> None:
    r = run(TLS.connections[0])
    assert r.pairs == []
    stats = r.parser.stats()
    assert stats["tls"] == 1 and stats["errors"] == 0 and stats["desyncs"] == 0


def test_ssl_request_answered_n_continues_in_clear() -> None:
    conn = PSQL.connections[0]
    assert conn[0] == ("c", b"\x00\x00\x00\x08\x04\xd2\x16/") and conn[1] == ("s", b"N")
    assert run(conn).parser.stats()["tls"] == 0


def test_error_in_simple_query_keeps_the_first_error() -> None:
    p = PostgresConnection("client")
    p.feed(EGRESS, b"Q\x00\x00\x00\x0fSELECT 1/0\x00", 16, 1, 2)
    err = b"SERROR\x00C22012\x00Mdivision by zero\x00\x00"
    out = p.feed(
        INGRESS,
        b"E" + (len(err) + 4).to_bytes(4, "big") + err + b"Z\x00\x00\x00\x05I",
        1 + 4 + len(err) + 6,
        3,
        4,
    )
    assert shape(out, "sqlstate", "error") == [
        (S, "SELECT 1/0", STATUS_ERROR, "22012", "division by zero")
    ]


def test_role_must_be_client_or_server() -> None:
    with pytest.raises(ValueError, match="role"):
        PostgresConnection("peer")


def test_close_is_idempotent_and_later_records_are_ignored() -> None:
    r = run(PSQL.connections[0])
    assert r.parser.close(10**12) == []
    assert r.parser.feed(EGRESS, b"Q\x00\x00\x00\x0dSELECT 1/0\x00", 14, 1, 2) == []


# -- the registry (the one module that knows every parser) -----------------------------------------


def test_registry_builds_a_parser_per_protocol_and_role() -> None:
    from alaz.protocols.registry import PROTOCOLS, parser_for

    assert PROTOCOLS == ("HTTP", "POSTGRES", "MYSQL", "REDIS", "AMQP")
    pg = parser_for("POSTGRES", "server")
    assert isinstance(pg, PostgresConnection) and pg.role == "server"
    for name in PROTOCOLS:
        parser = parser_for(name, "client")
        assert parser is not None and list(parser.feed(EGRESS, b"", 0, 1, 2)) == []
        assert parser.stats()["errors"] == 0
    assert parser_for("KAFKA", "client") is None
    with pytest.raises(ValueError, match="role"):
        parser_for("REDIS", "both")
