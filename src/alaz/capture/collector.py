"""The capture loop's hot path: drain the ring, decode records in bulk, feed the tracker.

One `poll()` takes every committed record with one copy (RingReader.read) and hands the batch
to the tracker, whose loop walks the records with precompiled struct layouts; per record it
builds one tuple and, for data records, one bytes slice of the payload. A record whose handling
raises (a bug) is skipped and logged, and the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alaz.bpf.ringbuf import RingReader
from alaz.conntrack import ConnTracker
from alaz.log import get_logger
from alaz.model import Exchange

__all__ = ["Collector", "CollectorStats"]


@dataclass
class CollectorStats:
    records: int = 0
    data_records: int = 0
    conn_records: int = 0
    proc_records: int = 0
    unknown_records: int = 0
    decode_errors: int = 0  # records whose handling raised (a bug): skipped and logged


class Collector:
    """Moves records from the ring to the tracker, and exchanges to `on_exchanges`."""

    def __init__(
        self,
        ring: RingReader,
        tracker: ConnTracker,
        on_exchanges: Callable[[list[Exchange]], None],
        max_bytes_per_poll: int = 8 << 20,
        on_proc: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self.ring = ring
        self.tracker = tracker
        self.on_exchanges = on_exchanges
        self.max_bytes = max_bytes_per_poll
        self.on_proc = on_proc  # (event, pid, cgroup_id): exec/exit/fork
        self.stats = CollectorStats()
        self._at = 0  # index of the record being decoded, for error recovery
        self._log = get_logger("collector")

    def poll(self) -> int:
        """Drains what the ring holds now; returns the number of records handled."""
        total = 0
        while True:
            blob, offsets = self.ring.read(self.max_bytes)
            if not offsets:
                return total
            total += len(offsets)
            out: list[Exchange] = []
            start = 0
            while start < len(offsets):
                try:
                    self._decode(blob, offsets[start:] if start else offsets, out)
                    break
                except Exception:  # a bug must not stop the capture: skip the record, go on
                    failed = start + self._at
                    self.stats.decode_errors += 1
                    self._log.exception("collector.record_failed", record=failed)
                    start = failed + 1
            if out:
                self.on_exchanges(out)

    def _decode(self, blob: bytes, offsets: list[int], out: list[Exchange]) -> None:
        try:
            n_conn, n_proc, n_unknown = self.tracker.feed_records(blob, offsets, out, self.on_proc)
        except Exception:
            self._at = self.tracker.failed_at  # where it failed: poll() resumes after it
            raise
        s = self.stats
        s.records += len(offsets)
        s.data_records += len(offsets) - n_conn - n_proc - n_unknown
        s.conn_records += n_conn
        s.proc_records += n_proc
        s.unknown_records += n_unknown
