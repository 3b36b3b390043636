"""Real database and broker servers on 127.0.0.1 for tests: PostgreSQL 15, MariaDB, Redis, RabbitMQ.

Each server runs from a private temp directory on a free port and is stopped (and its directory
removed) afterwards. Nothing is installed here; a missing binary is a skip (a failure in CI) via
`need()`. Debian packages: postgresql-15 (preinstalled here), mariadb-server mariadb-client,
redis-server redis-tools, rabbitmq-server.

Two layers:

* context managers (`postgres_server()`, `mariadb_server()`, `redis_server()`,
  `rabbitmq_server()`) that raise `RuntimeError` when a server does not come up; the fixture
  recorder (tools/record_fixtures.py) uses them directly;
* session-scoped pytest fixtures (`postgres`, `mariadb`, `redis`, `rabbitmq`) on top. Import
  them into a test module (or a conftest) to use them.

Credentials, by design all local and throwaway:

* PostgreSQL: superuser `postgres` with trust auth; every other user must send a password over
  TCP (`password` method for user `alaz_clear`, so the password crosses the wire in clear text;
  `md5` for `alaz_md5`; `scram-sha-256` for the rest). `DbServer.user` is `postgres`.
* MariaDB: user `test` / password `test-pw`, database `t`; root over the unix socket.
* Redis: no password (tests add ACL users as they need).
* RabbitMQ: user `alaz` / password `alaz-amqp-pw` (administrator, vhost `/`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import need

__all__ = [
    "PG_BIN",
    "DbServer",
    "mariadb",
    "mariadb_server",
    "postgres",
    "postgres_server",
    "rabbitmq",
    "rabbitmq_server",
    "redis",
    "redis_server",
]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class DbServer:
    """Where a running server listens, and how to log in."""

    name: str
    port: int
    workdir: Path
    user: str | None = None
    password: str | None = None
    database: str | None = None
    socket: Path | None = None  # unix socket (directory for PostgreSQL), admin access
    host: str = HOST
    env: dict[str, str] = field(default_factory=dict)  # what admin tools need (RabbitMQ)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait(ready: Callable[[], bool], what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"start {what}: not ready after {timeout:.0f}s\n{tail}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _run(*cmd: str, user: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command (as `user` if given); return stdout; raise RuntimeError with stderr."""
    argv = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
    proc = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"run {cmd[0]}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


@contextlib.contextmanager
def _workdir(name: str, owner: str | None) -> Iterator[Path]:
    """A world-readable temp directory (server users must reach it), owned by `owner`."""
    d = Path(tempfile.mkdtemp(prefix=f"alaz-{name}-"))
    try:
        d.chmod(0o755)
        if owner:
            shutil.chown(d, owner, owner)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- PostgreSQL ----------------------------------------------------------------------------------

