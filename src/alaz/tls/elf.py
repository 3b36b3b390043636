"""Read the few things TLS discovery needs from an ELF file, and nothing else.

`ElfImage` opens a file once, maps it read-only, and answers: which machine, where each
loadable segment lies, a section's place, a few named symbols (dynamic or `.symtab`), the
symbol-version definitions, and the FILE offset of a virtual address.

uprobes take a file offset, not a virtual address (kernel-facts.md): for a symbol at virtual
address `va` inside the PT_LOAD segment (p_vaddr, p_offset, p_filesz) the offset is
`va - p_vaddr + p_offset`. In libssl.so.3 the two happen to be equal; in node and in Go
binaries they are not.

Everything is read with `struct` from the mmap, so a 100 MB node binary is never copied.
pyelftools was the first choice, but opening a file with it costs ~1 ms (it builds its
`construct` parsers per file) and a symbol lookup in node 60 ms (it decodes the 80,000-bucket
GNU hash table first); the agent inspects every executable file mapped on the node, so these
few headers are read here directly, and pyelftools is the oracle the tests compare against.
Anything malformed, truncated or not an ELF at all becomes an `ElfFormatError` that names the
file and the cause.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, ParamSpec, TypeVar

from alaz.errors import AlazError

__all__ = [
    "ElfFormatError",
    "ElfImage",
    "ElfSymbol",
    "LoadSegment",
    "Section",
    "TlsTargetError",
    "UnsupportedTargetError",
]

PF_X = 0x1
PT_LOAD = 1
SHT_NOBITS = 8
SHT_GNU_VERDEF = 0x6FFFFFFD
SHN_UNDEF = 0
SHN_XINDEX = 0xFFFF
_MAX_VERDEFS = 4096

# e_machine -> Go's GOARCH spelling, which the rest of the package uses.
_MACHINES = {62: "amd64", 183: "arm64", 3: "386", 40: "arm", 243: "riscv64", 21: "ppc64"}


_P = ParamSpec("_P")
_R = TypeVar("_R")
# What reading past an inconsistent table raises deep down; a bad file, not a bug.
_DECODE_ERRORS = (struct.error, IndexError, OverflowError, UnicodeDecodeError)


def format_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn decoding errors on an inconsistent file into ElfFormatError naming the file."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except _DECODE_ERRORS as exc:
            what = getattr(args[0], "path", None) if args else None
            raise ElfFormatError(f"read {what or 'ELF tables'}: inconsistent ({exc})") from exc

    return wrapper


class TlsTargetError(AlazError):
    """A file cannot be used as a TLS uprobe target; the message says why."""


class ElfFormatError(TlsTargetError):
    """A file is not an ELF, or its ELF structures are truncated or inconsistent."""


class UnsupportedTargetError(TlsTargetError):
    """A file was recognised (OpenSSL, Go) but cannot be probed: old ABI, unknown version, arch."""


@dataclass(frozen=True, slots=True)
class LoadSegment:
    """One PT_LOAD program header."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)


@dataclass(frozen=True, slots=True)
class Section:
    """A section header: name, type, virtual address, file offset, size and link."""

    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """A defined symbol's virtual address and size, as its symbol table states them."""

    name: str
    value: int
    size: int


