"""decode -> preprocess -> batch -> infer -> top-k for one TorchServe batch, with per-item errors.

ONNX Runtime artifacts go through all of it without torch (numpy batches: infkit.serve.core.runtime); their
explanations are Integrated Gradients where torch and captum import, else occlusion (infkit.serve.core.explain)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from infkit.serve.core.decode import DEFAULT_MAX_BYTES, ItemError, decode_requests
from infkit.serve.core.runtime import ServedModel

log = logging.getLogger(__name__)

#: handler stage -> the TorchServe counter it is recorded in (milliseconds summed over the requests of each batch)
STAGE_METRICS = {
    "preprocess": "InfkitPreprocessMs",
    "inference": "InfkitInferenceMs",
    "postprocess": "InfkitPostprocessMs",
}

#: (status code, reason phrase, index in the batch) -> None; TorchServe's context.set_response_status
SetStatus = Callable[[int, str, int], None]


class Service:
    def __init__(
        self,
        model_dir: str | Path,
        threads: int | None = None,
        topk: int = 5,
        max_image_bytes: int = DEFAULT_MAX_BYTES,
        explain_steps: int = 32,
        shared_cores: bool = True,
        neuron_layout: str = "per_worker",
        spinning: bool | None = None,
        explain_method: str = "auto",
    ):
        self.model = ServedModel.load(
            model_dir, threads=threads, shared_cores=shared_cores, neuron_layout=neuron_layout, spinning=spinning
        )
        self.topk = int(topk)
        self.max_image_bytes = int(max_image_bytes)
        self.explain_steps = int(explain_steps)
        self.explain_method = str(explain_method)
        self._explainer = None

    @property
    def explainer(self):
        if self._explainer is None:  # only workers that get explanation requests pay for it
            from infkit.serve.core.explain import make_explainer

            self._explainer = make_explainer(self.model, n_steps=self.explain_steps, method=self.explain_method)
        return self._explainer

    def _prepare(self, item: Any, content_type: str | None) -> tuple[list[np.ndarray], list[int | None], bool]:
        labels = self.model.labels
        requests, many = decode_requests(item, len(labels), labels, self.max_image_bytes, content_type)
        try:
            return [self.model.to_array(r.image) for r in requests], [r.target for r in requests], many
        except (OSError, ValueError) as exc:  # e.g. truncated data PIL only notices while converting
            raise ItemError(400, f"image could not be converted ({exc})") from None

    def handle(
        self,
        items: Sequence[Any],
        explain: Sequence[bool],
        set_status: SetStatus,
        timings: dict[str, float] | None = None,
        content_types: Sequence[str | None] | None = None,
    ) -> list[Any]:
        """One response per item: top-k dicts (or attributions) — a list of them when the item held a list of
        images — or an error body with a 4xx status. All images of the batch go through the model in one call.
        `timings` (when given) gets the seconds spent in preprocess (decode, resize, the batch tensor), inference
        (the model call) and postprocess (softmax, top-k, answers) of this batch. `content_types`: each request's
        Content-Type as the client sent it."""
        clock = time.perf_counter
        t0 = clock()
        responses: list[Any] = [None] * len(items)
        prepared: dict[int, tuple[list[np.ndarray], list[int | None], bool]] = {}
        for i, item in enumerate(items):
            try:
                prepared[i] = self._prepare(item, content_types[i] if content_types else None)
            except ItemError as err:
                set_status(err.status, err.phrase, i)
                responses[i] = err.body()
        spent = {"preprocess": clock() - t0, "inference": 0.0, "postprocess": 0.0}
        for wanted in (False, True):
            ids = [i for i in prepared if bool(explain[i]) == wanted]
            if not ids:
                continue
            t0 = clock()
            x = self.model.batch([a for i in ids for a in prepared[i][0]])
            t1 = clock()
            spent["preprocess"] += t1 - t0
            if wanted:
                labels = self.model.labels
                out = [
                    {"label": labels[r["target"]], **r}
                    for r in self.explainer.explain(x, [t for i in ids for t in prepared[i][1]])
                ]
                spent["inference"] += clock() - t1
            else:
                logits = self.model.logits(x)
                t2 = clock()
                out = self.model.scores(logits, self.topk)
                spent["inference"] += t2 - t1
                spent["postprocess"] += clock() - t2
            start = 0
            for i in ids:
                n, many = len(prepared[i][0]), prepared[i][2]
                responses[i] = out[start : start + n] if many else out[start]
                start += n
        if timings is not None:
            timings.update(spent)
        return responses
