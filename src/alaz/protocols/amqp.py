"""A sans-I/O AMQP 0-9-1 parser: published, delivered and fetched messages, per connection.

Framing is `LengthFramer` over frames: type (1 method, 2 content header, 3 body, 8 heartbeat),
channel, a 4-byte size, the payload and the frame-end octet 0xCE (checked on every whole frame).
The client opens with the 8-byte protocol header `AMQP\\x00\\x00\\x09\\x01`. Each direction
assembles content per channel: a Basic.Publish / Deliver / GetOk / Return method frame, one
content header carrying the body size, then body frames until that many bytes have come; frames
split across reads and channels interleaved on one connection are both fine, and a body that
was not captured is skipped by count.

Pairs (protocol AMQP, path "" as in the Go agent):

* PUBLISH: one per Basic.Publish with its content, client to server; status 0 (the Go agent's
  value); `extra` exchange, routing_key, channel, body_size.
* DELIVER: one per Basic.Deliver with its content, server to client (`reversed` True); status 0;
  `extra` exchange, routing_key, channel, consumer_tag, delivery_tag, redelivered, body_size.
* GET (not in the Go agent): Basic.Get paired with Basic.GetOk and its content (status 1) or
  Basic.GetEmpty (status 1, `extra["empty"]`), or with the Channel.Close that refused it
  (status 2, `extra` reply_code and error).

One-way pairs carry `resp_bytes` 0 and the times of their last record as `resp_*`. Connection
and channel setup, queue and exchange declarations, consumers, acks, publisher confirms,
returns and heartbeats are parsed and counted, not emitted. Connection.Start-Ok carries the
credentials (SASL PLAIN) and is never read; Connection.Open gives `vhost` to later pairs.

Robustness: `feed()` never raises; a cut frame header or a bad frame-end makes that direction
resync on a record beginning with a plausible frame, dropping the messages being assembled.
Bounds: `max_channels` channels with state, method frames carried up to 4 KiB.
"""

from __future__ import annotations

import struct
from typing import Final

from alaz.protocols.pair import (
    STATUS_ERROR,
    STATUS_NONE,
    STATUS_OK,
    L7Pair,
    LengthFramer,
    ParserBase,
    make_pair,
    roles,
)

__all__ = ["PROTOCOL", "AmqpConnection"]

PROTOCOL: Final = "AMQP"
PUBLISH: Final = "PUBLISH"
DELIVER: Final = "DELIVER"
GET: Final = "GET"

_PROTOCOL_HEADER: Final = b"AMQP"
_FRAME_END: Final = 0xCE
_MAX_FRAME: Final = 1 << 28
_TYPES: Final = frozenset((1, 2, 3, 8))
_HDR = struct.Struct(">BHI").unpack_from
_METHOD = struct.Struct(">HH").unpack_from
_U64 = struct.Struct(">Q").unpack_from

# (class, method)
_PUBLISH: Final = (60, 40)
_RETURN: Final = (60, 50)
_DELIVER: Final = (60, 60)
_GET: Final = (60, 70)
_GET_OK: Final = (60, 71)
_GET_EMPTY: Final = (60, 72)
_ACKS: Final = frozenset(((60, 80), (60, 90), (60, 120)))  # Ack, Reject, Nack
_CONNECTION_OPEN: Final = (10, 40)
_CONNECTION_CLOSE: Final = (10, 50)
_CHANNEL_CLOSE: Final = (20, 40)


def _header(buf: bytes | bytearray, pos: int) -> int:
    kind, _, size = _HDR(buf, pos)
    if kind == 0x41 and buf[pos : pos + 4] == _PROTOCOL_HEADER:
        return 8  # "AMQP" 0 0 9 1: framed as an 8-byte message of its own
    return size + 8 if kind in _TYPES and size < _MAX_FRAME else -1


def _is_start(data: bytes, true_len: int) -> bool:
    """A record that begins with the protocol header or a chain of well-formed frames."""
    if data.startswith(_PROTOCOL_HEADER):
        return True
    n = len(data)
    pos = 0
    while pos + 7 <= n:
        total = _header(data, pos)
        if total < 0 or pos + total > true_len:
            return False
        if pos + total <= n and data[pos + total - 1] != _FRAME_END:
            return False
        pos += total
    return pos > 0


