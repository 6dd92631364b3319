"""REST predictions against a live TorchServe (the seed project's test, made strict)."""

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.test_serve.conftest import label_of


def predict(live, data=None, headers=None):
    return requests.post(f"{live.inference}/predictions/{live.model}", data=data,
                         headers={**live.headers, **(headers or {})}, timeout=60)


def test_serve_inference(live):
    """Every image in tests/resources/<dataset>/<idx>_<label>.png is predicted as its label."""
    wrong = []
    for path in live.images:
        r = predict(live, path.read_bytes())
        assert r.status_code == 200, r.text
        response = r.json()
        top = next(iter(response))
        print(f"Testing image: {path}\nResponse: {response}\nPredicted label: {top} and Confidence: {response[top]}\n"
              + "=" * 70 + "\n")
        probs = list(response.values())
        assert len(response) == min(5, len(response)) and probs == sorted(probs, reverse=True)
        assert 0.0 <= probs[-1] <= probs[0] <= 1.0
        if top != label_of(path):
            wrong.append(f"{path.name}: predicted {top}")
    assert not wrong, wrong


def test_multipart_and_json_base64_give_the_same_answer(live):
    path = live.images[0]
    raw = predict(live, path.read_bytes()).json()
    multipart = requests.post(f"{live.inference}/predictions/{live.model}", files={"data": path.read_bytes()},
                              headers=live.headers, timeout=60).json()
    as_json = predict(live, json.dumps({"data": base64.b64encode(path.read_bytes()).decode()}),
                      headers={"Content-Type": "application/json"}).json()
    assert next(iter(raw)) == next(iter(multipart)) == next(iter(as_json)) == label_of(path)


def test_batch_with_one_corrupt_image(live):
    """8 requests at once (TorchServe batches them): 7 correct predictions and one 4xx for the corrupt one."""
    bodies = [p.read_bytes() for p in (live.images * 8)[:8]]
    bodies[3] = b"\x89PNG\r\n\x1a\n this is not really a png"
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda b: predict(live, b), bodies))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 7, statuses
    assert 400 <= statuses[3] < 500, statuses
    assert "image" in responses[3].json()["message"]
    for i, r in enumerate(responses):
        if i != 3:
            assert next(iter(r.json())) == label_of((live.images * 8)[i])


def test_empty_body_is_a_400(live):
    r = predict(live, b"", headers={"Content-Type": "application/octet-stream"})
    assert 400 <= r.status_code < 500


def test_request_without_token_is_refused(live):
    if not live.token:
        import pytest

        pytest.skip("the server runs without token authorization")
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        r = requests.post(f"{live.inference}/predictions/{live.model}", data=live.images[0].read_bytes(),
                          headers=headers, timeout=30)
        # TorchServe answers a missing or wrong token with 400 InvalidKeyException
        assert 400 <= r.status_code < 500 and "Token Authorization failed" in r.text, r.text
