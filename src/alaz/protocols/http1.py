"""A sans-I/O HTTP/1.x parser that pairs requests with responses, one instance per connection.

Input is what the kernel side captures: one record per read/write syscall, carrying a direction,
the first N bytes of the payload and the syscall's TRUE byte count. Bytes past N are a gap the
parser never sees; inside a body (Content-Length or chunk data) it skips them by count, so a
1 MiB body captured 1 KiB per syscall still ends exactly where the next pipelined message begins.

Each direction is one `_Stream`: a small state machine (head, body, chunk-size line, chunk data,
trailer, read-until-close) with one bounded carry buffer for a head or line split across records.
Requests are queued in FIFO order when their head is parsed; a response head takes the oldest one.

Resync policy. A gap that falls where sync is impossible (inside a head or a chunk-size line, or
over the start of the next message), an invalid head, or a head over `max_head` bytes is a
*desync*: the partial message is dropped and that direction waits for a record that *begins* with
a message start (`GET /x HTTP/1.1` or `HTTP/1.1 200`). Pipelining makes the number of messages
hidden in a gap unknowable, so pairing after a loss is guarded, never guessed:

* request side: a request whose head was lost leaves a *barrier* in the queue, and the response
  that reaches the barrier is dropped instead of being paired with the next request;
* response side: every request still queued is dropped (its response may have been in the gap);
* `lost()` (records lost, direction unknown): both at once -- queue cleared, both sides resync;
* always: a response whose first syscall returned before its candidate request's first syscall
  began cannot answer it and is dropped as an orphan. With a non-pipelining client (the common
  case) these rules pair exactly; with deep pipelining and several requests lost in one gap, a
  later response can still be paired with the wrong request.

Limits: the carry buffer holds at most `max_head` bytes (64 KiB), the pending queue
`max_pending` requests (1024, the oldest dropped and counted); nothing else grows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

__all__ = [
    "EGRESS",
    "FLAG_CLOSE",
    "FLAG_GAP",
    "FLAG_TRUNCATED",
    "FLAG_UPGRADE",
    "INGRESS",
    "Http1Connection",
    "Http1Pair",
    "http1_pair",
]

EGRESS: Final = 0  # this process wrote the bytes
INGRESS: Final = 1  # this process read the bytes

FLAG_TRUNCATED: Final = 1  # a message ended early (desync or close) before its framing said so
FLAG_CLOSE: Final = 2  # the connection closes after this exchange (Connection: close, EOF body)
FLAG_UPGRADE: Final = 4  # 101 Switching Protocols or a CONNECT tunnel: parsing stopped here
FLAG_GAP: Final = 8  # some bytes were not captured; sizes still come from true byte counts


class Http1Pair(NamedTuple):
    """One request paired with its response.

    Sizes are true byte counts, heads included (a request still sending its body when the
    response ended counts what was sent by then). Times are the syscall records' monotonic ns.
    `flags` is a sum of FLAG_*.
    """

    method: str
    path: str  # the request-target, query included
    host: str | None  # the Host header, lowercased (host names are case-insensitive)
    status: int
    req_bytes: int
    resp_bytes: int
    req_first_enter_ns: int  # syscall carrying the request's first byte
    req_first_exit_ns: int
    req_last_exit_ns: int  # syscall carrying the request's last byte
    resp_first_enter_ns: int
    resp_first_exit_ns: int
    resp_last_exit_ns: int
    version: str  # of the request line: "1.1" or "1.0"
    flags: int = 0


# tuple.__new__ skips NamedTuple's Python-level __new__: a third of the cost of building a pair.
_new_pair: Any = tuple.__new__


def http1_pair(*fields: Any) -> Http1Pair:
    """Http1Connection's default `make_pair`: an Http1Pair of the fields, in its order."""
    pair: Http1Pair = _new_pair(Http1Pair, fields)
    return pair


# Stream states. Order matters: states >= _RESYNC ignore input until a message start.
_HEAD: Final = 0
_BODY: Final = 1
_CHUNK_SIZE: Final = 2
_CHUNK_DATA: Final = 3
_TRAILER: Final = 4
_UNTIL_CLOSE: Final = 5
_RESYNC: Final = 6
_DEAD: Final = 7

