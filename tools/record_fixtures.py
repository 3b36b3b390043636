"""Record real client/server byte streams as parser fixtures (tests/unit/fixtures/*.json).

    PYTHONPATH=. .venv/bin/python tools/record_fixtures.py [postgres] [mysql] [redis] [amqp]

Each protocol's real server is started by tests/kernel/dbservers.py on a free port. Real clients
(psql, psycopg 3, the mariadb CLI, PyMySQL, mysql-connector-python, redis-cli, redis-py, pika)
run a scripted workload against a recording TCP proxy on 127.0.0.1:

    client --> proxy (127.0.0.1:<ephemeral>) --> server

The proxy is one selector loop; every `recv()` it makes becomes one chunk `[dir, base64]` with
`dir` "c" (client -> server) or "s" (server -> client), in the order the proxy saw them. One
fixture file per scenario holds every connection the workload opened:

    {"protocol": "POSTGRES", "scenario": "...", "clients": "...", "secrets": [...],
     "connections": [[["c", "..."], ["s", "..."], ...], ...]}

`secrets` lists the passwords the workload used, so tests can check that none leaks. The
expected exchanges are asserted by hand in tests/unit/test_<protocol>.py, which know the
workload below.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kernel.dbservers import (  # noqa: E402
    DbServer,
    mariadb_server,
    postgres_server,
    rabbitmq_server,
    redis_server,
)

OUT = ROOT / "tests" / "unit" / "fixtures"
PY = sys.executable


class RecordingProxy:
    """A TCP proxy that remembers every chunk it forwards, per connection, in arrival order."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[list[tuple[str, bytes]]] = []
        self.open = 0
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listener, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(0.02):
                if key.data is None:
                    self._accept()
                else:
                    self._pump(key.fileobj, *key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.upstream)
        idx = len(self.conns)
        self.conns.append([])
        self.open += 2
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sel.register(client, selectors.EVENT_READ, ("c", idx, server))
        self._sel.register(server, selectors.EVENT_READ, ("s", idx, client))

    def _pump(self, sock: socket.socket, direction: str, idx: int, peer: socket.socket) -> None:
        try:
            chunk = sock.recv(65536)
        except OSError:
            chunk = b""
        if chunk:
            self.conns[idx].append((direction, chunk))
            with contextlib.suppress(OSError):
                peer.sendall(chunk)
            return
        self._sel.unregister(sock)
        self.open -= 1
        with contextlib.suppress(OSError):
            peer.shutdown(socket.SHUT_WR)
        if self.open % 2 == 0:  # both halves of some connection are done
            pass

    def close(self, settle: float = 0.3) -> list[list[tuple[str, bytes]]]:
        """Wait for clients to finish (bounded), stop, and return the recorded connections."""
        deadline = time.monotonic() + 5
        time.sleep(settle)
        while self.open and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join()
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        return [c for c in self.conns if c]


@contextlib.contextmanager
def proxy(port: int) -> Iterator[RecordingProxy]:
    p = RecordingProxy(port)
    try:
        yield p
    finally:
        if not p._stop.is_set():
            p.close()


def save(
    protocol: str,
    scenario: str,
    clients: str,
    conns: list[list[tuple[str, bytes]]],
    secrets: list[str] = [],  # noqa: B006 - never mutated
) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "protocol": protocol,
        "scenario": scenario,
        "clients": clients,
        "secrets": secrets,
        "connections": [
            [[d, base64.b64encode(chunk).decode()] for d, chunk in conn] for conn in conns
        ],
    }
    path = OUT / f"{protocol.lower()}_{scenario}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    chunks = sum(len(c) for c in conns)
    size = sum(len(b) for c in conns for _, b in c)
    print(f"{path.relative_to(ROOT)}: {len(conns)} connections, {chunks} chunks, {size} bytes")


