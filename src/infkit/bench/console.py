"""What a load test prints when it ends: one block per level, then where the results are."""

from __future__ import annotations

from infkit.bench.runner import client_warnings


def print_levels(results: list[dict], mode: str, paths: dict) -> None:
    for r in results:
        s = r["summary"]
        lat = s["latency_s"]
        unit = "clients" if mode == "closed" else "req/s offered"
        print(
            f"\n== {r['level']:g} {unit}: {s['requests']} requests in {s['duration_s']:.1f} s "
            f"({r['sent_including_warmup'] - s['requests']} more in warm-up), stopped by {r['stopped_by']}"
        )
        print(f"   errors: {s['errors']} {s['errors_by_status'] or ''}")
        print(f"   throughput: {s['throughput_rps']:.1f} req/s")
        print(
            f"   latency s: mean={lat['mean']:.3f} p50={lat['p50']:.3f} p90={lat['p90']:.3f} "
            f"p99={lat['p99']:.3f} max={lat['max']:.3f}"
        )
        if mode == "open":
            lag = s["client_lag"]
            behind = (
                f"the client fell behind its schedule for {lag['late_requests']} requests "
                f"(max {lag['max_s'] * 1e3:.0f} ms late): add --workers or lower --rate"
                if lag["late_requests"]
                else "the client kept its schedule"
            )
            print(f"   {behind}")
        if r["server"]:
            srv = r["server"]
            print(
                f"   server: {srv['requests']} requests; per request: queue {srv['mean_queue_ms']:.1f} ms + "
                f"processing {srv['mean_processing_ms']:.1f} ms = {srv['mean_server_ms']:.1f} ms in the server"
            )
        if r["client"]:
            c = r["client"]
            print(
                f"   client: {c['processes']} process{'es' if c['processes'] > 1 else ''}, "
                f"{c['cores_used']:.2f} of {c['usable_cores']} cores ({c['cpu_util']:.0%}), busiest process "
                f"{c['busiest_process_util']:.0%} of a core, {c['cpu_ms_per_request']:.2f} ms CPU per request"
            )
        for line in client_warnings(r):
            print(f"   {line}")
        if r.get("neuron"):
            from infkit.monitor.summary import describe

            print(f"   neuron: {describe(r['neuron'])}")
    print(f"\nresults: {paths['json']}\n         {paths['levels_csv']}\n         {paths['png']}")
    if "neuron_png" in paths:
        print(f"         {paths['neuron_png']}")
