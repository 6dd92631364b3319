"""A real HTTP/1.1 server for tests of the front: answers every request with what arrived (path, Content-Type,
body length and sha256) as JSON. Run as a child: python -m tests.helpers.echo_server PORT [EXIT_AFTER_S EXIT_CODE]"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        doc = {
            "path": self.path,
            "type": self.headers.get("Content-Type"),
            "headers": sorted(k.lower() for k in self.headers),
            "n": len(body),
            "sha": hashlib.sha256(body).hexdigest(),
        }
        out = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST

    def log_message(self, *args):
        pass


def main(argv: list[str]) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", int(argv[0])), Echo)
    if len(argv) > 1:  # end by itself after a while, with the given code
        threading.Timer(float(argv[1]), lambda: server.shutdown()).start()
        server.serve_forever()
        return int(argv[2])
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
