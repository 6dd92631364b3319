"""The Ray engine's lifecycle: start (a private Ray, or an existing cluster), stop, status.

A private Ray (serve.ray.address: null) is started for the server and stopped with it: its head runs in a new
process group that infkit records (pid, pgid, start time: infkit.serve.core.process) and stop signals that group only,
never `ray stop` (which stops every Ray of the user on the machine). Ray's own servers (GCS, raylet, agents) listen
on 127.0.0.1 only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray's single-machine mode), cluster token authentication is
on (RAY_AUTH_MODE=token, the token in the state folder), the dashboard is off, and Ray's temp dir is <state>/ray.
Only Serve's HTTP and gRPC proxies (or the nginx front) and the metrics port listen on serve.server.address.

With serve.ray.address=<host:port> the applications are deployed onto that cluster; stop deletes them and leaves
the cluster running.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from infkit.errors import InfkitError
from infkit.serve.core import front
from infkit.serve.core.archives import check_models
from infkit.serve.core.auth import KEY_FILE, auth_header, read_keys
from infkit.serve.core.config import ServerConfig, free_ports
from infkit.serve.core.front import NGINX_FIX, find_nginx
from infkit.serve.core.process import STATE_FILE, forget, group_tree, read_state, running_state, terminate, verdict
from infkit.serve.ray.config import (
    COUNTERS_DIR,
    INGRESS_APP,
    RaySettings,
    model_app_name,
    model_spec,
    serve_config,
    write_serve_config,
)

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL (Linux)
#: what Ray adds under its temp dir for its Unix sockets: /session_YYYY-MM-DD_HH-MM-SS_ffffff_<pid>/sockets/plasma_store
RAY_SOCKET_SUFFIX = len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store")
RAY_TOKEN = "ray_auth_token"
ENGINE = "ray"


def write_keys(path: Path) -> dict[str, str]:
    """TorchServe's key-file format ({"inference": {"key": ...}, "management": {"key": ...}}), mode 0600."""
    keys = {kind: secrets.token_urlsafe(24) for kind in ("inference", "management")}
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({kind: {"key": key} for kind, key in keys.items()}, f, indent=2)
    return keys


