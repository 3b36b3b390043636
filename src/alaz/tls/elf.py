"""Read the few things TLS discovery needs from an ELF file, through pyelftools.

`ElfImage` opens a file once, maps it read-only, and answers: which machine, where each
loadable segment lies, a section's place, a few named symbols (dynamic or `.symtab`), the
symbol-version definitions, and the FILE offset of a virtual address.

uprobes take a file offset, not a virtual address (kernel-facts.md): for a symbol at virtual
address `va` inside the PT_LOAD segment (p_vaddr, p_offset, p_filesz) the offset is
`va - p_vaddr + p_offset`. In libssl.so.3 the two happen to be equal; in node and in Go
binaries they are not.

The ELF structures are decoded by pyelftools (`ELFFile` over the mmap, so a 100 MB node
binary is never copied). Its per-table factories are used only where their cost is bounded:

* program and section headers are parsed one by one with pyelftools' own `Elf_Phdr` and
  `Elf_Shdr` structs, not with `iter_segments()`/`get_section_by_name()`: those build every
  section object, and building the PT_DYNAMIC segment or the `.gnu.hash` section decodes the
  whole bucket array with `construct` (10 ms in node; 6.5 s for a node whose `.gnu.hash`
  claims 2**31 buckets, which any container on the node may hold);
* a `.gnu.hash`/`.hash` table is checked to fit its section before pyelftools decodes it, and
  its chain walk returns symbol indexes, so an older hidden version of a name
  (`memcpy@GLIBC_2.2.5`) is skipped for the default one (pyelftools' `get_symbol(name)` stops
  at the first entry of that name and has no index for `.gnu.version`);
* `.symtab` has no hash table (Go binaries carry ~100,000 symbols; `get_symbol_by_name`
  decodes all of node's 109,848 in 2.1 s): a name is found in the string table and its
  4-byte offset among the entries with `mmap.find`, and only those entries are decoded;
* counts read from the file (sections, program headers, buckets, chain lengths, version
  definitions) are bounded, since each entry pyelftools decodes costs ~10 us.

It costs ~1 ms per file (0.3 ms of it `ELFFile()` building its structs), 15 ms for node
(10 of them decoding its `.gnu.hash`); bench/bench_tls_discovery.py measures it. The scanner
caches results per (dev, ino), so this runs once per file. Anything malformed, truncated or
not an ELF at all becomes an `ElfFormatError` that names the file and the cause, whatever
pyelftools, `construct` or the mmap raised.
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
from typing import IO, TYPE_CHECKING, Any, BinaryIO, ParamSpec, TypeVar, cast

import elftools.elf.enums as elf_enums
from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerSymSection
from elftools.elf.hash import ELFHashSection, ELFHashTable, GNUHashSection, GNUHashTable
from elftools.elf.sections import StringTableSection, SymbolTableSection

from alaz.errors import ElfFormatError, TlsTargetError, UnsupportedTargetError

if TYPE_CHECKING:
    from elftools.construct.core import FormatField
    from elftools.construct.lib.container import Container
    from elftools.elf.sections import Section as ElftoolsSection

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
SHT_NOBITS = 8
# Bounds on what one file may make us decode. Each pyelftools entry costs ~10 us, and a
# corrupt count (e_shnum, nbuckets) in a big file would otherwise cost seconds and gigabytes.
# Real files stay far below: a few dozen sections, fewer than 20 program headers (the kernel
# loads at most 64 KiB of them), node's 32,771 GNU hash buckets, chains of a few entries.
_MAX_SECTIONS = 16384
_MAX_PROGRAM_HEADERS = 2048
_MAX_HASH_WORDS = 1 << 18  # beyond: the string-table search, not a decoded bucket array
_MAX_CHAIN = 4096
_MAX_VERDEFS = 4096

# e_machine -> Go's GOARCH spelling, which the rest of the package uses.
_MACHINES = {62: "amd64", 183: "arm64", 3: "386", 40: "arm", 243: "riscv64", 21: "ppc64"}
# pyelftools decodes e_machine and sh_type to names; `Section.type` and unknown machines
# keep the numbers (unknown values reach us as ints already).
_E_MACHINE: dict[str, int] = {
    k: v for k, v in elf_enums.ENUM_E_MACHINE.items() if isinstance(v, int)
}
_SH_TYPE: dict[str, int] = {
    name: value
    for table_name, table in vars(elf_enums).items()
    if table_name.startswith("ENUM_SH_TYPE")  # _BASE and per machine (_AMD64, _ARM...)
    for name, value in table.items()
    if isinstance(value, int)
}


_P = ParamSpec("_P")
_R = TypeVar("_R")
# What decoding an inconsistent file raises deep down (pyelftools' ELFError/ELFParseError,
# construct's errors, a seek outside the mmap, a table index out of range, a zero modulus):
# a bad file, not a bug.
_DECODE_ERRORS = (
    ELFError,
    ConstructError,
    struct.error,
    ValueError,  # includes UnicodeDecodeError
    IndexError,
    KeyError,
    ArithmeticError,  # OverflowError, ZeroDivisionError
)


class _ImageClosedError(ValueError):
    """A read after `close()`: a caller's bug, passed through as the ValueError it is."""


