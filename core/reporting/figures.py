"""The report's figures of runs and their scores: metric means, paired scores per perturbation,
training curves and the selection AUC (matplotlib's Agg backend: no display needed), each written
whole. Figures of cells: figures_cells.py; of retrieval: figures_retrieval.py."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..markup import read_json_lines
from ..runs.results import run_record
from .folders import directions, per_perturbation, select_runs
from .labels import RunKey
from .plotting import grid, name_points, pick_extremes, plt_module, save

#: log.jsonl's name of training's keep ratio (earlier logs: ``keep_ratio``)
TRAINING_KEEP = ("training_keep_ratio", "keep_ratio")


def plot_metric_bars(table: pd.DataFrame, path: Path) -> Path:
    plt = plt_module()
    metrics = list(dict.fromkeys(table["metric"]))
    runs = list(dict.fromkeys(table["run"]))
    rows, cols = grid(len(metrics))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        g = table[table.metric == metric].set_index("run").reindex(runs)
        mean = g["mean"].to_numpy(float)
        many = g["seeds"].fillna(1).to_numpy() > 1
        lo = np.where(many, mean - g["sd"].fillna(0).to_numpy(float), g["ci95_lo"].to_numpy(float))
        hi = np.where(many, mean + g["sd"].fillna(0).to_numpy(float), g["ci95_hi"].to_numpy(float))
        err = np.nan_to_num(np.vstack([mean - lo, hi - mean]).clip(min=0))
        ax.bar(range(len(runs)), mean, yerr=err, capsize=3, color="#4C72B0")
        ax.set_xticks(range(len(runs)), runs, rotation=45, ha="right", fontsize=7)
        arrow = "↓" if g["direction"].dropna().iloc[0] == "lower" else "↑"
        ax.set_title(f"{metric} ({arrow} better)", fontsize=9)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("metric means (error bars: sd over seeds, else 95% bootstrap CI)", fontsize=9)
    return save(fig, path)


def plot_paired_scatter(a: str, b: str, folders: Sequence[Path], path: Path,
                        keys: Mapping[Path, RunKey] | None = None) -> Path:
    """Per metric, one point per held-out perturbation: A's score against B's, the perturbations
    where they differ most named."""
    plt = plt_module()
    fa, fb = select_runs(a, folders, keys), select_runs(b, folders, keys)
    dirs = directions([*fa, *fb])
    joined = per_perturbation(fa).merge(per_perturbation(fb), on=["pert", "context", "metric"], suffixes=("_a", "_b"))
    metrics = list(dict.fromkeys(joined.metric))
    rows, cols = grid(len(metrics))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    several = joined.context.nunique() > 1
    for ax, metric in zip(axes.flat, metrics, strict=False):
        g = joined[joined.metric == metric]
        ax.scatter(g.value_b, g.value_a, s=10, alpha=0.7)
        lims = [np.nanmin([g.value_a.min(), g.value_b.min()]), np.nanmax([g.value_a.max(), g.value_b.max()])]
        ax.plot(lims, lims, color="grey", lw=0.8)
        far = pick_extremes((g.value_a - g.value_b).to_numpy(float), 4)
        names = [f"{p} ({c})" if several else str(p) for p, c in zip(g.pert, g.context, strict=True)]
        name_points(ax, g.value_b.to_numpy(float)[far], g.value_a.to_numpy(float)[far], [names[i] for i in far])
        ax.set_xlabel(f"B: {Path(b).name}", fontsize=7)
        ax.set_ylabel(f"A: {Path(a).name}", fontsize=7)
        ax.set_title(f"{metric} ({'↓' if dirs.get(metric) == 'lower' else '↑'} better)", fontsize=9)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("per perturbation: one point per held-out perturbation; named: the 4 where A and B differ most",
                 fontsize=9)
    return save(fig, path)


def training_curves(folder: Path, keys: Sequence[str]) -> pd.DataFrame:
    """log.jsonl records of one run that carry any of ``keys`` (step + those keys); training's keep
    ratio is read under its name of any ptrag version (``training_keep_ratio``, once ``keep_ratio``)."""
    path = Path(folder) / "log.jsonl"
    if not path.is_file():
        return pd.DataFrame(columns=["step", *keys])
    records = read_json_lines(path)
    for r in records:
        if TRAINING_KEEP[0] not in r and TRAINING_KEEP[1] in r:
            r[TRAINING_KEEP[0]] = r[TRAINING_KEEP[1]]
    rows = [{"step": r["step"], **{k: r.get(k) for k in keys}} for r in records if any(k in r for k in keys)]
    return pd.DataFrame(rows, columns=["step", *keys])


def _colours(plt, folders: Sequence[Path], names: Mapping[Path, str]) -> tuple[dict[Path, str], set[Path]]:
    """One colour per configuration (its seeds share it), and the first folder of each (the one labelled)."""
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    order = list(dict.fromkeys(names[f] for f in folders))
    first = {names[f]: f for f in reversed(list(folders))}
    return {f: palette[order.index(names[f]) % len(palette)] for f in folders}, set(first.values())


def plot_keep_ratio(folders: Sequence[Path], path: Path, names: Mapping[Path, str]) -> Path | None:
    """Training's keep ratio (Gumbel selectors: the share of sampled (cell, candidate) decisions
    that keep), one line per run, seeds of a configuration in one colour; evidence selectors show
    their mixing of the evidence kinds instead."""
    keep_key = TRAINING_KEEP[0]
    curves = {f: training_curves(f, [keep_key, "evidence_same", "evidence_near", "evidence_dev"]) for f in folders}
    keep = {f: c.dropna(subset=[keep_key]) for f, c in curves.items() if c[keep_key].notna().any()}
    mix = {f: c.dropna(subset=["evidence_same"]) for f, c in curves.items() if c["evidence_same"].notna().any()}
    if not keep and not mix:
        return None
    plt = plt_module()
    panels = [p for p in (("keep", keep), ("mix", mix)) if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (kind, runs) in zip(axes[0], panels, strict=False):
        colour, labelled = _colours(plt, list(runs), names)
        for f, c in runs.items():
            name = names[f] if f in labelled else None
            dots = "." if len(c) < 5 else None  # a short log: its few points visible
            if kind == "keep":
                ax.plot(c["step"], c[keep_key], color=colour[f], lw=1, alpha=0.8, label=name, marker=dots)
            else:
                for key, style in (("evidence_same", "-"), ("evidence_near", "--"), ("evidence_dev", ":")):
                    ax.plot(c["step"], c[key], color=colour[f], ls=style, lw=1, alpha=0.8, marker=dots,
                            label=f"{name}: {key.removeprefix('evidence_')}" if name else None)
        ax.set_xlabel("training step", fontsize=8)
        if kind == "keep":
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("training keep ratio\n(share of sampled (cell, candidate) decisions kept)", fontsize=8)
            ax.set_title("Gumbel keep ratio during training (0 = retrieval switched off);\nthe run's keep ratio "
                         "(evaluation) is in metrics.json", fontsize=9)
        else:
            ax.set_ylabel("mean mixing coefficient a", fontsize=8)
            ax.set_title("evidence kinds: same gene (-), nearest genes (--),\ndeviations (:)", fontsize=9)
        ax.legend(fontsize=6)
    return save(fig, path)


def plot_validation_curves(folders: Sequence[Path], path: Path, names: Mapping[Path, str]) -> Path | None:
    """Validation energy during training of every learned run, relative to its untrained start
    (losses differ in scale: genes or PCs), seeds of a configuration in one colour; a dot marks
    the best step, whose weights the run kept."""
    curves = {f: training_curves(f, ["val_energy"]).dropna(subset=["val_energy"]) for f in folders}
    curves = {f: c for f, c in curves.items() if len(c) > 1 and c["val_energy"].iloc[0]}
    if not curves:
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    colour, labelled = _colours(plt, list(curves), names)
    for f, c in curves.items():
        relative = c["val_energy"].to_numpy(float) / float(c["val_energy"].iloc[0])
        ax.plot(c["step"], relative, color=colour[f], lw=1, alpha=0.8, label=names[f] if f in labelled else None)
        best = int(np.argmin(relative))
        ax.plot(c["step"].iloc[best], relative[best], "o", color=colour[f], ms=4)
    ax.set_xlabel("training step", fontsize=8)
    ax.set_ylabel("validation energy / untrained start", fontsize=8)
    ax.set_title("validation during training (dot: the best step, whose weights each run kept)", fontsize=9)
    ax.legend(fontsize=6)
    return save(fig, path)


def selection_aucs(folders: Sequence[Path], names: Mapping[Path, str]) -> pd.DataFrame:
    """Per run and cell line the selection AUC from metrics.json (runs with keep decisions only)."""
    rows = []
    for f in folders:
        run = run_record(f)
        for line, auc in ((run.get("retrieval") or {}).get("selection_auc") or {}).items():
            if auc is not None and math.isfinite(auc):
                rows.append({"run": names[f], "line": line, "auc": float(auc)})
    return pd.DataFrame(rows, columns=["run", "line", "auc"])


def plot_selection_auc(folders: Sequence[Path], path: Path, names: Mapping[Path, str]) -> Path | None:
    """Do kept candidates resemble the query's real response more than dropped ones? The selection
    AUC per configuration and cell line (mean over seeds; 0.5: no better than chance)."""
    table = selection_aucs(folders, names)
    if table.empty:
        return None
    means = table.groupby(["run", "line"], sort=False)["auc"].mean().unstack("line")
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(means) + 2.5), 3.8))
    width = 0.8 / max(1, means.shape[1])
    for j, line in enumerate(means.columns):
        x = np.arange(len(means)) + j * width
        values = means[line].to_numpy(float)
        ax.bar(x, values, width, label=str(line))
        for xi, v in zip(x, values, strict=True):
            if np.isfinite(v):
                ax.text(xi, v + 0.02, f"{v:.2f}", ha="center", fontsize=7)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(means)) + width * (means.shape[1] - 1) / 2, means.index, rotation=30, ha="right",
                  fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("selection AUC (kept vs dropped)", fontsize=8)
    ax.set_title("Do kept candidates' responses resemble the query's real one\nmore than dropped ones? "
                 "(0.5, dashed: chance)", fontsize=9)
    ax.legend(fontsize=6, title="cell line", title_fontsize=6)
    return save(fig, path)
