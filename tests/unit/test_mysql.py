"""MySQLConnection fed real MariaDB streams: mariadb CLI, PyMySQL, mysql-connector, no-EOF mode."""

from __future__ import annotations

import random
import re
import struct

import pytest

from alaz.protocols.mysql import MySQLConnection
from alaz.protocols.pair import EGRESS, INGRESS, STATUS_ERROR, STATUS_OK

from .fixtures import Replay, garbage, load, records, replay, shape

CLI = load("mysql_cli")
PYMYSQL = load("mysql_pymysql")
PREPARED = load("mysql_prepared")
NO_EOF = load("mysql_deprecate_eof")
ALL = (CLI, PYMYSQL, PREPARED, NO_EOF)

Q, P, E, C = "TEXT_QUERY", "PREPARE_STMT", "EXEC_STMT", "STMT_CLOSE"
BIG_CLI = "SELECT seq, REPEAT('x', 40) AS pad FROM seq_1_to_1000"
CLI_EXPECTED = [
    (
        Q,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, price DECIMAL(8,2))",
        1,
        None,
        0,
    ),
    (Q, "INSERT INTO items VALUES (1, 'apple', 1.50), (2, 'pear', 2.25)", 1, None, 2),
    (Q, "SELECT id, name, price FROM items ORDER BY id", 1, 2, None),
    (Q, "SELECT * FROM missing_table", 2, None, None),
    (Q, "UPDATE items SET price = price * 2 WHERE id = 1", 1, None, 1),
    (Q, BIG_CLI, 1, 1000, None),
]
PYMYSQL_EXPECTED = [
    (Q, "SET NAMES utf8mb4", 1, None, 0),
    (Q, "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(40), balance INT)", 1, None, 0),
    (Q, "INSERT INTO accounts VALUES (1, 'ada', 100)", 1, None, 1),
    (Q, "SELECT owner, balance FROM accounts WHERE id = 1", 1, 1, None),
    (Q, "SELECT 1 AS a; SELECT 'two' AS b, 3 AS c", 1, 2, None),  # two result sets
    (Q, "INSERT INTO accounts VALUES (1, 'dup', 0)", 2, None, None),
    (Q, "SELECT seq, MD5(seq) FROM seq_1_to_1000", 1, 1000, None),
]  # COM_PING, COM_INIT_DB and COM_QUIT are paired but not emitted
CREATE = "CREATE TABLE IF NOT EXISTS stock (id INT PRIMARY KEY, sku VARCHAR(20), qty INT)"
INSERT = "INSERT INTO stock VALUES (?, ?, ?)"
SELECT = "SELECT sku, qty FROM stock WHERE qty >= ?"
PREPARED_EXPECTED = [
    (Q, "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'", 1, None),
    (Q, "SET @@session.autocommit = ON", 1, None),
    (P, CREATE, 1, 1),
    (E, CREATE, 1, 1),
    (C, "CLOSE STMT 1 ", 1, 1),
    (P, INSERT, 1, 2),
    *[(E, INSERT, 1, 2)] * 3,
    (C, "CLOSE STMT 2 ", 1, 2),
    (P, SELECT, 1, 3),
    (E, SELECT, 1, 3),
    (C, "CLOSE STMT 3 ", 1, 3),
    (P, INSERT, 1, 4),
    (E, INSERT, 2, 4),
    (C, "CLOSE STMT 4 ", 1, 4),
]
NO_EOF_EXPECTED = [
    (Q, "SET NAMES utf8mb4", 1, None),
    (Q, "CREATE TABLE fruits (id INT PRIMARY KEY, name VARCHAR(20))", 1, None),
    (Q, "INSERT INTO fruits VALUES (1, 'apple'), (2, 'pear'), (3, 'plum')", 1, None),
    (Q, "SELECT id, name FROM fruits ORDER BY id", 1, 3),
    (Q, "SELECT 1 AS a; SELECT name FROM fruits WHERE id = 2", 1, 2),
    (Q, "SELECT nope FROM fruits", 2, None),
    (P, "SELECT name FROM fruits WHERE id > ?", 1, None),
    (E, "SELECT name FROM fruits WHERE id > ?", 1, 2),
    (C, "CLOSE STMT 5 ", 1, None),
]


