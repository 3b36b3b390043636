"""Ring positions are stored with one machine write: a reader never sees a half-written one.

The kernel reads the consumer position while user space writes it. A position seen
half-written (struct.pack_into zeroes its target first) made a nearly empty ring look full.
Here a child process spins on the shared position while the parent stores to it.
"""

from __future__ import annotations

import ctypes
import mmap
import os

from alaz.bpf.ringbuf import Position

BASE = 1 << 40  # every stored value is at least this, and never zero
STORES = 300_000


def test_a_concurrent_reader_never_sees_a_partial_position() -> None:
    shared = mmap.mmap(-1, mmap.PAGESIZE)
    position = Position(shared)
    position.store(BASE)
    base_addr = ctypes.addressof(ctypes.c_char.from_buffer(shared))
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # the reader: counts loads below BASE until the parent says stop
        value = ctypes.c_uint64.from_address(base_addr)
        stop = ctypes.c_uint64.from_address(base_addr + 8)
        loads = bad = 0
        while not stop.value:
            loads += 1
            bad += value.value < BASE
        os.write(write_fd, f"{loads} {bad}".encode())
        os._exit(0)
    stop = Position(shared, 8)
    for i in range(STORES):
        position.store(BASE + 8 * i)
    stop.store(1)
    os.waitpid(child, 0)
    loads, bad = map(int, os.read(read_fd, 64).split())
    os.close(read_fd)
    os.close(write_fd)
    assert position.load() == BASE + 8 * (STORES - 1)
    assert loads > 1000  # the reader ran while the stores went on
    assert bad == 0
