"""The one exception tree of alaz.

    AlazError
    ├── ConfigError            a setting is missing or invalid (names the variable or flag)
    ├── KernelFeatureError     the kernel or the host lacks something the agent needs
    ├── BpfError               a libbpf call failed (carries errno)
    │   ├── BpfLoadError       opening or loading an object failed
    │   └── BpfAttachError     attaching a program failed
    ├── ExportError            a sink could not deliver
    ├── KubeApiError           the Kubernetes API answered with an error (status), or broke
    │   └── ResourceGone       410 Gone: the resourceVersion is too old; relist
    ├── TlsTargetError         a file cannot be a TLS uprobe target; the message says why
    │   ├── ElfFormatError     not an ELF, or truncated/inconsistent ELF structures
    │   └── UnsupportedTargetError  recognised (OpenSSL, Go) but not probeable (ABI, version)
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
    "ElfFormatError",
    "ExportError",
    "KernelFeatureError",
    "KubeApiError",
    "ParseError",
    "ResourceGone",
    "TlsTargetError",
    "UnsupportedTargetError",
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


class KubeApiError(AlazError):
    """The API server answered with an error status (or the stream broke)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ResourceGone(KubeApiError):
    """410 Gone: the resourceVersion is too old; relist."""


class TlsTargetError(AlazError):
    """A file cannot be used as a TLS uprobe target; the message says why."""


class ElfFormatError(TlsTargetError):
    """A file is not an ELF, or its ELF structures are truncated or inconsistent."""


class UnsupportedTargetError(TlsTargetError):
    """A file was recognised (OpenSSL, Go) but cannot be probed: old ABI, unknown version, arch."""
