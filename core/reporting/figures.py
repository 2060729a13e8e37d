"""The report's figures (matplotlib's Agg backend: no display needed), each written whole."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.loading import read_anndata
from ..errors import DataError
from ..evaluation.aggregate import fmt
from ..files import atomic_write
from ..markup import load_yaml, read_json_lines, read_text
from ..runs.results import run_label, run_record
from ..runs.trace import KEEP_THRESHOLD
from .folders import directions, per_perturbation, select_runs


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int):
    cols = min(4, max(n, 1))
    rows = math.ceil(max(n, 1) / cols)
    return rows, cols


def _save(fig, path: Path) -> Path:
    """Every figure is written whole or not at all, and its memory freed."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    _plt().close(fig)
    return path


def plot_metric_bars(table: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    metrics = list(dict.fromkeys(table["metric"]))
    runs = list(dict.fromkeys(table["run"]))
    rows, cols = _grid(len(metrics))
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
    return _save(fig, path)


def plot_paired_scatter(a: str, b: str, folders: Sequence[Path], path: Path) -> Path:
    plt = _plt()
    fa, fb = select_runs(a, folders), select_runs(b, folders)
    dirs = directions([*fa, *fb])
    joined = per_perturbation(fa).merge(per_perturbation(fb), on=["pert", "context", "metric"], suffixes=("_a", "_b"))
    metrics = list(dict.fromkeys(joined.metric))
    rows, cols = _grid(len(metrics))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        g = joined[joined.metric == metric]
        ax.scatter(g.value_b, g.value_a, s=10, alpha=0.7)
        lims = [np.nanmin([g.value_a.min(), g.value_b.min()]), np.nanmax([g.value_a.max(), g.value_b.max()])]
        ax.plot(lims, lims, color="grey", lw=0.8)
        ax.set_xlabel(Path(b).name, fontsize=7)
        ax.set_ylabel(Path(a).name, fontsize=7)
        ax.set_title(f"{metric} ({'↓' if dirs.get(metric) == 'lower' else '↑'} better)", fontsize=9)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("per perturbation: one point per held-out perturbation", fontsize=9)
    return _save(fig, path)


def plot_retrieval(folder: Path, path: Path, top: int = 10) -> Path | None:
    """Keep ratio and the most often kept neighbours per cell line (runs with keep-weights)."""
    csv = folder / "retrieval.csv"
    if not csv.is_file():
        return None
    trace = pd.read_csv(csv)
    if trace.empty or not np.isfinite(trace["keep_weight"]).any():
        return None
    plt = _plt()
    trace["kept"] = trace["keep_weight"] > KEEP_THRESHOLD
    contexts = sorted(trace["context"].astype(str).unique())
    fig, axes = plt.subplots(1, 1 + len(contexts), figsize=(3.2 * (1 + len(contexts)), 3.4), squeeze=False)
    ratio = trace.groupby("context")["kept"].mean()
    axes[0, 0].bar(ratio.index.astype(str), ratio.to_numpy(), color="#55A868")
    for x, value in enumerate(ratio.to_numpy()):  # a ratio of 0 draws no bar: print the value
        axes[0, 0].text(x, value + 0.02, f"{value:.2f}", ha="center", fontsize=8)
    axes[0, 0].set_ylim(0, 1)
    axes[0, 0].set_title("keep ratio per cell line", fontsize=9)
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
        ax.set_xlabel("times kept (held-out queries)", fontsize=7)
    fig.suptitle(f"{folder.name}: retrieval", fontsize=9)
    return _save(fig, path)


def training_curves(folder: Path, keys: Sequence[str]) -> pd.DataFrame:
    """log.jsonl records of one run that carry any of ``keys`` (step + those keys)."""
    path = Path(folder) / "log.jsonl"
    if not path.is_file():
        return pd.DataFrame(columns=["step", *keys])
    records = read_json_lines(path)
    rows = [{"step": r["step"], **{k: r.get(k) for k in keys}} for r in records if any(k in r for k in keys)]
    return pd.DataFrame(rows, columns=["step", *keys])


def plot_keep_ratio(folders: Sequence[Path], path: Path) -> Path | None:
    """Keep-ratio during training (Gumbel selectors), one line per run, seeds of a configuration in
    one colour; evidence selectors show their mixing of the evidence kinds instead."""
    curves = {f: training_curves(f, ["keep_ratio", "evidence_same", "evidence_near", "evidence_dev"]) for f in folders}
    keep = {f: c.dropna(subset=["keep_ratio"]) for f, c in curves.items() if c["keep_ratio"].notna().any()}
    mix = {f: c.dropna(subset=["evidence_same"]) for f, c in curves.items() if c["evidence_same"].notna().any()}
    if not keep and not mix:
        return None
    plt = _plt()
    panels = [p for p in (("keep", keep), ("mix", mix)) if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (kind, runs) in zip(axes[0], panels, strict=False):
        names = list(dict.fromkeys(run_label(f)[0] for f in runs))
        for f, c in runs.items():
            name = run_label(f)[0]
            colour = colours[names.index(name) % len(colours)]
            label = name if f == next(g for g in runs if run_label(g)[0] == name) else None
            if kind == "keep":
                ax.plot(c["step"], c["keep_ratio"], color=colour, lw=1, alpha=0.8, label=label)
            else:
                for key, style in (("evidence_same", "-"), ("evidence_near", "--"), ("evidence_dev", ":")):
                    ax.plot(c["step"], c[key], color=colour, ls=style, lw=1, alpha=0.8,
                            label=f"{name}: {key.removeprefix('evidence_')}" if label else None)
        ax.set_xlabel("training step", fontsize=8)
        if kind == "keep":
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("keep ratio (share of (cell, candidate) pairs kept)", fontsize=8)
            ax.set_title("Gumbel keep ratio during training (0 = retrieval switched off)", fontsize=9)
        else:
            ax.set_ylabel("mean mixing coefficient a", fontsize=8)
            ax.set_title("evidence kinds: same gene (-), nearest genes (--), deviations (:)", fontsize=9)
        ax.legend(fontsize=6)
    return _save(fig, path)


def mean_changes(folder: Path, pert_col: str = "gene", context_col: str = "cell_line",
                 control: str = "non-targeting") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predicted and real mean change from control per (perturbation, cell line) x gene."""
    out = []
    for name in ("predictions", "real"):
        adata = read_anndata(folder / f"{name}.h5ad")
        X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        frame = pd.DataFrame(X, columns=adata.var_names)
        keys = adata.obs[pert_col].astype(str).to_numpy(), adata.obs[context_col].astype(str).to_numpy()
        means = frame.groupby([keys[0], keys[1]]).mean()
        rows = []
        for (pert, context), row in means.iterrows():
            if pert != control and (control, context) in means.index:
                rows.append((pert, context, row - means.loc[(control, context)]))
        out.append(pd.DataFrame([r[2] for r in rows], index=pd.MultiIndex.from_tuples([r[:2] for r in rows])))
    return out[0], out[1]


def _columns(folder: Path) -> dict[str, str]:
    """The run's obs column names and control label, from its config.yaml."""
    path = folder / "config.yaml"
    data = (load_yaml(read_text(path), str(path)) or {}).get("data", {}) if path.is_file() else {}
    return {"pert_col": data.get("pert_col", "gene"), "context_col": data.get("context_col", "cell_line"),
            "control": data.get("control_label", "non-targeting")}


def check_genes(folder: Path, genes: Sequence[str]) -> None:
    """``--genes`` must name features of the run (checked before a report writes anything), whose
    predicted and real cells the mean-change figure plots: a run without them is one line."""
    missing = [name for name in ("predictions.h5ad", "real.h5ad") if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: --genes plots predicted against real mean changes, and it has no "
                        f"{' or '.join(missing)}; report it without --genes, or restore the file(s)")
    features = read_anndata(folder / "real.h5ad", backed="r").var_names
    unknown = [g for g in genes if g not in features]
    if unknown:
        raise DataError(f"{folder / 'real.h5ad'}: unknown gene(s) {', '.join(unknown)}; first features: "
                        f"{', '.join(map(str, features[:5]))}")


def plot_mean_change(folder: Path, path: Path, genes: Sequence[str] | None = None, n_genes: int = 4,
                     **columns: str) -> Path | None:
    if not ((folder / "predictions.h5ad").is_file() and (folder / "real.h5ad").is_file()):
        return None
    pred, real = mean_changes(folder, **(columns or _columns(folder)))
    common = pred.index.intersection(real.index)
    pred, real = pred.loc[common], real.loc[common]
    if genes:
        unknown = [g for g in genes if g not in real.columns]
        if unknown:
            raise DataError(f"{folder / 'real.h5ad'}: unknown gene(s) {', '.join(unknown)}; first features: "
                            f"{', '.join(map(str, real.columns[:5]))}")
        chosen = list(genes)
    else:  # the genes whose real response varies most across perturbations
        chosen = list(real.var().sort_values(ascending=False).index[:n_genes])
    plt = _plt()
    fig, axes = plt.subplots(1, len(chosen), figsize=(3 * len(chosen), 3.4), squeeze=False)
    for ax, gene in zip(axes.flat, chosen, strict=False):
        x, y = real[gene].to_numpy(float), pred[gene].to_numpy(float)
        ax.scatter(x, y, s=12, alpha=0.8)
        lims = [min(x.min(), y.min()), max(x.max(), y.max())]
        ax.plot(lims, lims, color="grey", lw=0.8, label="y = x: predicted = real")
        r = np.corrcoef(x, y)[0, 1] if len(x) > 1 and x.std() > 0 and y.std() > 0 else float("nan")
        ax.set_title(f"read-out gene {gene} (r = {fmt(r)})", fontsize=9)
        ax.set_xlabel("real mean change from control (log1p)", fontsize=7)
        ax.set_ylabel("predicted mean change (log1p)", fontsize=7)
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    lines = sorted({c for _, c in real.index})
    how = "chosen with --genes" if genes else "the genes whose real change varies most across perturbations"
    fig.suptitle(f"{folder.name}: each point is one of the {len(real)} held-out perturbations "
                 f"({', '.join(map(str, lines))}); read-out genes: {how}", fontsize=8)
    return _save(fig, path)


def plot_validation_curves(folders: Sequence[Path], path: Path) -> Path | None:
    """Validation energy during training of every learned run, relative to its untrained start
    (losses differ in scale: genes or PCs), seeds of a configuration in one colour; a dot marks
    the best step, whose weights the run kept."""
    curves = {f: training_curves(f, ["val_energy"]).dropna(subset=["val_energy"]) for f in folders}
    curves = {f: c for f, c in curves.items() if len(c) > 1 and c["val_energy"].iloc[0]}
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(run_label(f)[0] for f in curves))
    for f, c in curves.items():
        name = run_label(f)[0]
        colour = colours[names.index(name) % len(colours)]
        relative = c["val_energy"].to_numpy(float) / float(c["val_energy"].iloc[0])
        first = f == next(g for g in curves if run_label(g)[0] == name)
        ax.plot(c["step"], relative, color=colour, lw=1, alpha=0.8, label=name if first else None)
        best = int(np.argmin(relative))
        ax.plot(c["step"].iloc[best], relative[best], "o", color=colour, ms=4)
    ax.set_xlabel("training step", fontsize=8)
    ax.set_ylabel("validation energy / untrained start", fontsize=8)
    ax.set_title("validation during training (dot: the best step, whose weights each run kept)", fontsize=9)
    ax.legend(fontsize=6)
    return _save(fig, path)


def selection_aucs(folders: Sequence[Path]) -> pd.DataFrame:
    """Per run and cell line the selection AUC from metrics.json (runs with keep decisions only)."""
    rows = []
    for f in folders:
        run = run_record(f)
        for line, auc in ((run.get("retrieval") or {}).get("selection_auc") or {}).items():
            if auc is not None and math.isfinite(auc):
                rows.append({"run": run_label(Path(f))[0], "line": line, "auc": float(auc)})
    return pd.DataFrame(rows, columns=["run", "line", "auc"])


def plot_selection_auc(folders: Sequence[Path], path: Path) -> Path | None:
    """Do kept candidates resemble the query's real response more than dropped ones? The selection
    AUC per configuration and cell line (mean over seeds; 0.5: no better than chance)."""
    table = selection_aucs(folders)
    if table.empty:
        return None
    means = table.groupby(["run", "line"], sort=False)["auc"].mean().unstack("line")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(means)), 3.4))
    width = 0.8 / max(1, means.shape[1])
    for j, line in enumerate(means.columns):
        ax.bar(np.arange(len(means)) + j * width, means[line].to_numpy(float), width, label=str(line))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(means)) + width * (means.shape[1] - 1) / 2, means.index, rotation=30, ha="right",
                  fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("selection AUC (kept vs dropped)", fontsize=8)
    ax.set_title("kept candidates' responses vs the query's real one (0.5 = chance)", fontsize=9)
    ax.legend(fontsize=6)
    return _save(fig, path)
