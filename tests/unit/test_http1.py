"""Http1Connection fed syscall records made from wire fixtures: split, pipelined, gapped, broken."""

from __future__ import annotations

import itertools
import random

import pytest

from alaz.protocols.http1 import (
    EGRESS,
    FLAG_CLOSE,
    FLAG_GAP,
    FLAG_TRUNCATED,
    FLAG_UPGRADE,
    INGRESS,
    Http1Connection,
    Http1Pair,
)

from .fixtures_http1 import (
    CURL_GET,
    EXCHANGES,
    GO_201_CHUNKED,
    HEAD_200,
    HEAD_REQ,
    NGINX_200,
    NOT_MODIFIED_304,
    REQUESTS_POST,
    Exchange,
    get,
    ok,
)

Stamp = tuple[int, int]  # (enter_ns, exit_ns) of one record


class Wire:
    """One connection seen by one process: records get distinct, increasing timestamps."""

    def __init__(self, role: str = "client", **limits: int) -> None:
        self.conn = Http1Connection(role, **limits)
        self.req_dir, self.resp_dir = (EGRESS, INGRESS) if role == "client" else (INGRESS, EGRESS)
        self.clock = 0
        self.pairs: list[Http1Pair] = []

    def record(self, direction: int, data: bytes, true_len: int | None = None) -> Stamp:
        self.clock += 1000
        stamp = (self.clock, self.clock + 10)
        size = len(data) if true_len is None else true_len
        self.pairs += self.conn.feed(direction, data, size, *stamp)
        return stamp

    def req(self, data: bytes, true_len: int | None = None) -> Stamp:
        return self.record(self.req_dir, data, true_len)

    def resp(self, data: bytes, true_len: int | None = None) -> Stamp:
        return self.record(self.resp_dir, data, true_len)

    def split(self, direction: int, payload: bytes, cuts: list[int]) -> list[tuple[int, Stamp]]:
        """Feed `payload` cut at `cuts`; return (end offset, stamp) per record."""
        bounds = [0, *sorted(set(cuts) - {0, len(payload)}), len(payload)]
        return [
            (hi, self.record(direction, payload[lo:hi])) for lo, hi in itertools.pairwise(bounds)
        ]

    def close(self) -> None:
        self.clock += 1000
        self.pairs += self.conn.close(self.clock)


def at(records: list[tuple[int, Stamp]], offset: int) -> Stamp:
    """The stamp of the record carrying byte `offset`."""
    return next(stamp for end, stamp in records if offset < end)


def expect(
    ex: Exchange,
    req_first: Stamp,
    req_last: Stamp,
    resp_first: Stamp,
    resp_last: Stamp,
    *,
    req_bytes: int | None = None,
    resp_bytes: int | None = None,
    flags: int = 0,
) -> Http1Pair:
    return Http1Pair(
        method=ex.method,
        path=ex.path,
        host=ex.host,
        status=ex.status,
        req_bytes=len(ex.request) if req_bytes is None else req_bytes,
        resp_bytes=len(ex.response) if resp_bytes is None else resp_bytes,
        req_first_enter_ns=req_first[0],
        req_first_exit_ns=req_first[1],
        req_last_exit_ns=req_last[1],
        resp_first_enter_ns=resp_first[0],
        resp_first_exit_ns=resp_first[1],
        resp_last_exit_ns=resp_last[1],
        version=ex.version,
        flags=flags,
    )


def small(path: str, status: int = 200, host: str = "api.local") -> Exchange:
    body = f"body of {path}".encode()
    reason = {200: "200 OK", 404: "404 Not Found", 500: "500 Internal Server Error"}[status]
    return Exchange(path, get(path, host), ok(body, reason), "GET", path, host, status)


# -- whole, split, byte by byte ----------------------------------------------------------------


def test_curl_get_nginx_response_exact_fields() -> None:
    w = Wire()
    a = w.req(CURL_GET)
    b = w.resp(NGINX_200)
    assert w.pairs == [
        Http1Pair(
            method="GET",
            path="/api/v1/users?id=42&verbose=1",
            host="users.default.svc.cluster.local:8080",
            status=200,
            req_bytes=127,
            resp_bytes=216,
            req_first_enter_ns=a[0],
            req_first_exit_ns=a[1],
            req_last_exit_ns=a[1],
            resp_first_enter_ns=b[0],
            resp_first_exit_ns=b[1],
            resp_last_exit_ns=b[1],
            version="1.1",
            flags=0,
        )
    ]
    assert w.conn.stats()["pending"] == 0


@pytest.mark.parametrize("ex", EXCHANGES, ids=lambda e: e.name)
def test_whole_records(ex: Exchange) -> None:
    w = Wire()
    a = w.req(ex.request)
    assert w.pairs == []
    b = w.resp(ex.response)
    assert w.pairs == [expect(ex, a, a, b, b)]


