"""A sans-I/O Redis (RESP2 and RESP3) parser that pairs commands with replies, per connection.

Each direction is a `_RespReader`: an incremental RESP walker with a stack of open aggregates
(arrays, maps, sets, pushes; attributes are walked but do not count as a reply), which skips
bulk-string payloads by count, so a 1 MiB value captured 1 KiB at a time still ends exactly
where the next reply begins. Commands are arrays of bulk strings (inline commands are accepted
too); a whole command inside one record takes a fast path. Replies are paired with commands in
order, so a pipeline of any depth (100 commands in one write, or split over many records) pairs
exactly; MULTI ... EXEC is ordinary in-order pairing (+QUEUED replies, then EXEC's array).

Pairs (protocol REDIS):

* COMMAND (PING for PING): path = the command's raw RESP text, at most `max_path` bytes, as the
  Go agent sends it; status 1, or 2 for an error reply (`-` / `!`); `extra` command, key (or
  channel) and error. Credentials never leave: AUTH, HELLO ... AUTH, MIGRATE ... AUTH/AUTH2,
  CONFIG SET of a password, and ACL SETUSER password rules are re-encoded with `****` in place
  of the secrets, in the path and everywhere else.
* PUSHED_EVENT: a pub/sub message (RESP3 `>` push, or in RESP2 an array `message` / `pmessage`
  / `smessage` while the connection is subscribed) and other RESP3 pushes (`invalidate` ...),
  `reversed` True (server to client), path = the push's raw RESP text, status 1. Subscription
  confirmations answer their (P|S)(UN)SUBSCRIBE command: one pair per command, ending at its
  last confirmation (one per channel).

Robustness: `feed()` never raises. A gap or garbage inside a line loses the framing: that
direction waits for a record that begins with a plausible command (or reply), and the replies
still pending are dropped (counted). Bounds: `max_pending` commands, a carried line of
`max_line` bytes, `max_path` bytes of path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

from alaz.protocols.pair import (
    STATUS_ERROR,
    STATUS_OK,
    L7Pair,
    ParserBase,
    make_pair,
    roles,
)

__all__ = ["PROTOCOL", "RedisConnection"]

PROTOCOL: Final = "REDIS"
COMMAND: Final = "COMMAND"
PING: Final = "PING"
PUSHED_EVENT: Final = "PUSHED_EVENT"

_MAX_ITEMS: Final = 16  # elements of a top-level value whose content is kept
_MAX_ITEM: Final = 256  # bytes kept of each
_ATTR: Final = 1 << 40  # bias marking an attribute's entry on the aggregate stack
_AGGREGATES: Final = frozenset(b"*%~>|")
_TYPES: Final = frozenset(b"+-:$*_#,(!=%~>|")
_LINE_TYPES: Final = frozenset(b"+-:_#,(")
_ERRORS: Final = frozenset(b"-!")
_MASK: Final = b"****"

_CONFIRMS: Final = frozenset(
    (b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe", b"punsubscribe", b"sunsubscribe")
)
_MESSAGES: Final = frozenset((b"message", b"pmessage", b"smessage"))
_SUBSCRIBE_CMDS: Final = frozenset(c.upper() for c in _CONFIRMS)
# Commands whose first argument is not a key.
_NO_KEY: Final = frozenset(
    b"PING ECHO AUTH HELLO SELECT INFO CONFIG CLIENT CLUSTER COMMAND DBSIZE FLUSHALL FLUSHDB "
    b"MULTI EXEC DISCARD UNWATCH SCRIPT FUNCTION SCAN QUIT RESET SAVE BGSAVE BGREWRITEAOF TIME "
    b"LASTSAVE MONITOR SLOWLOG MEMORY OBJECT XREAD XREADGROUP ACL LATENCY MODULE REPLICAOF "
    b"SLAVEOF SHUTDOWN SWAPDB WAIT READONLY READWRITE DEBUG ROLE LOLWUT SENTINEL EVAL EVALSHA "
    b"EVAL_RO EVALSHA_RO FCALL FCALL_RO PUBSUB".split()
)
_CHANNEL_CMDS: Final = frozenset(b"PUBLISH SPUBLISH".split()) | _SUBSCRIBE_CMDS
_SECRET_CONFIGS: Final = frozenset((b"requirepass", b"masterauth", b"masteruser"))

_OnValue = Callable[["_RespReader"], None]


class _RespReader:
    """One direction of RESP: records in, complete top-level values out (via `on_value`).

    When `on_value` runs: `top` is the value's type byte, `items` the content of its first
    elements (of the value itself when it is not an aggregate), `size` its true byte count,
    `start_enter`/`start_exit` the record where it began, `value_raw` its first `max_raw`
    captured bytes (only when `wants_raw(type)` said so at its start).
    """

    __slots__ = (
        "buf",
        "cut",
        "desyncs",
        "enter",
        "exit",
        "inline_ok",
        "is_start",
        "items",
        "max_line",
        "max_raw",
        "on_desync",
        "on_value",
        "part",
        "part_need",
        "raw_parts",
        "seg",
        "size",
        "skip",
        "skipped_records",
        "stack",
        "start_enter",
        "start_exit",
        "state",
        "top",
        "value_raw",
        "want_raw",
        "wants_raw",
    )

    def __init__(
        self,
        on_value: _OnValue,
        on_desync: Callable[[], None],
        is_start: Callable[[bytes], bool],
        wants_raw: Callable[[int], bool],
        max_line: int,
        max_raw: int,
        inline_ok: bool,
    ) -> None:
        self.on_value = on_value
        self.on_desync = on_desync
        self.is_start = is_start
        self.wants_raw = wants_raw
        self.max_line = max_line
        self.max_raw = max_raw
        self.inline_ok = inline_ok
        self.buf = b""  # a line cut by the end of a record
        self.skip = 0  # bulk payload (and its CRLF) still to come
        self.part = b""  # a kept bulk element cut by a record's end ...
        self.part_need = 0  # ... and how many more of its bytes are wanted
        self.stack: list[int] = []  # elements left in each open aggregate
        self.state = 3  # 0 ok, 1 resync, 2 dead, 3 first bytes not judged yet
        self.top = -1  # the open value's type; -1 between values, -2 after a top attribute
        self.items: list[bytes] = []
        self.cut = -1  # index of the first item whose content the capture cut
        self.size = 0  # true bytes of the open value before the current segment
        self.seg = 0  # where the open value's uncounted bytes begin in the current data
        self.raw_parts: list[bytes] = []
        self.value_raw = b""
        self.want_raw = False
        self.enter = self.exit = self.start_enter = self.start_exit = 0
        self.desyncs = self.skipped_records = 0

    def reset(self, resync: bool) -> None:
        if self.state == 3:
            return  # still waiting for the connection's first line
        self.buf = b""
        self.skip = self.part_need = 0
        self.stack = []
        self.top = -1
        if self.state != 2:
            self.state = 1 if resync else 0

    def desync(self) -> int:
        self.desyncs += 1
        self.reset(True)
        self.on_desync()
        return -1

    def feed(self, data: bytes, true_len: int, enter_ns: int, exit_ns: int) -> None:
        self.enter = enter_ns
        self.exit = exit_ns
        gap = true_len - len(data)
        if self.state:
            if self.state == 3:  # the connection's first bytes: judge them by their first line
                first = self.buf + data
                self.buf = b""
                if b"\r\n" not in first and len(first) < self.max_line and not gap:
                    self.buf = first
                    return
                self.state = 1
                if len(first) > len(data) and self.is_start(first):
                    data = first  # else: what was held was junk; judge this record alone
            if self.state == 2 or not data or not self.is_start(data):
                self.skipped_records += 1
                return
            self.state = 0
        if self.buf:
            data = self.buf + data
            self.buf = b""
        self.seg = 0
        pos = self._run(data)
        if pos < 0:
            return  # desynced
        n = len(data)
        if pos < n:  # a line cut by the record's end
            if gap or n - pos > self.max_line:
                self.desync()
                return
            self.buf = data[pos:]
        if self.top != -1:
            self.size += pos - self.seg
            if self.want_raw:
                room = self.max_raw - sum(map(len, self.raw_parts))
                if room > 0:
                    self.raw_parts.append(data[self.seg : min(pos, self.seg + room)])
        self.seg = 0
        if gap:
            skip = self.skip
            if gap > skip:
                self.desync()  # a line (a length, a type) is inside the gap
                return
            self.skip = skip - gap
            self.size += gap
            if not self.skip:
                if self.part_need > 0 and self.cut < 0:  # a kept element lost its tail
                    self.cut = len(self.items)
                self._element_done(b"", 0, self.part if self.part_need >= 0 else None)

    def _run(self, data: bytes) -> int:
        """Walk `data`; return where a cut line begins (or its length), -1 on desync."""
        n = len(data)
        pos = 0
        stack = self.stack
        find = data.find
        while pos < n:
            skip = self.skip
            if skip:  # the rest of a bulk string cut by the previous record
                avail = n - pos
                need = self.part_need
                if need > 0:
                    take = need if need < avail else avail
                    self.part += data[pos : pos + take]
                    self.part_need = need - take
                if avail < skip:
                    self.skip = skip - avail
                    return n
                pos += skip
                self.skip = 0
                self._element_done(data, pos, self.part if self.part_need >= 0 else None)
                continue
            eol = find(b"\r\n", pos)
            if eol < 0:
                return pos
            t = data[pos]
            if self.top < 0:
                if t not in _TYPES:
                    if t == 13 or t == 10:  # stray CRLF between values
                        pos += 1
                        continue
                    if not self.inline_ok or not self._inline(data, pos, eol):
                        return self.desync()
                    pos = eol + 2
                    continue
                self._begin(t, pos)
            if t == 36 or t == 61 or t == 33:  # $ bulk, = verbatim, ! bulk error
                try:
                    length = int(data[pos + 1 : eol])
                except ValueError:
                    return self.desync()
                body = eol + 2
                if length < 0:  # null
                    pos = body
                    self._element_done(data, pos, b"")
                    continue
                end = body + length + 2
                if end <= n:
                    if data[end - 2 : end] != b"\r\n":
                        return self.desync()
                    pos = end
                    self._element_done(data, pos, data[body : body + min(length, _MAX_ITEM)])
                    continue
                self.skip = end - n
                if self._keeps():
                    self.part = data[body : body + min(length, _MAX_ITEM)]
                    self.part_need = min(length, _MAX_ITEM) - len(self.part)
                else:
                    self.part_need = -1  # not kept
                return n
            if t in _AGGREGATES:
                try:
                    count = int(data[pos + 1 : eol])
                except ValueError:
                    return self.desync()
                pos = eol + 2
                if t == 37 or t == 124:  # % map, | attribute: a key and a value per entry
                    count *= 2
                if count <= 0:  # empty or null
                    self._element_done(data, pos, None)
                    continue
                if len(stack) > 64:
                    return self.desync()
                stack.append(count + _ATTR if t == 124 else count)
                continue
            if t in _LINE_TYPES:
                line = data[pos + 1 : eol]
                pos = eol + 2
                self._element_done(data, pos, line[:_MAX_ITEM])
                continue
            return self.desync()
        return pos

    def _begin(self, t: int, pos: int) -> None:
        if self.top == -2:  # the reply after a top-level attribute: same value
            self.top = t
            return
        self.top = t
        self.items = []
        self.cut = -1
        self.size = 0
        self.seg = pos
        self.raw_parts = []
        self.start_enter = self.enter
        self.start_exit = self.exit
        self.want_raw = self.wants_raw(t)

    def _keeps(self) -> bool:
        stack = self.stack
        return not stack or (len(stack) == 1 and len(self.items) < _MAX_ITEMS)

    def _element_done(self, data: bytes, pos: int, content: bytes | None) -> None:
        """An element (or the whole value) ended at `pos` in `data`."""
        stack = self.stack
        if content is not None and len(stack) <= 1 and len(self.items) < _MAX_ITEMS:
            self.items.append(content)
        while stack:
            left = stack[-1] - 1
            if left == _ATTR:  # an attribute ended: it does not count as an element
                stack.pop()
                if not stack:
                    self.items = []
                    self.top = -2
                return
            if left:
                stack[-1] = left
                return
            stack.pop()
        self.size += pos - self.seg
        if self.want_raw:
            tail = data[self.seg : pos]
            parts = self.raw_parts
            self.value_raw = (b"".join([*parts, tail]) if parts else tail)[: self.max_raw]
        self.seg = pos
        self.on_value(self)
        self.raw_parts = []
        self.top = -1

    def _inline(self, data: bytes, pos: int, eol: int) -> bool:
        """An inline command (`PING\\r\\n`): a line of space-separated words."""
        words = data[pos:eol].split()
        if not words or eol - pos > self.max_line:
            return False
        self._begin(42, pos)
        self.items = [w[:_MAX_ITEM] for w in words[:_MAX_ITEMS]]
        self.size = eol + 2 - pos
        self.value_raw = data[pos : eol + 2][: self.max_raw]
        self.seg = eol + 2
        self.on_value(self)
        self.top = -1
        return True


def _req_start(data: bytes) -> bool:
    """A record that begins a command: `*<n>\\r\\n$` or an inline command word."""
    if data[:1] == b"*":
        eol = data.find(b"\r\n", 1, 12)
        return eol > 1 and data[1:eol].isdigit() and data[eol + 2 : eol + 3] in (b"$", b"")
    word = data[: data.find(b" ") if b" " in data[:16] else 16]
    return word.rstrip(b"\r\n").isalpha() and data.find(b"\r\n", 0, 4096) > 0


def _resp_start(data: bytes) -> bool:
    """A record that begins a reply: a RESP type byte and a well-formed first line."""
    if data[0] not in _TYPES:
        return False
    eol = data.find(b"\r\n", 1, 4096)
    if eol < 0:
        return False
    if data[0] in b"$*%~>|=!:":
        return data[1:eol].lstrip(b"-").isdigit()
    return True


class _Cmd:
    __slots__ = (
        "confirms",
        "extra",
        "method",
        "path",
        "req_bytes",
        "req_first_enter",
        "req_first_exit",
        "req_last_exit",
        "resp_bytes",
        "resp_first_enter",
        "resp_first_exit",
        "verb",
    )

    def __init__(self, method: str, path: str, verb: bytes, extra: dict[str, object]) -> None:
        self.method = method
        self.path = path
        self.verb = verb
        self.extra = extra
        self.confirms = 0
        self.req_bytes = self.req_first_enter = self.req_first_exit = self.req_last_exit = 0
        self.resp_bytes = self.resp_first_enter = self.resp_first_exit = 0  # confirmations


def _encode(args: list[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _redact(verb: bytes, args: list[bytes], complete: bool) -> list[bytes] | None:
    """`args` with secrets masked, or None if the command carries none."""
    if verb == b"AUTH":
        return [args[0], *(_MASK for _ in args[1:])]
    masked = list(args)
    if verb in (b"HELLO", b"MIGRATE"):
        for i, a in enumerate(args):
            up = a.upper()
            if up == b"AUTH":
                masked[i + 1 : i + 3 if verb == b"HELLO" else i + 2] = [_MASK] * (
                    2 if verb == b"HELLO" else 1
                )
            elif up == b"AUTH2":
                masked[i + 1 : i + 3] = [_MASK, _MASK]
        masked = masked[: len(args)]
    elif verb == b"CONFIG" and len(args) > 1 and args[1].upper() == b"SET":
        for i in range(2, len(args) - 1, 2):
            if args[i].lower() in _SECRET_CONFIGS:
                masked[i + 1] = _MASK
    elif verb == b"ACL" and len(args) > 1 and args[1].upper() == b"SETUSER":
        masked = [_MASK if a[:1] in (b">", b"<", b"#", b"!") else a for a in args]
    else:
        return None
    if not complete:  # arguments past the kept ones were not inspected: mask them all
        return [args[0], _MASK]
    return masked


class RedisConnection(ParserBase):
    """Redis on one TCP connection, seen from one process.

    `role` "client": commands are EGRESS, replies and pushes INGRESS; "server": the reverse.
    `feed()` takes one record per syscall, in order, and returns the pairs it completed; it
    never raises. `stats()` returns every counter.
    """

    __slots__ = (
        "_max_path",
        "_max_pending",
        "_pending",
        "_req",
        "_req_dir",
        "_resp",
        "_resp_dir",
        "_subscribed",
        "absorbed_confirms",
        "orphans",
        "pairs",
        "pushes",
        "role",
        "unanswered_requests",
    )

    def __init__(
        self, role: str, *, max_path: int = 1024, max_pending: int = 4096, max_line: int = 65536
    ) -> None:
        self._req_dir, self._resp_dir = roles(role, "RedisConnection")
        self.role = role
        self._max_path = max_path
        self._max_pending = max_pending
        self._req = _RespReader(
            self._on_command, self._on_req_desync, _req_start, _always, max_line, max_path, True
        )
        self._resp = _RespReader(
            self._on_reply,
            self._drop_pending,
            _resp_start,
            self._push_type,
            max_line,
            max_path,
            False,
        )
        self._pending: deque[_Cmd] = deque()
        self._subscribed = False
        self._out: list[L7Pair] = []
        self.closed_ns: int | None = None
        self.pairs = self.pushes = self.errors = self.lost_events = self.orphans = 0
        self.unanswered_requests = self.absorbed_confirms = 0

    # -- public API ----------------------------------------------------------------------------

    def feed(
        self, direction: int, data: bytes, true_len: int, enter_ns: int, exit_ns: int
    ) -> list[L7Pair]:
        """Consume one syscall record; return the pairs it completed (often none)."""
        try:
            if direction == self._req_dir:
                if not (
                    self._req.top == -1
                    and not self._req.buf
                    and not self._req.state
                    and true_len == len(data)
                    and self._fast_commands(data, enter_ns, exit_ns)
                ):
                    self._req.feed(data, true_len, enter_ns, exit_ns)
            elif direction == self._resp_dir:
                resp = self._resp
                if not (
                    resp.top == -1
                    and not resp.buf
                    and not resp.state
                    and true_len == len(data)
                    and self._fast_replies(data, enter_ns, exit_ns)
                ):
                    resp.feed(data, true_len, enter_ns, exit_ns)
            else:
                return []
        except Exception:  # a parser bug must not take the agent down; resync instead
            self._failed()
        return self._take()

    def close(self, ts_ns: int) -> list[L7Pair]:
        """The connection closed; commands still waiting are dropped (counted). Idempotent."""
        if self.closed_ns is None:
            self.closed_ns = ts_ns
            self._reset(True)
            self._req.state = self._resp.state = 2
        out, self._out = self._out, []
        return out

    def stats(self) -> dict[str, int]:
        """All counters by name."""
        return {
            "pairs": self.pairs,
            "pushes": self.pushes,
            "desyncs": self._req.desyncs + self._resp.desyncs,
            "skipped_records": self._req.skipped_records + self._resp.skipped_records,
            "unanswered_requests": self.unanswered_requests,
            "orphans": self.orphans,
            "absorbed_confirms": self.absorbed_confirms,
            "lost_events": self.lost_events,
            "pending": len(self._pending),
            "errors": self.errors,
        }

    # -- commands ------------------------------------------------------------------------------

    def _fast_commands(self, data: bytes, enter_ns: int, exit_ns: int) -> bool:
        """Whole commands filling a whole record (the common case): parse them in one loop.

        Returns False (having consumed nothing) when the record is anything else.
        """
        n = len(data)
        pos = 0
        found: list[tuple[int, int, list[bytes]]] = []
        find = data.find
        while pos < n:
            if data[pos] != 42:
                return False
            eol = find(b"\r\n", pos)
            if eol < 0:
                return False
            try:
                count = int(data[pos + 1 : eol])
                p = eol + 2
                args: list[bytes] = []
                for _ in range(count):
                    if data[p] != 36:
                        return False
                    e = find(b"\r\n", p)
                    if e < 0:
                        return False
                    start = e + 2
                    end = start + int(data[p + 1 : e])
                    if len(args) < _MAX_ITEMS:
                        args.append(data[start : min(end, start + _MAX_ITEM)])
                    p = end + 2
            except (ValueError, IndexError):
                return False
            if p > n or count < 1:
                return False
            found.append((pos, p, args))
            pos = p
        for start, end, args in found:
            self._command(
                args,
                data[start : min(end, start + self._max_path)],
                end - start,
                enter_ns,
                exit_ns,
                exit_ns,
            )
        return True

    def _on_command(self, r: _RespReader) -> None:
        raw = r.value_raw
        items = r.items
        if r.cut >= 0:  # the capture cut an argument: no name (or key) from half a word
            items = items[: r.cut] if r.cut > 0 else [b""]
            raw += b"..."
        self._command(items, raw, r.size, r.start_enter, r.start_exit, r.exit)

    def _command(
        self, args: list[bytes], raw: bytes, size: int, enter: int, first_exit: int, last_exit: int
    ) -> None:
        if not args:
            return
        verb = args[0].upper()
        extra: dict[str, object] = {"command": verb.decode("latin-1")} if verb else {}
        masked = _redact(verb, args, len(args) < _MAX_ITEMS)
        if masked is not None:
            raw = _encode(masked)
        elif len(args) > 1:
            if verb in _CHANNEL_CMDS:
                extra["channel"] = args[1].decode("utf-8", "replace")
            elif verb not in _NO_KEY:
                extra["key"] = args[1].decode("utf-8", "replace")
        method = PING if verb == b"PING" else COMMAND
        cmd = _Cmd(method, raw.decode("utf-8", "replace"), verb, extra)
        cmd.req_bytes = size
        cmd.req_first_enter, cmd.req_first_exit, cmd.req_last_exit = enter, first_exit, last_exit
        if verb in _SUBSCRIBE_CMDS:
            cmd.confirms = max(len(args) - 1, 1)
            if not verb.startswith((b"UNSUB", b"PUNSUB", b"SUNSUB")):
                self._subscribed = True
        pending = self._pending
        if len(pending) >= self._max_pending:
            self._drop_pending()
        pending.append(cmd)

    def _on_req_desync(self) -> None:
        pass  # commands already queued still get their replies

    # -- replies -------------------------------------------------------------------------------

    def _push_type(self, t: int) -> bool:
        return t == 62 or (t == 42 and self._subscribed)

    def _fast_replies(self, data: bytes, enter_ns: int, exit_ns: int) -> bool:
        """Whole scalar replies (+OK, :1, $n bulk, -ERR ...) filling a whole record, each
        answering the oldest pending command: pair them in one loop. Anything else (an
        aggregate, a push, a stale or unexpected reply) returns False having consumed nothing.
        """
        pending = self._pending
        n = len(data)
        pos = 0
        found: list[tuple[int, int, int]] = []  # (type, start, end)
        find = data.find
        while pos < n:
            t = data[pos]
            eol = find(b"\r\n", pos)
            if eol < 0 or len(found) >= len(pending):
                return False
            if t == 36:  # $ bulk
                try:
                    length = int(data[pos + 1 : eol])
                except ValueError:
                    return False
                end = eol + 2 + length + 2 if length >= 0 else eol + 2
                if end > n or (length >= 0 and data[end - 2 : end] != b"\r\n"):
                    return False
            elif t in _LINE_TYPES:
                end = eol + 2
            else:
                return False
            found.append((t, pos, end))
            pos = end
        if not found or pending[0].req_first_enter > exit_ns:
            return False
        resp_first = (enter_ns, exit_ns)
        for t, start, end in found:
            cmd = pending.popleft()
            if t == 45:  # - error
                cmd.extra["error"] = data[start + 1 : min(end - 2, start + 201)].decode(
                    "utf-8", "replace"
                )
            req = (cmd.req_bytes, cmd.req_first_enter, cmd.req_first_exit, cmd.req_last_exit)
            resp = (end - start, *resp_first, exit_ns)
            status = STATUS_ERROR if t == 45 else STATUS_OK
            self._out.append(
                make_pair(PROTOCOL, cmd.method, cmd.path, status, req, resp, False, cmd.extra)
            )
        self.pairs += len(found)
        return True

    def _on_reply(self, r: _RespReader) -> None:
        t = r.top
        items = r.items
        kind = items[0].lower() if items and (t == 62 or (t == 42 and self._subscribed)) else b""
        if kind:
            if kind in _CONFIRMS:
                self._confirm(r, kind)
                return
            if t == 62 or kind in _MESSAGES:
                self._push(r, kind)
                return
        pending = self._pending
        if not pending:
            self.orphans += 1
            return
        cmd = pending[0]
        if cmd.req_first_enter > r.start_exit:  # answered before it was asked: stale
            self.orphans += 1
            return
        pending.popleft()
        status = STATUS_ERROR if t in _ERRORS else STATUS_OK
        if status == STATUS_ERROR and items:
            cmd.extra["error"] = items[0][:200].decode("utf-8", "replace")
        self._emit(cmd, r, status)

    def _confirm(self, r: _RespReader, kind: bytes) -> None:
        items = r.items
        if len(items) > 2 and items[2] == b"0" and kind.endswith(b"unsubscribe"):
            self._subscribed = False
        pending = self._pending
        if pending and pending[0].verb.lower() == kind:
            cmd = pending[0]
            if not cmd.resp_bytes:
                cmd.resp_first_enter, cmd.resp_first_exit = r.start_enter, r.start_exit
            cmd.resp_bytes += r.size
            cmd.confirms -= 1
            if cmd.confirms <= 0:
                pending.popleft()
                self._emit(cmd, r, STATUS_OK)
            return
        self.absorbed_confirms += 1  # a further confirmation of an already answered command

    def _push(self, r: _RespReader, kind: bytes) -> None:
        items = r.items
        extra: dict[str, object] = {"kind": kind.decode("latin-1")}
        if kind == b"pmessage" and len(items) > 2:
            extra["pattern"] = items[1].decode("utf-8", "replace")
            extra["channel"] = items[2].decode("utf-8", "replace")
        elif len(items) > 1:
            extra["channel"] = items[1].decode("utf-8", "replace")
        path = r.value_raw.decode("utf-8", "replace")
        req = (r.size, r.start_enter, r.start_exit, r.exit)
        end = (0, r.enter, r.exit, r.exit)
        self._out.append(make_pair(PROTOCOL, PUSHED_EVENT, path, STATUS_OK, req, end, True, extra))
        self.pushes += 1
        self.pairs += 1

    def _emit(self, cmd: _Cmd, r: _RespReader, status: int) -> None:
        req = (cmd.req_bytes, cmd.req_first_enter, cmd.req_first_exit, cmd.req_last_exit)
        if cmd.resp_bytes:  # the last of several confirmations
            resp = (cmd.resp_bytes, cmd.resp_first_enter, cmd.resp_first_exit, r.exit)
        else:
            resp = (r.size, r.start_enter, r.start_exit, r.exit)
        self._out.append(
            make_pair(PROTOCOL, cmd.method, cmd.path, status, req, resp, False, cmd.extra)
        )
        self.pairs += 1

    # -- both ----------------------------------------------------------------------------------

    def _drop_pending(self) -> None:
        self.unanswered_requests += len(self._pending)
        self._pending.clear()

    def _reset(self, resync: bool) -> None:
        self._req.reset(resync)
        self._resp.reset(resync)
        self._drop_pending()


def _always(t: int) -> bool:
    return True
