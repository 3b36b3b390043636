"""The capture loop's decode: real record layouts, a tracker that raises on one record."""

from __future__ import annotations

from typing import Any

from alaz.capture.collector import Collector
from alaz.capture.records import (
    DATA_FIELDS,
    DATA_HOT,
    DATA_REC,
    DATA_WHO,
    Direction,
    Protocol,
    RecKind,
    Role,
)
from alaz.clock import MonotonicClock
from alaz.conntrack import ConnTracker
from alaz.model import Exchange

REQ = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def record(conn_id: int, seq: int, direction: int, payload: bytes, t: int) -> bytes:
    head = DATA_REC.pack(
        RecKind.DATA,
        direction,
        Protocol.HTTP1,
        Role.CLIENT,
        0,
        2,
        100,
        101,
        7,
        seq,
        conn_id,
        1,
        t,
        t + 1,
        len(payload),
        len(payload),
        0,
        40000,
        80,
        bytes([127, 0, 0, 1]) + bytes(12),
        bytes([127, 0, 0, 2]) + bytes(12),
        b"curl".ljust(16, b"\0"),
    )
    return head + payload


class Ring:
    """Hands out one batch: records laid out the way RingReader returns them."""

    def __init__(self, records: list[bytes]) -> None:
        self.batches: list[tuple[bytes, list[int]]] = []
        blob, offsets = b"", []
        for rec in records:
            offsets.append(len(blob))
            blob += rec + b"\0" * (-len(rec) % 8)
        self.batches.append((blob, offsets))

    def read(self, max_bytes: int) -> tuple[bytes, list[int]]:
        return self.batches.pop() if self.batches else (b"", [])


class Exploding(ConnTracker):
    def _open(self, blob: bytes, off: int) -> Any:
        if DATA_REC.unpack_from(blob, off)[10] == 666:  # conn_id
            raise RuntimeError("a bug")
        return super()._open(blob, off)


def test_a_record_that_raises_is_skipped_and_the_rest_decoded() -> None:
    got: list[Exchange] = []
    records = [
        record(1, 0, Direction.EGRESS, REQ, 10),
        record(666, 0, Direction.EGRESS, REQ, 11),
        record(1, 1, Direction.INGRESS, RESP, 20),
    ]
    col = Collector(Ring(records), Exploding(MonotonicClock()), got.extend)  # type: ignore[arg-type]
    assert col.poll() == 3
    assert col.stats.decode_errors == 1
    assert [(e.method, e.path, e.status, e.comm, e.client_port) for e in got] == [
        ("GET", "/x", 200, "curl", 40000)
    ]
    assert got[0].latency_ns == 21 - 10  # response's first read exit - request's first write


def test_addresses_and_roles_come_from_the_record() -> None:
    got: list[Exchange] = []
    records = [record(5, 0, Direction.EGRESS, REQ, 1), record(5, 1, Direction.INGRESS, RESP, 2)]
    Collector(Ring(records), ConnTracker(MonotonicClock()), got.extend).poll()  # type: ignore[arg-type]
    (ex,) = got
    assert (ex.role, ex.client_ip, ex.client_port, ex.server_ip, ex.server_port) == (
        "client",
        "127.0.0.1",
        40000,
        "127.0.0.2",
        80,
    )
    assert (ex.pid, ex.tid, ex.fd, ex.req_bytes, ex.resp_bytes) == (
        100,
        101,
        7,
        len(REQ),
        len(RESP),
    )


def test_partial_layouts_read_the_same_fields_as_the_whole_record() -> None:
    raw = record(0x1122334455, 77, Direction.INGRESS, b"x", 1000)
    whole = dict(zip(DATA_FIELDS, DATA_REC.unpack_from(raw), strict=True))
    hot = ("direction", "seq", "conn_id", "enter_ns", "exit_ns", "bytes", "captured")
    assert DATA_HOT.unpack_from(raw) == tuple(whole[f] for f in hot)
    assert DATA_WHO.unpack_from(raw) == tuple(whole[f] for f in ("pid", "tid", "fd", "cgroup_id"))
