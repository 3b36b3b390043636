"""Kernel timestamps (CLOCK_MONOTONIC, what bpf_ktime_get_ns returns) to wall clock.

The offset between CLOCK_REALTIME and CLOCK_MONOTONIC is measured directly (the read with the
tightest bracketing of three wins) and refreshed periodically, so NTP steps are picked up;
unlike the Go agent, it does not depend on the latency of the first event it happens to see.
"""

from __future__ import annotations

import time

__all__ = ["MonotonicClock"]


class MonotonicClock:
    """Converts monotonic ns to realtime ms."""

    def __init__(self) -> None:
        self.offset_ns = 0
        self.refresh()

    def refresh(self) -> None:
        best: tuple[int, int] | None = None
        for _ in range(3):
            m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            r = time.clock_gettime_ns(time.CLOCK_REALTIME)
            m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            width = m1 - m0
            if best is None or width < best[0]:
                best = (width, r - (m0 + m1) // 2)
        assert best is not None
        self.offset_ns = best[1]

    def wall_ms(self, mono_ns: int) -> int:
        return (mono_ns + self.offset_ns) // 1_000_000
