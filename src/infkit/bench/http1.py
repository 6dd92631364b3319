"""The load generator's HTTP/1.1 client: one keep-alive connection over a plain socket.

A load generator needs little of HTTP: send a POST, read the whole answer, know its status and whether the server
closes the connection. Doing only that costs a fraction of the client CPU per request of http.client (whose header
parsing goes through the email package) and of requests, so at high rates the client measures the server rather
than itself. Each body's request bytes are built once; the answer's body is read (Content-Length, chunked, or up
to the close) and dropped, except the first bytes of an error's body: `error` keeps them with the status (TorchServe
says there why it refused, e.g. `404 ModelNotFoundException: ...`)."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

NO_BODY = {204, 304}
ERROR_BODY = 400  # bytes of an error answer's body kept to name it


class Connection:
    """POST bodies to one URL over one keep-alive connection; after a transport error the next request opens a new
    connection."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.address = (parts.hostname, parts.port or (443 if self.tls else 80))
        self.timeout = timeout
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {parts.netloc.rpartition('@')[2]}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self.requests: dict[int, tuple[bytes, bytes]] = {}  # id(body) -> (body, the request's bytes)
        self.sock: socket.socket | None = None
        self.buf = b""
        #: the last failed request's status and what it said: (status, body prefix or the transport error)
        self.error: tuple[int, str] | None = None

    def post(self, body: bytes) -> int:
        """The answer's HTTP status once its whole body is read (latency includes the transfer); 0 for a transport
        error (connection refused or reset, timeout, a malformed answer)."""
        try:
            if self.sock is None:
                self._open()
            cached = self.requests.get(id(body))
            if cached is None:  # the body is kept with its bytes, so its id cannot be reused meanwhile
                cached = self.requests[id(body)] = (body, self.head + f"{len(body)}\r\n\r\n".encode() + body)
            self.sock.sendall(cached[1])
            status, close, body = self._answer()
            if close:
                self.close()
            if not 200 <= status < 300:
                self.error = (status, body.decode("utf-8", "replace"))
            return status
        except (OSError, ValueError, IndexError) as exc:
            self.close()
            self.error = (0, f"{type(exc).__name__}: {exc}")
            return 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock, self.buf = None, b""

    def _open(self) -> None:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.address[0])
        self.sock, self.buf = sock, b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection mid-answer")
        self.buf += data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[:end], self.buf[end + 2 :]
        return line

    def _skip(self, n: int) -> bytes:
        """Drop the next n bytes; return the first ERROR_BODY of them (only error answers keep them)."""
        while len(self.buf) < n:
            self._fill()
        head, self.buf = self.buf[: min(n, ERROR_BODY)], self.buf[n:]
        return head

    def _answer(self) -> tuple[int, bool, bytes]:
        """Read one answer: (status, whether the connection closes after it, the start of its body when the status
        is not 2xx, else b"")."""
        while True:
            version, status = self._line().split(b" ", 2)[:2]
            status = int(status)
            # HTTP/1.0 closes after each answer unless it says keep-alive; HTTP/1.1 keeps the connection unless close
            length, chunked, close = None, False, version == b"HTTP/1.0"
            while line := self._line():
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = value.endswith(b"chunked")
                elif name == b"connection":
                    close = value == b"close" or (close and value != b"keep-alive")
            if status >= 200:
                break  # 1xx: an interim answer; the real one follows
        if status in NO_BODY:
            return status, close, b""
        body = b""
        if chunked:
            while size := int(self._line().split(b";")[0], 16):
                if len(body) < ERROR_BODY:
                    body += self._skip(size)
                    self._skip(2)
                else:
                    self._skip(size + 2)
            while self._line():  # trailers, up to the empty line
                pass
        elif length is not None:
            body = self._skip(length)
        else:  # no length: the body runs to the close
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            body, self.buf, close = self.buf[:ERROR_BODY], b"", True
        return status, close, b"" if 200 <= status < 300 else body[:ERROR_BODY]