def _secret_file(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def check_state_dir(state_dir: Path) -> None:
    temp = Path(state_dir) / "ray"
    if len(str(temp).encode()) + RAY_SOCKET_SUFFIX > SOCKET_PATH_MAX:
        raise InfkitError(
            f"state_dir {str(state_dir)!r} is too long for the Ray engine: Ray's Unix sockets under {temp} would "
            f"exceed the {SOCKET_PATH_MAX}-byte socket path limit; use a state_dir of at most "
            f"{SOCKET_PATH_MAX - RAY_SOCKET_SUFFIX - 4} characters (e.g. state_dir=/tmp/infkit-serve)"
        )


#: a sitecustomize that binds Ray Serve's Python gRPC servers to the loopback (see its docstring)
BIND_DIR = Path(__file__).with_name("bind")


#: under the state folder: the private Ray's TMPDIR, where its replicas unpack their archives
REPLICA_TMP = "tmp"

#: under the state folder: Serve's HAProxy files (config, admin socket, server state; one folder per Ray node in it).
#: Short names: a Unix socket path holds at most 107 bytes, and Serve adds the node id (56 characters)
HAPROXY_DIR = "h"

#: the free loopback ports Serve's HAProxy ingress needs besides the inference and gRPC ports
HAPROXY_PORTS = ("haproxy_stats", "haproxy_metrics", "fallback_http", "fallback_grpc")


def haproxy_env(state_dir: Path, ports: dict, http_host: str) -> dict[str, str]:
    """The environment that turns on Serve's HAProxy ingress (serve.ray.ingress=haproxy) for infkit's private Ray:
    every file under <state_dir>/h, every port of its own a free loopback one, HAProxy's HTTP frontend on
    `http_host` (serve.server.address, or the loopback behind the nginx front). bind/sitecustomize.py edits the
    config template so that only the HTTP and gRPC frontends leave the loopback and the admin socket is 0600."""
    base = Path(state_dir) / HAPROXY_DIR
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "INFKIT_HAPROXY_HTTP_HOST": http_host,
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "c"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "a"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "s"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(base / "m"),
        # HAProxy logs every request to this target (default: UDP syslog on 127.0.0.1:514, the machine's syslog if
        # one listens there): a Unix datagram socket no one opens, so the lines go nowhere
        "RAY_SERVE_HAPROXY_LOG_TARGET": str(base / "log"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(ports["haproxy_stats"]),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(ports["haproxy_metrics"]),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(ports["fallback_http"]),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(ports["fallback_grpc"]),
    }


def ray_env(
    state_dir: Path,
    settings: RaySettings,
    grpc: tuple[str, int] | None = None,
    ports: dict | None = None,
    grpc_app: str = INGRESS_APP,
) -> dict[str, str]:
    """The environment of every Ray process of ours: quiet, loopback, token auth, our gRPC stubs importable.
    `grpc`: where Serve's gRPC proxy listens (serve.server.address, grpc_inference_port), and `grpc_app` the
    application that answers gRPC calls naming none; `ports`: free loopback ports for the metrics servers Ray
    otherwise puts on fixed ports (two private Rays would collide)."""
    stubs = str(Path(state_dir) / "grpc")
    path = os.environ.get("PYTHONPATH")
    extra = {}
    if grpc:
        extra = {"INFKIT_RAY_BIND": "127.0.0.1", "INFKIT_RAY_GRPC_HOST": grpc[0], "INFKIT_RAY_GRPC_PORT": str(grpc[1])}
        # gRPC calls carry no Serve application name: they go to the ingress, or to the only application
        # (bind/sitecustomize.py)
        extra["INFKIT_RAY_GRPC_APP"] = grpc_app
    if ports:
        extra["AUTOSCALER_METRIC_PORT"] = str(ports["autoscaler_metrics"])
        extra["DASHBOARD_METRIC_PORT"] = str(ports["dashboard_metrics"])
    return {
        **os.environ,
        **extra,
        "PYTHONPATH": os.pathsep.join([str(BIND_DIR), stubs, *([path] if path else [])]),
        # Ray's single-machine mode: its servers bind 127.0.0.1 and the node's address is the loopback
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(Path(state_dir) / RAY_TOKEN),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_BACKEND_LOG_LEVEL": settings.log_level.lower().replace("warning", "warning"),
        "RAY_SERVE_LOG_LEVEL": settings.log_level.upper(),
        "RAY_metrics_report_interval_ms": str(settings.metrics_report_ms),
        "RAY_DEDUP_LOGS": "1",
        # no event exports, no task-event buffering for the dashboard that is not running
        "RAY_task_events_report_interval_ms": "0",
        # Serve's controller loop (default every 0.1 s) and its metrics cache flush (0.1 s): the idle CPU of an
        # idle server. 0.5 s: a change (a replica that died, an autoscaling decision) is acted on within 0.5 s
        "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
        "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": str(min(settings.metrics_report_ms, 500)),
    }


def _save(state_dir: Path, state: dict) -> None:
    (Path(state_dir) / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def start(
    server: ServerConfig,
    model_store: Path,
    state_dir: Path,
    models: list[str] | None = None,
    strict: bool | None = None,
    stop_command: str = "python src/serve.py stop",
    log=print,
    settings: RaySettings | None = None,
    neuron: dict | None = None,
) -> dict:
    """Start (or deploy onto) Ray; return the state once every loadable model's replicas run and the inference
    port answers. A model that cannot load is named as soon as Serve reports it: strict (default when one model
    is served) stops and raises; otherwise it is listed under 'failed' and the others are served."""
    settings = settings or RaySettings()
    state_dir, model_store = Path(state_dir).resolve(), Path(model_store).resolve()
    external = settings.address
    if not external:
        check_state_dir(state_dir)
    previous = read_state(state_dir)
    if previous:
        why = "ours" if previous.get("external") else verdict(previous)
        if why == "ours":
            raise InfkitError(f"a server is already running from {state_dir}; stop it first: {stop_command}")
        log(forget(state_dir, previous, why))
    archives, failed = check_models(model_store, list(models or []))
    specs = {}
    for name, archive in archives.items():
        try:
            specs[name] = model_spec(name, archive.path, settings, neuron=neuron)
        except InfkitError as exc:
            failed[name] = str(exc)
    strict = len(archives) + len(failed) == 1 if strict is None else strict
    if failed and (strict or not specs):
        raise InfkitError("cannot serve " + "; ".join(f"{m}.mar: {why}" for m, why in failed.items()))
    for name, why in failed.items():
        log(f"warning: not serving {name}.mar: {why}")
    nginx = find_nginx() if server.front == "nginx" else None
    if server.front == "nginx" and nginx is None:
        raise InfkitError(f"serve.server.front=nginx needs nginx, which is not installed: {NGINX_FIX}")
    busy = [k for k in ("inference_port", "grpc_inference_port", "metrics_port") if k in server.busy_ports()]
    if busy:
        raise InfkitError(
            "; ".join(f"port {getattr(server, k)} ({k}) on {server.address} is in use" for k in busy)
            + "; pick others with "
            + " ".join(f"serve.server.{k}=<port>" for k in busy)
        )
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    key_file = state_dir / KEY_FILE
    key_file.unlink(missing_ok=True)
    if server.token_auth:
        write_keys(key_file)
    from infkit.serve.core.grpc_client import generate_stubs

    generate_stubs(state_dir / "grpc")
    max_image = max(s.max_image_bytes for s in specs.values())
    haproxy = settings.ingress == "haproxy" and not external
    internal = free_ports(
        "127.0.0.1",
        ("gcs", "ray_metrics", "upstream", "client", "autoscaler_metrics", "dashboard_metrics")
        + (HAPROXY_PORTS if haproxy else ()),
    )
    http = ("127.0.0.1", internal["upstream"]) if nginx else (server.address, server.inference_port)
    if haproxy:  # Serve's own HTTP servers stay on the loopback; HAProxy's frontend takes http[0] (haproxy_env)
        http, http_host = ("127.0.0.1", http[1]), http[0]
    config = serve_config(
        specs,
        settings,
        http,
        server.grpc_inference_port,
        str(key_file) if server.token_auth else None,
        server.request_limit(max_image),
        str(state_dir),
        model_routes=not external,  # the private Ray: its proxies are patched for gRPC (bind/sitecustomize.py)
    )
    config_path = write_serve_config(state_dir, config)
    state = {
        "engine": ENGINE,
        "models": list(specs),
        "failed": failed,
        # no management API on this engine: models come from serve_config.yaml
        "urls": {k: v for k, v in server.urls().items() if k != "management"},
        "server": server.__dict__.copy(),
        "ray": settings.as_dict(),
        "state_dir": str(state_dir),
        "key_file": str(key_file),
        "config": str(config_path),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if external:
        if nginx:
            raise InfkitError(
                "serve.ray.address deploys onto an existing cluster, whose proxies infkit does not start: "
                "use serve.server.front=none (put the cluster's own load balancer in front)"
            )
        from infkit.serve.ray.deploy import cluster_env

        env = cluster_env(ray_env(state_dir, settings))  # the cluster's own mode and token, as the user has them
        state.update({"external": external, "pid": None, "pgid": None, "applications": []})
        out = _deploy(external, config_path, server, strict, env, log_dir)
        state["applications"] = [INGRESS_APP, *(model_app_name(m) for m in out["running"])]
        return _finish(state_dir, state, out)

    _secret_file(state_dir / RAY_TOKEN, secrets.token_hex(32))
    (state_dir / "ray").mkdir(exist_ok=True)
    counters = state_dir / COUNTERS_DIR  # the replicas' request counts (app.LiveCounts), fresh for this start
    shutil.rmtree(counters, ignore_errors=True)
    counters.mkdir(mode=0o700)
    names = [a["name"] for a in config["applications"]]
    grpc_app = INGRESS_APP if INGRESS_APP in names else names[0]
    env = ray_env(state_dir, settings, (server.address, server.grpc_inference_port), internal, grpc_app)
    shutil.rmtree(state_dir / HAPROXY_DIR, ignore_errors=True)
    if haproxy:
        (state_dir / HAPROXY_DIR).mkdir(mode=0o700)
        env.update(haproxy_env(state_dir, internal, http_host))
    # the replicas unpack their archive into a temporary folder (app.ModelReplica); a stop kills them before their
    # cleanup runs, so they unpack under the state folder, which stop clears (and this start, after a crash)
    shutil.rmtree(state_dir / REPLICA_TMP, ignore_errors=True)
    (state_dir / REPLICA_TMP).mkdir(mode=0o700)
    env["TMPDIR"] = str(state_dir / REPLICA_TMP)
    num_cpus = settings.num_cpus or private_cpus(_usable_cores(), specs.values())
    resources = {**settings.resources, "neuron_cores": settings.neuron_cores or (neuron or {}).get("cores")}
    resources = {k: float(v) for k, v in resources.items() if v}
    ray_cmd = [
        str(Path(sys.executable).with_name("ray")),
        *("start", "--head", "--block", "--disable-usage-stats"),
        *("--node-ip-address", "127.0.0.1", "--port", str(internal["gcs"])),
        *("--include-dashboard", "false", "--num-cpus", str(num_cpus)),
        # the log monitor copies workers' log lines to drivers; infkit attaches none (logs stay in <state>/ray)
        *("--include-log-monitor", "false"),
        # the autoscaler monitor adds and removes nodes; a private Ray has one machine and never more (Serve's own
        # replica autoscaling, minWorkers..maxWorkers, runs in its controller). One process and ~90 MiB fewer
        "--no-monitor",
        *("--object-store-memory", str(settings.object_store_mb * 1024 * 1024)),
        *("--temp-dir", str(state_dir / "ray"), "--metrics-export-port", str(internal["ray_metrics"])),
        *("--min-worker-port", "0", "--max-worker-port", "0", "--dashboard-agent-listen-port", "0"),
        *("--ray-client-server-port", str(internal["client"])),
    ]
    if resources:
        ray_cmd += ["--resources", json.dumps(resources)]
    state["internal_ports"] = internal
    cmd = [
        *(sys.executable, "-m", "infkit.serve.ray.head"),
        *(
            "--metrics",
            f"{server.address}:{server.metrics_port}",
            "--ray-metrics",
            f"127.0.0.1:{internal['ray_metrics']}",
            "--counters",
            str(counters),
        ),
        "--",
        *ray_cmd,
    ]
    if nginx:  # the front leads the process group and runs nginx and Ray's head as its children
        cmd = front.command(
            (server.address, server.inference_port),
            internal["upstream"],
            state_dir / "front",
            server.request_limit(max_image),
            130,
            server.max_connections,
            cmd,
        )
    out = log_dir / "ray.out"
    if out.exists():
        out.replace(log_dir / "ray.out.1")
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
    state.update(
        {
            "pid": proc.pid,
            "pgid": os.getpgid(proc.pid),
            "create_time": psutil.Process(proc.pid).create_time(),
            "cmdline": cmd[:3],
            "gcs_address": f"127.0.0.1:{internal['gcs']}",
            "upstream_port": internal["upstream"] if nginx else None,
        }
    )
    _save(state_dir, state)
    log(f"starting Ray Serve (pid {proc.pid}) with {', '.join(specs)}; logs in {log_dir}")
    try:
        result = _deploy(state["gcs_address"], config_path, server, strict, env, log_dir, proc)
        _wait_inference(server, proc, state_dir)
    except BaseException:
        stop(state_dir)
        raise
    return _finish(state_dir, state, result)


def _finish(state_dir: Path, state: dict, result: dict) -> dict:
    for name, why in result["failed"].items():
        state["failed"][name] = why
        if name in state["models"]:
            state["models"].remove(name)
    _save(state_dir, state)
    return state


def private_cpus(cores: int, specs) -> int:
    """The CPUs a private Ray offers when serve.ray.num_cpus is null: the usable cores, or more when the models'
    first replicas ask for more (each asks for its threads). Every model then starts its minimum replicas, which
    share the cores, as TorchServe starts every model's minWorkers: offering only the cores would leave a model's
    replicas waiting for CPUs that another model's replicas hold, never started and never named."""
    import math

    return max(cores, math.ceil(sum(s.min_replicas * s.num_cpus for s in specs)))


def _usable_cores() -> int:
    from infkit.utils.cpu import usable_cores

    return usable_cores()


def _deploy(address, config_path, server, strict, env, log_dir, proc=None) -> dict:
    cmd = [sys.executable, "-m", "infkit.serve.ray.deploy", "--address", address, "--config", str(config_path)]
    cmd += ["--timeout", str(server.start_timeout)] + (["--strict"] if strict else [])
    with open(Path(log_dir) / "deploy.err", "wb") as err:
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=err, timeout=server.start_timeout + 60)
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"error": f"the deploy exited with code {done.returncode} and said nothing"}
    if "error" in result:
        alive = "" if proc is None or proc.poll() is None else f" (Ray's head exited with code {proc.returncode})"
        raise InfkitError(
            f"Ray Serve could not deploy the models{alive}: {result['error']}; stopped. Logs: {log_dir}/deploy.err, "
            f"{log_dir}/ray.out and Ray's own under {Path(log_dir).parent / 'ray'}/session_latest/logs"
        )
    if result["failed"] and (strict or not result["running"]):
        raise InfkitError(
            "; ".join(f"model {m} ({m}.mar) could not be loaded: {why}" for m, why in result["failed"].items())
            + "; Ray Serve stopped"
        )
    return result


def _wait_inference(server: ServerConfig, proc, state_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"{server.urls()['inference']}/ping".replace("0.0.0.0", "127.0.0.1")
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise InfkitError(
                f"Ray Serve does not answer on {url}; stopped. Logs: {state_dir / 'logs'} and "
                f"{state_dir / 'front' / 'logs'}"
            )
        time.sleep(0.3)


# -- stop and status -----------------------------------------------------------------------------
def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def our_processes(state: dict, group: bool = True) -> list[psutil.Process]:
    """Every live process of the private Ray that `state` records: its process group, the group's descendants
    (Ray's workers start sessions of their own), and any process whose environment names this state's Ray token
    (workers left behind by a head that died). Nothing else on the machine is ever included."""
    found: dict[int, psutil.Process] = {}
    if group and state.get("pgid"):
        found = {p.pid: p for p in group_tree(int(state["pgid"]))}
    token = str(Path(state["state_dir"]) / RAY_TOKEN)
    for p in psutil.process_iter():
        if p.pid in found:
            continue
        try:
            if p.environ().get("RAY_AUTH_TOKEN_PATH") == token:
                found[p.pid] = p
        except psutil.Error:
            continue
    return [p for p in found.values() if _alive(p)]


def stop(state_dir: Path, timeout: float = 2.0):
    """Stop what start started from state_dir: the private Ray's whole process group (SIGTERM, then SIGKILL after
    `timeout` s), or on an existing cluster our applications only. A state naming a process infkit did not start is
    removed and nothing is signalled. (SIGTERM ends nginx, the raylet's agents and the replicas at once, but Ray's
    head, GCS, Serve's controller, proxy and HAProxyManager were all still running 10 s after it: a longer wait
    only delays the SIGKILL. A private Ray keeps nothing that a SIGKILL loses.)"""
    from infkit.serve.core.process import Stopped

    state_dir = Path(state_dir)
    state = read_state(state_dir)
    if not state:
        return Stopped(False, f"no Ray Serve running from {state_dir}")
    if state.get("external"):
        cmd = [sys.executable, "-m", "infkit.serve.ray.deploy", "--address", state["external"]]
        cmd += ["--delete", ",".join(state.get("applications") or []), "--timeout", "60"]
        from infkit.serve.ray.deploy import cluster_env

        env = cluster_env(ray_env(state_dir, RaySettings()))
        subprocess.run(cmd, env=env, capture_output=True, timeout=120)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        return Stopped(True, f"Ray Serve applications deleted from {state['external']} (the cluster keeps running)")
    why = verdict(state)
    # the group and its descendants only while the recorded leader is still ours (a reused pid is never trusted)
    procs = our_processes(state, group=why == "ours")
    if why != "ours" and not procs:
        return Stopped(False, forget(state_dir, state, why))

    # Ray's workers (Serve's controller, proxy and replicas) run in sessions of their own: the whole tree is
    # signalled, each process checked to be the one found (psutil compares start times before signalling)
    def send(sig: int) -> bool:
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                continue
        return bool(procs)

    def gone() -> bool:
        procs[:] = [p for p in procs if _alive(p)]
        return not procs

    if not terminate(send, gone, int(state["pid"]), timeout):
        raise InfkitError(f"processes {', '.join(str(p.pid) for p in procs)} survived SIGKILL; check `ps -p`")
    for folder in (REPLICA_TMP, HAPROXY_DIR):
        shutil.rmtree(state_dir / folder, ignore_errors=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return Stopped(True, "Ray Serve stopped")


def status(state_dir: Path) -> dict:
    """{'running': bool, ...}: the saved state and whether the inference port answers /ping."""
    state_dir = Path(state_dir)
    # applications on a cluster (serve.ray.address) have no process of ours to check
    state, not_running = running_state(state_dir, lambda s: "ours" if s.get("external") else verdict(s))
    if state is None:
        return not_running
    server = ServerConfig.from_mapping(state["server"])
    keys = read_keys(state_dir / KEY_FILE)
    url = f"{server.urls()['inference']}/ping".replace("0.0.0.0", "127.0.0.1")
    try:
        ping = requests.get(url, headers=auth_header(keys.get("inference")), timeout=5).json().get("status")
    except (requests.RequestException, ValueError) as exc:
        ping = f"unknown ({type(exc).__name__})"
    return {"running": True, **state, "ping": ping}
