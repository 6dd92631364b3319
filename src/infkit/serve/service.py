"""decode -> preprocess -> batch -> infer -> top-k for one TorchServe batch, with per-item errors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from infkit.serve.decode import DEFAULT_MAX_BYTES, ItemError, decode_requests
from infkit.serve.runtime import ServedModel

log = logging.getLogger(__name__)

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
    ):
        self.model = ServedModel.load(
            model_dir, threads=threads, shared_cores=shared_cores, neuron_layout=neuron_layout
        )
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

    def _prepare(self, item: Any) -> tuple[list[torch.Tensor], list[int | None], bool]:
        labels = self.model.labels
        requests, many = decode_requests(item, len(labels), labels, self.max_image_bytes)
        try:
            return [self.transform(r.image) for r in requests], [r.target for r in requests], many
        except (OSError, ValueError) as exc:  # e.g. truncated data PIL only notices while converting
            raise ItemError(400, f"image could not be converted ({exc})") from None

    def handle(self, items: Sequence[Any], explain: Sequence[bool], set_status: SetStatus) -> list[Any]:
        """One response per item: top-k dicts (or attributions) — a list of them when the item held a list of
        images — or an error body with a 4xx status. All images of the batch go through the model in one call."""
        responses: list[Any] = [None] * len(items)
        prepared: dict[int, tuple[list[torch.Tensor], list[int | None], bool]] = {}
        for i, item in enumerate(items):
            try:
                prepared[i] = self._prepare(item)
            except ItemError as err:
                set_status(err.status, err.phrase, i)
                responses[i] = err.body()
        for wanted in (False, True):
            ids = [i for i in prepared if bool(explain[i]) == wanted]
            if not ids:
                continue
            x = torch.stack([t for i in ids for t in prepared[i][0]])
            if wanted:
                labels = self.model.labels
                out = [
                    {"label": labels[r["target"]], **r}
                    for r in self.explainer.explain(x, [t for i in ids for t in prepared[i][1]])
                ]
            else:
                out = self.model.top_k(x, self.topk)
            start = 0
            for i in ids:
                n, many = len(prepared[i][0]), prepared[i][2]
                responses[i] = out[start : start + n] if many else out[start]
                start += n
        return responses