# Framing answers of a head hook (>= 0 is a Content-Length).
_CHUNKED: Final = -1
_READ_TO_CLOSE: Final = -2
_INVALID: Final = -3

_MAX_LINE: Final = 4096  # a chunk-size line (with extensions) longer than this is garbage
_MAX_METHOD: Final = 20

_METHODS: Final = {
    m.encode(): m
    for m in (
        *("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"),
        *("PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT"),
        *("SEARCH", "PURGE"),
    )
}
_METHOD_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_VERSIONS: Final = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}
_RESP_VERSIONS: Final = {b"HTTP/1.1 ": True, b"HTTP/1.0 ": False}  # -> keep-alive by default
_AFTER_STATUS: Final = (b" ", b"\r", b"\n")

# A queued request is a list (5x cheaper to build than a slots object):
# [method, path, host, version, first_enter, first_exit, last_exit, size, flags]
_R_METHOD, _R_FIRST_ENTER, _R_LAST_EXIT, _R_SIZE, _R_FLAGS = 0, 4, 6, 7, 8
_BARRIER: Final[list[Any]] = ["<lost request>"]


def _is_method(m: bytes) -> bool:
    return 0 < len(m) <= _MAX_METHOD and not m.translate(None, _METHOD_CHARS)


def _request_start(data: bytes | bytearray, pos: int, strict: bool) -> bool:
    """Whether `data[pos:]` can begin a request; `strict` (resync) demands a whole known method."""
    sp = data.find(b" ", pos, pos + _MAX_METHOD + 1)
    if sp < 0:
        frag = bytes(data[pos : pos + _MAX_METHOD + 1])
        return not strict and _is_method(frag)
    method = bytes(data[pos:sp])
    if not strict:
        return method in _METHODS or _is_method(method)
    if method not in _METHODS:
        return False
    target = data[sp + 1 : sp + 2]
    if target not in (b"/", b"*", b"h", b"H") and method != b"CONNECT":
        return False
    eol = data.find(b"\n", sp)
    return eol < 0 or data.find(b" HTTP/1.", sp, eol) >= 0


def _response_start(data: bytes | bytearray, pos: int, strict: bool) -> bool:
    """Whether `data[pos:]` can begin a response (`HTTP/1.x NNN`)."""
    if strict:
        return (
            data.startswith(b"HTTP/1.", pos)
            and data[pos + 8 : pos + 9] == b" "
            and data[pos + 9 : pos + 12].isdigit()
        )
    return b"HTTP/1.".startswith(data[pos : pos + 7])


def _length_list(value: bytes) -> int:
    """A Content-Length that is not one plain number: "5, 5" (merged duplicates) is valid
    when every item agrees (RFC 9110 8.6); anything else is _INVALID."""
    items = {v.strip() for v in value.split(b",")}
    if len(items) != 1 or not (value := items.pop()).isdigit():
        return _INVALID
    return int(value)


_NO_LENGTH: Final = -4  # neither Transfer-Encoding nor Content-Length


def _fields(rest: bytes) -> tuple[int, bytes | None, str | None, bytes | None]:
    """(framing, transfer-encoding value, host, connection value) of a header block.

    framing: a Content-Length, _CHUNKED, _NO_LENGTH, or _INVALID (a bad Content-Length, or a
    Transfer-Encoding whose last coding is not chunked; the caller decides what that means).
    """
    low = rest.lower()
    te: bytes | None = None
    i = low.find(b"\ntransfer-encoding:")
    if i >= 0:
        te = _value(low, i + 19)
        framing = _CHUNKED if te.endswith(b"chunked") else _INVALID
    else:
        i = low.find(b"\ncontent-length:")
        if i >= 0:
            value = low[i + 16 : low.find(b"\n", i + 16)]
            try:
                framing = int(value)  # int() skips the blanks and the "\\r" around the digits
            except ValueError:
                framing = _length_list(value)
            if framing < 0:
                framing = _INVALID
        else:
            framing = _NO_LENGTH
    i = low.find(b"\nhost:")
    host = (
        low[i + 6 : low.find(b"\n", i + 6)].strip().decode("utf-8", "replace") if i >= 0 else None
    )
    i = low.find(b"\nconnection:")
    conn = low[i + 12 : low.find(b"\n", i + 12)] if i >= 0 else None
    return framing, te, host, conn


