"""Baselines that share the generator interface so every metric and report treats them alike.

They learn what they need in ``fit`` (from the training database) and need no gradient steps.
Each predicts the matched control cells plus a mean shift, which keeps the real cell-to-cell
variability of the controls.
"""

from __future__ import annotations

import numpy as np
import torch

from ptrag.core.hookspecs import BuildContext, ComponentParams, GeneratorSpec, hookimpl
from ptrag.core.interfaces import CellSetBatch, Generator


class ControlBaseline(Generator):
    """Predict no effect: the control cells themselves."""

    name = "control"
    trainable = False

    def forward(self, batch: CellSetBatch, context: torch.Tensor | None = None) -> torch.Tensor:
        return batch.ctrl.clone()


class PertMeanBaseline(Generator):
    """Control cells plus the mean training response of the same cell line."""

    name = "pert-mean"
    trainable = False

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.context_names = list(ctx.context_names)
        self.register_buffer("shift", torch.zeros(max(ctx.n_contexts, 1), ctx.n_genes))

    def fit(self, database) -> None:
        response = np.asarray(database.response)
        overall = response.mean(axis=0) if len(response) else np.zeros(self.shift.shape[1])
        shift = np.tile(overall, (len(self.context_names), 1)).astype(np.float32)
        for i, context in enumerate(self.context_names):
            rows = [j for j, c in enumerate(database.contexts) if c == context]
            if rows:  # a cell line unseen in training falls back to the all-lines mean
                shift[i] = response[rows].mean(axis=0)
        self.shift = torch.from_numpy(shift)

    def forward(self, batch: CellSetBatch, context: torch.Tensor | None = None) -> torch.Tensor:
        return batch.ctrl + self.shift.to(batch.ctrl)[batch.context_index].unsqueeze(1)


@hookimpl
def ptrag_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec("control", lambda params, ctx: ControlBaseline(), ComponentParams,
                      "Baseline: predict the matched control cells (no effect)"),
        GeneratorSpec("pert-mean", lambda params, ctx: PertMeanBaseline(ctx), ComponentParams,
                      "Baseline: control cells plus the cell line's mean training response"),
    ]