@pytest.mark.parametrize("ex", EXCHANGES, ids=lambda e: e.name)
def test_request_split_at_every_byte(ex: Exchange) -> None:
    for cut in range(1, len(ex.request)):
        w = Wire()
        a = w.req(ex.request[:cut])
        b = w.req(ex.request[cut:])
        c = w.resp(ex.response)
        assert w.pairs == [expect(ex, a, b, c, c)], cut


@pytest.mark.parametrize("ex", EXCHANGES, ids=lambda e: e.name)
def test_response_split_at_every_byte(ex: Exchange) -> None:
    for cut in range(1, len(ex.response)):
        w = Wire()
        a = w.req(ex.request)
        b = w.resp(ex.response[:cut])
        assert w.pairs == [], cut
        c = w.resp(ex.response[cut:])
        assert w.pairs == [expect(ex, a, a, b, c)], cut


@pytest.mark.parametrize("ex", EXCHANGES, ids=lambda e: e.name)
def test_one_byte_per_record(ex: Exchange) -> None:
    w = Wire()
    reqs = [w.req(ex.request[i : i + 1]) for i in range(len(ex.request))]
    resps = [w.resp(ex.response[i : i + 1]) for i in range(len(ex.response))]
    assert w.pairs == [expect(ex, reqs[0], reqs[-1], resps[0], resps[-1])]


def test_keep_alive_conversation_random_splits() -> None:
    rng = random.Random(1234)
    for _ in range(150):
        w = Wire()
        want = []
        for ex in rng.sample(EXCHANGES, len(EXCHANGES)):
            req_cuts = rng.sample(range(1, len(ex.request)), rng.randint(0, 6))
            resp_cuts = rng.sample(range(1, len(ex.response)), rng.randint(0, 6))
            reqs = w.split(w.req_dir, ex.request, req_cuts)
            resps = w.split(w.resp_dir, ex.response, resp_cuts)
            want.append(expect(ex, reqs[0][1], reqs[-1][1], resps[0][1], resps[-1][1]))
        assert w.pairs == want
        assert w.conn.desyncs == 0


# -- pipelining --------------------------------------------------------------------------------


def pipeline(n: int) -> list[Exchange]:
    statuses = [200, 404, 200, 500]
    return [small(f"/item/{i}?q={'x' * i}", statuses[i % 4]) for i in range(n)]


def expected_pipeline(
    exs: list[Exchange], req: Stamp, resps: list[tuple[int, Stamp]]
) -> list[Http1Pair]:
    want, offset = [], 0
    for ex in exs:
        first, last = at(resps, offset), at(resps, offset + len(ex.response) - 1)
        want.append(expect(ex, req, req, first, last))
        offset += len(ex.response)
    return want


def test_pipeline_ten_deep_responses_split_at_every_byte() -> None:
    exs = pipeline(10)
    requests = b"".join(ex.request for ex in exs)
    responses = b"".join(ex.response for ex in exs)
    for cut in range(1, len(responses)):
        w = Wire()
        req = w.req(requests)
        resps = w.split(w.resp_dir, responses, [cut])
        assert w.pairs == expected_pipeline(exs, req, resps), cut


def test_pipeline_twelve_deep_random_splits() -> None:
    rng = random.Random(7)
    exs = pipeline(12)
    requests = b"".join(ex.request for ex in exs)
    responses = b"".join(ex.response for ex in exs)
    for _ in range(200):
        w = Wire()
        req = w.req(requests)
        assert w.conn.stats()["pending"] == 12
        resps = w.split(w.resp_dir, responses, rng.sample(range(1, len(responses)), 15))
        assert w.pairs == expected_pipeline(exs, req, resps)


def test_pipeline_mixed_framings_in_one_read() -> None:
    """HEAD, 304, chunked and sized responses back to back: each body ends exactly."""
    exs = [EXCHANGES[3], EXCHANGES[4], EXCHANGES[1], EXCHANGES[0]]
    w = Wire()
    req = w.req(b"".join(ex.request for ex in exs))
    resp = w.resp(b"".join(ex.response for ex in exs))
    assert w.pairs == [expect(ex, req, req, resp, resp) for ex in exs]


# -- bodies larger than the capture ------------------------------------------------------------


def syscalls(payload: bytes, size: int = 65536, captured: int = 1024) -> list[tuple[bytes, int]]:
    """`payload` written in `size`-byte syscalls of which the kernel kept `captured` bytes."""
    return [
        (payload[i : i + size][:captured], len(payload[i : i + size]))
        for i in range(0, len(payload), size)
    ]