class ElfImage:
    """An ELF file opened read-only. Use as a context manager; `close()` is idempotent."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - owned, closed in close()
        self._map: mmap.mmap | None = None
        try:
            self._map = self._mmap(self._file)
            self._read_header(self._map)
            self.segments = self._load_segments()
            self._sections = self._read_sections()
        except (*_DECODE_ERRORS, ValueError) as exc:
            self.close()
            raise ElfFormatError(f"read ELF {self.path}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _mmap(self, f: BinaryIO) -> mmap.mmap:
        size = os.fstat(f.fileno()).st_size
        if size < 52:
            raise ElfFormatError(f"read ELF {self.path}: file is {size} bytes, too short")
        if f.read(4) != b"\x7fELF":
            raise ElfFormatError(f"read ELF {self.path}: no ELF magic")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def _read_header(self, m: mmap.mmap) -> None:
        ei_class, ei_data = m[4], m[5]
        if ei_class not in (1, 2) or ei_data not in (1, 2):
            raise ElfFormatError(f"read ELF {self.path}: bad class {ei_class} or data {ei_data}")
        self.ptr_size = 8 if ei_class == 2 else 4
        self.little_endian = ei_data == 1
        self._e = "<" if self.little_endian else ">"
        fmt = self._e + ("HHIQQQIHHHHHH" if self.ptr_size == 8 else "HHIIIIIHHHHHH")
        (_, machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx) = (
            struct.unpack_from(fmt, m, 16)
        )
        self.machine = _MACHINES.get(machine, f"e_machine {machine}")
        self._ph = (phoff, phnum, phentsize)
        self._sh = (shoff, shnum, shentsize, shstrndx)

    def _load_segments(self) -> tuple[LoadSegment, ...]:
        out = []
        for p_type, *fields in self._program_headers():
            if p_type != PT_LOAD:
                continue
            s = LoadSegment(*fields)
            if s.offset + s.filesz > len(self.buffer):
                raise ElfFormatError(
                    f"read ELF {self.path}: PT_LOAD at offset {s.offset:#x} runs past the end"
                    f" of the file ({len(self.buffer):#x} bytes; truncated?)"
                )
            out.append(s)
        return tuple(out)

    def _program_headers(self) -> Iterator[tuple[int, int, int, int, int, int]]:
        """(p_type, vaddr, memsz, offset, filesz, flags) per program header."""
        phoff, phnum, phentsize = self._ph
        fmt = struct.Struct(self._e + ("IIQQQQQQ" if self.ptr_size == 8 else "IIIIIIII"))
        if phnum and phentsize < fmt.size:
            raise ElfFormatError(f"read ELF {self.path}: program header entry too small")
        for i in range(phnum):
            pos = phoff + i * phentsize
            if pos + fmt.size > len(self.buffer):
                raise ElfFormatError(f"read ELF {self.path}: program headers truncated")
            f = fmt.unpack_from(self.buffer, pos)
            if self.ptr_size == 8:
                p_type, flags, offset, vaddr, _, filesz, memsz, _ = f
            else:
                p_type, offset, vaddr, _, filesz, memsz, flags, _ = f
            yield p_type, vaddr, memsz, offset, filesz, flags

    def _raw_section(self, i: int) -> tuple[int, ...]:
        """(name, type, flags, addr, offset, size, link, info, addralign, entsize) of entry i."""
        shoff, _, shentsize, _ = self._sh
        fmt = self._e + ("IIQQQQIIQQ" if self.ptr_size == 8 else "IIIIIIIIII")
        size = struct.calcsize(fmt)
        pos = shoff + i * shentsize
        if shentsize < size or pos + size > len(self.buffer):
            raise ElfFormatError(f"read ELF {self.path}: section headers truncated")
        return struct.unpack_from(fmt, self.buffer, pos)

    def _read_sections(self) -> dict[str, Section]:
        shoff, shnum, _, shstrndx = self._sh
        self._shnum = 0
        if not shoff:
            return {}  # sstrip'ed: segments only
        if shnum == 0:  # more than 0xff00 sections: the count is in entry 0
            shnum = self._raw_section(0)[5]
        if shstrndx == SHN_XINDEX:
            shstrndx = self._raw_section(0)[6]
        self._shnum = shnum
        names = self._section_at(shstrndx)
        out: dict[str, Section] = {}
        for i in range(1, shnum):
            sec = self._section_at(i, names)
            out.setdefault(sec.name, sec)
        return out

    def _section_at(self, i: int, names: Section | None = None) -> Section:
        if not 0 <= i < self._shnum:
            raise ElfFormatError(f"read ELF {self.path}: no section {i}")
        name_off, typ, _, addr, offset, size, link = self._raw_section(i)[:7]
        if typ != SHT_NOBITS and offset + size > len(self.buffer):
            raise ElfFormatError(
                f"read ELF {self.path}: section {i} runs past the end of the file (truncated?)"
            )
        name = self._cstring(names, name_off) if names is not None else ""
        return Section(name, typ, addr, offset, size, link)

    def _cstring(self, strtab: Section, off: int) -> str:
        start = strtab.offset + off
        end = self.buffer.find(b"\0", start, strtab.offset + strtab.size)
        if off >= strtab.size or end < 0:
            raise ElfFormatError(f"read string {off:#x} of {self.path}: outside its table")
        return self.buffer[start:end].decode("utf-8", "replace")

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def buffer(self) -> mmap.mmap:
        """The whole file, mapped read-only (valid until `close()`)."""
        if self._map is None:
            raise ValueError(f"read {self.path}: the image is closed")
        return self._map

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self._file.close()

    def __enter__(self) -> ElfImage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- addresses and bytes -----------------------------------------------------------------

    @format_errors
    def vaddr_to_offset(self, vaddr: int) -> int:
        """The file offset holding virtual address `vaddr` (the uprobe attach offset)."""
        for s in self.segments:
            if s.vaddr <= vaddr < s.vaddr + s.filesz:
                return vaddr - s.vaddr + s.offset
        raise ElfFormatError(f"map address {vaddr:#x} in {self.path}: in no PT_LOAD file range")

    @format_errors
    def read_vaddr(self, vaddr: int, size: int) -> bytes:
        """`size` bytes at virtual address `vaddr`, within one segment's file part."""
        off = self.vaddr_to_offset(vaddr)
        if size and self.vaddr_to_offset(vaddr + size - 1) != off + size - 1:
            raise ElfFormatError(f"read {size} bytes at {vaddr:#x} in {self.path}: spans segments")
        return self.buffer[off : off + size]

    def bytes_at(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > len(self.buffer):
            raise ElfFormatError(
                f"read {size} bytes at offset {offset:#x} of {self.path}: past EOF"
            )
        return self.buffer[offset : offset + size]

    def search(self, pattern: re.Pattern[bytes], start: int, end: int) -> re.Match[bytes] | None:
        """Search the file bytes [start, end) without copying them."""
        return pattern.search(self.buffer, start, end)

    # -- sections ----------------------------------------------------------------------------

    def section(self, name: str) -> Section | None:
        """A section with contents in the file, or None (absent, or SHT_NOBITS like `.bss`)."""
        sec = self._sections.get(name)
        return None if sec is None or sec.type == SHT_NOBITS else sec

    def section_names(self) -> list[str]:
        return list(self._sections)

    # -- symbols -----------------------------------------------------------------------------

    @format_errors
    def dynamic_symbols(self, names: Iterable[str]) -> dict[str, ElfSymbol]:
        """Look `names` up among the defined dynamic symbols (exports); absent ones are missing."""
        dynsym, dynstr = self.section(".dynsym"), self.section(".dynstr")
        if dynsym is None or dynstr is None:
            return {}
        table = _SymbolTable(self, dynsym, dynstr, self.section(".gnu.version"))
        gnu = self.section(".gnu.hash")
        if gnu is not None:
            hashed = _GnuHash(self, gnu, table)
            found = (hashed.lookup(name) for name in names)
            return {sym.name: sym for sym in found if sym is not None}
        return table.find(names)  # no GNU hash (old or unusual linkers)

    @format_errors
    def symtab_symbols(self, names: Iterable[str]) -> dict[str, ElfSymbol]:
        """Look `names` up in `.symtab`; {} when the file is stripped."""
        symtab, strtab = self.section(".symtab"), self.section(".strtab")
        if symtab is None or strtab is None:
            return {}
        return _SymbolTable(self, symtab, strtab).find(names)

    @format_errors
    def version_definitions(self) -> list[str]:
        """Names of the symbol versions this file defines (`OPENSSL_3.0.0`, `libssl.so.3`...)."""
        verdef = next((s for s in self._sections.values() if s.type == SHT_GNU_VERDEF), None)
        if verdef is None:
            return []
        strtab = self._section_at(verdef.link)
        names: list[str] = []
        pos, end = verdef.offset, verdef.offset + verdef.size
        for _ in range(_MAX_VERDEFS):
            if pos + 20 > end:
                raise ElfFormatError(f"read version definitions of {self.path}: truncated")
            # Elf_Verdef: version, flags, ndx, cnt (u16), hash, aux, next (u32)
            _, _, _, cnt, _, aux, nxt = struct.unpack_from(self._e + "HHHHIII", self.buffer, pos)
            if cnt:
                if not 0 < aux <= end - pos - 8:
                    raise ElfFormatError(f"read version definitions of {self.path}: bad aux")
                (name_off,) = struct.unpack_from(self._e + "I", self.buffer, pos + aux)
                names.append(self._cstring(strtab, name_off))
            if not nxt:
                return names
            pos += nxt
        raise ElfFormatError(f"read version definitions of {self.path}: too many entries")


class _SymbolTable:
    """An Elf_Sym array and its string table, read with struct."""

    def __init__(
        self, img: ElfImage, table: Section, strtab: Section, versym: Section | None = None
    ) -> None:
        self._img, self._table, self._strtab, self._versym = img, table, strtab, versym
        self._buf = img.buffer
        self._is64 = img.ptr_size == 8
        self.entry = struct.Struct(img._e + ("IBBHQQ" if self._is64 else "IIIBBH"))
        self._name_fmt = img._e + "I"

    def symbol(self, idx: int) -> tuple[int, int, int, int]:
        """(name offset, value, size, section index) of entry `idx`."""
        pos = self._table.offset + idx * self.entry.size
        if pos + self.entry.size > self._table.offset + self._table.size:
            raise ElfFormatError(f"read symbol {idx} of {self._img.path}: past the table end")
        f = self.entry.unpack_from(self._buf, pos)
        return (f[0], f[4], f[5], f[3]) if self._is64 else (f[0], f[1], f[2], f[5])

    def named(self, idx: int, raw: bytes) -> ElfSymbol | None:
        """Entry `idx` if it is named `raw` and defined (not an import)."""
        name_off, value, size, shndx = self.symbol(idx)
        start = self._strtab.offset + name_off
        if self._buf[start : start + len(raw) + 1] != raw + b"\0":
            return None
        if shndx == SHN_UNDEF or value == 0:
            return None
        if self._hidden(idx):
            return None  # an old version (memcpy@GLIBC_2.2.5): the default one binds
        return ElfSymbol(raw.decode(), value, size)

    def _hidden(self, idx: int) -> bool:
        if self._versym is None or 2 * idx + 2 > self._versym.size:
            return False
        (ver,) = struct.unpack_from(self._img._e + "H", self._buf, self._versym.offset + 2 * idx)
        return bool(ver & 0x8000)

    def find(self, names: Iterable[str]) -> dict[str, ElfSymbol]:
        """Linear lookup, at C speed: each name is found in the string table, then its 4-byte
        offset among the entries (Go binaries carry ~100,000 symbols)."""
        out: dict[str, ElfSymbol] = {}
        base, end = self._table.offset, self._table.offset + self._table.size
        for name in names:
            raw = name.encode()
            for name_off in self._string_offsets(raw):
                needle = struct.pack(self._name_fmt, name_off)
                pos = self._buf.find(needle, base, end)
                while pos >= 0 and name not in out:
                    if (pos - base) % self.entry.size == 0:
                        sym = self.named((pos - base) // self.entry.size, raw)
                        if sym is not None:
                            out[name] = sym
                    pos = self._buf.find(needle, pos + 1, end)
                if name in out:
                    break
        return out

    def _string_offsets(self, raw: bytes) -> Iterator[int]:
        """Offsets at which `raw` can be read as a whole string (a linker may share tails)."""
        base, end = self._strtab.offset, self._strtab.offset + self._strtab.size
        needle = raw + b"\0"
        pos = self._buf.find(needle, base, end)
        while pos >= 0:
            yield pos - base
            pos = self._buf.find(needle, pos + 1, end)


class _GnuHash:
    """A DT_GNU_HASH lookup: three words and a string compare per name."""

    def __init__(self, img: ElfImage, gnu: Section, table: _SymbolTable) -> None:
        self._buf, self._e, self._table = img.buffer, img._e, table
        nbuckets, self._symoffset, bloom_size, _ = struct.unpack_from(
            self._e + "4I", self._buf, gnu.offset
        )
        self._nbuckets = nbuckets
        self._buckets = gnu.offset + 16 + bloom_size * img.ptr_size
        self._chain = self._buckets + 4 * nbuckets
        self._limit = gnu.offset + gnu.size
        if nbuckets == 0 or self._chain > self._limit:
            raise ElfFormatError(f"read .gnu.hash of {img.path}: {nbuckets} buckets do not fit")

    def _u32(self, off: int) -> int:
        if off + 4 > self._limit:
            raise ElfFormatError("read .gnu.hash: a chain runs past the section")
        return int(struct.unpack_from(self._e + "I", self._buf, off)[0])

    def lookup(self, name: str) -> ElfSymbol | None:
        raw = name.encode()
        h = _gnu_hash(raw)
        idx = self._u32(self._buckets + 4 * (h % self._nbuckets))
        if idx < self._symoffset:
            return None
        while True:
            ch = self._u32(self._chain + 4 * (idx - self._symoffset))
            if (ch | 1) == (h | 1):
                sym = self._table.named(idx, raw)
                if sym is not None:
                    return sym
            if ch & 1:
                return None
            idx += 1


def _gnu_hash(name: bytes) -> int:
    h = 5381
    for c in name:
        h = (h * 33 + c) & 0xFFFFFFFF
    return h