# Heads repeat: a client sends the same header lines on every request of a connection, a
# server the same response head until its Date changes. What a head means to us is a pure
# function of its bytes, so it is cached by them: one dict lookup instead of a lowercasing and
# half a dozen searches (about 1.5 us per message on this VM). Bounded: at most _CACHE_MAX
# heads of at most _CACHE_BLOCK bytes each per cache, cleared when full.
_CACHE_MAX: Final = 4096
_CACHE_BLOCK: Final = 2048

# the rest of a request head after its target ("HTTP/1.1\r\nHost: x\r\n...") ->
# (version, framing, host, flags); see _req_rest
_ReqRest = tuple[str, int, str | None, int]
_req_rest_cache: dict[bytes, _ReqRest] = {}
_BAD_REQ_REST: Final[_ReqRest] = ("", _INVALID, None, 0)
# a whole response head -> (status, the server closes after it, framing of its body)
_RespHead = tuple[int, bool, int]
_resp_head_cache: dict[bytes, _RespHead] = {}
_BAD_RESP_HEAD: Final[_RespHead] = (0, True, _INVALID)


def _remember(cache: dict[bytes, Any], key: bytes, value: Any) -> None:
    if len(key) <= _CACHE_BLOCK:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value


def _req_rest(rest: bytes) -> _ReqRest:
    """What a request head says after its target: `rest` is the version, the line end and the
    header lines. framing: a Content-Length (0 without one), _CHUNKED, or _INVALID (a bad
    version or length; RFC 9112 6.3: chunked must come last). flags: FLAG_CLOSE when the
    client closes after this request. Callers look in `_req_rest_cache` first."""
    eol = rest.find(b"\n")
    version = _VERSIONS.get(rest[: eol - 1] if rest[eol - 1 : eol] == b"\r" else rest[:eol])
    if version is None or eol < 0:
        result = _BAD_REQ_REST
    else:
        framing, _, host, conn = _fields(rest[eol:])
        if framing == _NO_LENGTH:
            framing = 0
        if conn is None:
            close = version == "1.0"
        else:
            close = b"close" in conn or (version == "1.0" and b"keep-alive" not in conn)
        result = (version, framing, host, FLAG_CLOSE if close else 0)
    _remember(_req_rest_cache, rest, result)
    return result


def _resp_head(block: bytes) -> _RespHead:
    """What a response head (status line included) tells us; _BAD_RESP_HEAD when its status
    line is not `HTTP/1.x NNN`. framing: a Content-Length, _CHUNKED, _READ_TO_CLOSE (no
    length, or a coding other than chunked, which the server ends by closing) or _INVALID.
    The request's method (HEAD, CONNECT) and no-body statuses are for the caller to apply.
    Callers look in `_resp_head_cache` first."""
    keep_alive = _RESP_VERSIONS.get(block[:9])
    code = block[9:12]
    if (
        keep_alive is None
        or not code.isdigit()
        or code < b"100"
        or block[12:13] not in _AFTER_STATUS
    ):
        return _BAD_RESP_HEAD
    framing, te, _, conn = _fields(block[block.find(b"\n") :])
    if conn is None:
        close = not keep_alive
    else:
        close = b"close" in conn or (not keep_alive and b"keep-alive" not in conn)
    if te is not None:
        framing = _CHUNKED if framing == _CHUNKED else _READ_TO_CLOSE
    elif framing == _NO_LENGTH:
        framing = _READ_TO_CLOSE
    result = (int(code), close, framing)
    _remember(_resp_head_cache, block, result)
    return result


def _value(low: bytes, i: int) -> bytes:
    """The stripped value of the header whose value starts at `low[i]`."""
    return low[i : low.find(b"\n", i)].strip()


_OnHead = Callable[[bytes], int]
_OnDone = Callable[[int], None]
_OnDesync = Callable[[bool, bool], None]
_IsStart = Callable[[bytes | bytearray, int, bool], bool]


