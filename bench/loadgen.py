"""Paced HTTP/1.1 keep-alive load on loopback: `python loadgen.py PORT RATE SECONDS CONNS`.

Sends RATE requests per second in total over CONNS keep-alive connections for SECONDS, reads
every response, and prints one JSON line: {"sent": N, "ok": N, "ports": [...], "seconds": T,
"max_wait_ms": M} (M: the longest any request waited for its response).
Bounded in count and time; only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time


def main() -> None:
    port, rate, seconds, nconn = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    total = int(rate * seconds)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(nconn)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    idle = list(socks)
    buf: dict[socket.socket, bytes] = {s: b"" for s in socks}
    sent = ok = 0
    asked: dict[socket.socket, float] = {}
    max_wait = 0.0
    t0 = time.monotonic()
    deadline = t0 + seconds + 10
    while (sent < total or len(idle) < nconn) and time.monotonic() < deadline:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        while idle and sent < due:
            s = idle.pop()
            s.send(b"GET /load/%d HTTP/1.1\r\nHost: bench\r\n\r\n" % sent)
            asked[s] = time.monotonic()
            sent += 1
        for key, _ in sel.select(0.001):
            s = key.fileobj  # type: ignore[assignment]
            data = s.recv(65536)
            if not data:
                raise SystemExit("server closed a connection")
            buf[s] += data
            # nginx's `return 200 "ok"` responses: count complete ones by their end
            while b"\r\n\r\nok" in buf[s]:
                buf[s] = buf[s].split(b"\r\n\r\nok", 1)[1]
                ok += 1
                idle.append(s)
                max_wait = max(max_wait, time.monotonic() - asked[s])
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    seconds = time.monotonic() - t0
    result = {"sent": sent, "ok": ok, "ports": ports, "seconds": seconds}
    print(json.dumps(result | {"max_wait_ms": round(max_wait * 1000, 1)}))


if __name__ == "__main__":
    main()
