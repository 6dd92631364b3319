"""Captum Integrated Gradients through POST /explanations/<model>, and the Prometheus metrics endpoint."""

import math

import requests

from tests.test_serve.conftest import label_of


def explain(live, path, **fields):
    files = {"data": path.read_bytes(), **{k: (None, str(v)) for k, v in fields.items()}}
    r = requests.post(f"{live.inference}/explanations/{live.model}", files=files, headers=live.headers, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_explanation_of_the_predicted_class(live):
    path = live.images[0]
    out = explain(live, path)
    assert out["label"] == label_of(path) and out["target"] == out["predicted"]
    grid = out["attributions"]
    assert len(grid) > 1 and all(len(row) == len(grid[0]) for row in grid)
    values = [v for row in grid for v in row]
    assert all(math.isfinite(v) for v in values) and any(v != 0 for v in values)


def test_explanation_of_a_requested_target(live):
    path = live.images[0]
    other = next(label_of(p) for p in live.images if label_of(p) != label_of(path))
    out = explain(live, path, target=other)
    assert out["label"] == other and out["predicted"] != out["target"]


def test_metrics_endpoint_counts_this_model(live):
    requests.post(
        f"{live.inference}/predictions/{live.model}", data=live.images[0].read_bytes(), headers=live.headers, timeout=60
    ).raise_for_status()
    text = requests.get(live.metrics, timeout=30).text
    counters = [
        line
        for line in text.splitlines()
        if line.startswith("ts_inference_requests_total") and f'model_name="{live.model}"' in line
    ]
    assert counters and float(counters[0].rsplit(" ", 1)[1]) >= 1


def test_explain_command_writes_side_by_side_png(live, tmp_path):
    import json

    from PIL import Image

    from infkit.cli import explain as cli

    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": live.token}} if live.token else {}))
    out = tmp_path / "overlay.png"
    code = cli.main(
        [
            "--url",
            live.inference,
            "--model",
            live.model,
            "--image",
            str(live.images[0]),
            "--key-file",
            str(key_file),
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.is_file()
    width, height = Image.open(out).size
    assert width > height > 200  # two panels side by side
    assert (
        cli.main(
            [
                "--url",
                live.inference,
                "--model",
                live.model,
                "--image",
                str(tmp_path / "missing.png"),
                "--key-file",
                str(key_file),
            ]
        )
        == 2
    )
