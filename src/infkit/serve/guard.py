"""The inference port's front: form-encoded bodies reach the handler as the raw bytes they are.

TorchServe 0.12 parses every body sent as application/x-www-form-urlencoded (what `curl --data-binary @img.png`
sends unless told otherwise) as form fields before any handler runs: for some images its decoder throws and the
client gets 500 ErrorDataDecoderException, for the others the bytes arrive cut into meaningless fields. This front
listens on the inference port and changes one header line: such a request's Content-Type becomes
application/octet-stream, and X-Infkit-Content-Type keeps the client's. Everything else passes byte for byte in both
directions, one TorchServe connection per client connection, so answers keep their order.

    python -m infkit.serve.guard --listen 127.0.0.1:8080 --upstream 127.0.0.1:8090 [-- torchserve --foreground ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

FORM = "application/x-www-form-urlencoded"
#: the header that carries the client's Content-Type when the front changed it
ORIGINAL_TYPE = "X-Infkit-Content-Type"
HEAD_LIMIT = 64 * 1024
CHUNK = 256 * 1024


def is_form(content_type: str | bytes | None) -> bool:
    """Whether a Content-Type value (the guard reads bytes, the handler str) is application/x-www-form-urlencoded."""
    text = content_type.decode("latin-1") if isinstance(content_type, bytes) else content_type or ""
    return text.split(";")[0].strip().lower() == FORM


class Unfollowable(Exception):
    """A request whose end cannot be found (no usable length, a head over HEAD_LIMIT): it and the rest of the
    connection are relayed as they come, and TorchServe answers as it would without the front."""


def rewrite_head(head: bytes) -> tuple[bytes, int, bool]:
    """(the head to send on, the body's Content-Length, whether the body is chunked) for one request head
    (request line and headers, ending in an empty line)."""
    lines = head.split(b"\r\n")[:-2]
    out, length, chunked, original = [lines[0]], 0, False, None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            if not value.strip().isdigit():  # 1*DIGIT, as HTTP has it
                raise Unfollowable(line)
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"content-type" and is_form(value):
            original = value.strip()
            line = b"Content-Type: application/octet-stream"
        out.append(line)
    if original is not None:
        out.append(ORIGINAL_TYPE.encode() + b": " + original)
    return b"\r\n".join(out) + b"\r\n\r\n", length, chunked


class _Upstream(asyncio.Protocol):
    """TorchServe's side of one client connection: what it sends goes to the client as it comes."""

    def __init__(self, client: _Client):
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc) -> None:
        self.client.transport.close()

    def pause_writing(self) -> None:  # TorchServe is slow to take the client's bytes: stop reading the client
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


class _Client(asyncio.Protocol):
    """One client connection: request heads rewritten, bodies (by Content-Length or chunks) passed on, the
    connection relayed as it comes once a request cannot be followed."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream_address = upstream
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # sent on once TorchServe's connection is open
        self.buffer = bytearray()
        self.state, self.left = "head", 0  # head | body (left bytes) | size | data (left bytes) | trailer | raw

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()
        self.connecting = asyncio.get_running_loop().create_task(self._connect())  # held: the loop keeps weak refs

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.upstream, _ = await loop.create_connection(lambda: _Upstream(self), *self.upstream_address)
        except OSError as exc:
            self.transport.write(
                error_response(503, "Service Unavailable", f"TorchServe is not answering ({exc.strerror})")
            )
            self.transport.close()
            return
        if self.transport.is_closing():  # the client left while TorchServe's connection was opening
            self.upstream.close()
            return
        for data in self.pending:
            self.upstream.write(data)
        self.pending.clear()
        self.transport.resume_reading()

    def _send(self, data) -> None:
        if self.upstream is None:
            self.pending.append(bytes(data))
        else:
            self.upstream.write(data)

    def data_received(self, data: bytes) -> None:
        if self.state == "raw":
            return self._send(data)
        if self.state in ("body", "data") and not self.buffer and len(data) <= self.left:
            return self._pass_body(data)  # the common large-body case: no copy into the buffer
        self.buffer += data
        try:
            while self.buffer and self._step():
                pass
        except Unfollowable:
            self.state = "raw"
        if self.state == "raw" and self.buffer:
            self._send(self.buffer)
            self.buffer.clear()

    def _pass_body(self, data) -> None:
        """Send on bytes of the current body or chunk; at its end, a head (body) or a chunk size (data) is next."""
        self._send(data)
        self.left -= len(data)
        if not self.left:
            self.state = "head" if self.state == "body" else "size"

    def _step(self) -> bool:
        """Consume what the buffer holds of the current part; False: wait for more bytes."""
        buf = self.buffer
        if self.state in ("body", "data"):
            n = min(self.left, len(buf))
            self._pass_body(buf[:n])
            del buf[:n]
            return True
        if self.state == "head":
            while buf[:2] == b"\r\n":  # blank lines may precede a request
                self._send(buf[:2])
                del buf[:2]
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > HEAD_LIMIT:
                    raise Unfollowable("head too long")
                return False
            head, length, chunked = rewrite_head(bytes(buf[: end + 4]))
            del buf[: end + 4]
            self._send(head)
            self.state, self.left = ("size", 0) if chunked else (("body", length) if length else ("head", 0))
            return True
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > HEAD_LIMIT:
                raise Unfollowable("chunk line too long")
            return False
        line = bytes(buf[: end + 2])
        del buf[: end + 2]
        self._send(line)
        if self.state == "trailer":
            self.state = "head" if line == b"\r\n" else "trailer"
            return True
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise Unfollowable(line) from None
        self.state, self.left = ("trailer", 0) if size == 0 else ("data", size + 2)
        return True

    def connection_lost(self, exc) -> None:
        # TorchServe too closes a connection whose client stopped sending, answers in flight or not
        if self.upstream is not None:
            self.upstream.close()

    def pause_writing(self) -> None:  # the client is slow to take the answers: stop reading TorchServe
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()


def error_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"code": status, "type": reason, "message": message}).encode()
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


async def serve(listen: tuple[str, int], upstream: tuple[str, int], command: list[str] | None = None) -> int:
    """Front `upstream` on `listen` until SIGTERM/SIGINT, or, with a command (TorchServe), run it as a child and
    stop when it ends: the front lives exactly as long as the server it fronts. Returns the child's exit code."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(upstream), *listen, reuse_address=True, backlog=1024)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: stop.done() or stop.set_result(s))
    print(f"guard: {listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]}", flush=True)
    async with server:
        if not command:
            await stop
            return 0
        child = await asyncio.create_subprocess_exec(*command)
        ended = asyncio.ensure_future(child.wait())
        await asyncio.wait([stop, ended], return_when=asyncio.FIRST_COMPLETED)
        if not ended.done():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(stop.result())
            await ended
    return child.returncode if child.returncode >= 0 else 128 - child.returncode  # killed by a signal: 128 + it


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port (e.g. 127.0.0.1:8080)")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_address, required=True, help="host:port clients connect to")
    parser.add_argument("--upstream", type=_address, required=True, help="TorchServe's inference host:port")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the server to run as a child (optional)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return asyncio.run(serve(args.listen, args.upstream, command))
    except OSError as exc:
        print(f"guard: error: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
