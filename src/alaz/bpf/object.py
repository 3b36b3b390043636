"""BpfObject: one compiled BPF object, from open to close, and the links of its programs.

Lifecycle: open (from bytes) -> configure (globals, map sizes, shared map fds) -> load ->
attach -> close. The object owns its links; `close()` is idempotent, destroys links first, and
a finalizer is the safety net. Nothing is pinned, so a crash leaves nothing attached.
"""

from __future__ import annotations

import ctypes
import struct
import weakref
from collections.abc import Iterator

from alaz.bpf._libbpf import LIB, check_int, check_ptr
from alaz.bpf.log import install_libbpf_logger
from alaz.errors import BpfAttachError, BpfError, BpfLoadError

__all__ = ["BpfObject", "Link"]

_BTF_KIND_DATASEC = 15
_BTF_TYPE = struct.Struct("<III")  # name_off, info, size_or_type
_BTF_SECINFO = struct.Struct("<III")  # type, offset, size


class _OpenOpts(ctypes.Structure):
    # The leading fields of struct bpf_object_open_opts; libbpf accepts a shorter `sz`.
    _fields_ = [("sz", ctypes.c_size_t), ("object_name", ctypes.c_char_p)]


class Link:
    """An attached program. Destroying it detaches the program."""

    def __init__(self, ptr: int, program: str) -> None:
        self._ptr: int | None = ptr
        self.program = program

    def destroy(self) -> None:
        if self._ptr:
            LIB.bpf_link__destroy(self._ptr)
            self._ptr = None


