"""The tune stage as a plain function: run(TuneConfig) -> TuneResult. Measures candidates (exhaustive or quick),
writes the ranking, the plot and the winner (model-config.yaml + .mar) under <out>/<time>/, also after Ctrl-C."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from infkit.bench import busy
from infkit.bench.machine import machine_info
from infkit.compile import manifest as mf
from infkit.errors import InfkitError
from infkit.serve.core import neuron_cores
from infkit.tune import reference, report
from infkit.tune.measure import Load, Measurer, package
from infkit.tune.objective import Budget, Objective
from infkit.tune.search import Search
from infkit.tune.space import Limits, Space
from infkit.utils.cpu import usable_cores

ORT_BACKENDS = ("onnx", "onnx_int8")


@dataclass
class TuneConfig:
    artifact_dirs: list[Path]
    #: the latency budget of the default objective (most successful throughput within it)
    budget: Budget | None
    load: Load
    workers: tuple[int, ...] = (1,)
    #: 0 = auto: usable cores // workers (never oversubscribed)
    threads: tuple[int, ...] = (0,)
    batch_size: tuple[int, ...] = (8,)
    max_batch_delay: tuple[int, ...] = (20,)
    spinning: tuple[bool | None, ...] = (None,)
    mode: str = "exhaustive"
    max_candidates: int | None = None
    allow_oversubscribe: bool = False
    neuron_cores: int | None = None
    out: Path = Path("logs/tune")
    server_overrides: list[str] = field(default_factory=list)
    #: None: the most successful throughput within `budget`
    objective: Objective | None = None

    def goal(self) -> Objective:
        if self.objective is not None:
            return self.objective
        if self.budget is None:
            raise InfkitError("tune needs a latency budget for its throughput objective: pass --p99-ms MS (or p50/p90)")
        return Objective("throughput", self.budget, max_error_rate=self.load.max_error_rate)


@dataclass
class TuneResult:
    out_dir: Path
    paths: dict[str, Path]
    ranked: list[dict]
    winner: dict | None
    interrupted: bool


def read_artifacts(dirs: list[Path]) -> tuple[list[dict], list[str]]:
    """Each folder's manifest and a model name for it (unique across the folders)."""
    if not dirs:
        raise InfkitError("no compile run folder given; pass one or more folders `infkit trace` wrote")
    manifests, names = [], []
    for d in dirs:
        if not Path(d).is_dir():
            raise InfkitError(f"{str(d)!r} is not a folder; pass the compile run folder (it holds manifest.json)")
        if not (Path(d) / mf.MANIFEST).is_file():
            raise InfkitError(f"{str(d)!r} has no {mf.MANIFEST}; pass the folder `infkit trace` printed")
        manifest = mf.read(Path(d))
        manifests.append(manifest)
        name = f"{manifest['name']}_{manifest['backend']}"
        names.append(name if name not in names else f"{name}_{len(names)}")
    return manifests, names


def limits_for(cfg: TuneConfig, manifests: list[dict]) -> Limits:
    per_worker = {i: neuron_cores.cores_per_worker(m) for i, m in enumerate(manifests) if neuron_cores.is_neuron(m)}
    cores = cfg.neuron_cores
    if per_worker and cores is None:
        from omegaconf import OmegaConf

        from infkit.utils.compose import compose_config

        neuron = OmegaConf.to_container(compose_config("serve", [], ".").serve.neuron, resolve=True)
        cores = neuron.get("cores")
    return Limits(usable_cores(), cfg.allow_oversubscribe, int(cores) if cores else None, per_worker)


def check_spinning(cfg: TuneConfig, manifests: list[dict], names: list[str]) -> None:
    if any(s is not None for s in cfg.spinning):
        other = [n for n, m in zip(names, manifests) if m["backend"] not in ORT_BACKENDS]
        if other:
            raise InfkitError(
                f"--spinning applies to ONNX Runtime artifacts only; {', '.join(other)} is not one: drop --spinning "
                "or tune those folders separately"
            )


