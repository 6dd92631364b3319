"""decode -> preprocess -> batch -> infer -> top-k for one TorchServe batch, with per-item errors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from infkit.serve.decode import DEFAULT_MAX_BYTES, ItemError, decode_request
from infkit.serve.runtime import ServedModel

log = logging.getLogger(__name__)

#: (status code, reason phrase, index in the batch) -> None; TorchServe's context.set_response_status
SetStatus = Callable[[int, str, int], None]


class Service:
    def __init__(self, model_dir: str | Path, threads: int | None = None, topk: int = 5,
                 max_image_bytes: int = DEFAULT_MAX_BYTES, explain_steps: int = 32, shared_cores: bool = True):
        self.model = ServedModel.load(model_dir, threads=threads, shared_cores=shared_cores)
        self.transform = self.model.transform()
        self.topk = int(topk)
        self.max_image_bytes = int(max_image_bytes)
        self.explain_steps = int(explain_steps)
        self._explainer = None

    @property
    def explainer(self):
        if self._explainer is None:  # only workers that get explanation requests pay for it
            from infkit.serve.explain import Explainer

            self._explainer = Explainer(self.model.directory, self.model.manifest, n_steps=self.explain_steps)
        return self._explainer

    def _prepare(self, item: Any) -> tuple[torch.Tensor, int | None]:
        labels = self.model.labels
        request = decode_request(item, len(labels), labels, self.max_image_bytes)
        try:
            return self.transform(request.image), request.target
        except (OSError, ValueError) as exc:  # e.g. truncated data PIL only notices while converting
            raise ItemError(400, f"image could not be converted ({exc})") from None

    def handle(self, items: Sequence[Any], explain: Sequence[bool], set_status: SetStatus) -> list[Any]:
        """One response per item: top-k dicts (or attributions), or an error body with a 4xx status."""
        responses: list[Any] = [None] * len(items)
        predict, explain_ids, tensors, targets = [], [], {}, {}
        for i, item in enumerate(items):
            try:
                tensors[i], targets[i] = self._prepare(item)
            except ItemError as err:
                set_status(err.status, err.phrase, i)
                responses[i] = err.body()
                continue
            (explain_ids if explain[i] else predict).append(i)
        if predict:
            results = self.model.top_k(torch.stack([tensors[i] for i in predict]), self.topk)
            for i, result in zip(predict, results):
                responses[i] = result
        if explain_ids:
            x = torch.stack([tensors[i] for i in explain_ids])
            out = self.explainer.explain(x, [targets[i] for i in explain_ids])
            labels = self.model.labels
            for i, result in zip(explain_ids, out):
                responses[i] = {"label": labels[result["target"]], **result}
        return responses
