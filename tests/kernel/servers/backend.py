"""A recording backend for kernel tests: every request's method, path and JSON body is
appended to a JSON-lines file. Answers 200 (PUT /healthcheck/ too)."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_path = ""

    def log_message(self, *args: object) -> None:
        pass

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = body.decode(errors="replace")
        with open(self.log_path, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "body": doc}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_PUT = _record


if __name__ == "__main__":
    Handler.log_path = sys.argv[3]
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
