"""alaz.tls.elf against real files: pyelftools' plain API (and binutils' nm) as the oracle
for the bounded, version-aware lookups ElfImage builds on pyelftools."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection

from alaz.tls import ElfFormatError, TlsTargetError, elf, inspect_file
from alaz.tls.elf import ElfImage
from tests.conftest import need
from tests.kernel.tlsbuild import GoBuild, go_builder, gotls, gotls_stripped  # noqa: F401

LIBSSL = Path("/usr/lib/x86_64-linux-gnu/libssl.so.3")
LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")
NODE = Path("/usr/bin/node")


def need_file(path: Path) -> Path:
    need(path.exists(), f"{path} (apt: libssl3, nodejs)")
    return path


def oracle_dynsym(path: Path) -> dict[str, tuple[int, int]]:
    """Defined dynamic symbols; of several versions of one name, the default (not hidden)."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sec = elf.get_section_by_name(".dynsym")
        versym = elf.get_section_by_name(".gnu.version")
        out = {}
        for i, s in enumerate(sec.iter_symbols()):  # type: ignore[union-attr]
            if s["st_shndx"] == "SHN_UNDEF" or not s["st_value"]:
                continue
            ndx = versym.get_symbol(i)["ndx"] if versym is not None else 0  # type: ignore[attr-defined]
            if isinstance(ndx, int) and ndx & 0x8000:  # hidden: an old version of the name
                continue
            out[s.name] = (s["st_value"], s["st_size"])
        return out


def oracle_offset(path: Path, vaddr: int) -> int:
    with open(path, "rb") as f:
        for seg in ELFFile(f).iter_segments("PT_LOAD"):
            if seg["p_vaddr"] <= vaddr < seg["p_vaddr"] + seg["p_filesz"]:
                return int(vaddr - seg["p_vaddr"] + seg["p_offset"])
    raise AssertionError(f"{vaddr:#x} in no segment")


@pytest.mark.parametrize("path", [LIBSSL, LIBC, NODE], ids=["libssl", "libc", "node"])
def test_segments_and_sections_match_pyelftools(path: Path) -> None:
    need_file(path)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        segs = [
            (s["p_vaddr"], s["p_memsz"], s["p_offset"], s["p_filesz"], s["p_flags"])
            for s in elf.iter_segments("PT_LOAD")
        ]
        secs = {
            s.name: (s["sh_addr"], s["sh_offset"], s["sh_size"])
            for s in elf.iter_sections()
            if s.name and s["sh_type"] != "SHT_NOBITS"
        }
    with ElfImage(path) as img:
        assert [(s.vaddr, s.memsz, s.offset, s.filesz, s.flags) for s in img.segments] == segs
        mine = {n: img.section(n) for n in secs}
        assert {n: (s.addr, s.offset, s.size) for n, s in mine.items() if s} == secs