def format_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn decoding errors on an inconsistent file into ElfFormatError naming the file."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except _ImageClosedError:
            raise
        except _DECODE_ERRORS as exc:
            what = getattr(args[0], "path", None) if args else None
            raise ElfFormatError(
                f"read {what or 'ELF tables'}: inconsistent ({type(exc).__name__}: {exc})"
            ) from exc

    return wrapper


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
    """An ELF file opened read-only. Use as a context manager; `close()` is idempotent.

    `elf` is the pyelftools `ELFFile` reading the mmap (valid until `close()`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - owned, closed in close()
        self._map: mmap.mmap | None = None
        try:
            self._map = self._mmap(self._file)
            self.elf = ELFFile(self._stream)
            self.ptr_size = self.elf.elfclass // 8
            self.little_endian = self.elf.little_endian
            machine = self.elf["e_machine"]
            number = _E_MACHINE.get(machine, -1) if isinstance(machine, str) else int(machine)
            self.machine = _MACHINES.get(number, f"e_machine {number}")
            self._word: FormatField[int] = self.elf.structs.Elf_word("")
            self.segments = self._load_segments()
            self._headers = self._read_sections()
            self._index: dict[str, int] = {}
            for i, sec in enumerate(self._headers):
                if i:  # entry 0 is the null section
                    self._index.setdefault(sec.name, i)
        except TlsTargetError:
            self.close()
            raise
        except _DECODE_ERRORS as exc:
            self.close()
            raise ElfFormatError(f"read ELF {self.path}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _mmap(self, f: BinaryIO) -> mmap.mmap:
        size = os.fstat(f.fileno()).st_size
        if size < 52:
            raise ElfFormatError(f"read ELF {self.path}: file is {size} bytes, too short")
        ident = f.read(6)
        if ident[:4] != b"\x7fELF":
            raise ElfFormatError(f"read ELF {self.path}: no ELF magic")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ElfFormatError(f"read ELF {self.path}: bad class {ident[4]} or data {ident[5]}")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def _load_segments(self) -> tuple[LoadSegment, ...]:
        size = len(self.buffer)
        out = []
        for h in self._table("program", "e_phoff", "e_phentsize", self.elf.num_segments()):
            if h["p_type"] != "PT_LOAD":
                continue
            s = LoadSegment(h["p_vaddr"], h["p_memsz"], h["p_offset"], h["p_filesz"], h["p_flags"])
            if s.offset + s.filesz > size:
                raise ElfFormatError(
                    f"read ELF {self.path}: PT_LOAD at offset {s.offset:#x} runs past the end"
                    f" of the file ({size:#x} bytes; truncated?)"
                )
            out.append(s)
        return tuple(out)

    def _table(self, kind: str, off_field: str, entsize_field: str, count: int) -> Iterator[Any]:
        """The `count` program or section headers, each parsed by pyelftools' struct."""
        fmt = self.elf.structs.Elf_Phdr if kind == "program" else self.elf.structs.Elf_Shdr
        off, entsize = self.elf[off_field], self.elf[entsize_field]
        if not count:
            return
        if count > (_MAX_PROGRAM_HEADERS if kind == "program" else _MAX_SECTIONS):
            raise ElfFormatError(f"read ELF {self.path}: {count} {kind} headers, implausibly many")
        if entsize < fmt.sizeof():
            raise ElfFormatError(f"read ELF {self.path}: {kind} header entry too small")
        if off + (count - 1) * entsize + fmt.sizeof() > len(self.buffer):
            raise ElfFormatError(
                f"read ELF {self.path}: {count} {kind} headers at {off:#x} run past the end"
                " of the file (truncated?)"
            )
        for i in range(count):
            yield struct_parse(fmt, self._stream, off + i * entsize)

    def _read_sections(self) -> list[Section]:
        if not self.elf["e_shoff"]:
            return []  # sstrip'ed: segments only
        count = self.elf.num_sections()  # > 0xff00 sections: pyelftools reads entry 0
        headers: list[Container] = list(self._table("section", "e_shoff", "e_shentsize", count))
        strndx = self.elf.get_shstrndx()
        if not 0 <= strndx < len(headers):
            raise ElfFormatError(f"read ELF {self.path}: no section {strndx} (section names)")
        names = StringTableSection(headers[strndx], "", self.elf)
        out = []
        for i, h in enumerate(headers):
            sh_type = h["sh_type"]
            typ = _SH_TYPE.get(sh_type, -1) if isinstance(sh_type, str) else int(sh_type)
            if i and typ != SHT_NOBITS and h["sh_offset"] + h["sh_size"] > len(self.buffer):
                raise ElfFormatError(
                    f"read ELF {self.path}: section {i} runs past the end of the file (truncated?)"
                )
            name = names.get_string(h["sh_name"]) if i else ""
            out.append(Section(name, typ, h["sh_addr"], h["sh_offset"], h["sh_size"], h["sh_link"]))
        return out

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def buffer(self) -> mmap.mmap:
        """The whole file, mapped read-only (valid until `close()`)."""
        if self._map is None:
            raise _ImageClosedError(f"read {self.path}: the image is closed")
        return self._map

    @property
    def _stream(self) -> IO[bytes]:
        """The mmap as the stream pyelftools reads (it has the seek/tell/read it uses)."""
        return cast("IO[bytes]", self.buffer)

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
        i = self._index.get(name)
        sec = None if i is None else self._headers[i]
        return None if sec is None or sec.type == SHT_NOBITS else sec

    def section_names(self) -> list[str]:
        return list(self._index)

    def _elftools_section(self, name: str) -> ElftoolsSection | None:
        """pyelftools' object for a section with contents (typed by its sh_type), or None."""
        i = self._index.get(name)
        if i is None or self._headers[i].type == SHT_NOBITS:
            return None
        self.buffer  # noqa: B018 - raises when closed, before pyelftools reads the mmap
        return self.elf.get_section(i)

    def _symbol_table(self, name: str) -> SymbolTableSection | None:
        sec = self._elftools_section(name)
        if sec is None:
            return None
        if not isinstance(sec, SymbolTableSection):
            raise ElfFormatError(f"read {name} of {self.path}: {sec['sh_type']}, no symbol table")
        return sec

    # -- symbols -----------------------------------------------------------------------------

    @format_errors
    def dynamic_symbols(self, names: Iterable[str]) -> dict[str, ElfSymbol]:
        """Look `names` up among the defined dynamic symbols (exports); absent ones are missing."""
        dynsym = self._symbol_table(".dynsym")
        if dynsym is None:
            return {}
        versym = self._elftools_section(".gnu.version")
        table = _SymbolTable(self, dynsym, versym if isinstance(versym, GNUVerSymSection) else None)
        hashed: _GnuHash | _SysvHash | None = None
        if self.section(".gnu.hash") is not None:
            hashed = _GnuHash(self, table)
        elif self.section(".hash") is not None:
            hashed = _SysvHash(self, table)
        if hashed is None or not hashed.usable:  # no hash table (old or unusual linkers)
            return table.find(names)
        found = (hashed.lookup(name) for name in names)
        return {sym.name: sym for sym in found if sym is not None}

    @format_errors
    def symtab_symbols(self, names: Iterable[str]) -> dict[str, ElfSymbol]:
        """Look `names` up in `.symtab`; {} when the file is stripped."""
        symtab = self._symbol_table(".symtab")
        if symtab is None:
            return {}
        return _SymbolTable(self, symtab).find(names)

    @format_errors
    def version_definitions(self) -> list[str]:
        """Names of the symbol versions this file defines (`OPENSSL_3.0.0`, `libssl.so.3`...)."""
        index = next(
            (i for i, s in enumerate(self._headers) if s.type == _SH_TYPE["SHT_GNU_verdef"]), None
        )
        if index is None:
            return []
        self.buffer  # noqa: B018 - raises when closed, before pyelftools reads the mmap
        verdef = self.elf.get_section(index)
        if not isinstance(verdef, GNUVerDefSection):
            raise ElfFormatError(f"read version definitions of {self.path}: not a verdef table")
        if verdef.num_versions() > _MAX_VERDEFS:
            raise ElfFormatError(
                f"read version definitions of {self.path}: {verdef.num_versions()} entries"
            )
        names: list[str] = []
        for entry, auxiliaries in verdef.iter_versions():
            names.append(next(auxiliaries).name)  # the first names the version, the rest parents
            if not entry["vd_next"]:
                break  # sh_info says more, but the chain ends: pyelftools would reread this one
        return names


