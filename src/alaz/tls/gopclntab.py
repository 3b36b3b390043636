"""A reader for Go's `.gopclntab`: function names to entry and end addresses.

A stripped Go binary (`-ldflags='-s -w'`) has no `.symtab`, but the runtime needs the pclntab
for stack traces, so it always stays. Its layout (Go's `runtime/symtab.go`, `debug/gosym`):

    header   magic u32, 0 u8, 0 u8, quantum u8, ptrsize u8, then uintptr words:
             1.16-1.17 (magic 0xfffffffa): nfunc, nfiles, funcnameOff, cuOff, filetabOff,
                                           pctabOff, pclnOff
             1.18-1.19 (0xfffffff0) and 1.20+ (0xfffffff1): nfunc, nfiles, textStart,
                                           funcnameOff, cuOff, filetabOff, pctabOff, pclnOff
    functab  at pclnOff: nfunc pairs (entry, funcOff) then one final entry (the end of the
             last function). 1.16: uintptr absolute PCs; 1.18+: u32 offsets from textStart.
    _func    at pclnOff + funcOff: entry (uintptr, or u32 offset since 1.18), nameOff i32, ...
    names    NUL-terminated, at funcnameOff + nameOff.

A function ends where the next one in the (PC-sorted) functab begins. Formats older than 1.16
(magic 0xfffffffb, Go 1.2-1.15) predate the register ABI, so they are refused, not parsed.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from alaz.tls.elf import ElfFormatError, UnsupportedTargetError, format_errors

__all__ = ["GoFunc", "PcLnTable"]

_MAGICS = {0xFFFFFFFA: "1.16", 0xFFFFFFF0: "1.18", 0xFFFFFFF1: "1.20"}
_GO12_MAGIC = 0xFFFFFFFB


@dataclass(frozen=True, slots=True)
class GoFunc:
    """A function's name and its [entry, end) virtual addresses."""

    name: str
    entry: int
    end: int


