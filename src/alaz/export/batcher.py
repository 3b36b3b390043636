"""The bounded batcher every sink shares.

Rows arrive already encoded (one `bytes` each: a JSON array element or a JSON line), so the
memory bound is exact and a batch body is one `b",".join`. Producers never wait: `put` and
`put_many` are plain method calls. The consumer awaits `get()`, which returns a `Batch` when
`max_batch_rows` rows are waiting or the oldest waiting row is `max_age_s` old.

When the consumer falls behind, the queue is bounded in rows and in bytes, and the **oldest** rows
are dropped to make room for new ones; drops are counted (`dropped_rows`, `dropped_bytes`) and
logged at most once per `drop_log_interval_s`.

A batch the consumer could not deliver can be handed back with `requeue()`. It goes to the front
(it holds the oldest rows), keeps its identity (`Batch.key`, the idempotency key), still counts
against the bounds, and is the first thing dropped when room is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from alaz.log import get_logger

__all__ = ["ROW_OVERHEAD", "Batch", "Batcher"]

# CPython's fixed cost of a bytes object (sys.getsizeof(b"") == 33); counted per row so the byte
# bound is the real memory held, not only the payload.
ROW_OVERHEAD = 33


@dataclass(slots=True)
class Batch:
    """Rows taken together; `key` is set by the sink on first send and kept on requeue."""

    rows: list[bytes]
    nbytes: int
    key: str | None = None
    attempts: int = 0


class Batcher:
    """A bounded FIFO of encoded rows that hands them out in batches (see the module doc)."""

    def __init__(
        self,
        name: str,
        *,
        max_batch_rows: int,
        max_rows: int,
        max_bytes: int,
        max_age_s: float = 1.0,
        drop_log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch_rows < 1 or max_rows < 1 or max_bytes < 1:
            raise ValueError("batcher bounds must be positive")
        self.name = name
        self.max_batch_rows = max_batch_rows
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._drop_log_interval_s = drop_log_interval_s
        self._clock = clock
        self._rows: deque[bytes] = deque()
        self._held: deque[Batch] = deque()
        self._oldest: float | None = None  # when the oldest row in `_rows` arrived (approx.)
        self._wakeup = asyncio.Event()
        self._closed = False
        self._log = get_logger("export.batcher", stream=name)
        self._last_drop_log = float("-inf")
        self._dropped_unlogged = 0
        # Current size (rows waiting, incl. held batches) and counters for metrics.
        self.rows = 0
        self.nbytes = 0
        self.peak_rows = 0
        self.peak_bytes = 0
        self.accepted_rows = 0
        self.emitted_rows = 0
        self.dropped_rows = 0
        self.dropped_bytes = 0

    def __len__(self) -> int:
        return self.rows

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, row: bytes) -> None:
        """Add one encoded row; never blocks."""
        self.put_many((row,))

    def put_many(self, rows: Iterable[bytes]) -> None:
        """Add encoded rows in order; never blocks. Dropped silently (counted) once closed."""
        items = rows if isinstance(rows, list | tuple) else list(rows)
        if not items:
            return
        if self._closed:
            self._count_drop(len(items), sum(map(len, items)) + ROW_OVERHEAD * len(items))
            return
        was_empty = not self._rows
        self._rows.extend(items)
        self.rows += len(items)
        self.nbytes += sum(map(len, items)) + ROW_OVERHEAD * len(items)
        self.accepted_rows += len(items)
        if was_empty:
            self._oldest = self._clock()
        if self.rows > self.max_rows or self.nbytes > self.max_bytes:
            self._drop_oldest()
        self._track_peak()
        if was_empty or len(self._rows) >= self.max_batch_rows:
            self._wakeup.set()

    def requeue(self, batch: Batch) -> None:
        """Give back a batch that could not be delivered; it is the next one `get()` returns."""
        if self._closed:
            self._count_drop(len(batch.rows), batch.nbytes)
            return
        self._held.appendleft(batch)
        self.rows += len(batch.rows)
        self.nbytes += batch.nbytes
        self.emitted_rows -= len(batch.rows)
        if self.rows > self.max_rows or self.nbytes > self.max_bytes:
            self._drop_oldest()
        self._track_peak()
        self._wakeup.set()

    def clear(self) -> int:
        """Discard everything waiting (not counted as drops); returns the number of rows."""
        discarded = self.rows
        self._rows.clear()
        self._held.clear()
        self.rows = self.nbytes = 0
        self._oldest = None
        return discarded

    def close(self) -> None:
        """No more rows: `get()` hands out what is left at once, then returns None."""
        self._closed = True
        self._wakeup.set()
        self.log_drops(force=True)

    def take_ready(self) -> Batch | None:
        """The next batch if one is due now (full, old enough, held or closing), else None."""
        if self._held:
            batch = self._held.popleft()
            self.rows -= len(batch.rows)
            self.nbytes -= batch.nbytes
            self.emitted_rows += len(batch.rows)
            return batch
        if not self._rows:
            return None
        due = len(self._rows) >= self.max_batch_rows or self._closed
        if not due and self._oldest is not None:
            due = self._clock() - self._oldest >= self.max_age_s
        return self._take() if due else None

    async def get(self) -> Batch | None:
        """Wait for the next batch; None once closed and empty."""
        while True:
            batch = self.take_ready()
            if batch is not None:
                return batch
            if self._closed:
                return None
            self._wakeup.clear()
            timeout = None
            if self._rows and self._oldest is not None:
                timeout = max(0.0, self.max_age_s - (self._clock() - self._oldest))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def log_drops(self, *, force: bool = False) -> None:
        """Log the drops not yet logged, at most once per interval unless `force`."""
        if not self._dropped_unlogged:
            return
        now = self._clock()
        if not force and now - self._last_drop_log < self._drop_log_interval_s:
            return
        self._log.warning(
            "drop oldest rows: export is slower than traffic",
            dropped=self._dropped_unlogged,
            dropped_total=self.dropped_rows,
            queue_rows=self.rows,
            queue_bytes=self.nbytes,
        )
        self._dropped_unlogged = 0
        self._last_drop_log = now

    def _take(self) -> Batch:
        n = min(self.max_batch_rows, len(self._rows))
        popleft = self._rows.popleft
        rows = [popleft() for _ in range(n)]
        nbytes = sum(map(len, rows)) + ROW_OVERHEAD * n
        self.rows -= n
        self.nbytes -= nbytes
        self.emitted_rows += n
        if not self._rows:
            self._oldest = None
        # Rows left behind are older than "now"; keeping the old stamp flushes them sooner.
        return Batch(rows, nbytes)

    def _drop_oldest(self) -> None:
        rows = nbytes = 0
        while self._held and (self.rows > self.max_rows or self.nbytes > self.max_bytes):
            batch = self._held.popleft()
            self.rows -= len(batch.rows)
            self.nbytes -= batch.nbytes
            rows += len(batch.rows)
            nbytes += batch.nbytes
        popleft = self._rows.popleft
        while self._rows and (self.rows > self.max_rows or self.nbytes > self.max_bytes):
            size = len(popleft()) + ROW_OVERHEAD
            self.rows -= 1
            self.nbytes -= size
            rows += 1
            nbytes += size
        if not self._rows:
            self._oldest = None
        self._count_drop(rows, nbytes)

    def _count_drop(self, rows: int, nbytes: int) -> None:
        self.dropped_rows += rows
        self.dropped_bytes += nbytes
        self._dropped_unlogged += rows
        self.log_drops()

    def _track_peak(self) -> None:
        if self.rows > self.peak_rows:
            self.peak_rows = self.rows
        if self.nbytes > self.peak_bytes:
            self.peak_bytes = self.nbytes