class _SymbolTable:
    """A pyelftools symbol table, with the default-version check and a fast name search."""

    def __init__(
        self, img: ElfImage, table: SymbolTableSection, versym: GNUVerSymSection | None = None
    ) -> None:
        self._img, self._table, self._versym = img, table, versym
        self._count = table.num_symbols()

    def named(self, idx: int, name: str) -> ElfSymbol | None:
        """Entry `idx` if it is named `name` and defined (not an import)."""
        if not 0 <= idx < self._count:
            raise ElfFormatError(f"read symbol {idx} of {self._img.path}: past the table end")
        sym = self._table.get_symbol(idx)
        if sym.name != name or sym["st_shndx"] == "SHN_UNDEF" or not sym["st_value"]:
            return None
        if self._hidden(idx):
            return None  # an old version (memcpy@GLIBC_2.2.5): the default one binds
        return ElfSymbol(name, sym["st_value"], sym["st_size"])

    def _hidden(self, idx: int) -> bool:
        if self._versym is None or idx >= self._versym.num_symbols():
            return False
        ndx = self._versym.get_symbol(idx)["ndx"]  # a name for 0 and 1 (local, global)
        return isinstance(ndx, int) and bool(ndx & 0x8000)

    def find(self, names: Iterable[str]) -> dict[str, ElfSymbol]:
        """Lookup without a hash table, at C speed: each name is found in the string table,
        then its 4-byte offset among the entries; only those entries are decoded."""
        buf, word = self._img.buffer, self._img._word
        entsize = self._table["sh_entsize"]
        base = self._table["sh_offset"]
        end = base + self._table["sh_size"]
        out: dict[str, ElfSymbol] = {}
        for name in names:
            for name_off in self._string_offsets(name.encode()):
                needle = word.build(name_off)  # st_name, the first field of Elf32/64_Sym
                pos = buf.find(needle, base, end)
                while pos >= 0 and name not in out:
                    if (pos - base) % entsize == 0:
                        sym = self.named((pos - base) // entsize, name)
                        if sym is not None:
                            out[name] = sym
                    pos = buf.find(needle, pos + 1, end)
                if name in out:
                    break
        return out

    def _string_offsets(self, raw: bytes) -> Iterator[int]:
        """Offsets at which `raw` can be read as a whole string (a linker may share tails)."""
        strtab = self._table.stringtable
        base = strtab["sh_offset"]
        end = base + strtab["sh_size"]
        needle = raw + b"\0"
        buf = self._img.buffer
        pos = buf.find(needle, base, end)
        while pos >= 0:
            yield pos - base
            pos = buf.find(needle, pos + 1, end)


class _GnuHash:
    """A DT_GNU_HASH lookup on pyelftools' `GNUHashSection`: a bucket, then its chain.

    The header is checked to fit the section first, and pyelftools decodes the bloom and
    bucket arrays only when they are of a plausible size (`usable`); a corrupt count cannot
    make it decode millions of words.
    """

    def __init__(self, img: ElfImage, table: _SymbolTable) -> None:
        hdr = img.section(".gnu.hash")
        assert hdr is not None
        self._img, self._table, self._word = img, table, img._word
        nbuckets, symoffset, bloom_size = (
            struct_parse(self._word, img._stream, hdr.offset + 4 * k) for k in range(3)
        )
        self._chain = hdr.offset + 16 + bloom_size * img.ptr_size + 4 * nbuckets
        self._limit = hdr.offset + hdr.size
        if nbuckets == 0 or self._chain > self._limit:
            raise ElfFormatError(f"read .gnu.hash of {img.path}: {nbuckets} buckets do not fit")
        self._symoffset = symoffset
        self._buckets: list[int] = []
        self.usable = max(nbuckets, bloom_size) <= _MAX_HASH_WORDS
        if not self.usable:
            return
        sec = img._elftools_section(".gnu.hash")
        if not isinstance(sec, GNUHashSection):
            raise ElfFormatError(f"read .gnu.hash of {img.path}: not a GNU hash table")
        self._buckets = sec.params["buckets"]

    def lookup(self, name: str) -> ElfSymbol | None:
        h = GNUHashTable.gnu_hash(name)
        idx = self._buckets[h % len(self._buckets)]
        if idx < self._symoffset:
            return None
        for _ in range(_MAX_CHAIN):
            pos = self._chain + 4 * (idx - self._symoffset)
            if pos + 4 > self._limit:
                raise ElfFormatError(f"read .gnu.hash of {self._img.path}: a chain runs past it")
            ch = struct_parse(self._word, self._img._stream, pos)
            if (ch | 1) == (h | 1):
                sym = self._table.named(idx, name)
                if sym is not None:
                    return sym
            if ch & 1:
                return None
            idx += 1
        raise ElfFormatError(f"read .gnu.hash of {self._img.path}: a chain of {_MAX_CHAIN}+")


class _SysvHash:
    """A DT_HASH lookup on pyelftools' `ELFHashSection` (files linked without --hash-style=gnu)."""

    def __init__(self, img: ElfImage, table: _SymbolTable) -> None:
        hdr = img.section(".hash")
        assert hdr is not None
        self._img, self._table = img, table
        nbuckets, nchains = (
            struct_parse(img._word, img._stream, hdr.offset + 4 * k) for k in (0, 1)
        )
        if nbuckets == 0 or 4 * (2 + nbuckets + nchains) > hdr.size:
            raise ElfFormatError(f"read .hash of {img.path}: {nbuckets} buckets do not fit")
        self._buckets: list[int] = []
        self._chains: list[int] = []
        self.usable = max(nbuckets, nchains) <= _MAX_HASH_WORDS
        if not self.usable:
            return
        sec = img._elftools_section(".hash")
        if not isinstance(sec, ELFHashSection):
            raise ElfFormatError(f"read .hash of {img.path}: not a SysV hash table")
        self._buckets = sec.params["buckets"]
        self._chains = sec.params["chains"]

    def lookup(self, name: str) -> ElfSymbol | None:
        idx = self._buckets[ELFHashTable.elf_hash(name) % len(self._buckets)]
        for _ in range(min(len(self._chains), _MAX_CHAIN)):  # a chain visits no entry twice
            if idx == 0:
                return None
            sym = self._table.named(idx, name)
            if sym is not None:
                return sym
            idx = self._chains[idx]  # IndexError on a corrupt chain: a format error
        if idx == 0:
            return None
        raise ElfFormatError(f"read .hash of {self._img.path}: a chain loops or runs too long")
