"""The Python mirror of the record structs matches the BTF of the shipped objects."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import pytest

from alaz.capture import records
from tests.conftest import need
from tests.kernel.conftest import ROOT

OBJECTS = ROOT / "src/alaz/objects"


def _python_offsets(layout: struct.Struct) -> list[int]:
    """Offsets of the non-padding items of a '<...' struct format."""
    offsets, pos = [], 0
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", layout.format[1:]):
        n = int(count or 1)
        size = struct.calcsize("<" + code)
        if code == "x":
            pos += n
        elif code == "s":
            offsets.append(pos)
            pos += n
        else:
            for _ in range(n):
                offsets.append(pos)
                pos += size
    return offsets


def _btf_struct(obj: str, name: str) -> dict[str, object]:
    need(shutil.which("bpftool") is not None, "bpftool is not installed")
    out = subprocess.run(
        ["bpftool", "btf", "dump", "file", str(OBJECTS / f"{obj}.bpf.o"), "-j"],
        check=True,
        capture_output=True,
    ).stdout
    for t in json.loads(out)["types"]:
        if t.get("kind") == "STRUCT" and t.get("name") == name:
            return t  # type: ignore[no-any-return]
    raise AssertionError(f"struct {name} is not in the BTF of {obj}")


@pytest.mark.parametrize(
    ("obj", "name", "layout", "fields"),
    [
        ("l7", "data_rec", records.DATA_REC, records.DATA_FIELDS),
        ("tcp_state", "conn_rec", records.CONN_REC, records.CONN_FIELDS),
        ("proc", "proc_rec", records.PROC_REC, records.PROC_FIELDS),
    ],
)
def test_record_layout_matches_btf(
    obj: str, name: str, layout: struct.Struct, fields: tuple[str, ...]
) -> None:
    btf = _btf_struct(obj, name)
    assert btf["size"] == layout.size
    members = [
        (m["name"], m["bits_offset"] // 8)
        for m in btf["members"]  # type: ignore[attr-defined]
        if not m["name"].startswith("_pad")
    ]
    assert [m[0] for m in members] == list(fields)
    assert [m[1] for m in members] == _python_offsets(layout)