def run(conn: list[tuple[str, bytes]], role: str = "client", **how: object) -> Replay:
    return replay(MySQLConnection, conn, role, **how)


def expected(capture: object) -> list[tuple[object, ...]]:
    return shape(run(capture.connections[0]).pairs)  # type: ignore[attr-defined]


# -- exact exchanges -------------------------------------------------------------------------------


def test_cli_queries_results_and_errors() -> None:
    r = run(CLI.connections[0])
    assert shape(r.pairs, "rows", "affected_rows") == CLI_EXPECTED
    error = r.pairs[3].extra or {}
    assert (error["error_code"], error["sqlstate"]) == (1146, "42S02")
    assert error["error"] == "Table 't.missing_table' doesn't exist"
    assert all((p.extra or {}).get("user") == "test" for p in r.pairs)
    assert all((p.extra or {}).get("database") == "t" for p in r.pairs)
    assert r.parser.stats()["mismatches"] == r.parser.stats()["errors"] == 0


def test_pymysql_multi_results_errors_and_silent_commands() -> None:
    r = run(PYMYSQL.connections[0])
    assert shape(r.pairs, "rows", "affected_rows") == PYMYSQL_EXPECTED
    dup = r.pairs[5].extra or {}
    assert (dup["error_code"], dup["sqlstate"]) == (1062, "23000")
    (big_resp,) = [c for d, c in PYMYSQL.connections[0] if d == "s" and len(c) > 40000]
    assert r.pairs[-1].resp_bytes == len(big_resp)
    stats = r.parser.stats()
    assert stats["pending"] == stats["unanswered_requests"] == stats["orphans"] == 0


def test_prepared_statements_are_remembered_by_id() -> None:
    r = run(PREPARED.connections[0])
    assert shape(r.pairs, "statement_id") == PREPARED_EXPECTED
    assert (r.pairs[-2].extra or {})["error_code"] == 1062
    close = r.pairs[4]
    assert (close.req_bytes, close.resp_bytes) == (9, 0)
    assert close.resp_first_exit_ns == close.req_last_exit_ns
    assert (r.pairs[11].extra or {})["rows"] == 2  # the binary result set
    assert r.parser.stats()["statements"] == 0  # every one was closed


def test_deprecate_eof_results_and_prepare() -> None:
    r = run(NO_EOF.connections[0])
    assert shape(r.pairs, "rows") == NO_EOF_EXPECTED
    assert r.parser._deprecate_eof is True  # negotiated in the handshake
    assert r.parser.stats()["mismatches"] == 0


@pytest.mark.parametrize("skip", [3, 11, 13])
def test_deprecate_eof_is_learned_when_the_handshake_was_missed(skip: int) -> None:
    recs = list(records(NO_EOF.connections[0]))
    r = Replay(MySQLConnection("client")).run(recs[skip:]).close()
    assert r.parser._deprecate_eof is True
    got = shape(r.pairs, "rows")
    assert got == NO_EOF_EXPECTED[len(NO_EOF_EXPECTED) - len(got) :]
    assert got[-3:] == NO_EOF_EXPECTED[-3:]
    assert r.parser.stats()["mismatches"] == 0


def test_server_side_sees_the_same_exchanges() -> None:
    for capture in ALL:
        conn = capture.connections[0]
        assert shape(run(conn, "server").pairs) == shape(run(conn).pairs)


# -- splitting, truncation, garbage, loss ----------------------------------------------------------


