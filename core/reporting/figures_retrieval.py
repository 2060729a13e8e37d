"""The report's figures of retrieval (runs that retrieve: retrieval.csv): the keep ratio and the
most often kept neighbours per cell line, and per query which candidates stage 1 retrieved, with
their stage-1 scores, and which the selector kept."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs.trace import KEEP_THRESHOLD, keep_ratio
from .plotting import grid, plt_module, save

#: candidates drawn per query panel (by stage-1 rank); the title says how many more there were
MOST_CANDIDATES = 32


def read_trace(folder: Path, weights: bool = True) -> pd.DataFrame | None:
    """retrieval.csv (None for a run that does not retrieve, or with ``weights``, does not select)."""
    csv = Path(folder) / "retrieval.csv"
    if not csv.is_file():
        return None
    trace = pd.read_csv(csv)
    if trace.empty or (weights and not np.isfinite(trace["keep_weight"]).any()):
        return None
    return trace


def plot_retrieval(folder: Path, path: Path, label: str, top: int = 10) -> Path | None:
    """Keep ratio and the most often kept neighbours per cell line (runs with keep-weights)."""
    trace = read_trace(folder)
    if trace is None:
        return None
    plt = plt_module()
    trace["kept"] = trace["keep_weight"] > KEEP_THRESHOLD
    contexts = sorted(trace["context"].astype(str).unique())
    fig, axes = plt.subplots(1, 1 + len(contexts), figsize=(3.4 * (1 + len(contexts)), 3.6), squeeze=False)
    ratio = {c: keep_ratio(trace[trace.context.astype(str) == c]) for c in contexts}
    axes[0, 0].bar(list(ratio), list(ratio.values()), color="#55A868")
    for x, value in enumerate(ratio.values()):  # a ratio of 0 draws no bar: print the value
        axes[0, 0].text(x, value + 0.02, f"{value:.2f}", ha="center", fontsize=8)
    axes[0, 0].set_ylim(0, 1)
    axes[0, 0].set_title("keep ratio per cell line\n(mean keep decision over cells and candidates)", fontsize=8)
    for ax, context in zip(axes[0, 1:], contexts, strict=False):
        kept = trace[(trace.context.astype(str) == context) & trace.kept]
        candidates = kept["candidate_pert"].astype(str) + "|" + kept["candidate_context"].astype(str)
        counts = candidates.value_counts().head(top)
        ax.set_title(f"{context}: most often kept", fontsize=9)
        if counts.empty:  # say so instead of drawing empty axes
            ax.text(0.5, 0.5, f"nothing kept\n(no candidate above keep-weight {KEEP_THRESHOLD})", ha="center",
                    va="center", fontsize=8, transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.barh(counts.index[::-1], counts.to_numpy()[::-1], color="#C44E52")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(f"held-out queries keeping it (keep-weight > {KEEP_THRESHOLD})", fontsize=7)
    fig.suptitle(f"{label}: retrieval", fontsize=9)
    return save(fig, path)


def choose_queries(trace: pd.DataFrame, groups: Sequence[tuple[str, str]], n: int = 4) -> list[tuple[str, str]]:
    """The queries a report shows: ``groups`` that were queries, else the first ``n`` queries."""
    queries = list(dict.fromkeys(zip(trace["pert"].astype(str), trace["context"].astype(str), strict=True)))
    chosen = [g for g in groups if g in set(queries)]
    return chosen or queries[:n]


def _query_panel(ax, rows: pd.DataFrame, cmap) -> None:
    rows = rows.sort_values("rank").head(MOST_CANDIDATES)
    names = (rows["candidate_pert"].astype(str) + " | " + rows["candidate_context"].astype(str)).tolist()
    weights = rows["keep_weight"].to_numpy(float)
    y = np.arange(len(rows))[::-1]
    colours = cmap(np.nan_to_num(weights)) if np.isfinite(weights).any() else "#8C8C8C"  # no selector: all used
    ax.barh(y, rows["stage1_score"].to_numpy(float), color=colours, edgecolor="#555555", linewidth=0.3)
    ax.set_yticks(y, names, fontsize=5.5)
    if not np.isfinite(weights).any():
        return
    for yi, w, kept in zip(y, weights, weights > KEEP_THRESHOLD, strict=True):
        ax.text(1.01, yi, f"{w:.2f}", transform=ax.get_yaxis_transform(), va="center", fontsize=5.5,
                fontweight="bold" if kept else "normal", color="#1a7f37" if kept else "#777777")
    ax.set_xlabel("stage-1 score (cosine)", fontsize=7)
    ax.tick_params(axis="x", labelsize=6)


def plot_candidates(folder: Path, groups: Sequence[tuple[str, str]], path: Path, label: str) -> Path | None:
    """Per chosen query: its stage-1 candidates (by rank), each bar its stage-1 score, coloured and
    labelled by the keep-weight the selector applied (the mean over the query's predicted cells)."""
    trace = read_trace(folder, weights=False)
    if trace is None:
        return None
    selects = bool(np.isfinite(trace["keep_weight"]).any())
    queries = choose_queries(trace, groups)
    plt = plt_module()
    cmap = plt.get_cmap("Greens")
    rows, cols = grid(len(queries))
    k = int(trace.groupby(["pert", "context"]).size().max())
    height = 0.6 + 0.11 * min(k, MOST_CANDIDATES)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, height * rows + 0.7), squeeze=False)
    keyed = trace.assign(pert=trace["pert"].astype(str), context=trace["context"].astype(str))
    for ax, (pert, context) in zip(axes.flat, queries, strict=False):
        mine = keyed[(keyed.pert == pert) & (keyed.context == context)]
        _query_panel(ax, mine, cmap)
        kept = int((mine["keep_weight"] > KEEP_THRESHOLD).sum()) if selects else len(mine)
        more = f", first {MOST_CANDIDATES} shown" if len(mine) > MOST_CANDIDATES else ""
        ax.set_title(f"{pert} in {context}: {kept} of {len(mine)} {'kept' if selects else 'used'}{more}", fontsize=8)
    for ax in list(axes.flat)[len(queries):]:
        ax.axis("off")
    how = (f"colour and number: keep-weight,\nbold green when kept, > {KEEP_THRESHOLD}" if selects else
           "no selector:\nthe model uses every candidate")
    fig.suptitle(f"{label}: the candidates stage 1 retrieved per query (bar: stage-1 score; {how}; in stage-1 rank "
                 "order)", fontsize=8)
    return save(fig, path)
