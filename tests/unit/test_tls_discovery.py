"""Scanning real processes: Python with psycopg, node, Go servers (plain, stripped, deleted,
chrooted, on two overlay mounts), and processes that vanish mid-scan."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alaz.tls import (
    GoTarget,
    MappedFile,
    TargetScanner,
    UprobeTarget,
    parse_maps,
    scan_all,
    scan_pid,
)
from tests.conftest import need
from tests.kernel.tlsbuild import (  # noqa: F401
    GoBuild,
    GoBuilder,
    go_builder,
    gotls,
    gotls_stripped,
    start_server,
    stop,
)

LIBSSL = Path("/usr/lib/x86_64-linux-gnu/libssl.so.3")


def key(path: Path | str) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


@contextlib.contextmanager
def running(*argv: str) -> Iterator[subprocess.Popen[str]]:
    """A process that prints one line when ready and lives until the block ends."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip(), f"{argv[0]} did not start: {proc.stderr.read() if proc.stderr else ''}"
        yield proc
    finally:
        stop(proc)


def python(code: str) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    return running(
        sys.executable, "-c", code + "\nprint('ready', flush=True)\nimport sys\nsys.stdin.read()"
    )


# -- /proc/<pid>/maps ------------------------------------------------------------------------

MAPS = b"""\
00400000-00401000 r--p 00000000 fe:00 100   /usr/bin/prog
00401000-00500000 r-xp 00001000 fe:00 100   /usr/bin/prog
7f0000000000-7f0000010000 r-xp 00000000 fe:00 200   /usr/lib/libssl.so.3
7f0000010000-7f0000020000 r-xp 00010000 fe:00 200   /usr/lib/libssl.so.3
7f0000020000-7f0000030000 rw-p 00000000 00:00 0
7f0000030000-7f0000040000 r-xp 00000000 00:1b 300   /opt/my app/lib x.so (deleted)
7f0000040000-7f0000050000 r-xp 00000000 00:00 0     [vdso]
7f0000050000-7f0000060000 r--p 00000000 fe:00 400   /usr/lib/data.bin
7f0000060000-7f0000070000 r-xp 00000000 103:02 500  /dev/zero
"""


def test_parse_maps_keeps_executable_files_once_each() -> None:
    got = parse_maps(MAPS)
    assert got == [
        MappedFile("/usr/bin/prog", os.makedev(0xFE, 0), 100, 0x401000, 0x500000, False),
        MappedFile(
            "/usr/lib/libssl.so.3", os.makedev(0xFE, 0), 200, 0x7F0000000000, 0x7F0000010000, False
        ),
        MappedFile(
            "/opt/my app/lib x.so", os.makedev(0, 0x1B), 300, 0x7F0000030000, 0x7F0000040000, True
        ),
        MappedFile("/dev/zero", os.makedev(0x103, 2), 500, 0x7F0000060000, 0x7F0000070000, False),
    ]


def test_parse_maps_of_this_process_finds_libssl() -> None:
    import ssl  # noqa: F401  - maps libssl into this process

    need(LIBSSL.exists(), "system libssl.so.3")
    maps = parse_maps(Path("/proc/self/maps").read_bytes())
    mine = [m for m in maps if m.key == key(LIBSSL)]
    assert len(mine) == 1 and mine[0].path == str(LIBSSL)


# -- real processes --------------------------------------------------------------------------


def test_python_with_psycopg_maps_three_openssl_copies() -> None:
    need(LIBSSL.exists(), "system libssl.so.3")
    scanner = TargetScanner()
    with python("import ssl, psycopg2, psycopg, psycopg_binary.pq") as proc:
        targets = scanner.scan_pid(proc.pid)
    paths = sorted(t.path for t in targets)
    assert all(isinstance(t, UprobeTarget) for t in targets)
    assert str(LIBSSL) in paths
    assert any("/psycopg2_binary.libs/libssl-" in p for p in paths), paths
    assert any("/psycopg_binary.libs/libssl-" in p for p in paths), paths
    assert len(targets) == 3
    for t in targets:
        assert isinstance(t, UprobeTarget) and (t.dev, t.ino) == key(t.path)
        assert {"SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"} <= set(t.offsets)


def test_node_process() -> None:
    need(shutil.which("node") is not None, "nodejs (apt)")
    node = os.path.realpath(shutil.which("node") or "")
    with running("node", "-e", "console.log('ready'); setInterval(() => {}, 1000)") as proc:
        targets = TargetScanner().scan_pid(proc.pid)
    mine = [t for t in targets if t.path == node]
    assert len(mine) == 1 and isinstance(mine[0], UprobeTarget)
    assert mine[0].version == "3.x" and mine[0].version_source == "banner"


