"""Real traffic, captured by the kernel probes, arrives at a local backend as correct rows."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.kernel.conftest import ROOT, AgentProcess, free_port, wait_for_port
from tests.kernel.test_http_capture import _curl

pytestmark = pytest.mark.kernel
SCHEMAS = ROOT / "docs/schemas"


def _validator(name: str) -> Draft202012Validator:
    docs = [json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")]
    registry: Registry[Any] = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in docs
    )
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text()), registry=registry)


def _posts(log: Path, path: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["path"] == path]


def test_captured_requests_reach_the_backend_as_rows(
    tmp_path: Path, python_server: tuple[int, int]
) -> None:
    port, _ = python_server
    backend_port = free_port()
    log = tmp_path / "backend.jsonl"
    backend = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests/kernel/servers/backend.py"),
            "127.0.0.1",
            str(backend_port),
            str(log),
        ]
    )
    env = {
        "BACKEND_HOST": f"http://127.0.0.1:{backend_port}",
        "MONITORING_ID": "mon-1",
        "NODE_NAME": "node-a",
    }
    agent = AgentProcess(tmp_path, env=env)
    try:
        wait_for_port("127.0.0.1", backend_port)
        curl_pid, _ = _curl(f"http://127.0.0.1:{port}/rows/one?q=1")
        _curl(f"http://127.0.0.1:{port}/missing/two")
        deadline = time.monotonic() + 15
        rows: list[list[Any]] = []
        while time.monotonic() < deadline:
            rows = [
                row
                for post in _posts(log, "/requests/")
                for row in post["body"]["requests"]
                if row[9] == port
            ]
            if len(rows) >= 2:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # a later batch would show duplicates
        posts = _posts(log, "/requests/")
        rows = [row for post in posts for row in post["body"]["requests"] if row[9] == port]
        validator = _validator("requests.json")
        for post in posts:
            validator.validate(post["body"])
            meta = post["body"]["metadata"]
            assert (meta["monitoring_id"], meta["node_id"]) == ("mon-1", "node-a")
        by_path = {row[14]: row for row in rows}
        assert sorted(by_path) == ["/missing/two", "/rows/one?q=1"]
        assert len(rows) == 2  # client side only: the server side is a local client's request
        one = by_path["/rows/one?q=1"]
        assert (one[2], one[3], one[6], one[7], one[8]) == (
            "127.0.0.1",
            "pod",
            "127.0.0.1",
            "outbound",
            f"127.0.0.1:{port}",
        )
        assert (one[10], one[11], one[12], one[13], one[15]) == ("HTTP", 200, "", "GET", False)
        assert one[1] > 0 and abs(one[0] - time.time() * 1000) < 60_000
        assert by_path["/missing/two"][11] == 404
        assert curl_pid > 0
    finally:
        assert agent.stop() == 0
        backend.terminate()
        backend.wait(5)
