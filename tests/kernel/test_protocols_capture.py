"""PostgreSQL, MySQL, Redis and RabbitMQ through the real kernel probes: every exchange once
per side with the exact statement or command, status and error details; pipelines paired in
order; passwords never in the output."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from tests.kernel.conftest import AgentProcess
from tests.kernel.dbservers import DbServer

pytestmark = pytest.mark.kernel


def _client(
    agent: AgentProcess, port: int, protocol: str, count: int, pred: Any = None
) -> list[dict[str, Any]]:
    return agent.wait_records(
        lambda r: (
            r["protocol"] == protocol
            and r["server_port"] == port
            and r["role"] == "client"
            and r["pid"] == os.getpid()
            and (pred is None or pred(r))
        ),
        count,
    )


def _no_secret(agent: AgentProcess, secret: str) -> None:
    assert secret not in agent.out.read_text()


def test_postgres_simple_extended_pipeline_and_errors(
    agent: AgentProcess, postgres: DbServer
) -> None:
    import psycopg

    dsn = f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS alaz_t (id int, name text)")
        conn.execute("INSERT INTO alaz_t VALUES (%s, %s)", (1, "one"))  # extended protocol
        with conn.pipeline():
            for i in range(5):
                conn.execute("SELECT %s::int + 1", (i,))
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        conn.execute("DROP TABLE alaz_t")
    recs = _client(agent, postgres.port, "POSTGRES", 9)
    paths = [r["path"] for r in recs]
    assert "CREATE TABLE IF NOT EXISTS alaz_t (id int, name text)" in paths
    assert paths.count("SELECT $1::int + 1") == 5
    errors = [r for r in recs if r["status"] == 2]
    assert len(errors) == 1 and "no_such_table" in errors[0]["path"]
    assert errors[0]["extra"]["sqlstate"] == "42P01"
    assert all(r["status"] in (1, 2) for r in recs)
    assert {r["method"] for r in recs} <= {"SIMPLE_QUERY", "EXTENDED_QUERY", "CLOSE_OR_TERMINATE"}


def test_mysql_text_and_prepared_statements(agent: AgentProcess, mariadb: DbServer) -> None:
    import pymysql

    conn = pymysql.connect(
        host="127.0.0.1",
        port=mariadb.port,
        user=mariadb.user,
        password=mariadb.password,
        database=mariadb.database,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 40 + 2")
            with pytest.raises(pymysql.err.ProgrammingError):
                cur.execute("SELECT * FROM missing_table")
    finally:
        conn.close()
    recs = _client(agent, mariadb.port, "MYSQL", 2, lambda r: r["method"] == "TEXT_QUERY")
    by_path = {r["path"]: r for r in recs}
    assert by_path["SELECT 40 + 2"]["status"] == 1
    err = by_path["SELECT * FROM missing_table"]
    assert err["status"] == 2 and err["extra"]["error_code"] == 1146
    # server-side prepared statements: COM_STMT_PREPARE / EXECUTE, the text remembered
    import mysql.connector

    cnx = mysql.connector.connect(
        host="127.0.0.1",
        port=mariadb.port,
        user=mariadb.user,
        password=mariadb.password,
        ssl_disabled=True,  # plaintext here; TLS has its own tests
        database=mariadb.database,
    )
    try:
        cur = cnx.cursor(prepared=True)
        for i in range(3):
            cur.execute("SELECT ? + 1", (i,))
            assert cur.fetchall() == [(i + 1,)]
        cur.close()
    finally:
        cnx.close()
    execs = _client(agent, mariadb.port, "MYSQL", 3, lambda r: r["method"] == "EXEC_STMT")
    assert len(execs) == 3 and all(r["path"].startswith("SELECT ? + 1") for r in execs), execs
    assert all(r["status"] == 1 for r in execs)
    prep = _client(agent, mariadb.port, "MYSQL", 1, lambda r: r["method"] == "PREPARE_STMT")
    assert prep and prep[0]["path"] == "SELECT ? + 1"
    assert mariadb.password and mariadb.password not in agent.out.read_text()


def test_redis_pipeline_of_100_pairs_in_order(agent: AgentProcess, redis: DbServer) -> None:
    import redis as redis_py

    client = redis_py.Redis(host="127.0.0.1", port=redis.port)
    pipe = client.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"alaz:k{i}", i)
    pipe.execute()
    client.get("alaz:k7")
    client.close()
    recs = _client(agent, redis.port, "REDIS", 101)
    sets = [r for r in recs if r["extra"] and r["extra"].get("command") == "SET"]
    assert [r["extra"]["key"] for r in sets] == [f"alaz:k{i}" for i in range(100)]
    assert all(r["status"] == 1 for r in sets)
    gets = [r for r in recs if r["extra"] and r["extra"].get("command") == "GET"]
    assert len(gets) == 1 and gets[0]["extra"]["key"] == "alaz:k7"
    server = agent.wait_records(
        lambda r: (
            r["protocol"] == "REDIS"
            and r["server_port"] == redis.port
            and r["role"] == "server"
            and r["comm"].startswith("redis")
            and r["path"].startswith("*3\r\n$3\r\nSET\r\n$")
        ),
        100,
    )
    assert len(server) == 100


def test_redis_auth_is_redacted(agent: AgentProcess, redis: DbServer) -> None:
    secret = "s3cret-redis-pw-91"
    subprocess.run(
        ["redis-cli", "-p", str(redis.port), "AUTH", "nobody", secret],
        capture_output=True,
        check=False,
    )
    recs = agent.wait_records(
        lambda r: (
            r["protocol"] == "REDIS"
            and r["server_port"] == redis.port
            and "AUTH" in r["path"].upper()
        ),
        1,
    )
    assert recs, "the AUTH command itself is recorded"
    _no_secret(agent, secret)


def test_amqp_publish_and_get(agent: AgentProcess, rabbitmq: DbServer) -> None:
    import pika

    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=rabbitmq.port,
        virtual_host=rabbitmq.database or "/",
        credentials=pika.PlainCredentials(rabbitmq.user, rabbitmq.password),
    )
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare("alaz-q")
    for i in range(3):
        ch.basic_publish(exchange="", routing_key="alaz-q", body=f"m{i}".encode())
    got = ch.basic_get("alaz-q", auto_ack=True)
    assert got[2] == b"m0"
    conn.close()
    recs = _client(agent, rabbitmq.port, "AMQP", 3, lambda r: r["method"] == "PUBLISH")
    assert [r["extra"]["routing_key"] for r in recs] == ["alaz-q"] * 3
    _no_secret(agent, rabbitmq.password)
