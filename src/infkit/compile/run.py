"""The compilation stage as a plain function: run(cfg) -> CompileResult."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from infkit.compile import calibration, parity
from infkit.compile import manifest as mf
from infkit.compile import options as opts
from infkit.compile.registry import resolve_backend
from infkit.errors import InfkitError
from infkit.model import save_eager
from infkit.train import checkpoint

log = logging.getLogger(__name__)


@dataclass
class CompileResult:
    backend: str
    artifacts: list[Path]
    manifest_path: Path
    manifest: dict


def artifact_path(out_dir: Path, name: str, suffix: str, batch_size: int | None) -> Path:
    """<name><suffix> for one artifact; <name>.bs<N><suffix> for a bucket of several."""
    return out_dir / (f"{name}.bs{batch_size}{suffix}" if batch_size is not None else f"{name}{suffix}")


def _batch_sizes(options: dict) -> list[int]:
    raw = options.get("batch_sizes") or [1]
    try:
        sizes = sorted({int(b) for b in raw})
    except (TypeError, ValueError):
        sizes = [0]
    if sizes[0] < 1:
        raise InfkitError(f"compile.batch_sizes={raw!r} is not valid; give whole numbers >= 1, e.g. [1,4,8]")
    return sizes


def run(cfg: DictConfig) -> CompileResult:
    options = OmegaConf.to_container(cfg.compile, resolve=True)
    requested = str(options.pop("backend", "auto"))
    options.pop("min_top1_agreement", None)  # the backend's default for parity.min_top1_agreement (trace.yaml)
    opts.check(requested, options)  # unknown keys name the valid ones, before any SDK import
    backend = resolve_backend(requested)
    options = opts.for_backend(backend, options)
    batch_sizes = _batch_sizes(options)
    # backends that calibrate (onnx_int8) check their options and say how many training images they need
    calibration_count = backend.calibration_count(options) if getattr(backend, "needs_calibration", False) else 0

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare()
    loaded = checkpoint.load(
        cfg.get("ckpt_path"),
        expect_model=cfg.model.model_name,
        expect_classes=datamodule.num_classes,
        expect_input_size=datamodule.input_size,
    )
    hp = loaded.hparams
    datamodule.set_default_normalization(hp["mean"], hp["std"])
    images, labels = datamodule.batch("val", int(cfg.parity.num_images))
    net = loaded.net
    num_params = sum(p.numel() for p in net.parameters())

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = str(cfg.artifact_name)
    extra = (
        {"calibration": calibration.images(datamodule.dataset(calibration.SPLIT), calibration_count)}
        if calibration_count
        else {}
    )
    # static-shape backends: one artifact per batch size (bucketing), or one compiled at the smallest size when the
    # backend batches dynamically (Neuron's dynamic batch: chunks of that size); the others: one for all
    dynamic = not backend.static_batch or opts.dynamic_batch(options)
    buckets = [None] if dynamic else batch_sizes
    compiled, entries, used = {}, [], {}
    for bs in buckets:
        n = bs or batch_sizes[0]
        example = images[:n]
        if len(example) < n:
            example = example[:1].expand(n, *example.shape[1:]).contiguous()
        path = artifact_path(out_dir, name, backend.suffix, bs if len(buckets) > 1 else None)
        t0 = time.perf_counter()
        log.info("compiling %s with %s%s ...", cfg.model.model_name, backend.name, f" at batch size {bs}" if bs else "")
        used = backend.compile(net, example, options, path, **extra)
        log.info("wrote %s (%.1f MB) in %.1fs", path.name, path.stat().st_size / 1e6, time.perf_counter() - t0)
        entries.append(mf.artifact_entry(path, bs))
        fn = backend.load(path)
        for size in [bs] if bs else batch_sizes:
            compiled[size] = fn

    # eager weights travel too: explanations (Captum) need a model that can back-propagate
    eager_path = save_eager(
        net, hp["model_name"], hp["num_classes"], hp.get("in_chans", 3), out_dir / f"{name}.eager.pt"
    )

    report = parity.check(net, compiled, images, labels)
    threshold = float(cfg.parity.min_top1_agreement)
    report.update(min_top1_agreement=threshold, passed=report["top1_agreement"] >= threshold)
    log.info(
        "parity on %d validation images: max |Δlogit| %.2e, top-1 agreement %.2f %%",
        report["images"],
        report["max_abs_logit_diff"],
        100 * report["top1_agreement"],
    )
    accuracy = parity.split_accuracy(
        net,
        compiled,
        datamodule.dataset("test"),
        cfg.parity.get("accuracy_images"),
        cfg.parity.get("max_accuracy_drop"),
    )

    manifest = {
        "name": name,
        "backend": backend.name,
        "artifacts": entries,
        "batch_sizes": batch_sizes if buckets != [None] else None,
        "dynamic_batch": buckets == [None],
        "model_name": hp["model_name"],
        "num_params": int(num_params),
        "input_size": list(datamodule.input_size),
        "mean": list(datamodule.mean),
        "std": list(datamodule.std),
        "labels": list(hp.get("labels") or datamodule.classes),
        "num_classes": int(hp["num_classes"]),
        "parity": report,
        "accuracy": accuracy,
        "backend_options": used,
        "eager_weights": {k: v for k, v in mf.artifact_entry(eager_path, None).items() if k != "batch_size"},
        "checkpoint": {"file": loaded.path.name, "sha256": mf.sha256(loaded.path)},
        "versions": mf.library_versions(backend.versions()),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    manifest_path = mf.write(out_dir, manifest)
    reason = parity.failure(backend.name, report, accuracy, manifest_path)
    if reason:
        raise InfkitError(reason)
    return CompileResult(backend.name, [out_dir / e["file"] for e in entries], manifest_path, manifest)
