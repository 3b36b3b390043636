"""The ring buffer's consumer side against the kernel's producer: a small ring that wraps every
~200 records, read in a tight loop while real traffic flows, delivers every record and the
kernel refuses none. (That positions are stored in one write, which the kernel once saw
half-done, is shown in tests/unit/test_ringbuf_position.py: a race this test cannot provoke
reliably.)
"""

from __future__ import annotations

import subprocess
import sys
import time

from alaz.capture.probes import Probes

CLIENT = """
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    c.request("GET", f"/ring/{i}")
    assert c.getresponse().read()
"""


def test_a_busy_consumer_never_makes_the_ring_refuse_records(nginx: int) -> None:
    probes = Probes(ring_bytes=64 << 10)  # wraps every ~200 records
    records = 0
    try:
        probes.load()
        probes.attach()
        assert probes.ring is not None
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(nginx), "3000"])
        deadline = time.monotonic() + 60
        while client.poll() is None and time.monotonic() < deadline:
            records += len(probes.ring.read()[1])  # a consumer-position store per read
        client.wait(5)
        records += len(probes.ring.read()[1])
        counters = probes.counters()
    finally:
        probes.close()
    assert client.returncode == 0
    assert counters["data_records"] >= 4 * 3000  # nginx and the client, both directions
    assert records >= counters["data_records"]
    lost = {k: v for k, v in counters.items() if k.startswith("ringbuf_")}
    assert lost == {
        "ringbuf_drop_data": 0,
        "ringbuf_drop_control": 0,
        "ringbuf_refused_with_room": 0,
    }
