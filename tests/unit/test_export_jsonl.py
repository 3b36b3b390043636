"""The jsonl sink and the choice of sinks from the config."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from alaz.config import ExportConfig, load_config
from alaz.export.anteon import AnteonSink
from alaz.export.jsonl import JsonlSink
from alaz.export.wiring import Exporter, Sink, build_exporter, build_sinks
from alaz.model import Exchange

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def exchange(i: int, **changes: Any) -> Exchange:
    fields: dict[str, Any] = dict(
        protocol="HTTP", role="client", pid=7, tid=8, comm="curl", fd=3, cgroup_id=9,
        client_ip="::1", client_port=40000, server_ip="::1", server_port=80, method="GET",
        path=f"/p/{i}", status=200, latency_ns=5, start_time_ms=1, tls=False, req_bytes=1,
        resp_bytes=2, host=None,
    )  # fmt: skip
    fields.update(changes)
    return Exchange(**fields)


def validator() -> Draft202012Validator:
    schemas = [json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")]
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas
    )
    schema = next(s for s in schemas if s["$id"].endswith("/exchange.json"))
    return Draft202012Validator(schema, registry=registry)


async def test_one_object_per_exchange_with_the_field_names(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    sink = JsonlSink(str(out), export=ExportConfig(flush_interval_ms=20))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1), exchange(2, role="server", host="example.com", tls=True)])
    await sink.aclose()
    await task
    lines = out.read_bytes().splitlines()
    assert len(lines) == 2
    objects = [json.loads(line) for line in lines]
    assert list(objects[0]) == list(Exchange.__struct_encode_fields__)
    check = validator()
    for obj in objects:
        check.validate(obj)
    assert msgspec.json.decode(lines[1], type=Exchange) == exchange(
        2, role="server", host="example.com", tls=True
    )


async def test_lines_are_flushed_within_the_interval(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    sink = JsonlSink(str(out), export=ExportConfig(flush_interval_ms=300, batch_size=1000))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1)])
    await asyncio.sleep(0.01)
    assert out.read_bytes() == b""  # not full, not old
    for _ in range(300):
        await asyncio.sleep(0.01)
        if out.read_bytes():
            break
    assert out.read_bytes().count(b"\n") == 1  # flushed without closing
    await sink.aclose()
    await task


async def test_file_is_appended_to(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    out.write_bytes(b'{"earlier":1}\n')
    sink = JsonlSink(str(out))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1)])
    await sink.aclose()
    await task
    assert out.read_bytes().splitlines()[0] == b'{"earlier":1}'
    assert len(out.read_bytes().splitlines()) == 2


async def test_dash_writes_to_stdout(capsysbinary: Any) -> None:
    sink = JsonlSink("-")
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1), exchange(2)])
    await sink.aclose()
    await task
    lines = capsysbinary.readouterr().out.splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["/p/1", "/p/2"]


async def test_a_slow_writer_drops_oldest_lines() -> None:
    class Slow(io.BytesIO):
        def write(self, data: Any) -> int:
            import time

            time.sleep(0.05)
            return super().write(data)

    out = Slow()
    sink = JsonlSink(out, export=ExportConfig(batch_size=10, queue_rows=30, flush_interval_ms=5))
    task = asyncio.create_task(sink.run())
    for i in range(20):
        sink.submit([exchange(i * 10 + j) for j in range(10)])
        await asyncio.sleep(0.002)
    assert sink.batcher.dropped_rows > 0 and sink.batcher.peak_rows <= 30
    await sink.aclose()
    await task
    paths = [json.loads(line)["path"] for line in out.getvalue().splitlines()]
    assert len(paths) + sink.batcher.dropped_rows == 200
    assert paths[-30:] == [f"/p/{i}" for i in range(170, 200)]  # the newest survive


async def test_write_errors_are_counted(tmp_path: Path) -> None:
    class Broken(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    sink = JsonlSink(Broken(), export=ExportConfig(flush_interval_ms=5))
    task = asyncio.create_task(sink.run())
    sink.submit([exchange(1), exchange(2)])
    await sink.aclose()
    await task
    assert sink.failed_rows == 2 and sink.written_rows == 0


def test_sinks_follow_the_config(tmp_path: Path) -> None:
    plain = build_sinks(load_config({}))
    assert [type(s) for s in plain] == [JsonlSink]
    backend = {"BACKEND_HOST": "http://127.0.0.1:9", "MONITORING_ID": "m", "NODE_NAME": "n"}
    assert [type(s) for s in build_sinks(load_config(backend))] == [AnteonSink]
    both = build_sinks(load_config(backend, output=str(tmp_path / "o.jsonl")))
    assert [type(s) for s in both] == [AnteonSink, JsonlSink]
    for sink in both:
        assert isinstance(sink, Sink)


async def test_exporter_fans_out_to_every_sink(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    exporter = Exporter([JsonlSink(str(a)), JsonlSink(str(b))])
    task = asyncio.create_task(exporter.run())
    exporter.submit([exchange(1)])
    await exporter.aclose()
    await task
    assert a.read_bytes() == b.read_bytes() != b""
    built = build_exporter(load_config({}, output=str(tmp_path / "c.jsonl")))
    assert built.anteon is None and built.jsonl is not None
    await built.aclose()
