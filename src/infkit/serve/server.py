"""TorchServe lifecycle: write config.properties, start (ready when workers are READY), status, stop.

Everything a running server needs lives in one state folder: config.properties, key_file.json
(token authorization), server.json (pid, process group, addresses) and TorchServe's logs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from infkit.errors import InfkitError

STATE_FILE = "server.json"
KEY_FILE = "key_file.json"


# -- configuration -------------------------------------------------------------------------------
def config_properties(server: Mapping[str, Any], model_store: Path) -> str:
    """config.properties with safe defaults: loopback, token auth, model API off, local URLs only."""
    host = server["address"]
    store = Path(model_store).resolve()
    lines = {
        "inference_address": f"http://{host}:{server['inference_port']}",
        "management_address": f"http://{host}:{server['management_port']}",
        "metrics_address": f"http://{host}:{server['metrics_port']}",
        "grpc_inference_address": host,
        "grpc_inference_port": server["grpc_inference_port"],
        "grpc_management_address": host,
        "grpc_management_port": server["grpc_management_port"],
        "model_store": store,
        "enable_model_api": str(bool(server.get("model_api", False))).lower(),
        # only archives from the local model store may ever be registered
        "allowed_urls": f"file://{store}/.*",
        "metrics_mode": "prometheus",
        "disable_token_authorization": str(not server.get("token_auth", True)).lower(),
        "token_expiration_min": int(server.get("token_expiration_min", 1440)),
        "enable_envvars_config": "false",
        "install_py_dep_per_model": "false",
        "default_workers_per_model": 1,
        "vmargs": f"-Xmx{server.get('java_heap', '1g')} -XX:+ExitOnOutOfMemoryError",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def urls(server: Mapping[str, Any]) -> dict[str, str]:
    host = server["address"]
    return {
        "inference": f"http://{host}:{server['inference_port']}",
        "management": f"http://{host}:{server['management_port']}",
        "metrics": f"http://{host}:{server['metrics_port']}/metrics",
        "grpc_inference": f"{host}:{server['grpc_inference_port']}",
    }


def read_keys(key_file: Path) -> dict[str, str]:
    """{'inference': key, 'management': key} from TorchServe's key file; {} when there is none (token
    auth off) or it is not fully written yet."""
    try:
        data = json.loads(Path(key_file).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {kind: data[kind]["key"] for kind in ("inference", "management")
            if isinstance(data.get(kind), dict) and "key" in data[kind]}


def inference_token(key_file: Path) -> str | None:
    """The inference key clients send as `Authorization: Bearer <key>`, or None."""
    return read_keys(key_file).get("inference")


def auth_header(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def live_tests_command(server: Mapping[str, Any], model: str, key_file: str | Path, dataset: str = "digits",
                       tests_dir: str | Path = "tests/test_serve") -> list[str]:
    """`pytest --public_ip ... tests/test_serve` against this server, as a user would run it."""
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests_dir),
            "--public_ip", server["address"], "--model", model, "--dataset", dataset,
            "--http_port", str(server["inference_port"]), "--grpc_port", str(server["grpc_inference_port"]),
            "--metrics_port", str(server["metrics_port"]), "--key_file", str(key_file)]


# -- process state -------------------------------------------------------------------------------
def _state(state_dir: Path) -> dict | None:
    path = Path(state_dir) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


PORT_KEYS = ("inference_port", "management_port", "metrics_port", "grpc_inference_port", "grpc_management_port")


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


def free_ports(host: str = "127.0.0.1") -> dict[str, int]:
    """One free port for each of PORT_KEYS, picked by the OS."""
    socks = [socket.socket() for _ in PORT_KEYS]
    try:
        for s in socks:
            s.bind((host, 0))
        return {k: s.getsockname()[1] for k, s in zip(PORT_KEYS, socks)}
    finally:
        for s in socks:
            s.close()


def handler_error(state_dir: Path) -> str | None:
    """An infkit error a worker raised while loading its model (it will not get better by retrying)."""
    path = Path(state_dir) / "logs" / "model_log.log"
    if not path.is_file():
        return None
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if "InfkitError:" in line:
            return line.split("InfkitError:", 1)[1].strip()
    return None


def worker_errors(state_dir: Path, max_lines: int = 12) -> str:
    """The last error lines of TorchServe's logs: what a failed start shows the user."""
    lines: list[str] = []
    for name in ("model_log.log", "ts_log.log", "torchserve.out"):
        path = Path(state_dir) / "logs" / name
        if path.is_file():
            text = path.read_text(errors="replace").splitlines()
            hits = [ln for ln in text if any(w in ln for w in ("ERROR", "Error", "Exception", "error:"))]
            lines += [f"{name}: {ln.strip()[:300]}" for ln in hits[-max_lines:]]
    return "\n".join(lines[-max_lines:]) or "(no error lines in the logs)"


# -- lifecycle -----------------------------------------------------------------------------------
def _models_to_load(model_store: Path, models: list[str]) -> list[str]:
    available = sorted(p.stem for p in Path(model_store).glob("*.mar"))
    if not available:
        raise InfkitError(f"no .mar files in {str(model_store)!r}; package a model first with src/package.py")
    unknown = [m for m in models if m not in available]
    if unknown:
        raise InfkitError(f"model(s) {', '.join(unknown)} not in {model_store}; available: {', '.join(available)}")
    return list(models) or available


