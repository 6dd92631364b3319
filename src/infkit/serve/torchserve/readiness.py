"""Waiting for a starting TorchServe: every model's minWorkers READY, or the reason a model cannot load (read
from TorchServe's logs) as soon as it is logged."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from infkit.errors import InfkitError
from infkit.serve.core.auth import KEY_FILE, auth_header, read_keys
from infkit.serve.core.config import ServerConfig
from infkit.serve.torchserve import logs


# -- start ---------------------------------------------------------------------------------------
def describe(server: ServerConfig, keys: dict[str, str], model: str) -> list[dict]:
    r = requests.get(
        f"{server.urls()['management']}/models/{model}", headers=auth_header(keys.get("management")), timeout=5
    )
    r.raise_for_status()
    return r.json()


def ready_workers(server: ServerConfig, keys: dict[str, str], model: str) -> int:
    try:
        info = describe(server, keys, model)
    except (requests.RequestException, ValueError):
        return 0
    return sum(w.get("status") == "READY" for entry in info for w in entry.get("workers", []))


def wait_ready(
    server: ServerConfig, proc: subprocess.Popen, state: dict, need: dict[str, int], strict: bool, log
) -> None:
    state_dir, log_dir = Path(state["state_dir"]), Path(state["state_dir"]) / "logs"
    deadline = time.monotonic() + server.start_timeout
    pending, last_note = set(need), 0.0
    while pending:
        if proc.poll() is not None:
            raise InfkitError(
                f"TorchServe exited with code {proc.returncode} while starting:\n{logs.last_errors(log_dir)}"
            )
        failures = logs.load_failures(log_dir)
        deaths = logs.worker_deaths(log_dir)
        for model in sorted(pending):
            reason = failures.get(model)
            if reason is None and deaths.get(model, 0) >= 3:
                reason = f"its worker died {deaths[model]} times while loading:\n{logs.last_errors(log_dir, model)}"
            if reason is None:
                continue
            if strict:
                raise InfkitError(
                    f"model {model} ({model}.mar) could not be loaded: {reason}; TorchServe stopped (logs in {log_dir})"
                )
            log(f"warning: model {model} ({model}.mar) could not be loaded: {reason}; serving the others")
            state["failed"][model] = reason
            state["models"].remove(model)
            pending.discard(model)
        if not state["models"]:
            raise InfkitError(
                "no model could be loaded; TorchServe stopped: "
                + "; ".join(f"{m}: {r}" for m, r in state["failed"].items())
            )
        if time.monotonic() > deadline:
            raise InfkitError(
                f"models {', '.join(sorted(pending))} had no READY worker after {server.start_timeout:g} s;"
                f" TorchServe stopped. From its logs:\n{logs.last_errors(log_dir)}"
            )
        keys = read_keys(state_dir / KEY_FILE)
        if not server.token_auth or keys:
            pending = {m for m in pending if ready_workers(server, keys, m) < max(1, need[m])}
            if pending and time.monotonic() - last_note > 10:
                log(f"  waiting for workers of {', '.join(sorted(pending))} ...")
                last_note = time.monotonic()
        if pending:
            time.sleep(0.5)


def wait_front(server: ServerConfig, proc: subprocess.Popen, error_log: Path, timeout: float = 15.0) -> None:
    """The front answers on the inference port (TorchServe's /ping through it), or the reason it does not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(f"{server.urls()['inference']}/ping", timeout=2)
            return
        except requests.RequestException as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = error_log.read_text(errors="replace")[-800:] if error_log.exists() else "(no log)"
                raise InfkitError(
                    f"the front (nginx) does not answer on {server.urls()['inference']} ({type(exc).__name__}); "
                    f"TorchServe stopped. nginx's error log {error_log}:\n{tail}"
                ) from None
            time.sleep(0.2)
