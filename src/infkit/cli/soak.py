"""infkit soak / python src/soak.py: open-loop load on a running TorchServe at a fraction of its measured
capacity for a long time.

    infkit soak --url http://127.0.0.1:8080/predictions/<model> --minutes 30 --fraction 0.7

Measures capacity first (closed loop, --clients clients) unless --rate is given, then reports errors, p50/p99 per
--window-minutes window, worker and frontend memory at start and end, and how much TorchServe's logs grew
(read from the server's state folder, --state-dir). Capacity is successful answers per second; a capacity
measurement failing more than --max-error-rate of its requests stops with the first error. Latency is the
successful answers'; errors are counted by status. Writes soak.{json,md} under logs/soak/<time>/, with the machine's
load before and after, and warns when the machine was busy. Exits 1 when any soak request failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from infkit.bench import busy, loadgen, soak
from infkit.bench.machine import machine_info
from infkit.bench.report import json_safe
from infkit.bench.stats import MAX_ERROR_RATE
from infkit.cli._common import guarded
from infkit.resources import sample_images
from infkit.serve.core.auth import inference_token
from infkit.utils.argtypes import share


@guarded
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="prediction URL of a running server")
    p.add_argument("--state-dir", type=Path, default=Path("logs/serve"), help="the server's state folder")
    p.add_argument("--minutes", type=float, default=30.0, help="soak duration (default 30)")
    p.add_argument("--window-minutes", type=float, default=5.0, help="report window (default 5)")
    p.add_argument("--fraction", type=float, default=0.7, help="share of measured capacity to offer (default 0.7)")
    p.add_argument("--rate", type=float, default=None, help="requests per second (skips the capacity measurement)")
    p.add_argument("--clients", type=int, default=16, help="closed-loop clients for the capacity measurement")
    p.add_argument(
        "--max-error-rate",
        type=share,
        default=MAX_ERROR_RATE,
        metavar="F",
        help=f"the capacity measurement fails above this share of failed requests (default {MAX_ERROR_RATE})",
    )
    p.add_argument("--images", nargs="+", type=Path, default=None, help="images to send in turn")
    p.add_argument("--out", type=Path, default=Path("logs/soak"))
    args = p.parse_args(argv)
    if not 0 < args.fraction <= 1 or args.minutes <= 0 or args.window_minutes <= 0:
        p.error("--fraction must be in (0, 1]; --minutes and --window-minutes > 0")
    if not (args.state_dir / "server.json").is_file():
        p.error(f"--state-dir {str(args.state_dir)!r} holds no running server's state (server.json)")
    images = args.images or sample_images()
    if not images:
        p.error("no images: pass --images")
    target = loadgen.Target(
        args.url, [Path(i).read_bytes() for i in images], inference_token(args.state_dir / "key_file.json")
    )
    machine_before = busy.snapshot()
    rate = args.rate
    if rate is None:
        print(f"measuring capacity with {args.clients} clients ...", flush=True)
        rate = args.fraction * soak.capacity(target, args.clients, max_error_rate=args.max_error_rate)
        print(f"successful capacity x {args.fraction:g} = {rate:.1f} req/s", flush=True)
    print(
        f"soaking at {rate:.1f} req/s for {args.minutes:g} min (Ctrl-C stops and keeps what was measured)", flush=True
    )
    result = soak.soak(target, args.state_dir, rate, args.minutes * 60, args.window_minutes * 60)
    machine_after = busy.snapshot()
    warnings = busy.warnings([machine_before, (result["machine_load"] or {}).get("before")], what="the soak")
    out = args.out / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "result": result,
        "machine": machine_info(),
        "machine_load": busy.around(machine_before, machine_after),
        "warnings": warnings,
        "config": {k: str(v) for k, v in vars(args).items()},
    }
    (out / "soak.json").write_text(json.dumps(json_safe(doc), indent=2))
    (out / "soak.md").write_text(soak.markdown(result))
    print(soak.markdown(result))
    for line in warnings:
        print(line)
    print(f"results: {out / 'soak.json'}\n         {out / 'soak.md'}")
    return 130 if result["interrupted"] else (1 if result["summary"]["errors"] else 0)


if __name__ == "__main__":
    sys.exit(main())
