"""The records that flow from the capture pipeline to the sinks.

`Exchange` is one completed request/response pair as seen by one process (one side of a
connection). It is built once per exchange on the hot path, so it is a msgspec Struct (cheap to
build, encodes straight to JSON) rather than a pydantic model.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["Exchange"]


class Exchange(msgspec.Struct, gc=False, omit_defaults=False):
    """One request paired with its response, from the view of the process that saw it.

    Times: `start_time_ms` is wall clock (ms since the epoch) of the request's first byte on this
    side; `latency_ns` is, for a client, from the request's first write to the end of the
    response's first read, and for a server, from the end of the request's last read to the
    start of the response's first write.
    """

    protocol: str  # "HTTP" for HTTP/1.x; later protocols use the backend row names ("POSTGRES"...)
    role: str  # "client" | "server"
    pid: int
    tid: int
    comm: str
    fd: int
    cgroup_id: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    method: str
    path: str
    status: int
    latency_ns: int
    start_time_ms: int
    tls: bool
    req_bytes: int
    resp_bytes: int
    host: str | None = None  # HTTP Host header (or :authority), names outbound destinations
    # Both ends named after Kubernetes objects (alaz.k8s.Peer), when the Kubernetes view is on.
    from_: Any = msgspec.field(default=None, name="from")
    to: Any = None
    # Protocol details beyond the row (SQLSTATE, error text, database, command, routing key...).
    extra: dict[str, Any] | None = None