@pytest.mark.parametrize("pieces", [1, 2, 3, 4, 5, 7, 1024])
def test_every_split_gives_the_same_exchanges_and_sizes(pieces: int) -> None:
    for capture in ALL:
        conn = capture.connections[0]
        whole, cut = run(conn).pairs, run(conn, pieces=pieces).pairs
        assert shape(cut, "rows", "error") == shape(whole, "rows", "error")
        assert [(p.req_bytes, p.resp_bytes) for p in cut] == [
            (p.req_bytes, p.resp_bytes) for p in whole
        ]


@pytest.mark.parametrize("seed", range(5))
def test_random_splits_give_the_same_exchanges(seed: int) -> None:
    for capture in ALL:
        conn = capture.connections[0]
        assert shape(run(conn, rng=random.Random(seed)).pairs) == shape(run(conn).pairs)


def test_kernel_capture_of_1k_keeps_every_exchange_and_true_sizes() -> None:
    for capture in (CLI, PYMYSQL):
        conn = capture.connections[0]
        whole, r = run(conn).pairs, run(conn, cap=1024)
        assert shape(r.pairs) == shape(whole)
        assert [p.resp_bytes for p in r.pairs] == [p.resp_bytes for p in whole]
        assert [bool((p.extra or {}).get("truncated")) for p in r.pairs] == [
            p.resp_bytes > 1024 for p in whole
        ]


@pytest.mark.parametrize("cap", [4, 5, 9, 30, 200])
def test_truncation_never_invents_an_exchange(cap: int) -> None:
    for capture in ALL:
        conn = capture.connections[0]
        known = shape(run(conn).pairs)
        r = run(conn, cap=cap)
        assert r.parser.stats()["errors"] == 0
        for method, path, status in shape(r.pairs):
            if re.fullmatch(r"EXECUTE (\d+|\?) \*values\*|CLOSE STMT \? ", path):
                continue  # the PREPARE (or the id) was not captured: the Go agent's shape
            if path.endswith("..."):
                assert any(k[0] == method and k[1].startswith(path[:-3]) for k in known)
            else:
                assert (method, path) in {(k[0], k[1]) for k in known}
                assert status in (STATUS_OK, STATUS_ERROR)


def test_garbage_then_a_real_stream_resyncs() -> None:
    for seed in range(20):
        r = Replay(MySQLConnection("client"))
        r.feed(EGRESS, garbage(seed, 200))
        r.feed(INGRESS, garbage(seed + 50, 200))
        r.run(records(CLI.connections[0]))
        assert shape(r.pairs) == shape(CLI_EXPECTED_SHORT()), seed
        assert r.parser.stats()["errors"] == 0


def CLI_EXPECTED_SHORT() -> list[object]:
    return [_Pair(m, p, s) for m, p, s, *_ in CLI_EXPECTED]


class _Pair:
    def __init__(self, method: str, path: str, status: int) -> None:
        self.method, self.path, self.status, self.extra = method, path, status, None


def test_lost_records_resync_on_the_next_command() -> None:
    recs = list(records(PYMYSQL.connections[0]))
    r = Replay(MySQLConnection("client"))
    r.run(recs[:9])
    r.parser.lost()
    r.run(recs[12:])  # record 12 answers the query lost in between: an orphan
    assert shape(r.pairs) == [x[:3] for x in PYMYSQL_EXPECTED[:3] + PYMYSQL_EXPECTED[5:]]
    assert r.parser.stats()["lost_events"] == 1


def test_joining_mid_stream_names_unknown_statements() -> None:
    recs = list(records(PREPARED.connections[0]))
    start = next(i for i, (_, d, _) in enumerate(recs) if d[4:5] == b"\x17" and d[5] == 2)
    r = Replay(MySQLConnection("client")).run(recs[start:])
    assert shape(r.pairs[:2]) == [(E, "EXECUTE 2 *values*", STATUS_OK)] * 2
    assert r.pairs[0].extra == {"statement_id": 2, "affected_rows": 1}


