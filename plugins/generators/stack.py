"""`stack`: the observed evidence as the backbone, shifted towards what converged learned models predict.

Per held-out (perturbation, cell line) group, from each member's prediction of the WHOLE group
(every predicted cell, as the member's own run wrote it):

    predicted cells = backbone cells + sum_m w_m * (mean of member m's cells - mean of the backbone's cells)

The backbone (default ``gene-other-lines``: control cells + the same gene's response in the other
lines) keeps the control cells' spread; each partner (default ``state``, trained until its
validation stopped improving) moves the group's mean. Evidence and a converged learned model make
errors that partly cancel, so a partial shift can beat both (docs/model.md#stacking).

Means are taken over whole groups, never over sampled cell sets, so the combination is exact and
deterministic: the stack's predictions can be recomputed from its members' ``predictions.h5ad``
(tests/test_stack.py does). Log expression cannot be negative: where the backbone's cells of a
gene are all >= 0 and the shift would push some below 0, the same change of mean is applied as one
offset with cells floored at 0 (:func:`shift_to_mean`), so the group's mean is still exactly the
formula's (or 0 where the formula's mean itself is negative).

The weights are fitted on the validation groups only: least squares with one row per (group,
gene) of the members' group means, shrunk towards 0 (the backbone) by ``shrink`` validation
groups' worth of prior, so few validation perturbations move them less. They start at 0, and the
engine keeps the backbone unless the fitted weights are better on validation on both energy and
pearson-delta.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from ptrag.core.hookspecs import BuildContext, ComponentParams, GeneratorSpec, hookimpl
from ptrag.core.interfaces import GenerationInput, Generator, GeneratorCapabilities, MemberCells
from ptrag.core.registry import builtin_specs


class StackParams(ComponentParams):
    backbone: str = Field("gene-other-lines", description="preset whose predicted cells are the backbone")
    partners: list[str] = Field(default_factory=lambda: ["state"], min_length=1,
                                description="presets (trained to convergence) whose predicted means shift it")
    shrink: float = Field(4.0, ge=0, description="prior towards the backbone, in validation groups: the fit is a "
                          "ridge whose penalty is shrink x the mean over groups of each partner's squared shift")

    @field_validator("partners")
    @classmethod
    def _distinct(cls, partners: list[str]) -> list[str]:
        if len(set(partners)) != len(partners):
            raise ValueError("partners are listed twice")
        return partners


def shift_to_mean(cells: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``cells`` [n,G] moved to the per-gene ``mean`` [G] by one offset per gene.

    A gene whose cells are all >= 0 stays >= 0: its offset c solves mean(max(0, x + c)) = mean,
    which is the plain shift whenever no cell would cross 0, and all zeros where ``mean`` <= 0.
    Other genes (features that may be negative) get the plain shift."""
    x = np.asarray(cells, dtype=np.float64)
    target = np.asarray(mean, dtype=np.float64)
    out = x + (target - x.mean(axis=0))
    floored = (out < 0).any(axis=0) & (x >= 0).all(axis=0)
    if floored.any():
        out[:, floored] = _floored_shift(x[:, floored], np.maximum(target[floored], 0.0))
    return out


def _floored_shift(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """max(0, x + c) per column with column means ``target`` (>= 0): with the cells sorted in
    decreasing order, if the top j stay positive then c = (n * target - sum of the top j) / j; the
    right j is the one where cell j stays above 0 and cell j + 1 does not."""
    n = len(x)
    top = -np.sort(-x, axis=0)
    offsets = (n * target - np.cumsum(top, axis=0)) / np.arange(1, n + 1)[:, None]
    below = np.vstack([top[1:], np.full((1, top.shape[1]), -np.inf)])
    fits = (top + offsets > 0) & (below + offsets <= 0)
    c = offsets[fits.argmax(axis=0), np.arange(top.shape[1])]
    c = np.where(fits.any(axis=0), c, -top[0])  # target 0: every cell at 0
    return np.maximum(x + c, 0.0)


class StackGenerator(Generator):
    def __init__(self, params: StackParams, ctx: BuildContext):
        super().__init__()
        self.params = params
        if params.backbone in params.partners:
            raise ValueError(f"the backbone {params.backbone!r} cannot also be a partner")
        self.capabilities = GeneratorCapabilities(
            trainable=False, uses_retrieval=False, reads_gene_embeddings=False,
            members=(params.backbone, *params.partners), calibrates=True, protects_start=True, combines="groups")
        # saved with the checkpoint: prediction reloads the fitted weights with the members
        self.register_buffer("weights", torch.zeros(len(params.partners), dtype=torch.float64))

    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        raise RuntimeError("stack combines its members' whole-group predictions (combine), not cell sets")

    def shifts(self, group: MemberCells) -> tuple[np.ndarray, np.ndarray]:
        """The backbone's cells [n,G] and each partner's group mean minus the backbone's [M,G]."""
        backbone = np.asarray(group.members[self.params.backbone], dtype=np.float64)
        base = backbone.mean(axis=0)
        partners = [np.asarray(group.members[m], dtype=np.float64).mean(axis=0) - base for m in self.params.partners]
        return backbone, np.stack(partners)

    def combine(self, group: MemberCells) -> np.ndarray:
        backbone, shifts = self.shifts(group)
        weights = self.weights.detach().cpu().numpy().astype(np.float64)
        return shift_to_mean(backbone, backbone.mean(axis=0) + weights @ shifts)

    def calibrate_groups(self, groups: Sequence[MemberCells]) -> dict[str, Any]:
        """Ridge on the group means: real mean - backbone mean ~ sum_m w_m * shift_m, one row per
        (group, gene); penalty ``shrink`` x the per-group mean of each partner's squared shift."""
        design, residual = [], []
        for group in groups:
            backbone, shifts = self.shifts(group)
            design.append(shifts.T)  # [G, M]
            residual.append(np.asarray(group.real, dtype=np.float64).mean(axis=0) - backbone.mean(axis=0))
        a, r = np.concatenate(design), np.concatenate(residual)
        gram = a.T @ a
        penalty = self.params.shrink / max(len(groups), 1) * np.diag(np.diag(gram))
        weights = np.linalg.lstsq(gram + penalty, a.T @ r, rcond=None)[0]
        self.weights = torch.as_tensor(weights, dtype=self.weights.dtype)
        return {"weights": dict(zip(self.params.partners, map(float, weights), strict=True)),
                "validation_groups": len(groups), "shrink": self.params.shrink,
                "fit": "least squares on per-group means, one row per (validation group, gene)"}


@hookimpl
def ptrag_generators() -> list[GeneratorSpec]:
    return builtin_specs("generator", __name__)
