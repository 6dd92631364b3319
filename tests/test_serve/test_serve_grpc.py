"""TorchServe's Predictions RPC, with stubs generated from proto/inference.proto."""

import json

import grpc
import pytest

from infkit.serve.core.grpc_client import PredictionClient
from tests.test_serve.conftest import label_of


@pytest.fixture(scope="module")
def client(live, tmp_path_factory):
    c = PredictionClient(f"{live.host}:{live.grpc_port}", live.token, tmp_path_factory.mktemp("grpc_stubs"))
    yield c
    c.close()


def test_ping(client):
    assert json.loads(client.ping())["status"] == "Healthy"


def test_grpc_predictions(live, client):
    for path in live.images:
        response = json.loads(client.predict(live.model, path.read_bytes()))
        assert next(iter(response)) == label_of(path), (path.name, response)


def test_grpc_bad_image_is_an_error_body(live, client):
    response = json.loads(client.predict(live.model, b"not an image"))
    assert 400 <= response["code"] < 500


def test_grpc_without_token_is_refused(live, tmp_path_factory):
    if not live.token:
        pytest.skip("the server runs without token authorization")
    anonymous = PredictionClient(f"{live.host}:{live.grpc_port}", None, tmp_path_factory.mktemp("grpc_anon"))
    with pytest.raises(grpc.RpcError) as err:
        anonymous.predict(live.model, live.images[0].read_bytes())
    anonymous.close()
    assert err.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