@pytest.mark.parametrize("stripped", [False, True])
def test_go_server(go_builder: GoBuilder, stripped: bool) -> None:  # noqa: F811
    build = go_builder.build(stripped=stripped)
    server = start_server(build.path)
    try:
        targets = TargetScanner().scan_pid(server.pid)
    finally:
        stop(server.proc)
    go = [t for t in targets if isinstance(t, GoTarget)]
    assert len(go) == 1
    assert go[0].path == str(build.path) and (go[0].dev, go[0].ino) == key(build.path)
    assert go[0].symbols_from == ("pclntab" if stripped else "symtab")
    assert go[0].go_version == build.go_version


def test_one_file_is_inspected_once_for_many_processes() -> None:
    need(LIBSSL.exists(), "system libssl.so.3")
    scanner = TargetScanner()
    with python("import ssl") as a, python("import ssl") as b:
        first = scanner.scan_pid(a.pid)
        inspected = scanner.stats.files_inspected
        second = scanner.scan_pid(b.pid)
        assert scanner.stats.files_inspected == inspected  # everything came from the cache
        assert scanner.stats.cache_hits >= len(parse_maps(Path(f"/proc/{b.pid}/maps").read_bytes()))
        everything = scanner.scan_all()
    lib = key(LIBSSL)
    assert [t for t in first if (t.dev, t.ino) == lib] == [
        t for t in second if (t.dev, t.ino) == lib
    ]
    assert lib in everything and isinstance(everything[lib], UprobeTarget)


def test_a_changed_file_is_inspected_again(gotls: GoBuild, tmp_path: Path) -> None:  # noqa: F811
    binary = tmp_path / "gotls"
    shutil.copy(gotls.path, binary)
    scanner = TargetScanner()
    server = start_server(binary)
    try:
        assert len(scanner.scan_pid(server.pid)) == 1
        before = scanner.stats.files_inspected
        assert len(scanner.scan_pid(server.pid)) == 1
        assert scanner.stats.files_inspected == before
        st = binary.stat()
        os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert len(scanner.scan_pid(server.pid)) == 1
        assert scanner.stats.files_inspected == before + 1
    finally:
        stop(server.proc)


def test_a_deleted_binary_is_read_through_map_files(gotls: GoBuild, tmp_path: Path) -> None:  # noqa: F811
    need(os.geteuid() == 0, "root (map_files needs CAP_SYS_ADMIN)")
    binary = tmp_path / "gotls"
    shutil.copy(gotls.path, binary)
    ident = key(binary)
    server = start_server(binary)
    try:
        binary.unlink()  # as a package upgrade replaces a running program
        targets = TargetScanner().scan_pid(server.pid)
    finally:
        stop(server.proc)
    assert len(targets) == 1
    assert targets[0].path.startswith(f"/proc/{server.pid}/map_files/")
    assert (targets[0].dev, targets[0].ino) == ident


