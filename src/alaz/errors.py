"""The one exception tree of alaz.

    AlazError
    ├── ConfigError            a setting is missing or invalid (names the variable or flag)
    ├── KernelFeatureError     the kernel or the host lacks something the agent needs
    ├── BpfError               a libbpf call failed (carries errno)
    │   ├── BpfLoadError       opening or loading an object failed
    │   └── BpfAttachError     attaching a program failed
    ├── ExportError            a sink could not deliver
    └── ParseError             a protocol parser met bytes it cannot make sense of

Messages read "verb object: cause".
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "AlazError",
    "BpfAttachError",
    "BpfError",
    "BpfLoadError",
    "ConfigError",
    "ExportError",
    "KernelFeatureError",
    "ParseError",
]


class AlazError(Exception):
    """Base of every error alaz raises on purpose."""


class ConfigError(AlazError):
    """A setting is missing or invalid."""


class KernelFeatureError(AlazError):
    """The kernel or host lacks a feature the agent needs; the message names it."""


class BpfError(AlazError):
    """A libbpf call failed. `errno` is the positive error number."""

    def __init__(self, what: str, err: int) -> None:
        self.errno = abs(err)
        name = _errno.errorcode.get(self.errno, "?")
        super().__init__(f"{what}: {os.strerror(self.errno)} ({name})")


class BpfLoadError(BpfError):
    """Opening or loading a BPF object failed."""


class BpfAttachError(BpfError):
    """Attaching a BPF program failed."""


class ExportError(AlazError):
    """A sink could not deliver records."""


class ParseError(AlazError):
    """A protocol parser met bytes it cannot make sense of."""
