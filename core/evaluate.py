"""Predict every held-out group and score it with every metric; aggregate with uncertainty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .data.dataset import PerturbationData
from .data.split import Group
from .interfaces import CellSetBatch, Generator, Metric


@dataclass
class GroupPrediction:
    pert: str
    context: str
    pred: np.ndarray  # [n,G]
    real: np.ndarray  # [n,G]
    ctrl: np.ndarray  # [c,G] all control cells of the context


def sample_controls(data: PerturbationData, context: str, n: int, rng: np.random.Generator) -> np.ndarray:
    pool = data.control_indices(context)
    return rng.choice(pool, size=n, replace=len(pool) < n)


@torch.no_grad()
def predict_groups(
    generator: Generator,
    data: PerturbationData,
    groups: list[Group],
    *,
    pert_embedding: dict[str, np.ndarray],
    context_index: dict[str, int],
    pert_index: dict[str, int],
    rng: np.random.Generator,
    device: torch.device,
) -> list[GroupPrediction]:
    """One cell set per group: as many matched control cells as the group has real cells."""
    generator.eval()
    out = []
    for pert, context in groups:
        real_idx = data.group_indices(pert, context)
        ctrl_idx = sample_controls(data, context, len(real_idx), rng)
        batch = CellSetBatch(
            ctrl=torch.from_numpy(data.X[ctrl_idx])[None],
            pert_emb=torch.from_numpy(pert_embedding[pert])[None],
            pert_index=torch.tensor([pert_index.get(pert, -1)]),
            context_index=torch.tensor([context_index[context]]),
            perts=[pert],
            contexts=[context],
        ).to(device)
        pred = generator(batch, None)[0].float().cpu().numpy()
        out.append(GroupPrediction(pert, context, pred, data.X[real_idx],
                                   data.X[data.control_indices(context)]))
    return out


def score(predictions: list[GroupPrediction], metrics: dict[str, Metric]) -> pd.DataFrame:
    """Long table: one row per perturbation x context x metric."""
    rows = []
    for p in predictions:
        for name, metric in metrics.items():
            rows.append({"pert": p.pert, "context": p.context, "metric": name,
                         "value": metric.compute(p.pred, p.real, p.ctrl)})
    return pd.DataFrame(rows, columns=["pert", "context", "metric", "value"])


def bootstrap_interval(values: np.ndarray, rng: np.random.Generator, n_boot: int = 2000,
                       level: float = 0.95) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    means = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def aggregate(table: pd.DataFrame, metrics: dict[str, Metric], seed: int = 0) -> dict[str, Any]:
    """Mean, median and a 95% bootstrap interval over perturbations, per metric."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, metric in metrics.items():
        values = table.loc[table.metric == name, "value"].to_numpy(dtype=float)
        lo, hi = bootstrap_interval(values, rng)
        out[name] = {
            "mean": float(np.nanmean(values)) if len(values) else float("nan"),
            "median": float(np.nanmedian(values)) if len(values) else float("nan"),
            "ci95": [lo, hi],
            "n": int(np.isfinite(values).sum()),
            "direction": metric.direction,
            "space": metric.space,
        }
    return out