class BpfObject:
    """A BPF object file opened through libbpf."""

    def __init__(self, name: str, data: bytes) -> None:
        install_libbpf_logger()
        self.name = name
        self._data = data  # libbpf keeps pointing into the buffer until close
        self._opts = _OpenOpts(ctypes.sizeof(_OpenOpts), name.encode())
        ptr = LIB.bpf_object__open_mem(data, len(data), ctypes.byref(self._opts))
        self._obj: int | None = check_ptr(ptr, f"open BPF object {name}", BpfLoadError)
        self.links: list[Link] = []
        self.loaded = False
        self._finalizer = weakref.finalize(self, _close_raw, self._obj, self.links)

    # -- before load --------------------------------------------------------------------------

    def _map_ptr(self, name: str) -> int:
        ptr = LIB.bpf_object__find_map_by_name(self._require(), name.encode())
        return check_ptr(ptr, f"find map {name} in {self.name}")

    def set_rodata(self, values: dict[str, int]) -> None:
        """Sets `const volatile` globals (integers) before load."""
        offsets = self._datasec_vars(".rodata")
        mp = self._map_ptr(".rodata")
        size = ctypes.c_size_t(0)
        base = check_ptr(
            LIB.bpf_map__initial_value(mp, ctypes.byref(size)), f"read .rodata of {self.name}"
        )
        buf = bytearray(ctypes.string_at(base, size.value))
        for var, value in values.items():
            if var not in offsets:
                raise BpfError(f"set {var} in {self.name}: no such global", 2)
            off, width = offsets[var]
            buf[off : off + width] = value.to_bytes(width, "little", signed=value < 0)
        cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
        check_int(LIB.bpf_map__set_initial_value(mp, cbuf, len(buf)), f"set .rodata of {self.name}")

    def _datasec_vars(self, section: str) -> dict[str, tuple[int, int]]:
        btf = check_ptr(LIB.bpf_object__btf(self._require()), f"read BTF of {self.name}")
        type_id = LIB.btf__find_by_name_kind(btf, section.encode(), _BTF_KIND_DATASEC)
        check_int(type_id, f"find {section} in the BTF of {self.name}")
        tptr = LIB.btf__type_by_id(btf, type_id)
        _, info, _ = _BTF_TYPE.unpack(ctypes.string_at(tptr, _BTF_TYPE.size))
        vlen = info & 0xFFFF
        raw = ctypes.string_at(tptr + _BTF_TYPE.size, vlen * _BTF_SECINFO.size)
        result: dict[str, tuple[int, int]] = {}
        for i in range(vlen):
            var_id, offset, size = _BTF_SECINFO.unpack_from(raw, i * _BTF_SECINFO.size)
            vptr = LIB.btf__type_by_id(btf, var_id)
            name_off = _BTF_TYPE.unpack(ctypes.string_at(vptr, _BTF_TYPE.size))[0]
            result[LIB.btf__name_by_offset(btf, name_off).decode()] = (offset, size)
        return result

    def set_max_entries(self, map_name: str, entries: int) -> None:
        check_int(
            LIB.bpf_map__set_max_entries(self._map_ptr(map_name), entries),
            f"resize map {map_name} of {self.name} to {entries}",
        )

    def reuse_map(self, map_name: str, fd: int) -> None:
        """Makes this object use an already created map (shared between objects)."""
        check_int(
            LIB.bpf_map__reuse_fd(self._map_ptr(map_name), fd),
            f"share map {map_name} with {self.name}",
        )

    def set_autoload(self, program: str, autoload: bool) -> None:
        check_int(
            LIB.bpf_program__set_autoload(self._program_ptr(program), autoload),
            f"set autoload of {program}",
        )

    # -- load and attach ----------------------------------------------------------------------

    def load(self) -> None:
        check_int(
            LIB.bpf_object__load(self._require()), f"load BPF object {self.name}", BpfLoadError
        )
        self.loaded = True

    def programs(self) -> Iterator[tuple[str, str]]:
        """(name, section) of every program in the object."""
        prog = None
        while True:
            prog = LIB.bpf_object__next_program(self._require(), prog)
            if not prog:
                return
            yield (
                LIB.bpf_program__name(prog).decode(),
                LIB.bpf_program__section_name(prog).decode(),
            )

    def _program_ptr(self, program: str) -> int:
        prog = None
        while True:
            prog = LIB.bpf_object__next_program(self._require(), prog)
            if not prog:
                raise BpfError(f"find program {program} in {self.name}", 2)
            if LIB.bpf_program__name(prog).decode() == program:
                return int(prog)

    def attach(self, program: str) -> Link:
        """Attaches a program by its section name (tracepoint/..., tp_btf/...)."""
        ptr = LIB.bpf_program__attach(self._program_ptr(program))
        link = Link(check_ptr(ptr, f"attach {program} of {self.name}", BpfAttachError), program)
        self.links.append(link)
        return link

    def attach_uprobe(
        self, program: str, path: str, offset: int, pid: int = -1, retprobe: bool = False
    ) -> Link:
        """Attaches a uprobe at a file offset of `path` (all processes when pid is -1)."""
        ptr = LIB.bpf_program__attach_uprobe(
            self._program_ptr(program), retprobe, pid, path.encode(), offset
        )
        what = f"attach uprobe {program} to {path}+{offset:#x}"
        link = Link(check_ptr(ptr, what, BpfAttachError), program)
        self.links.append(link)
        return link

    def map_fd(self, map_name: str) -> int:
        return check_int(LIB.bpf_map__fd(self._map_ptr(map_name)), f"get fd of map {map_name}")

    def program_fd(self, program: str) -> int:
        return check_int(
            LIB.bpf_program__fd(self._program_ptr(program)), f"get fd of program {program}"
        )

    # -- teardown -----------------------------------------------------------------------------

    def detach(self) -> None:
        """Destroys every link (programs stop running); the maps stay readable."""
        for link in self.links:
            link.destroy()
        self.links.clear()

    def close(self) -> None:
        self.detach()
        self._finalizer()
        self._obj = None

    def _require(self) -> int:
        if self._obj is None:
            raise BpfError(f"use BPF object {self.name}: already closed", 9)
        return self._obj

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_raw(obj: int, links: list[Link]) -> None:
    for link in links:
        link.destroy()
    LIB.bpf_object__close(obj)
