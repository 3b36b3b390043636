"""Find the TLS uprobe targets of running processes, once per file.

A uprobe belongs to an inode, not to a process: probing `libssl.so.3` once covers every
process that maps it, in every container. So the scanner reads `/proc/<pid>/maps`, keeps the
executable file mappings, and inspects each distinct file (device, inode) once:

* a file exporting `SSL_read` and `SSL_write` -> `UprobeTarget` (system libssl, psycopg's
  bundled `libssl-<hash>.so.3`, node's statically linked OpenSSL ...);
* a Go binary linking crypto/tls -> `GoTarget`;
* anything else -> nothing, remembered so it is not read again.

Identity. `/proc/<pid>/maps` names each mapping by (device, inode); for a plain filesystem
that is the file. An overlayfs mount (every container) shows its own device number, yet a
uprobe lands on the real inode beneath (the kernel resolves the path with d_real_inode):
probes on /a/m1/lib and /a/m2/lib, two overlay mounts of one image layer, both fire when
either is run (checked with tracefs on this kernel). Attaching once per (dev, ino) view would
double every event. Overlay keeps the inode number, size and mtime of the real file, so views
with equal (st_ino, st_size, st_mtime_ns) are taken as one file: the scanner returns the SAME
target object for all of them, and attaching once per (target.dev, target.ino) is right. Two
distinct files agreeing on all three (on two filesystems, to the nanosecond) are not a
practical risk; missing a merge only costs a duplicate probe.

The file is read through a path valid in the agent's mount namespace: the path as maps
prints it when it names the mapped inode from here (maps prints paths relative to the
reader's root), `/proc/<pid>/root/<path>` for a mount only the process sees (a container's),
and `/proc/<pid>/map_files/<range>` for a file deleted since it was mapped (a package
upgrade). That path is what `target.path` holds: attach soon after the scan, while the
process lives.

Results are cached per (device, inode) and checked against the file's mtime and size, so a
re-scan costs the maps read plus one `stat()` per mapped file. Processes that exit mid-scan,
unreadable files and bad ELF files never raise out of `scan_pid`/`scan_all`; they are counted
in `stats` and, for files, their reason is kept in `refused`.

Not thread-safe: call from one thread (or serialise the calls).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from alaz.log import get_logger
from alaz.tls.elf import ElfImage, TlsTargetError, UnsupportedTargetError
from alaz.tls.golang import GoTarget, inspect_go
from alaz.tls.openssl import UprobeTarget, inspect_openssl

__all__ = [
    "FileKey",
    "MappedFile",
    "ScanStats",
    "Target",
    "TargetScanner",
    "inspect_file",
    "parse_maps",
    "scan_all",
    "scan_pid",
]

Target = UprobeTarget | GoTarget
FileKey = tuple[int, int]  # (st_dev, st_ino) as the kernel numbers them

_log = get_logger("tls")
_DELETED = " (deleted)"


@dataclass(frozen=True, slots=True)
class MappedFile:
    """An executable file mapping of a process, from one line of /proc/<pid>/maps."""

    path: str  # as the process sees it, without " (deleted)"
    dev: int
    ino: int
    start: int
    end: int
    deleted: bool

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)


def parse_maps(data: bytes) -> list[MappedFile]:
    """Executable, file-backed mappings, the first one of each (dev, ino), in maps order."""
    out: list[MappedFile] = []
    seen: set[FileKey] = set()
    for line in data.splitlines():
        # 7f02a71b0000-7f02a720d000 r-xp 0001f000 fe:00 339900     /usr/lib/.../libssl.so.3
        parts = line.split(None, 5)
        if len(parts) < 6 or b"x" not in parts[1] or not parts[5].startswith(b"/"):
            continue
        major, _, minor = parts[3].partition(b":")
        ino = int(parts[4])
        dev = os.makedev(int(major, 16), int(minor, 16))
        if ino == 0 or (dev, ino) in seen:
            continue
        seen.add((dev, ino))
        path = os.fsdecode(parts[5])
        deleted = path.endswith(_DELETED)
        start, _, end = parts[0].partition(b"-")
        out.append(
            MappedFile(
                path=path.removesuffix(_DELETED) if deleted else path,
                dev=dev,
                ino=ino,
                start=int(start, 16),
                end=int(end, 16),
                deleted=deleted,
            )
        )
    return out


def inspect_file(path: str, dev: int = 0, ino: int = 0) -> Target | None:
    """The TLS target in the ELF file at `path`, or None when it holds no TLS we can probe.

    Raises ElfFormatError for a file that is not a readable ELF, UnsupportedTargetError for
    a recognised but unsupported one, OSError when it cannot be opened.
    """
    with ElfImage(path) as img:
        go = inspect_go(img, path, dev, ino)
        if go is not None:
            return go
        return inspect_openssl(img, path, dev, ino)


@dataclass(slots=True)
class ScanStats:
    """Counters since the scanner was made."""

    pids_scanned: int = 0
    pids_vanished: int = 0  # exited between listing and reading
    files_vanished: int = 0  # a mapped file no path reaches any more (its process exited)
    pids_unreadable: int = 0  # EACCES: not ours to read (a sandbox's init, for example)
    files_inspected: int = 0  # cold ELF reads
    cache_hits: int = 0
    errors: int = 0  # files that could not be read or were refused (see `refused`)


@dataclass(slots=True)
class _Entry:
    mtime_ns: int
    size: int
    target: Target | None
    error: str | None = None


@dataclass(slots=True)
class TargetScanner:
    """Scans processes for TLS targets; keeps a per-file cache and counters between scans."""

    proc: str = "/proc"
    stats: ScanStats = field(default_factory=ScanStats)
    _cache: dict[FileKey, _Entry] = field(default_factory=dict)  # per (dev, ino) view
    _files: dict[tuple[int, int, int], _Entry] = field(default_factory=dict)  # per real file

    @property
    def refused(self) -> dict[FileKey, str]:
        """Files that looked relevant but could not be used, with the reason."""
        return {k: e.error for k, e in self._cache.items() if e.error is not None}

    def scan_pid(self, pid: int) -> list[Target]:
        """The targets mapped by `pid` now; [] when it has none or is gone."""
        try:
            with open(f"{self.proc}/{pid}/maps", "rb") as f:
                data = f.read()
        except PermissionError:
            self.stats.pids_unreadable += 1
            return []
        except OSError:  # ENOENT, ESRCH: it exited
            self.stats.pids_vanished += 1
            return []
        self.stats.pids_scanned += 1
        found = (self._target(pid, m) for m in parse_maps(data))
        return [t for t in found if t is not None]

    def scan_all(self) -> dict[FileKey, Target]:
        """Every target mapped by any process, keyed by (dev, ino)."""
        out: dict[FileKey, Target] = {}
        for pid in self._pids():
            for target in self.scan_pid(pid):
                out.setdefault((target.dev, target.ino), target)
        return out

    def _pids(self) -> Iterator[int]:
        with os.scandir(self.proc) as it:
            for entry in it:
                if entry.name.isdigit():
                    yield int(entry.name)

    def _target(self, pid: int, m: MappedFile) -> Target | None:
        try:
            path, st = self._locate(pid, m)
        except OSError:
            self.stats.files_vanished += 1
            return None
        entry = self._cache.get(m.key)
        if entry is not None and (entry.mtime_ns, entry.size) == (st.st_mtime_ns, st.st_size):
            self.stats.cache_hits += 1
            return entry.target
        file_id = (st.st_ino, st.st_size, st.st_mtime_ns)
        entry = self._files.get(file_id)
        if entry is None:
            try:
                entry = self._inspect(path, m, st)
            except OSError as exc:  # not cached: the next scan tries again
                self.stats.errors += 1
                _log.debug("tls target unreadable", path=m.path, pid=pid, error=exc.strerror)
                return None
            self._files[file_id] = entry
        else:
            self.stats.cache_hits += 1  # another view (overlay mount) of a known file
        self._cache[m.key] = entry
        return entry.target

    def _locate(self, pid: int, m: MappedFile) -> tuple[str, os.stat_result]:
        """A path to the mapped file openable from here, and its stat.

        maps prints paths relative to the READER's root, so a chrooted process shows host
        paths; only a mount we cannot see (another mount namespace: a container) shows the
        path as inside, which `/proc/<pid>/root` resolves. Each candidate must name the
        mapped inode; a deleted or shadowed file is read through map_files.
        """
        if not m.deleted:
            for path in (m.path, f"{self.proc}/{pid}/root{m.path}"):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == m.key:
                    return path, st
        path = f"{self.proc}/{pid}/map_files/{m.start:x}-{m.end:x}"
        return path, os.stat(path)

    def _inspect(self, path: str, m: MappedFile, st: os.stat_result) -> _Entry:
        self.stats.files_inspected += 1
        try:
            target = inspect_file(path, m.dev, m.ino)
        except TlsTargetError as exc:
            self.stats.errors += 1
            # an unsupported TLS library is worth a line; a file that is no ELF (memfd JIT
            # areas, data files) is not
            log = _log.info if isinstance(exc, UnsupportedTargetError) else _log.debug
            log("tls target refused", path=m.path, dev=m.dev, ino=m.ino, reason=str(exc))
            return _Entry(st.st_mtime_ns, st.st_size, None, str(exc))
        if target is not None:
            _log.debug("tls target found", path=m.path, kind=type(target).__name__)
        return _Entry(st.st_mtime_ns, st.st_size, target)


_default: TargetScanner | None = None


def _scanner() -> TargetScanner:
    global _default
    if _default is None:
        _default = TargetScanner()
    return _default


def scan_pid(pid: int) -> list[Target]:
    """`TargetScanner.scan_pid` on a process-wide scanner (its cache is shared)."""
    return _scanner().scan_pid(pid)


def scan_all() -> dict[FileKey, Target]:
    """`TargetScanner.scan_all` on a process-wide scanner (its cache is shared)."""
    return _scanner().scan_all()