def test_a_chrooted_process_shows_host_paths(
    go_builder: GoBuilder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """maps prints paths relative to the reader's root: a chroot's files read directly."""
    need(os.geteuid() == 0, "root (chroot)")
    static = go_builder.build(cgo=False)
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(static.path, root / "gotls")
    server = start_server("/gotls", "chroot", str(root))
    try:
        targets = TargetScanner().scan_pid(server.pid)
    finally:
        stop(server.proc)
    assert len(targets) == 1 and isinstance(targets[0], GoTarget)
    assert targets[0].path == str(root / "gotls")
    assert (targets[0].dev, targets[0].ino) == key(root / "gotls")


def test_a_mount_only_the_process_sees_is_read_through_its_root(
    go_builder: GoBuilder,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A container stand-in: the binary lives on a tmpfs mounted in the process's own mount
    namespace; from here the same path names another file (as a host library of the same
    name would), which must not be mistaken for it."""
    need(os.geteuid() == 0 and shutil.which("unshare") is not None, "root and unshare")
    static = go_builder.build(cgo=False)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "gotls").write_bytes(b"#!/bin/sh\n")  # the decoy the tmpfs shadows
    # sh -c SCRIPT sh BINARY server ADDR: $1 is the binary to copy, $2 $3 its arguments
    script = f'mount -t tmpfs ctr {mnt} && cp "$1" {mnt}/gotls && exec {mnt}/gotls "$2" "$3"'
    server = start_server(static.path, "unshare", "--mount", "sh", "-c", script, "sh")
    try:
        targets = TargetScanner().scan_pid(server.pid)
        inside = key(f"/proc/{server.pid}/root{mnt}/gotls")
    finally:
        stop(server.proc)
    assert len(targets) == 1 and isinstance(targets[0], GoTarget)
    assert targets[0].path == f"/proc/{server.pid}/root{mnt}/gotls"
    assert (targets[0].dev, targets[0].ino) == inside != key(mnt / "gotls")


@pytest.fixture
def two_overlays(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """Two overlay mounts of one lower layer, as two containers of one image."""
    need(os.geteuid() == 0, "root (mount -t overlay)")
    lower = tmp_path / "lower"
    lower.mkdir()
    mounts = []
    for i in (1, 2):
        for d in ("upper", "work", "merged"):
            (tmp_path / f"{d}{i}").mkdir()
        opts = f"lowerdir={lower},upperdir={tmp_path}/upper{i},workdir={tmp_path}/work{i}"
        run = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(tmp_path / f"merged{i}")],
            capture_output=True,
            text=True,
        )
        need(run.returncode == 0, f"overlayfs mounts: {run.stderr.strip()}")
        mounts.append(tmp_path / f"merged{i}")
    try:
        yield lower, mounts[0], mounts[1]
    finally:
        for m in mounts:
            subprocess.run(["umount", "-l", str(m)], check=False)


def test_two_overlay_views_of_one_file_give_one_target(
    go_builder: GoBuilder,  # noqa: F811
    two_overlays: tuple[Path, Path, Path],
) -> None:
    """Each mount shows its own device in maps, but a uprobe on either lands on the lower
    inode and fires for both: attaching per view would double every event."""
    lower, m1, m2 = two_overlays
    shutil.copy(go_builder.build(cgo=False).path, lower / "gotls")
    s1, s2 = start_server(m1 / "gotls"), start_server(m2 / "gotls")
    scanner = TargetScanner()
    try:
        assert key(m1 / "gotls") != key(m2 / "gotls")  # two views
        t1, t2 = scanner.scan_pid(s1.pid), scanner.scan_pid(s2.pid)
        everything = scanner.scan_all()
    finally:
        stop(s1.proc)
        stop(s2.proc)
    assert len(t1) == len(t2) == 1 and t1[0] is t2[0]
    assert scanner.stats.files_inspected == len(scanner._files)  # the second view: no read
    ours = [t for t in everything.values() if isinstance(t, GoTarget) and "merged" in t.path]
    assert ours == [t1[0]]


# -- robustness ------------------------------------------------------------------------------


def test_a_missing_pid_is_counted_not_raised() -> None:
    scanner = TargetScanner()
    pid = 4_000_000  # above pid_max's ceiling
    assert scanner.scan_pid(pid) == []
    assert scanner.stats.pids_vanished == 1


def test_a_fake_proc_with_vanishing_files_is_counted(tmp_path: Path) -> None:
    """maps naming files no path reaches (no root link, no map_files), a maps that vanished."""
    proc = tmp_path / "proc"
    (proc / "10").mkdir(parents=True)
    (proc / "10" / "maps").write_bytes(MAPS)
    (proc / "11").mkdir()  # exited: no maps
    (proc / "12").mkdir()
    (proc / "12" / "maps").write_bytes(MAPS)
    (proc / "12" / "root").symlink_to(tmp_path / "gone")
    scanner = TargetScanner(proc=str(proc))
    assert scanner.scan_all() == {}
    assert (scanner.stats.pids_scanned, scanner.stats.pids_vanished) == (2, 1)
    assert scanner.stats.files_vanished == 2 * len(parse_maps(MAPS))
    assert scanner.stats.files_inspected == 0


def test_scan_all_survives_processes_exiting_under_it() -> None:
    scanner = TargetScanner()
    churn = [
        subprocess.Popen([sys.executable, "-c", "import ssl, time; time.sleep(0.05)"])
        for _ in range(20)
    ]
    deadline = time.monotonic() + 3
    rounds = 0
    while any(p.poll() is None for p in churn) and time.monotonic() < deadline:
        scanner.scan_all()
        rounds += 1
    for p in churn:
        p.wait()
    assert rounds >= 1 and scanner.stats.pids_scanned > 0


def test_a_refused_library_is_remembered_with_its_reason(tmp_path: Path) -> None:
    need(shutil.which("gcc") is not None, "gcc")
    src = tmp_path / "odd.c"
    src.write_text(
        "int SSL_read(void *s, void *b, int n) { return n; }\n"
        "int SSL_write(void *s, const void *b, int n) { return n; }\n"
    )
    lib = tmp_path / "libodd.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    scanner = TargetScanner()
    with python(f"import ctypes; ctypes.CDLL({str(lib)!r})") as proc:
        targets = scanner.scan_pid(proc.pid)
    assert all(t.path != str(lib) for t in targets)
    assert "names no OpenSSL version" in scanner.refused[key(lib)]
    assert scanner.stats.errors >= 1


def test_module_level_functions_share_one_scanner(gotls: GoBuild) -> None:  # noqa: F811
    server = start_server(gotls.path)
    try:
        targets = scan_pid(server.pid)
        everything = scan_all()
    finally:
        stop(server.proc)
    assert len(targets) == 1
    assert everything[(targets[0].dev, targets[0].ino)] is targets[0]
