"""A gRPC client for TorchServe's Predictions RPC, with stubs generated from proto/ at first use."""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from infkit.errors import InfkitError
from infkit.serve.core.auth import auth_header


def generate_stubs(out_dir: str | Path | None = None, proto_dir: Path | None = None):
    """Compile proto/inference.proto with grpc_tools into out_dir; return (messages, services) modules."""
    from grpc_tools import protoc

    from infkit.resources import proto_dir as default_proto_dir

    proto_dir = Path(proto_dir or default_proto_dir())
    out = Path(out_dir or tempfile.mkdtemp(prefix="infkit-grpc-"))
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/empty.proto
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(proto_dir / "inference.proto"),
        ]
    )
    if code != 0:
        raise InfkitError(f"protoc failed ({code}) on {proto_dir / 'inference.proto'}")
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module("inference_pb2"), importlib.import_module("inference_pb2_grpc")


class PredictionClient:
    def __init__(self, target: str, token: str | None = None, stubs_dir: str | Path | None = None):
        import grpc

        self.pb2, pb2_grpc = generate_stubs(stubs_dir)
        self.channel = grpc.insecure_channel(target)
        self.stub = pb2_grpc.InferenceAPIsServiceStub(self.channel)
        # gRPC metadata keys are lower-case
        self.metadata = [(k.lower(), v) for k, v in auth_header(token).items()]

    def ping(self, timeout: float = 10) -> str:
        from google.protobuf import empty_pb2

        return self.stub.Ping(empty_pb2.Empty(), timeout=timeout, metadata=self.metadata).health

    def predict(self, model: str, image: bytes, timeout: float = 30, **fields: bytes) -> bytes:
        request = self.pb2.PredictionsRequest(model_name=model, input={"data": image, **fields})
        return self.stub.Predictions(request, timeout=timeout, metadata=self.metadata).prediction

    def close(self) -> None:
        self.channel.close()