def run(cfg: TuneConfig, echo=print) -> TuneResult:
    goal = cfg.goal()
    manifests, names = read_artifacts(cfg.artifact_dirs)
    check_spinning(cfg, manifests, names)
    space = Space(len(manifests), cfg.workers, cfg.threads, cfg.batch_size, cfg.max_batch_delay, cfg.spinning)
    limits = limits_for(cfg, manifests)
    out_dir = Path(cfg.out) / time.strftime("%Y-%m-%d_%H-%M-%S")
    measurer = Measurer(cfg.artifact_dirs, names, cfg.load, out_dir / "work", cfg.server_overrides, echo)
    search = Search(space, limits, goal, measurer, echo)
    echo(
        f"tune: {space.size()} candidate(s) in the space, {cfg.mode} search, objective: {goal.describe()}, "
        f"{cfg.load.mode} loop at {', '.join(f'{lv:g}' for lv in cfg.load.levels)}; results -> {out_dir}"
    )
    machine_before = busy.snapshot()
    try:
        search.quick(cfg.max_candidates) if cfg.mode == "quick" else search.exhaustive()
    except KeyboardInterrupt:  # outside a measurement (between candidates): keep what was measured
        search.interrupted = True
    if search.interrupted:
        echo("interrupted: writing what was measured ...")
    machine_after = busy.snapshot()
    references = in_process_references(cfg, goal, names, search, echo)
    befores = [machine_before] + [
        (lv.get("machine_load") or {}).get("before") for r in search.results for lv in r.get("levels", [])
    ]
    warnings = busy.warnings(befores, what="the tune run")
    extra = {"machine_load": busy.around(machine_before, machine_after), "warnings": warnings}
    if references:
        extra["in_process_reference"] = references
    unit = "clients" if cfg.load.mode == "closed" else "req/s"
    config = describe(cfg, names)
    paths, ranked = report.write(
        out_dir, config, machine_info(), search.results, goal, names, unit, search.interrupted, extra
    )
    for line in warnings:
        echo(line)
    winner = ranked[0] if ranked and goal.best_level(ranked[0]) else None
    if winner is not None:
        paths |= write_winner(out_dir / "winner", winner, cfg, names)
    return TuneResult(out_dir, paths, ranked, winner, search.interrupted)


def in_process_references(cfg: TuneConfig, goal, names: list[str], search: Search, echo) -> dict:
    """Latency objective: each artifact's in-process batch-1 p50 (infkit.tune.reference), measured after the served
    candidates in the same run, and a line that puts the best served p50 beside it."""
    if goal.kind != "latency" or search.interrupted:
        return {}
    out = {}
    for k, (folder, name) in enumerate(zip(cfg.artifact_dirs, names, strict=True)):
        echo(f"in-process reference: {name} at batch 1 ...")
        ref = reference.batch1(folder)
        served = [goal.best_level(r) for r in search.results if r["candidate"].artifact == k]
        p50s = [lv["p50_ms"] for lv in served if lv]
        ref["served_best_p50_ms"] = min(p50s, default=None)
        echo(reference.line(name, ref["served_best_p50_ms"], ref))
        out[name] = ref
    return out


def write_winner(where: Path, winner: dict, cfg: TuneConfig, names: list[str]) -> dict[str, Path]:
    """model-config.yaml (what configs/serve/default.yaml's model: section would hold) and the ready .mar."""
    c = winner["candidate"]
    where.mkdir(parents=True, exist_ok=True)
    packed, model_config = package(cfg.artifact_dirs[c.artifact], c, where, names[c.artifact], where / "package")
    config_path = where / "model-config.yaml"
    config_path.write_text(
        f"# chosen by infkit tune ({cfg.goal().describe()}; {c.label()})\n"
        + yaml.safe_dump(model_config, sort_keys=False)
    )
    return {"winner_config": config_path, "winner_mar": packed.mar}


def describe(cfg: TuneConfig, names: list[str]) -> dict:
    return {
        "artifacts": [str(p) for p in cfg.artifact_dirs],
        "model_names": names,
        "budget": cfg.budget.describe() if cfg.budget else None,
        "objective": cfg.goal().describe(),
        "mode": cfg.mode,
        "load": {
            "mode": cfg.load.mode,
            "levels": list(cfg.load.levels),
            "warmup_s": cfg.load.warmup,
            "max_duration_s": cfg.load.max_duration,
            "window_s": cfg.load.window,
            "stable_windows": cfg.load.stable_windows,
            "tolerance": cfg.load.tolerance,
            "max_error_rate": cfg.load.max_error_rate,
            "images": len(cfg.load.bodies),
        },
        "space": {
            "workers": list(cfg.workers),
            "threads": ["auto" if t == 0 else t for t in cfg.threads],
            "batch_size": list(cfg.batch_size),
            "max_batch_delay": list(cfg.max_batch_delay),
            "spinning": ["auto" if s is None else s for s in cfg.spinning],
        },
        "allow_oversubscribe": cfg.allow_oversubscribe,
        "neuron_cores": cfg.neuron_cores,
        "server_overrides": list(cfg.server_overrides),
    }
