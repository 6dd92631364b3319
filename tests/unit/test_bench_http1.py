"""The load generator's HTTP/1.1 client against a real socket server on loopback: every way an answer can end
(Content-Length, chunked with trailers, no length up to the close, an interim 1xx, an empty reason phrase),
keep-alive reuse, the server closing, and transport errors as status 0."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infkit.bench.http1 import Connection

ANSWERS = {
    "/length": b"HTTP/1.1 200 \r\ncontent-length: 5\r\n\r\nhello",  # TorchServe leaves the reason phrase empty
    "/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\n"
    b"Trailer: 1\r\n\r\n",
    "/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 415 Unsupported Media Type\r\nContent-Length: 2\r\n\r\nno",
    "/empty": b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "/close": b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy",
    "/to-the-end": b"HTTP/1.1 200 OK\r\n\r\nuntil the connection closes",
    # HTTP/1.0 closes after each answer unless it says keep-alive (http.server's default protocol does close)
    "/http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/http10-keep": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, self.headers.get("Authorization"), body, self.client_address))
        self.wfile.write(ANSWERS[self.path])
        self.wfile.flush()
        if self.path in ("/close", "/to-the-end", "/http10"):
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.seen = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def conn_to(server, path: str) -> Connection:
    return Connection(f"http://127.0.0.1:{server.server_address[1]}{path}", {"Authorization": "Bearer k"}, 5.0)


@pytest.mark.parametrize(("path", "status"), [("/length", 200), ("/chunked", 201), ("/interim", 415), ("/empty", 204)])
def test_answers_are_read_whole_and_the_connection_is_kept(server, path, status):
    conn = conn_to(server, path)
    assert [conn.post(b"abc"), conn.post(b"defg"), conn.post(b"abc")] == [status] * 3
    assert [s[1:3] for s in server.seen] == [("Bearer k", b"abc"), ("Bearer k", b"defg"), ("Bearer k", b"abc")]
    assert len({s[3] for s in server.seen}) == 1  # one keep-alive connection for all three
    assert conn.buf == b""  # nothing of an answer left over for the next one
    conn.close()


@pytest.mark.parametrize(("path", "status"), [("/close", 503), ("/to-the-end", 200), ("/http10", 200)])
def test_a_closing_server_gets_a_new_connection_next_time(server, path, status):
    conn = conn_to(server, path)
    assert [conn.post(b"x"), conn.post(b"x")] == [status] * 2
    assert len({s[3] for s in server.seen}) == 2


def test_an_http10_answer_saying_keep_alive_keeps_the_connection(server):
    conn = conn_to(server, "/http10-keep")
    assert [conn.post(b"x"), conn.post(b"x")] == [200, 200] and len({s[3] for s in server.seen}) == 1


def test_transport_errors_are_status_0_and_the_next_request_reconnects(server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert Connection(f"http://127.0.0.1:{port}/length", {}, 2.0).post(b"x") == 0
    conn = conn_to(server, "/length")
    assert conn.post(b"x") == 200
    conn.sock.close()  # the connection breaks under the client
    assert conn.post(b"x") == 0 and conn.sock is None
    assert conn.post(b"x") == 200
    with pytest.raises(ValueError, match="not an http"):
        Connection("ftp://127.0.0.1/x", {}, 1.0)