def test_one_mib_request_body_captured_1k_per_syscall() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    head = b"PUT /blobs/7 HTTP/1.1\r\nHost: blob.store\r\nContent-Length: 1048576\r\n\r\n"
    w = Wire()
    records = [w.req(data, true_len) for data, true_len in syscalls(head + body)]
    assert len(records) == 17
    assert w.conn.desyncs == 0
    nxt = small("/after-the-blob")
    a = w.req(nxt.request)
    b = w.resp(ok(b"stored", "201 Created") + nxt.response)
    put = Exchange(
        "put", head + body, ok(b"stored", "201 Created"), "PUT", "/blobs/7", "blob.store", 201
    )
    assert w.pairs == [
        expect(put, records[0], records[-1], b, b, flags=FLAG_GAP),
        expect(nxt, a, a, b, b),
    ]
    assert w.pairs[0].req_bytes == len(head) + 1048576


def test_one_mib_response_body_ends_inside_a_capture_and_next_response_parses() -> None:
    first, second = small("/big"), small("/small")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "
    # Size the body so the big response ends 100 bytes into a 64 KiB read: the next response
    # then sits inside that read's captured 1 KiB, right behind 1 MiB of skipped bytes.
    total = 16 * 65536 + 100
    digits = len(str(total))
    body_len = total - len(head) - digits - 4
    big = head + str(body_len).encode() + b"\r\n\r\n" + b"z" * body_len
    assert len(big) == total
    w = Wire()
    a = w.req(first.request + second.request)
    reads = [w.resp(data, true_len) for data, true_len in syscalls(big + second.response)]
    assert len(reads) == 17
    big_ex = first._replace(response=big)
    assert w.pairs == [
        expect(big_ex, a, a, reads[0], reads[-1], flags=FLAG_GAP),
        expect(second, a, a, reads[-1], reads[-1]),
    ]
    assert w.pairs[0].resp_bytes == total
    assert w.conn.desyncs == 0


def test_chunked_body_with_gaps_inside_chunks() -> None:
    chunk = b"c" * 100000
    body = b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x;ext=1\r\n" % len(chunk) + chunk
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"\r\n0\r\n\r\n"
    ex = small("/chunks")._replace(response=resp)
    w = Wire()
    a = w.req(ex.request)
    # Each read captures a chunk-size line and the start of its chunk; the gaps end inside
    # (or exactly at the end of) the chunk data, never over a size line.
    head_end = resp.index(b"\r\n\r\n") + 4
    first_line_end = resp.index(b"\r\n", head_end) + 2
    second_line_start = first_line_end + len(chunk) + 2
    second_line_end = resp.index(b"\r\n", second_line_start) + 2
    r1 = w.resp(resp[:first_line_end] + chunk[:256], first_line_end + len(chunk) + 2)
    line2 = resp[second_line_start:second_line_end]
    w.resp(line2 + chunk[:100], len(line2) + len(chunk))  # leaves the chunk's CRLF to come
    r3 = w.resp(resp[second_line_end + len(chunk) :])
    assert r3 != r1
    assert w.pairs == [expect(ex, a, a, r1, r3, flags=FLAG_GAP)]
    assert w.conn.desyncs == 0


def test_gap_past_the_body_end_loses_the_next_message() -> None:
    first, second, third = small("/one"), small("/two"), small("/three")
    w = Wire()
    a = w.req(first.request + second.request)
    # One read holds all of /one's response and /two's head, but only 20 bytes were captured.
    both = first.response + second.response
    head_len = first.response.index(b"\r\n\r\n") + 4
    r = w.resp(both[: head_len + 3], len(both))  # the capture ends 3 bytes into the body
    assert w.pairs == [expect(first, a, a, r, r, flags=FLAG_GAP)]
    assert w.conn.desyncs == 1
    assert w.conn.unanswered_requests == 1  # /two: its response was in the gap
    b = w.req(third.request)
    c = w.resp(third.response)
    assert w.pairs[1:] == [expect(third, b, b, c, c)]


# -- framing special cases ---------------------------------------------------------------------


def test_head_response_has_no_body_even_with_content_length() -> None:
    nxt = small("/after-head")
    head_ex = EXCHANGES[3]
    w = Wire()
    a = w.req(HEAD_REQ + nxt.request)
    b = w.resp(HEAD_200 + nxt.response)
    assert w.pairs == [expect(head_ex, a, a, b, b), expect(nxt, a, a, b, b)]
    assert w.pairs[0].resp_bytes == len(HEAD_200)


def test_204_and_304_have_no_body() -> None:
    one, two = small("/one"), small("/two")
    no_content = b"HTTP/1.1 204 No Content\r\nX-Req: 1\r\n\r\n"
    w = Wire()
    a = w.req(one.request + two.request + one.request)
    b = w.resp(no_content + NOT_MODIFIED_304 + one.response)
    assert [(p.path, p.status, p.resp_bytes) for p in w.pairs] == [
        ("/one", 204, len(no_content)),
        ("/two", 304, len(NOT_MODIFIED_304)),
        ("/one", 200, len(one.response)),
    ]
    assert all(p.resp_first_enter_ns == b[0] and p.req_first_exit_ns == a[1] for p in w.pairs)


