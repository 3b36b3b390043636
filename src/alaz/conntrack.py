"""Connections as the kernel reports them, each with its protocol parser.

A connection is keyed by the kernel-assigned conn id (one per socket, so the client and server
ends of a local connection are two connections, each with its own role). Data records are fed
to the connection's parser in ring order; a gap in the per-connection sequence number means
records were lost, and the parser resyncs. Memory is bounded: at most `max_conns` connections
(the oldest is dropped and counted past that), idle ones are swept.

`feed_records` is the agent's per-record loop (the collector hands it each ring batch), so
it is written for speed: see bench/bench_capture.py. Each connection has one exchange maker
(`_exchange_maker`): HTTP/1 parsers call it themselves, the binary protocols' L7Pairs go
through it after their parser returns them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alaz.capture.records import (
    CONN_REC,
    DATA_COMM,
    DATA_HOT,
    DATA_REC,
    DATA_WHO,
    PROC_REC,
    REC_FLAG_TLS,
    ConnEvent,
    Protocol,
    RecKind,
    Role,
)
from alaz.clock import MonotonicClock
from alaz.model import Exchange
from alaz.protocols.http1 import Http1Connection
from alaz.protocols.registry import parser_for

__all__ = ["Conn", "ConnTracker", "TrackerStats", "format_addr"]

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_DATA_HDR = DATA_REC.size
_DATA, _CONN, _PROC = int(RecKind.DATA), int(RecKind.CONN), int(RecKind.PROC)
_CLOSE = int(ConnEvent.CLOSE)
_CLIENT, _HTTP1 = int(Role.CLIENT), int(Protocol.HTTP1)  # plain ints: no enum lookups per exchange
_ROLE_NAMES = {Role.CLIENT: "client", Role.SERVER: "server"}
# kernel protocol class -> the parser registry's (and the backend rows') protocol name
_PROTOCOL_NAMES = {
    Protocol.HTTP1: "HTTP",
    Protocol.POSTGRES: "POSTGRES",
    Protocol.MYSQL: "MYSQL",
    Protocol.REDIS: "REDIS",
    Protocol.AMQP: "AMQP",
}


def format_addr(family: int, raw: bytes) -> str:
    """A printable address; IPv4-mapped IPv6 addresses print as IPv4."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if raw[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, raw[12:16])
    return socket.inet_ntop(socket.AF_INET6, raw)


class Conn:
    """One socket end: who owns it, where it goes, and its parser."""

    __slots__ = (
        "client_ip",
        "client_port",
        "comm",
        "comm_raw",
        "feed",
        "last_ns",
        "make",
        "makes_exchanges",
        "next_seq",
        "parser",
        "protocol",
        "role",
        "server_ip",
        "server_port",
        "tls",
        "who",
    )

    def __init__(
        self,
        role: int,
        protocol: int,
        family: int,
        lport: int,
        rport: int,
        laddr: bytes,
        raddr: bytes,
    ) -> None:
        self.role = role
        self.protocol = protocol
        local, remote = format_addr(family, laddr), format_addr(family, raddr)
        if role == Role.SERVER:
            self.client_ip, self.client_port = remote, rport
            self.server_ip, self.server_port = local, lport
        else:
            self.client_ip, self.client_port = local, lport
            self.server_ip, self.server_port = remote, rport
        self.parser: Any = None
        self.feed: Any = None
        self.makes_exchanges = False  # its parser returns Exchanges (HTTP/1), not pairs
        self.make: Any = None  # its exchange maker (ConnTracker._exchange_maker)
        self.next_seq = 0
        self.tls = False  # the plaintext of a TLS connection (from the TLS probes)
        self.comm = ""
        self.comm_raw = b""
        self.last_ns = 0  # exit time of the latest record
        self.who: tuple[int, int, int, int] = (0, 0, 0, 0)  # pid, tid, fd, cgroup_id

    def attach(self, parser: Any, makes_exchanges: bool = False) -> None:
        self.parser = parser
        self.feed = parser.feed  # bound once: the hot path calls it for every record
        self.makes_exchanges = makes_exchanges

    def set_comm(self, raw: bytes) -> None:
        self.comm_raw = raw
        self.comm = raw.split(b"\0", 1)[0].decode(errors="replace")


