"""The `jsonl` sink: one JSON object per `Exchange`, one per line, to stdout or a file.

Keys are the `Exchange` field names (see `alaz.model`); every exchange is written, client side
and server side alike (the `role` key tells them apart), since this output is the raw view. Lines
go through the shared bounded batcher: written when `BATCH_SIZE` lines are waiting or the oldest
is a second old, and flushed after every write, so nothing waits more than about a second. The
write runs in a worker thread so a slow reader (a pipe) never stalls the event loop; if it cannot
keep up, the oldest lines are dropped and counted like everywhere else.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

import msgspec

from alaz.config import ExportConfig
from alaz.errors import ExportError
from alaz.export.batcher import Batcher
from alaz.log import get_logger
from alaz.model import Exchange

__all__ = ["JsonlSink"]


class JsonlSink:
    """Writes exchanges as JSON lines; `output` is a path (appended to), "-" for stdout, or a
    binary file object (not closed by the sink)."""

    name = "jsonl"

    def __init__(
        self,
        output: str | BinaryIO = "-",
        *,
        export: ExportConfig | None = None,
        close_deadline_s: float = 2.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        export = export or ExportConfig()
        self._owns_file = isinstance(output, str) and output != "-"
        if isinstance(output, str):
            self._file = sys.stdout.buffer if output == "-" else _open(output)
        else:
            self._file = output
        self.batcher = Batcher(
            "jsonl",
            max_batch_rows=export.batch_size,
            max_rows=export.queue_rows,
            max_bytes=export.queue_bytes,
            max_age_s=export.flush_interval_ms / 1000,
            clock=clock,
        )
        self._encode = msgspec.json.Encoder().encode
        self._close_deadline_s = close_deadline_s
        self._log = get_logger("export.jsonl")
        self._done = asyncio.Event()
        self._running = False
        self._closed = False
        self.written_rows = 0
        self.failed_rows = 0

    def submit(self, exchanges: Sequence[Exchange]) -> None:
        """Queue one line per exchange; never blocks."""
        encode = self._encode
        self.batcher.put_many([encode(ex) + b"\n" for ex in exchanges])

    async def run(self) -> None:
        """Write batches until `aclose()`; then write what is left and return."""
        if self.batcher.closed:
            return  # aclose() came first and wrote the rest itself
        self._running = True
        try:
            await self._drain()
        finally:
            self._done.set()

    async def aclose(self) -> None:
        """Flush the queue (bounded by the close deadline) and close the file if we opened it."""
        if self._closed:
            return
        self._closed = True
        self.batcher.close()
        waiter = self._done.wait() if self._running else self._drain()
        try:
            await asyncio.wait_for(waiter, self._close_deadline_s)
        except TimeoutError:
            self._log.warning("close: deadline reached, lines lost", rows=self.batcher.rows)
        if self._owns_file:
            self._file.close()

    async def _drain(self) -> None:
        while (batch := await self.batcher.get()) is not None:
            data = b"".join(batch.rows)
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as exc:
                self.failed_rows += len(batch.rows)
                self._log.error("write lines failed", error=str(exc))
                if isinstance(exc, BrokenPipeError):
                    self.batcher.close()
            else:
                self.written_rows += len(batch.rows)

    def stats(self) -> dict[str, int]:
        return {
            "jsonl_written_rows": self.written_rows,
            "jsonl_failed_rows": self.failed_rows,
            "jsonl_dropped_rows": self.batcher.dropped_rows,
            "jsonl_queued_rows": self.batcher.rows,
        }

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "ab")  # owned by the sink, closed in aclose()
    except OSError as exc:
        raise ExportError(f"open {path}: {exc.strerror}") from exc
