"""ONNX and ONNX-int8 archives served by infkit.serve.core.service.Service in a process where torch cannot be imported
(the slim image, docker/Dockerfile.ray-onnx, has none): a sitecustomize on the child's PYTHONPATH puts a finder first
on sys.meta_path that raises ImportError for torch and torchvision. Its answers are compared with this process's
(torch installed), computed the way the serving core computed them before it went torch-free: torchvision's eval
transform, the artifact run on a torch tensor, torch.softmax and topk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infkit.package import run as package_stage
from infkit.utils.compose import compose_config

ROOT = Path(__file__).resolve().parents[2]
IMAGES = sorted((ROOT / "tests/resources/digits").glob("*_*.png"))

BLOCKER = '''
import sys


class NoTorch:
    """torch and torchvision do not import here, as in an image without them."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"No module named {name!r} (blocked by the torch-free test)", name=name)
        return None


sys.meta_path.insert(0, NoTorch())
'''

# runs in the child: serves every digit image, a JSON list, a corrupt image and two explanations, prints the answers
CHILD = r"""
import base64, json, sys
from pathlib import Path

try:
    import torch  # noqa: F401
except ImportError as exc:
    blocked = str(exc)
else:
    sys.exit("torch imported: the blocker does not work")
from infkit.serve.core.service import Service

model_dir, images = sys.argv[1], [Path(p).read_bytes() for p in sys.argv[2:]]
service = Service(model_dir, threads=1, topk=5)
statuses = {}
items = [{"body": b} for b in images]
items.append({"body": json.dumps({"instances": [base64.b64encode(b).decode() for b in images[:3]]}).encode()})
items.append({"body": images[0][: len(images[0]) // 2]})
answers = service.handle(items, [False] * len(items), lambda code, phrase, i: statuses.__setitem__(i, code))
explained = service.handle(
    [{"data": images[0]}, {"data": images[1], "target": b"4"}], [True, True], lambda *a: None
)
print(json.dumps({
    "blocked": blocked,
    "answers": answers,
    "statuses": statuses,
    "explained": explained,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "captum", "timm")),
}))
"""


def unpacked_archive(compiled: Path, work: Path) -> Path:
    """compile folder -> .mar (src/package.py's stage) -> the folder a worker unpacks it to, as the Ray replica does."""
    store = work / "model_store"
    packaged = package_stage.run(
        compose_config("package", [f"artifact_dir={compiled}", f"model_store={store}"], work / "package")
    )
    directory = work / "unpacked"
    with zipfile.ZipFile(store / f"{packaged.model_name}.mar") as mar:
        mar.extractall(directory)
    return directory


def serve_without_torch(model_dir: Path, tmp_path: Path) -> dict:
    blocker = tmp_path / "no_torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join([str(blocker), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir), *map(str, IMAGES)],
        env={**os.environ, "PYTHONPATH": path},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reference_answers(model_dir: Path) -> list[dict[str, float]]:
    """What the serving core answered while it ran on torch (its code before it went torch-free): the per-image uint8
    array, one tensor batch normalised with torch (ToTensor + Normalize as a multiply and a subtract), the artifact
    run on the tensor, torch.softmax. Every class's probability, highest first."""
    import torch

    from infkit.compile.batching import run_bucketed
    from infkit.serve.core.runtime import ServedModel

    model = ServedModel.load(model_dir, threads=1)
    channels = int(model.manifest["input_size"][0])
    mean = torch.tensor(model.manifest["mean"][:channels], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(model.manifest["std"][:channels], dtype=torch.float32).view(1, -1, 1, 1)
    x = torch.from_numpy(np.stack([model.to_array(Image.open(p)) for p in IMAGES]))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = x.float().mul_(1.0 / (255.0 * std)).sub_(mean / std).contiguous()
    probabilities = torch.softmax(run_bucketed(model.runners, x), dim=1)
    values, indices = probabilities.sort(dim=1, descending=True)
    return [{model.labels[i]: v for v, i in zip(vs, ix)} for vs, ix in zip(values.tolist(), indices.tolist())]


def assert_same_answers(got: dict[str, float], reference: dict[str, float], tol: float, k: int = 5) -> None:
    """`got` is the reference's top k: each label's probability equal within `tol`, highest first, and none left out
    that is more probable than one given (classes of equal probability, as int8 logits often are, may swap)."""
    assert len(got) == k, got
    for label, p in got.items():
        assert abs(p - reference[label]) <= tol, (label, p, reference[label])
    assert list(got.values()) == sorted(got.values(), reverse=True)
    kth = sorted(reference.values(), reverse=True)[k - 1]
    assert min(got.values()) >= kth - tol, (got, reference)


@pytest.fixture(scope="module")
def archives(onnx_compiled, int8_compiled, tmp_path_factory) -> dict[str, Path]:
    return {
        "onnx": unpacked_archive(onnx_compiled, tmp_path_factory.mktemp("torch-free-onnx")),
        "onnx_int8": unpacked_archive(int8_compiled.manifest_path.parent, tmp_path_factory.mktemp("torch-free-int8")),
    }


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx_int8"])
def test_an_onnx_archive_serves_in_a_process_without_torch(archives, backend, tmp_path):
    from infkit.serve.core.service import Service

    model_dir = archives[backend]
    out = serve_without_torch(model_dir, tmp_path)
    assert "blocked by the torch-free test" in out["blocked"]
    assert out["modules"] == []  # neither torch nor anything that needs it was imported

    n = len(IMAGES)
    answers, statuses = out["answers"], {int(i): c for i, c in out["statuses"].items()}
    # every digit image: its label first, five classes, and the same probabilities as the torch-era computation
    reference = reference_answers(model_dir)
    for path, got, want in zip(IMAGES, answers[:n], reference):
        assert len(got) == 5 and next(iter(got)) == path.stem.split("_", 1)[1], (path.name, got)
        assert_same_answers(got, want, tol=1e-5)
    # the JSON list is answered with a list, and the truncated image with a 4xx naming it
    assert isinstance(answers[n], list) and len(answers[n]) == 3
    for got, want in zip(answers[n], reference[:3]):
        assert_same_answers(got, want, tol=1e-5)
    assert statuses == {n + 1: 400} and "corrupt or truncated" in answers[n + 1]["message"]

    # the same Service here (torch importable) gives the same predictions and the same occlusion explanations
    here = Service(model_dir, threads=1, explain_method="occlusion")
    mine = here.handle([{"body": p.read_bytes()} for p in IMAGES], [False] * n, lambda *a: None)
    for got, want in zip(answers[:n], mine):  # the same code on the same runtime: the same numbers
        assert list(got) == list(want) and np.allclose(list(got.values()), list(want.values()), rtol=0, atol=1e-7)
    images = [IMAGES[0].read_bytes(), IMAGES[1].read_bytes()]
    explained_here = here.handle(
        [{"data": images[0]}, {"data": images[1], "target": b"4"}], [True, True], lambda *a: None
    )
    first, second = out["explained"]
    assert first["method"] == second["method"] == "occlusion" and "convergence_delta" not in first
    assert first["label"] == IMAGES[0].stem.split("_", 1)[1] and first["target"] == first["predicted"]
    assert second["target"] == 4 and second["label"] == "4" and second["predicted"] != 4
    for got, want in zip(out["explained"], explained_here):
        grid = np.asarray(got["attributions"])
        assert grid.shape == (32, 32) and np.isfinite(grid).all() and np.abs(grid).max() > 0
        np.testing.assert_allclose(grid, np.asarray(want["attributions"]), rtol=1e-4, atol=1e-4)
    # occlusion is an explanation: covering the pixels it ranks highest lowers the target's logit more than
    # covering as many it ranks lowest
    grid = np.asarray(first["attributions"])
    x = here.model.batch([here.model.to_array(Image.open(IMAGES[0]))])
    manifest = here.model.manifest
    black = -np.asarray(manifest["mean"][:3], np.float32) / np.asarray(manifest["std"][:3], np.float32)
    order = np.argsort(grid, axis=None)
    covered = []
    for pixels in (order[-100:], order[:100]):
        y = x.copy()
        rows, cols = np.unravel_index(pixels, grid.shape)
        y[0][:, rows, cols] = black[:, None]
        covered.append(float(here.model.logits(y)[0, first["target"]]))
    assert covered[0] < covered[1], covered


@pytest.mark.slow
def test_the_default_explanation_with_torch_is_still_integrated_gradients(archives):
    """Where torch and captum import (infkit:cpu), an ONNX archive's explanations are what they were."""
    from infkit.serve.core.service import Service

    service = Service(archives["onnx"], threads=1)
    (out,) = service.handle([{"data": IMAGES[0].read_bytes()}], [True], lambda *a: None)
    assert "convergence_delta" in out and "method" not in out


@pytest.mark.slow
def test_a_torch_artifact_in_a_process_without_torch_is_refused_naming_why(torchscript_compiled, tmp_path):
    blocker = tmp_path / "no_torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    code = (
        "import sys\nfrom infkit.errors import InfkitError\nfrom infkit.serve.core.service import Service\n"
        "try:\n    Service(sys.argv[1])\nexcept InfkitError as exc:\n    print(exc)\nelse:\n    sys.exit('loaded')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(torchscript_compiled)],
        env={**os.environ, "PYTHONPATH": str(blocker)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cannot run the packaged torchscript artifact: it needs torch" in proc.stdout
    assert "infkit:cpu" in proc.stdout and "compile=onnx" in proc.stdout
