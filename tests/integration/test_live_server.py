"""End to end: train digits -> compile (torchscript, onnx, onnx_int8, export) -> package (src/package.py and the
plain torch-model-archiver command) -> a real TorchServe on free loopback ports -> tests/test_serve -> stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from omegaconf import OmegaConf

from infkit.compile import run as compile_stage
from infkit.package import run as package_stage
from infkit.serve import server
from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.serve]


def plain_archiver(artifact_dir: Path, model_name: str, store: Path) -> Path:
    """The README's hand-written torch-model-archiver command, run as a user would."""
    manifest = OmegaConf.load(artifact_dir / "manifest.json")
    artifact = artifact_dir / manifest.artifacts[0].file
    extra = [artifact_dir / "manifest.json", artifact_dir / manifest.eager_weights.file,
             artifact_dir / "index_to_name.json"]
    cmd = [str(Path(sys.executable).with_name("torch-model-archiver")), "--model-name", model_name,
           "--version", "1.0", "--serialized-file", str(artifact), "--handler", str(ROOT / "handlers/infkit_handler.py"),
           "--extra-files", ",".join(map(str, extra)), "--config-file", str(ROOT / "handlers/model-config.yaml"),
           "--export-path", str(store)]
    subprocess.run(cmd, check=True, capture_output=True)
    return store / f"{model_name}.mar"


@pytest.fixture(scope="module")
def running_server(digits_trained, tmp_path_factory, int8_compiled, export_compiled):
    base = tmp_path_factory.mktemp("live")
    store = base / "model_store"
    store.mkdir()
    models = {}
    for backend in ("torchscript", "onnx"):
        out = base / f"compile-{backend}"
        compile_stage.run(compose_config("trace", ["experiment=digits_example", f"ckpt_path={digits_trained.best_ckpt}",
                                                   f"compile={backend}"], out))
        if backend == "onnx":
            cfg = compose_config("package", [f"artifact_dir={out}", f"model_store={store}"], base / "package")
            models[backend] = package_stage.run(cfg).model_name
        else:
            models[backend] = "digits_plain_torchscript"
            plain_archiver(out, models[backend], store)
    # the session's int8 and AOTInductor artifacts of the same model, packaged by src/package.py
    for backend, result in (("onnx_int8", int8_compiled), ("export", export_compiled)):
        cfg = compose_config("package", [f"artifact_dir={result.manifest_path.parent}", f"model_store={store}"],
                             base / f"package-{backend}")
        models[backend] = package_stage.run(cfg).model_name
    srv = OmegaConf.to_container(compose_config("serve", [], base).serve.server, resolve=True)
    srv.update(server.free_ports())
    state_dir = base / "serve"
    state = server.start(srv, store, state_dir, min_workers=1)
    yield {"state": state, "server": srv, "models": models, "state_dir": state_dir}
    server.stop(state_dir)


@pytest.mark.parametrize("backend", ["onnx", "torchscript", "onnx_int8", "export"])
def test_live_suite_passes(running_server, backend):
    srv = running_server["server"]
    cmd = server.live_tests_command(srv, running_server["models"][backend], running_server["state"]["key_file"],
                                    tests_dir=ROOT / "tests/test_serve")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]


# -- the benchmark against the same real server ---------------------------------------------------
def _bench(running_server, tmp_path, *extra):
    import importlib.util

    srv = running_server["server"]
    spec = importlib.util.spec_from_file_location("bench_cli", ROOT / "src/utils/benchmark.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not an image")
    images = sorted((ROOT / "tests/resources/digits").glob("*.png"))[:3] + [bad]
    url = f"http://127.0.0.1:{srv['inference_port']}/predictions/{running_server['models']['onnx']}"
    argv = ["--url", url, "--images", *map(str, images), "--warmup", "0", "--interval", "1",
            "--metrics_url", f"http://127.0.0.1:{srv['metrics_port']}/metrics",
            "--key_file", running_server["state"]["key_file"], "--out", str(tmp_path / "bench"), *extra]
    assert cli.main(argv) == 0
    (run_dir,) = (tmp_path / "bench").iterdir()
    import json

    return json.loads((run_dir / "results.json").read_text()), run_dir


