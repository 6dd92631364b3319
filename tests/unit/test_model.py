"""The network factory: one place builds networks; serving never pulls in Lightning."""

import subprocess
import sys

import pytest
import torch

from infkit.errors import InfkitError
from infkit.model import create_network, load_eager, save_eager


def test_serving_modules_do_not_import_lightning():
    """What a TorchServe worker imports: the handler file, the service, the explainer, the network factory."""
    from infkit.resources import handler_file

    code = (
        f"import runpy, sys; runpy.run_path({str(handler_file())!r}); "
        "import infkit.serve.core.service, infkit.serve.core.explain, infkit.model; "
        "bad = sorted(m for m in ('lightning', 'torchmetrics', 'pytorch_lightning') if m in sys.modules); "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"serving imports {proc.stdout.strip()} {proc.stderr[-500:]}"


def test_exportable_network_takes_the_trained_weights(tmp_path):
    trained = create_network("resnet18", 10, 3)
    path = save_eager(trained, "resnet18", 10, 3, tmp_path / "m.eager.pt")
    served = load_eager(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(trained.eval()(x), served(x), atol=1e-5)
    assert not served.training


def test_unknown_model_names_close_matches():
    with pytest.raises(InfkitError, match=r"unknown timm model 'resnet_18'.*resnet18"):
        create_network("resnet_18", 10)
