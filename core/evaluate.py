"""Score every held-out group with every metric in the metric's space; aggregate with uncertainty.

Spaces: ``genes`` (expression as given), ``de`` (expression; the metric picks the real top-k DE
genes itself) and ``pca50`` (cells projected on the first min(50, n_features, n_cells) principal
components fitted per cell line on that line's real evaluated cells, control cells included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .data.dataset import PerturbationData
from .data.split import Group
from .interfaces import CellSetBatch, Generator, Metric, SetMetric

N_PCS = 50


@dataclass
class GroupPrediction:
    pert: str
    context: str
    pred: np.ndarray  # [n,G]
    real: np.ndarray  # [n,G]
    ctrl: np.ndarray  # [c,G] all control cells of the context
    ctrl_index: np.ndarray | None = None  # [n] rows of the matched control cells in the data, if known


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
                                   data.control_cells(context), ctrl_idx))
    return out


def metric_label(name: str, metric: Metric) -> str:
    """The name a metric's values carry in tables: its ``label`` (e.g. de-overlap@20) or its name."""
    return str(getattr(metric, "label", None) or name)


@dataclass
class PCA:
    """Principal axes of one cell line; ``transform`` centres and projects."""

    mean: np.ndarray  # [F]
    components: np.ndarray  # [F,P]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components


def fit_pca(blocks: Sequence[np.ndarray], n_pcs: int = N_PCS) -> PCA:
    """Exact PCA from the covariance matrix (memory O(F^2), linear in cells; no copy of the cells)."""
    n = sum(len(b) for b in blocks)
    f = blocks[0].shape[1]
    mean = sum(np.asarray(b, dtype=np.float64).sum(axis=0) for b in blocks) / n
    cov = np.zeros((f, f))
    for b in blocks:
        c = np.asarray(b, dtype=np.float64) - mean
        cov += c.T @ c
    k = max(1, min(n_pcs, f, n))
    vals, vecs = np.linalg.eigh(cov / max(n - 1, 1))
    order = np.argsort(vals)[::-1][:k]
    vecs = vecs[:, order]
    vecs *= np.where(vecs[np.abs(vecs).argmax(axis=0), np.arange(k)] < 0, -1.0, 1.0)  # fixed signs
    return PCA(mean, vecs)


def context_pcas(predictions: Sequence[GroupPrediction], n_pcs: int = N_PCS) -> dict[str, PCA]:
    """One PCA per cell line, fitted on the line's real evaluated cells plus its control cells."""
    by_context: dict[str, list[GroupPrediction]] = {}
    for p in predictions:
        by_context.setdefault(p.context, []).append(p)
    return {c: fit_pca([*(p.real for p in ps), ps[0].ctrl], n_pcs) for c, ps in by_context.items()}


def score(predictions: list[GroupPrediction], metrics: dict[str, Metric], *, n_pcs: int = N_PCS) -> pd.DataFrame:
    """Long table: one row per perturbation x context x metric (metric = its label)."""
    need_pca = any(m.space == "pca50" for m in metrics.values())
    pcas = context_pcas(predictions, n_pcs) if need_pca and predictions else {}
    projected: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    ctrl_pc: dict[str, np.ndarray] = {}

    def in_space(i: int, p: GroupPrediction, space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if space != "pca50":
            return p.pred, p.real, p.ctrl
        if i not in projected:
            pca = pcas[p.context]
            if p.context not in ctrl_pc:
                ctrl_pc[p.context] = pca.transform(p.ctrl)
            projected[i] = (pca.transform(p.pred), pca.transform(p.real), ctrl_pc[p.context])
        return projected[i]

    set_values: dict[tuple[str, int], float] = {}
    for name, metric in metrics.items():
        if not isinstance(metric, SetMetric):
            continue
        for context in dict.fromkeys(p.context for p in predictions):
            members = [i for i, p in enumerate(predictions) if p.context == context]
            mapped = [in_space(i, predictions[i], metric.space) for i in members]
            names = {"groups": [(predictions[i].pert, context) for i in members]} if metric.wants_groups else {}
            values = metric.compute_set([m[0] for m in mapped], [m[1] for m in mapped], mapped[0][2], **names)
            set_values.update({(name, i): float(v) for i, v in zip(members, values)})

    rows = []
    for i, p in enumerate(predictions):
        for name, metric in metrics.items():
            if isinstance(metric, SetMetric):
                value = set_values[(name, i)]
            else:
                value = float(metric.compute(*in_space(i, p, metric.space)))
            rows.append({"pert": p.pert, "context": p.context, "metric": metric_label(name, metric), "value": value})
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
    """Mean, median and a 95% bootstrap interval over perturbations, per metric (NaNs left out)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, metric in metrics.items():
        label = metric_label(name, metric)
        values = table.loc[table.metric == label, "value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        lo, hi = bootstrap_interval(values, rng)
        out[label] = {
            "mean": float(finite.mean()) if len(finite) else float("nan"),
            "median": float(np.median(finite)) if len(finite) else float("nan"),
            "ci95": [lo, hi],
            "n": int(len(finite)),
            "direction": metric.direction,
            "space": metric.space,
        }
    return out


def summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """:func:`aggregate`'s dict (metrics.json's ``metrics``) as a table indexed by metric."""
    rows = [{"metric": name, "mean": agg["mean"], "median": agg["median"], "ci95_lo": agg["ci95"][0],
             "ci95_hi": agg["ci95"][1], "n": agg.get("n"), "direction": agg["direction"], "space": agg.get("space")}
            for name, agg in summary.items()]
    columns = ["metric", "mean", "median", "ci95_lo", "ci95_hi", "n", "direction", "space"]
    return pd.DataFrame(rows, columns=columns).set_index("metric")
