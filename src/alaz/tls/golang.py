"""Go crypto/tls targets: where to put uprobes in a Go binary, and how to reach the socket fd.

A Go binary is recognised by its build info blob (`\\xff Go buildinf:`, in `.go.buildinfo`),
which also names the toolchain (`go1.22.5`). The two functions are found through `.symtab`
when it is there and through `.gopclntab` when the binary is stripped (`-ldflags='-s -w'`
keeps the pclntab: the runtime needs it).

`(*Conn).Write` gets a uprobe at its entry; `(*Conn).Read` at its entry and at every RET
instruction, found by disassembling it with capstone. Never a uretprobe: it rewrites the
return address on the goroutine stack, which Go moves when it grows, and the process crashes
(golang/go#22008).

Arguments come in registers (ABIInternal), used since Go 1.17 on amd64 and Go 1.18 on arm64;
older binaries pass them on the stack and are refused:

    amd64: c *Conn = RAX, b.ptr = RBX, b.len = RCX; at RET n = RAX; g = R14
    arm64: c *Conn = X0,  b.ptr = X1,  b.len = X2;  at RET n = X0;  g = X28
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import capstone

from alaz.tls.elf import ElfFormatError, ElfImage, UnsupportedTargetError, format_errors
from alaz.tls.gopclntab import GoFunc, PcLnTable

__all__ = [
    "GO_READ",
    "GO_STRUCT_OFFSETS",
    "GO_WRITE",
    "GoStructOffsets",
    "GoTarget",
    "inspect_go",
    "parse_go_version",
    "read_go_version",
    "ret_offsets",
    "struct_offsets",
]

GO_WRITE = "crypto/tls.(*Conn).Write"
GO_READ = "crypto/tls.(*Conn).Read"

_BUILDINFO_MAGIC = b"\xff Go buildinf:"
_VERSION = re.compile(r"go(\d+)\.(\d+)")
# The first release passing arguments in registers, per architecture (Go 1.17 and 1.18
# release notes); before it, arguments are on the goroutine stack.
_REGISTER_ABI_SINCE = {"amd64": (1, 17), "arm64": (1, 18)}


@dataclass(frozen=True, slots=True)
class GoStructOffsets:
    """Byte offsets from a `*tls.Conn` to its socket fd.

        tls.Conn.conn       net.Conn interface {itab, data}      at tls_conn_conn
        interface data      -> *net.TCPConn                      at iface_data (word 2)
        net.TCPConn.conn    net.conn, embedded                   at tcpconn_conn
        net.conn.fd         *net.netFD                           at conn_fd
        net.netFD.pfd       internal/poll.FD                     at netfd_pfd
        poll.FD.Sysfd       int, after fdMutex{u64, u32, u32}    at pfd_sysfd

    Valid only when the inner net.Conn is a `*net.TCPConn` (or another type embedding
    `net.conn` first: UnixConn, UDPConn, IPConn). The three properties are the hops a BPF
    program makes (tls_go.bpf.c's go_conn_data_off, go_netfd_off, go_sysfd_off).
    """

    tls_conn_conn: int = 0
    iface_data: int = 8
    tcpconn_conn: int = 0
    conn_fd: int = 0
    netfd_pfd: int = 0
    pfd_sysfd: int = 16

    @property
    def conn_data(self) -> int:
        """*tls.Conn -> the interface's data pointer (a *net.TCPConn)."""
        return self.tls_conn_conn + self.iface_data

    @property
    def netfd(self) -> int:
        """*net.TCPConn -> its *net.netFD."""
        return self.tcpconn_conn + self.conn_fd

    @property
    def sysfd(self) -> int:
        """*net.netFD -> the int fd."""
        return self.netfd_pfd + self.pfd_sysfd


# (first Go release, last Go release or None, offsets, why). Rows are checked in order.
_Row = tuple[tuple[int, int], tuple[int, int] | None, GoStructOffsets, str]
GO_STRUCT_OFFSETS: tuple[_Row, ...] = (
    (
        (1, 9),
        None,
        GoStructOffsets(),
        "go1.9 moved the fd into internal/poll (netFD.pfd first, FD.fdmu 16 bytes then "
        "Sysfd); tls.Conn.conn and net.conn.fd have been first fields since go1.0. Checked "
        "in DWARF and with reflect on go1.19.8 and go1.27.3 (tests/unit/test_tls_golang.py).",
    ),
)


def struct_offsets(version: tuple[int, int]) -> GoStructOffsets:
    """The offsets for a Go (major, minor) release; UnsupportedTargetError outside the table."""
    for first, last, offsets, _ in GO_STRUCT_OFFSETS:
        if version >= first and (last is None or version <= last):
            return offsets
    raise UnsupportedTargetError(f"look up struct offsets: go{version[0]}.{version[1]} unknown")


@dataclass(frozen=True, slots=True)
class GoTarget:
    """A Go binary whose crypto/tls can be probed; offsets are FILE offsets for uprobes.

    `path`, `dev`, `ino` as for `UprobeTarget`. `read_ret_offsets` lists every RET inside
    `(*Conn).Read`; probe each with a plain uprobe. `symbols_from` says how the functions were
    found ("symtab", or "pclntab" for a stripped binary).
    """

    path: str
    dev: int
    ino: int
    go_version: str
    arch: Literal["amd64", "arm64"]
    write_offset: int
    read_offset: int
    read_ret_offsets: tuple[int, ...]
    symbols_from: Literal["symtab", "pclntab"]
    abi: Literal["register"] = "register"
    struct_offsets: GoStructOffsets = field(default_factory=GoStructOffsets)


def parse_go_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of "go1.22.5", "go1.21rc2", "devel go1.23-abc..."; None otherwise."""
    m = _VERSION.search(text)
    return (int(m[1]), int(m[2])) if m else None


@format_errors
def inspect_go(img: ElfImage, path: str, dev: int, ino: int) -> GoTarget | None:
    """A `GoTarget` for a Go binary linking crypto/tls; None for other files.

    Raises UnsupportedTargetError for a Go binary that uses crypto/tls but cannot be probed
    (stack ABI, architecture), ElfFormatError when its tables are damaged.
    """
    go_version = read_go_version(img)
    if go_version is None:
        return None
    funcs, source = _find_functions(img)
    if GO_READ not in funcs or GO_WRITE not in funcs:
        return None  # a Go program without TLS
    version = parse_go_version(go_version)
    if img.machine not in ("amd64", "arm64"):
        raise UnsupportedTargetError(f"probe {img.path}: Go on {img.machine} is unsupported")
    arch: Literal["amd64", "arm64"] = "amd64" if img.machine == "amd64" else "arm64"
    since = _REGISTER_ABI_SINCE[arch]
    if version is None or version < since:
        raise UnsupportedTargetError(
            f"probe {img.path}: {go_version} passes arguments on the stack; the register ABI"
            f" on {arch} starts with go{since[0]}.{since[1]}"
        )
    read = funcs[GO_READ]
    return GoTarget(
        path=path,
        dev=dev,
        ino=ino,
        go_version=go_version,
        arch=arch,
        write_offset=img.vaddr_to_offset(funcs[GO_WRITE].entry),
        read_offset=img.vaddr_to_offset(read.entry),
        read_ret_offsets=ret_offsets(img, read),
        symbols_from=source,
        struct_offsets=struct_offsets(version),
    )


def _find_functions(img: ElfImage) -> tuple[dict[str, GoFunc], Literal["symtab", "pclntab"]]:
    syms = img.symtab_symbols((GO_WRITE, GO_READ))
    if syms:
        return {n: GoFunc(n, s.value, s.value + s.size) for n, s in syms.items()}, "symtab"
    sec = img.section(".gopclntab") or img.section(".data.rel.ro.gopclntab")
    if sec is None:
        raise ElfFormatError(f"find Go functions in {img.path}: no .symtab and no .gopclntab")
    text = img.section(".text")
    table = PcLnTable(img.buffer, sec.offset, sec.size, text.addr if text else 0)
    return table.find((GO_WRITE, GO_READ)), "pclntab"


def read_go_version(img: ElfImage) -> str | None:
    """The toolchain version in the build info ("go1.22.5"), or None if not a Go binary."""
    sec = img.section(".go.buildinfo")
    if sec is not None:
        start, end = sec.offset, sec.offset + sec.size
    elif img.section_names():
        return None  # section headers without .go.buildinfo: not Go (or Go < 1.13)
    else:  # section headers stripped (sstrip): Go looks in the first writable segment
        seg = next((s for s in img.segments if s.flags & 0x2), None)
        if seg is None:
            return None
        start, end = seg.offset, seg.offset + min(seg.filesz, 1 << 20)
    pos = img.buffer.find(_BUILDINFO_MAGIC, start, end)
    while pos >= 0 and pos % 16:
        pos = img.buffer.find(_BUILDINFO_MAGIC, pos + 1, end)
    if pos < 0:
        return None
    return _decode_buildinfo(img, pos)


def _decode_buildinfo(img: ElfImage, pos: int) -> str | None:
    header = img.bytes_at(pos, 32)
    ptr_size, flags = header[14], header[15]
    if flags & 0x2:  # go1.18+: varint-length strings inline after the header
        return _varint_string(img, pos + 32)
    if ptr_size not in (4, 8):
        raise ElfFormatError(f"read Go build info of {img.path}: pointer size {ptr_size}")
    end = ">" if flags & 0x1 else "<"
    word = end + ("Q" if ptr_size == 8 else "I")
    (vers_ptr,) = struct.unpack_from(word, header, 16)
    # vers_ptr points at a Go string header {data pointer, length}
    data, length = struct.unpack_from(end + 2 * word[1], img.read_vaddr(vers_ptr, 2 * ptr_size))
    if not 0 < length < 256:
        return None
    return img.read_vaddr(data, length).decode("utf-8", "replace")


def _varint_string(img: ElfImage, pos: int) -> str | None:
    length, shift = 0, 0
    for i in range(10):
        b = img.bytes_at(pos + i, 1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            text = img.bytes_at(pos + i + 1, length).decode("utf-8", "replace")
            return text or None
    raise ElfFormatError(f"read Go build info of {img.path}: bad varint at {pos:#x}")


def ret_offsets(img: ElfImage, func: GoFunc) -> tuple[int, ...]:
    """FILE offsets of every RET in `func`, by a linear sweep over its bytes.

    Go emits no data inside `.text` functions on amd64/arm64, so a sweep is exact; capstone's
    SKIPDATA steps over anything it cannot decode (padding), so one bad byte cannot end the
    sweep early or loop forever.
    """
    size = func.end - func.entry
    if size <= 0:
        raise ElfFormatError(f"disassemble {func.name} in {img.path}: empty function")
    code = img.read_vaddr(func.entry, size)
    rets = tuple(
        img.vaddr_to_offset(addr)
        for addr, _, mnemonic, _ in _disassembler(img.machine).disasm_lite(code, func.entry)
        if mnemonic.rsplit(" ", 1)[-1] == "ret"
    )
    if not rets:
        raise ElfFormatError(f"disassemble {func.name} in {img.path}: no RET found")
    return rets


_DISASSEMBLERS: dict[str, Any] = {}


def _disassembler(arch: str) -> Any:
    cs = _DISASSEMBLERS.get(arch)
    if cs is None:
        if arch == "amd64":
            cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        elif arch == "arm64":
            # capstone 6 renamed ARM64 to AARCH64
            arch_id = getattr(capstone, "CS_ARCH_AARCH64", None) or capstone.CS_ARCH_ARM64
            cs = capstone.Cs(arch_id, capstone.CS_MODE_ARM)
        else:
            raise UnsupportedTargetError(f"disassemble: no disassembler for {arch}")
        cs.skipdata = True
        _DISASSEMBLERS[arch] = cs
    return cs
