"""`stack`: the observed evidence as the backbone, shifted towards what converged learned models predict.

predicted cells = backbone cells + sum_m w_m * (mean of member m's cells - mean of the backbone's)

The backbone (default ``gene-other-lines``: control cells + the same gene's response in the other
lines) keeps the control cells' spread; each partner (default ``state``, trained until its
validation stopped improving) moves the set's mean. Evidence and a converged learned model make
errors that partly cancel, so a partial shift can beat both (docs/index.md has the measurements).

The weights are fitted on the validation groups only, by least squares on the set means, shrunk
towards 0 (the backbone) by ``shrink`` validation sets' worth of prior, so a small validation set
moves them less; they start at 0, and the engine keeps the backbone unless the fitted weights are
better on validation on both energy and pearson-delta. The members are any presets, a user's
plugin generator included: the engine trains them (or reuses the same run's comparator runs) and
hands them over as functions of a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from pydantic import Field, field_validator

from ptrag.core.hookspecs import BuildContext, ComponentParams, GeneratorSpec, hookimpl
from ptrag.core.interfaces import CellSetBatch, GenerationInput, Generator, GeneratorCapabilities
from ptrag.core.registry import builtin_specs

Member = Callable[[CellSetBatch], torch.Tensor]


class StackParams(ComponentParams):
    backbone: str = Field("gene-other-lines", description="preset whose predicted cells are the backbone")
    partners: list[str] = Field(default_factory=lambda: ["state"], min_length=1,
                                description="presets (trained to convergence) whose predicted means shift it")
    shrink: float = Field(4.0, ge=0, description="prior towards the backbone, in validation sets: the fit is "
                          "a ridge whose penalty is shrink x the mean squared partner shift")

    @field_validator("partners")
    @classmethod
    def _distinct(cls, partners: list[str]) -> list[str]:
        if len(set(partners)) != len(partners):
            raise ValueError("partners are listed twice")
        return partners


class StackGenerator(Generator):
    def __init__(self, params: StackParams, ctx: BuildContext):
        super().__init__()
        self.params = params
        if params.backbone in params.partners:
            raise ValueError(f"the backbone {params.backbone!r} cannot also be a partner")
        self.capabilities = GeneratorCapabilities(
            trainable=False, uses_retrieval=False, reads_gene_embeddings=False,
            members=(params.backbone, *params.partners), calibrates=True, protects_start=True)
        # saved with the checkpoint: prediction reloads the fitted weights with the members
        self.register_buffer("weights", torch.zeros(len(params.partners)))
        self.members: dict[str, Member] = {}

    def attach_members(self, members: Mapping[str, Member]) -> None:
        missing = [m for m in self.capabilities.members if m not in members]
        if missing:
            raise ValueError(f"stack: no trained member for {', '.join(missing)}")
        self.members = dict(members)

    def _parts(self, batch: CellSetBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's cells [B,S,G] and each partner's mean shift from them [B,M,G]."""
        if not self.members:
            raise RuntimeError("stack: attach_members() has not been called")
        backbone = self.members[self.params.backbone](batch)
        base = backbone.mean(1)
        shifts = torch.stack([self.members[m](batch).mean(1) - base for m in self.params.partners], dim=1)
        return backbone, shifts

    def forward(self, inputs: GenerationInput) -> torch.Tensor:
        backbone, shifts = self._parts(inputs.batch)
        return backbone + torch.einsum("m,bmg->bg", self.weights.to(shifts), shifts)[:, None, :]

    @torch.no_grad()
    def calibrate(self, batches: Sequence[CellSetBatch]) -> dict[str, Any]:
        """Ridge on the set means: target mean - backbone mean ~ sum_m w_m * shift_m."""
        design, residual, n_sets = [], [], 0
        for batch in batches:
            backbone, shifts = self._parts(batch)
            design.append(shifts.permute(0, 2, 1).reshape(-1, shifts.shape[1]).double())  # [B*G, M]
            residual.append((batch.target.mean(1) - backbone.mean(1)).reshape(-1).double())
            n_sets += shifts.shape[0]
        a, r = torch.cat(design), torch.cat(residual)
        gram = a.T @ a
        penalty = self.params.shrink / max(n_sets, 1) * torch.diag(torch.diag(gram))
        weights = torch.linalg.solve(gram + penalty, a.T @ r)
        self.weights = weights.to(self.weights.dtype)
        return {"weights": dict(zip(self.params.partners, map(float, weights), strict=True)),
                "validation_sets": n_sets, "shrink": self.params.shrink}


@hookimpl
def ptrag_generators() -> list[GeneratorSpec]:
    return builtin_specs("generator", __name__)
