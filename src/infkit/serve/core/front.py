"""The inference port's front: nginx parses every client's HTTP, TorchServe's inference API sits behind it.

Why a front at all: TorchServe 0.12 decodes every body sent as application/x-www-form-urlencoded (what
`curl --data-binary @img.png URL` sends unless told otherwise) as form fields before any handler runs, and answers 500
for some images. nginx hands such bodies on as application/octet-stream, the raw bytes they are. Nothing of infkit's
reads client bytes: nginx (maintained, widely deployed) parses requests with explicit limits on the request line,
headers, body, time and connections, and answers malformed ones itself (docs/security.md).

    python -m infkit.serve.core.front --listen 127.0.0.1:8080 --upstream 127.0.0.1:8090 --prefix DIR \
        [--max-body BYTES] [--read-timeout S] [--max-connections N] -- torchserve --foreground ...

runs nginx and the given server as children of this process, which leads their process group: they live and end
together (a SIGTERM stops both; when either ends, so does the other), and it exits with the server's code.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

FORM = "application/x-www-form-urlencoded"
NGINX_FIX = (
    "install nginx (Debian/Ubuntu: apt-get install nginx-light; RHEL/Fedora: dnf install nginx; macOS: brew install "
    "nginx), or set serve.server.front=none to let TorchServe answer on inference_port itself (docs/security.md says "
    "what that costs)"
)


#: the module the servers run the front as (`python -m MODULE ...`, command below); OLD_MODULE is its path before
#: serve/ was split, which a server started by an earlier release still shows in its command line
MODULE = "infkit.serve.core.front"
OLD_MODULE = "infkit.serve.front"


def command(
    listen: tuple[str, int],
    upstream_port: int,
    prefix: Path,
    max_body: int,
    read_timeout: float,
    max_connections: int,
    child: list[str],
) -> list[str]:
    """How an engine runs the front: nginx on `listen` before 127.0.0.1:`upstream_port`, and `child` (the engine's own
    server command) as the front's child, so the front leads the process group."""
    return [
        *(sys.executable, "-m", MODULE),
        *("--listen", f"{listen[0]}:{listen[1]}", "--upstream", f"127.0.0.1:{upstream_port}"),
        *("--prefix", str(prefix), "--max-body", str(max_body), "--read-timeout", str(read_timeout)),
        *("--max-connections", str(max_connections), "--", *child),
    ]


def find_nginx() -> str | None:
    """nginx on PATH, or where distributions put it (/usr/sbin is often not on a user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(path, os.X_OK):
            return path
    return None


@dataclass(frozen=True)
class Limits:
    """What a client may send and how long it may take: each limit is answered by nginx with a 4xx (or the
    connection closed), never passed on."""

    #: the largest body (the server's max_request_size); larger: 413
    max_body: int = 14 * 1024 * 1024
    #: the request line and each header line; larger: 414 / 400. At most 4 such buffers for all headers
    header_buffer: str = "16k"
    #: a client that has not sent its whole head in this time is dropped (slow headers); idle keep-alive likewise
    header_timeout: int = 10
    body_timeout: int = 30
    keepalive_timeout: int = 30
    #: an answer TorchServe has not given in this time: 504 (the model's responseTimeout plus a margin)
    read_timeout: int = 130
    #: connections nginx holds at once, clients and TorchServe's together; past it new ones wait in the backlog
    max_connections: int = 4096


def nginx_conf(listen: tuple[str, int], upstream: tuple[str, int], prefix: Path, limits: Limits) -> str:
    """nginx.conf for the front: `prefix` holds its logs, pid and (never used: bodies stream on) temp folders."""
    prefix = Path(prefix).resolve()
    user = ""
    if os.geteuid() == 0:  # never parse client bytes as root: the workers drop to nobody where it exists
        try:
            nobody = pwd.getpwnam("nobody")
            user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"
        except KeyError:
            user = ""
    host = f"[{listen[0]}]" if ":" in listen[0] else listen[0]
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / 'temp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# written by infkit.serve.core.front at every start; edits are lost
{user}worker_processes 1;
worker_rlimit_nofile {2 * limits.max_connections + 64};
pid {prefix / "nginx.pid"};
error_log {prefix / "logs" / "nginx-error.log"} warn;
daemon off;
events {{
    worker_connections {limits.max_connections};
}}
http {{
    access_log off;
    server_tokens off;
{temp}
    client_header_buffer_size 1k;
    large_client_header_buffers 4 {limits.header_buffer};
    client_header_timeout {limits.header_timeout}s;
    client_body_timeout {limits.body_timeout}s;
    client_max_body_size {limits.max_body};
    client_body_buffer_size 256k;
    keepalive_timeout {limits.keepalive_timeout}s;
    keepalive_requests 10000;
    send_timeout 30s;
    reset_timedout_connection on;
    # a form-typed body goes on as the raw bytes it is (TorchServe's own form decoder answers 500 for some images)
    map $http_content_type $infkit_content_type {{
        "~*^{FORM}\\s*(;|$)" application/octet-stream;
        default $http_content_type;
    }}
    upstream torchserve {{
        server {upstream[0]}:{upstream[1]};
        keepalive 64;
    }}
    server {{
        listen {host}:{listen[1]} backlog=1024;
        # nginx answers 501 to a Transfer-Encoding and 505 to an HTTP version it does not know: the client's
        # mistakes, so 400s. Its own refusals answer in JSON, as TorchServe's do
        error_page 400 494 501 505 =400 /infkit-400;
        error_page 413 =413 /infkit-413;
        error_page 414 =414 /infkit-414;
        location = /infkit-400 {{
            internal;
            default_type application/json;
            return 400 '{{"code": 400, "type": "BadRequest", "message": "malformed request"}}\n';
        }}
        location = /infkit-413 {{
            internal;
            default_type application/json;
            return 413 '{{"code": 413, "type": "PayloadTooLarge", "message": "body over {limits.max_body} bytes"}}\n';
        }}
        location = /infkit-414 {{
            internal;
            default_type application/json;
            return 414 '{{"code": 414, "type": "URITooLong", "message": "request line over {limits.header_buffer}"}}\n';
        }}
        location / {{
            proxy_pass http://torchserve;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header Content-Type $infkit_content_type;
            # bodies stream to TorchServe as they arrive (no temp files); answers are buffered in memory only
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
            # a client that half-closes after its request (shutdown(SHUT_WR)) still gets the answer
            proxy_ignore_client_abort on;
            proxy_connect_timeout 5s;
            proxy_read_timeout {limits.read_timeout}s;
            proxy_send_timeout {limits.body_timeout}s;
        }}
    }}
}}
"""


