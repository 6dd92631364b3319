"""What a load test prints when it ends: one block per level, then where the results are."""

from __future__ import annotations

from infkit.bench.runner import client_warnings


def server_split(srv: dict) -> str:
    """perf_analyzer's line: mean per request = queue + preprocess + inference + postprocess + other in the
    server, + the rest the client saw (connection, HTTP, the client itself)."""
    head = f"server: {srv['requests']} requests; per request"
    if "mean_preprocess_ms" not in srv:  # a handler without the stage counters
        return (
            f"{head}: queue {srv['mean_queue_ms']:.2f} ms + processing {srv['mean_processing_ms']:.2f} ms = "
            f"{srv['mean_server_ms']:.2f} ms in the server"
        )
    parts = " + ".join(
        f"{name} {srv[f'mean_{name}_ms']:.2f}" for name in ("queue", "preprocess", "inference", "postprocess", "other")
    )
    rest = srv.get("mean_client_rest_ms")
    tail = f"; + {rest:.2f} ms outside the server (client, HTTP)" if rest is not None else ""
    batch = f"; mean batch {srv['mean_batch_size']:.1f}"
    return f"{head} (ms): {parts} = {srv['mean_server_ms']:.2f} in the server{tail}{batch}"


def machine_line(snap: dict) -> str:
    return (
        f"load average {snap['load_avg_1m']:.2f} ({snap['load_per_core']:.2f} per usable core), other processes "
        f"{snap['other_processes_cpu_cores']:.2f} cores"
    )


def print_levels(results: list[dict], mode: str, paths: dict) -> None:
    for r in results:
        s = r["summary"]
        lat = s["latency_s"]
        unit = "clients" if mode == "closed" else "req/s offered"
        print(
            f"\n== {r['level']:g} {unit}: {s['requests']} requests in {s['duration_s']:.1f} s "
            f"({r['sent_including_warmup'] - s['requests']} more in warm-up), stopped by {r['stopped_by']}"
        )
        rate = f" ({s['error_rate']:.1%})" if s["requests"] else ""
        print(f"   errors: {s['errors']}{rate} {s['errors_by_status'] or ''}")
        if r.get("first_error"):
            print(f"   first error: {r['first_error']}")
        print(
            f"   throughput: {s['throughput_rps']:.1f} req/s successful ({s['ok']} of {s['requests']} answered "
            f"2xx; {s['responses_rps']:.1f} answers/s in all)"
        )
        if r.get("cost_per_million_usd") is not None:
            print(f"   cost: ${r['cost_per_million_usd']:.4f} per million successful inferences")
        print(
            f"   latency s (successful): mean={lat['mean']:.3f} p50={lat['p50']:.3f} p90={lat['p90']:.3f} "
            f"p99={lat['p99']:.3f} max={lat['max']:.3f}"
        )
        if r.get("failed"):
            print(f"   FAILED: {r['failed']}")
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
            print(f"   {server_split(r['server'])}")
        if r["client"]:
            c = r["client"]
            print(
                f"   client: {c['processes']} process{'es' if c['processes'] > 1 else ''}, "
                f"{c['cores_used']:.2f} of {c['usable_cores']} cores ({c['cpu_util']:.0%}), busiest process "
                f"{c['busiest_process_util']:.0%} of a core, {c['cpu_ms_per_request']:.2f} ms CPU per request"
            )
        for line in client_warnings(r):
            print(f"   {line}")
        load = (r.get("machine_load") or {}).get("before")
        if load:
            print(f"   machine before: {machine_line(load)}")
        if r.get("neuron"):
            from infkit.monitor.summary import describe

            print(f"   neuron: {describe(r['neuron'])}")
    print(f"\nresults: {paths['json']}\n         {paths['levels_csv']}\n         {paths['png']}")
    if "neuron_png" in paths:
        print(f"         {paths['neuron_png']}")


def outcome(results: list[dict]) -> str | None:
    """Why the run failed (one line), or None: every request failed (naming the first error), or levels failed."""
    sent = sum(r["summary"]["requests"] for r in results)
    if sent and not sum(r["summary"]["ok"] for r in results):
        first = next((r["first_error"] for r in results if r["first_error"]), "none recorded")
        return f"every one of the {sent} measured requests failed: 0 successful req/s; first error: {first}"
    failed = [f"{r['level']:g} ({r['failed']})" for r in results if r.get("failed") and not r["interrupted"]]
    if failed:
        first = next((r["first_error"] for r in results if r.get("failed") and r["first_error"]), None)
        tail = f"; first error: {first}" if first else ""
        return f"{len(failed)} level(s) failed: {', '.join(failed)}{tail}"
    return None