class _Stream:
    """One direction of a connection: framing state plus a bounded carry buffer.

    The owner supplies hooks: `on_head(block) -> framing` when a head is complete (the block
    keeps every line's terminator, not the blank line that ends the head); `on_done(exit_ns)`
    when a message is complete; `on_desync(head_parsed, oversize)` when sync is lost; and
    `is_start(data, pos, strict)`, which tells whether bytes can begin a message.
    """

    __slots__ = (
        "buf",
        "first_enter",
        "first_exit",
        "gapped",
        "is_start",
        "last_exit",
        "max_head",
        "max_line",
        "on_desync",
        "on_done",
        "on_head",
        "remaining",
        "size",
        "skipped",
        "state",
    )

    def __init__(
        self,
        on_head: _OnHead,
        on_done: _OnDone,
        on_desync: _OnDesync,
        is_start: _IsStart,
        max_head: int,
    ) -> None:
        self.on_head = on_head
        self.on_done = on_done
        self.on_desync = on_desync
        self.is_start = is_start
        self.max_head = max_head
        self.max_line = min(_MAX_LINE, max_head)
        self.state = _HEAD
        self.buf = bytearray()  # a head, chunk-size line or trailer cut by the record's end
        self.remaining = 0  # body or chunk bytes (chunk CRLF included) still to come
        self.size = 0  # true bytes of the current message so far
        self.first_enter = self.first_exit = self.last_exit = 0
        self.gapped = False  # the current message lost bytes to a gap
        self.skipped = 0  # records ignored while waiting to resync

    def reset(self, state: int) -> None:
        self.state = state
        self.buf = bytearray()
        self.remaining = self.size = 0
        self.gapped = False

    def desync(self, oversize: bool = False) -> None:
        """Drop the partial message (the hook still sees its size) and wait for a start."""
        self.on_desync(self.state != _HEAD, oversize)
        self.reset(_RESYNC)

    def in_body(self) -> bool:
        return _BODY <= self.state <= _UNTIL_CLOSE

    def feed(self, data: bytes, true_len: int, enter_ns: int, exit_ns: int) -> None:
        """One record of this direction; the owner has tried its head fast path already."""
        self.last_exit = exit_ns
        if self.state == _BODY and true_len == self.remaining:
            # Fast path: a record that is exactly the rest of a body (a head and its body
            # written apart, as nginx's writev of two iovecs gives).
            self.size += true_len
            self.remaining = 0
            self.gapped = self.gapped or true_len > len(data)
            self.state = _HEAD
            self.on_done(exit_ns)
            return
        self._feed_slow(data, true_len, enter_ns, exit_ns)

    def after_head(
        self, data: bytes, stop: int, framing: int, true_len: int, enter_ns: int, exit_ns: int
    ) -> None:
        """The head that ends at `data[stop]` was parsed by the owner's fast path; go on from
        there with its framing (the record may hold a body, or more messages)."""
        state = self._framed(framing, exit_ns)
        n = len(data)
        if state < _RESYNC and (stop < n or true_len > n):
            self._run(data, stop, state, true_len - n, enter_ns, exit_ns, -1)

    def _feed_slow(self, data: bytes, true_len: int, enter_ns: int, exit_ns: int) -> None:
        state = self.state
        gap = true_len - len(data)
        if state >= _RESYNC:
            if state == _DEAD or not data or not self.is_start(data, 0, True):
                self.skipped += 1
                return
            self.state = _HEAD
            self._run(data, 0, _HEAD, gap, enter_ns, exit_ns, -1)
        elif self.buf:
            carry = self.buf
            scan = max(len(carry) - 3, 0)  # the carried bytes were searched already
            carry += data
            self.buf = bytearray()
            self._run(carry, 0, state, gap, enter_ns, exit_ns, scan)
        else:
            self._run(data, 0, state, gap, enter_ns, exit_ns, -1)

    def _framed(self, framing: int, exit_ns: int) -> int:
        """Enter the state a complete head's `framing` calls for, and return it."""
        if framing == 0:
            self.state = _HEAD
            self.on_done(exit_ns)
            return self.state
        if framing > 0:
            self.remaining = framing
            self.state = _BODY
        elif framing == _CHUNKED:
            self.state = _CHUNK_SIZE
        elif framing == _READ_TO_CLOSE:
            self.state = _UNTIL_CLOSE
        else:
            self.desync()
        return self.state

    def _run(
        self,
        buf: bytes | bytearray,
        pos: int,
        state: int,
        gap: int,
        enter_ns: int,
        exit_ns: int,
        scan: int,
    ) -> None:
        """The general state machine over `buf[pos:]`, then the `gap` uncaptured bytes.

        `scan` >= 0 says `buf` starts with carried bytes and where searching may resume.
        """
        carried = scan >= 0
        n = len(buf)
        while pos < n:
            if state == _HEAD:
                if not carried:
                    c = buf[pos]
                    if c == 13 or c == 10:  # stray CRLF between messages (RFC 9112 2.2)
                        pos += 1
                        continue
                    self.first_enter = enter_ns
                    self.first_exit = exit_ns
                    self.size = 0
                    self.gapped = False
                start = scan if scan > pos else pos
                end = buf.find(b"\r\n\r\n", start)
                if end >= 0:
                    stop = end + 4
                    end += 2
                else:
                    end = buf.find(b"\n\n", start)  # bare-LF heads (netcat, old tools)
                    stop = end + 2
                    end += 1
                if stop < 2 or stop - pos > self.max_head:
                    if stop >= 2 or n - pos > self.max_head:
                        self.desync(oversize=True)
                    elif gap > 0 or not (carried or self.is_start(buf, pos, False)):
                        self.desync()
                    else:
                        self._carry(buf, pos, carried)
                    return
                block = buf[pos:end]
                self.size = stop - pos
                pos = stop
                carried = False
                head = block if type(block) is bytes else bytes(block)
                state = self._framed(self.on_head(head), exit_ns)
                if state >= _RESYNC:
                    return
            elif state in (_BODY, _CHUNK_DATA):
                avail = n - pos
                rem = self.remaining
                if avail < rem:
                    self.remaining = rem - avail
                    self.size += avail
                    break
                pos += rem
                self.size += rem
                self.remaining = 0
                if state == _CHUNK_DATA:
                    # the CRLF closing the chunk, as far as this record holds it
                    if not b"\r\n".endswith(buf[max(pos - 2, 0) : pos]):
                        self.state = state
                        self.desync()
                        return
                    state = _CHUNK_SIZE
                else:
                    self.state = _HEAD
                    self.on_done(exit_ns)
                    state = self.state
                    if state >= _RESYNC:
                        return
            elif state in (_CHUNK_SIZE, _TRAILER):
                start = scan if scan > pos else pos
                if state == _CHUNK_SIZE:
                    nl = buf.find(b"\n", start)
                elif buf.startswith(b"\r\n", pos):
                    nl = pos + 1
                elif buf.startswith(b"\n", pos):
                    nl = pos
                else:  # trailer fields, ended by an empty line
                    nl = buf.find(b"\r\n\r\n", start)
                    nl = nl + 3 if nl >= 0 else buf.find(b"\n\n", start) + 1
                    if nl == 0:
                        nl = -1
                self.state = state
                if nl < 0:
                    if n - pos > (self.max_line if state == _CHUNK_SIZE else self.max_head):
                        self.desync(oversize=state == _TRAILER)
                    elif gap > 0:
                        self.desync()
                    else:
                        self._carry(buf, pos, carried)
                    return
                carried = False
                if state == _TRAILER:
                    self.size += nl + 1 - pos
                    pos = nl + 1
                    self.state = _HEAD
                    self.on_done(exit_ns)
                    state = self.state
                    if state >= _RESYNC:
                        return
                    continue
                line = buf[pos:nl]
                semi = line.find(b";")
                try:
                    chunk = int(line[:semi] if semi >= 0 else line, 16)
                except ValueError:
                    chunk = -1
                if chunk < 0:
                    self.desync()
                    return
                self.size += nl + 1 - pos
                pos = nl + 1
                if chunk == 0:
                    state = _TRAILER
                else:
                    state = _CHUNK_DATA
                    self.remaining = chunk + 2
            else:  # _UNTIL_CLOSE
                self.size += n - pos
                break
        self.state = state
        if gap > 0:
            self._skip_gap(gap, exit_ns)

    def _carry(self, buf: bytes | bytearray, pos: int, carried: bool) -> None:
        """Keep `buf[pos:]` for the next record (the caller checked it is under the limit)."""
        if carried and isinstance(buf, bytearray):
            del buf[:pos]
            self.buf = buf
        else:
            self.buf = bytearray(buf[pos:])

    def _skip_gap(self, gap: int, exit_ns: int) -> None:
        """Account for the `gap` uncaptured bytes that end the record."""
        state = self.state
        if state == _UNTIL_CLOSE:
            self.size += gap
            self.gapped = True
        elif state in (_BODY, _CHUNK_DATA):
            self.gapped = True
            rem = self.remaining
            if gap < rem:
                self.remaining = rem - gap
                self.size += gap
                return
            self.size += rem
            self.remaining = 0
            if state == _BODY:
                self.state = _HEAD
                self.on_done(exit_ns)
                if gap > rem and self.state < _RESYNC:
                    self.desync()  # the next message starts inside the gap
            elif gap == rem:
                self.state = _CHUNK_SIZE
            else:
                self.desync()  # the next chunk-size line is inside the gap
        elif state < _RESYNC:
            self.desync()  # a head, a chunk-size line or a trailer is inside the gap


