"""Cost per million inferences: the dated price table shipped in the package, the user's own table on top of it,
the formula, and the benchmark reporting it from its measured successful throughput (tiny real server)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import tomllib
import yaml

from infkit.bench import cost
from infkit.errors import InfkitError
from infkit.resources import DATA

ROOT = Path(__file__).resolve().parents[2]
#: the on-demand Linux prices of issue 20, USD per hour
ISSUE_PRICES = {
    "inf1.xlarge": 0.228,
    "inf1.2xlarge": 0.362,
    "inf2.xlarge": 0.7582,
    "inf2.8xlarge": 1.96786,
    "c6i.xlarge": 0.17,
    "c7i.xlarge": 0.1785,
    "c7g.xlarge": 0.145,
    "g4dn.xlarge": 0.526,
    "g5.xlarge": 1.006,
    "g6.xlarge": 0.8048,
}


def test_the_shipped_table_is_dated_sourced_and_in_the_package():
    path = cost.table_path()
    doc = yaml.safe_load(path.read_text())
    assert doc["instances"] == ISSUE_PRICES and doc["currency"] == "USD" and doc["region"] == "us-east-1"
    assert "offer file of 2026-09-24" in doc["source"] and "not checked" in doc["checked"]
    assert str(doc["written"]).startswith("20")
    # it ships: the wheel's package-data glob for infkit._data covers it
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["infkit._data"]
    shipped = {p.resolve() for g in globs for p in DATA.glob(g)}
    assert path.resolve() in shipped


def test_cost_per_million_is_price_over_successful_throughput():
    price = cost.lookup("c7i.xlarge")
    assert price.per_hour == 0.1785 and "2026-09-24" in price.source and "not checked" in price.source
    # 100 successful inferences per second: 360,000 an hour for $0.1785 -> $0.4958 per million
    assert price.per_million(100.0) == pytest.approx(0.1785 / 360_000 * 1e6)
    assert price.per_million(0.0) is None and price.per_million(float("nan")) is None


def test_a_user_table_overrides_and_adds(tmp_path):
    mine = tmp_path / "prices.yaml"
    mine.write_text("source: my contract\ninstances:\n  c7i.xlarge: 0.1\n  my.box: 0.05\n")
    assert cost.lookup("c7i.xlarge", mine).per_hour == 0.1 and "my contract" in cost.lookup("my.box", mine).source
    assert cost.lookup("inf2.xlarge", mine).per_hour == 0.7582  # the rest of the shipped table stays


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("instances:\n  x: -1\n", "instances.x = -1 is not a price"),
        ("instances:\n  x: cheap\n", "instances.x = 'cheap' is not a price"),
        ("just: text\n", "has no `instances:` mapping"),
        ("instances: [\n", "is not valid YAML"),
    ],
)
def test_bad_tables_name_the_value_and_the_fix(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(InfkitError, match=message):
        cost.lookup("x", bad)


def test_an_unknown_instance_names_the_known_ones():
    with pytest.raises(InfkitError) as err:
        cost.lookup("m5.large")
    said = str(err.value)
    assert "'m5.large' is not in the price table" in said and "c7i.xlarge, g4dn.xlarge" in said
    assert "--price-per-hour" in said and "--pricing FILE" in said and "\n" not in said


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.wfile.write(b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/predictions/m"
    srv.shutdown()
    srv.server_close()


def run_bench(url, tmp_path, *extra):
    from infkit.cli import bench

    image = tmp_path / "x.bin"
    image.write_bytes(b"x")
    argv = ["--url", url, "--images", str(image), "--num_thread", "1", "--warmup", "0", "--duration", "1"]
    code = bench.main([*argv, "--metrics-url", "none", "--token", "t", "--out", str(tmp_path / "b"), *extra])
    runs = list((tmp_path / "b").glob("*/results.json"))
    return code, (json.loads(runs[0].read_text()) if runs else None)


def test_the_benchmark_reports_cost_per_million_at_the_instance_price(url, tmp_path, capsys):
    code, doc = run_bench(url, tmp_path, "--instance", "c7i.xlarge")
    assert code == 0
    (level,) = doc["levels"]
    rps = level["summary"]["throughput_rps"]
    assert rps > 0 and level["cost_per_million_usd"] == pytest.approx(0.1785 / (3600 * rps) * 1e6, rel=1e-9)
    assert doc["pricing"]["instance"] == "c7i.xlarge" and doc["pricing"]["per_hour"] == 0.1785
    out = capsys.readouterr().out
    assert "per million successful inferences" in out and "c7i.xlarge at $0.1785/hour" in out


def test_the_benchmark_refuses_an_unknown_instance_before_sending(url, tmp_path, capsys):
    code, doc = run_bench(url, tmp_path, "--instance", "m5.large")
    assert code == 2 and doc is None
    assert "error: --instance 'm5.large' is not in the price table; known: c6i.xlarge" in capsys.readouterr().err
    code, doc = run_bench(url, tmp_path, "--price-per-hour", "-1")
    assert code == 2 and "--price-per-hour -1: give the instance's USD per hour" in capsys.readouterr().err
