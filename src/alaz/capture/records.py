"""Python mirror of ebpf/include/alaz.h: record kinds, enums and struct layouts.

tests/kernel/test_records_abi.py checks every layout here against the BTF of the shipped
objects, so a change on one side without the other fails the tests.
"""

from __future__ import annotations

import struct
from enum import IntEnum

__all__ = [
    "CONN_REC",
    "COUNTER_NAMES",
    "DATA_COMM",
    "DATA_HOT",
    "DATA_REC",
    "DATA_WHO",
    "MAX_CAPTURE",
    "MAX_CHUNKS",
    "PROC_REC",
    "ConnEvent",
    "Direction",
    "ProcEvent",
    "Protocol",
    "RecKind",
    "Role",
]

MAX_CAPTURE = 16384
MAX_CHUNKS = 8  # ALAZ_MAX_CHUNKS in l7.bpf.c: capture windows per syscall
REC_FLAG_TLS = 0x1
REC_FLAG_TRUNCATED = 0x2


class RecKind(IntEnum):
    DATA = 1
    CONN = 2
    PROC = 3


class Direction(IntEnum):
    EGRESS = 0
    INGRESS = 1


class Protocol(IntEnum):
    UNKNOWN = 0
    HTTP1 = 1
    POSTGRES = 2
    MYSQL = 3
    REDIS = 4
    AMQP = 5


class Role(IntEnum):
    UNKNOWN = 0
    CLIENT = 1
    SERVER = 2


class ConnEvent(IntEnum):
    CONNECT = 1
    ACCEPT = 2
    ESTABLISHED = 3
    CLOSE = 4
    FD_CLOSE = 5


class ProcEvent(IntEnum):
    EXEC = 1
    EXIT = 2
    FORK = 3


# enum alaz_counter, by index
COUNTER_NAMES = (
    "ringbuf_drop_data",
    "ringbuf_drop_control",
    "pending_map_full",
    "conns_map_full",
    "data_records",
    "sockets_ignored",
    "ringbuf_refused_with_room",
)

# struct data_rec: kind, direction, protocol, role, flags, family, pid, tid, fd, seq, conn_id,
# cgroup_id, enter_ns, exit_ns, bytes, captured, chunk_off, lport, rport, laddr, raddr, comm
DATA_REC = struct.Struct("<HBBBBHIIiIQQQQQIIHH16s16s16s4x")
# What the hot path reads of every data record, indexes 0-6: direction, seq, conn_id,
# enter_ns, exit_ns, bytes, captured (pad bytes skip the rest: half the ints made per record,
# half the time).
# The whole record (DATA_REC) is read when a connection opens, DATA_WHO when an exchange is
# made, with the comm sliced from the record (DATA_COMM).
DATA_HOT = struct.Struct("<2xB17xIQ8xQQQI")
DATA_WHO = struct.Struct("<8xIIi12xQ")  # pid, tid, fd, cgroup_id
DATA_COMM = 108  # offset of the 16-byte comm
# struct conn_rec: kind, event, role, family, pid, tid, fd, conn_id, cgroup_id, ts_ns,
# lport, rport, laddr, raddr, comm
CONN_REC = struct.Struct("<HBBH2xIIi4xQQQHH4x16s16s16s")
# struct proc_rec: kind, event, pid, ppid, cgroup_id, ts_ns, comm
PROC_REC = struct.Struct("<HBxII4xQQ16s")

# Field names in struct order (padding excluded), for the ABI test.
DATA_FIELDS = (
    "kind",
    "direction",
    "protocol",
    "role",
    "flags",
    "family",
    "pid",
    "tid",
    "fd",
    "seq",
    "conn_id",
    "cgroup_id",
    "enter_ns",
    "exit_ns",
    "bytes",
    "captured",
    "chunk_off",
    "lport",
    "rport",
    "laddr",
    "raddr",
    "comm",
)
CONN_FIELDS = (
    "kind",
    "event",
    "role",
    "family",
    "pid",
    "tid",
    "fd",
    "conn_id",
    "cgroup_id",
    "ts_ns",
    "lport",
    "rport",
    "laddr",
    "raddr",
    "comm",
)
PROC_FIELDS = ("kind", "event", "pid", "ppid", "cgroup_id", "ts_ns", "comm")
