"""A sans-I/O PostgreSQL (protocol 3.0) parser that pairs statements with results, per connection.

Framing is `LengthFramer`: a type byte and a 4-byte big-endian length (the startup message,
SSLRequest, GSSENCRequest and CancelRequest have no type byte). Pairing follows the protocol's
strict ordering: every frontend message that the backend answers pushes a *slot* saying which
backend message ends its answer (`ParseComplete` for Parse, `CommandComplete` for Execute,
`ReadyForQuery` for Sync and Query ...). Backend messages consume slots in order; NoticeResponse,
ParameterStatus and NotificationResponse may come at any time and are only counted.

Exchanges (what becomes one `L7Pair`):

* Simple query (`Q`): one SIMPLE_QUERY pair from Query to ReadyForQuery, path = the SQL text as
  sent (a multi-statement string stays one pair); `extra["tag"]` is the last CommandComplete tag.
  COPY ... FROM STDIN / TO STDOUT inside it stays in the same pair (CopyData counts as bytes).
* Extended query: frontend messages are grouped, and **one EXTENDED_QUERY pair is emitted per
  Execute**: the group is the Parse/Bind/Describe messages before it and the Execute. Its path is
  the executed statement's SQL (the Go agent's shape for a Bind of a known statement), or
  `EXECUTE <name> *values*` when the statement was prepared before capture began. A group with
  a Parse but no Execute before Sync (a named statement prepared for later) is one pair with
  path `PREPARE <name> AS <query>` (the Go agent's Parse shape). Groups with neither (a lone
  Describe, a Close of a statement) emit nothing. The last group before a Sync ends at the
  ReadyForQuery, so its pair includes the Sync; pipelines of many groups before one Sync give
  one pair per Execute, in order.
* An ErrorResponse fails the group it answers (status 2, `extra` sqlstate / error / severity);
  the backend then skips to the Sync, so the groups it skipped are dropped, never emitted, and
  counted in `skipped_after_error`.
* Named prepared statements are remembered per connection (bounded, oldest first out) and
  forgotten on Close; portals likewise, so an Execute of a suspended portal is still named.
* Terminate (`X`) is a one-way CLOSE_OR_TERMINATE pair, status 1, path "TERMINATE" (the Go
  agent sends the five raw bytes).
* The startup message gives `database` and `user` (put in every later pair's `extra`). The
  authentication exchange is parsed only as far as its framing: PasswordMessage and SASL data
  are never read. SSLRequest/GSSENCRequest answered `S`/`G` means TLS/GSS bytes follow: the
  parser stops for this connection (TLS traffic is captured above the socket as its own
  stream); answered `N`, the startup message follows in clear.

Robustness: `feed()` never raises. A lost record or a cut header makes the affected direction
resync on a record that begins with a plausible message; pending slots are dropped (counted in
`unanswered_requests`). A backend message that does not fit the oldest slot drops every slot
(`mismatches`), as does a response whose record ended before its request began (`orphans`).
Bounds: `max_pending` slots, `max_statements` statements and portals, paths of `max_path`
characters ("..." appended when cut), carried messages by the framer's keep table.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Final

from alaz.protocols.pair import (
    STATUS_ERROR,
    STATUS_OK,
    L7Pair,
    LengthFramer,
    ParserBase,
    make_pair,
    roles,
)

__all__ = ["PROTOCOL", "PostgresConnection"]

PROTOCOL: Final = "POSTGRES"
SIMPLE_QUERY: Final = "SIMPLE_QUERY"
EXTENDED_QUERY: Final = "EXTENDED_QUERY"
CLOSE_OR_TERMINATE: Final = "CLOSE_OR_TERMINATE"

_U32 = struct.Struct(">I").unpack_from
_MAX_LEN: Final = 1 << 30  # the backend's own limit for a message

_V3: Final = 196608  # protocol 3.0
_SSL_REQUEST: Final = 80877103
_GSS_REQUEST: Final = 80877104
_CANCEL_REQUEST: Final = 80877102
_UNTYPED_CODES: Final = frozenset((_V3, _SSL_REQUEST, _GSS_REQUEST, _CANCEL_REQUEST))

# Slot kinds: what a frontend message waits for.
_STARTUP, _SIMPLE, _PARSE, _BIND, _DESC, _EXEC, _CLOSE, _SYNC, _FUNC = range(9)
# The backend message that ends each kind's answer (besides ErrorResponse).
_ENDS: Final = {
    _STARTUP: b"Z",
    _SIMPLE: b"Z",
    _PARSE: b"1",
    _BIND: b"2",
    _DESC: b"Tn",
    _EXEC: b"CIs",
    _CLOSE: b"3",
    _SYNC: b"Z",
    _FUNC: b"Z",
}
_ASYNC: Final = frozenset(b"NSA")  # Notice, ParameterStatus, Notification: at any time


def _table(default: int, by_tag: dict[str, int]) -> list[int]:
    table = [default] * 256
    for tag, n in by_tag.items():
        table[ord(tag)] = n
    return table


# The largest length (the 4-byte field) each message type can have; 0: not a message type.
# Tight limits make a record that begins mid-message unlikely to pass for a message start.
_RESP_MAX: Final = _table(
    0,
    {
        "1": 4,
        "2": 4,
        "3": 4,
        "n": 4,
        "I": 4,
        "s": 4,
        "c": 4,
        "Z": 5,
        "K": 260,
        "R": 1 << 16,
        "S": 1 << 14,
        "C": 1 << 12,
        "N": 1 << 16,
        "E": 1 << 16,
        "v": 1 << 16,
        "T": 1 << 24,
        "t": 1 << 20,
        "G": 1 << 20,
        "H": 1 << 20,
        "W": 1 << 20,
        "A": 1 << 20,
        "D": _MAX_LEN,
        "d": _MAX_LEN,
        "V": _MAX_LEN,
    },
)
_REQ_MAX: Final = _table(
    0,
    {
        "S": 4,
        "H": 4,
        "X": 4,
        "c": 4,
        "D": 1 << 16,
        "E": 1 << 16,
        "C": 1 << 16,
        "f": 1 << 16,
        "p": 1 << 20,
        "Q": _MAX_LEN,
        "P": _MAX_LEN,
        "B": _MAX_LEN,
        "d": _MAX_LEN,
        "F": _MAX_LEN,
    },
)
_REQ_FIRST: Final = _table(0, {"Q": _MAX_LEN, "P": _MAX_LEN, "B": _MAX_LEN, "X": 4})


def _walk(data: bytes, true_len: int, first: list[int], limits: list[int]) -> bool:
    """Whether `data` begins with a chain of plausible messages (a resync point).

    Every header within the captured bytes must be valid, the first one's type must be in
    `first`, and no message may run past `true_len`.
    """
    n = len(data)
    if n < 5 or not 4 <= _U32(data, 1)[0] <= first[data[0]]:
        return False
    pos = 0
    while pos + 5 <= n:
        length: int = _U32(data, pos + 1)[0]
        if not 4 <= length <= limits[data[pos]] or pos + 1 + length > true_len:
            return False
        pos += 1 + length
    return True


def _is_startup(data: bytes) -> bool:
    """Whether a record begins with an untyped message (startup, SSL/GSS/cancel request)."""
    if len(data) < 8 or data[0] != 0:
        return False
    length, code = struct.unpack_from(">II", data)
    return 8 <= length <= 10000 and code in _UNTYPED_CODES


def _resp_header(buf: bytes | bytearray, pos: int) -> int:
    n: int = _U32(buf, pos + 1)[0]
    return n + 1 if 4 <= n <= _RESP_MAX[buf[pos]] else -1


def _resp_start(data: bytes, true_len: int) -> bool:
    return _walk(data, true_len, _RESP_MAX, _RESP_MAX)


def _cstr(msg: bytes, pos: int) -> tuple[str, int]:
    """The NUL-terminated string at `pos` and the position after its NUL (len(msg) if cut)."""
    end = msg.find(b"\0", pos)
    if end < 0:
        end = len(msg)
    return msg[pos:end].decode("utf-8", "replace"), end + 1


def _error_fields(msg: bytes) -> dict[str, object]:
    """ErrorResponse fields: SQLSTATE code, message, severity (the rest is not kept)."""
    out: dict[str, object] = {}
    pos, n = 5, len(msg)
    while pos < n and msg[pos] != 0:
        code = msg[pos]
        value, pos = _cstr(msg, pos + 1)
        if code == 67:  # C
            out["sqlstate"] = value
        elif code == 77:  # M
            out["error"] = value
        elif code == 86 or (code == 83 and "severity" not in out):  # V (not localized), S
            out["severity"] = value
    return out


class _Ex:
    """One exchange being assembled: a simple query, or an extended-protocol group."""

    __slots__ = (
        "bind_stmt",
        "emit",
        "error",
        "executed",
        "method",
        "open",
        "parse",
        "path",
        "portal",
        "req_bytes",
        "req_first_enter",
        "req_first_exit",
        "req_last_exit",
        "resp_bytes",
        "resp_first_enter",
        "resp_first_exit",
        "resp_last_exit",
        "rows",
        "skipped",
        "tag",
        "truncated",
    )

    def __init__(self, method: str, enter: int, first_exit: int, last_exit: int) -> None:
        self.method = method
        self.path = ""
        self.req_bytes = self.resp_bytes = self.rows = self.open = 0
        self.req_first_enter = enter
        self.req_first_exit = first_exit
        self.req_last_exit = last_exit
        self.resp_first_enter = self.resp_first_exit = self.resp_last_exit = 0
        self.error: dict[str, object] | None = None
        self.tag = ""
        self.parse: tuple[str, str] | None = None  # (statement name, query) of a Parse
        self.bind_stmt: str | None = None
        self.portal = ""
        self.executed = self.skipped = self.truncated = False
        self.emit = True


_Slot = tuple[int, "_Ex | None"]


class PostgresConnection(ParserBase):
    """PostgreSQL on one TCP connection, seen from one process.

    `role` "client": frontend messages are EGRESS, backend INGRESS; "server": the reverse.
    `feed()` takes one record per syscall, in order, and returns the pairs it completed; it
    never raises. `stats()` returns every counter.
    """

    __slots__ = (
        "_blind",
        "_copy",
        "_group",
        "_last_group",
        "_max_path",
        "_max_pending",
        "_max_statements",
        "_portals",
        "_req",
        "_req_dir",
        "_resp",
        "_resp_dir",
        "_slots",
        "_ssl_wait",
        "_statements",
        "_tail",
        "_untyped",
        "database",
        "mismatches",
        "orphans",
        "pairs",
        "role",
        "skipped_after_error",
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
        max_pending: int = 4096,
        max_statements: int = 1024,
    ) -> None:
        self._req_dir, self._resp_dir = roles(role, "PostgresConnection")
        self.role = role
        self._max_path = max_path
        self._max_pending = max_pending
        self._max_statements = max_statements
        query_keep = max_path * 4 + 64  # UTF-8: up to 4 bytes per character
        self._req = LengthFramer(
            5,
            self._req_header,
            self._on_req,
            self._on_req_desync,
            self._req_start,
            _table(64, {"Q": query_keep, "P": query_keep, "B": 512, "p": 0, "d": 0}),
        )
        self._resp = LengthFramer(
            5,
            _resp_header,
            self._on_resp,
            self._on_resp_desync,
            _resp_start,
            _table(64, {"E": 4096, "C": 256, "D": 0, "d": 0, "T": 0, "N": 0, "S": 0}),
        )
        self._blind = False  # backend framing lost while answers were pending
        self._untyped: bool | None = None  # the next frontend message has no type byte
        self._ssl_wait = False  # an SSLRequest/GSSENCRequest awaits its one-byte answer
        self._slots: deque[_Slot] = deque()
        self._group: _Ex | None = None  # extended-protocol group being sent
        self._last_group: _Ex | None = None  # last group since the previous Sync
        self._copy: _Ex | None = None  # exchange a COPY FROM STDIN streams into
        self._tail: _Ex | None = None  # exchange whose request's tail is still being skipped
        self._statements: dict[str, str] = {}
        self._portals: dict[str, str] = {}
        self._out: list[L7Pair] = []
        self.database: str | None = None
        self.user: str | None = None
        self.closed_ns: int | None = None
        self.tls = False
        self.pairs = self.errors = self.lost_events = self.mismatches = self.orphans = 0
        self.unanswered_requests = self.skipped_after_error = self.truncated_responses = 0

    # -- public API ----------------------------------------------------------------------------

    def feed(
        self, direction: int, data: bytes, true_len: int, enter_ns: int, exit_ns: int
    ) -> list[L7Pair]:
        """Consume one syscall record; return the pairs it completed (often none)."""
        try:
            if direction == self._req_dir:
                if self._untyped is None:  # typed messages start with a letter, never 00
                    self._untyped = data[:1] == b"\0"
                if self._blind:
                    self._finish_blind()
                tail = self._tail
                if tail is not None and self._req.skip:
                    tail.req_last_exit = exit_ns
                self._req.feed(data, true_len, enter_ns, exit_ns)
                if not self._req.skip:
                    self._tail = None
            elif direction == self._resp_dir:
                if self._ssl_wait and data:
                    data, true_len = self._ssl_answer(data, true_len)
                if self._blind and self._resp.resyncing:
                    self._blind_record(data, true_len, exit_ns)
                self._resp.feed(data, true_len, enter_ns, exit_ns)
            else:
                return []
        except Exception:  # a parser bug must not take the agent down; resync instead
            self._failed()
        return self._take()

    def close(self, ts_ns: int) -> list[L7Pair]:
        """The connection closed; requests still waiting are dropped (counted). Idempotent."""
        if self.closed_ns is None:
            self.closed_ns = ts_ns
            if self._blind:
                self._finish_blind()
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
            "skipped_after_error": self.skipped_after_error,
            "mismatches": self.mismatches,
            "orphans": self.orphans,
            "lost_events": self.lost_events,
            "truncated_responses": self.truncated_responses,
            "pending": len(self._slots),
            "statements": len(self._statements),
            "tls": int(self.tls),
            "errors": self.errors,
        }

    # -- frontend ------------------------------------------------------------------------------

    def _req_header(self, buf: bytes | bytearray, pos: int) -> int:
        if self._untyped:
            n: int = _U32(buf, pos)[0]
            return n if 8 <= n <= 10000 else -1
        n = _U32(buf, pos + 1)[0]
        return n + 1 if 4 <= n <= _REQ_MAX[buf[pos]] else -1

    def _req_start(self, data: bytes, true_len: int) -> bool:
        if _is_startup(data):
            self._untyped = True
            return True
        return _walk(data, true_len, _REQ_FIRST, _REQ_MAX)

    def _on_req(self, msg: bytes, total: int, complete: bool) -> None:
        if self._untyped:
            self._on_untyped(msg, total)
            return
        tag = msg[0]
        if tag == 80:  # P Parse
            g = self._member(total, _PARSE)
            name, pos = _cstr(msg, 5)
            query = self._text(msg, pos, complete)
            g.parse = (name, query)
            self._remember(self._statements, name, query)
        elif tag == 66:  # B Bind
            g = self._member(total, _BIND)
            portal, pos = _cstr(msg, 5)
            stmt, _ = _cstr(msg, pos)
            g.bind_stmt = stmt
            g.portal = portal
            self._remember(self._portals, portal, stmt)
        elif tag == 68:  # D Describe
            self._member(total, _DESC)
        elif tag == 69:  # E Execute
            g = self._member(total, _EXEC)
            g.portal = _cstr(msg, 5)[0] if g.bind_stmt is None else g.portal
            g.executed = True
            g.path = self._exec_path(g)
            self._group = None
        elif tag == 83:  # S Sync
            self._sync(total)
        elif tag == 81:  # Q Query
            ex = self._new_ex(SIMPLE_QUERY, total)
            ex.path = self._text(msg, 5, complete)
            self._push(_SIMPLE, ex)
        elif tag == 67:  # C Close (a statement or a portal)
            self._member(total, _CLOSE)
            name = _cstr(msg, 6)[0]
            (self._statements if msg[5:6] == b"S" else self._portals).pop(name, None)
        elif tag == 72:  # H Flush: no answer of its own
            self._add_req(self._group or self._last_group, total)
        elif tag in (100, 99, 102):  # d CopyData, c CopyDone, f CopyFail
            self._add_req(self._copy, total)
        elif tag == 88:  # X Terminate
            self._terminate(total)
        elif tag == 70:  # F FunctionCall: answered by FunctionCallResponse, then ReadyForQuery
            ex = self._new_ex(SIMPLE_QUERY, total)
            ex.emit = False
            self._push(_FUNC, ex)
        elif tag == 112:  # p PasswordMessage / SASL data: never read
            pass
        else:
            self._req.desync()

    def _on_untyped(self, msg: bytes, total: int) -> None:
        code = _U32(msg, 4)[0] if len(msg) >= 8 else 0
        if code in (_SSL_REQUEST, _GSS_REQUEST):
            self._ssl_wait = True  # the answer is one byte; a startup message may follow
            return
        self._untyped = False
        if code != _V3:
            return  # CancelRequest (the connection closes) or an unknown version
        params = msg[8:].split(b"\0")
        for key, value in zip(params[::2], params[1::2], strict=False):
            if key == b"user":
                self.user = value.decode("utf-8", "replace")
            elif key == b"database":
                self.database = value.decode("utf-8", "replace")
        ex = self._new_ex("", total)
        ex.emit = False
        self._push(_STARTUP, ex)

    def _ssl_answer(self, data: bytes, true_len: int) -> tuple[bytes, int]:
        self._ssl_wait = False
        if data[:1] == b"N":
            self._untyped = True  # the startup message follows in clear
        elif data[:1] in (b"S", b"G"):
            self.tls = True
            self._req.kill()  # encrypted from here on
            self._resp.kill()
        return data[1:], true_len - 1

    def _new_ex(self, method: str, total: int) -> _Ex:
        req = self._req
        ex = _Ex(method, req.start_enter, req.start_exit, req.exit)
        ex.req_bytes = total
        self._tail = ex
        return ex

    def _member(self, total: int, kind: int) -> _Ex:
        """Add a Parse/Bind/Describe/Execute/Close to the group being sent (start one)."""
        g = self._group
        if g is None:
            g = self._group = self._last_group = self._new_ex(EXTENDED_QUERY, total)
        else:
            g.req_bytes += total
            g.req_last_exit = self._req.exit
            self._tail = g
        self._push(kind, g)
        return g

    def _add_req(self, ex: _Ex | None, total: int) -> None:
        if ex is not None:
            ex.req_bytes += total
            ex.req_last_exit = self._req.exit
            self._tail = ex

    def _sync(self, total: int) -> None:
        g = self._group
        if g is not None:  # a group without Execute: a prepare (or a lone Describe/Close)
            self._group = None
            if g.parse is not None and not g.executed:
                name, query = g.parse
                g.path = self._bound(f"PREPARE {name} AS {query}")
            else:
                g.emit = False
        last = self._last_group
        self._last_group = None
        self._add_req(last, total)
        self._push(_SYNC, last)

    def _terminate(self, total: int) -> None:
        req = self._req
        times = (total, req.start_enter, req.start_exit, req.exit)
        end = (0, req.enter, req.exit, req.exit)
        self._out.append(
            make_pair(
                PROTOCOL,
                CLOSE_OR_TERMINATE,
                "TERMINATE",
                STATUS_OK,
                times,
                end,
                False,
                self._extra(None),
            )
        )
        self.pairs += 1

    def _push(self, kind: int, ex: _Ex | None) -> None:
        slots = self._slots
        if len(slots) >= self._max_pending:
            self._drop_slots()
        if ex is not None:
            ex.open += 1
        slots.append((kind, ex))

    def _text(self, msg: bytes, pos: int, complete: bool) -> str:
        end = msg.find(b"\0", pos)
        cut = end < 0 or not complete
        text = msg[pos : len(msg) if end < 0 else end].decode("utf-8", "replace")
        if cut or len(text) > self._max_path:
            return text[: self._max_path] + "..."
        return text

    def _bound(self, text: str) -> str:
        return text if len(text) <= self._max_path else text[: self._max_path] + "..."

    def _exec_path(self, g: _Ex) -> str:
        stmt = g.bind_stmt
        if stmt is None:  # Execute of a portal bound earlier
            stmt = self._portals.get(g.portal)
        if g.parse is not None and g.parse[0] == stmt:
            return g.parse[1]
        if stmt is not None:
            query = self._statements.get(stmt)
            if query is not None:
                return query
        return f"EXECUTE {stmt if stmt is not None else g.portal} *values*"

    def _remember(self, table: dict[str, str], key: str, value: str) -> None:
        if key not in table and len(table) >= self._max_statements:
            del table[next(iter(table))]
        table[key] = value

    def _on_req_desync(self, unframed: int) -> None:
        g = self._group
        if g is not None and g.emit:  # its Execute (if any) was lost: it cannot be named
            g.emit = False
            self.unanswered_requests += 1
        self._group = self._last_group = self._tail = None
        self._untyped = False

    # -- backend -------------------------------------------------------------------------------

    def _on_resp(self, msg: bytes, total: int, complete: bool) -> None:
        tag = msg[0]
        slots = self._slots
        if not slots:
            if tag not in _ASYNC:
                self.orphans += 1
            return
        kind, ex = slots[0]
        resp = self._resp
        if ex is not None:
            if not ex.resp_bytes:
                if ex.req_first_enter > resp.start_exit:  # answered before it was asked:
                    self.orphans += 1  # a stale answer to a lost request; this one waits on
                    return
                ex.resp_first_enter = resp.start_enter
                ex.resp_first_exit = resp.start_exit
            ex.resp_bytes += total
            ex.resp_last_exit = resp.exit
        if tag in _ENDS[kind]:
            slots.popleft()
            if tag == 67:  # C CommandComplete
                self._command_complete(ex, msg)
            elif tag == 90:  # Z ReadyForQuery
                self._copy = None
            if ex is not None:
                ex.open -= 1
                self._settle(ex, kind)
        elif tag == 68:  # D DataRow
            if ex is not None:
                ex.rows += 1
        elif tag == 69:  # E ErrorResponse
            self._error(kind, ex, msg)
        elif tag == 67 and kind == _SIMPLE:  # one statement of a multi-statement query
            self._command_complete(ex, msg)
        elif tag == 71:  # G CopyInResponse: the frontend streams CopyData next
            self._copy = ex
        elif tag not in _ASYNC and not _fits(kind, tag):
            self.mismatches += 1
            self._drop_slots()

    def _command_complete(self, ex: _Ex | None, msg: bytes) -> None:
        if ex is not None:
            ex.tag = msg[5:-1].decode("ascii", "replace")

    def _error(self, kind: int, ex: _Ex | None, msg: bytes) -> None:
        if ex is not None and ex.error is None:
            ex.error = _error_fields(msg)
        if kind in (_SIMPLE, _STARTUP, _FUNC, _SYNC):
            return  # ReadyForQuery still ends it (a failed startup closes the connection)
        # The backend now discards frontend messages up to the next Sync.
        slots = self._slots
        while slots and slots[0][0] != _SYNC:
            _, skipped = slots.popleft()
            if skipped is None:
                continue
            skipped.open -= 1
            if skipped is not ex and not skipped.skipped:
                skipped.skipped = True
                self.skipped_after_error += 1
        if ex is not None:
            self._settle(ex, _EXEC)

    def _settle(self, ex: _Ex, kind: int) -> None:
        """Emit `ex` if its answer is complete; the last group before a Sync waits for Z."""
        if ex.open > 0 or ex is self._group:
            return
        slots = self._slots
        if kind != _SYNC and slots and slots[0][0] == _SYNC and slots[0][1] is ex:
            return
        if ex.emit and not ex.skipped:
            self._emit(ex)
        ex.emit = False

    def _emit(self, ex: _Ex) -> None:
        status = STATUS_OK if ex.error is None else STATUS_ERROR
        req = (ex.req_bytes, ex.req_first_enter, ex.req_first_exit, ex.req_last_exit)
        resp = (ex.resp_bytes, ex.resp_first_enter, ex.resp_first_exit, ex.resp_last_exit)
        self._out.append(
            make_pair(PROTOCOL, ex.method, ex.path, status, req, resp, False, self._extra(ex))
        )
        self.pairs += 1

    def _extra(self, ex: _Ex | None) -> dict[str, object]:
        extra: dict[str, object] = {}
        if self.database is not None:
            extra["database"] = self.database
        if self.user is not None:
            extra["user"] = self.user
        if ex is not None:
            if ex.tag:
                extra["tag"] = ex.tag
            if ex.rows:
                extra["rows"] = ex.rows
            if ex.parse is not None and ex.parse[0]:
                extra["statement"] = ex.parse[0]
            elif ex.bind_stmt:
                extra["statement"] = ex.bind_stmt
            if ex.error is not None:
                extra.update(ex.error)
            if ex.truncated:
                extra["truncated"] = True
        return extra

    def _on_resp_desync(self, unframed: int) -> None:
        self._blind = bool(self._slots)
        if self._blind:
            self._blind_bytes(unframed, self._resp.exit)

    def _blind_record(self, data: bytes, true_len: int, exit_ns: int) -> None:
        """A backend record seen while framing is lost: it still belongs to the oldest answer."""
        if not _resp_start(data, true_len):
            self._blind_bytes(true_len, exit_ns)

    def _blind_bytes(self, size: int, exit_ns: int) -> None:
        ex = self._slots[0][1] if self._slots else None
        if ex is not None and ex.resp_bytes:
            ex.resp_bytes += size
            ex.resp_last_exit = exit_ns

    def _finish_blind(self) -> None:
        """A new request means the answers the lost framing hid are over (no pipelining).

        With one exchange pending it is emitted, marked truncated, with the status its first
        answer showed (as the Go agent decides it); with several, which answer ended where is
        unknowable, so they are dropped.
        """
        self._blind = False
        pending = []
        for _, ex in self._slots:
            if ex is not None and ex.emit and not ex.skipped and ex not in pending:
                pending.append(ex)
        if len(pending) == 1 and pending[0] is not self._group and pending[0].resp_bytes:
            ex = pending[0]
            ex.truncated = True
            self.truncated_responses += 1
            self._slots.clear()
            self._emit(ex)
            ex.emit = False
        self._drop_slots()

    # -- both ----------------------------------------------------------------------------------

    def _drop_slots(self) -> None:
        seen: set[int] = set()
        for _, ex in self._slots:
            if ex is not None and ex.emit and id(ex) not in seen:
                seen.add(id(ex))
                self.unanswered_requests += 1
        self._slots.clear()
        self._copy = None

    def _reset(self, resync: bool) -> None:
        self._req.reset(resync)
        self._resp.reset(resync)
        self._drop_slots()
        self._group = self._last_group = self._tail = None
        self._ssl_wait = self._blind = False
        if self._untyped:
            self._untyped = False


def _fits(kind: int, tag: int) -> bool:
    """Whether backend message `tag` may come (without ending it) inside a `kind` answer."""
    if kind == _SIMPLE:
        return tag in b"TDCIGHWdc"
    if kind == _EXEC:
        return tag in b"DGHWdc"
    if kind == _DESC:
        return tag == 116  # t ParameterDescription precedes T/n
    if kind == _STARTUP:
        return tag in b"RKv"
    if kind == _FUNC:
        return tag == 86  # V
    return False
