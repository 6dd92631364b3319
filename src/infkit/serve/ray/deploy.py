"""Deploy serve_config.yaml onto a Ray cluster (run as its own short-lived process by infkit.serve.ray.lifecycle):

    python -m infkit.serve.ray.deploy --address 127.0.0.1:6379 --config STATE/serve_config.yaml [--strict]
    python -m infkit.serve.ray.deploy --address ... --delete infkit,infkit-digits_resnet18_onnx

The model applications go first: each one RUNNING or its failure named as soon as Serve reports it (strict: the
first failure ends the deploy, exit 2; otherwise failed models are left out). Then the ingress with the models that
run. Prints one JSON line: {"running": [...], "failed": {model: reason}}. The file is rewritten without the models
that failed, so it always describes what runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from infkit.serve.ray.config import INGRESS_APP, MODEL_APP_PREFIX, write_serve_config

FAILED = ("DEPLOY_FAILED", "UNHEALTHY")
#: what infkit sets for its private Ray only. On an existing cluster (serve.ray.address) the user's own values, or
#: none, apply: the cluster's mode (single-machine or not) and its token (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH, or
#: RAY_AUTH_TOKEN / ~/.ray/auth_token) are the cluster's, not the state folder's
PRIVATE_RAY_ONLY = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")


def cluster_env(env: dict, user: dict | None = None) -> dict:
    """`env` (lifecycle.ray_env's) for a process that talks to an existing cluster: PRIVATE_RAY_ONLY as the user
    has them (`user`: os.environ), else unset."""
    user = os.environ if user is None else user
    out = {k: v for k, v in env.items() if k not in PRIVATE_RAY_ONLY}
    out.update({k: user[k] for k in PRIVATE_RAY_ONLY if k in user})
    return out


def _connect(address: str, timeout: float) -> None:
    import ray

    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, namespace="serve")
            return
        except (ConnectionError, RuntimeError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _schema(config: dict):
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(config)


def _statuses(names: set[str]) -> dict[str, tuple[str, str]]:
    from ray import serve

    apps = serve.status().applications
    out = {}
    for name in names:
        app = apps.get(name)
        if app is None:
            continue
        # the deployment's message carries the replica's error; the application's only says which deployment failed
        message = "\n".join(d.message for d in app.deployments.values() if d.message) or app.message or ""
        out[name] = (str(app.status).rsplit(".", 1)[-1], message)
    return out


def _reason(message: str) -> str:
    """The error infkit raised while loading (the last line of Serve's message naming it), else Serve's message."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    for marker in ("InfkitError: ", "Error: "):
        named = [ln.split(marker, 1)[1] for ln in lines if marker in ln]
        if named:
            return named[-1]
    return message.strip()


def _wait(client, names: set[str], timeout: float, strict: bool) -> dict[str, str]:
    """{app: reason} of those that failed; returns when every app is RUNNING or failed."""
    deadline = time.monotonic() + timeout
    failed: dict[str, str] = {}
    while True:
        statuses = _statuses(names)
        for name, (status, message) in statuses.items():
            if status in FAILED and name not in failed:
                failed[name] = _reason(message) or status
                if strict:
                    return failed
        pending = {n for n in names if n not in failed and statuses.get(n, ("",))[0] != "RUNNING"}
        if not pending:
            return failed
        if time.monotonic() > deadline:
            failed.update({n: f"not RUNNING after {timeout:g} s ({statuses.get(n, ('unknown',))[0]})" for n in pending})
            return failed
        time.sleep(0.3)


def deploy(address: str, config_path: Path, timeout: float, strict: bool) -> dict:
    from ray.serve._private.api import serve_start

    config = yaml.safe_load(Path(config_path).read_text())
    _connect(address, timeout)
    client = serve_start(
        http_options=config["http_options"],
        grpc_options=config["grpc_options"],
        global_logging_config=config.get("logging_config"),
        proxy_location=config.get("proxy_location"),
    )
    apps = config["applications"]
    models = [a for a in apps if a["name"] != INGRESS_APP]
    ingress = next((a for a in apps if a["name"] == INGRESS_APP), None)
    client.deploy_apps(_schema({**config, "applications": models}))
    failed_apps = _wait(client, {a["name"] for a in models}, timeout, strict)
    failed = {name[len(MODEL_APP_PREFIX) :]: reason for name, reason in failed_apps.items()}
    running = [a for a in models if a["name"] not in failed_apps]
    if failed and (strict or not running):
        return {"running": [], "failed": failed}
    if ingress is not None:  # None: one model, whose application answers every route itself (config.serve_config)
        served = ingress["args"]["models"]
        models_left = {m: v for m, v in served.items() if m not in failed}
        final = {**config, "applications": [*running, {**ingress, "args": {**ingress["args"], "models": models_left}}]}
        write_serve_config(config_path.parent, final)
        client.deploy_apps(_schema(final))  # declarative: the failed model applications are deleted by this
        failed_ingress = _wait(client, {INGRESS_APP}, timeout, True)
        if failed_ingress:
            raise RuntimeError(f"the ingress application did not start: {failed_ingress[INGRESS_APP]}")
    client.wait_for_proxies_serving(wait_for_applications_running=True)
    return {"running": [a["name"][len(MODEL_APP_PREFIX) :] for a in running], "failed": failed}


def delete(address: str, names: list[str], timeout: float) -> dict:
    from ray import serve

    _connect(address, timeout)
    present = set(serve.status().applications)
    gone = [n for n in names if n in present]
    for name in gone:
        serve.delete(name)
    return {"deleted": gone}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infkit.serve.ray.deploy")
    p.add_argument("--address", required=True)
    p.add_argument("--config", type=Path)
    p.add_argument("--delete", default=None, help="comma-separated application names to delete")
    p.add_argument("--timeout", type=float, default=240)
    p.add_argument("--strict", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.delete is not None:
            out = delete(args.address, [n for n in args.delete.split(",") if n], args.timeout)
        else:
            out = deploy(args.address, args.config, args.timeout, args.strict)
    except Exception as exc:  # one line for the caller to show; the traceback stays in this process's stderr
        import traceback

        traceback.print_exc()
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 2 if out.get("failed") and not out.get("running") and args.delete is None else 0


if __name__ == "__main__":
    sys.exit(main())