def _shortstr(buf: bytes, pos: int) -> tuple[str, int]:
    """An AMQP short string at `pos` -> (text, position after it)."""
    if pos >= len(buf):
        return "", pos
    size = buf[pos]
    return buf[pos + 1 : pos + 1 + size].decode("utf-8", "replace"), pos + 1 + size


class _Msg:
    """A message being assembled (method, content header, body frames), or a pending Get."""

    __slots__ = (
        "body_left",
        "body_size",
        "bytes",
        "extra",
        "first_enter",
        "first_exit",
        "kind",
        "last_exit",
        "resp",
        "want_header",
    )

    def __init__(self, kind: str, size: int, enter: int, first_exit: int, last_exit: int) -> None:
        self.kind = kind
        self.bytes = size
        self.first_enter = enter
        self.first_exit = first_exit
        self.last_exit = last_exit
        self.body_size = self.body_left = 0
        self.want_header = True
        self.extra: dict[str, object] = {}
        self.resp: _Msg | None = None  # for a Get: its GetOk being assembled


class AmqpConnection(ParserBase):
    """AMQP 0-9-1 on one TCP connection, seen from one process.

    `role` "client": client frames are EGRESS, broker frames INGRESS; "server": the reverse.
    `feed()` takes one record per syscall, in order, and returns the pairs it completed; it
    never raises. `stats()` returns every counter.
    """

    __slots__ = (
        "_c2s",
        "_gets",
        "_max_channels",
        "_receiving",
        "_req_dir",
        "_resp_dir",
        "_s2c",
        "_sending",
        "acks",
        "channel_errors",
        "confirms",
        "heartbeats",
        "pairs",
        "returns",
        "role",
        "unanswered_requests",
        "vhost",
    )

    def __init__(self, role: str, *, max_channels: int = 2048) -> None:
        self._req_dir, self._resp_dir = roles(role, "AmqpConnection")
        self.role = role
        self._max_channels = max_channels
        keep = [64] * 256
        keep[1], keep[3] = 4096, 0
        self._c2s = LengthFramer(7, _header, self._on_client, self._on_c2s_desync, _is_start, keep)
        self._s2c = LengthFramer(7, _header, self._on_server, self._on_s2c_desync, _is_start, keep)
        self._sending: dict[int, _Msg] = {}  # channel -> Publish being assembled
        self._receiving: dict[int, _Msg] = {}  # channel -> Deliver/GetOk/Return being assembled
        self._gets: dict[int, _Msg] = {}  # channel -> Basic.Get waiting for its answer
        self._out: list[L7Pair] = []
        self.vhost: str | None = None
        self.closed_ns: int | None = None
        self.pairs = self.errors = self.lost_events = self.heartbeats = self.acks = 0
        self.confirms = self.returns = self.channel_errors = self.unanswered_requests = 0

    # -- public API ----------------------------------------------------------------------------

    def feed(
        self, direction: int, data: bytes, true_len: int, enter_ns: int, exit_ns: int
    ) -> list[L7Pair]:
        """Consume one syscall record; return the pairs it completed (often none)."""
        try:
            if direction == self._req_dir:
                framer = self._c2s
            elif direction == self._resp_dir:
                framer = self._s2c
            else:
                return []
            framer.feed(data, true_len, enter_ns, exit_ns)
        except Exception:  # a parser bug must not take the agent down; resync instead
            self._failed()
        return self._take()

    def close(self, ts_ns: int) -> list[L7Pair]:
        """The connection closed; messages being assembled are dropped. Idempotent."""
        if self.closed_ns is None:
            self.closed_ns = ts_ns
            self._reset(True)
            self._c2s.kill()
            self._s2c.kill()
        out, self._out = self._out, []
        return out

    def stats(self) -> dict[str, int]:
        """All counters by name."""
        return {
            "pairs": self.pairs,
            "desyncs": self._c2s.desyncs + self._s2c.desyncs,
            "skipped_records": self._c2s.skipped_records + self._s2c.skipped_records,
            "unanswered_requests": self.unanswered_requests,
            "acks": self.acks,
            "confirms": self.confirms,
            "returns": self.returns,
            "channel_errors": self.channel_errors,
            "heartbeats": self.heartbeats,
            "lost_events": self.lost_events,
            "errors": self.errors,
        }

    # -- frames --------------------------------------------------------------------------------

    def _frame(self, framer: LengthFramer, frame: bytes, complete: bool) -> int:
        """Check the frame-end octet; return the frame type, or -1 (protocol header, desync)."""
        if frame[0] == 0x41:  # the protocol header
            return -1
        if complete and frame[-1] != _FRAME_END:
            framer.desync()
            return -1
        return frame[0]

    def _on_client(self, frame: bytes, total: int, complete: bool) -> None:
        kind = self._frame(self._c2s, frame, complete)
        channel = frame[1] << 8 | frame[2]
        if kind == 1:
            if len(frame) < 11:
                return
            method = _METHOD(frame, 7)
            if method == _PUBLISH:
                msg = self._start(self._c2s, PUBLISH, total)
                exchange, pos = _shortstr(frame, 13)
                routing_key, _ = _shortstr(frame, pos)
                msg.extra = {"exchange": exchange, "routing_key": routing_key, "channel": channel}
                self._put(self._sending, channel, msg)
            elif method == _GET:
                msg = self._start(self._c2s, GET, total)
                msg.extra = {"queue": _shortstr(frame, 13)[0], "channel": channel}
                self._put(self._gets, channel, msg)
            elif method in _ACKS:
                self.acks += 1
            elif method == _CONNECTION_OPEN:
                self.vhost = _shortstr(frame, 11)[0]
            elif method == _CHANNEL_CLOSE:
                self._forget(channel)
            # Connection.Start-Ok (10, 11) carries the credentials: never read.
        elif kind == 2 or kind == 3:
            self._content(self._sending, self._c2s, channel, frame, total)
        elif kind == 8:
            self.heartbeats += 1

    def _on_server(self, frame: bytes, total: int, complete: bool) -> None:
        kind = self._frame(self._s2c, frame, complete)
        channel = frame[1] << 8 | frame[2]
        if kind == 1:
            if len(frame) < 11:
                return
            method = _METHOD(frame, 7)
            if method == _DELIVER:
                self._deliver(frame, total, channel)
            elif method in (_GET_OK, _GET_EMPTY):
                self._get_answer(frame, total, channel, method == _GET_EMPTY)
            elif method == _RETURN:
                msg = self._start(self._s2c, "", total)
                self._put(self._receiving, channel, msg)
                self.returns += 1
            elif method in _ACKS:
                self.confirms += 1  # publisher confirms
            elif method in (_CHANNEL_CLOSE, _CONNECTION_CLOSE):
                self._closed_by_broker(frame, total, channel, method == _CONNECTION_CLOSE)
        elif kind == 2 or kind == 3:
            self._content(self._receiving, self._s2c, channel, frame, total)
        elif kind == 8:
            self.heartbeats += 1

    def _start(self, framer: LengthFramer, kind: str, total: int) -> _Msg:
        return _Msg(kind, total, framer.start_enter, framer.start_exit, framer.exit)

    def _put(self, table: dict[int, _Msg], channel: int, msg: _Msg) -> None:
        if channel not in table and len(table) >= self._max_channels:
            del table[next(iter(table))]
        table[channel] = msg

    def _deliver(self, frame: bytes, total: int, channel: int) -> None:
        msg = self._start(self._s2c, DELIVER, total)
        consumer_tag, pos = _shortstr(frame, 11)
        delivery_tag = _U64(frame, pos)[0] if pos + 9 <= len(frame) else 0
        exchange, end = _shortstr(frame, pos + 9)
        routing_key, _ = _shortstr(frame, end)
        msg.extra = {
            "exchange": exchange,
            "routing_key": routing_key,
            "channel": channel,
            "consumer_tag": consumer_tag,
            "delivery_tag": delivery_tag,
            "redelivered": bool(frame[pos + 8] & 1) if pos + 8 < len(frame) else False,
        }
        self._put(self._receiving, channel, msg)

    def _get_answer(self, frame: bytes, total: int, channel: int, empty: bool) -> None:
        get = self._gets.get(channel)
        if get is None:
            return
        answer = self._start(self._s2c, GET, total)
        get.resp = answer
        if empty:
            get.extra["empty"] = True
            del self._gets[channel]
            self._emit_get(get, STATUS_OK)
            return
        delivery_tag = _U64(frame, 11)[0] if len(frame) >= 19 else 0
        exchange, pos = _shortstr(frame, 20)
        routing_key, pos = _shortstr(frame, pos)
        get.extra.update(exchange=exchange, routing_key=routing_key, delivery_tag=delivery_tag)
        if pos + 4 <= len(frame):
            get.extra["message_count"] = struct.unpack_from(">I", frame, pos)[0]
        answer.extra = get.extra
        self._put(self._receiving, channel, answer)

    def _closed_by_broker(self, frame: bytes, total: int, channel: int, whole: bool) -> None:
        code = struct.unpack_from(">H", frame, 11)[0] if len(frame) >= 13 else 0
        if code != 200:
            self.channel_errors += 1
            get = self._gets.pop(channel, None)
            if get is not None:
                get.resp = self._start(self._s2c, GET, total)
                get.extra.update(reply_code=code, error=_shortstr(frame, 13)[0])
                self._emit_get(get, STATUS_ERROR)
        if whole:
            self._drop_all()
        else:
            self._forget(channel)

    def _content(
        self, table: dict[int, _Msg], framer: LengthFramer, channel: int, frame: bytes, total: int
    ) -> None:
        msg = table.get(channel)
        if msg is None:
            return  # content of a message whose method frame was not seen
        msg.bytes += total
        msg.last_exit = framer.exit
        if frame[0] == 2:
            if not msg.want_header or len(frame) < 19:
                del table[channel]  # out of order: drop the message
                return
            msg.want_header = False
            msg.body_size = msg.body_left = _U64(frame, 11)[0]
        elif msg.want_header:
            del table[channel]
            return
        else:
            msg.body_left -= total - 8
        if msg.body_left <= 0:
            del table[channel]
            self._complete(msg, framer)

    def _complete(self, msg: _Msg, framer: LengthFramer) -> None:
        msg.extra["body_size"] = msg.body_size
        if msg.kind == GET:  # a GetOk's content: the Get it answers is complete
            for channel, get in list(self._gets.items()):
                if get.resp is msg:
                    del self._gets[channel]
                    self._emit_get(get, STATUS_OK)
                    return
            return
        if not msg.kind:  # a Basic.Return: counted, not emitted
            return
        req = (msg.bytes, msg.first_enter, msg.first_exit, msg.last_exit)
        end = (0, framer.enter, framer.exit, framer.exit)
        self._out.append(
            make_pair(
                PROTOCOL,
                msg.kind,
                "",
                STATUS_NONE,
                req,
                end,
                msg.kind == DELIVER,
                self._extra(msg.extra),
            )
        )
        self.pairs += 1

    def _emit_get(self, get: _Msg, status: int) -> None:
        answer = get.resp
        if answer is None:
            return
        req = (get.bytes, get.first_enter, get.first_exit, get.last_exit)
        resp = (answer.bytes, answer.first_enter, answer.first_exit, answer.last_exit)
        self._out.append(
            make_pair(PROTOCOL, GET, "", status, req, resp, False, self._extra(get.extra))
        )
        self.pairs += 1

    def _extra(self, extra: dict[str, object]) -> dict[str, object]:
        if self.vhost is not None:
            extra["vhost"] = self.vhost
        return extra

    # -- resync --------------------------------------------------------------------------------

    def _forget(self, channel: int) -> None:
        self._sending.pop(channel, None)
        self._receiving.pop(channel, None)
        if self._gets.pop(channel, None) is not None:
            self.unanswered_requests += 1

    def _on_c2s_desync(self, unframed: int) -> None:
        self._sending.clear()

    def _on_s2c_desync(self, unframed: int) -> None:
        self._receiving.clear()
        self.unanswered_requests += len(self._gets)
        self._gets.clear()

    def _drop_all(self) -> None:
        self._sending.clear()
        self._receiving.clear()
        self.unanswered_requests += len(self._gets)
        self._gets.clear()

    def _reset(self, resync: bool) -> None:
        self._c2s.reset(resync)
        self._s2c.reset(resync)
        self._drop_all()