@dataclass
class TrackerStats:
    conns_opened: int = 0
    conns_evicted: int = 0  # dropped because the table was full
    conns_idle_swept: int = 0
    seq_gaps: int = 0  # connections where kernel records went missing
    records_unparsed: int = 0  # protocol without a parser here
    exchanges: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class ConnTracker:
    """Feeds data records to per-connection parsers and turns pairs into Exchanges."""

    def __init__(
        self, clock: MonotonicClock, max_conns: int = 65536, idle_timeout_s: float = 600.0
    ) -> None:
        self.clock = clock
        self.max_conns = max_conns
        self.idle_timeout_ns = int(idle_timeout_s * 1e9)
        self.conns: dict[int, Conn] = {}
        self.stats = TrackerStats()
        self.failed_at = 0  # see feed_records
        # The data record being handled (blob, offset; -1: none), for the HTTP/1 exchange
        # makers: the record that completes an exchange names its process and thread.
        self._blob = b""
        self._off = -1

    def feed_records(
        self,
        blob: bytes,
        offsets: list[int],
        out: list[Exchange],
        on_proc: Callable[[int, int, int], None] | None = None,
    ) -> tuple[int, int, int]:
        """Handles ring records in order: a data record goes to its connection's parser, a
        close finishes its connection, a proc record goes to `on_proc(event, pid, cgroup_id)`.
        Returns how many were conn, proc and unknown records (the rest were data).

        The agent's hot loop, so the per-record work is inline here: one struct unpack of the
        hot fields, one payload slice, one parser call; the rest of a record (who, addresses,
        comm) is read only when a connection opens or an exchange is made. If handling a record
        raises (a bug), `failed_at` is its index in `offsets` and the exception propagates.
        """
        conns = self.conns
        unpack = DATA_HOT.unpack_from
        self._blob = blob
        made = len(out)
        n_conn = n_proc = n_unknown = 0
        off = 0
        try:
            for off in offsets:
                kind = blob[off]  # low byte of the u16 kind; every kind is < 256
                if kind == _DATA:
                    direction, seq, conn_id, enter_ns, exit_ns, nbytes, captured = unpack(blob, off)
                    conn = conns.get(conn_id)
                    if conn is None:
                        conn = self._open(blob, off)
                        if conn is None:
                            continue
                    if seq != conn.next_seq:
                        self.stats.seq_gaps += 1
                        conn.parser.lost()
                    conn.next_seq = seq + 1
                    conn.last_ns = exit_ns
                    start = off + _DATA_HDR
                    payload = blob[start : start + captured]
                    self._off = off
                    pairs = conn.feed(direction, payload, nbytes, enter_ns, exit_ns)
                    if pairs:
                        if conn.makes_exchanges:
                            out += pairs
                        else:
                            _from_l7_pairs(conn.make, pairs, out)
                elif kind == _CONN:
                    n_conn += 1
                    event = CONN_REC.unpack_from(blob, off)
                    if event[1] == _CLOSE:
                        self.on_close(event[7], event[9], out)
                elif kind == _PROC:
                    n_proc += 1
                    if on_proc is not None:
                        proc = PROC_REC.unpack_from(blob, off)
                        on_proc(proc[1], proc[2], proc[4])
                else:
                    n_unknown += 1
        except Exception:
            self.failed_at = offsets.index(off)  # offsets are unique
            raise
        finally:
            self._off = -1
            self._blob = b""
            self.stats.exchanges += len(out) - made
        return n_conn, n_proc, n_unknown

    def on_close(self, conn_id: int, ts_ns: int, out: list[Exchange]) -> None:
        """The connection closed: its parser's last exchanges go to `out` (counted by the
        caller, feed_records)."""
        conn = self.conns.pop(conn_id, None)
        if conn is not None:
            self._off = -1  # no data record completes these: who and comm stay as they were
            pairs = conn.parser.close(ts_ns)
            if not pairs:
                return
            if conn.makes_exchanges:
                out += pairs
            else:
                _from_l7_pairs(conn.make, pairs, out)

    def sweep(self, now_ns: int) -> None:
        """Drops connections idle for longer than the timeout (their close was never seen)."""
        cutoff = now_ns - self.idle_timeout_ns
        stale = [cid for cid, c in self.conns.items() if c.last_ns < cutoff]
        for cid in stale:
            del self.conns[cid]
        self.stats.conns_idle_swept += len(stale)

    def _open(self, blob: bytes, off: int) -> Conn | None:
        rec = DATA_REC.unpack_from(blob, off)
        protocol, role, flags, family, seq, conn_id, lport, rport, laddr, raddr = (
            rec[2], rec[3], rec[4], rec[5], rec[9], rec[10], rec[17], rec[18], rec[19], rec[20]
        )  # fmt: skip
        name = _PROTOCOL_NAMES.get(protocol)
        if name is None or role not in _ROLE_NAMES:
            self.stats.records_unparsed += 1
            return None
        conn = Conn(role, protocol, family, lport, rport, laddr, raddr)
        role_name = _ROLE_NAMES[Role(role)]
        conn.make = self._exchange_maker(conn)
        if protocol == _HTTP1:
            conn.attach(Http1Connection(role_name, make_pair=conn.make), True)
        else:
            conn.attach(parser_for(name, role_name))
        conn.next_seq = seq
        conn.tls = bool(flags & REC_FLAG_TLS)
        conn.who = (rec[6], rec[7], rec[8], rec[11])
        conn.last_ns = rec[13]
        if len(self.conns) >= self.max_conns:
            del self.conns[next(iter(self.conns))]  # the oldest opened
            self.stats.conns_evicted += 1
        self.conns[conn_id] = conn
        self.stats.conns_opened += 1
        return conn

    def _exchange_maker(self, conn: Conn) -> Callable[..., Exchange]:
        """The one place a connection's exchanges become Exchanges. Its parameters are
        Http1Pair's fields, in order, so an HTTP/1 parser calls it as its `make_pair` (no pair
        tuple in between, no second pass: this is per exchange on the hot path); the binary
        protocols' L7Pairs come through `_from_l7_pairs`, which adds protocol and extra.
        Who (pid, tid, fd, cgroup) and comm come from the data record that completed the
        exchange, or stay as they were when none did (a close)."""
        client = conn.role == _CLIENT
        role = "client" if client else "server"
        clock, tracker, who_of = self.clock, self, DATA_WHO.unpack_from

        def make(
            method: str, path: str, host: str | None, status: int, req_bytes: int,
            resp_bytes: int, req_first_enter: int, req_first_exit: int, req_last_exit: int,
            resp_first_enter: int, resp_first_exit: int, _resp_last_exit: int, _version: str,
            _flags: int, protocol: str = "HTTP", extra: dict[str, Any] | None = None,
        ) -> Exchange:  # fmt: skip
            off = tracker._off
            if off >= 0:
                blob = tracker._blob
                conn.who = who_of(blob, off)
                raw = blob[off + DATA_COMM : off + DATA_COMM + 16]
                if raw != conn.comm_raw:
                    conn.set_comm(raw)
            pid, tid, fd, cgroup_id = conn.who
            if client:  # from the request's first write to the end of the response's first read
                start = req_first_enter
                latency = resp_first_exit - start
            else:  # from the end of the request's last read to the response's first write
                start = req_first_exit
                latency = resp_first_enter - req_last_exit
            return Exchange(
                protocol, role, pid, tid, conn.comm, fd, cgroup_id, conn.client_ip,
                conn.client_port, conn.server_ip, conn.server_port, method, path, status,
                latency if latency > 0 else 0, (start + clock.offset_ns) // 1_000_000, conn.tls,
                req_bytes, resp_bytes, host, None, None, extra,
            )  # fmt: skip

        return make


def _from_l7_pairs(
    make: Callable[..., Exchange], pairs: Sequence[Any], out: list[Exchange]
) -> None:
    """Exchanges of a binary protocol's L7Pairs (protocols/pair.py), through the maker."""
    for p in pairs:
        out.append(make(
            p[1], p[2], None, p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], "", 0,
            p[0], p[13],
        ))  # fmt: skip
