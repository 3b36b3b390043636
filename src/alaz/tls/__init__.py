"""TLS uprobe targets: OpenSSL libraries and Go crypto/tls binaries, found in /proc.

Plain data producers: nothing here loads BPF or attaches probes. `TargetScanner` (or the
module-level `scan_pid`/`scan_all`) turns processes into `UprobeTarget`s and `GoTarget`s with
FILE offsets, one per distinct file.
"""

from alaz.tls.discovery import (
    FileKey,
    MappedFile,
    ScanStats,
    Target,
    TargetScanner,
    inspect_file,
    parse_maps,
    scan_all,
    scan_pid,
)
from alaz.tls.elf import ElfFormatError, TlsTargetError, UnsupportedTargetError
from alaz.tls.golang import GoStructOffsets, GoTarget
from alaz.tls.openssl import SslLayout, UprobeTarget

__all__ = [
    "ElfFormatError",
    "FileKey",
    "GoStructOffsets",
    "GoTarget",
    "MappedFile",
    "ScanStats",
    "SslLayout",
    "Target",
    "TargetScanner",
    "TlsTargetError",
    "UnsupportedTargetError",
    "UprobeTarget",
    "inspect_file",
    "parse_maps",
    "scan_all",
    "scan_pid",
]
