"""A sans-I/O MySQL/MariaDB client-protocol parser that pairs commands with results, per connection.

Framing is `LengthFramer` over packets: a 3-byte little-endian payload length and a sequence
id. A command is a client packet with sequence id 0; its response packets follow with ids 1, 2,
... Commands are queued in order (a client may pipeline), and each response is walked by a small
state machine for its command:

* COM_QUERY and COM_STMT_EXECUTE: OK, ERR, LOCAL INFILE, or a result set: column count, column
  definitions, [EOF], rows, then EOF or (CLIENT_DEPRECATE_EOF) an OK packet with the 0xFE
  header. A 0xFE packet shorter than 0xFFFFFF bytes is a terminator in both modes (a row that
  starts with 0xFE is at least 16 MiB). SERVER_MORE_RESULTS_EXISTS keeps the same exchange
  open for the next result (multi-statements, procedures). MariaDB's "metadata skipped" flag on
  an execute's column count is honoured.
* COM_STMT_PREPARE: PREPARE_OK (statement id, columns, params), the parameter and column
  definitions, and their EOFs unless EOF is deprecated. Whether it is comes from the handshake
  when it was seen, else from the first result set; until then a missing EOF is recognised by
  the next packet (an EOF is 5 bytes with the next sequence id).
* Other commands (PING, INIT_DB, STMT_RESET, ...) are paired to keep the order but emit nothing;
  COM_QUIT, COM_STMT_SEND_LONG_DATA and COM_STMT_CLOSE have no response.

Pairs: TEXT_QUERY (path = the SQL), PREPARE_STMT (path = the SQL; the statement id from its
PREPARE_OK is remembered per connection), EXEC_STMT (path = the prepared SQL, or
`EXECUTE <id> *values*` for a statement prepared before capture began), STMT_CLOSE (one-way,
status 1, path `CLOSE STMT <id> ` as the Go agent writes it). Status 1 OK / 2 ERR; `extra` has
error_code, sqlstate and error for ERR, rows for result sets, affected_rows for OK, user and
database from the handshake. The handshake is parsed for capabilities, user and database only:
auth data (scrambles, passwords, COM_CHANGE_USER) is never read. An SSL request in the
handshake means TLS follows: the parser stops for this connection.

Robustness: `feed()` never raises. A cut packet header makes that direction resync on a record
that begins with a plausible packet (a command with id 0; a first response packet with id 1).
A response whose framing was lost stays attributed to its command until the client sends the
next one, then it is emitted marked truncated (status from its first packet, as the Go agent
decides it). Bounds: `max_pending` commands, `max_statements` statements, `max_path` chars.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Final

from alaz.protocols.pair import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNKNOWN,
    L7Pair,
    LengthFramer,
    ParserBase,
    make_pair,
    roles,
)

__all__ = ["PROTOCOL", "MySQLConnection"]

PROTOCOL: Final = "MYSQL"
TEXT_QUERY: Final = "TEXT_QUERY"
PREPARE_STMT: Final = "PREPARE_STMT"
EXEC_STMT: Final = "EXEC_STMT"
STMT_CLOSE: Final = "STMT_CLOSE"

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_MAX_PAYLOAD: Final = 0xFFFFFF

# Commands (first payload byte of a packet with sequence id 0).
COM_QUIT: Final = 0x01
COM_QUERY: Final = 0x03
COM_FIELD_LIST: Final = 0x04
COM_STATISTICS: Final = 0x09
COM_CHANGE_USER: Final = 0x11
COM_STMT_PREPARE: Final = 0x16
COM_STMT_EXECUTE: Final = 0x17
COM_STMT_SEND_LONG_DATA: Final = 0x18
COM_STMT_CLOSE: Final = 0x19
COM_STMT_FETCH: Final = 0x1C
_NO_RESPONSE: Final = frozenset((COM_QUIT, COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE))
_KNOWN: Final = frozenset((*range(0x00, 0x20), 0xFE))  # 0xFE: MariaDB COM_STMT_BULK_EXECUTE

# Capability flags.
_CLIENT_CONNECT_WITH_DB: Final = 0x8
_CLIENT_PROTOCOL_41: Final = 0x200
_CLIENT_SSL: Final = 0x800
_CLIENT_SECURE_CONNECTION: Final = 0x8000
_CLIENT_PLUGIN_AUTH_LENENC: Final = 0x200000
_CLIENT_DEPRECATE_EOF: Final = 0x1000000
_MORE_RESULTS: Final = 0x0008  # server status flag

# Response walkers and their states.
_W_RESULT, _W_PREPARE, _W_OK, _W_ANY, _W_FIELDS, _W_AUTH = range(6)
_FIRST, _COLS, _COLS_END, _ROWS, _PARAMS, _PARAMS_END, _PCOLS, _PCOLS_END = range(8)
_WALKER: Final = {COM_QUERY: _W_RESULT, COM_STMT_EXECUTE: _W_RESULT, COM_STMT_FETCH: _W_RESULT}
_WALKER.update({COM_STMT_PREPARE: _W_PREPARE, COM_STATISTICS: _W_ANY})
_WALKER.update({COM_FIELD_LIST: _W_FIELDS, COM_CHANGE_USER: _W_AUTH})
_METHODS: Final = {
    COM_QUERY: TEXT_QUERY,
    COM_STMT_PREPARE: PREPARE_STMT,
    COM_STMT_EXECUTE: EXEC_STMT,
}

# _step() answers
_MORE, _DONE, _DONE_AGAIN = 0, 1, 2  # DONE_AGAIN: done, and the packet belongs to the next one


def _lenenc(buf: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer at `pos` -> (value, position after it); (-1, pos) if cut."""
    if pos >= len(buf):
        return -1, pos
    b = buf[pos]
    if b < 0xFB:
        return b, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(b, 0)
    if not size or pos + 1 + size > len(buf):
        return -1, pos
    return int.from_bytes(buf[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def _header(buf: bytes | bytearray, pos: int) -> int:
    return 4 + (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16)


def _req_start(data: bytes, true_len: int) -> bool:
    """A record that begins a command (sequence id 0, a known command, a sane length), or a
    handshake response (sequence id 1, 4.1 capabilities)."""
    if len(data) < 5 or not 5 <= _header(data, 0) <= true_len:
        return False
    if data[3] == 1:  # CLIENT_PROTOCOL_41 is 0x200: bit 1 of the second capability byte
        return _header(data, 0) >= 36 and len(data) >= 6 and bool(data[5] & 0x02)
    return data[3] == 0 and data[4] in _KNOWN


def _resp_start(data: bytes, true_len: int) -> bool:
    """A record that begins a response (sequence id 1, a plausible first packet), or the
    server greeting (sequence id 0, protocol 10, a version that starts with a digit)."""
    if len(data) < 5:
        return False
    size = _header(data, 0)
    first = data[4]
    if size > true_len:
        return False
    if data[3] == 0:
        return first == 0x0A and data[5:6].isdigit()
    if data[3] != 1:
        return False
    if first in (0x00, 0xFF, 0xFB):
        return size >= 5 if first != 0x00 else size >= 7
    count, end = _lenenc(data[:size], 4)  # a column count, alone in its packet
    return count > 0 and size - 1 <= end <= size


def _err(payload: bytes) -> dict[str, object]:
    """ERR packet: error code, SQLSTATE (protocol 4.1 marker '#'), message."""
    out: dict[str, object] = {"error_code": _U16(payload, 1)[0] if len(payload) >= 3 else 0}
    if payload[3:4] == b"#":
        out["sqlstate"] = payload[4:9].decode("ascii", "replace")
        out["error"] = payload[9:].decode("utf-8", "replace")
    else:
        out["error"] = payload[3:].decode("utf-8", "replace")
    return out


def _ok_status(payload: bytes) -> tuple[int, int]:
    """(affected rows, server status) of an OK packet (0x00 or 0xFE header)."""
    affected, pos = _lenenc(payload, 1)
    _, pos = _lenenc(payload, pos)
    status = _U16(payload, pos)[0] if pos + 2 <= len(payload) else 0
    return affected, status


class _Cmd:
    """One command and what its response walk has seen so far."""

    __slots__ = (
        "affected",
        "code",
        "emit",
        "error",
        "extra_id",
        "left",
        "method",
        "ncols",
        "next_seq",
        "path",
        "req_bytes",
        "req_first_enter",
        "req_first_exit",
        "req_last_exit",
        "resp_bytes",
        "resp_first_enter",
        "resp_first_exit",
        "resp_last_exit",
        "rows",
        "state",
        "text",
        "truncated",
        "walker",
    )

    def __init__(self, code: int, enter: int, first_exit: int, last_exit: int) -> None:
        self.code = code
        self.method = _METHODS.get(code, "")
        self.emit = bool(self.method)
        self.walker = _WALKER.get(code, _W_OK)
        self.state = _FIRST
        self.path = self.text = ""
        self.left = self.ncols = self.rows = self.req_bytes = self.resp_bytes = 0
        self.affected = -1
        self.next_seq = 1
        self.extra_id = -1  # statement id
        self.error: dict[str, object] | None = None
        self.req_first_enter = enter
        self.req_first_exit = first_exit
        self.req_last_exit = last_exit
        self.resp_first_enter = self.resp_first_exit = self.resp_last_exit = 0
        self.truncated = False


class MySQLConnection(ParserBase):
    """MySQL/MariaDB on one TCP connection, seen from one process.

    `role` "client": commands are EGRESS, responses INGRESS; "server": the reverse. `feed()`
    takes one record per syscall, in order, and returns the pairs it completed; it never
    raises. `stats()` returns every counter.
    """

    __slots__ = (
        "_blind",
        "_cont_req",
        "_cont_resp",
        "_deprecate_eof",
        "_greeting_caps",
        "_handshake",
        "_max_path",
        "_max_pending",
        "_max_statements",
        "_pending",
        "_req",
        "_req_dir",
        "_resp",
        "_resp_dir",
        "_statements",
        "_tail",
        "database",
        "mismatches",
        "orphans",
        "pairs",
        "role",
        "tls",
        "truncated_responses",
        "unanswered_requests",
        "user",
    )

    def __init__(
        self,
        role: str,
        *,
        max_path: int = 2048,
        max_pending: int = 1024,
        max_statements: int = 1024,
    ) -> None:
        self._req_dir, self._resp_dir = roles(role, "MySQLConnection")
        self.role = role
        self._max_path = max_path
        self._max_pending = max_pending
        self._max_statements = max_statements
        keep = [max(4096, max_path * 4 + 64)] * 256
        self._req = LengthFramer(4, _header, self._on_req, self._on_req_desync, _req_start, keep)
        self._resp = LengthFramer(
            4, _header, self._on_resp, self._on_resp_desync, _resp_start, [4096] * 256
        )
        self._pending: deque[_Cmd] = deque()
        self._statements: dict[int, str] = {}
        self._deprecate_eof: bool | None = None
        self._greeting_caps = 0
        self._handshake = False  # between the server greeting and the first OK
        self._blind = False
        self._cont_req = self._cont_resp = False  # next packet continues a 16 MiB one
        self._tail: _Cmd | None = None
        self._out: list[L7Pair] = []
        self.database: str | None = None
        self.user: str | None = None
        self.closed_ns: int | None = None
        self.tls = False
        self.pairs = self.errors = self.lost_events = self.mismatches = self.orphans = 0
        self.unanswered_requests = self.truncated_responses = 0

    # -- public API ----------------------------------------------------------------------------

    def feed(
        self, direction: int, data: bytes, true_len: int, enter_ns: int, exit_ns: int
    ) -> list[L7Pair]:
        """Consume one syscall record; return the pairs it completed (often none)."""
        try:
            if direction == self._req_dir:
                if self._blind:
                    self._finish_blind()
                tail = self._tail
                if tail is not None and self._req.skip:
                    tail.req_last_exit = exit_ns
                self._req.feed(data, true_len, enter_ns, exit_ns)
                if not self._req.skip:
                    self._tail = None
            elif direction == self._resp_dir:
                if self._blind and self._resp.resyncing and not _resp_start(data, true_len):
                    self._blind_bytes(true_len, exit_ns)
                self._resp.feed(data, true_len, enter_ns, exit_ns)
            else:
                return []
        except Exception:  # a parser bug must not take the agent down; resync instead
            self._failed()
        return self._take()

    def close(self, ts_ns: int) -> list[L7Pair]:
        """The connection closed: finish a prepare waiting for a possible EOF; drop the rest."""
        if self.closed_ns is None:
            self.closed_ns = ts_ns
            if self._blind:
                self._finish_blind()
            pending = self._pending
            if pending and pending[0].state in (_PARAMS_END, _PCOLS_END):
                self._done(pending.popleft())
            self._reset(True)
            self._req.kill()
            self._resp.kill()
        out, self._out = self._out, []
        return out

    def stats(self) -> dict[str, int]:
        """All counters by name."""
        return {
            "pairs": self.pairs,
            "desyncs": self._req.desyncs + self._resp.desyncs,
            "skipped_records": self._req.skipped_records + self._resp.skipped_records,
            "unanswered_requests": self.unanswered_requests,
            "truncated_responses": self.truncated_responses,
            "mismatches": self.mismatches,
            "orphans": self.orphans,
            "lost_events": self.lost_events,
            "pending": len(self._pending),
            "statements": len(self._statements),
            "tls": int(self.tls),
            "errors": self.errors,
        }

    # -- client packets ------------------------------------------------------------------------

    def _on_req(self, pkt: bytes, total: int, complete: bool) -> None:
        cont = self._cont_req
        self._cont_req = total - 4 == _MAX_PAYLOAD
        if pkt[3] != 0 or cont:  # a handshake response, auth data, LOCAL INFILE data ...
            if self._handshake and pkt[3] == 1 and not cont:
                self._handshake_response(pkt)
            elif self._pending:
                cmd = self._pending[-1]
                cmd.req_bytes += total
                cmd.req_last_exit = self._req.exit
            return
        if total < 5:
            return
        code = pkt[4]
        req = self._req
        cmd = _Cmd(code, req.start_enter, req.start_exit, req.exit)
        cmd.req_bytes = total
        self._tail = cmd
        if code in (COM_QUERY, COM_STMT_PREPARE):
            cmd.text = cmd.path = self._text(pkt, complete)
        elif code in (COM_STMT_EXECUTE, COM_STMT_CLOSE):
            stmt = _U32(pkt, 5)[0] if len(pkt) >= 9 else -1  # -1: not captured
            cmd.extra_id = stmt
            name = str(stmt) if stmt >= 0 else "?"
            if code == COM_STMT_CLOSE:
                self._statements.pop(stmt, None)
                cmd.method, cmd.path = STMT_CLOSE, f"CLOSE STMT {name} "
                self._one_way(cmd)
                return
            if stmt == 0xFFFFFFFF and self._statements:  # MariaDB: the last one prepared
                stmt = next(reversed(self._statements))
            text = self._statements.get(stmt)
            cmd.path = text if text is not None else f"EXECUTE {name} *values*"
        elif code == COM_CHANGE_USER:
            self._statements.clear()  # the session is reset; its auth data is not read
        if code in _NO_RESPONSE:
            return
        pending = self._pending
        if len(pending) >= self._max_pending:
            self._drop_pending()
        pending.append(cmd)

    def _text(self, pkt: bytes, complete: bool) -> str:
        limit = self._max_path
        text = pkt[5 : 5 + limit * 4].decode("utf-8", "replace")
        if not complete or len(text) > limit or len(pkt) > 5 + limit * 4:
            return text[:limit] + "..."
        return text

    def _handshake_response(self, pkt: bytes) -> None:
        """HandshakeResponse41: capabilities, user and database; the auth data is skipped."""
        payload = pkt[4:]
        if len(payload) < 32:
            return
        caps = _U32(payload, 0)[0]
        if caps & _CLIENT_SSL and len(payload) == 32:  # SSLRequest: TLS from here on
            self.tls = True
            self._req.kill()
            self._resp.kill()
            return
        if self._greeting_caps:
            self._deprecate_eof = bool(caps & self._greeting_caps & _CLIENT_DEPRECATE_EOF)
        if not caps & _CLIENT_PROTOCOL_41:
            return
        end = payload.find(b"\0", 32)
        if end < 0:
            return
        self.user = payload[32:end].decode("utf-8", "replace")
        pos = end + 1
        if caps & _CLIENT_PLUGIN_AUTH_LENENC:
            size, pos = _lenenc(payload, pos)
        elif caps & _CLIENT_SECURE_CONNECTION:
            size, pos = (payload[pos], pos + 1) if pos < len(payload) else (-1, pos)
        else:
            nul = payload.find(b"\0", pos)
            size = nul - pos + 1 if nul >= 0 else -1
        if size < 0 or not caps & _CLIENT_CONNECT_WITH_DB:
            return
        pos += size
        end = payload.find(b"\0", pos)
        if end > pos:
            self.database = payload[pos:end].decode("utf-8", "replace")

    def _on_req_desync(self, unframed: int) -> None:
        self._tail = None
        self._cont_req = False

    # -- server packets ------------------------------------------------------------------------

    def _on_resp(self, pkt: bytes, total: int, complete: bool) -> None:
        if self._cont_resp:
            self._cont_resp = total - 4 == _MAX_PAYLOAD
            if self._pending:
                self._account(self._pending[0], total)
            return
        self._cont_resp = total - 4 == _MAX_PAYLOAD
        pending = self._pending
        seq = pkt[3]
        if not pending:
            if seq == 0 and pkt[4:5] == b"\x0a":
                self._greeting(pkt)
            elif self._handshake:
                self._auth_reply(pkt)
            else:
                self.orphans += 1
            return
        while pending:
            cmd = pending[0]
            if cmd.next_seq != seq:
                if seq != 1 or cmd.next_seq == 1:
                    self.mismatches += 1  # out of step; keep walking
                elif len(pending) > 1:  # a new response: the head's end was missed
                    self.mismatches += 1
                    pending.popleft()
                    if cmd.emit:
                        self.unanswered_requests += 1
                    continue
            if not cmd.resp_bytes and cmd.req_first_enter > self._resp.start_exit:
                self.orphans += 1  # answered before it was asked: a stale response
                return
            step = self._step(cmd, pkt, total)
            if step == _MORE:
                self._account(cmd, total)
                cmd.next_seq = (seq + 1) & 0xFF
                return
            pending.popleft()
            if step == _DONE:
                self._account(cmd, total)
                self._done(cmd)
                return
            self._done(cmd)  # _DONE_AGAIN: this packet starts the next command's response
        self.orphans += 1

    def _account(self, cmd: _Cmd, total: int) -> None:
        resp = self._resp
        if not cmd.resp_bytes:
            cmd.resp_first_enter = resp.start_enter
            cmd.resp_first_exit = resp.start_exit
        cmd.resp_bytes += total
        cmd.resp_last_exit = resp.exit

    def _step(self, cmd: _Cmd, pkt: bytes, total: int) -> int:
        """Advance `cmd`'s response walk by one packet."""
        state = cmd.state
        first = pkt[4] if len(pkt) > 4 else -1
        size = total - 4
        if state == _ROWS:
            if first == 0xFE and size < _MAX_PAYLOAD and size < 0x10000:
                return self._end_result(cmd, pkt, size)
            if first == 0xFF and size < 0x10000:
                cmd.error = _err(pkt[4:])
                return _DONE
            cmd.rows += 1
            return _MORE
        if state == _FIRST:
            return self._first(cmd, pkt, first, size)
        if state in (_COLS, _PARAMS, _PCOLS):
            cmd.left -= 1
            if cmd.left <= 0:
                if state == _COLS:
                    cmd.state = _COLS_END
                elif state == _PARAMS:
                    cmd.state = _PARAMS_END
                elif self._deprecate_eof:
                    return _DONE
                else:
                    cmd.state = _PCOLS_END
            return _MORE
        is_eof = first == 0xFE and size == 5
        if state == _COLS_END:
            self._deprecate_eof = not is_eof
            cmd.state = _ROWS
            return _MORE if is_eof else self._step(cmd, pkt, total)
        if state == _PARAMS_END:
            if is_eof or self._deprecate_eof is False:
                self._deprecate_eof = False
                return self._prepare_cols(cmd) if is_eof else _MORE
            self._deprecate_eof = True
            if not cmd.ncols:
                return _DONE_AGAIN
            cmd.state, cmd.left = _PCOLS, cmd.ncols
            return self._step(cmd, pkt, total)
        if state == _PCOLS_END:
            if is_eof:
                self._deprecate_eof = False
                return _DONE
            self._deprecate_eof = True
            return _DONE_AGAIN
        return _DONE

    def _first(self, cmd: _Cmd, pkt: bytes, first: int, size: int) -> int:
        walker = cmd.walker
        if first == 0xFF:
            cmd.error = _err(pkt[4:])
            return _DONE
        if walker == _W_ANY:
            return _DONE
        if first == 0x00 and walker != _W_FIELDS:
            if walker == _W_PREPARE:
                return self._prepare_ok(cmd, pkt)
            affected, status = _ok_status(pkt[4:])
            if cmd.affected < 0 or affected > 0:
                cmd.affected = affected
            return _MORE if status & _MORE_RESULTS and walker == _W_RESULT else _DONE
        if walker == _W_OK:
            return _DONE  # OK, or EOF (COM_SET_OPTION, COM_DEBUG)
        if walker == _W_AUTH:
            return _MORE if first in (0xFE, 0x01) else _DONE  # auth switch / more data
        if walker == _W_FIELDS:
            if first == 0xFE and size < 9:
                return _DONE
            return _MORE
        if first == 0xFB:  # LOCAL INFILE: the client sends the file, then OK/ERR follows
            return _MORE
        if walker != _W_RESULT:
            return _DONE
        count, pos = _lenenc(pkt, 4)
        if count <= 0:
            return _DONE
        cmd.ncols = count
        if pos + 1 == len(pkt) and cmd.code == COM_STMT_EXECUTE and pkt[pos] == 0:
            cmd.state = _COLS_END  # MariaDB: metadata skipped, the client has it cached
        else:
            cmd.state, cmd.left = _COLS, count
        return _MORE

    def _prepare_ok(self, cmd: _Cmd, pkt: bytes) -> int:
        if len(pkt) < 13:
            return _DONE
        stmt, ncols, nparams = struct.unpack_from("<IHH", pkt, 5)
        cmd.extra_id = stmt
        statements = self._statements
        if stmt not in statements and len(statements) >= self._max_statements:
            del statements[next(iter(statements))]
        statements[stmt] = cmd.text
        cmd.ncols = ncols
        if nparams:
            cmd.state, cmd.left = _PARAMS, nparams
            return _MORE
        return self._prepare_cols(cmd)

    def _prepare_cols(self, cmd: _Cmd) -> int:
        if not cmd.ncols:
            return _DONE
        cmd.state, cmd.left = _PCOLS, cmd.ncols
        return _MORE

    def _end_result(self, cmd: _Cmd, pkt: bytes, size: int) -> int:
        status = _U16(pkt, 7)[0] if size == 5 else _ok_status(pkt[4:])[1]
        if status & _MORE_RESULTS:
            cmd.state = _FIRST
            return _MORE
        return _DONE

    def _greeting(self, pkt: bytes) -> None:
        """Protocol 10 handshake: remember the server's capabilities; auth data is skipped."""
        self._handshake = True
        end = pkt.find(b"\0", 5)
        pos = end + 1 + 4 + 8 + 1  # version NUL, connection id, auth data part 1, filler
        if end < 0 or pos + 7 > len(pkt):
            return
        low = _U16(pkt, pos)[0]
        high = _U16(pkt, pos + 5)[0]
        self._greeting_caps = low | high << 16

    def _auth_reply(self, pkt: bytes) -> None:
        first = pkt[4:5]
        if first in (b"\x00", b"\xff"):  # OK: the command phase begins; ERR: login failed
            self._handshake = False

    def _on_resp_desync(self, unframed: int) -> None:
        self._cont_resp = False
        self._blind = bool(self._pending)
        if self._blind:
            self._blind_bytes(unframed, self._resp.exit)

    def _blind_bytes(self, size: int, exit_ns: int) -> None:
        cmd = self._pending[0] if self._pending else None
        if cmd is not None and cmd.resp_bytes:
            cmd.resp_bytes += size
            cmd.resp_last_exit = exit_ns

    def _finish_blind(self) -> None:
        """A new command means the response the lost framing hid is over: emit it, truncated."""
        self._blind = False
        pending = self._pending
        if len(pending) == 1 and pending[0].resp_bytes:
            cmd = pending.popleft()
            cmd.truncated = True
            self.truncated_responses += 1
            self._done(cmd)
        self._drop_pending()

    # -- pairs ---------------------------------------------------------------------------------

    def _done(self, cmd: _Cmd) -> None:
        if not cmd.emit:
            return
        if cmd.error is not None:
            status = STATUS_ERROR
        elif cmd.resp_bytes:
            status = STATUS_OK
        else:
            status = STATUS_UNKNOWN
        req = (cmd.req_bytes, cmd.req_first_enter, cmd.req_first_exit, cmd.req_last_exit)
        resp = (cmd.resp_bytes, cmd.resp_first_enter, cmd.resp_first_exit, cmd.resp_last_exit)
        self._out.append(
            make_pair(PROTOCOL, cmd.method, cmd.path, status, req, resp, False, self._extra(cmd))
        )
        self.pairs += 1

    def _one_way(self, cmd: _Cmd) -> None:
        """A command without a response (COM_STMT_CLOSE): its pair is complete at once."""
        req = self._req
        times = (cmd.req_bytes, cmd.req_first_enter, cmd.req_first_exit, cmd.req_last_exit)
        end = (0, req.enter, req.exit, req.exit)
        self._out.append(
            make_pair(
                PROTOCOL, cmd.method, cmd.path, STATUS_OK, times, end, False, self._extra(cmd)
            )
        )
        self.pairs += 1

    def _extra(self, cmd: _Cmd) -> dict[str, object]:
        extra: dict[str, object] = {}
        if self.database is not None:
            extra["database"] = self.database
        if self.user is not None:
            extra["user"] = self.user
        if cmd.extra_id >= 0:
            extra["statement_id"] = cmd.extra_id
        if cmd.error is not None:
            extra.update(cmd.error)
        elif cmd.ncols and cmd.method != PREPARE_STMT:
            extra["rows"] = cmd.rows
        elif cmd.affected >= 0:
            extra["affected_rows"] = cmd.affected
        if cmd.truncated:
            extra["truncated"] = True
        return extra

    # -- both ----------------------------------------------------------------------------------

    def _drop_pending(self) -> None:
        self.unanswered_requests += sum(1 for c in self._pending if c.emit)
        self._pending.clear()

    def _reset(self, resync: bool) -> None:
        self._req.reset(resync)
        self._resp.reset(resync)
        self._drop_pending()
        self._blind = self._cont_req = self._cont_resp = False
        self._tail = None