def test_100_continue_is_skipped_and_the_request_keeps_waiting() -> None:
    head = (
        b"POST /upload HTTP/1.1\r\nHost: up\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"
    )
    final = ok(b"thanks")
    w = Wire()
    a = w.req(head)
    w.resp(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert w.pairs == []
    b = w.req(b"hello world")
    c = w.resp(final)
    ex = Exchange("continue", head + b"hello world", final, "POST", "/upload", "up", 200)
    assert w.pairs == [expect(ex, a, b, c, c)]


def test_interim_responses_in_the_same_read_as_the_final_one() -> None:
    ex = small("/early-hints")
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"
    w = Wire()
    a = w.req(ex.request)
    b = w.resp(b"HTTP/1.1 100 Continue\r\n\r\n" + hints + ex.response)
    assert w.pairs == [expect(ex, a, a, b, b)]


def test_interim_response_does_not_inherit_an_earlier_close() -> None:
    one, two = small("/one"), small("/two")
    w = Wire()
    w.req(one.request)
    w.resp(ok(b"bye", extra=b"Connection: close\r\n"))
    a = w.req(two.request)  # the peer kept going after all: resync on the next starts
    b = w.resp(b"HTTP/1.1 100 Continue\r\n\r\n")
    c = w.resp(two.response)
    assert w.pairs[1:] == [expect(two, a, a, c, c)]
    assert b != c


def test_101_switching_protocols_completes_and_stops_parsing() -> None:
    req = b"GET /ws HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    resp = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    w = Wire()
    a = w.req(req)
    b = w.resp(resp + b"\x81\x05hello")  # the first frame rides in the same read
    ex = Exchange("ws", req, resp, "GET", "/ws", "chat", 101)
    assert w.pairs == [expect(ex, a, a, b, b, flags=FLAG_UPGRADE)]
    w.req(b"\x81\x85abcd" + CURL_GET)  # frames, even ones that look like HTTP, are not parsed
    w.resp(NGINX_200)
    w.close()
    assert len(w.pairs) == 1
    assert w.conn.desyncs == 0
    assert w.conn.orphan_responses == 0


def test_connect_tunnel_stops_parsing() -> None:
    req = b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n"
    resp = b"HTTP/1.1 200 Connection established\r\n\r\n"
    w = Wire()
    a = w.req(req)
    b = w.resp(resp)
    w.req(CURL_GET)
    w.resp(NGINX_200)
    ex = Exchange("connect", req, resp, "CONNECT", "db.internal:5432", "db.internal:5432", 200)
    assert w.pairs == [expect(ex, a, a, b, b, flags=FLAG_UPGRADE)]


def test_read_until_close_completes_on_close() -> None:
    req = b"GET /legacy HTTP/1.0\r\nHost: old.local\r\n\r\n"
    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    w = Wire()
    a = w.req(req)
    b = w.resp(head + b"part one, ")
    w.resp(b"part two, ", 5000)  # 4990 bytes past the capture
    c = w.resp(b"the end")
    assert w.pairs == []
    w.close()
    resp_bytes = len(head) + 10 + 5000 + 7
    ex = Exchange("legacy", req, b"", "GET", "/legacy", "old.local", 200, "1.0")
    assert w.pairs == [expect(ex, a, a, b, c, resp_bytes=resp_bytes, flags=FLAG_CLOSE | FLAG_GAP)]
    w.resp(b"late bytes")
    assert w.conn.close(99) == []
    assert len(w.pairs) == 1


def test_close_mid_body_reports_a_truncated_response() -> None:
    ex = small("/cut")
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    w = Wire()
    a = w.req(ex.request)
    b = w.resp(head + b"x" * 100)
    w.close()
    assert w.pairs == [
        expect(ex, a, a, b, b, resp_bytes=len(head) + 100, flags=FLAG_TRUNCATED | FLAG_CLOSE)
    ]


def test_response_connection_close_ends_the_exchange_sequence() -> None:
    one, two = small("/one"), small("/two")
    closing = ok(b"bye", extra=b"Connection: close\r\n")
    w = Wire()
    a = w.req(one.request + two.request)
    b = w.resp(closing)
    assert w.pairs == [expect(one._replace(response=closing), a, a, b, b, flags=FLAG_CLOSE)]
    assert w.conn.unanswered_requests == 1  # /two will never be answered
    w.resp(two.response)  # a server that ignores its own "close" is not paired with anything
    assert len(w.pairs) == 1
    assert w.conn.orphan_responses == 1


def test_early_response_while_the_request_body_is_still_sending() -> None:
    head = b"POST /big HTTP/1.1\r\nHost: up\r\nContent-Length: 100000\r\n\r\n"
    refusal = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    w = Wire()
    a = w.req(head + b"x" * 1000)
    b = w.resp(refusal)
    ex = Exchange("413", head, refusal, "POST", "/big", "up", 413)
    assert w.pairs == [expect(ex, a, a, b, b, req_bytes=len(head) + 1000, flags=FLAG_CLOSE)]
    w.req(b"x" * 99000)  # the rest of the body still frames correctly
    assert (w.conn.desyncs, len(w.pairs)) == (0, 1)


def test_request_connection_close_is_flagged() -> None:
    req = b"GET /last HTTP/1.1\r\nHost: api.local\r\nConnection: close\r\n\r\n"
    ex = Exchange("last", req, ok(b"x"), "GET", "/last", "api.local", 200)
    w = Wire()
    a = w.req(req)
    b = w.resp(ex.response)
    assert w.pairs == [expect(ex, a, a, b, b, flags=FLAG_CLOSE)]


def test_http10_keep_alive_is_not_close() -> None:
    req = b"GET /ka HTTP/1.0\r\nHost: api.local\r\nConnection: Keep-Alive\r\n\r\n"
    resp = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    ex = Exchange("ka", req, resp, "GET", "/ka", "api.local", 200, "1.0")
    w = Wire()
    a = w.req(req)
    b = w.resp(resp)
    c = w.req(req)
    d = w.resp(resp)
    assert w.pairs == [expect(ex, a, a, b, b), expect(ex, c, c, d, d)]


def test_bare_lf_heads_and_stray_crlf_between_requests() -> None:
    req = b"GET /nc HTTP/1.0\nHost: nc.local\nConnection: keep-alive\n\n"
    resp = b"HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 3\n\nhey"
    ex = Exchange("nc", req, resp, "GET", "/nc", "nc.local", 200, "1.0")
    post = REQUESTS_POST + b"\r\n"  # some clients send an extra CRLF after a body
    w = Wire()
    a = w.req(req)
    b = w.resp(resp)
    c = w.req(post + CURL_GET)
    d = w.resp(ok(b"{}") + NGINX_200)
    assert w.pairs[0] == expect(ex, a, a, b, b)
    assert [(p.method, p.path, p.req_bytes, p.req_first_exit_ns) for p in w.pairs[1:]] == [
        ("POST", "/v1/orders", len(REQUESTS_POST), c[1]),
        ("GET", "/api/v1/users?id=42&verbose=1", len(CURL_GET), c[1]),
    ]
    assert w.pairs[2].resp_last_exit_ns == d[1]
    assert w.conn.desyncs == 0


def test_content_length_lists() -> None:
    ex = small("/dup")
    w = Wire()
    w.req(ex.request + ex.request)
    w.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc" + ex.response)
    assert [(p.status, p.resp_bytes) for p in w.pairs] == [
        (200, len(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc")),
        (200, len(ex.response)),
    ]
    w.req(ex.request)
    w.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd")
    assert len(w.pairs) == 2
    assert w.conn.desyncs == 1


@pytest.mark.parametrize("value", [b"-1", b"-2", b"-5", b"12abc", b"0x10"])
def test_bad_content_length_desyncs(value: bytes) -> None:
    w = Wire()
    w.req(CURL_GET)
    w.resp(b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n0123456789abcdef")
    assert (w.conn.desyncs, w.pairs) == (1, [])


def test_oversize_chunk_line_and_trailer_desync() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for tail, oversize in ((b"5;" + b"e" * 300, 0), (b"0\r\nX-T: " + b"t" * 300, 1)):
        w = Wire(max_head=256)
        w.req(CURL_GET)
        w.resp(head)
        for i in range(0, len(tail), 40):
            w.resp(tail[i : i + 40])
            assert len(w.conn._resp.buf) <= 256
        assert (w.conn.desyncs, w.conn.oversize_headers) == (1, oversize)
        assert [p.flags for p in w.pairs] == [FLAG_TRUNCATED]


@pytest.mark.parametrize(
    "line",
    [
        b"GET  HTTP/1.1",
        b"GET / HTTP/2.0",
        b"get / HTTP/1.1",
        b"GET / HTTP/1.1 extra",
        b"GET\t/ HTTP/1.1",
        b"G\xc3\x89T / HTTP/1.1",
    ],
)
def test_invalid_request_lines_desync(line: bytes) -> None:
    w = Wire()
    w.req(line + b"\r\nHost: a\r\n\r\n")
    assert (w.conn.desyncs, w.conn.stats()["pending"]) == (1, 1)  # the pending one: a barrier


def test_http10_response_closes_by_default() -> None:
    one, two = small("/one"), small("/two")
    resp = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    w = Wire()
    a = w.req(one.request + two.request)
    b = w.resp(resp)
    assert w.pairs == [expect(one._replace(response=resp), a, a, b, b, flags=FLAG_CLOSE)]
    assert w.conn.unanswered_requests == 1


def test_request_with_unchunked_transfer_encoding_is_invalid() -> None:
    w = Wire()
    w.req(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nzzz")
    assert w.conn.desyncs == 1


def test_unknown_token_method_is_accepted() -> None:
    req = b"M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\n\r\n"
    ex = Exchange("ssdp", req, ok(b""), "M-SEARCH", "*", "239.255.255.250:1900", 200)
    w = Wire()
    a = w.req(req)
    b = w.resp(ex.response)
    assert w.pairs == [expect(ex, a, a, b, b)]


# -- loss, desync, resync ----------------------------------------------------------------------


def test_lost_drops_the_pending_request_and_resyncs() -> None:
    lost_ex, nxt = small("/lost"), small("/next")
    w = Wire()
    w.req(lost_ex.request)
    w.conn.lost()
    w.resp(lost_ex.response)  # answers a request the parser forgot: must not pair
    assert w.pairs == []
    a = w.req(nxt.request)
    b = w.resp(nxt.response)
    assert w.pairs == [expect(nxt, a, a, b, b)]
    s = w.conn.stats()
    assert (s["lost_events"], s["unanswered_requests"], s["orphan_responses"]) == (1, 1, 1)


def test_lost_mid_body_skips_records_until_a_message_starts() -> None:
    cut, nxt = small("/cut"), small("/next")
    w = Wire()
    w.req(cut.request)
    w.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b"a" * 100)
    w.conn.lost()
    w.resp(b"a" * 200)  # the rest of that body: not a message start, skipped
    w.resp(b"a" * 200 + b"HTTP/1.1 200 OK\r\n")  # nor is this
    a = w.req(nxt.request)
    b = w.resp(nxt.response)
    assert w.pairs == [expect(nxt, a, a, b, b)]
    assert w.conn.stats()["skipped_records"] == 2


def test_gap_inside_a_request_head_leaves_a_barrier() -> None:
    one, lost_ex, three = small("/one"), small("/lost"), small("/three")
    w = Wire()
    a = w.req(one.request)
    w.req(lost_ex.request[:12], len(lost_ex.request))  # head cut by the capture size
    b = w.req(three.request)
    c = w.resp(one.response)
    w.resp(lost_ex.response)  # reaches the barrier: dropped, not paired with /three
    d = w.resp(three.response)
    assert w.pairs == [expect(one, a, a, c, c), expect(three, b, b, d, d)]
    assert (w.conn.desyncs, w.conn.orphan_responses) == (1, 1)


def test_gap_inside_a_request_body_keeps_the_queued_request() -> None:
    one, two = small("/one"), small("/two")
    head = b"POST /chunky HTTP/1.1\r\nHost: api.local\r\nTransfer-Encoding: chunked\r\n\r\n"
    w = Wire()
    a = w.req(head + b"5\r\nhel", len(head) + 4000)  # ends in chunk data, gap crosses a size line
    b = w.req(two.request)
    c = w.resp(one.response)
    d = w.resp(two.response)
    assert [(p.method, p.path, p.flags) for p in w.pairs] == [
        ("POST", "/chunky", FLAG_TRUNCATED | FLAG_GAP),
        ("GET", "/two", 0),
    ]
    assert w.pairs[0].req_first_exit_ns == a[1]
    assert w.pairs[0].resp_last_exit_ns == c[1]
    assert w.pairs[1] == expect(two, b, b, d, d)


def test_gap_inside_a_chunk_size_line_truncates_the_response() -> None:
    one, two, three = small("/one"), small("/two"), small("/three")
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    w = Wire()
    a = w.req(one.request + two.request)
    b = w.resp(head + b"4\r\nabcd\r\n1", len(head) + 500)  # the next size line is cut
    assert w.pairs == [expect(one, a, a, b, b, resp_bytes=len(head) + 9, flags=FLAG_TRUNCATED)]
    assert (w.conn.desyncs, w.conn.unanswered_requests) == (1, 1)
    w.resp(b"0\r\n\r\n" + two.response)  # not record-aligned with a message start: skipped
    c = w.req(three.request)
    d = w.resp(three.response)
    assert w.pairs[1:] == [expect(three, c, c, d, d)]


def test_response_head_split_by_a_gap_drops_queued_requests() -> None:
    one, two = small("/one"), small("/two")
    w = Wire()
    w.req(one.request)
    w.resp(one.response[:10], len(one.response))
    assert w.pairs == []
    assert (w.conn.desyncs, w.conn.unanswered_requests) == (1, 1)
    a = w.req(two.request)
    b = w.resp(two.response)
    assert w.pairs == [expect(two, a, a, b, b)]


def test_stale_response_cannot_answer_a_later_request() -> None:
    ex = small("/fresh")
    conn = Http1Connection("client")
    assert conn.feed(EGRESS, ex.request, len(ex.request), 5000, 5010) == ()
    # a response whose read returned before the request was written cannot answer it
    assert conn.feed(INGRESS, ex.response, len(ex.response), 100, 200) == ()
    assert conn.orphan_responses == 1
    pairs = conn.feed(INGRESS, ex.response, len(ex.response), 6000, 6010)
    assert [(p.path, p.req_first_enter_ns, p.resp_first_enter_ns) for p in pairs] == [
        ("/fresh", 5000, 6000)
    ]


def test_queue_overflow_drops_oldest_and_their_responses() -> None:
    exs = pipeline(6)
    w = Wire(max_pending=4)
    a = w.req(b"".join(ex.request for ex in exs))
    b = w.resp(b"".join(ex.response for ex in exs))
    assert w.pairs == [expect(ex, a, a, b, b) for ex in exs[2:]]
    assert (w.conn.dropped_requests, w.conn.orphan_responses) == (2, 2)


def test_oversize_head_in_one_record_and_carried() -> None:
    big = b"GET /big HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 400 + b"\r\n\r\n"
    nxt = small("/next")
    for pieces in ([big], [big[i : i + 50] for i in range(0, len(big), 50)]):
        w = Wire(max_head=256)
        for piece in pieces:
            w.req(piece)
        assert (w.conn.oversize_headers, w.conn.desyncs) == (1, 1)
        assert len(w.conn._req.buf) <= 256
        w.resp(ok(b"for big"))  # eaten by the barrier the lost request left
        a = w.req(nxt.request)
        b = w.resp(nxt.response)
        assert w.pairs == [expect(nxt, a, a, b, b)]


# -- garbage, odd input, never raise -----------------------------------------------------------


def test_garbage_request_then_clean_traffic() -> None:
    one, two = small("/one"), small("/two")
    w = Wire()
    w.req(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a TLS ClientHello
    assert w.conn.desyncs == 1
    w.resp(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # the answer to the junk
    a = w.req(one.request)
    b = w.resp(one.response)
    c = w.req(two.request)
    d = w.resp(two.response)
    assert w.pairs == [expect(one, a, a, b, b), expect(two, c, c, d, d)]
    assert w.conn.errors == 0


def test_garbage_response_is_dropped_with_its_request() -> None:
    one, two = small("/one"), small("/two")
    w = Wire()
    w.req(one.request)
    w.resp(b"SSH-2.0-OpenSSH_9.6\r\n")
    assert (w.conn.desyncs, w.conn.unanswered_requests) == (1, 1)
    a = w.req(two.request)
    b = w.resp(two.response)
    assert w.pairs == [expect(two, a, a, b, b)]


@pytest.mark.parametrize(
    ("direction", "data", "true_len"),
    [
        (EGRESS, b"", 0),
        (EGRESS, b"", 4096),
        (INGRESS, b"", 100),
        (EGRESS, CURL_GET, 3),  # true count below the capture: nonsense, tolerated
        (7, CURL_GET, len(CURL_GET)),  # neither direction
        (EGRESS, b"\r\n\r\n", 4),
        (INGRESS, b"HTTP/1.1 999 X\r\n\r\n", 18),
        (INGRESS, b"HTTP/1.1 2000 OK\r\n\r\n", 20),
        (INGRESS, b"HTTP/1.1 099 Early\r\n\r\n" + NGINX_200, 22 + len(NGINX_200)),
        (EGRESS, b"GET  HTTP/1.1\r\n\r\n", 17),
        (EGRESS, b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 38),
    ],
)
def test_odd_records_never_raise(direction: int, data: bytes, true_len: int) -> None:
    conn = Http1Connection("client")
    conn.feed(EGRESS, CURL_GET, len(CURL_GET), 1, 2)
    assert conn.feed(direction, data, true_len, 3, 4) == ()
    assert conn.errors == 0


def test_bad_chunk_size_truncates_the_response() -> None:
    conn = Http1Connection("client")
    conn.feed(EGRESS, CURL_GET, len(CURL_GET), 1, 2)
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    pairs = conn.feed(INGRESS, resp, len(resp), 3, 4)
    assert [(p.status, p.resp_bytes, p.flags) for p in pairs] == [
        (200, len(resp) - 4, FLAG_TRUNCATED)
    ]
    assert (conn.desyncs, conn.errors) == (1, 0)


def test_random_garbage_never_raises_and_counts() -> None:
    rng = random.Random(99)
    conn = Http1Connection("client", max_head=1024, max_pending=8)
    starts = (b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"", b"", b"")
    for i in range(3000):
        data = rng.choice(starts) + rng.randbytes(rng.randint(0, 300))
        got = conn.feed(i % 2, data, len(data) + rng.choice((0, 0, 5000)), i, i)
        assert isinstance(got, (list, tuple))
    stats = conn.stats()
    assert stats["desyncs"] > 100 and stats["skipped_records"] > 500
    assert conn.errors == 0
    assert len(conn._req.buf) <= 1024 and len(conn._resp.buf) <= 1024


def test_fuzzed_traffic_never_raises_and_stays_bounded() -> None:
    """Mutated real traffic, random cuts, gaps and losses: no exception, no growth."""
    rng = random.Random(2024)
    requests = b"".join(ex.request for ex in EXCHANGES) + CURL_GET * 3
    responses = b"".join(ex.response for ex in EXCHANGES) + NGINX_200 * 3
    for _ in range(300):
        conn = Http1Connection(rng.choice(("client", "server")), max_head=512, max_pending=16)
        req_dir = EGRESS if conn.role == "client" else INGRESS
        streams = [bytearray(requests), bytearray(responses)]
        for s in streams:
            for _ in range(rng.randint(0, 8)):
                s[rng.randrange(len(s))] = rng.randrange(256)
        t = 0
        offsets = [0, 0]
        while offsets[0] < len(streams[0]) or offsets[1] < len(streams[1]):
            side = rng.randrange(2)
            lo = offsets[side]
            hi = min(lo + rng.randint(1, 200), len(streams[side]))
            offsets[side] = hi
            data = bytes(streams[side][lo:hi])
            gap = rng.choice((0, 0, 0, 0, rng.randint(1, 3000)))
            direction = req_dir if side == 0 else 1 - req_dir
            t += 10
            conn.feed(
                direction, data[: len(data) - min(gap, len(data) // 2)], len(data) + gap, t, t
            )
            if rng.random() < 0.02:
                conn.lost()
            assert len(conn._req.buf) <= 512 + 200 and len(conn._resp.buf) <= 512 + 200
            assert len(conn._pending) <= 16
        conn.close(t + 1)
        assert conn.errors == 0


# -- server role, construction -----------------------------------------------------------------


def test_server_role_reads_requests_and_writes_responses() -> None:
    w = Wire("server")
    reqs = w.split(INGRESS, REQUESTS_POST, [100])  # the server read the request in two reads
    resps = w.split(EGRESS, GO_201_CHUNKED, [200])
    ex = EXCHANGES[1]
    assert w.pairs == [expect(ex, reqs[0][1], reqs[1][1], resps[0][1], resps[1][1])]
    # the client's direction mapping would see nothing: server-side responses are EGRESS
    client = Http1Connection("client")
    client.feed(INGRESS, REQUESTS_POST, len(REQUESTS_POST), 1, 2)
    assert client.feed(EGRESS, GO_201_CHUNKED, len(GO_201_CHUNKED), 3, 4) == ()


def test_role_must_be_client_or_server() -> None:
    with pytest.raises(ValueError, match="role"):
        Http1Connection("proxy")


def test_stats_names_every_counter() -> None:
    w = Wire()
    w.req(CURL_GET)
    assert w.conn.stats() == {
        "pairs": 0,
        "desyncs": 0,
        "dropped_requests": 0,
        "unanswered_requests": 0,
        "orphan_responses": 0,
        "oversize_headers": 0,
        "lost_events": 0,
        "skipped_records": 0,
        "pending": 1,
        "errors": 0,
    }


def test_head_caches_are_bounded_and_skip_huge_heads() -> None:
    from alaz.protocols import http1

    conn = Http1Connection("client")
    for i in range(http1._CACHE_MAX + 50):  # every response head differs (a Date-like header)
        req = b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
        resp = b"HTTP/1.1 200 OK\r\nX-N: %d\r\nContent-Length: 0\r\n\r\n" % i
        conn.feed(EGRESS, req, len(req), 4 * i, 4 * i + 1)
        [pair] = conn.feed(INGRESS, resp, len(resp), 4 * i + 2, 4 * i + 3)
        assert (pair.path, pair.status) == ("/c", 200)
    assert 0 < len(http1._resp_head_cache) <= http1._CACHE_MAX
    big = b"x" * http1._CACHE_BLOCK
    req = b"GET /big HTTP/1.1\r\nX-Big: " + big + b"\r\n\r\n"
    conn.feed(EGRESS, req, len(req), 10**9, 10**9 + 1)
    assert not any(big in key for key in http1._req_rest_cache)
