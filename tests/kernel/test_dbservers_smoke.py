"""The real servers of tests/kernel/dbservers.py start, answer their real clients, and stop."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import pytest

from tests.conftest import need
from tests.kernel.dbservers import (  # noqa: F401 - pytest fixtures
    DbServer,
    mariadb,
    postgres,
    rabbitmq,
    redis,
)

pytestmark = pytest.mark.kernel


def _module(name: str) -> None:
    need(importlib.util.find_spec(name) is not None, f"{name} is not installed (pip install)")


def test_postgres_answers_psql_and_psycopg(postgres: DbServer) -> None:  # noqa: F811
    need(shutil.which("psql") is not None, "psql is missing (apt-get install postgresql-client)")
    dsn = f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres"
    out = subprocess.run(["psql", dsn, "-Atc", "SELECT 40 + 2"], capture_output=True, text=True)
    assert out.stdout.strip() == "42", out.stderr
    _module("psycopg")
    import psycopg

    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT %s::int * 2", (21,)).fetchone() == (42,)


def test_mariadb_answers_pymysql(mariadb: DbServer) -> None:  # noqa: F811
    _module("pymysql")
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
            assert cur.fetchone() == (42,)
    finally:
        conn.close()


def test_redis_answers_redis_cli_and_redis_py(redis: DbServer) -> None:  # noqa: F811
    out = subprocess.run(
        ["redis-cli", "-p", str(redis.port), "PING"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "PONG"
    _module("redis")
    import redis as redis_py

    client = redis_py.Redis(host="127.0.0.1", port=redis.port)
    try:
        client.set("smoke", "ok")
        assert client.get("smoke") == b"ok"
    finally:
        client.close()


def test_rabbitmq_round_trips_a_message_with_pika(rabbitmq: DbServer) -> None:  # noqa: F811
    _module("pika")
    import pika

    creds = pika.PlainCredentials(rabbitmq.user or "", rabbitmq.password or "")
    params = pika.ConnectionParameters(host="127.0.0.1", port=rabbitmq.port, credentials=creds)
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.queue_declare("smoke")
        ch.basic_publish("", "smoke", b"hello")
        method, _, body = ch.basic_get("smoke", auto_ack=True)
        assert method is not None and body == b"hello"
    finally:
        conn.close()
