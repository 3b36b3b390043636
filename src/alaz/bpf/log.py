"""Routes libbpf's own messages (verifier logs included) to structlog."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from alaz.bpf._libbpf import LIB, PRINT_FN

__all__ = ["install_libbpf_logger", "recent_libbpf_messages"]

_LEVELS = {0: "warning", 1: "info", 2: "debug"}  # enum libbpf_print_level
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
_libc.vsnprintf.restype = ctypes.c_int

_BUF = ctypes.create_string_buffer(1 << 20)  # verifier logs are long
_recent: list[str] = []  # the last warnings, for error messages (bounded)
_state: dict[str, Any] = {"callback": None}


def _on_print(level: int, fmt: bytes | None, args: int | None) -> int:
    try:
        if level == 2 or fmt is None:  # debug: libbpf is chatty
            return 0
        buf = _BUF
        _libc.vsnprintf(buf, len(buf), fmt, args)
        text = buf.value.decode(errors="replace").rstrip()
        _recent.append(text)
        del _recent[:-200]
        from alaz.log import get_logger

        getattr(get_logger("libbpf"), _LEVELS.get(level, "info"))("libbpf", msg=text)
    except Exception:
        return 0
    return 0


def install_libbpf_logger() -> None:
    """Installs the print callback once; it stays referenced for the process's life."""
    if _state["callback"] is None:
        cb = PRINT_FN(_on_print)
        _state["callback"] = cb
        LIB.libbpf_set_print(cb)


def recent_libbpf_messages(n: int = 30) -> list[str]:
    return _recent[-n:]