_PG_HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all alaz_clear 127.0.0.1/32 password
host all alaz_md5 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
"""


@contextlib.contextmanager
def postgres_server(*, ssl: bool = False) -> Iterator[DbServer]:
    """A fresh PostgreSQL 15 cluster (initdb, about 1.5 s) listening on 127.0.0.1."""
    port = _free_port()
    with _workdir("pg", "postgres") as d:
        data, log = d / "data", d / "postgres.log"
        _run(
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            user="postgres",
        )
        (data / "pg_hba.conf").write_text(_PG_HBA)
        opts = f"-c listen_addresses={HOST} -p {port} -k {d} -c fsync=off"
        if ssl:
            _run(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-keyout",
                str(d / "key.pem"),
                "-out",
                str(d / "cert.pem"),
            )
            for f in ("key.pem", "cert.pem"):
                shutil.chown(d / f, "postgres", "postgres")
                (d / f).chmod(0o600)
            opts += f" -c ssl=on -c ssl_cert_file={d}/cert.pem -c ssl_key_file={d}/key.pem"
        pg_ctl = str(PG_BIN / "pg_ctl")
        _run(
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "start",
            user="postgres",
        )
        try:
            _wait(lambda: _port_open(port), "postgres", 30, log)
            yield DbServer("postgres", port, d, user="postgres", database="postgres", socket=d)
        finally:
            _run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop", user="postgres")


# -- MariaDB -------------------------------------------------------------------------------------


@contextlib.contextmanager
def mariadb_server() -> Iterator[DbServer]:
    """A fresh MariaDB datadir (mariadb-install-db, about 2 s) and a mariadbd on 127.0.0.1."""
    port = _free_port()
    with _workdir("mariadb", "mysql") as d:
        sock, log = d / "mysqld.sock", d / "mysqld.log"
        _run(
            "mariadb-install-db",
            "--user=mysql",
            f"--datadir={d / 'data'}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        )
        proc = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                "--user=mysql",
                f"--datadir={d / 'data'}",
                f"--socket={sock}",
                f"--pid-file={d / 'mysqld.pid'}",
                f"--port={port}",
                f"--bind-address={HOST}",
                "--skip-log-bin",
                f"--log-error={log}",
                "--innodb-buffer-pool-size=32M",
                "--skip-name-resolve",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(lambda: proc.poll() is not None or _port_open(port), "mariadb", 60, log)
            if proc.poll() is not None:
                raise RuntimeError(f"start mariadb: exited {proc.returncode}: {log.read_text()}")
            _run(
                "mariadb",
                f"--socket={sock}",
                "-e",
                "CREATE USER 'test'@'%' IDENTIFIED BY 'test-pw';"
                " GRANT ALL ON *.* TO 'test'@'%'; CREATE DATABASE t;",
            )
            yield DbServer("mariadb", port, d, "test", "test-pw", "t", sock)
        finally:
            _stop(proc, 30)


# -- Redis ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[DbServer]:
    """redis-server in the foreground: no persistence, no password."""
    port = _free_port()
    with _workdir("redis", None) as d:
        log = d / "redis.log"
        proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                HOST,
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(d),
                "--logfile",
                str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(lambda: proc.poll() is not None or _port_open(port), "redis", 20, log)
            if proc.poll() is not None:
                raise RuntimeError(f"start redis: exited {proc.returncode}: {log.read_text()}")
            yield DbServer("redis", port, d)
        finally:
            _stop(proc)


# -- RabbitMQ ------------------------------------------------------------------------------------

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


@contextlib.contextmanager
def rabbitmq_server() -> Iterator[DbServer]:
    """A private RabbitMQ node (its own epmd port, cookie, mnesia dir), about 5-10 s to boot.

    It runs as user rabbitmq in the foreground, a child of this process; it is stopped with
    `rabbitmqctl stop`, and its private epmd with `epmd -kill`.
    """
    port, dist, epmd = _free_port(), _free_port(), _free_port()
    with _workdir("rabbitmq", "rabbitmq") as d:
        node = f"alaz{port}@localhost"
        (d / "enabled_plugins").write_text("[].\n")
        (d / ".erlang.cookie").write_text(f"ALAZCOOKIE{port}")
        (d / ".erlang.cookie").chmod(0o400)
        for f in ("enabled_plugins", ".erlang.cookie"):
            shutil.chown(d / f, "rabbitmq", "rabbitmq")
        env = {
            "HOME": str(d),
            "RABBITMQ_NODENAME": node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist),
            "ERL_EPMD_PORT": str(epmd),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": str(d / "rabbit.log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
        }
        log = d / "server.out"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["runuser", "-u", "rabbitmq", "--", str(RABBIT_BIN / "rabbitmq-server")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                cwd=d,
            )
        ctl = str(RABBIT_BIN / "rabbitmqctl")
        try:
            _wait(lambda: proc.poll() is not None or _port_open(port), "rabbitmq", 90, log)
            if proc.poll() is not None:
                raise RuntimeError(f"start rabbitmq: exited {proc.returncode}: {log.read_text()}")
            _run(ctl, "-n", node, "await_startup", user="rabbitmq", env=env)
            _run(ctl, "-n", node, "add_user", "alaz", "alaz-amqp-pw", user="rabbitmq", env=env)
            _run(
                ctl, "-n", node, "set_user_tags", "alaz", "administrator", user="rabbitmq", env=env
            )
            _run(
                ctl,
                "-n",
                node,
                "set_permissions",
                "-p",
                "/",
                "alaz",
                ".*",
                ".*",
                ".*",
                user="rabbitmq",
                env=env,
            )
            yield DbServer("rabbitmq", port, d, "alaz", "alaz-amqp-pw", "/", env=env)
        finally:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run(ctl, "-n", node, "stop", user="rabbitmq", env=env)
            _stop(proc, 30)
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run("epmd", "-kill", env={"ERL_EPMD_PORT": str(epmd)})


# -- pytest fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[DbServer]:
    """PostgreSQL 15 from /usr/lib/postgresql/15/bin (Debian package postgresql-15)."""
    need(
        (PG_BIN / "postgres").exists(),
        "PostgreSQL 15 is not installed (apt-get install postgresql-15)",
    )
    need(shutil.which("runuser") is not None, "runuser (util-linux) is missing")
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[DbServer]:
    """MariaDB (Debian packages mariadb-server mariadb-client)."""
    for tool in ("mariadbd", "mariadb-install-db", "mariadb"):
        need(
            shutil.which(tool) is not None,
            f"{tool} is missing (apt-get install mariadb-server mariadb-client)",
        )
    with mariadb_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis() -> Iterator[DbServer]:
    """Redis (Debian package redis-server)."""
    need(
        shutil.which("redis-server") is not None,
        "redis-server is missing (apt-get install redis-server)",
    )
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[DbServer]:
    """RabbitMQ (Debian package rabbitmq-server, with Erlang)."""
    need(
        (RABBIT_BIN / "rabbitmq-server").exists(),
        "rabbitmq-server is missing (apt-get install rabbitmq-server)",
    )
    need(shutil.which("epmd") is not None, "epmd (erlang-base) is missing")
    with rabbitmq_server() as server:
        yield server
