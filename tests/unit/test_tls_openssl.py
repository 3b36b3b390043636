"""OpenSSL targets from real libraries: system libssl, psycopg's bundled copies, node, and
small libraries compiled here to pin down each way of telling the version."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection

from alaz.tls import UnsupportedTargetError, UprobeTarget, inspect_file
from alaz.tls.openssl import (
    DATA_FUNCTIONS,
    HELPER_FUNCTIONS,
    SslLayout,
    openssl_family,
    release_from_symbol_versions,
)
from tests.conftest import need

LIBSSL = Path("/usr/lib/x86_64-linux-gnu/libssl.so.3")
LIBCRYPTO = Path("/usr/lib/x86_64-linux-gnu/libcrypto.so.3")
NSS_LIBSSL = Path("/usr/lib/x86_64-linux-gnu/libssl3.so")
NODE = Path("/usr/bin/node")


def openssl_target(path: Path) -> UprobeTarget:
    need(path.exists(), f"{path}")
    target = inspect_file(str(path))
    assert isinstance(target, UprobeTarget), target
    return target


def oracle_offsets(path: Path, names: tuple[str, ...]) -> dict[str, int]:
    """FILE offsets of the defined dynamic symbols `names`, computed with pyelftools."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        loads = list(elf.iter_segments("PT_LOAD"))
        out = {}
        for sym in dynsym.iter_symbols():  # type: ignore[union-attr]
            if sym.name in names and sym["st_shndx"] != "SHN_UNDEF":
                va = sym["st_value"]
                seg = next(s for s in loads if s["p_vaddr"] <= va < s["p_vaddr"] + s["p_filesz"])
                out[sym.name] = va - seg["p_vaddr"] + seg["p_offset"]
        return out


