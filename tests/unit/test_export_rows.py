"""Exchange -> `/requests/` rows, the local-client predicate, and the health-check telemetry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from alaz.export.health import cloud_provider, kernel_version
from alaz.export.rows import (
    Attribution,
    LocalAddresses,
    OutboundAttributor,
    RequestRow,
    request_row,
    wire_protocol,
)
from alaz.model import Exchange

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def exchange(**changes: Any) -> Exchange:
    fields: dict[str, Any] = dict(
        protocol="HTTP", role="client", pid=1, tid=1, comm="curl", fd=3, cgroup_id=1,
        client_ip="10.244.1.17", client_port=48212, server_ip="10.96.41.7", server_port=8080,
        method="GET", path="/api/v1/orders?id=42", status=200, latency_ns=1843211,
        start_time_ms=1727184000123, tls=False, req_bytes=1, resp_bytes=2, host=None,
    )  # fmt: skip
    fields.update(changes)
    return Exchange(**fields)


def row_validator() -> Draft202012Validator:
    schemas = [json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")]
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas
    )
    requests = next(s for s in schemas if s["$id"].endswith("/requests.json"))
    return Draft202012Validator(requests, registry=registry)


WHO = Attribution("pod", "5b0c", "service", "f1e2")


def test_row_order_and_types_match_the_spec_example() -> None:
    row = request_row(exchange(), WHO)
    assert list(row) == [
        1727184000123, 1843211, "10.244.1.17", "pod", "5b0c", 48212, "10.96.41.7", "service",
        "f1e2", 8080, "HTTP", 200, "", "GET", "/api/v1/orders?id=42", False,
    ]  # fmt: skip
    assert RequestRow._fields[12] == "fail_reason" and len(row) == 16
    encoded = msgspec.json.encode(row)
    assert encoded.endswith(b',200,"","GET","/api/v1/orders?id=42",false]')
    body = {
        "metadata": {
            "monitoring_id": "m", "node_id": "n", "alaz_version": "v0.1.0",
            "idempotency_key": "a6f0f2d4-58c1-4e0b-9f3f-2d9b7a1c0e55",
        },
        "requests": [json.loads(encoded)],
    }  # fmt: skip
    row_validator().validate(body)


@pytest.mark.parametrize(
    ("protocol", "tls", "wire"),
    [("HTTP", True, "HTTPS"), ("HTTP", False, "HTTP"), ("HTTP2", True, "HTTPS"),
     ("HTTP2", False, "HTTP2"), ("POSTGRES", True, "POSTGRES"), ("gRPC", True, "gRPC")],
)  # fmt: skip
def test_protocol_names(protocol: str, tls: bool, wire: str) -> None:
    assert wire_protocol(protocol, tls) == wire
    row = request_row(exchange(protocol=protocol, tls=tls), WHO)
    assert (row.protocol, row.encrypted) == (wire, tls)


@pytest.mark.parametrize(
    ("protocol", "method", "wire"),
    [("HTTP", "GET", "GET"), ("HTTP", "PATCH", "PATCH"), ("HTTP", "BREW", "Unknown"),
     ("HTTP", "", "Unknown"), ("POSTGRES", "SIMPLE_QUERY", "SIMPLE_QUERY"),
     ("REDIS", "COMMAND", "COMMAND")],
)  # fmt: skip
def test_method_names(protocol: str, method: str, wire: str) -> None:
    assert request_row(exchange(protocol=protocol, method=method), WHO).method == wire


@pytest.mark.parametrize("status", [200, 404, 503, 1, 2, 3, 0])
def test_status_passes_through(status: int) -> None:
    assert request_row(exchange(status=status), WHO).status_code == status


@pytest.mark.parametrize(("protocol", "method"), [("AMQP", "DELIVER"), ("REDIS", "PUSHED_EVENT")])
def test_delivered_messages_are_reversed(protocol: str, method: str) -> None:
    row = request_row(exchange(protocol=protocol, method=method), WHO)
    assert (row.from_ip, row.from_type, row.from_uid, row.from_port) == (
        "10.96.41.7", "service", "f1e2", 8080,
    )  # fmt: skip
    to = (row.to_ip, row.to_type, row.to_uid, row.to_port)
    assert to == ("10.244.1.17", "pod", "5b0c", 48212)


def test_outbound_attribution_prefers_the_host_header() -> None:
    attribute = OutboundAttributor()
    assert attribute(exchange(host="api.stripe.com")) == Attribution(
        "pod", "", "outbound", "api.stripe.com"
    )
    assert attribute(exchange()).to_uid == "10.96.41.7"


def test_local_addresses_by_address() -> None:
    local = LocalAddresses(["10.0.0.5", "fd00::2"])
    assert local(exchange(client_ip="10.0.0.5"))
    assert local(exchange(client_ip="::ffff:10.0.0.5"))
    assert local(exchange(client_ip="fd00:0::2"))
    assert local(exchange(client_ip="127.0.0.1"))
    assert local(exchange(client_ip="::1"))
    assert not local(exchange(client_ip="10.0.0.6"))
    assert not local(exchange(client_ip="not-an-ip"))


def test_local_addresses_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net/fib_trie").write_text(
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n"
        "           |-- 192.0.2.2\n              /32 host LOCAL\n"
        "        |-- 192.0.2.255\n           /32 link BROADCAST\n"
    )
    (tmp_path / "net/if_inet6").write_text(
        "fd000000000000000000000000000002 04 40 00 82     eth0\n"
    )
    local = LocalAddresses([])
    local.refresh(tmp_path)
    assert local.addresses == {"192.0.2.2", "fd00::2"}


def test_kernel_version_is_the_third_field(tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text("Linux version 5.15.0-1051-azure (buildd@lcy02) (gcc ...) #59\n")
    assert kernel_version(version) == "5.15.0-1051-azure"
    assert kernel_version(tmp_path / "missing") == ""


@pytest.mark.parametrize(
    ("vendor", "provider"),
    [("Amazon EC2", "AWS"), ("Google", "GCP"), ("Microsoft Corporation", "Azure"),
     ("DigitalOcean", "DigitalOcean"), ("QEMU", ""), ("amazon ec2", "")],
)  # fmt: skip
def test_cloud_provider_mapping(tmp_path: Path, vendor: str, provider: str) -> None:
    path = tmp_path / "board_vendor"
    path.write_text(vendor + "\n")
    assert cloud_provider(path) == provider
    assert cloud_provider(tmp_path / "missing") == ""
