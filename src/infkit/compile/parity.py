"""Check a compiled model against the eager one: parity on real validation images, accuracy on the test split.

A check that would compare nothing (zero images asked for, or an empty split) stops compilation with the reason;
skipping one is explicit (parity.agreement=false, parity.accuracy=false) and recorded as "not checked", never as
"passed" (status())."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from infkit.compile.batching import run_bucketed
from infkit.errors import InfkitError

log = logging.getLogger(__name__)


NOT_CHECKED, PASSED, FAILED = "not checked", "passed", "failed"


def not_checked(reason: str) -> dict:
    """The manifest's record of a check the user turned off."""
    return {"checked": False, "status": NOT_CHECKED, "reason": reason}


def status(report: dict | None) -> str:
    """Passed only when the check said so (True) and did not run on zero images; "not checked" only when it was turned
    off; anything else (no report, no `passed` key, zero images) is "failed"."""
    report = report or {}
    if report.get("checked") is False:
        return NOT_CHECKED
    compared_nothing = report.get("images") is not None and int(report["images"]) == 0
    return PASSED if report.get("passed") is True and not compared_nothing else FAILED


def planned_images(cfg, split_sizes: dict[str, int]) -> tuple[int, int | None]:
    """(validation images for parity, test images for accuracy: None = all), checked before anything compiles.
    0 for a check that is turned off. A check that is on but would compare nothing stops here with the fix."""
    val = test = 0
    if cfg.get("agreement", True):
        val = _count(cfg.get("num_images"), "parity.num_images", split_sizes["val"], "validation", "agreement")
    if cfg.get("accuracy", True):
        limit = cfg.get("accuracy_images")
        test = _count(limit, "parity.accuracy_images", split_sizes["test"], "test", "accuracy")
        test = None if limit is None else test
    return val, test


def _count(value, key: str, available: int, split: str, switch: str) -> int:
    off = f'or turn the check off with parity.{switch}=false (the manifest then says "not checked")'
    if value is not None:
        given = value
        try:
            value = int(value)
        except (TypeError, ValueError):
            value = -1
        if value < 0:
            raise InfkitError(f"{key}={given!r} is not valid; give a whole number of images >= 1, {off}")
        if value == 0:
            raise InfkitError(f"{key}=0: the check would compare nothing; give a number of images >= 1, {off}")
    if available == 0:
        raise InfkitError(
            f"the {split} split is empty: the parity.{switch} check would compare nothing; use data with {split} "
            f"images, {off}"
        )
    return available if value is None else min(value, available)


def compare(eager: torch.Tensor, compiled: torch.Tensor) -> dict:
    agree = (eager.argmax(1) == compiled.argmax(1)).float().mean().item()
    return {"max_abs_logit_diff": float((eager - compiled).abs().max()), "top1_agreement": float(agree)}


def relative_error(eager: torch.Tensor, compiled: torch.Tensor) -> float:
    """||compiled - eager|| / ||eager||: a few percent for int8, near 1 for a model that computes something else."""
    return float((compiled - eager).norm() / eager.norm().clamp_min(1e-12))


def check(
    eager_model: torch.nn.Module, compiled_by_bs: dict[int, Callable], images: torch.Tensor, labels: torch.Tensor
) -> dict:
    """Parity of each compiled callable (by batch size) against the eager model.

    Returns the worst case over batch sizes plus the per-batch-size detail and both accuracies."""
    with torch.inference_mode():
        eager = eager_model.eval()(images).float()
    by_bs = {}
    for bs, fn in compiled_by_bs.items():
        # each callable runs at exactly its batch size, as a server running that bucket would
        out = run_bucketed({bs: fn}, images)
        by_bs[str(bs)] = compare(eager, out) | {"top1_accuracy": float((out.argmax(1) == labels).float().mean())}
    return {
        "checked": True,
        "images": len(images),
        "max_abs_logit_diff": max(v["max_abs_logit_diff"] for v in by_bs.values()),
        "top1_agreement": min(v["top1_agreement"] for v in by_bs.values()),
        "eager_top1_accuracy": float((eager.argmax(1) == labels).float().mean()),
        "by_batch_size": by_bs,
    }


def split_accuracy(
    eager_model: torch.nn.Module,
    runners: dict,
    dataset,
    limit: int | None = None,
    max_drop: float | None = None,
    chunk: int = 64,
) -> dict:
    """Top-1 accuracy of the eager model and of the compiled runners (batch size -> callable, as served) on the
    test split's dataset (all of it, or `limit` images spread evenly over it); `passed` is False when the compiled
    model is more than `max_drop` (a fraction; None: no limit) less accurate."""
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n == 0:  # planned_images stops compilation before this; status() reads the missing `passed` as failed
        return {"checked": True, "split": "test", "images": 0}
    ids = np.linspace(0, len(dataset) - 1, n).round().astype(int) if n < len(dataset) else np.arange(n)
    eager_ok = compiled_ok = agree = 0
    with torch.inference_mode():
        for start in range(0, n, chunk):
            items = [dataset[int(i)] for i in ids[start : start + chunk]]
            x, y = torch.stack([im for im, _ in items]), torch.tensor([label for _, label in items])
            e, c = eager_model.eval()(x).argmax(1), run_bucketed(runners, x).argmax(1)
            eager_ok += int((e == y).sum())
            compiled_ok += int((c == y).sum())
            agree += int((e == c).sum())
    drop = (eager_ok - compiled_ok) / n
    log.info(
        "test accuracy on %d images: compiled %.2f %%, eager %.2f %%", n, 100 * compiled_ok / n, 100 * eager_ok / n
    )
    passed = max_drop is None or drop <= float(max_drop) + 1e-9
    return {
        "checked": True,
        "status": PASSED if passed else FAILED,
        "split": "test",
        "images": int(n),
        "eager_top1": eager_ok / n,
        "compiled_top1": compiled_ok / n,
        "drop": drop,
        "top1_agreement": agree / n,
        "max_drop": max_drop,
        "passed": passed,
    }


def failure(backend: str, report: dict, accuracy: dict, manifest_path) -> str | None:
    """The one-line reason compilation fails (a check that compared nothing, agreement below its threshold, or test
    accuracy dropping by more than allowed), or None when every check passed or was turned off."""
    for what, switch, r in (("parity", "agreement", report), ("accuracy", "accuracy", accuracy)):
        if status(r) == FAILED and not int((r or {}).get("images") or 0):
            return (
                f"the {what} check of the {backend} artifact compared nothing (0 images); see {manifest_path}. Give it "
                f'images, or turn it off with parity.{switch}=false (recorded as "not checked")'
            )
    if status(report) == FAILED:
        return (
            f"{backend} artifact agrees with the eager model on only {100 * report['top1_agreement']:.1f} % of "
            f"top-1 predictions (threshold {100 * report['min_top1_agreement']:.0f} %, max |Δlogit| "
            f"{report['max_abs_logit_diff']:.3g}); see {manifest_path}. Try another backend, or lower "
            f"parity.min_top1_agreement if this is expected"
        )
    if status(accuracy) == FAILED:
        return (
            f"{backend} artifact loses {100 * accuracy['drop']:.2f} points of test accuracy against the eager model "
            f"({100 * accuracy['compiled_top1']:.2f} % vs {100 * accuracy['eager_top1']:.2f} % on "
            f"{accuracy['images']} test images; limit {100 * accuracy['max_drop']:.2f} points); see "
            f"{manifest_path}. Try another backend or calibration, or raise parity.max_accuracy_drop"
        )
    return None