def oracle_verdefs(path: Path) -> list[str]:
    with open(path, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            if isinstance(sec, GNUVerDefSection):
                return [next(iter(auxs)).name for _, auxs in sec.iter_versions()]
    return []


def bundled_libssl(package: str) -> Path:
    """The libssl-<hash>.so.3 an auditwheel-repaired wheel carries in <dist>.libs/."""
    spec = importlib.util.find_spec(package)
    need(spec is not None and spec.origin is not None, f"pip install {package} (test extra)")
    assert spec is not None and spec.origin is not None
    site = Path(spec.origin).parent.parent
    libs = sorted(site.glob(f"{package}*.libs/libssl-*.so*"))
    need(bool(libs), f"{package} wheel with a bundled libssl")
    return libs[0]


def test_system_libssl() -> None:
    target = openssl_target(LIBSSL)
    assert (target.version, target.release, target.version_source) == (
        "3.x",
        (3, 0),
        "symbol-versions",
    )
    assert set(DATA_FUNCTIONS) <= set(target.offsets)
    assert dict(target.offsets) == oracle_offsets(LIBSSL, DATA_FUNCTIONS + HELPER_FUNCTIONS)
    assert target.layout == SslLayout(rbio=16, wbio=24, bio_num=56)


@pytest.mark.parametrize("package", ["psycopg2_binary", "psycopg_binary"])
def test_bundled_libssl_of_psycopg_wheels(package: str) -> None:
    # psycopg2-binary installs as the psycopg2 package with psycopg2_binary.libs beside it
    path = bundled_libssl("psycopg2" if package == "psycopg2_binary" else package)
    target = openssl_target(path)
    release = release_from_symbol_versions(oracle_verdefs(path))
    assert release is not None and release[0] == 3
    assert target.version == "3.x" and target.release == release[:2]
    assert dict(target.offsets) == oracle_offsets(path, DATA_FUNCTIONS + HELPER_FUNCTIONS)
    assert {"SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"} <= set(target.offsets)
    # 3.2+ wraps SSL around SSL_CONNECTION: no known offsets, say so rather than guess
    assert (target.layout is None) == (target.release >= (3, 2))


def test_node_exports_a_static_openssl() -> None:
    need(NODE.exists() and shutil.which("node") is not None, "nodejs (apt)")
    version = subprocess.run(
        ["node", "-p", "process.versions.openssl"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major, minor = (int(x) for x in version.split(".")[:2])
    target = openssl_target(NODE)
    assert target.version_source == "banner"  # node defines no OPENSSL_x symbol versions
    assert target.release == (major, minor)
    assert dict(target.offsets) == oracle_offsets(NODE, DATA_FUNCTIONS + HELPER_FUNCTIONS)


@pytest.mark.parametrize("path", [LIBCRYPTO, NSS_LIBSSL], ids=["libcrypto", "nss-libssl3"])
def test_libraries_without_openssl_ssl_are_not_targets(path: Path) -> None:
    """NSS's libssl3.so is not OpenSSL 3 (Alaz took it for one, by its name)."""
    need(path.exists(), f"{path}")
    assert inspect_file(str(path)) is None


# -- libraries built here, one per way of naming (or not naming) the version ------------------

FAKE_SSL = """
int SSL_read(void *s, void *b, int n) { return n; }
int SSL_write(void *s, const void *b, int n) { return n; }
int SSL_set_fd(void *s, int fd) { return 1; }
"""


def build_lib(tmp_path: Path, name: str, extra_c: str = "", version: str | None = None) -> Path:
    need(shutil.which("gcc") is not None, "gcc")
    src = tmp_path / f"{name}.c"
    src.write_text(FAKE_SSL + extra_c)
    out = tmp_path / f"lib{name}.so"
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src)]
    if version:
        script = tmp_path / f"{name}.map"
        script.write_text(f"{version} {{ global: SSL_*; banner; local: *; }};\n")
        cmd.append(f"-Wl,--version-script={script}")
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.mark.parametrize(
    "version, family, release, bio_num",
    [
        ("OPENSSL_1_1_1", "1.1.1", (1, 1), 48),
        ("OPENSSL_1_1_0", "1.1.1", (1, 1), 48),
        ("OPENSSL_1.0.2", "1.0.2", (1, 0), 40),
        ("OPENSSL_3.0.0", "3.x", (3, 0), 56),
    ],
)
def test_version_from_symbol_versions(
    tmp_path: Path, version: str, family: str, release: tuple[int, int], bio_num: int
) -> None:
    target = openssl_target(build_lib(tmp_path, "fake", version=version))
    assert (target.version, target.release, target.version_source) == (
        family,
        release,
        "symbol-versions",
    )
    assert target.layout is not None and target.layout.bio_num == bio_num
    assert set(target.offsets) == {"SSL_read", "SSL_write", "SSL_set_fd"}


def test_version_from_the_banner(tmp_path: Path) -> None:
    banner = 'const char banner[] = "OpenSSL 1.1.1w  11 Sep 2023";\n'
    target = openssl_target(build_lib(tmp_path, "banner", banner))
    assert (target.version, target.release, target.version_source) == ("1.1.1", (1, 1), "banner")


@pytest.mark.parametrize(
    "extra, version, cause",
    [
        ("", None, "names no OpenSSL version"),
        ('const char banner[] = "LibreSSL 3.8.2";\n', None, "names no OpenSSL version"),
        ("", "OPENSSL_0.9.8", r"0\.9\.8 is unsupported"),
    ],
    ids=["unversioned", "libressl", "too-old"],
)
def test_unknown_or_old_openssl_is_refused_with_the_reason(
    tmp_path: Path, extra: str, version: str | None, cause: str
) -> None:
    path = build_lib(tmp_path, "odd", extra, version)
    with pytest.raises(UnsupportedTargetError, match=cause) as info:
        inspect_file(str(path))
    assert str(path) in str(info.value)


def test_a_library_with_only_one_of_the_pair_is_not_a_target(tmp_path: Path) -> None:
    need(shutil.which("gcc") is not None, "gcc")
    src = tmp_path / "half.c"
    src.write_text("int SSL_write(void *s, const void *b, int n) { return n; }\n")
    out = tmp_path / "libhalf.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    assert inspect_file(str(out)) is None


@pytest.mark.parametrize(
    "names, expected",
    [
        (["libssl.so.3", "OPENSSL_3.0.0", "OPENSSL_3.5.0", "OPENSSL_3.2.0"], (3, 5, 0)),
        (["libssl.so.1.1", "OPENSSL_1_1_0", "OPENSSL_1_1_1", "OPENSSL_1_1_0d"], (1, 1, 1)),
        (["libssl.so.10", "OPENSSL_1.0.1", "OPENSSL_1.0.2", "OPENSSL_1.0.1_EC"], (1, 0, 2)),
        (["libssl.so.3", "NSS_3.4"], None),
        ([], None),
    ],
)
def test_release_from_symbol_versions(
    names: list[str], expected: tuple[int, int, int] | None
) -> None:
    assert release_from_symbol_versions(names) == expected


def test_family_boundaries() -> None:
    assert openssl_family((3, 5, 0)) == "3.x"
    assert openssl_family((1, 1, 0)) == "1.1.1"
    assert openssl_family((1, 0, 1)) == "1.0.2"
    with pytest.raises(UnsupportedTargetError):
        openssl_family((0, 9, 8))
