"""The one module that knows every protocol parser: backend protocol name -> parser class.

Every parser has the same sans-I/O interface (`L7Parser`): `Cls(role)`, then per syscall record
`feed(direction, data, true_len, enter_ns, exit_ns) -> list[pair]`, `lost()`, `close(ts_ns)`,
`stats()`. HTTP/1 yields `Http1Pair`; the others yield `L7Pair` (alaz.protocols.pair).

First-bytes signatures, for the kernel classifier
==================================================

"C>S" is client to server, "S>C" server to client; "start" is the first bytes of a connection,
"mid" the first bytes of a read/write in an established one. Every length below is checkable
against the syscall's byte count, which is what makes a loose prefix match strict. The parsers'
own resync checks (`_req_start` / `_resp_start` / `_is_start` in each module) implement these.

PostgreSQL (v3; default port 5432)
    start C>S  untyped messages: int32 BE length, then int32 BE code.
               StartupMessage   len in [8, 10000], code 00 03 00 00 (196608), then "user\\0..."
               SSLRequest       00 00 00 08 04 D2 16 2F   (exactly 8 bytes)
               GSSENCRequest    00 00 00 08 04 D2 16 30
               CancelRequest    00 00 00 10 04 D2 16 2E   (16 bytes)
    start S>C  after SSL/GSSENCRequest: ONE byte, 'S' (TLS follows) or 'N' (startup follows)
               or 'G'; after StartupMessage: 'R' 00 00 00 08 00 00 00 00 (AuthenticationOk)
               or 'R' with code 3 (cleartext), 5 (MD5), 10 (SASL), or 'E' (rejected).
    mid C>S    tag byte + int32 BE length (>= 4, includes itself, not the tag):
               'Q' Query: length+1 == write size for one query, last byte 00;
               'P' Parse / 'B' Bind / 'D' / 'E' Execute ...: extended protocol; a pipeline's
               write ends with Sync 53 00 00 00 04 (psycopg adds Flush 48 00 00 00 04 after it);
               'X' 00 00 00 04 Terminate (exactly 5 bytes). The Go agent's test for P/B (last
               5 bytes are a Sync) misses pipelines cut by the 1 KiB capture.
    mid S>C    '1' 00 00 00 04 ParseComplete, '2' 00 00 00 04 BindComplete, 'T' RowDescription,
               'D' DataRow, 'C' CommandComplete, 'E' ErrorResponse ('S' 'ERROR' ... 'C' and the
               SQLSTATE), 'n' 00 00 00 04 NoData, 'I' 00 00 00 04, 'G'/'H' Copy, 'N' Notice,
               'S' ParameterStatus.
               Every answer ends with ReadyForQuery 'Z' 00 00 00 05 + 'I'|'T'|'E': a fully
               captured read that ends with those 6 bytes ends an exchange. The Go agent's
               status rule treats '1'/'2' as "not a response", which loses extended queries.
    strict     walk the chain: every tag valid for its direction, every length <= its type's
               maximum (Z = 5; 1, 2, 3, n, I, c, s = 4; C < 4096 ...) and within the syscall size.

MySQL / MariaDB (default port 3306; packet = 3-byte LE payload length + 1-byte sequence id)
    start S>C  the SERVER speaks first: greeting with seq 00 and payload[0] = 0A (protocol 10),
               then a NUL-terminated ASCII version ("8.0.36", "5.5.5-10.11.19-MariaDB"):
               ?? ?? 00 00 0A <digit> '.' ...; length+4 == read size.
    start C>S  HandshakeResponse41 with seq 01; payload[0:4] LE capabilities with
               CLIENT_PROTOCOL_41 (0x200) set; SSLRequest = 20 00 00 01 + caps with CLIENT_SSL
               (0x800): exactly 36 bytes, then TLS.
    mid C>S    a command: seq 00, payload[0] = 03 COM_QUERY, 16 STMT_PREPARE, 17 STMT_EXECUTE,
               19 STMT_CLOSE (no answer), 0E PING, 02 INIT_DB, 01 QUIT, 1A STMT_RESET,
               1F RESET_CONNECTION; length+4 == write size unless pipelined or >16 MiB.
    mid S>C    the first answer packet has seq 01 and payload[0] = 00 OK (length >= 7), FF ERR
               (then a 2-byte code and '#' + 5-char SQLSTATE), FB LOCAL INFILE, or a column
               count (lenenc, usually 1 byte: 01 00 00 01 NN), followed by column definitions
               starting "03 'def'" (?? ?? ?? 02 03 64 65 66: a strong signature). Result sets end
               with FE and a length < 9 (EOF, or OK under CLIENT_DEPRECATE_EOF).

Redis (RESP2/RESP3; default port 6379)
    C>S        arrays of bulk strings: '*' <digits> CRLF '$' <digits> CRLF <command word>, e.g.
               *1\\r\\n$4\\r\\nPING\\r\\n (clients send it upper-case; the Go agent matches only
               "ping"), *3\\r\\n$3\\r\\nSET\\r\\n. Inline commands: ASCII letters, then CRLF
               (PING\\r\\n).
               Connections often open with AUTH, HELLO (RESP3) or CLIENT SETINFO (redis-py).
    S>C        first byte one of + - : $ * _ # , ( ! = % ~ > | and a CRLF-terminated first line,
               digits after $ * % ~ > | = ! : (or -1); +OK\\r\\n, +PONG\\r\\n, -ERR ..., -WRONGPASS;
               HELLO 3 answers with a map: %7\\r\\n$6\\r\\nserver. A complete read ends with CRLF.
               Pushes, with no request before them: RESP3 >3\\r\\n$7\\r\\nmessage\\r\\n (or
               pmessage, smessage, invalidate, subscribe ...); RESP2 the same as an array
               *3\\r\\n$7\\r\\nmessage\\r\\n while subscribed.

AMQP 0-9-1 (RabbitMQ; default port 5672; frame = type, channel u16, size u32, payload, CE)
    start C>S  exactly 41 4D 51 50 00 00 09 01 ("AMQP" 0 0 9 1), 8 bytes.
    start S>C  Connection.Start: 01 00 00 <size> 00 0A 00 0A 00 09 (class 10, method 10,
               version 0-9), the frame ending with CE at offset 7+size.
    mid both   frames: byte 0 in {01 method, 02 content header, 03 body, 08 heartbeat}; frame end
               CE at offset 7+size when the frame is whole in the read (frames span reads, and a
               read can hold many). Method frames: class, method (u16 BE each) at offset 7:
               C>S Basic.Publish 00 3C 00 28, Basic.Get 00 3C 00 46, Basic.Ack 00 3C 00 50;
               S>C Basic.Deliver 00 3C 00 3C, GetOk 00 3C 00 47, GetEmpty 00 3C 00 48.
               Heartbeat: 08 00 00 00 00 00 00 CE. Walking the frame chain (type, size within
               the syscall size, CE where visible) is near certain.

HTTP/1.x: requests start with a method token and a space (GET /...); responses with
"HTTP/1.x NNN". See alaz.protocols.http1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from alaz.protocols.amqp import AmqpConnection
from alaz.protocols.http1 import Http1Connection
from alaz.protocols.mysql import MySQLConnection
from alaz.protocols.postgres import PostgresConnection
from alaz.protocols.redis import RedisConnection

__all__ = ["PARSERS", "PROTOCOLS", "L7Parser", "parser_class", "parser_for"]


class L7Parser(Protocol):
    """What every per-connection parser provides."""

    def feed(
        self, direction: int, data: bytes, true_len: int, enter_ns: int, exit_ns: int
    ) -> Sequence[Any]: ...

    def lost(self) -> None: ...

    def close(self, ts_ns: int) -> list[Any]: ...

    def stats(self) -> dict[str, int]: ...


# Each value is the parser class; typed as what it is used for: role -> a new parser.
PARSERS: Final[dict[str, Callable[[str], L7Parser]]] = {
    "HTTP": Http1Connection,
    "POSTGRES": PostgresConnection,
    "MYSQL": MySQLConnection,
    "REDIS": RedisConnection,
    "AMQP": AmqpConnection,
}
PROTOCOLS: Final = tuple(PARSERS)


def parser_class(protocol: str) -> Callable[[str], L7Parser] | None:
    """The parser class for a backend protocol name, or None if there is none."""
    return PARSERS.get(protocol)


def parser_for(protocol: str, role: str) -> L7Parser | None:
    """A new parser for one connection; None for an unknown protocol.

    Raises ValueError when `role` is not "client" or "server".
    """
    cls = PARSERS.get(protocol)
    return None if cls is None else cls(role)
