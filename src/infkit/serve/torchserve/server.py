"""TorchServe's lifecycle: start (ready when workers are READY, load failures named within seconds), status, stop.

Everything a running server needs lives in one state folder: config.properties, log4j2.xml, key_file.json (token
authorization), server.json (infkit.serve.core.process: whose identity is checked before it is trusted) and the logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from infkit.errors import InfkitError
from infkit.serve.core import front
from infkit.serve.core.archives import check_models
from infkit.serve.core.auth import KEY_FILE, read_keys
from infkit.serve.core.config import ServerConfig, free_ports
from infkit.serve.core.front import NGINX_FIX, find_nginx
from infkit.serve.core.process import STATE_FILE, Stopped, forget, read_state, running_state, terminate, verdict
from infkit.serve.torchserve import logs
from infkit.serve.torchserve.java import java_env
from infkit.serve.torchserve.readiness import describe, wait_front, wait_ready

# -- start ---------------------------------------------------------------------------------------
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL (Linux)


def start(
    server: ServerConfig,
    model_store: Path,
    state_dir: Path,
    models: list[str] | None = None,
    strict: bool | None = None,
    stop_command: str = "python src/serve.py stop",
    log=print,
) -> dict:
    """Start TorchServe; return its state once every loadable model has its minWorkers READY.

    A model that cannot load (a corrupt archive, a worker that raises while loading) is named with the reason as
    soon as TorchServe logs it. `strict` (default: True when one model is served) stops the server and raises;
    otherwise the others are served and the state lists the failures under 'failed'."""
    state_dir, model_store = Path(state_dir).resolve(), Path(model_store).resolve()
    # workers talk to the frontend over Unix sockets <state>/tmp/.ts.sock.<port>; Linux allows 107 bytes of path
    socket = state_dir / "tmp" / ".ts.sock.9000"
    if len(str(socket).encode()) > SOCKET_PATH_MAX:
        raise InfkitError(
            f"state_dir {str(state_dir)!r} is too long: TorchServe's worker sockets under it ({socket}) would exceed "
            f"the {SOCKET_PATH_MAX}-byte Unix socket path limit and every worker would die at start; use a shorter "
            "state_dir (e.g. state_dir=/tmp/infkit-serve)"
        )
    previous = read_state(state_dir)
    if previous:
        why = verdict(previous)
        if why == "ours":
            raise InfkitError(
                f"TorchServe is already running from {state_dir} (pid {previous['pid']}); stop it first: {stop_command}"
            )
        log(forget(state_dir, previous, why))
    archives, failed = check_models(model_store, list(models or []))
    strict = len(archives) + len(failed) == 1 if strict is None else strict
    if failed and (strict or not archives):
        raise InfkitError("cannot serve " + "; ".join(f"{m}.mar: {why}" for m, why in failed.items()))
    for name, why in failed.items():
        log(f"warning: not serving {name}.mar: {why}")
    environment = java_env(dict(os.environ))
    nginx = find_nginx() if server.front == "nginx" else None
    if server.front == "nginx" and nginx is None:
        raise InfkitError(f"serve.server.front=nginx needs nginx, which is not installed: {NGINX_FIX}")
    busy = server.busy_ports()
    if busy:
        raise InfkitError(
            "; ".join(f"port {getattr(server, k)} ({k}) on {server.address} is in use" for k in busy)
            + "; pick others with "
            + " ".join(f"serve.server.{k}=<port>" for k in busy)
        )
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "tmp").mkdir(exist_ok=True)
    (state_dir / KEY_FILE).unlink(missing_ok=True)
    log_config = state_dir / "log4j2.xml"
    log_config.write_text(logs.log4j2_xml(log_dir, server))
    config = state_dir / "config.properties"
    max_image = max(a.max_image_bytes for a in archives.values())
    # behind the front, TorchServe's inference API listens on a free port of the loopback
    upstream = free_ports("127.0.0.1", ("upstream",))["upstream"] if nginx else None
    config.write_text(server.config_properties(model_store, max_image, log_config, upstream))
    out = log_dir / "torchserve.out"
    if out.exists():  # keep the previous run's console output, never append forever
        out.replace(log_dir / "torchserve.out.1")
    torchserve = Path(sys.executable).with_name("torchserve")
    cmd = [
        str(torchserve if torchserve.exists() else "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config",
        str(config),
        "--model-store",
        str(model_store),
        "--models",
        *[f"{n}={a.path.name}" for n, a in archives.items()],
    ]
    if not server.token_auth:
        cmd.append("--disable-token-auth")
    if upstream:  # the front leads the process group and runs nginx and TorchServe as its children
        cmd = front.command(
            (server.address, server.inference_port),
            upstream,
            state_dir / "front",
            server.request_limit(max_image),
            max(a.response_timeout for a in archives.values()) + 10,
            server.max_connections,
            cmd,
        )
    env = {
        **environment,
        "LOG_LOCATION": str(log_dir),
        "METRICS_LOCATION": str(log_dir),
        # TorchServe keeps its pid file in the temp dir: one per state folder, so servers don't collide
        "TMPDIR": str(state_dir / "tmp"),
        "TEMP": str(state_dir / "tmp"),
    }
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            cmd,
            cwd=state_dir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    leader = psutil.Process(proc.pid)
    state = {
        "engine": "torchserve",
        "pid": proc.pid,
        "pgid": os.getpgid(proc.pid),
        "create_time": leader.create_time(),
        "cmdline": cmd[:3],
        "upstream_port": upstream,
        "models": list(archives),
        "failed": failed,
        "urls": server.urls(),
        "server": server.__dict__.copy(),
        "state_dir": str(state_dir),
        "key_file": str(state_dir / KEY_FILE),
        "config": str(config),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _save(state_dir, state)
    log(f"starting TorchServe (pid {proc.pid}) with {', '.join(archives)}; logs in {log_dir}")
    try:
        wait_ready(server, proc, state, {n: a.min_workers for n, a in archives.items()}, strict, log)
        if upstream:
            wait_front(server, proc, state_dir / "front" / "logs" / "nginx-error.log")
    except BaseException:
        stop(state_dir)
        raise
    _save(state_dir, state)
    return state


def _save(state_dir: Path, state: dict) -> None:
    (Path(state_dir) / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


# -- stop and status -----------------------------------------------------------------------------
def stop(state_dir: Path, timeout: float = 30.0) -> Stopped:
    """Stop the server started from state_dir and every process of its group. Saved state that names a process
    infkit did not start is removed, and nothing is signalled."""
    state_dir = Path(state_dir)
    state = read_state(state_dir)
    if not state:
        return Stopped(False, f"no TorchServe running from {state_dir}")
    why = verdict(state)
    if why != "ours":  # nothing is signalled: it is not (or no longer) ours
        return Stopped(False, forget(state_dir, state, why))
    pgid = int(state["pgid"])

    def send(sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return False
        return True

    if not terminate(send, lambda: verdict(state) != "ours", int(state["pid"]), timeout):
        raise InfkitError(f"processes of group {pgid} survived SIGKILL; check `ps -g {pgid}`")
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return Stopped(True, "TorchServe stopped")


def status(state_dir: Path) -> dict:
    """{'running': bool, ...}: the saved state with each model's worker statuses, or why it is not running."""
    state_dir = Path(state_dir)
    state, not_running = running_state(state_dir)
    if state is None:
        return not_running
    server = ServerConfig.from_mapping(state["server"])
    keys = read_keys(state_dir / KEY_FILE)
    workers = {}
    for name in state["models"]:
        try:
            workers[name] = [w.get("status") for e in describe(server, keys, name) for w in e["workers"]]
        except (requests.RequestException, ValueError, KeyError) as exc:
            workers[name] = [f"unknown ({type(exc).__name__})"]
    return {"running": True, **state, "workers": workers}
