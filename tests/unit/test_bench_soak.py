"""Soak's numbers count work done: capacity is successful answers per second, a capacity run that fails stops with
the first error, and the soak's windows count errors beside latency of the successful answers (tiny real server)."""

from __future__ import annotations

import itertools
import threading
from http.server import ThreadingHTTPServer

import pytest

from infkit.bench import loadgen, soak
from infkit.errors import InfkitError
from tests.unit.test_bench_failures import Handler


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.counter = itertools.count()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/predictions"
    srv.shutdown()
    srv.server_close()


def quiet(_line: str) -> None:
    pass


def test_capacity_of_a_server_answering_404_is_an_error_naming_it(server):
    with pytest.raises(InfkitError) as err:
        soak.capacity(loadgen.Target(f"{server}/nope", [b"x"]), clients=2, seconds=1, echo=quiet)
    said = str(err.value)
    assert "every one of its" in said and "first error: 404 ModelNotFoundException: Model not found: nope" in said
    assert "--rate" in said


def test_capacity_counts_successful_answers_only(server):
    target = loadgen.Target(f"{server}/flaky", [b"x"])
    with pytest.raises(InfkitError, match=r"error rate .* > --max-error-rate 1.0%.*first error: 503"):
        soak.capacity(target, clients=2, seconds=1, echo=quiet)
    assert soak.capacity(target, clients=2, seconds=1, echo=quiet, max_error_rate=0.2) > 0


def test_soak_windows_count_errors_beside_successful_latency(server, tmp_path):
    result = soak.soak(loadgen.Target(f"{server}/flaky", [b"x"]), tmp_path, rate=40, duration=2, window=1, echo=quiet)
    s = result["summary"]
    assert s["requests"] == 80 and s["errors"] == sum(w["errors"] for w in result["windows"]) == 8
    assert s["ok"] == 72 and s["throughput_rps"] == pytest.approx(72 / s["duration_s"])
    assert [w["requests"] for w in result["windows"]] == [40, 40]
    assert result["first_error"].startswith("503 ServiceUnavailableException")
    assert result["machine_load"]["before"]["usable_cores"] >= 1
    assert "(10.00%)" in soak.markdown(result) and "first error: 503" in soak.markdown(result)
