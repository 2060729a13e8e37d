"""The report's figures of predicted against real cells: mean changes from control, gene by gene
(per perturbation) and perturbation by perturbation (per read-out gene), points named."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..evaluation.aggregate import fmt
from .changes import Changes
from .plotting import name_points, plt_module, save

#: named genes per perturbation panel: the most up- and the most down-regulated (real change)
NAMED_GENES = 3


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok].astype(np.float64), y[ok].astype(np.float64)
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else float("nan")


def choose_groups(changes: Changes, genes: Sequence[str] | None = None, n: int = 4) -> list[tuple[str, str]]:
    """The groups a report shows: those of the perturbations ``genes`` names (in that order), else
    the ``n`` strongest real responses."""
    if genes:
        chosen = [g for gene in genes for g in changes.groups if g[0] == gene]
        if chosen:
            return chosen
    return changes.strongest(n)


def _panel(ax, real: np.ndarray, pred: np.ndarray, genes: Sequence[str]) -> None:
    ax.scatter(real, pred, s=5, alpha=0.35, color="#4C72B0", linewidths=0)
    lims = [float(min(real.min(), pred.min())), float(max(real.max(), pred.max()))]
    ax.plot(lims, lims, color="grey", lw=0.8)
    ax.axhline(0, color="#cccccc", lw=0.5)
    ax.axvline(0, color="#cccccc", lw=0.5)
    order = np.argsort(real, kind="stable")
    for idx, colour in ((order[::-1][:NAMED_GENES], "#C44E52"), (order[:NAMED_GENES], "#4C72B0")):
        idx = [i for i in idx if real[i] != 0]
        ax.scatter(real[idx], pred[idx], s=16, color=colour, edgecolors="black", linewidths=0.4, zorder=3)
        name_points(ax, real[idx], pred[idx], [genes[i] for i in idx], colour=colour)


def plot_perturbations(changes: Changes, groups: Sequence[tuple[str, str]], path: Path, label: str) -> Path | None:
    """Per chosen perturbation: its predicted against real mean change from control over every
    read-out gene (one point per gene), the most up- and down-regulated real genes named."""
    index = {g: i for i, g in enumerate(changes.groups)}
    groups = [g for g in groups if g in index]
    if not groups:
        return None
    plt = plt_module()
    cols = min(4, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows + 0.6), squeeze=False)
    for ax, group in zip(axes.flat, groups, strict=False):
        real, pred = changes.real[index[group]], changes.pred[index[group]]
        _panel(ax, real, pred, changes.genes)
        ax.set_title(f"{group[0]} in {group[1]} (r = {fmt(_pearson(real, pred))})", fontsize=9)
        ax.set_xlabel("real mean change from control", fontsize=7)
        ax.set_ylabel("predicted mean change", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle(f"{label}: predicted vs real change of every read-out gene (one point per gene; grey line: "
                 f"predicted = real)\nnamed: the {NAMED_GENES} most up- (red) and down-regulated (blue) genes of the "
                 "real cells", fontsize=8)
    return save(fig, path)


def readout_genes(changes: Changes, genes: Sequence[str] | None, n: int = 4) -> list[str]:
    """The read-out genes of the mean-change scatter: those of ``genes`` that are features, else
    the ``n`` whose real change varies most across perturbations."""
    chosen = [g for g in genes or () if g in changes.genes]
    if chosen:
        return chosen
    spread = changes.real.astype(np.float64).var(axis=0)
    return [changes.genes[i] for i in np.argsort(-spread, kind="stable")[:n]]


def plot_mean_change(changes: Changes, genes: Sequence[str], path: Path, label: str, chosen: bool) -> Path:
    """Per read-out gene: each held-out perturbation's real against predicted mean change, the
    perturbations furthest from the diagonal named."""
    plt = plt_module()
    index = [changes.genes.index(g) for g in genes]
    fig, axes = plt.subplots(1, len(genes), figsize=(3.2 * len(genes), 3.6), squeeze=False)
    names = [f"{p} ({c})" if len({c for _, c in changes.groups}) > 1 else p for p, c in changes.groups]
    for ax, gene, j in zip(axes.flat, genes, index, strict=False):
        x, y = changes.real[:, j].astype(float), changes.pred[:, j].astype(float)
        ax.scatter(x, y, s=12, alpha=0.8)
        lims = [min(x.min(), y.min()), max(x.max(), y.max())]
        ax.plot(lims, lims, color="grey", lw=0.8)
        far = np.argsort(-np.abs(y - x), kind="stable")[:5]
        name_points(ax, x[far], y[far], [names[i] for i in far])
        ax.set_title(f"read-out gene {gene} (r = {fmt(_pearson(x, y))})", fontsize=9)
        ax.set_xlabel("real mean change from control (log1p)", fontsize=7)
        ax.set_ylabel("predicted mean change (log1p)", fontsize=7)
    lines = sorted({c for _, c in changes.groups})
    how = "chosen with --genes" if chosen else "the genes whose real change varies most across perturbations"
    fig.suptitle(f"{label}: each point is one of the {len(changes.groups)} held-out perturbations "
                 f"({', '.join(map(str, lines))}); grey line: predicted = real; named: the 5 furthest from it\n"
                 f"read-out genes: {how}",
                 fontsize=8)
    return save(fig, path)
