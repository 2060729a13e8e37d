"""`gumbel`: PT-RAG's stage-2 selector, a hard keep/drop decision per (cell, candidate).

For each cell s and candidate k the features [cell state_s, query, candidate_k] go through
LayerNorm -> MLP -> 2 logits (keep, drop). Training samples a hard straight-through
Gumbel-Softmax (forward 0/1, backward the soft sample's gradient, temperature ``tau``); evaluation
takes the argmax unless ``sample_at_eval`` (the authors draw one hard sample in evaluation too;
ptrag seeds it per group, so the same seed gives the same predictions). Kept candidates are summed
into the generator input: as a projection of the candidate alone (``context_from: candidate``) or, as in
the authors' code, of the normalised [cell state, query, candidate] the scorer sees
(``context_from: triple``), so that what a kept candidate adds depends on the query and the cell.
The auxiliary loss ``sparsity_weight * mean keep-weight`` pushes towards
keeping few candidates. Padding candidates (id -1, ``mask`` False) are never kept.

Controls of how much is kept (docs/model.md has the measurements):

- ``standardize_logits`` divides the logits by their standard deviation over the batch before the
  Gumbel sample, as the authors' code does: the logits cannot grow without bound, so training
  samples stay stochastic. The argmax at evaluation is unchanged by a positive scale.
- ``keep_target`` turns the L1 penalty into ``sparsity_weight * |mean keep - keep_target|``, which
  pulls the keep-ratio towards the target from both sides instead of towards 0.
- ``tau_start`` + ``tau_anneal_steps`` anneal the temperature geometrically from ``tau_start`` to
  ``tau`` (smoother gradients first, sharper later).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ptrag.core.hookspecs import BuildContext, ComponentParams, SelectorSpec, hookimpl
from ptrag.core.interfaces import SelectionInput, Selector, SelectorCapabilities, SelectorOutput
from ptrag.core.registry import builtin_specs


class GumbelParams(ComponentParams):
    tau: float = Field(0.5, gt=0, description="Gumbel-Softmax temperature")
    sparsity_weight: float = Field(0.1, ge=0, description="weight of the mean keep-weight penalty")
    sample_at_eval: bool = Field(False, description="sample at evaluation instead of the argmax")
    scorer_hidden: int = Field(24, ge=1, description="hidden width of the keep/drop scorer MLP (24: as accurate "
                               "as 128 in paired tests and within ~10% of a state step; docs/model.md#speed)")
    sparsity_warmup: int = Field(0, ge=0, description="training steps over which the sparsity weight "
                                 "ramps linearly from 0 to sparsity_weight; 0 = full weight from step 1")
    standardize_logits: bool = Field(False, description="divide the keep/drop logits by their standard "
                                     "deviation over the batch before sampling (the authors' code)")
    keep_target: float | None = Field(None, ge=0, le=1, description="penalise |mean keep - keep_target| "
                                         "instead of the mean keep (a budget that cannot drive keeping to 0)")
    tau_start: float | None = Field(None, gt=0, description="initial temperature, annealed geometrically to "
                                       "tau over tau_anneal_steps; empty = constant tau")
    tau_anneal_steps: int = Field(0, ge=0, description="training steps of the temperature annealing")
    context_from: Literal["candidate", "triple"] = Field(
        "candidate", description="what a kept candidate contributes: candidate = a projection of the candidate "
        "alone (the same for every cell and query); triple = a small MLP of the normalised [cell state, query, "
        "candidate], the representation the scorer sees (the authors' code)")
    context_hidden: int = Field(64, ge=1, description="hidden width of the triple context MLP")


def normalised_linear(ln: nn.LayerNorm, lin: nn.Linear, cell_state: torch.Tensor, query: torch.Tensor,
                      candidates: torch.Tensor) -> torch.Tensor:
    """``lin(ln([cell state_s, query, candidate_k]))`` for every (s, k): [B,S,K,H'].

    LayerNorm followed by a linear layer splits into per-part products ([B,S,H'], [B,H'],
    [B,K,H']) plus per-(s,k) mean and variance from per-part sums, so the cost is O(B*S*K*H')
    instead of O(B*S*K*3H*H') and the [B,S,K,3H] concatenation is never built.
    """
    h = cell_state.shape[-1]
    n = 3 * h
    wg = lin.weight * ln.weight  # [H',3H]: gamma folded into the weight
    wsum = wg.sum(1)  # [H']
    # the mean of the concatenation is a sum of per-part means, so centring splits per part too
    s_mean, q_mean, c_mean = cell_state.sum(-1) / n, query.sum(-1) / n, candidates.sum(-1) / n
    a = cell_state @ wg[:, :h].T - s_mean[..., None] * wsum  # [B,S,H']
    a = a + (query @ wg[:, h:2 * h].T - q_mean[..., None] * wsum)[:, None, :]
    c = candidates @ wg[:, 2 * h:].T - c_mean[..., None] * wsum  # [B,K,H']
    mu = s_mean[:, :, None] + q_mean[:, None, None] + c_mean[:, None, :]  # [B,S,K]
    ex2 = (cell_state.pow(2).sum(-1)[:, :, None] + query.pow(2).sum(-1)[:, None, None]
           + candidates.pow(2).sum(-1)[:, None, :]) / n
    rstd = torch.rsqrt((ex2 - mu.pow(2)).clamp(min=0) + ln.eps)  # [B,S,K], biased variance as LayerNorm
    # only two passes over the [B,S,K,H'] tensor
    return torch.addcmul(ln.bias @ lin.weight.T + lin.bias, a[:, :, None, :] + c[:, None, :, :], rstd[..., None])


class GumbelSelector(Selector):
    def __init__(self, params: GumbelParams, ctx: BuildContext):
        super().__init__()
        h = ctx.hidden_dim
        self.params = params
        self.capabilities = SelectorCapabilities(stochastic=params.sample_at_eval)
        self.scorer = nn.Sequential(
            nn.LayerNorm(3 * h), nn.Linear(3 * h, params.scorer_hidden), nn.GELU(),
            nn.Linear(params.scorer_hidden, 2),
        )
        if params.context_from == "triple":  # shares the scorer's LayerNorm: the same representation
            self.context_mlp = nn.Sequential(nn.Linear(3 * h, params.context_hidden), nn.GELU(),
                                             nn.Linear(params.context_hidden, h))
        else:
            self.project = nn.Linear(h, h)
        # training forward passes so far: drives the sparsity warm-up and is saved (and restored
        # on resume) with the module's state
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))

    def sparsity_scale(self) -> float:
        """Fraction of ``sparsity_weight`` in force now (1 after the warm-up).

        Why a warm-up: early on, the penalty's steady push towards "drop" outweighs the loss's
        small, noisy straight-through signal, and a dropped candidate rarely comes back (measured
        on the demo: keep-ratio near 0 within a few dozen steps; docs/model.md).
        """
        warmup = self.params.sparsity_warmup
        return 1.0 if warmup == 0 else min(1.0, float(self.train_steps) / warmup)

    def temperature(self) -> float:
        """``tau`` now: annealed from ``tau_start`` over ``tau_anneal_steps`` training steps."""
        p = self.params
        if p.tau_start is None or p.tau_anneal_steps == 0:
            return p.tau
        frac = min(1.0, float(self.train_steps) / p.tau_anneal_steps)
        return p.tau_start * (p.tau / p.tau_start) ** frac

    def logits(self, cell_state: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """[B,S,K,2] keep/drop logits: scorer(LayerNorm([cell state, query, candidate])).

        Computed exactly without building the [B,S,K,3H] concatenation (:func:`normalised_linear`);
        :meth:`logits_reference` is the literal formula (tests compare them).
        """
        hidden = normalised_linear(self.scorer[0], self.scorer[1], cell_state, query, candidates)
        return self.scorer[3](self.scorer[2](hidden))

    def logits_reference(self, cell_state: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """The literal [cell, query, candidate] -> LayerNorm -> MLP (memory O(B*S*K*3H))."""
        b, s, h = cell_state.shape
        k = candidates.shape[1]
        features = torch.cat([
            cell_state.unsqueeze(2).expand(b, s, k, h),
            query[:, None, None, :].expand(b, s, k, h),
            candidates.unsqueeze(1).expand(b, s, k, h),
        ], dim=-1)
        return self.scorer(features)

    def context(self, keep: torch.Tensor, cell_state: torch.Tensor, query: torch.Tensor,
                candidates: torch.Tensor) -> torch.Tensor:
        """[B,S,H]: the sum over kept candidates of what each contributes to a cell.

        ``triple``: MLP(LayerNorm([cell, query, candidate])) per (cell, candidate); its last linear
        layer is applied after the sum (linear, so exact), which keeps the [B,S,K,*] work to one
        GELU over the hidden layer.
        """
        if self.params.context_from == "candidate":
            return torch.einsum("bsk,bkh->bsh", keep, self.project(candidates))
        first, act, last = self.context_mlp
        hidden = act(normalised_linear(self.scorer[0], first, cell_state, query, candidates))  # [B,S,K,H']
        summed = torch.einsum("bsk,bskj->bsj", keep, hidden)
        return summed @ last.weight.T + keep.sum(-1, keepdim=True) * last.bias

    def forward(self, inputs: SelectionInput) -> SelectorOutput:
        cell_state, candidates, mask = inputs.cell_states, inputs.candidates, inputs.mask
        if candidates.shape[1] == 0:
            return SelectorOutput(context=None, weights=None, stats={"keep_ratio": 0.0})
        logits = self.logits(cell_state, inputs.query, candidates).float()
        if self.params.standardize_logits:
            logits = logits / (logits.std() + 1e-6)
        margin = logits[..., 0] - logits[..., 1]  # [B,S,K]: keep minus drop
        tau = self.temperature()
        if self.training or self.params.sample_at_eval:
            keep = hard_gumbel_keep(margin, tau)  # 0/1 forward, straight-through gradient backward
        else:
            keep = (margin >= 0).to(margin.dtype)  # the argmax (ties keep, as argmax picks the first)
        keep = (keep * mask[:, None, :].to(keep.dtype)).to(cell_state.dtype)  # padding is never kept
        context = self.context(keep, cell_state, inputs.query, candidates)
        mean_keep = keep.sum() / (mask.sum().clamp(min=1) * cell_state.shape[1])
        if self.training:
            self.train_steps += 1
        weight = self.params.sparsity_weight * self.sparsity_scale()
        target = self.params.keep_target
        penalty = mean_keep.float() if target is None else (mean_keep.float() - target).abs()
        aux = {"sparsity": weight * penalty} if self.params.sparsity_weight else {}
        stats = {"keep_ratio": float(mean_keep.detach())}
        if self.params.tau_start is not None:
            stats["tau"] = tau
        return SelectorOutput(context=context, weights=keep, aux_losses=aux, stats=stats)


def hard_gumbel_keep(margin: torch.Tensor, tau: float) -> torch.Tensor:
    """``F.gumbel_softmax(hard=True)`` over (keep, drop), computed on their difference only.

    The difference of two Gumbel(0, 1) draws is a Logistic(0, 1) draw, and the soft sample's keep
    component is ``sigmoid((margin + noise) / tau)``: the same distribution and straight-through
    gradient as the two-class form, without the [..., 2] softmax (a cheaper training step).
    """
    u = torch.rand_like(margin).clamp_(1e-6, 1 - 1e-6)
    noisy = margin + torch.log(u) - torch.log1p(-u)
    soft = torch.sigmoid(noisy / tau)
    hard = (noisy > 0).to(soft.dtype)
    return hard + (soft - soft.detach())  # exactly 0/1 forward; the soft sample's gradient backward


@hookimpl
def ptrag_selectors() -> list[SelectorSpec]:
    return builtin_specs("selector", __name__)
