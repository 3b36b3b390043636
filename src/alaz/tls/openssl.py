"""OpenSSL targets: any ELF file that exports `SSL_read` and `SSL_write`.

That covers the system `libssl.so.3`/`.so.1.1`, bundled copies such as psycopg's
`libssl-<hash>.so.3`, and executables that link OpenSSL statically and export it (node).

The OpenSSL version comes from the file itself, never from its name (Alaz parsed the name, so
`libssl.so.10` of RHEL 7 read as "v10" and NSS's `libssl3.so` as OpenSSL 3):

1. the symbol versions the library defines: `OPENSSL_3.5.0` (3.x), `OPENSSL_1_1_1`
   (1.1.x), `OPENSSL_1.0.2` (1.0.x); the newest one is the lowest release that can be;
2. otherwise the `OpenSSL 3.0.19 27 Jan 2026` banner in `.rodata` (static builds such as node,
   which export no versions).

A file exporting SSL_* with neither (BoringSSL, LibreSSL) is refused with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from alaz.tls.elf import ElfImage, UnsupportedTargetError, format_errors

__all__ = [
    "DATA_FUNCTIONS",
    "HELPER_FUNCTIONS",
    "OpenSslFamily",
    "SslLayout",
    "UprobeTarget",
    "inspect_openssl",
    "openssl_family",
    "release_from_symbol_versions",
    "ssl_layout",
]

OpenSslFamily = Literal["1.0.2", "1.1.1", "3.x"]

# Plaintext in and out. Python's ssl module calls only the _ex pair; curl, nginx, libpq,
# node call SSL_read/SSL_write (testbed.md section 2).
DATA_FUNCTIONS = ("SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex")
# For tying an SSL* to its socket without struct offsets, and for forgetting it.
HELPER_FUNCTIONS = (
    "SSL_do_handshake",
    "SSL_connect",
    "SSL_accept",
    "SSL_set_fd",
    "SSL_set_rfd",
    "SSL_set_wfd",
    "SSL_get_fd",
    "SSL_set_bio",
    "SSL_shutdown",
    "SSL_free",
)

_SYMBOL_VERSION = re.compile(r"^OPENSSL_(\d+)[._](\d+)[._](\d+)([a-z]?)$")
_BANNER = re.compile(
    rb"OpenSSL (\d+)\.(\d+)\.(\d+)([a-z]*)(?:-[\w.]+)? +\d{1,2} [A-Z][a-z]{2} \d{4}"
)


@dataclass(frozen=True, slots=True)
class SslLayout:
    """Byte offsets to reach the socket fd from an `SSL*`: ssl->rbio / ssl->wbio, bio->num.

    From the OpenSSL sources (alaz-spec.md section 3.6); unknown (None) for 3.2+, where
    `SSL` became a wrapper around `SSL_CONNECTION`.
    """

    rbio: int
    wbio: int
    bio_num: int


_LAYOUTS: dict[tuple[int, int], SslLayout] = {
    # 1.0.x ssl_st {version, type, method, rbio, wbio}; bio_st {method, callback, cb_arg,
    # init, shutdown, flags, retry_reason, num}
    (1, 0): SslLayout(rbio=16, wbio=24, bio_num=40),
    # 1.1.x ssl_st {version, method, rbio, wbio}; bio_st gains callback_ex before cb_arg
    (1, 1): SslLayout(rbio=16, wbio=24, bio_num=48),
    # 3.0/3.1: bio_st gains libctx first
    (3, 0): SslLayout(rbio=16, wbio=24, bio_num=56),
    (3, 1): SslLayout(rbio=16, wbio=24, bio_num=56),
}


def ssl_layout(release: tuple[int, int]) -> SslLayout | None:
    """The struct layout for an OpenSSL major.minor release, or None when it is not known."""
    return _LAYOUTS.get(release)


@dataclass(frozen=True, slots=True)
class UprobeTarget:
    """One file holding OpenSSL's SSL layer, to probe once for every process that maps it.

    `path` opens the file from the agent's mount namespace at scan time (a host path, or
    `/proc/<pid>/root/...` or `/proc/<pid>/map_files/...` for containers and deleted files);
    `dev`/`ino` name the inode the kernel attaches to. `offsets` maps function names from
    `DATA_FUNCTIONS` and `HELPER_FUNCTIONS` to FILE offsets; missing symbols are absent.
    `release` is (major, minor): exact from a banner, the lowest possible from symbol
    versions (a 3.1 library defines no symbol newer than OPENSSL_3.0.x, so it reads 3.0;
    both share one layout). `layout` is None when the struct offsets are not known.
    """

    path: str
    dev: int
    ino: int
    version: OpenSslFamily
    release: tuple[int, int]
    version_source: Literal["symbol-versions", "banner"]
    offsets: Mapping[str, int] = field(hash=False)
    layout: SslLayout | None = None


@format_errors
def inspect_openssl(img: ElfImage, path: str, dev: int, ino: int) -> UprobeTarget | None:
    """An `UprobeTarget` when `img` exports SSL_read and SSL_write, else None.

    Raises UnsupportedTargetError when it exports them but is no OpenSSL we know.
    """
    syms = img.dynamic_symbols(DATA_FUNCTIONS + HELPER_FUNCTIONS)
    if "SSL_read" not in syms or "SSL_write" not in syms:
        return None
    found = _version_from_symbols(img) or _version_from_banner(img)
    if found is None:
        raise UnsupportedTargetError(
            f"identify {img.path}: exports SSL_read/SSL_write but names no OpenSSL version"
            " (BoringSSL or LibreSSL?)"
        )
    (major, minor, patch), source = found
    family = openssl_family((major, minor, patch), img.path)
    offsets = {name: img.vaddr_to_offset(sym.value) for name, sym in syms.items()}
    return UprobeTarget(
        path=path,
        dev=dev,
        ino=ino,
        version=family,
        release=(major, minor),
        version_source=source,
        offsets=offsets,
        layout=ssl_layout((major, minor)),
    )


def release_from_symbol_versions(names: list[str]) -> tuple[int, int, int] | None:
    """The newest OPENSSL_x.y.z among symbol-version names (`OPENSSL_1_1_1`, ...), or None."""
    versions = []
    for name in names:
        m = _SYMBOL_VERSION.match(name)
        if m:
            versions.append((int(m[1]), int(m[2]), int(m[3])))
    return max(versions) if versions else None


def _version_from_symbols(
    img: ElfImage,
) -> tuple[tuple[int, int, int], Literal["symbol-versions"]] | None:
    release = release_from_symbol_versions(img.version_definitions())
    return (release, "symbol-versions") if release else None


def _version_from_banner(img: ElfImage) -> tuple[tuple[int, int, int], Literal["banner"]] | None:
    sec = img.section(".rodata")
    start, end = (sec.offset, sec.offset + sec.size) if sec else (0, len(img.buffer))
    m = img.search(_BANNER, start, end)
    if m is None:
        return None
    return (int(m[1]), int(m[2]), int(m[3])), "banner"


def openssl_family(release: tuple[int, int, int], path: str = "") -> OpenSslFamily:
    """The probe family of an OpenSSL release; UnsupportedTargetError before 1.0."""
    major, minor, patch = release
    if major == 3:
        return "3.x"
    if (major, minor) == (1, 1):
        return "1.1.1"
    if (major, minor) == (1, 0):  # ssl_st and bio_st kept one layout through 1.0.x
        return "1.0.2"
    raise UnsupportedTargetError(f"identify {path}: OpenSSL {major}.{minor}.{patch} is unsupported")