class Http1Connection:
    """HTTP/1.x on one TCP connection, seen from one process.

    `role` "client": requests are EGRESS (written), responses INGRESS; "server": the reverse.
    `feed()` takes one record per syscall, in order, and returns the exchanges it completed;
    it never raises. Counters are plain int attributes; `stats()` returns them all.
    """

    __slots__ = (
        "_cur",
        "_discard",
        "_interim",
        "_make",
        "_max_pending",
        "_out",
        "_pending",
        "_req",
        "_req_cur",
        "_req_dir",
        "_resp",
        "_resp_close",
        "_resp_dir",
        "_status",
        "_upgrade",
        "closed_ns",
        "desyncs",
        "dropped_requests",
        "errors",
        "lost_events",
        "orphan_responses",
        "oversize_headers",
        "pairs",
        "role",
        "unanswered_requests",
    )

    def __init__(
        self,
        role: str,
        *,
        max_head: int = 65536,
        max_pending: int = 1024,
        make_pair: Callable[..., Any] = http1_pair,
    ) -> None:
        """`make_pair` is called with Http1Pair's fields, in order, for each exchange; what it
        returns is what feed() and close() return (the tracker builds its records directly)."""
        if role == "client":
            self._req_dir, self._resp_dir = EGRESS, INGRESS
        elif role == "server":
            self._req_dir, self._resp_dir = INGRESS, EGRESS
        else:
            raise ValueError(f"create Http1Connection: role must be 'client' or 'server': {role!r}")
        self.role = role
        self._make = make_pair
        self._max_pending = max_pending
        self._req = _Stream(
            self._on_req_head, self._on_req_done, self._on_req_desync, _request_start, max_head
        )
        self._resp = _Stream(
            self._on_resp_head, self._on_resp_done, self._on_resp_desync, _response_start, max_head
        )
        self._pending: deque[list[Any]] = deque()
        self._req_cur: list[Any] | None = None  # request whose body is still arriving
        self._cur: list[Any] | None = None  # request the current response answers
        self._discard = 0  # responses to drop: their requests overflowed the queue
        self._status = 0
        self._interim = False
        self._upgrade = False
        self._resp_close = False
        self._out: list[Any] = []
        self.closed_ns: int | None = None
        self.pairs = 0  # exchanges emitted
        self.desyncs = 0  # times a direction lost sync and had to wait for a message start
        self.dropped_requests = 0  # pending queue overflow: oldest request dropped
        self.unanswered_requests = 0  # requests dropped by a desync, lost() or close()
        self.orphan_responses = 0  # responses with no request to pair (dropped)
        self.oversize_headers = 0  # heads (or trailers) over max_head
        self.lost_events = 0  # lost() calls
        self.errors = 0  # internal errors swallowed by feed() (a bug if ever non-zero)

    # -- public API ----------------------------------------------------------------------------

    def feed(
        self, direction: int, data: bytes, true_len: int, enter_ns: int, exit_ns: int
    ) -> Sequence[Any]:
        """Consume one syscall record; return the exchanges it completed (often none): what
        `make_pair` made of them, Http1Pairs by default."""
        if direction == self._req_dir:
            stream = self._req
        elif direction == self._resp_dir:
            stream = self._resp
        else:
            return ()
        try:
            end = -1
            if stream.state == _HEAD and not stream.buf:
                end = data.find(b"\r\n\r\n")
            if end > 0 and data[0] > 32 and end < stream.max_head - 3:
                # Fast path, inlined for speed (most records): the record begins with a whole
                # head, and often is the whole message.
                stop = end + 4
                stream.first_enter = enter_ns
                stream.first_exit = stream.last_exit = exit_ns
                stream.size = stop
                stream.gapped = False
                framing = stream.on_head(data[: end + 2])
                if framing >= 0 and stop + framing == true_len == len(data):
                    stream.size = true_len
                    if stream is self._resp:
                        self._on_resp_done(exit_ns)
                    elif self._req_cur is not None:  # else nothing is left to do
                        self._on_req_done(exit_ns)
                else:
                    stream.after_head(data, stop, framing, true_len, enter_ns, exit_ns)
            else:
                stream.feed(data, true_len, enter_ns, exit_ns)
        except Exception:  # a parser bug must not take the agent down; resync instead
            self.errors += 1
            self._reset(_RESYNC)
        out = self._out
        if out:
            self._out = []
            return out
        return ()  # a constant: no list is made for the records that complete nothing

    def lost(self) -> None:
        """Records of this connection were lost: drop partial messages, resync both sides."""
        self.lost_events += 1
        self._reset(_RESYNC)

    def close(self, ts_ns: int) -> list[Any]:
        """The connection closed: finish a read-until-close (or cut-short) response; idempotent.

        `ts_ns` is kept as `closed_ns`. The response is stamped with its last record, not with
        `ts_ns`: the close carries no bytes. Later records are ignored.
        """
        if self.closed_ns is not None:
            return []
        self.closed_ns = ts_ns
        resp = self._resp
        if resp.in_body() and self._cur is not None:
            flags = FLAG_CLOSE if resp.state == _UNTIL_CLOSE else FLAG_CLOSE | FLAG_TRUNCATED
            self._emit(resp.last_exit, flags)
        self._reset(_DEAD)
        out, self._out = self._out, []
        return out

    def stats(self) -> dict[str, int]:
        """All counters by name."""
        return {
            "pairs": self.pairs,
            "desyncs": self.desyncs,
            "dropped_requests": self.dropped_requests,
            "unanswered_requests": self.unanswered_requests,
            "orphan_responses": self.orphan_responses,
            "oversize_headers": self.oversize_headers,
            "lost_events": self.lost_events,
            "skipped_records": self._req.skipped + self._resp.skipped,
            "pending": len(self._pending),
            "errors": self.errors,
        }

    # -- requests ------------------------------------------------------------------------------

    def _on_req_head(self, block: bytes) -> int:
        try:
            raw_method, target, rest = block.split(b" ", 2)
        except ValueError:
            return _INVALID
        version, framing, host, flags = _req_rest_cache.get(rest) or _req_rest(rest)
        if framing == _INVALID or not target or target.find(b"\n") >= 0:
            return _INVALID
        method = _METHODS.get(raw_method)
        if method is None:
            if not _is_method(raw_method):
                return _INVALID
            method = raw_method.decode("ascii")
        stream = self._req
        req = [
            method,
            target.decode("utf-8", "replace"),
            host,
            version,
            stream.first_enter,
            stream.first_exit,
            stream.last_exit,  # the record that completed the head, until a body says otherwise
            stream.size,
            flags,
        ]
        pending = self._pending
        if len(pending) >= self._max_pending:
            self._overflow()
        pending.append(req)
        self._req_cur = req if framing or flags else None  # None: nothing left for on_done
        return framing

    def _on_req_done(self, exit_ns: int) -> None:
        req = self._req_cur
        if req is None:
            return
        self._req_cur = None
        stream = self._req
        req[_R_LAST_EXIT] = exit_ns
        req[_R_SIZE] = stream.size
        if stream.gapped:
            req[_R_FLAGS] |= FLAG_GAP
        if req[_R_FLAGS] & FLAG_CLOSE:
            stream.reset(_RESYNC)  # RFC 9112 9.6: no request may follow a "close"

    def _on_req_desync(self, head_parsed: bool, oversize: bool) -> None:
        self.desyncs += 1
        self.oversize_headers += oversize
        req = self._req_cur
        self._req_cur = None
        if head_parsed and req is not None:  # queued already; its response still pairs with it
            stream = self._req
            req[_R_LAST_EXIT] = stream.last_exit
            req[_R_SIZE] = stream.size
            req[_R_FLAGS] |= FLAG_TRUNCATED | (FLAG_GAP if stream.gapped else 0)
            return
        # the lost request's response must not be paired with the request after it
        if len(self._pending) >= self._max_pending:
            self._overflow()
        self._pending.append(_BARRIER)

    def _overflow(self) -> None:
        """Drop the oldest pending request; remember to drop the response that answers it."""
        if self._pending.popleft() is not _BARRIER:
            self.dropped_requests += 1
        self._discard += 1

    # -- responses -----------------------------------------------------------------------------

    def _on_resp_head(self, block: bytes) -> int:
        status, close, framing = _resp_head_cache.get(block) or _resp_head(block)
        if status == 0:
            return _INVALID
        self._status = status
        if status < 200 and status != 101:
            self._interim = True  # 1xx: the request keeps waiting for its final response
            return 0
        pending = self._pending
        req: list[Any] | None = None
        if (
            pending
            and not self._discard
            and pending[0] is not _BARRIER
            and pending[0][_R_FIRST_ENTER] <= self._resp.first_exit
        ):
            req = pending.popleft()
        else:
            self._unmatched()
        self._cur = req
        self._resp_close = close
        method = req[_R_METHOD] if req is not None else ""
        if status == 101 or (method == "CONNECT" and status < 300):
            self._upgrade = True
            return 0
        if method == "HEAD" or status == 204 or status == 304:
            return 0
        return framing

    def _unmatched(self) -> None:
        """The response about to start answers no request we hold: say why, and drop it."""
        self.orphan_responses += 1
        pending = self._pending
        if self._discard:  # it answers a request dropped from the full queue
            self._discard -= 1
        elif pending and pending[0] is _BARRIER:
            pending.popleft()
        # else: no request at all, or the oldest one began after this response had arrived
        # (answered before it was asked: a stale response); that request keeps waiting.

    def _on_resp_done(self, exit_ns: int) -> None:
        if self._interim:
            self._interim = False
            return
        if self._upgrade:
            self._emit(exit_ns, FLAG_UPGRADE)
            self._reset(_DEAD)
            return
        self._emit(exit_ns, 0)
        if self._resp_close:
            self._drop_pending()
            self._resp.reset(_RESYNC)  # the server closes: nothing more should come

    def _on_resp_desync(self, head_parsed: bool, oversize: bool) -> None:
        self.desyncs += 1
        self.oversize_headers += oversize
        if head_parsed:
            self._emit(self._resp.last_exit, FLAG_TRUNCATED)
        self._cur = None
        self._interim = False
        self._drop_pending()

    def _emit(self, exit_ns: int, flags: int) -> None:
        """Pair the response that just ended with its request (if it has one)."""
        req = self._cur
        if req is None:
            return
        self._cur = None
        if req is self._req_cur:  # an early response: count what the request has sent so far
            req[_R_SIZE] = self._req.size
            req[_R_LAST_EXIT] = self._req.last_exit
        resp = self._resp
        if self._resp_close:
            flags |= FLAG_CLOSE
        if resp.gapped:
            flags |= FLAG_GAP
        self.pairs += 1
        # Positional, in Http1Pair's field order; `req` is laid out as described at _R_FLAGS.
        self._out.append(
            self._make(
                req[0], req[1], req[2], self._status, req[7], resp.size, req[4], req[5],
                req[6], resp.first_enter, resp.first_exit, exit_ns, req[3], req[8] | flags,
            )
        )  # fmt: skip

    # -- both ----------------------------------------------------------------------------------

    def _drop_pending(self) -> None:
        pending = self._pending
        self.unanswered_requests += sum(1 for r in pending if r is not _BARRIER)
        pending.clear()
        self._discard = 0

    def _reset(self, state: int) -> None:
        """Forget every partial message; both directions go to `state` (a dead one stays dead)."""
        for stream in (self._req, self._resp):
            stream.reset(_DEAD if stream.state == _DEAD else state)
        self._drop_pending()
        self._req_cur = self._cur = None
        self._interim = self._upgrade = self._resp_close = False
