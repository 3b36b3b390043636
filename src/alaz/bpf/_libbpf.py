"""The one ctypes prototype table for libbpf.so.1.

Every function is declared once, with argtypes and restype, the C prototype beside it. The
library is loaded with use_errno=True: libbpf 1.x returns NULL or a negative errno and sets
errno, which `check_ptr`/`check_int` turn into typed errors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

from alaz.errors import BpfError, KernelFeatureError

__all__ = ["LIB", "PRINT_FN", "check_int", "check_ptr", "load_libbpf"]

c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_size_t = ctypes.c_size_t
c_uint = ctypes.c_uint
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64

# typedef int (*libbpf_print_fn_t)(enum libbpf_print_level level, const char *, va_list ap);
PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)

_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    # int libbpf_major_version(void); int libbpf_minor_version(void);
    "libbpf_major_version": (c_uint32, []),
    "libbpf_minor_version": (c_uint32, []),
    # int libbpf_num_possible_cpus(void);
    "libbpf_num_possible_cpus": (c_int, []),
    # libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn);
    "libbpf_set_print": (c_void_p, [PRINT_FN]),
    # struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
    #                                         const struct bpf_object_open_opts *opts);
    "bpf_object__open_mem": (c_void_p, [c_char_p, c_size_t, c_void_p]),
    # int bpf_object__load(struct bpf_object *obj);
    "bpf_object__load": (c_int, [c_void_p]),
    # void bpf_object__close(struct bpf_object *obj);
    "bpf_object__close": (None, [c_void_p]),
    # struct btf *bpf_object__btf(const struct bpf_object *obj);
    "bpf_object__btf": (c_void_p, [c_void_p]),
    # struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    # struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
    #                                               struct bpf_program *prog);
    "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
    # const char *bpf_program__name(const struct bpf_program *prog);
    "bpf_program__name": (c_char_p, [c_void_p]),
    # const char *bpf_program__section_name(const struct bpf_program *prog);
    "bpf_program__section_name": (c_char_p, [c_void_p]),
    # int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
    "bpf_program__set_autoload": (c_int, [c_void_p, ctypes.c_bool]),
    # int bpf_program__fd(const struct bpf_program *prog);
    "bpf_program__fd": (c_int, [c_void_p]),
    # struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
    "bpf_program__attach": (c_void_p, [c_void_p]),
    # struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *prog,
    #                                                 const char *tp_category, const char *tp_name);
    "bpf_program__attach_tracepoint": (c_void_p, [c_void_p, c_char_p, c_char_p]),
    # struct bpf_link *bpf_program__attach_uprobe(const struct bpf_program *prog, bool retprobe,
    #     pid_t pid, const char *binary_path, size_t func_offset);
    "bpf_program__attach_uprobe": (c_void_p, [c_void_p, ctypes.c_bool, c_int, c_char_p, c_size_t]),
    # int bpf_link__destroy(struct bpf_link *link);
    "bpf_link__destroy": (c_int, [c_void_p]),
    # int bpf_map__fd(const struct bpf_map *map);
    "bpf_map__fd": (c_int, [c_void_p]),
    # int bpf_map__reuse_fd(struct bpf_map *map, int fd);
    "bpf_map__reuse_fd": (c_int, [c_void_p, c_int]),
    # int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
    "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint32]),
    # __u32 bpf_map__max_entries(const struct bpf_map *map);
    "bpf_map__max_entries": (c_uint32, [c_void_p]),
    # __u32 bpf_map__value_size(const struct bpf_map *map);
    "bpf_map__value_size": (c_uint32, [c_void_p]),
    # void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);
    "bpf_map__initial_value": (c_void_p, [c_void_p, ctypes.POINTER(c_size_t)]),
    # int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
    "bpf_map__set_initial_value": (c_int, [c_void_p, c_void_p, c_size_t]),
    # int bpf_map_lookup_elem(int fd, const void *key, void *value);
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    # int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
    # int bpf_map_delete_elem(int fd, const void *key);
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    # __s32 btf__find_by_name_kind(const struct btf *btf, const char *type_name, __u32 kind);
    "btf__find_by_name_kind": (ctypes.c_int32, [c_void_p, c_char_p, c_uint32]),
    # const struct btf_type *btf__type_by_id(const struct btf *btf, __u32 id);
    "btf__type_by_id": (c_void_p, [c_void_p, c_uint32]),
    # const char *btf__name_by_offset(const struct btf *btf, __u32 offset);
    "btf__name_by_offset": (c_char_p, [c_void_p, c_uint32]),
    # int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
    "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, ctypes.POINTER(c_uint32)]),
    # int bpf_enable_stats(enum bpf_stats_type type);
    "bpf_enable_stats": (c_int, [c_int]),
}


class _Lib:
    """libbpf.so.1 with every function of `_PROTOTYPES` declared; loaded on first use."""

    def __init__(self) -> None:
        self._cdll: ctypes.CDLL | None = None

    def _load(self) -> ctypes.CDLL:
        if self._cdll is None:
            name = "libbpf.so.1"
            try:
                cdll = ctypes.CDLL(name, use_errno=True)
            except OSError as exc:
                raise KernelFeatureError(
                    f"load {name}: {exc}; install it (Debian/Ubuntu: apt-get install libbpf1)"
                ) from exc
            for fname, (restype, argtypes) in _PROTOTYPES.items():
                fn = getattr(cdll, fname)
                fn.restype = restype
                fn.argtypes = argtypes
            self._cdll = cdll
        return self._cdll

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in _PROTOTYPES:
            raise AttributeError(f"libbpf function {name} is not declared in _PROTOTYPES")
        fn: Callable[..., Any] = getattr(self._load(), name)
        return fn


LIB = _Lib()


def load_libbpf() -> tuple[int, int]:
    """Loads libbpf and returns its (major, minor) version."""
    return int(LIB.libbpf_major_version()), int(LIB.libbpf_minor_version())


def check_ptr(ptr: int | None, what: str, error: type[BpfError] = BpfError) -> int:
    """A NULL result becomes `error` carrying errno."""
    if not ptr:
        raise error(what, ctypes.get_errno() or 22)
    return ptr


def check_int(ret: int, what: str, error: type[BpfError] = BpfError) -> int:
    """A negative result (a -errno) becomes `error`."""
    if ret < 0:
        raise error(what, -ret)
    return ret
