"""The private Ray's head, supervised: `ray start --head --block ...` as a child, and the metrics port.

    python -m infkit.serve.ray.head --metrics HOST:PORT --ray-metrics 127.0.0.1:PORT -- ray start --head --block ...

The metrics port serves Ray's Prometheus exposition (Ray Serve's metrics, and infkit's counters that Ray exports as
ray_<name>) with infkit's counters also under TorchServe's names (ts_inference_requests_total, InfkitPreprocessMs,
...), so dashboards, tests and the benchmark's stage split read the same names from either engine. The HTTP server
is aiohttp's (maintained, installed with ray[serve]). A SIGTERM is passed to Ray; when Ray ends, so does this.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import threading

#: Ray's exported name -> TorchServe's (Ray lower-cases names, prefixes ray_ and gives counters a _total suffix)
ALIASES = {
    "ray_ts_inference_requests_total": "ts_inference_requests_total",
    "ray_ts_inference_latency_microseconds_total": "ts_inference_latency_microseconds",
    "ray_ts_queue_latency_microseconds_total": "ts_queue_latency_microseconds",
    "ray_infkitpreprocessms_total": "InfkitPreprocessMs",
    "ray_infkitinferencems_total": "InfkitInferenceMs",
    "ray_infkitpostprocessms_total": "InfkitPostprocessMs",
    "ray_infkitrequests_total": "InfkitRequests",
    "ray_infkitbatches_total": "InfkitBatches",
}
SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{.*\})?\s+(\S+)")


def with_aliases(text: str, live: dict | None = None) -> str:
    """Ray's exposition plus each of infkit's counters again under its TorchServe name (labels kept). `live`: the
    replicas' own counts by model ({model: {TorchServe's name: value}}, read_counts), current to the request: a
    counter found there is served from it instead of from Ray's export (which lags by Ray's report period)."""
    extra: dict[str, list[str]] = {}
    names = sorted({name for counts in (live or {}).values() for name in counts})
    for name in names:
        extra[name] = [f'{name}{{model_name="{m}"}} {float(c.get(name, 0.0))}' for m, c in sorted(live.items())]
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and m[1] in ALIASES and ALIASES[m[1]] not in names:
            extra.setdefault(ALIASES[m[1]], []).append(f"{ALIASES[m[1]]}{m[2] or ''} {m[3]}")
    tail = "".join(f"# TYPE {name} counter\n" + "\n".join(lines) + "\n" for name, lines in extra.items())
    return text.rstrip("\n") + "\n" + tail


def read_counts(directory: str | None, last: dict | None = None) -> dict | None:
    """The replicas' own counters (infkit.serve.ray.app.LiveCounts: one JSON file per replica under `directory`)
    summed by model and name; `last` keeps each file's last complete reading (for a file read while written)."""
    import json
    from pathlib import Path

    if not directory or not Path(directory).is_dir():
        return None
    last = {} if last is None else last
    total: dict[str, dict[str, float]] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            last[path.name] = json.loads(path.read_bytes())
        except (OSError, ValueError):
            pass  # keep the previous reading of this file
        for model, counts in (last.get(path.name) or {}).items():
            into = total.setdefault(model, {})
            for name, value in counts.items():
                into[name] = into.get(name, 0.0) + float(value)
    return total or None


def serve_metrics(listen: tuple[str, int], upstream: str, counters: str | None = None) -> None:
    from aiohttp import ClientSession, ClientTimeout, web

    readings: dict = {}

    async def metrics(_request):
        try:
            async with ClientSession(timeout=ClientTimeout(total=10)) as session:
                async with session.get(f"http://{upstream}/metrics") as r:
                    text = await r.text()
        except Exception as exc:  # Ray's agent not up yet
            return web.Response(status=503, text=f"Ray's metrics are not available yet ({type(exc).__name__})\n")
        body = with_aliases(text, read_counts(counters, readings)).encode()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, listen[0], listen[1]).start())
    loop.run_forever()


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print(
            "usage: python -m infkit.serve.ray.head --metrics H:P --ray-metrics H:P -- ray start ...", file=sys.stderr
        )
        return 2
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="python -m infkit.serve.ray.head")
    p.add_argument("--metrics", required=True)
    p.add_argument("--ray-metrics", required=True)
    p.add_argument("--counters", default=None, help="the folder where replicas keep their request counts current")
    args = p.parse_args(argv[:cut])
    child = subprocess.Popen(argv[cut + 1 :])

    def forward(sig, _frame):
        if child.poll() is None:
            child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    threading.Thread(
        target=serve_metrics, args=(_hostport(args.metrics), args.ray_metrics, args.counters), daemon=True
    ).start()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