def test_pipelined_commands_pair_in_order() -> None:
    def query(sql: bytes) -> bytes:
        return struct.pack("<I", len(sql) + 1)[:3] + b"\x00\x03" + sql

    ok = b"\x07\x00\x00\x01\x00\x01\x00\x02\x00\x00\x00"
    err = b"\x0e\x00\x00\x01\xff\x7a\x04#42S02nope!"
    p = MySQLConnection("client")
    p.feed(EGRESS, query(b"DELETE FROM a") + query(b"DELETE FROM b"), 36, 1, 2)
    out = p.feed(INGRESS, ok + err, len(ok + err), 3, 4)
    assert shape(out, "error") == [
        (Q, "DELETE FROM a", STATUS_OK, None),
        (Q, "DELETE FROM b", STATUS_ERROR, "nope!"),
    ]


# -- credentials ---------------------------------------------------------------------------------


def test_auth_data_never_leaves() -> None:
    for capture in ALL:
        conn = capture.connections[0]
        (login,) = [c for d, c in conn if d == "c" and c[3] == 1]
        user_end = login.index(b"\0", 4 + 32)
        scramble = login[user_end + 2 : user_end + 2 + login[user_end + 1]]
        assert len(scramble) == 20
        for role in ("client", "server"):
            for how in ({}, {"pieces": 3}, {"cap": 40}):
                text = repr(run(conn, role, **how).pairs)
                assert scramble.decode("latin-1") not in text
                assert "test-pw" not in text


def test_cleartext_password_plugin_is_never_read() -> None:
    password = b"Cl3ar-Text-Secret"
    greeting = bytes.fromhex("0a") + b"10.11.19-MariaDB\x00" + b"\x01\x00\x00\x00" + b"12345678"
    greeting += b"\x00\xfe\xf7\x08\x02\x00\xff\x81" + b"\x00" * 10 + b"901234567890\x00"
    caps = 0x000FA68D  # 4.1, secure connection, connect with db
    login = struct.pack("<IIB", caps, 1 << 24, 33) + b"\x00" * 23 + b"bob\x00"
    login += bytes([len(password)]) + password + b"t\x00mysql_clear_password\x00"
    switch = b"\xfemysql_clear_password\x00"

    def packet(seq: int, payload: bytes) -> bytes:
        return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload

    p = MySQLConnection("client")
    out = p.feed(INGRESS, packet(0, greeting), 4 + len(greeting), 1, 2)
    out += p.feed(EGRESS, packet(1, login), 4 + len(login), 3, 4)
    out += p.feed(INGRESS, packet(2, switch), 4 + len(switch), 5, 6)
    out += p.feed(EGRESS, packet(3, password + b"\x00"), 4 + len(password) + 1, 7, 8)
    out += p.feed(INGRESS, packet(4, b"\x00\x00\x00\x02\x00\x00\x00"), 11, 9, 10)
    select = packet(0, b"\x03SELECT 1")
    out += p.feed(EGRESS, select, len(select), 11, 12)
    out += p.feed(INGRESS, packet(1, b"\x00\x00\x00\x02\x00\x00\x00"), 11, 13, 14)
    assert shape(out, "user", "database") == [(Q, "SELECT 1", STATUS_OK, "bob", "t")]
    assert password.decode() not in repr(out) + repr(p.stats())


def test_ssl_request_stops_the_parser() -> None:
    p = MySQLConnection("client")
    p.feed(INGRESS, b"\x0b\x00\x00\x00\x0a5.7.0\x00abcde", 15, 1, 2)
    ssl = struct.pack("<I", 32)[:3] + b"\x01" + struct.pack("<I", 0x00000A00) + b"\x00" * 28
    p.feed(EGRESS, ssl, 36, 3, 4)
    assert p.stats()["tls"] == 1
    assert p.feed(EGRESS, b"\x16\x03\x01\x00\x05hello", 10, 5, 6) == []


def test_role_must_be_client_or_server() -> None:
    with pytest.raises(ValueError, match="role"):
        MySQLConnection("")
