"""The shared bounded batcher: batch size, age, row and byte bounds, drop-oldest, requeue."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from alaz.export.batcher import ROW_OVERHEAD, Batch, Batcher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rows(start: int, n: int) -> list[bytes]:
    return [b"%06d" % i for i in range(start, start + n)]  # 6 bytes each


def make(clock: Clock | None = None, **kw: int | float) -> Batcher:
    args: dict[str, int | float] = dict(max_batch_rows=4, max_rows=10, max_bytes=1 << 20)
    args.update(kw)
    return Batcher("t", clock=clock or Clock(), **args)  # type: ignore[arg-type]


def test_full_batch_is_ready_at_once_in_order() -> None:
    b = make()
    b.put_many(rows(0, 6))
    batch = b.take_ready()
    assert batch is not None and batch.rows == rows(0, 4)
    assert batch.nbytes == 4 * (6 + ROW_OVERHEAD)
    assert b.take_ready() is None  # 2 rows, not old yet
    assert (b.rows, b.nbytes) == (2, 2 * (6 + ROW_OVERHEAD))


def test_partial_batch_waits_for_max_age() -> None:
    clock = Clock()
    b = make(clock, max_age_s=1.0)
    b.put(b"a")
    clock.now += 0.99
    assert b.take_ready() is None
    clock.now += 0.01
    batch = b.take_ready()
    assert batch is not None and batch.rows == [b"a"]


async def test_get_waits_for_age_then_returns() -> None:
    b = Batcher("t", max_batch_rows=100, max_rows=1000, max_bytes=1 << 20, max_age_s=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    b.put(b"x")
    batch = await asyncio.wait_for(b.get(), 2)
    assert batch is not None and batch.rows == [b"x"]
    assert loop.time() - start >= 0.045


async def test_get_wakes_when_a_batch_fills() -> None:
    b = Batcher("t", max_batch_rows=3, max_rows=1000, max_bytes=1 << 20, max_age_s=60)
    waiter = asyncio.create_task(b.get())
    await asyncio.sleep(0.01)
    b.put_many(rows(0, 2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    b.put(b"last")
    batch = await asyncio.wait_for(waiter, 1)
    assert batch is not None and len(batch.rows) == 3


def test_row_bound_drops_oldest_and_counts() -> None:
    b = make(max_rows=10)
    b.put_many(rows(0, 8))
    b.put_many(rows(8, 5))
    assert b.rows == 10 and b.dropped_rows == 3
    assert b.dropped_bytes == 3 * (6 + ROW_OVERHEAD)
    assert b.take_ready().rows == rows(3, 4)  # type: ignore[union-attr]
    assert b.peak_rows == 10
    assert b.accepted_rows == 13


def test_byte_bound_drops_oldest() -> None:
    per_row = 6 + ROW_OVERHEAD
    b = make(max_rows=1000, max_bytes=5 * per_row)
    b.put_many(rows(0, 7))
    assert (b.rows, b.dropped_rows) == (5, 2)
    assert b.nbytes <= 5 * per_row and b.peak_bytes <= 5 * per_row
    assert b.take_ready().rows == rows(2, 4)  # type: ignore[union-attr]


def test_put_many_larger_than_the_bound_keeps_the_newest() -> None:
    b = make(max_rows=10, max_batch_rows=100)
    b.put_many(rows(0, 1000))
    assert b.rows == 10 and b.dropped_rows == 990
    b.close()
    assert b.take_ready().rows == rows(990, 10)  # type: ignore[union-attr]


def test_requeued_batch_comes_first_and_keeps_its_key() -> None:
    b = make()
    b.put_many(rows(0, 8))
    first = b.take_ready()
    assert first is not None
    first.key = "k1"
    b.requeue(first)
    again = b.take_ready()
    assert again is first and again.key == "k1" and again.rows == rows(0, 4)
    assert b.take_ready().rows == rows(4, 4)  # type: ignore[union-attr]


def test_requeued_batch_is_dropped_first_when_full() -> None:
    b = make(max_rows=10)
    b.put_many(rows(0, 4))
    old = b.take_ready()
    assert old is not None
    b.put_many(rows(4, 8))
    b.requeue(old)  # 12 rows > 10: the requeued (oldest) batch goes
    assert b.dropped_rows == 4 and b.rows == 8
    assert b.take_ready().rows == rows(4, 4)  # type: ignore[union-attr]


async def test_close_hands_out_the_rest_then_none() -> None:
    b = make(max_batch_rows=100)
    b.put_many(rows(0, 3))
    b.close()
    batch = await b.get()
    assert batch is not None and batch.rows == rows(0, 3)
    assert await b.get() is None
    b.put(b"late")
    assert b.dropped_rows == 1 and b.rows == 0
    b.requeue(Batch([b"x"], 1 + ROW_OVERHEAD))
    assert b.dropped_rows == 2


def test_clear_discards_everything_without_counting_drops() -> None:
    b = make()
    b.put_many(rows(0, 6))
    b.requeue(Batch([b"x"], 1 + ROW_OVERHEAD))
    assert b.clear() == 7
    assert (b.rows, b.nbytes, b.dropped_rows) == (0, 0, 0)
    assert b.take_ready() is None


def test_drops_are_logged_at_most_once_per_interval() -> None:
    clock = Clock()
    b = make(clock, max_rows=2, drop_log_interval_s=10.0)
    with capture_logs() as logs:
        for _ in range(50):
            b.put_many(rows(0, 3))
            clock.now += 0.1  # 5 s of drops
        clock.now += 5.01
        b.put_many(rows(0, 3))  # 10 s after the first log: logged again
    drops = [e for e in logs if "drop oldest" in e["event"]]
    assert len(drops) == 2
    assert drops[0]["dropped"] == 1
    assert sum(e["dropped"] for e in drops) == b.dropped_rows == 1 + 50 * 3


def test_unlogged_drops_are_logged_on_close() -> None:
    clock = Clock()
    b = make(clock, max_rows=2)
    with capture_logs() as logs:
        b.put_many(rows(0, 3))
        b.put_many(rows(0, 3))
        b.close()
    assert [e["dropped"] for e in logs if "drop oldest" in e["event"]] == [1, 3]


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Batcher("t", max_batch_rows=0, max_rows=1, max_bytes=1)
