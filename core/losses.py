"""Training losses between predicted and real cell sets, batched on the model's device.

The energy distance compares two sets as distributions (the paper's and STATE's loss), so a model
is rewarded for matching cell-to-cell spread, not only the mean; MSE of the set means is offered
as an option and as an add-on.
"""

from __future__ import annotations

import torch

from .errors import ConfigError

LOSSES = ("energy", "mse", "energy+mse")


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


def mean_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-set squared error of the set means, averaged over genes: [B,S,G], [B,T,G] -> [B]."""
    return (x.float().mean(1) - y.float().mean(1)).pow(2).mean(-1)


def set_loss(name: str, pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The configured training loss (``train.loss``), averaged over the B sets."""
    if name == "energy":
        return energy_distance(pred, real).mean()
    if name == "mse":
        return mean_mse(pred, real).mean()
    if name == "energy+mse":
        return (energy_distance(pred, real) + mean_mse(pred, real)).mean()
    raise ConfigError(f"train.loss {name!r} is unknown; choose one of {', '.join(LOSSES)}")
