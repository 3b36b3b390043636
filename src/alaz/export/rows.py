"""Backend rows: `Exchange` -> the positional arrays of the Anteon contract (spec §2.4).

Two seams live here, both filled by other parts of the agent later:

* `Attributor`: names both ends of an exchange (from/to type and uid). Without Kubernetes data
  the default, `OutboundAttributor`, says "pod" with an empty uid for the source and "outbound"
  with the Host header (or the IP) for the destination. The Kubernetes store will provide one that
  knows pods and services; returning None drops the row (the Go agent drops rows whose source is
  not a known pod).
* `LocalClientPredicate`: tells whether the client of a server-side exchange is a process on this
  node. Rows are exported from the client side; a server-side exchange is exported only when its
  client is *not* local (its client side is invisible to us), so no request is counted twice.
  `LocalAddresses` is the default: the client IP is one of this host's addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

from alaz.model import Exchange

__all__ = [
    "ENDPOINT_TYPES",
    "HTTP_METHODS",
    "PROTOCOLS",
    "REVERSED_METHODS",
    "Attribution",
    "Attributor",
    "ConnectionRow",
    "KafkaRow",
    "LocalAddresses",
    "LocalClientPredicate",
    "OutboundAttributor",
    "RequestRow",
    "request_row",
    "wire_protocol",
]

PROTOCOLS = ("HTTP", "HTTPS", "HTTP2", "gRPC", "POSTGRES", "MYSQL", "REDIS", "AMQP", "MONGO")
ENDPOINT_TYPES = ("pod", "service", "outbound")
HTTP_METHODS = frozenset(
    {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "CONNECT", "OPTIONS", "TRACE"}
)
# Rows whose writer is the server: the backend wants From = writer, To = reader (spec §1.9).
REVERSED_METHODS = frozenset({"DELIVER", "PUSHED_EVENT"})


class Attribution(NamedTuple):
    """Who the two ends of an exchange are, in the backend's vocabulary."""

    from_type: str  # "pod" (the client side)
    from_uid: str  # pod UID, "" when unknown
    to_type: str  # "service" | "pod" | "outbound"
    to_uid: str  # service or pod UID; for outbound the Host/:authority, a PTR name or the IP


class Attributor(Protocol):
    """Names the ends of an exchange; None drops the row."""

    def __call__(self, exchange: Exchange, /) -> Attribution | None: ...


class LocalClientPredicate(Protocol):
    """True when the client of `exchange` is a process on this node (its client row exists)."""

    def __call__(self, exchange: Exchange, /) -> bool: ...


class OutboundAttributor:
    """The attribution without Kubernetes data: every destination is outbound."""

    def __call__(self, exchange: Exchange, /) -> Attribution:
        return Attribution("pod", "", "outbound", exchange.host or exchange.server_ip)


class RequestRow(NamedTuple):
    """One `/requests/` row, in wire order (spec §2.4.1)."""

    start_time: int
    latency: int
    from_ip: str
    from_type: str
    from_uid: str
    from_port: int
    to_ip: str
    to_type: str
    to_uid: str
    to_port: int
    protocol: str
    status_code: int
    fail_reason: str
    method: str
    path: str
    encrypted: bool


class KafkaRow(NamedTuple):
    """One `/events/kafka/` row, in wire order (spec §2.4.2)."""

    start_time: int
    latency: int
    from_ip: str
    from_type: str
    from_uid: str
    from_port: int
    to_ip: str
    to_type: str
    to_uid: str
    to_port: int
    topic: str
    partition: int
    key: str
    value: str
    type: str  # "PUBLISH" | "CONSUME"
    encrypted: bool


class ConnectionRow(NamedTuple):
    """One `/connections/` row, in wire order (spec §2.4.3)."""

    check_time: int
    from_ip: str
    from_type: str
    from_uid: str
    from_port: int
    to_ip: str
    to_type: str
    to_uid: str
    to_port: int


_new = tuple.__new__


def wire_protocol(protocol: str, tls: bool) -> str:
    """The row protocol: HTTP (and HTTP/2) over TLS is "HTTPS", as in the Go agent."""
    if tls and protocol in ("HTTP", "HTTP2"):
        return "HTTPS"
    return protocol


def request_row(exchange: Exchange, who: Attribution) -> RequestRow:
    """Map one exchange to its `/requests/` row (spec §1.5, §2.4.1)."""
    ex = exchange
    protocol = wire_protocol(ex.protocol, ex.tls)
    method = ex.method
    if protocol in ("HTTP", "HTTPS") and method not in HTTP_METHODS:
        method = "Unknown"
    # tuple.__new__ on a ready tuple: half the cost of RequestRow(...) on this hot path.
    if method in REVERSED_METHODS:
        return _new(RequestRow, (
            ex.start_time_ms, ex.latency_ns,
            ex.server_ip, who.to_type, who.to_uid, ex.server_port,
            ex.client_ip, who.from_type, who.from_uid, ex.client_port,
            protocol, ex.status, "", method, ex.path, ex.tls,
        ))  # fmt: skip
    return _new(RequestRow, (
        ex.start_time_ms, ex.latency_ns,
        ex.client_ip, who.from_type, who.from_uid, ex.client_port,
        ex.server_ip, who.to_type, who.to_uid, ex.server_port,
        protocol, ex.status, "", method, ex.path, ex.tls,
    ))  # fmt: skip


class LocalAddresses:
    """`LocalClientPredicate` by address: the client IP is loopback or an address of this host.

    Reads the host's addresses from /proc/net/fib_trie and /proc/net/if_inet6 (call `refresh()`
    when interfaces change), or takes them from `addresses`.
    """

    def __init__(self, addresses: Iterable[str] | None = None) -> None:
        self._addresses: frozenset[str] = frozenset()
        if addresses is None:
            self.refresh()
        else:
            self._addresses = frozenset(_canonical(a) for a in addresses)

    @property
    def addresses(self) -> frozenset[str]:
        return self._addresses

    def refresh(self, proc: Path = Path("/proc")) -> None:
        """Re-read this host's addresses."""
        self._addresses = frozenset(_host_addresses(proc))

    def __call__(self, exchange: Exchange, /) -> bool:
        ip = exchange.client_ip
        if ip in self._addresses:
            return True
        return _is_loopback(ip) or _canonical(ip) in self._addresses


def _canonical(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(_canonical(ip)).is_loopback
    except ValueError:
        return False


def _host_addresses(proc: Path) -> set[str]:
    found: set[str] = set()
    try:
        previous = ""
        for line in (proc / "net/fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|-- "):
                previous = text[4:]
            elif text.endswith("host LOCAL") and previous:
                found.add(previous)
    except OSError:
        pass
    try:
        for line in (proc / "net/if_inet6").read_text().splitlines():
            hexaddr = line.split()[0]
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    except (OSError, ValueError, IndexError):
        pass
    return found