class PcLnTable:
    """A parsed pclntab header; `find()` resolves names without decoding every function.

    `buf[start:start+size]` holds the table; `buf` is bytes or the file's mmap, so a 30 MB
    table is never copied. `text_start` is the address of `runtime.text` (the `.text` section
    address, for Go's own linker); only 1.18+ tables whose header field is zero need it.
    """

    @format_errors
    def __init__(
        self, buf: bytes | mmap.mmap, start: int = 0, size: int = -1, text_start: int = 0
    ) -> None:
        self._buf = buf
        self._start = start
        self._size = len(buf) - start if size < 0 else size
        if self._size < 16 or start + self._size > len(buf):
            raise ElfFormatError(f"parse .gopclntab: {self._size} bytes, header needs 16")
        self._end = self._byte_order()
        self.format = _MAGICS[self._u32(0)]
        self.quantum, self.ptr_size = buf[start + 6], buf[start + 7]
        if buf[start + 4] or buf[start + 5] or self.quantum not in (1, 2, 4):
            raise ElfFormatError("parse .gopclntab: bad header (padding or PC quantum)")
        if self.ptr_size not in (4, 8):
            raise ElfFormatError(f"parse .gopclntab: pointer size {self.ptr_size}")
        self._parse_header(text_start)

    def _byte_order(self) -> str:
        le, be = (struct.unpack_from(e + "I", self._buf, self._start)[0] for e in "<>")
        if le in _MAGICS:
            return "<"
        if be in _MAGICS:
            return ">"
        if _GO12_MAGIC in (le, be):
            raise UnsupportedTargetError(
                "parse .gopclntab: Go 1.2-1.15 table; those releases use the stack ABI"
            )
        raise ElfFormatError(f"parse .gopclntab: unknown magic {le:#010x}")

    def _u32(self, off: int) -> int:
        return int(struct.unpack_from(self._end + "I", self._buf, self._start + off)[0])

    def _word(self, i: int) -> int:
        off = 8 + i * self.ptr_size
        if off + self.ptr_size > self._size:
            raise ElfFormatError("parse .gopclntab: header truncated")
        fmt = self._end + ("Q" if self.ptr_size == 8 else "I")
        return int(struct.unpack_from(fmt, self._buf, self._start + off)[0])

    def _parse_header(self, text_start: int) -> None:
        self.nfunc = self._word(0)
        if self.format == "1.16":
            self.text_start = 0
            self._names, self._pcln = self._word(2), self._word(6)
            self._field = self.ptr_size
        else:
            self.text_start = self._word(2) or text_start
            self._names, self._pcln = self._word(3), self._word(7)
            self._field = 4
        functab_end = self._pcln + (2 * self.nfunc + 1) * self._field
        if self._names >= self._size or functab_end > self._size or self.nfunc <= 0:
            raise ElfFormatError(
                f"parse .gopclntab: {self.nfunc} functions at {self._pcln:#x} do not fit"
                f" in {self._size:#x} bytes (truncated?)"
            )
        tab = array("I" if self._field == 4 else "Q")
        if tab.itemsize != self._field:
            raise ElfFormatError("parse .gopclntab: no native integer of the table's width")
        tab.frombytes(self._buf[self._start + self._pcln : self._start + functab_end])
        if (self._end == "<") != (sys.byteorder == "little"):
            tab.byteswap()
        self._pcs = tab[0::2]  # nfunc + 1 entries: the last is the end of the last function
        self._funcoffs = tab[1::2]

    def _pc(self, i: int) -> int:
        return int(self._pcs[i]) + self.text_start

    def _name_off(self, func_off: int) -> int:
        pos = self._pcln + func_off + self._field
        if pos + 4 > self._size:
            raise ElfFormatError(f"parse .gopclntab: _func at {pos:#x} past the table end")
        return int(struct.unpack_from(self._end + "i", self._buf, self._start + pos)[0])

    def _name_at(self, name_off: int) -> str:
        start = self._start + self._names + name_off
        end = self._buf.find(b"\0", start, self._start + self._size)
        if name_off < 0 or end < 0:
            raise ElfFormatError(f"parse .gopclntab: function name at {start:#x} not terminated")
        return bytes(self._buf[start:end]).decode("utf-8", "replace")

    @format_errors
    def functions(self) -> Iterator[GoFunc]:
        """Every function in PC order (slow on big binaries: use `find()` for a few names)."""
        for i in range(self.nfunc):
            name = self._name_at(self._name_off(self._funcoffs[i]))
            yield GoFunc(name, self._pc(i), self._pc(i + 1))

    @format_errors
    def find(self, names: Iterable[str]) -> dict[str, GoFunc]:
        """Resolve `names`; names that are absent are simply missing from the result.

        Each name is located in the name table first, then its 4-byte name offset is searched
        for among the `_func` records; no Python loop runs over every function.
        """
        out: dict[str, GoFunc] = {}
        for name in names:
            found = [
                GoFunc(name, self._pc(i), self._pc(i + 1))
                for name_off in self._name_offsets(name.encode())
                for i in self._funcs_with_name(name_off)
            ]
            if found:
                # Several functions share a name when the linker adds an ABI wrapper (an ABI0
                # <-> ABIInternal thunk, tens of bytes) beside the body; the body is the
                # largest, and every call through the wrapper reaches it.
                out[name] = max(found, key=lambda f: f.end - f.entry)
        return out

    def _name_offsets(self, name: bytes) -> Iterator[int]:
        """Offsets at which `name` is a whole NUL-terminated string of the name table."""
        base = self._start + self._names
        end = self._start + (self._pcln if self._pcln > self._names else self._size)
        needle = name + b"\0"
        pos = self._buf.find(needle, base, end)
        while pos >= 0:
            if pos == base or self._buf[pos - 1] == 0:
                yield pos - base
            pos = self._buf.find(needle, pos + 1, end)

    def _funcs_with_name(self, name_off: int) -> Iterator[int]:
        """Functab indexes of the functions whose `_func.nameOff` is `name_off`."""
        needle = struct.pack(self._end + "i", name_off)
        base = self._start + self._pcln
        end = self._start + self._size
        pos = self._buf.find(needle, base, end)
        while pos >= 0:
            func_off = pos - self._field - base
            if func_off > 0 and func_off % 4 == 0:
                with contextlib.suppress(ValueError):
                    yield self._funcoffs.index(func_off)  # a C scan; false hits are rare
            pos = self._buf.find(needle, pos + 1, end)
