"""`uniform`: the mean of the projected valid candidates, the same for every cell (no selection)."""

from __future__ import annotations

import torch
from torch import nn

from ptrag.core.hookspecs import BuildContext, ComponentParams, SelectorSpec, hookimpl
from ptrag.core.interfaces import SelectionInput, Selector, SelectorOutput
from ptrag.core.registry import builtin_specs


class UniformSelector(Selector):
    def __init__(self, params: ComponentParams, ctx: BuildContext):
        super().__init__()
        self.project = nn.Linear(ctx.hidden_dim, ctx.hidden_dim)

    def forward(self, inputs: SelectionInput) -> SelectorOutput:
        b, s, _ = inputs.cell_states.shape
        candidates = inputs.candidates
        if candidates.shape[1] == 0:
            return SelectorOutput(context=None, weights=None)
        valid = inputs.mask.to(candidates.dtype)
        w = valid / valid.sum(1, keepdim=True).clamp(min=1)  # [B,K]
        weights = w[:, None, :].expand(b, s, -1)
        context = torch.einsum("bsk,bkh->bsh", weights, self.project(candidates))
        return SelectorOutput(context=context, weights=weights)


@hookimpl
def ptrag_selectors() -> list[SelectorSpec]:
    return builtin_specs("selector", __name__)
