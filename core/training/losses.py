"""Training losses between predicted and real cell sets, batched on the model's device.

The energy distance compares two sets as distributions (the paper's and STATE's loss), so a model
is rewarded for matching cell-to-cell spread, not only the mean. It can be computed in expression
space (``energy``: Euclidean over all G genes) or per principal component (``pc-energy``: the mean
over the top PCs of each cell line of the 1-D energy distance, the way the evaluation scores
cells; in G dimensions of mostly noise a mean shift of a few responsive genes barely moves the
Euclidean distances, so the gene-space gradient is weak where it matters). MSE of the set means
is offered as an option and as an add-on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.pca import fit_pca
from ..errors import ConfigError

LOSSES = ("energy", "mse", "energy+mse", "pc-energy", "pc-energy+mse")
N_LOSS_PCS = 50


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-set energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| for x [B,S,G], y [B,T,G] -> [B].

    Euclidean distances (torch.cdist); the within-set terms include the zero diagonal (the
    V-statistic), which keeps the value >= 0 and the gradient smooth. Computed in float32.
    """
    x, y = x.float(), y.float()
    xy = torch.cdist(x, y).mean(dim=(1, 2))
    xx = torch.cdist(x, x).mean(dim=(1, 2))
    yy = torch.cdist(y, y).mean(dim=(1, 2))
    return 2 * xy - xx - yy


def per_axis_energy(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Mean over the last axis of sqrt(1-D energy distance) for x [B,S,P], y [B,T,P] -> [B].

    The evaluation's ``energy`` metric (scipy's per-PC energy distance, averaged over PCs) as a
    differentiable loss; ``eps`` keeps the square root's gradient finite at 0.
    """
    x, y = x.float(), y.float()
    xy = (x[:, :, None, :] - y[:, None, :, :]).abs().mean(dim=(1, 2))
    xx = (x[:, :, None, :] - x[:, None, :, :]).abs().mean(dim=(1, 2))
    yy = (y[:, :, None, :] - y[:, None, :, :]).abs().mean(dim=(1, 2))
    return torch.sqrt((2 * xy - xx - yy).clamp(min=0) + eps).mean(-1)


def mean_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-set squared error of the set means, averaged over genes: [B,S,G], [B,T,G] -> [B]."""
    return (x.float().mean(1) - y.float().mean(1)).pow(2).mean(-1)


@dataclass
class PCSpace:
    """Top principal axes per cell line, fitted on training cells: where ``pc-energy`` is measured."""

    mean: torch.Tensor  # [C,G]
    axes: torch.Tensor  # [C,G,P]

    def project(self, x: torch.Tensor, context_index: torch.Tensor) -> torch.Tensor:
        """x [B,S,G] -> [B,S,P] on the axes of each set's cell line."""
        c = context_index.to(self.mean.device)
        return torch.einsum("bsg,bgp->bsp", x.float() - self.mean[c][:, None, :], self.axes[c])

    def to(self, device: torch.device | str) -> PCSpace:
        return PCSpace(self.mean.to(device), self.axes.to(device))


def fit_pc_space(blocks: Sequence[np.ndarray], n_pcs: int = N_LOSS_PCS) -> PCSpace:
    """One PCA per cell line from its training cells (``blocks[c]`` [n_c,G], index = context index)."""
    fitted = [fit_pca([b], n_pcs) for b in blocks]
    p = min(f.components.shape[1] for f in fitted)
    mean = torch.tensor(np.stack([f.mean for f in fitted]), dtype=torch.float32)
    axes = torch.tensor(np.stack([f.components[:, :p] for f in fitted]), dtype=torch.float32)
    return PCSpace(mean, axes)


def uses_pc_space(name: str) -> bool:
    return name.startswith("pc-energy")


def set_distance(name: str, pred: torch.Tensor, real: torch.Tensor, space: PCSpace | None = None,
                 context_index: torch.Tensor | None = None) -> torch.Tensor:
    """The distribution term of loss ``name`` per set [B]: what validation tracks."""
    if uses_pc_space(name):
        if space is None or context_index is None:
            raise ConfigError(f"train.loss {name!r} needs the cell lines' principal axes (fit_pc_space)")
        return per_axis_energy(space.project(pred, context_index), space.project(real, context_index))
    if name == "mse":
        return mean_mse(pred, real)
    return energy_distance(pred, real)


def set_loss(name: str, pred: torch.Tensor, real: torch.Tensor, space: PCSpace | None = None,
             context_index: torch.Tensor | None = None) -> torch.Tensor:
    """The configured training loss (``train.loss``), averaged over the B sets."""
    if name not in LOSSES:
        raise ConfigError(f"train.loss {name!r} is unknown; choose one of {', '.join(LOSSES)}")
    base = name.removesuffix("+mse")
    value = set_distance(base, pred, real, space, context_index)
    if name.endswith("+mse"):
        value = value + mean_mse(pred, real)
    return value.mean()


def sample_blocks(data: Any, groups: Sequence[tuple[str, str]], contexts: Sequence[str], rng: np.random.Generator,
                  max_cells: int = 4000) -> list[np.ndarray]:
    """Per cell line, up to ``max_cells`` of its training cells (perturbed groups + controls)."""
    out = []
    for context in contexts:
        rows = [data.group_indices(p, c) for p, c in groups if c == context] + [data.control_indices(context)]
        rows = np.concatenate(rows)
        if len(rows) > max_cells:
            rows = np.sort(rng.choice(rows, size=max_cells, replace=False))
        out.append(np.asarray(data.X[rows], dtype=np.float32))
    return out
