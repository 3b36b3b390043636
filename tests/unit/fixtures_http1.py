"""HTTP/1.x byte fixtures, written the way real clients and servers put them on the wire."""

from __future__ import annotations

from typing import NamedTuple


class Exchange(NamedTuple):
    """A request and its response as bytes, with what the parser must report about them."""

    name: str
    request: bytes
    response: bytes
    method: str
    path: str
    host: str | None
    status: int
    version: str = "1.1"


ORDER_JSON = b'{"sku":"A-17","qty":2,"note":"gift wrap"}'
USER_JSON = b'{"id":42,"name":"ada","roles":["admin"]}\n'

CURL_GET = (
    b"GET /api/v1/users?id=42&verbose=1 HTTP/1.1\r\n"
    b"Host: users.default.svc.cluster.local:8080\r\n"
    b"User-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)

NGINX_200 = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.25.3\r\n"
    b"Date: Tue, 07 May 2024 10:00:00 GMT\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 41\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "6639fa00-29"\r\n'
    b"\r\n" + USER_JSON
)

REQUESTS_POST = (
    b"POST /v1/orders HTTP/1.1\r\n"
    b"Host: orders.shop.svc:9000\r\n"
    b"User-Agent: python-requests/2.31.0\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Accept: */*\r\n"
    b"Connection: keep-alive\r\n"
    b"Content-Length: 41\r\n"
    b"Content-Type: application/json\r\n"
    b"\r\n" + ORDER_JSON
)

# A Go net/http server streams an unsized body: chunked, here with a chunk extension and a trailer.
GO_201_CHUNKED = (
    b"HTTP/1.1 201 Created\r\n"
    b"Content-Type: application/json\r\n"
    b"Location: /v1/orders/17\r\n"
    b"Trailer: X-Checksum\r\n"
    b"Date: Tue, 07 May 2024 10:00:01 GMT\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b"10;name=first\r\n"
    b'{"id":17,"sku":"\r\n'
    b"B\r\n"
    b'A-17","qty"\r\n'
    b'3 ; last="yes"\r\n'
    b":2}\r\n"
    b"0\r\n"
    b"X-Checksum: 9f86d081\r\n"
    b"\r\n"
)

CHUNKED_UPLOAD = (
    b"PUT /objects/report.csv HTTP/1.1\r\n"
    b"host: S3.Example.COM\r\n"
    b"transfer-encoding: chunked\r\n"
    b"content-type: text/csv\r\n"
    b"\r\n"
    b"5\r\nhello\r\n"
    b"6;name=v\r\n world\r\n"
    b"0\r\n"
    b"\r\n"
)

NO_CONTENT_204 = b"HTTP/1.1 204 No Content\r\nServer: envoy\r\nContent-Length: 0\r\n\r\n"

HEAD_REQ = b"HEAD /static/app.js HTTP/1.1\r\nHost: cdn.local\r\nAccept: */*\r\n\r\n"
HEAD_200 = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\nContent-Length: 51200\r\n\r\n"
)

CONDITIONAL_GET = b'GET /static/app.js HTTP/1.1\r\nHost: cdn.local\r\nIf-None-Match: "abc"\r\n\r\n'
NOT_MODIFIED_304 = b'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\nCache-Control: max-age=60\r\n\r\n'

EXCHANGES = [
    Exchange(
        "curl-nginx",
        CURL_GET,
        NGINX_200,
        "GET",
        "/api/v1/users?id=42&verbose=1",
        "users.default.svc.cluster.local:8080",
        200,
    ),
    Exchange(
        "requests-go-chunked",
        REQUESTS_POST,
        GO_201_CHUNKED,
        "POST",
        "/v1/orders",
        "orders.shop.svc:9000",
        201,
    ),
    Exchange(
        "chunked-upload-204",
        CHUNKED_UPLOAD,
        NO_CONTENT_204,
        "PUT",
        "/objects/report.csv",
        "s3.example.com",
        204,
    ),
    Exchange("head", HEAD_REQ, HEAD_200, "HEAD", "/static/app.js", "cdn.local", 200),
    Exchange(
        "conditional-304",
        CONDITIONAL_GET,
        NOT_MODIFIED_304,
        "GET",
        "/static/app.js",
        "cdn.local",
        304,
    ),
]


def get(path: str, host: str = "api.local") -> bytes:
    """A small keep-alive GET, as a load generator sends it."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: wrk\r\n\r\n".encode()


def ok(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    """A response with a Content-Length body."""
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )
