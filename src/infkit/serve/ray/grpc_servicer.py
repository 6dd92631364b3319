"""The gRPC servicer registration that Serve's gRPC proxy imports by name (serve_config.yaml's
grpc_options.grpc_servicer_functions), importable wherever infkit is installed: on an existing cluster's nodes
(serve.ray.address), under KubeRay, or with `serve deploy`, where infkit's state folder (and the stubs generated
there at start) is not on the proxy's PYTHONPATH. The stubs are generated from infkit's proto/inference.proto on
first import, into a temporary folder removed once they are imported."""

from __future__ import annotations

import shutil
import tempfile

from infkit.serve.core.grpc_client import generate_stubs

_where = tempfile.mkdtemp(prefix="infkit-grpc-")
try:
    _messages, _services = generate_stubs(_where)
finally:
    shutil.rmtree(_where, ignore_errors=True)

add_InferenceAPIsServiceServicer_to_server = _services.add_InferenceAPIsServiceServicer_to_server
