"""The exchange record every non-HTTP parser emits, and the framing the binary protocols share.

`L7Pair` is one exchange as the backend row needs it (protocol, method, path, status, sizes,
syscall times) plus `reversed` for server-to-client messages and `extra` for richer JSON fields.

`LengthFramer` is one direction of a length-prefixed stream (PostgreSQL, MySQL, AMQP). It cuts
syscall records into messages, carries a message split across records (bounded by a per-type
`keep` limit), and skips what was never captured (`true_len` > len(data)) by count, so a 1 MiB
DataRow captured 1 KiB at a time costs one callback and ends exactly where the next message
starts. A gap that swallows a message *header* loses the framing: the framer calls `on_desync`
and ignores records until one begins with something `is_start` accepts.

It lives beside `L7Pair` because pairs and framing are the only code the parsers share; the
HTTP/1 parser keeps its own line-oriented machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

__all__ = [
    "EGRESS",
    "INGRESS",
    "STATUS_ERROR",
    "STATUS_NONE",
    "STATUS_OK",
    "STATUS_UNKNOWN",
    "L7Pair",
    "LengthFramer",
    "ParserBase",
    "make_pair",
    "roles",
]

EGRESS: Final = 0  # this process wrote the bytes
INGRESS: Final = 1  # this process read the bytes

# Row status codes (spec 1.5): what the backend expects for these protocols.
STATUS_NONE: Final = 0  # no status (the Go agent's value for AMQP PUBLISH and DELIVER)
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2
STATUS_UNKNOWN: Final = 3  # the response was not understood (cut short, desync)


class L7Pair(NamedTuple):
    """One exchange (or one one-way message) of a non-HTTP protocol, as seen by one process.

    Sizes are true byte counts of the protocol messages that make the exchange. Times are the
    monotonic ns of the syscall records: `req_*` of the records carrying the request's first and
    last bytes, `resp_*` of the response's. A one-way message (AMQP PUBLISH and DELIVER, a Redis
    push, MySQL STMT_CLOSE, PostgreSQL Terminate) has `resp_bytes` 0 and `resp_*` equal to the
    times of its last record, so "response first exit - request first enter" is the time the
    message took to write or read, as in the Go agent. `reversed` marks server-to-client
    messages (AMQP DELIVER, Redis PUSHED_EVENT): the row's from/to are swapped. `extra` holds
    fields for JSON sinks only (sqlstate, error, database, user, command, key, exchange, ...);
    it never holds credentials.
    """

    protocol: str  # backend row name: POSTGRES, MYSQL, REDIS, AMQP
    method: str
    path: str
    status: int
    req_bytes: int
    resp_bytes: int
    req_first_enter_ns: int
    req_first_exit_ns: int
    req_last_exit_ns: int
    resp_first_enter_ns: int
    resp_first_exit_ns: int
    resp_last_exit_ns: int
    reversed: bool = False
    extra: dict[str, object] | None = None


# tuple.__new__ skips NamedTuple's Python-level __new__ (a third of the cost of a pair).
_new: Any = tuple.__new__


def make_pair(
    protocol: str,
    method: str,
    path: str,
    status: int,
    req: tuple[int, int, int, int],
    resp: tuple[int, int, int, int],
    reversed_: bool,
    extra: dict[str, object] | None,
) -> L7Pair:
    """Build a pair from (bytes, first_enter, first_exit, last_exit) of each side."""
    b, first_enter, first_exit, last_exit = req
    rb, resp_enter, resp_exit, resp_last = resp
    fields = (protocol, method, path, status, b, rb, first_enter, first_exit, last_exit)
    pair: L7Pair = _new(L7Pair, (*fields, resp_enter, resp_exit, resp_last, reversed_, extra))
    return pair


def roles(role: str, what: str) -> tuple[int, int]:
    """(request direction, response direction) for a role; ValueError names the class."""
    if role == "client":
        return EGRESS, INGRESS
    if role == "server":
        return INGRESS, EGRESS
    raise ValueError(f"create {what}: role must be 'client' or 'server': {role!r}")


# Framer states.
_OK: Final = 0
_RESYNC: Final = 1
_DEAD: Final = 2
_FIRST: Final = 3  # nothing seen yet: the first bytes must pass `is_start`
_PROBE: Final = 16  # bytes gathered (over tiny first records) before judging the first ones
_UNKNOWN_LEN: Final = 1 << 40  # a "true length" that bounds nothing

# header(buf, pos) -> the message's total length (header included), or -1 if it cannot be one.
Header = Callable[[bytes | bytearray, int], int]
# on_msg(message bytes (a prefix when cut), total length, complete) -> None
OnMsg = Callable[[bytes, int, bool], None]
IsStart = Callable[[bytes, int], bool]  # (data, true_len)


class LengthFramer:
    """One direction of a length-prefixed protocol: records in, whole messages out.

    `hdr` is the header size needed to learn a message's length. `keep[tag]` (tag = the byte at
    `tag_at` in the header) says how many bytes of a message split across records are worth
    carrying: a longer one is handed over as a prefix (`complete` False) as soon as its first
    record is in, and its tail is skipped by count. The callback reads `start_enter`/`start_exit`
    (the record where the message began) and `enter`/`exit` (the current record).

    Limits: the carry buffer never exceeds max(keep) + hdr bytes.
    """

    __slots__ = (
        "buf",
        "desyncs",
        "enter",
        "exit",
        "hdr",
        "header",
        "is_start",
        "keep",
        "on_desync",
        "on_msg",
        "skip",
        "skipped_records",
        "start_enter",
        "start_exit",
        "state",
        "tag_at",
    )

    def __init__(
        self,
        hdr: int,
        header: Header,
        on_msg: OnMsg,
        on_desync: Callable[[int], None],
        is_start: IsStart,
        keep: list[int],
        tag_at: int = 0,
    ) -> None:
        """The framer starts out waiting for a record that `is_start` accepts: the first record
        of a connection must look like the protocol (a misclassified stream stays silent)."""
        self.hdr = hdr
        self.header = header
        self.on_msg = on_msg
        self.on_desync = on_desync
        self.is_start = is_start
        self.keep = keep  # 256 entries, by tag byte
        self.tag_at = tag_at
        self.buf = b""  # a message (or header) cut by the end of a record
        self.skip = 0  # uncaptured or unwanted bytes of the current message still to come
        self.state = _FIRST
        self.enter = self.exit = self.start_enter = self.start_exit = 0
        self.desyncs = 0
        self.skipped_records = 0

    def reset(self, resync: bool) -> None:
        """Forget partial input; `resync` waits for a message start (a dead framer stays dead,
        one that has seen nothing yet keeps waiting for the connection's first bytes)."""
        if self.state == _FIRST and self.buf:
            return
        self.buf = b""
        self.skip = 0
        if self.state != _DEAD and self.state != _FIRST:
            self.state = _RESYNC if resync else _OK

    def kill(self) -> None:
        """Ignore everything from now on (TLS started, the protocol changed)."""
        self.reset(False)
        self.state = _DEAD

    @property
    def dead(self) -> bool:
        return self.state == _DEAD

    @property
    def resyncing(self) -> bool:
        """Waiting for a record that begins with a message (framing was lost)."""
        return self.state == _RESYNC

    @property
    def fresh(self) -> bool:
        """Nothing of this direction has been accepted yet."""
        return self.state == _FIRST

    def desync(self, unframed: int = 0) -> None:
        """Lose framing: `unframed` true bytes of the current record belong to no message."""
        self.desyncs += 1
        self.reset(True)
        self.on_desync(unframed)

    def feed(self, data: bytes, true_len: int, enter_ns: int, exit_ns: int) -> None:
        self.enter = enter_ns
        self.exit = exit_ns
        n = len(data)
        gap = true_len - n
        if self.state != _OK:
            if self.state == _FIRST:
                self._first(data, gap, enter_ns, exit_ns)
                return
            if self.state == _DEAD or not data or not self.is_start(data, true_len):
                self.skipped_records += 1
                return
            self.state = _OK
        pos = 0
        skip = self.skip
        if skip:
            if skip >= n:
                self.skip = skip - n
                if gap:
                    self._gap(gap)
                return
            pos = skip
            self.skip = 0
        if self.buf:
            data = self.buf + data
            self.buf = b""
            n = len(data)
        else:
            self.start_enter = enter_ns
            self.start_exit = exit_ns
        self._run(data, pos, n, gap)

    def _first(self, data: bytes, gap: int, enter_ns: int, exit_ns: int) -> None:
        """The connection's first bytes: judge them once enough are in (records may be tiny)."""
        if not self.buf:
            self.start_enter = enter_ns
            self.start_exit = exit_ns
        last = data
        data = self.buf + data
        self.buf = b""
        n = len(data)
        if n < _PROBE and not gap and not (n >= self.hdr and self.hdr <= self.header(data, 0) <= n):
            self.buf = data  # neither a whole message nor enough bytes to judge yet
            return
        true_len = len(data) + gap if gap else _UNKNOWN_LEN
        if not self.is_start(data, true_len):
            held = len(data) - len(last)
            if not held or not self.is_start(last, len(last) + gap if gap else _UNKNOWN_LEN):
                self.state = _RESYNC
                self.skipped_records += 1
                return
            data = last  # what was held was junk; this record starts the stream
            self.start_enter = enter_ns
            self.start_exit = exit_ns
        self.state = _OK
        self._run(data, 0, len(data), gap)

    def _run(self, data: bytes, pos: int, n: int, gap: int) -> None:
        hdr, header, on_msg, keep, tag_at = (
            self.hdr,
            self.header,
            self.on_msg,
            self.keep,
            self.tag_at,
        )
        while pos < n:
            if n - pos < hdr:
                if gap:
                    self.desync(n - pos + gap)  # the rest of the header is not captured
                    return
                self.buf = data[pos:]
                return
            total = header(data, pos)
            if total < hdr:
                self.desync(n - pos + gap)
                return
            end = pos + total
            if end <= n:
                on_msg(data[pos:end], total, True)
                if self.state != _OK:
                    return  # the handler killed or reset this direction
                pos = end
                self.start_enter = self.enter
                self.start_exit = self.exit
                continue
            want = keep[data[pos + tag_at]]
            if not gap and total <= want:
                self.buf = data[pos:]  # wait for the rest of a message worth having whole
                return
            cut = pos + (want if want > hdr else hdr)
            on_msg(data[pos:cut] if cut < n else data[pos:], total, False)
            if self.state != _OK:
                return
            self.skip = end - n
            break
        if gap:
            self._gap(gap)

    def _gap(self, gap: int) -> None:
        """`gap` uncaptured bytes follow the captured ones."""
        skip = self.skip
        if gap <= skip:
            self.skip = skip - gap
        else:
            self.desync(gap - skip)  # a message header (or more) is inside the gap


class ParserBase:
    """What the binary-protocol parsers share: their output list and counters, `lost()`, and
    the fence that keeps a parser bug from escaping `feed()`. Subclasses set the four slots in
    their own __init__ and implement `_reset`."""

    __slots__ = ("_out", "closed_ns", "errors", "lost_events")

    _out: list[L7Pair]
    closed_ns: int | None
    errors: int  # internal errors swallowed by feed() (a bug if ever non-zero)
    lost_events: int  # lost() calls

    def _reset(self, resync: bool) -> None:
        raise NotImplementedError

    def lost(self) -> None:
        """Records of this connection were lost: drop partial messages, resync both sides."""
        self.lost_events += 1
        self._reset(True)

    def _failed(self) -> None:
        """feed() met a bug: count it and resync rather than take the agent down."""
        self.errors += 1
        self._reset(True)

    def _take(self) -> list[L7Pair]:
        """The pairs made so far; the caller owns the list."""
        out = self._out
        if out:
            self._out = []
            return out
        return []
