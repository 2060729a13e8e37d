"""`attention`: vanilla RAG. Each cell cross-attends over the K candidates.

q = MLP(cell state + query), k = MLP(candidate), v = MLP(candidate); softmax(q k^T / sqrt(H))
over the valid candidates (padding masked) gives weights [B,S,K]; ``weight * attn @ v`` is added
to the generator input. No selection, no sparsity: every candidate contributes softly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ptrag.core.hookspecs import BuildContext, ComponentParams, SelectorSpec, hookimpl
from ptrag.core.interfaces import SelectionInput, Selector, SelectorOutput
from ptrag.core.registry import builtin_specs


def _mlp(h: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Linear(h, h))


class AttentionParams(ComponentParams):
    weight: float = Field(1.0, ge=0, description="scale of the attended context added to the input")


class AttentionSelector(Selector):
    def __init__(self, params: AttentionParams, ctx: BuildContext):
        super().__init__()
        h = ctx.hidden_dim
        self.params = params
        self.q, self.k, self.v = _mlp(h), _mlp(h), _mlp(h)

    def forward(self, inputs: SelectionInput) -> SelectorOutput:
        candidates = inputs.candidates
        if candidates.shape[1] == 0:
            return SelectorOutput(context=None, weights=None)
        q = self.q(inputs.cell_states + inputs.query.unsqueeze(1))  # [B,S,H]
        k, v = self.k(candidates), self.v(candidates)  # [B,K,H]
        logits = torch.einsum("bsh,bkh->bsk", q, k) / q.shape[-1] ** 0.5
        logits = logits.masked_fill(~inputs.mask[:, None, :], float("-inf"))
        attn = torch.nan_to_num(F.softmax(logits.float(), dim=-1)).to(v.dtype)  # all-padding rows -> 0
        context = self.params.weight * torch.einsum("bsk,bkh->bsh", attn, v)
        return SelectorOutput(context=context, weights=attn)


@hookimpl
def ptrag_selectors() -> list[SelectorSpec]:
    return builtin_specs("selector", __name__)
