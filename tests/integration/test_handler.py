"""The handler and its service on a real compiled model, without the Java server: batching, padding,
per-item errors, explanations. The context object plays TorchServe's part (as TorchServe's own
mock_context does in its handler tests)."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infkit.serve.core.runtime import ServedModel
from infkit.serve.core.service import Service

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = sorted((ROOT / "tests/resources/digits").glob("*.png"))
pytestmark = pytest.mark.slow


class Context:
    def __init__(self, model_dir, explain=(), headers=None):
        self.system_properties = {"model_dir": str(model_dir)}
        self.model_yaml_config = {"minWorkers": 1, "handler": {"topk": 3}}
        self.explain = set(explain)
        self.headers = headers or {}  # index -> {header: value}, names as the client spelled them
        self.statuses = {}

    def get_request_header(self, idx, key):
        if key == "explain":
            return "True" if idx in self.explain else None
        return self.headers.get(idx, {}).get(key)

    def set_response_status(self, code=200, phrase="", idx=0):
        self.statuses[idx] = (code, phrase)


@pytest.fixture(scope="module")
def compiled(onnx_compiled, torchscript_compiled, int8_compiled, export_compiled):
    """The session's compiles of the trained digits model, one per backend (the live server serves the same)."""
    return {
        "onnx": onnx_compiled,
        "torchscript": torchscript_compiled,
        "onnx_int8": int8_compiled.manifest_path.parent,
        "export": export_compiled.manifest_path.parent,
    }


def load_handler():
    spec = importlib.util.spec_from_file_location("infkit_handler", ROOT / "handlers/infkit_handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.InfkitHandler()


@pytest.mark.parametrize("backend", ["onnx", "torchscript", "onnx_int8", "export"])
def test_batch_with_one_corrupt_item(compiled, backend):
    handler = load_handler()
    ctx = Context(compiled[backend])
    handler.initialize(ctx)
    items = [{"body": p.read_bytes()} for p in RESOURCES[:7]]
    items.insert(2, {"body": b"\x89PNG\r\n\x1a\nbroken"})
    out = handler.handle(items, ctx)
    assert len(out) == 8
    assert ctx.statuses == {2: (400, "Bad Request")}
    assert out[2]["code"] == 400
    for i, response in enumerate(out):
        if i != 2:
            assert len(response) == 3 and list(response.values()) == sorted(response.values(), reverse=True)
            assert abs(sum(response.values())) <= 1.0 + 1e-6


def test_form_typed_bodies_in_one_batch(compiled):
    """What nginx hands on for `curl --data-binary` (raw bytes as application/octet-stream) and what TorchServe alone
    leaves of it (form fields under the client's Content-Type). A client's X-Infkit-Content-Type changes nothing."""
    handler = load_handler()
    form, raw = "application/x-www-form-urlencoded", "application/octet-stream"
    headers = {
        0: {"Content-Type": raw},
        1: {"Content-Type": raw, "X-Infkit-Content-Type": form},
        2: {"Content-Type": form},
    }
    ctx = Context(compiled["onnx"], headers=headers)
    handler.initialize(ctx)
    items = [{"body": RESOURCES[0].read_bytes()}, {"body": b"a=b&c=d"}, {"garbled\x89": b""}]
    out = handler.handle(items, ctx)
    assert len(out[0]) == 3 and 0 not in ctx.statuses  # the image is answered (the model's top 3)
    assert ctx.statuses == {1: (415, "Unsupported Media Type"), 2: (415, "Unsupported Media Type")}
    assert all("--data-binary" in out[i]["message"] for i in (1, 2))
    assert "sent as form data" not in out[1]["message"] and "sent as form data" in out[2]["message"]


def test_batched_results_equal_single_requests(compiled):
    service = Service(compiled["onnx"], threads=1)
    items = [p.read_bytes() for p in RESOURCES]
    batched = service.handle(items, [False] * len(items), lambda *a: None)
    singles = [service.handle([it], [False], lambda *a: None)[0] for it in items]
    for b, s in zip(batched, singles):
        assert list(b) == list(s)
        assert np.allclose(list(b.values()), list(s.values()), atol=1e-5)


def test_static_buckets_pad_and_drop(compiled):
    model = ServedModel.load(compiled["torchscript"])
    calls = []
    real = dict(model.runners)
    model.runners = {bs: (lambda x, bs=bs: calls.append(len(x)) or real[None](x)) for bs in (1, 4)}
    x = torch.randn(6, 3, 32, 32)
    out = model.logits(x)
    assert out.shape == (6, 10) and calls == [4, 4]
    assert torch.allclose(out, real[None](x), atol=1e-4)


def test_explanations_mixed_with_predictions(compiled):
    handler = load_handler()
    ctx = Context(compiled["onnx"], explain={1})
    handler.initialize(ctx)
    image = RESOURCES[0].read_bytes()
    out = handler.handle([{"body": image}, {"data": image, "target": b"4"}], ctx)
    assert len(out[0]) == 3
    assert out[1]["target"] == 4 and out[1]["label"] == "4"
    grid = np.asarray(out[1]["attributions"])
    assert grid.shape == (32, 32) and np.isfinite(grid).all() and np.abs(grid).sum() > 0


def test_sha_mismatch_refuses_to_load(compiled, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(compiled["onnx"], copy)
    artifact = next(copy.glob("*.onnx"))
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    from infkit.errors import InfkitError

    with pytest.raises(InfkitError, match="sha256"):
        Service(copy)


def test_rgba_and_16bit_inputs_are_served(compiled):
    service = Service(compiled["onnx"], threads=1)
    image = Image.open(RESOURCES[0])
    items = []
    for mode in ("RGBA", "P", "I;16"):
        buf = io.BytesIO()
        (image.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(image).astype(np.uint16) * 257)).save(
            buf, format="PNG"
        )
        items.append(buf.getvalue())
    out = service.handle(items, [False] * 3, lambda *a: pytest.fail(f"unexpected error status {a}"))
    assert all(len(r) == 5 for r in out)


@pytest.mark.parametrize("backend", ["onnx", "onnx_int8"])
def test_onnx_sessions_get_the_thread_budget_and_spin_only_on_cores_of_their_own(compiled, backend):
    measured = json.loads((compiled[backend] / "manifest.json").read_text())["backend_options"]["allow_spinning"]
    for shared in (True, False):
        model = ServedModel.load(compiled[backend], threads=1, shared_cores=shared)
        options = model.runners[None].session.get_session_options()
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
        assert options.graph_optimization_level.name == "ORT_ENABLE_ALL"
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
        assert spinning == ("1" if measured and not shared else "0")


def test_handler_decides_core_sharing_from_model_config(compiled):
    """1 worker with cores // 1 threads leaves no core for the frontend: the handler turns spinning off."""
    handler = load_handler()
    ctx = Context(compiled["onnx"])
    handler.initialize(ctx)
    session = handler.service.model.runners[None].session
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("backend, torch_threads", [("onnx", 1), ("onnx_int8", 1), ("torchscript", 2)])
def test_torch_threads_only_where_torch_runs_the_model(compiled, backend, torch_threads):
    """An ONNX Runtime artifact gets the thread budget in its session and torch one thread for the batch's
    normalisation: torch's idle OpenMP workers would otherwise busy-wait on the cores the session needs."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model = ServedModel.load(compiled[backend], threads=2)
        assert torch.get_num_threads() == torch_threads
        if backend.startswith("onnx"):
            assert model.runners[None].session.get_session_options().intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)