def _describe(server: Mapping[str, Any], keys: dict[str, str], model: str) -> list[dict]:
    r = requests.get(f"{urls(server)['management']}/models/{model}",
                     headers=auth_header(keys.get("management")), timeout=5)
    r.raise_for_status()
    return r.json()


def ready(server: Mapping[str, Any], keys: dict[str, str], model: str, min_workers: int = 1) -> bool:
    try:
        info = _describe(server, keys, model)
    except (requests.RequestException, ValueError):
        return False
    workers = [w for entry in info for w in entry.get("workers", [])]
    return sum(w.get("status") == "READY" for w in workers) >= max(1, min_workers)


def start(server: Mapping[str, Any], model_store: Path, state_dir: Path, models: list[str] | None = None,
          min_workers: int = 1, log=print) -> dict:
    """Start TorchServe; return its state once every model has min_workers READY workers."""
    state_dir = Path(state_dir).resolve()
    model_store = Path(model_store).resolve()
    previous = _state(state_dir)
    if previous and _group_alive(previous["pgid"]):
        raise InfkitError(f"TorchServe is already running from {state_dir} (pid {previous['pid']}); "
                          "stop it first: python src/serve.py stop")
    names = _models_to_load(model_store, list(models or []))
    host = server["address"]
    for key in PORT_KEYS:
        if not port_free(host, server[key]):
            raise InfkitError(f"port {server[key]} ({key}) on {host} is in use; pick another with "
                              f"serve.server.{key}=<port>")
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    (state_dir / "tmp").mkdir(exist_ok=True)
    (state_dir / KEY_FILE).unlink(missing_ok=True)
    config = state_dir / "config.properties"
    config.write_text(config_properties(server, model_store))
    torchserve = Path(sys.executable).with_name("torchserve")
    cmd = [str(torchserve if torchserve.exists() else "torchserve"), "--start", "--foreground", "--ncs",
           "--ts-config", str(config), "--model-store", str(model_store),
           "--models", *[f"{n}={n}.mar" for n in names]]
    if not server.get("token_auth", True):
        cmd.append("--disable-token-auth")
    env = {**os.environ, "LOG_LOCATION": str(state_dir / "logs"), "METRICS_LOCATION": str(state_dir / "logs"),
           # TorchServe keeps its pid file in the temp dir: one per state folder, so servers don't collide
           "TMPDIR": str(state_dir / "tmp"), "TEMP": str(state_dir / "tmp")}
    out = open(state_dir / "logs" / "torchserve.out", "ab")
    proc = subprocess.Popen(cmd, cwd=state_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    state = {"pid": proc.pid, "pgid": os.getpgid(proc.pid), "models": names, "urls": urls(server),
             "server": dict(server), "state_dir": str(state_dir), "key_file": str(state_dir / KEY_FILE),
             "config": str(config), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    log(f"starting TorchServe (pid {proc.pid}) with {', '.join(names)}; logs in {state_dir / 'logs'}")

    deadline = time.monotonic() + float(server.get("start_timeout", 240))
    pending = set(names)
    last_note = 0.0
    while pending:
        if proc.poll() is not None:
            stop(state_dir)
            raise InfkitError(f"TorchServe exited with code {proc.returncode} while starting:\n"
                              f"{worker_errors(state_dir)}")
        fatal = handler_error(state_dir)
        if fatal:
            stop(state_dir)
            raise InfkitError(f"a worker could not load its model: {fatal}; TorchServe stopped "
                              f"(logs in {state_dir / 'logs'})")
        if time.monotonic() > deadline:
            errors = worker_errors(state_dir)
            stop(state_dir)
            raise InfkitError(f"models {', '.join(sorted(pending))} had no READY worker after "
                              f"{server.get('start_timeout', 240)} s; TorchServe stopped. From its logs:\n{errors}")
        keys = read_keys(state_dir / KEY_FILE)
        if server.get("token_auth", True) and not keys:
            time.sleep(0.5)
            continue
        pending = {m for m in pending if not ready(server, keys, m, min_workers)}
        if pending and time.monotonic() - last_note > 10:
            log(f"  waiting for workers of {', '.join(sorted(pending))} ...")
            last_note = time.monotonic()
        time.sleep(0.5)
    return state


def stop(state_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the server started from state_dir and every process of its group; True if one was running."""
    state_dir = Path(state_dir)
    state = _state(state_dir)
    if not state:
        return False
    pgid = int(state["pgid"])
    was_running = _group_alive(pgid)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if not _group_alive(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + wait
        while time.monotonic() < end and _group_alive(pgid):
            try:  # reap our own child when stop runs in the process that started it
                os.waitpid(int(state["pid"]), os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
    if _group_alive(pgid):
        raise InfkitError(f"processes of group {pgid} survived SIGKILL; check `ps -g {pgid}`")
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return was_running


def status(state_dir: Path) -> dict:
    """{'running': bool, ...state, 'models': {name: [worker statuses]}}."""
    state = _state(Path(state_dir))
    if not state or not _group_alive(int(state["pgid"])):
        return {"running": False, "state_dir": str(state_dir)}
    keys = read_keys(Path(state_dir) / KEY_FILE)
    models = {}
    for name in state["models"]:
        try:
            models[name] = [w.get("status") for e in _describe(state["server"], keys, name) for w in e["workers"]]
        except (requests.RequestException, ValueError, KeyError) as exc:
            models[name] = [f"unknown ({type(exc).__name__})"]
    return {"running": True, **state, "workers": models}
