"""The spill ring: what the main ring refuses is kept, and decoded in order with the rest.

The main ring refuses a record when it is full, or (6.15+) when its lock gives up under load
with room to spare. The second cannot be caused at will; the first can: a 64 KiB main ring that
nobody reads during a burst of ~110 KB of records. Both take the same path in the kernel
(ring_output/ring_reserve in ebpf/include/common.bpf.h).
"""

from __future__ import annotations

import subprocess
import sys

from alaz.capture.collector import Collector
from alaz.capture.probes import Probes
from alaz.clock import MonotonicClock
from alaz.conntrack import ConnTracker
from alaz.model import Exchange

REQUESTS = 100
CLIENT = """
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    c.request("GET", f"/spill/{i}")
    assert c.getresponse().read()
"""


def test_records_the_full_main_ring_refused_are_spilled_and_merged(nginx: int) -> None:
    probes = Probes(ring_bytes=64 << 10)
    try:
        probes.load()
        probes.attach()
        # nothing reads the rings while the client runs
        subprocess.run([sys.executable, "-c", CLIENT, str(nginx), str(REQUESTS)], check=True)
        counters = probes.counters()
        assert counters["ringbuf_spilled"] > 0  # the main ring was full
        assert counters["ringbuf_drop_data"] == counters["ringbuf_drop_control"] == 0
        got: list[Exchange] = []
        tracker = ConnTracker(MonotonicClock())
        assert probes.ring is not None
        collector = Collector(probes.ring, tracker, got.extend, spill=probes.spill)
        collector.poll()
    finally:
        probes.close()
    assert collector.stats.spilled_records > 0
    assert tracker.stats.seq_gaps == 0
    for role in ("client", "server"):
        paths = [e.path for e in got if e.role == role and e.server_port == nginx]
        assert paths == [f"/spill/{i}" for i in range(REQUESTS)], role