@pytest.mark.parametrize("path", [LIBSSL, LIBC, NODE], ids=["libssl", "libc", "node"])
def test_dynamic_symbols_match_pyelftools_through_the_gnu_hash(path: Path) -> None:
    need_file(path)
    expected = oracle_dynsym(path)
    names = sorted(expected)
    sample = [*names[:: max(1, len(names) // 300)], "SSL_write", "no_such_symbol_anywhere"]
    with ElfImage(path) as img:
        got = img.dynamic_symbols(sample)
    assert {n: (s.value, s.size) for n, s in got.items()} == {
        n: expected[n] for n in sample if n in expected
    }


def test_libssl_offsets_equal_nm_values() -> None:
    need_file(LIBSSL)
    need(shutil.which("nm") is not None, "binutils nm")
    nm = subprocess.run(["nm", "-D", "--defined-only", str(LIBSSL)], capture_output=True, text=True)
    values = {
        parts[2].split("@")[0]: int(parts[0], 16)  # SSL_read@@OPENSSL_3.0.0
        for line in nm.stdout.splitlines()
        if len(parts := line.split()) == 3 and parts[1] == "T"
    }
    names = ["SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"]
    with ElfImage(LIBSSL) as img:
        syms = img.dynamic_symbols(names)
        assert {n: s.value for n, s in syms.items()} == {n: values[n] for n in names}
        offsets = {n: img.vaddr_to_offset(s.value) for n, s in syms.items()}
    # libssl.so.3's text segment has p_vaddr == p_offset, so the offsets are the values
    assert offsets == {n: values[n] for n in names}


def test_node_offsets_differ_from_addresses_and_match_the_segment_math() -> None:
    need_file(NODE)
    expected = oracle_dynsym(NODE)
    with ElfImage(NODE) as img:
        sym = img.dynamic_symbols(["SSL_write"])["SSL_write"]
        assert sym.value == expected["SSL_write"][0]
        off = img.vaddr_to_offset(sym.value)
    assert off == oracle_offset(NODE, sym.value)
    assert off != sym.value  # node's text is not at vaddr == offset: a real conversion


@pytest.mark.parametrize("path", [LIBSSL, LIBC], ids=["libssl", "libc"])
def test_version_definitions_match_pyelftools(path: Path) -> None:
    need_file(path)
    with open(path, "rb") as f:
        sec = next(s for s in ELFFile(f).iter_sections() if isinstance(s, GNUVerDefSection))
        expected = [next(iter(auxs)).name for _, auxs in sec.iter_versions()]
    with ElfImage(path) as img:
        assert img.version_definitions() == expected


# A tiny shared library from binutils alone: two versions of `clone` (the old one hidden),
# with each hash-table style. In a SysV chain the hidden old entry comes first.
_ASM = """
    .text
    .globl SSL_read, SSL_write, helper, clone_v1, clone_v2
    .type SSL_read, @function
SSL_read: nop
    ret
    .size SSL_read, .-SSL_read
    .type SSL_write, @function
SSL_write: nop
    nop
    ret
    .size SSL_write, .-SSL_write
    .type helper, @function
helper: ret
    .size helper, .-helper
    .type clone_v1, @function
clone_v1: ret
    .size clone_v1, .-clone_v1
    .type clone_v2, @function
clone_v2: nop
    ret
    .size clone_v2, .-clone_v2
    .symver clone_v1, clone@VERS_1
    .symver clone_v2, clone@@VERS_2
"""
_VERSIONS = """
VERS_1 { global: SSL_read; SSL_write; clone; local: *; };
VERS_2 { global: helper; clone; } VERS_1;
"""


def versioned_library(tmp_path: Path, hash_style: str) -> Path:
    need(shutil.which("as") is not None and shutil.which("ld") is not None, "binutils as, ld")
    (tmp_path / "t.s").write_text(_ASM)
    (tmp_path / "t.map").write_text(_VERSIONS)
    out = tmp_path / f"libt-{hash_style}.so"
    subprocess.run(["as", "--64", "-o", str(tmp_path / "t.o"), str(tmp_path / "t.s")], check=True)
    link = ["ld", "-shared", "-soname", "libt.so", f"--hash-style={hash_style}"]
    script = ["--version-script", str(tmp_path / "t.map")]
    subprocess.run([*link, *script, "-o", str(out), str(tmp_path / "t.o")], check=True)
    return out


@pytest.mark.parametrize("hash_style", ["sysv", "gnu", "both"])
def test_each_hash_table_finds_the_default_version(tmp_path: Path, hash_style: str) -> None:
    lib = versioned_library(tmp_path, hash_style)
    expected = oracle_dynsym(lib)
    assert expected["clone"] == (0x1007, 2)  # clone@@VERS_2, not the hidden clone@VERS_1
    names = ["SSL_read", "SSL_write", "helper", "clone", "VERS_1", "absent"]
    with ElfImage(lib) as img:
        assert (img.section(".gnu.hash") is None) == (hash_style == "sysv")
        got = img.dynamic_symbols(names)
        assert img.version_definitions() == ["libt.so", "VERS_1", "VERS_2"]
    assert {n: (s.value, s.size) for n, s in got.items()} == {
        n: expected[n] for n in names if n in expected
    }


@pytest.mark.parametrize("path", [LIBSSL, LIBC], ids=["libssl", "libc"])
def test_string_table_search_agrees_with_the_hash_lookup(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the size bound a hash table is not decoded; the string-table search takes over."""
    need_file(path)
    names = [*sorted(oracle_dynsym(path))[::40], "memcpy", "realpath", "no_such_symbol"]
    with ElfImage(path) as img:
        hashed = img.dynamic_symbols(names)
    monkeypatch.setattr(elf, "_MAX_HASH_WORDS", 0)
    with ElfImage(path) as img:
        assert img.dynamic_symbols(names) == hashed


def _patched(tmp_path: Path, src: Path, offset: int, value: bytes) -> Path:
    data = bytearray(src.read_bytes())
    data[offset : offset + len(value)] = value
    out = tmp_path / src.name
    out.write_bytes(bytes(data))
    return out


def test_a_corrupt_bucket_count_is_refused_without_decoding_it(tmp_path: Path) -> None:
    """pyelftools alone would decode 2**31 buckets (seconds and gigabytes) before failing."""
    need_file(LIBSSL)
    with ElfImage(LIBSSL) as img:
        gnu = img.section(".gnu.hash")
    assert gnu is not None
    path = _patched(tmp_path, LIBSSL, gnu.offset, struct.pack("<I", 0x7FFFFFFF))
    t0 = time.perf_counter()
    with pytest.raises(ElfFormatError, match="buckets do not fit") as info:
        inspect_file(str(path))
    assert time.perf_counter() - t0 < 1
    assert str(path) in str(info.value)


def test_an_implausible_section_count_is_refused(tmp_path: Path) -> None:
    data = need_file(LIBC).read_bytes()
    count = min(0xFEFF, (len(data) - 64) // 64)  # headers that fit in the file, from offset 64
    assert count > elf._MAX_SECTIONS
    path = _patched(tmp_path, LIBC, 0x28, struct.pack("<Q", 64))  # e_shoff
    path.write_bytes(path.read_bytes()[:0x3C] + struct.pack("<H", count) + data[0x3E:])
    with pytest.raises(ElfFormatError, match="implausibly many"):
        ElfImage(path)


def test_symtab_of_a_go_binary_matches_pyelftools(gotls: GoBuild) -> None:  # noqa: F811
    with open(gotls.path, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        expected = {
            s.name: (s["st_value"], s["st_size"])
            for s in symtab.iter_symbols()  # type: ignore[union-attr]
            if s["st_info"]["type"] == "STT_FUNC" and s["st_value"]
        }
    names = [*sorted(expected)[::50], "crypto/tls.(*Conn).Read", "crypto/tls.(*Conn).Write"]
    with ElfImage(gotls.path) as img:
        got = img.symtab_symbols(names)
    assert {n: (s.value, s.size) for n, s in got.items()} == {n: expected[n] for n in names}


def test_stripped_binary_has_no_symtab(gotls_stripped: GoBuild) -> None:  # noqa: F811
    with ElfImage(gotls_stripped.path) as img:
        assert img.section(".symtab") is None
        assert img.symtab_symbols(["crypto/tls.(*Conn).Read"]) == {}
        assert img.section(".gopclntab") is not None


# -- garbage in, a clear error out ----------------------------------------------------------


@pytest.mark.parametrize(
    "content, cause",
    [
        (b"", "too short"),
        (b"\x7fELF", "too short"),
        (b"#!/bin/sh\necho hello, this is not an ELF at all\n" * 3, "no ELF magic"),
        (b"\x7fELF" + b"\x07\x09" + bytes(100), "bad class"),
    ],
    ids=["empty", "magic-only", "script", "bad-class"],
)
def test_garbage_files_raise_a_clear_error(tmp_path: Path, content: bytes, cause: str) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(content)
    with pytest.raises(ElfFormatError, match=cause) as info:
        ElfImage(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.6, 0.95])
def test_truncated_libssl_raises_a_clear_error(tmp_path: Path, fraction: float) -> None:
    data = need_file(LIBSSL).read_bytes()
    path = tmp_path / "libssl.so.3"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ElfFormatError, match=r"truncated|past the end|past EOF") as info:
        inspect_file(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_truncated_go_binary_raises_a_clear_error(
    tmp_path: Path,
    gotls_stripped: GoBuild,  # noqa: F811
    fraction: float,
) -> None:
    data = gotls_stripped.path.read_bytes()
    path = tmp_path / "gotls"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ElfFormatError):
        inspect_file(str(path))


def test_corrupted_files_never_raise_anything_but_a_target_error(
    tmp_path: Path,
    gotls_stripped: GoBuild,  # noqa: F811
) -> None:
    """Flip bytes in the headers and tables; every outcome is a result or a TlsTargetError."""
    rng = random.Random(5)
    sources = [need_file(LIBSSL).read_bytes(), gotls_stripped.path.read_bytes()]
    outcomes = {"ok": 0, "error": 0}
    for i in range(120):
        data = bytearray(sources[i % 2])
        with ElfImage(LIBSSL if i % 2 == 0 else gotls_stripped.path) as img:
            hot = [(0, 64)] + [(s.offset, s.offset + min(s.size, 4096)) for s in _tables(img)]
        for _ in range(8):
            lo, hi = rng.choice(hot)
            data[rng.randrange(lo, hi)] = rng.randrange(256)
        path = tmp_path / f"corrupt{i}"
        path.write_bytes(bytes(data))
        try:
            inspect_file(str(path))
            outcomes["ok"] += 1
        except TlsTargetError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0  # the corruption did reach the parser


def _tables(img: ElfImage) -> list:  # type: ignore[type-arg]
    names = [".dynsym", ".dynstr", ".gnu.hash", ".gnu.version_d", ".gopclntab", ".go.buildinfo"]
    return [s for n in names if (s := img.section(n)) is not None]


def test_closed_image_refuses_reads() -> None:
    img = ElfImage(need_file(LIBSSL))
    img.close()
    img.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        img.bytes_at(0, 4)