def test_benchmark_counts_match_the_server(running_server, tmp_path):
    doc, run_dir = _bench(running_server, tmp_path, "--num_thread", "4", "--duration", "3")
    (level,) = doc["levels"]
    s = level["summary"]
    assert s["requests"] > 8 and level["sent_including_warmup"] == s["requests"]
    # every request the client sent is one TorchServe counted: nothing dropped, nothing invented
    assert level["server"]["requests"] == s["requests"]
    # one image in four is bad: its 415s are counted as errors, not dropped
    assert s["errors_by_status"] == {"415": s["errors"]} and s["errors"] >= s["requests"] // 4
    assert s["ok"] + s["errors"] == s["requests"]
    assert (run_dir / "levels.csv").read_text().count("\n") == 2
    assert len((run_dir / "requests.csv").read_text().splitlines()) == s["requests"] + 1
    assert (run_dir / "latency_throughput.png").stat().st_size > 10_000
    assert doc["machine"]["logical_cores"] >= 1 and doc["machine"]["versions"]["torch"]


def test_open_loop_follows_its_schedule(running_server, tmp_path):
    doc, _ = _bench(running_server, tmp_path, "--rate", "20", "--duration", "2", "--workers", "8")
    (level,) = doc["levels"]
    s = level["summary"]
    assert s["requests"] == 40  # intended sends at i/20 s for i < 40
    assert level["server"]["requests"] == 40
    assert s["client_lag"]["late_requests"] <= s["requests"]


def test_sweep_writes_one_row_per_level(running_server, tmp_path):
    doc, run_dir = _bench(running_server, tmp_path, "--sweep", "1,2", "--duration", "6", "--window", "1",
                          "--stable_windows", "2", "--tolerance", "5")
    assert [lv["level"] for lv in doc["levels"]] == [1, 2]
    assert all("windows within" in lv["stopped_by"] for lv in doc["levels"])
    for lv in doc["levels"]:
        srv = lv["server"]
        assert srv["mean_processing_ms"] > 0 and srv["mean_queue_ms"] >= 0
        assert abs(srv["mean_queue_ms"] + srv["mean_processing_ms"] - srv["mean_server_ms"]) < 1e-6
    assert (run_dir / "levels.csv").read_text().count("\n") == 3


def test_ctrl_c_stops_cleanly_and_writes_results(running_server, tmp_path):
    import json
    import signal
    import time

    srv = running_server["server"]
    url = f"http://127.0.0.1:{srv['inference_port']}/predictions/{running_server['models']['onnx']}"
    proc = subprocess.Popen([sys.executable, str(ROOT / "src/utils/benchmark.py"), "--url", url, "--num_thread", "2",
                             "--warmup", "0", "--duration", "60", "--interval", "1", "--key_file",
                             running_server["state"]["key_file"], "--metrics_url", "none",
                             "--out", str(tmp_path / "bench")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if line.startswith("pid ") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    (run_dir,) = (tmp_path / "bench").iterdir()
    level = json.loads((run_dir / "results.json").read_text())["levels"][0]
    assert level["interrupted"] and level["summary"]["requests"] > 0


# last: it stops the module's server
def test_status_then_stop_leaves_no_process(running_server):
    state_dir = running_server["state_dir"]
    info = server.status(state_dir)
    assert info["running"] and set(info["workers"]) == set(running_server["models"].values())
    assert all(s == ["READY"] for s in info["workers"].values()), info["workers"]
    pgid = info["pgid"]
    members = subprocess.run(["pgrep", "-l", "-g", str(pgid)], capture_output=True, text=True).stdout
    assert "java" in members
    assert server.stop(state_dir)
    leftover = subprocess.run(["pgrep", "-l", "-g", str(pgid)], capture_output=True, text=True).stdout
    assert leftover.strip() == "", leftover
    with pytest.raises(requests.ConnectionError):
        requests.get(running_server["state"]["urls"]["inference"] + "/ping", timeout=5)
    assert not server.status(state_dir)["running"]