def run(*argv: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        print(f"note: {argv[0]} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    return proc.stdout


def py(code: str, **env: str) -> str:
    """Run a client workload in a child Python (the venv's), so each one is a real process."""
    proc = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"client workload failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


# -- PostgreSQL ------------------------------------------------------------------------------------

PG_CLEAR_PW = "pg-Clear-Secret-7781"
PG_MD5_PW = "pg-Md5-Secret-5521"
PG_SCRAM_PW = "pg-Scram-Secret-9931"

PSQL_SCRIPT = r"""
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric);
INSERT INTO items VALUES (1, 'apple', 1.50), (2, 'pear', 2.25);
SELECT id, name, price FROM items ORDER BY id;
SELECT 1 AS a \; SELECT 'two' AS b;
SELECT * FROM missing_table;
COPY items (id, name, price) FROM STDIN;
3	plum	0.75
4	fig	3.10
\.
COPY items TO STDOUT;
SELECT n, repeat('x', 40) AS pad FROM generate_series(1, 1000) AS n;
BEGIN;
UPDATE items SET price = price * 2 WHERE id = 1;
COMMIT;
"""

PSYCOPG_WORKLOAD = r"""
import os, psycopg
dsn = os.environ["DSN"]
with psycopg.connect(dsn) as conn:
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance int)")
    cur.execute("INSERT INTO accounts VALUES (%s, %s, %s)", (1, "ada", 100))
    cur.execute("SELECT owner, balance FROM accounts WHERE id = %s", (1,))
    assert cur.fetchall() == [("ada", 100)]
    # a named prepared statement, prepared once and executed three times
    for i in range(3):
        cur.execute("SELECT balance FROM accounts WHERE id = %s", (1,), prepare=True)
        cur.fetchall()
    # a pipeline: 20 inserts and a select before one Sync
    with conn.pipeline():
        for i in range(2, 22):
            cur.execute("INSERT INTO accounts VALUES (%s, %s, %s)", (i, f"user{i}", i * 10))
        cur.execute("SELECT count(*) FROM accounts")
    # a pipeline where the third statement fails: the ones after it are skipped
    try:
        with conn.pipeline():
            cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (5, 1))
            cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (5, 2))
            cur.execute("INSERT INTO accounts VALUES (%s, %s, %s)", (1, "dup", 0))
            cur.execute("UPDATE accounts SET balance = 0 WHERE id = %s", (3,))
    except psycopg.errors.UniqueViolation:
        pass
    # a syntax error in the extended protocol (ErrorResponse answers the Parse)
    try:
        cur.execute("SELEC owner FROM accounts WHERE id = %s", (1,))
    except psycopg.errors.SyntaxError:
        pass
    # a result spanning many reads
    cur.execute("SELECT n, md5(n::text) FROM generate_series(1, %s) AS n", (1000,))
    assert len(cur.fetchall()) == 1000
    # COPY in and out
    with cur.copy("COPY accounts (id, owner, balance) FROM STDIN") as copy:
        for i in range(100, 150):
            copy.write_row((i, f"copy{i}", i))
    with cur.copy("COPY (SELECT id FROM accounts ORDER BY id) TO STDOUT") as copy:
        rows = list(copy.rows())
"""

PSYCOPG_AUTH = r"""
import os, psycopg
for dsn in os.environ["DSNS"].split("|"):
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT current_user").fetchall()
"""


def record_postgres() -> None:
    with postgres_server() as pg:
        base = f"host=127.0.0.1 user=postgres dbname=postgres sslmode=prefer port={pg.port}"
        run("psql", base, "-X", "-q", "-c", "CREATE DATABASE shop")
        admin = f"host=127.0.0.1 port={pg.port} user=postgres dbname=shop"
        run(
            "psql",
            admin,
            "-X",
            "-q",
            "-c",
            f"CREATE USER alaz_clear PASSWORD '{PG_CLEAR_PW}';"
            f"CREATE USER alaz_md5 PASSWORD '{PG_MD5_PW}';"
            f"CREATE USER alaz_scram PASSWORD '{PG_SCRAM_PW}';"
            "GRANT ALL ON SCHEMA public TO PUBLIC",
        )
        run(
            "psql",
            "-X",
            "-c",
            f"SET password_encryption = 'md5'; ALTER USER alaz_md5 PASSWORD '{PG_MD5_PW}'",
            f"host=127.0.0.1 port={pg.port} user=postgres dbname=shop",
        )

        with proxy(pg.port) as p:
            dsn = f"host=127.0.0.1 port={p.port} user=postgres dbname=shop sslmode=prefer"
            run("psql", dsn, "-X", "-q", "-v", "ON_ERROR_STOP=0", stdin=PSQL_SCRIPT)
            save("POSTGRES", "psql", "psql 15 (libpq)", p.close())

        with proxy(pg.port) as p:
            dsn = f"host=127.0.0.1 port={p.port} user=postgres dbname=shop sslmode=disable"
            py(PSYCOPG_WORKLOAD, DSN=dsn)
            save("POSTGRES", "psycopg", f"psycopg {_version('psycopg')}", p.close())

        with proxy(pg.port) as p:
            dsns = [
                f"host=127.0.0.1 port={p.port} dbname=shop user={u} password={pw} sslmode=disable"
                for u, pw in (
                    ("alaz_clear", PG_CLEAR_PW),
                    ("alaz_md5", PG_MD5_PW),
                    ("alaz_scram", PG_SCRAM_PW),
                )
            ]
            py(PSYCOPG_AUTH, DSNS="|".join(dsns))
            conns = p.close()
            save(
                "POSTGRES",
                "auth",
                f"psycopg {_version('psycopg')}",
                conns,
                [PG_CLEAR_PW, PG_MD5_PW, PG_SCRAM_PW],
            )
    with postgres_server(ssl=True) as pg, proxy(pg.port) as p:
        dsn = f"host=127.0.0.1 port={p.port} user=postgres dbname=postgres sslmode=require"
        run("psql", dsn, "-X", "-q", "-c", "SELECT 1")
        save("POSTGRES", "tls", "psql 15 (libpq), sslmode=require", p.close())


# -- MySQL (MariaDB) -------------------------------------------------------------------------------

MARIADB_SCRIPT = """
CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, price DECIMAL(8,2));
INSERT INTO items VALUES (1, 'apple', 1.50), (2, 'pear', 2.25);
SELECT id, name, price FROM items ORDER BY id;
SELECT * FROM missing_table;
UPDATE items SET price = price * 2 WHERE id = 1;
SELECT seq, REPEAT('x', 40) AS pad FROM seq_1_to_1000;
"""

PYMYSQL_WORKLOAD = r"""
import os, pymysql
from pymysql.constants import CLIENT
c = pymysql.connect(host="127.0.0.1", port=int(os.environ["PORT"]), user="test",
                    password=os.environ["PW"], database="t", client_flag=CLIENT.MULTI_STATEMENTS,
                    autocommit=True)
cur = c.cursor()
cur.execute("CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(40), balance INT)")
cur.execute("INSERT INTO accounts VALUES (%s, %s, %s)", (1, "ada", 100))
cur.execute("SELECT owner, balance FROM accounts WHERE id = %s", (1,))
cur.fetchall()
cur.execute("SELECT 1 AS a; SELECT 'two' AS b, 3 AS c")
while cur.nextset():
    pass
try:
    cur.execute("INSERT INTO accounts VALUES (1, 'dup', 0)")
except pymysql.err.IntegrityError:
    pass
cur.execute("SELECT seq, MD5(seq) FROM seq_1_to_1000")
assert len(cur.fetchall()) == 1000
c.ping()
c.select_db("t")
c.close()
"""

CONNECTOR_WORKLOAD = r"""
import os, mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port=int(os.environ["PORT"]), user="test",
                            password=os.environ["PW"], database="t", use_pure=True,
                            autocommit=True, ssl_disabled=True)
cur = c.cursor(prepared=True)
cur.execute("CREATE TABLE IF NOT EXISTS stock (id INT PRIMARY KEY, sku VARCHAR(20), qty INT)")
for i in range(3):
    cur.execute("INSERT INTO stock VALUES (?, ?, ?)", (i, f"sku-{i}", i * 5))
cur.execute("SELECT sku, qty FROM stock WHERE qty >= ?", (5,))
cur.fetchall()
try:
    cur.execute("INSERT INTO stock VALUES (?, ?, ?)", (1, "dup", 0))
except mysql.connector.errors.IntegrityError:
    pass
cur.close()
c.close()
"""


# No client available here negotiates CLIENT_DEPRECATE_EOF (PyMySQL, libmariadb and the pure
# mysql-connector-python do not), but MariaDB supports it. So this workload logs in with PyMySQL
# asking for it, then drives the command phase by hand with PyMySQL's packet reader: the server's
# bytes are real, and they are what a libmysqlclient 8 client would receive.
DEPRECATE_EOF_WORKLOAD = r"""
import os, struct, pymysql
from pymysql.constants import CLIENT, COMMAND
c = pymysql.connect(host="127.0.0.1", port=int(os.environ["PORT"]), user="test",
                    password=os.environ["PW"], database="t", autocommit=True,
                    client_flag=CLIENT.DEPRECATE_EOF | CLIENT.MULTI_STATEMENTS)
assert c.server_capabilities & CLIENT.DEPRECATE_EOF
def query(sql):
    c._execute_command(COMMAND.COM_QUERY, sql)
    return drain()
def drain():
    out = []
    while True:
        p = c._read_packet()
        out.append(p.get_all_data())
        if p.is_error_packet():
            return out
        if len(out) == 1 and p.is_ok_packet():
            if not struct.unpack_from("<H", p.get_all_data(), 3)[0] & 8:
                return out
            out = []
            continue
        data = p.get_all_data()
        if len(out) > 1 and data[0] == 0xFE and len(data) < 0xFFFFFF:
            status = parse_ok_status(data)
            if not status & 8:  # SERVER_MORE_RESULTS_EXISTS
                return out
            out = []
def parse_ok_status(data):
    pos = 1
    for _ in range(2):
        b = data[pos]
        pos += 1 if b < 0xFB else {0xFC: 3, 0xFD: 4, 0xFE: 9}[b]
    return struct.unpack_from("<H", data, pos)[0]
query("CREATE TABLE fruits (id INT PRIMARY KEY, name VARCHAR(20))")
query("INSERT INTO fruits VALUES (1, 'apple'), (2, 'pear'), (3, 'plum')")
query("SELECT id, name FROM fruits ORDER BY id")
query("SELECT 1 AS a; SELECT name FROM fruits WHERE id = 2")
try:
    query("SELECT nope FROM fruits")
except pymysql.err.OperationalError:
    pass
c._execute_command(COMMAND.COM_STMT_PREPARE, "SELECT name FROM fruits WHERE id > ?")
ok = c._read_packet().get_all_data()
stmt_id, ncols, nparams = struct.unpack_from("<IHH", ok, 1)
for _ in range(ncols + nparams):
    c._read_packet()
# execute with one LONGLONG parameter = 1
payload = struct.pack("<IBI", stmt_id, 0, 1)
payload += b"\x00\x01\x08\x00" + struct.pack("<q", 1)  # null bitmap, new-params flag, type, value
c._execute_command(COMMAND.COM_STMT_EXECUTE, payload)
p = c._read_packet()
for _ in range(ncols):
    c._read_packet()
while True:
    d = c._read_packet().get_all_data()
    if d[0] == 0xFE and len(d) < 0xFFFFFF:
        break
c._execute_command(COMMAND.COM_STMT_CLOSE, struct.pack("<I", stmt_id))
c.close()
"""


def record_mysql() -> None:
    with mariadb_server() as db:
        pw = db.password or ""
        with proxy(db.port) as p:
            run(
                "mariadb",
                "-h",
                "127.0.0.1",
                "-P",
                str(p.port),
                "-u",
                "test",
                f"-p{pw}",
                "--skip-ssl",
                "--force",
                "t",
                stdin=MARIADB_SCRIPT,
            )
            save("MYSQL", "cli", "mariadb 15.1 (libmariadb)", p.close(), [pw])
        with proxy(db.port) as p:
            py(PYMYSQL_WORKLOAD, PORT=str(p.port), PW=pw)
            save("MYSQL", "pymysql", f"PyMySQL {_version('pymysql')}", p.close(), [pw])
        with proxy(db.port) as p:
            py(CONNECTOR_WORKLOAD, PORT=str(p.port), PW=pw)
            save("MYSQL", "prepared", "mysql-connector-python (pure)", p.close(), [pw])
        with proxy(db.port) as p:
            py(DEPRECATE_EOF_WORKLOAD, PORT=str(p.port), PW=pw)
            save("MYSQL", "deprecate_eof", "PyMySQL login + raw command packets", p.close(), [pw])


# -- Redis -----------------------------------------------------------------------------------------

REDIS_PW = "redis-Secret-4417"

REDIS_PY_WORKLOAD = r"""
import os, time, redis
port = int(os.environ["PORT"])
r = redis.Redis(host="127.0.0.1", port=port, protocol=2)
r.set("user:1", "ada")
r.get("user:1")
r.get("missing")
r.incr("counter")
r.rpush("queue", "a", "b", "c")
r.lrange("queue", 0, -1)
r.hset("h:1", mapping={"f1": "v1", "f2": "v2"})
r.hgetall("h:1")
try:
    r.lpush("user:1", "x")  # WRONGTYPE
except redis.ResponseError:
    pass
r.set("big", b"v" * 20000)
r.get("big")
pipe = r.pipeline(transaction=False)
for i in range(100):
    pipe.set(f"k:{i}", i)
pipe.execute()
tx = r.pipeline(transaction=True)
tx.incr("counter").get("counter").lpush("queue", "z")
tx.execute()
r.execute_command("NOSUCHCOMMAND", "arg")  if False else None
try:
    r.execute_command("NOSUCHCOMMAND", "arg")
except redis.ResponseError:
    pass
r.close()
"""

REDIS_PUBSUB_WORKLOAD = r"""
import os, time, redis
port, proto = int(os.environ["PORT"]), int(os.environ["PROTO"])
kw = {"username": "alaz", "password": os.environ["PW"]} if proto == 3 else {}
sub = redis.Redis(host="127.0.0.1", port=port, protocol=proto, **kw)
ps = sub.pubsub()
ps.subscribe("news", "alerts")
ps.psubscribe("ev.*")
for _ in range(3):
    ps.get_message(timeout=1.0)
pub = redis.Redis(host="127.0.0.1", port=port, protocol=proto, **kw)
pub.publish("news", "hello")
pub.publish("ev.created", "order-1")
pub.publish("alerts", "disk full")
got = []
deadline = time.time() + 5
while len(got) < 3 and time.time() < deadline:
    m = ps.get_message(timeout=0.5)
    if m and m["type"] in ("message", "pmessage"):
        got.append(m)
assert len(got) == 3, got
ps.unsubscribe("news")
ps.get_message(timeout=1.0)
ps.close()
pub.set("after", "pubsub")
pub.close()
sub.close()
"""

REDIS_CLI_COMMANDS = [
    ["PING"],
    ["SET", "greeting", "hello world"],
    ["GET", "greeting"],
    ["AUTH", "alaz", REDIS_PW],
    ["AUTH", "alaz", "wrong-" + REDIS_PW],
    ["DEL", "greeting"],
]


def record_redis() -> None:
    with redis_server() as rs:
        run(
            "redis-cli",
            "-p",
            str(rs.port),
            "ACL",
            "SETUSER",
            "alaz",
            "on",
            f">{REDIS_PW}",
            "~*",
            "&*",
            "+@all",
        )
        with proxy(rs.port) as p:
            py(REDIS_PY_WORKLOAD, PORT=str(p.port))
            save("REDIS", "redis_py", f"redis-py {_version('redis')} RESP2", p.close())
        with proxy(rs.port) as p:
            for cmd in REDIS_CLI_COMMANDS:
                run("redis-cli", "-p", str(p.port), *cmd)
            run(
                "redis-cli",
                "-p",
                str(p.port),
                "--user",
                "alaz",
                "--pass",
                REDIS_PW,
                "--no-auth-warning",
                "INFO",
                "server",
            )
            save("REDIS", "cli", "redis-cli 7.0", p.close(), [REDIS_PW])
        for proto in (2, 3):
            with proxy(rs.port) as p:
                py(REDIS_PUBSUB_WORKLOAD, PORT=str(p.port), PROTO=str(proto), PW=REDIS_PW)
                save(
                    "REDIS",
                    f"pubsub_resp{proto}",
                    f"redis-py {_version('redis')}",
                    p.close(),
                    [REDIS_PW],
                )


# -- AMQP (RabbitMQ) -------------------------------------------------------------------------------

PIKA_WORKLOAD = r"""
import os, pika
params = pika.ConnectionParameters(
    host="127.0.0.1", port=int(os.environ["PORT"]),
    credentials=pika.PlainCredentials(os.environ["USER"], os.environ["PW"]), heartbeat=30)
conn = pika.BlockingConnection(params)
ch1 = conn.channel()
ch2 = conn.channel()
ch1.exchange_declare("orders", exchange_type="direct")
ch1.queue_declare("q.orders")
ch1.queue_bind("q.orders", "orders", routing_key="order.created")
ch2.queue_declare("q.mail")
ch1.basic_publish("orders", "order.created", b'{"id": 1}',
                  pika.BasicProperties(content_type="application/json", delivery_mode=2))
ch1.basic_publish("orders", "order.created", b'{"id": 2}')
ch1.basic_publish("orders", "order.created", b"B" * 140000)  # several body frames
ch2.basic_publish("", "q.mail", b"mail body 1")
ch2.basic_publish("", "q.mail", b"mail body 2")
method, props, body = ch1.basic_get("q.orders")
ch1.basic_ack(method.delivery_tag)
method, props, body = ch1.basic_get("q.orders", auto_ack=True)
got = []
def on_msg(ch, method, props, body):
    got.append(body)
    ch.basic_ack(method.delivery_tag)
ch2.basic_qos(prefetch_count=10)
ch2.basic_consume("q.mail", on_msg)
while len(got) < 2:
    conn.process_data_events(time_limit=1)
ch3 = conn.channel()
ch3.basic_consume("q.orders", lambda ch, m, p, b: (got.append(b), ch.basic_ack(m.delivery_tag)))
while len(got) < 3:
    conn.process_data_events(time_limit=1)
ch3.close()
method, props, body = ch1.basic_get("q.orders")
assert method is None  # GetEmpty
ch4 = conn.channel()
ch4.confirm_delivery()
ch4.basic_publish("orders", "order.created", b'{"id": 3}')
try:
    ch4.basic_publish("no-such-exchange", "x", b"lost")
except pika.exceptions.ChannelClosedByBroker:
    pass
conn.close()
"""


def record_amqp() -> None:
    with rabbitmq_server() as mq:
        pw = mq.password or ""
        with proxy(mq.port) as p:
            py(PIKA_WORKLOAD, PORT=str(p.port), USER=mq.user or "", PW=pw)
            save("AMQP", "pika", f"pika {_version('pika')}", p.close(), [pw])


# -- main ------------------------------------------------------------------------------------------


def _version(module: str) -> str:
    out = subprocess.run(
        [PY, "-c", f"import importlib.metadata as m; print(m.version({module!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


RECORDERS: dict[str, Callable[[], None]] = {
    "postgres": record_postgres,
    "mysql": record_mysql,
    "redis": record_redis,
    "amqp": record_amqp,
}


def main(argv: list[str]) -> int:
    names = argv or list(RECORDERS)
    for name in names:
        if name not in RECORDERS:
            print(f"unknown protocol {name!r}; choose from {', '.join(RECORDERS)}")
            return 2
    if not shutil.which("runuser"):
        print("runuser is missing")
        return 1
    for name in names:
        RECORDERS[name]()
    return 0


_ = DbServer  # re-exported type, for readers of this tool

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