def _stop(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def run(nginx: str, conf: Path, prefix: Path, command: list[str]) -> int:
    """nginx and `command` as children until SIGTERM/SIGINT or until either ends; the server's exit code
    (128 + the signal when one killed it), or 1 when nginx ended first (its error log says why)."""
    stop: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _: stop.append(s))
    front = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "nginx-error.log")]
    )
    server = subprocess.Popen(command) if command else None
    children = [p for p in (front, server) if p is not None]
    while not stop and all(p.poll() is None for p in children):
        time.sleep(0.2)
    if front.poll() is not None and not stop:
        print(
            f"front: nginx exited with code {front.returncode}; see {prefix / 'logs' / 'nginx-error.log'}", flush=True
        )
    for p in children:  # nginx's SIGQUIT: finish the requests in flight, then stop
        _stop(p, signal.SIGQUIT if p is front else (stop[0] if stop else signal.SIGTERM))
    deadline = time.monotonic() + 25
    for p in children:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if server is None:
        return 0 if stop else 1
    if front.returncode not in (0, None) and not stop and server.returncode in (0, -signal.SIGTERM):
        return 1
    code = server.returncode
    return code if code >= 0 else 128 - code


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port (e.g. 127.0.0.1:8080)")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_address, required=True, help="host:port clients connect to")
    parser.add_argument("--upstream", type=_address, required=True, help="TorchServe's inference host:port")
    parser.add_argument("--prefix", type=Path, required=True, help="folder for nginx.conf, its logs and pid")
    parser.add_argument("--max-body", type=int, default=Limits.max_body, help="largest request body in bytes")
    parser.add_argument("--read-timeout", type=int, default=Limits.read_timeout, help="seconds to wait for an answer")
    parser.add_argument("--max-connections", type=int, default=Limits.max_connections, help="connections at once")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the server to run as a child (optional)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    nginx = find_nginx()
    if nginx is None:
        print(f"front: error: nginx is not installed: {NGINX_FIX}", file=sys.stderr)
        return 2
    limits = Limits(max_body=args.max_body, read_timeout=args.read_timeout, max_connections=args.max_connections)
    for sub in ("logs", "temp"):
        (args.prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = args.prefix / "nginx.conf"
    conf.write_text(nginx_conf(args.listen, args.upstream, args.prefix, limits))
    check = subprocess.run(
        [nginx, "-t", "-q", "-p", str(args.prefix), "-c", str(conf), "-e", "/dev/stderr"],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        print(f"front: error: nginx refused its configuration: {check.stderr.strip()}", file=sys.stderr)
        return 2
    print(f"front: nginx on {args.listen[0]}:{args.listen[1]} -> {args.upstream[0]}:{args.upstream[1]}", flush=True)
    return run(nginx, conf, args.prefix, command)


if __name__ == "__main__":
    sys.exit(main())
