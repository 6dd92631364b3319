"""A running TorchServe named on the command line: pytest --public_ip 127.0.0.1 --model NAME tests/test_serve"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from infkit.serve.core.auth import auth_header, inference_token

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


@dataclass
class LiveServer:
    host: str
    model: str
    http_port: int
    grpc_port: int
    metrics_port: int
    token: str | None
    images: list[Path]

    @property
    def inference(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def headers(self) -> dict[str, str]:
        return auth_header(self.token)


def label_of(path: Path) -> str:
    """tests/resources/<dataset>/<idx>_<label>.png -> label"""
    return path.stem.split("_", 1)[1]


@pytest.fixture(scope="session")
def live(request) -> LiveServer:
    opt = request.config.getoption
    host, model = opt("--public_ip"), opt("--model")
    if not host:
        pytest.skip("needs a running TorchServe: pass --public_ip <address> --model <name> (see README)")
    if not model:
        pytest.fail("--public_ip given without --model: name the model to test, e.g. --model digits_resnet18_onnx")
    dataset = opt("--dataset") or model.split("_", 1)[0]
    images = sorted((RESOURCES / dataset).glob("*_*.png"))
    if not images:
        pytest.fail(f"no test images in {RESOURCES / dataset}; pass --dataset <folder under tests/resources>")
    token = opt("--token")
    if token is None:
        token = inference_token(Path(opt("--key-file")))
    return LiveServer(host, model, opt("--http-port"), opt("--grpc-port"), opt("--metrics-port"), token, images)
