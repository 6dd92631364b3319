"""The compilation stage as a plain function: run(cfg) -> CompileResult."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from infkit.compile import calibration, parity
from infkit.compile import manifest as mf
from infkit.compile import options as opts
from infkit.compile.registry import resolve
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


def _examples(datamodule, val_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation images parity compares on; with parity turned off, one image to compile with."""
    if val_images:
        return datamodule.batch("val", val_images)
    for split in ("val", "test", "train"):
        if datamodule.split_length(split):
            return datamodule.batch(split, 1)
    raise InfkitError("every split of the data is empty: there is no image to compile with; check data.root")


def run(cfg: DictConfig) -> CompileResult:
    options = OmegaConf.to_container(cfg.compile, resolve=True)
    requested = str(options.pop("backend", "auto"))
    options.pop("min_top1_agreement", None)  # the backend's default for parity.min_top1_agreement (trace.yaml)
    opts.check(requested, options)  # unknown keys name the valid ones, before any SDK import
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # neuron_native's SDK variables (NEFF cache in this folder, fallback) are set before its SDK is imported
    backend, choice = resolve(requested, prepare=lambda b: b.prepare_environment(options, out_dir))
    options = opts.for_backend(backend, options)
    batch_sizes = _batch_sizes(options)
    # backends that calibrate (onnx_int8) check their options and say how many training images they need
    calibration_count = backend.calibration_count(options) if getattr(backend, "needs_calibration", False) else 0

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare()
    # a check that would compare nothing stops here, before anything compiles
    sizes = {split: datamodule.split_length(split) for split in ("val", "test")}
    val_images, test_images = parity.planned_images(cfg.parity, sizes)
    loaded = checkpoint.load(
        cfg.get("ckpt_path"),
        expect_model=cfg.model.model_name,
        expect_classes=datamodule.num_classes,
        expect_input_size=datamodule.input_size,
    )
    hp = loaded.hparams
    datamodule.set_default_normalization(hp["mean"], hp["std"])
    images, labels = _examples(datamodule, val_images)
    net = loaded.net
    num_params = sum(p.numel() for p in net.parameters())

    name = str(cfg.artifact_name)
    # eager weights travel too: explanations (Captum) need a model that can back-propagate; written first, so they
    # stay when a compiler dies
    eager_path = save_eager(
        net, hp["model_name"], hp["num_classes"], hp.get("in_chans", 3), out_dir / f"{name}.eager.pt"
    )
    extra = (
        {"calibration": calibration.images(datamodule.dataset(calibration.SPLIT), calibration_count)}
        if calibration_count
        else {}
    )
    # static-shape backends: one artifact per batch size (bucketing), or one compiled at the smallest size when the
    # backend batches dynamically (Neuron's dynamic batch: chunks of that size), or one holding every size
    # (neuron_native: one compiled shape per batch size in its cache); the others: one for all
    one_artifact = getattr(backend, "one_artifact_all_sizes", False)
    dynamic = not backend.static_batch or opts.dynamic_batch(options) or one_artifact
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

    if val_images:
        report = parity.check(net, compiled, images, labels)
        threshold = float(cfg.parity.min_top1_agreement)
        passed = report["top1_agreement"] >= threshold
        report.update(min_top1_agreement=threshold, passed=passed, status=parity.PASSED if passed else parity.FAILED)
        log.info(
            "parity on %d validation images: max |Δlogit| %.2e, top-1 agreement %.2f %%",
            report["images"],
            report["max_abs_logit_diff"],
            100 * report["top1_agreement"],
        )
    else:
        report = parity.not_checked("parity.agreement=false")
        log.warning("parity with the eager model: not checked (parity.agreement=false)")
    if cfg.parity.get("accuracy", True):
        accuracy = parity.split_accuracy(
            net, compiled, datamodule.dataset("test"), test_images, cfg.parity.get("max_accuracy_drop")
        )
    else:
        accuracy = parity.not_checked("parity.accuracy=false")
        log.warning("test accuracy: not checked (parity.accuracy=false)")

    manifest = {
        "name": name,
        "backend": backend.name,
        "artifacts": entries,
        "batch_sizes": batch_sizes if buckets != [None] or one_artifact else None,
        "dynamic_batch": buckets == [None] and not one_artifact,
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
    if choice is not None:
        manifest["auto"] = choice.record()
    manifest_path = mf.write(out_dir, manifest)
    reason = parity.failure(backend.name, report, accuracy, manifest_path)
    if reason:
        raise InfkitError(reason)
    return CompileResult(backend.name, [out_dir / e["file"] for e in entries], manifest_path, manifest)
