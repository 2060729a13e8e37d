"""`evidence`: weigh retrieved candidates by the kind of evidence they carry, starting at a baseline.

Measurement taught us that observed responses are the signal (docs/architecture.md, "What
measurement taught us"). This selector
combines three kinds of them into coefficients on the candidates' responses, which an evidence
generator (``generators/evidence.py``) turns into the predicted mean shift:

- ``same``: the query gene's own response in the other cell lines;
- ``near``: responses of related genes (other genes, any line), the ``near_k`` nearest by stage 1;
- ``dev``: line-specific deviations of related genes measured in the query's line (their response
  there minus their mean response elsewhere), i.e. how this line departs from the others.

shift = a_same * sum_k w_same[k] r_k + a_near * sum_k w_near[k] r_k + a_dev * sum_k w_dev[k] d_k.
Within a kind, w is a softmax over that kind's candidates of learned logits (from the candidate's
line and the query's line, its stage-1 similarity and rank, and query x candidate features); the
mixing coefficients a are a per-query prior plus a learned term. Every learned output starts at
exactly zero, so the untrained selector *is* the baseline: the same gene in the other lines where
it has any (``gene-other-lines``), else the mean of the ``near_k`` nearest genes
(``neighbour-mean``), and no deviation term. Training can only move away from it where that lowers
the loss, and the engine keeps the untrained start when validation prefers it.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ptrag.core.hookspecs import BuildContext, ComponentParams, SelectorSpec, hookimpl
from ptrag.core.interfaces import EvidenceWeights, SelectionInput, Selector, SelectorCapabilities, SelectorOutput
from ptrag.core.registry import builtin_specs

KINDS = ("same", "near", "dev")
_N_SCALARS = 5  # same gene, same line, has deviation, stage-1 score, rank


class EvidenceParams(ComponentParams):
    near_k: int = Field(8, ge=1, description="nearest other genes averaged when the query gene has no other line "
                        "(the neighbour-mean baseline's k)")
    hidden: int = Field(32, ge=1, description="width of the candidate and mixing scorers")
    pair_dim: int = Field(8, ge=1, description="size of the learned (query line, candidate line) embedding")


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``mask``; all-masked rows give zeros (not NaN)."""
    filled = logits.masked_fill(~mask, float("-inf"))
    return torch.nan_to_num(torch.softmax(filled.float(), dim=-1)).to(logits.dtype) * mask


class EvidenceSelector(Selector):
    capabilities = SelectorCapabilities(needs_relations=True)

    def __init__(self, params: EvidenceParams, ctx: BuildContext):
        super().__init__()
        h, d = ctx.hidden_dim, params.hidden
        self.params = params
        self.n_lines = max(ctx.n_contexts, 1) + 1  # the last index: a line unseen in training
        self.pair = nn.Embedding(self.n_lines * self.n_lines, params.pair_dim)
        self.query_line = nn.Embedding(self.n_lines, params.pair_dim)
        self.q_proj, self.c_proj = nn.Linear(h, d), nn.Linear(h, d)
        self.candidate_scorer = nn.Sequential(nn.Linear(_N_SCALARS + params.pair_dim + d, d), nn.GELU(),
                                              nn.Linear(d, len(KINDS)))
        # per query: corrections to a_same, a_near, a_dev and the share beta of learned near weights
        self.mixer = nn.Sequential(nn.Linear(4 + params.pair_dim + d, d), nn.GELU(), nn.Linear(d, 4))
        for head in (self.candidate_scorer[-1], self.mixer[-1]):  # start exactly at the baseline
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, inputs: SelectionInput) -> SelectorOutput:
        candidates, relations, valid = inputs.candidates, inputs.relations, inputs.mask
        b, k = candidates.shape[:2]
        if k == 0 or relations is None:
            return SelectorOutput(context=None, weights=None)
        dtype = candidates.dtype
        same = relations.same_gene & valid
        other = valid & ~relations.same_gene
        dev = other & relations.same_context & relations.has_deviation
        # the near_k nearest other genes in stage-1 order (rows are ranked by score)
        near_prior = other & (other.long().cumsum(-1) <= self.params.near_k)

        score = torch.where(valid, inputs.scores, torch.zeros_like(inputs.scores))
        rank = torch.arange(k, device=candidates.device, dtype=dtype).expand(b, k) / k
        lines = relations.query_context.clamp(max=self.n_lines - 1)
        cand_lines = relations.candidate_context.clamp(max=self.n_lines - 1)
        q = self.q_proj(inputs.query)  # [B,D]
        features = torch.cat([
            torch.stack([relations.same_gene.to(dtype), relations.same_context.to(dtype),
                         relations.has_deviation.to(dtype), score.to(dtype), rank], dim=-1),
            self.pair(lines[:, None] * self.n_lines + cand_lines),
            q[:, None, :] * self.c_proj(candidates),
        ], dim=-1)
        logits = self.candidate_scorer(features)  # [B,K,3]
        w_same = _masked_softmax(logits[..., 0], same)
        w_near_learned = _masked_softmax(logits[..., 1], other)
        w_dev = _masked_softmax(logits[..., 2], dev)
        w_near_prior = near_prior.to(dtype) / near_prior.sum(-1, keepdim=True).clamp(min=1)

        has_same = same.any(-1).to(dtype)
        has_near = other.any(-1).to(dtype)
        has_dev = dev.any(-1).to(dtype)
        near_score = (score * near_prior).sum(-1) / near_prior.sum(-1).clamp(min=1)
        summary = torch.stack([has_same, same.sum(-1).to(dtype) / self.n_lines, has_dev, near_score.to(dtype)], -1)
        delta = self.mixer(torch.cat([summary, self.query_line(lines), q], dim=-1))  # [B,4]
        a_same = has_same * (1 + delta[:, 0])
        a_near = has_near * ((1 - has_same) + delta[:, 1])
        a_dev = has_dev * delta[:, 2]
        beta = delta[:, 3:4]
        w_near = w_near_prior + beta * (w_near_learned - w_near_prior)

        response = a_same[:, None] * w_same + a_near[:, None] * w_near  # [B,K]
        deviation = a_dev[:, None] * w_dev
        s = inputs.cell_states.shape[1]
        stats = {f"evidence_{kind}": float(a.detach().mean())
                 for kind, a in zip(KINDS, (a_same, a_near, a_dev), strict=True)}
        return SelectorOutput(context=None, weights=response[:, None, :].expand(b, s, k),
                              evidence=EvidenceWeights(response, deviation), stats=stats)


@hookimpl
def ptrag_selectors() -> list[SelectorSpec]:
    return builtin_specs("selector", __name__)
