"""`uniform`: the mean of the projected valid candidates, the same for every cell (no selection)."""

from __future__ import annotations

import torch
from torch import nn

from ptrag.core.hookspecs import BuildContext, ComponentParams, SelectorSpec, hookimpl
from ptrag.core.interfaces import Selector, SelectorOutput


class UniformSelector(Selector):
    name = "uniform"

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.project = nn.Linear(ctx.hidden_dim, ctx.hidden_dim)

    def forward(self, cell_state: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor,
                scores: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> SelectorOutput:
        b, s, _ = cell_state.shape
        if candidates.shape[1] == 0:
            return SelectorOutput(context=None, weights=None)
        valid = mask.to(candidates.dtype) if mask is not None else torch.ones(candidates.shape[:2]).to(candidates)
        w = valid / valid.sum(1, keepdim=True).clamp(min=1)  # [B,K]
        weights = w[:, None, :].expand(b, s, -1)
        context = torch.einsum("bsk,bkh->bsh", weights, self.project(candidates))
        return SelectorOutput(context=context, weights=weights)


@hookimpl
def ptrag_selectors() -> list[SelectorSpec]:
    return [SelectorSpec("uniform", lambda params, ctx: UniformSelector(ctx), ComponentParams,
                         "Mean of the K retrieved candidates (no selection)")]
