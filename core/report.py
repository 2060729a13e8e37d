"""Compare finished runs: a metric x run table, paired per-perturbation tests, PNG figures, HTML.

Inputs are run folders (with metrics.json / metrics.csv, optionally predictions.h5ad, real.h5ad,
retrieval.csv) or an ablation folder (with ablation.json), whose seeds are aggregated as
mean ± sd per configuration. Figures use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from .ablate import comparison_table, run_label
from .errors import ConfigError, DataError
from .outputs import KEEP_THRESHOLD
from .run_folder import atomic_write, comparability, require_same_data, write_csv, write_text


# --------------------------------------------------------------------------- finding runs


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders named by ``paths``: a run folder, an ablation folder, or a folder of runs."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if (path / "ablation.json").is_file():
            body = json.loads((path / "ablation.json").read_text())
            out += [path / f for r in body["runs"] for f in r["folders"] if (path / f / "metrics.json").is_file()]
        elif (path / "metrics.json").is_file():
            out.append(path)
        elif path.is_dir() and (found := sorted(p.parent for p in path.glob("*/metrics.json"))):
            out += found
        else:
            raise ConfigError(f"{path}: not a run folder (no metrics.json), an ablation folder or a folder of runs")
    return list(dict.fromkeys(out))


def per_perturbation(folders: Sequence[Path]) -> pd.DataFrame:
    """metrics.csv of the folders, averaged over seeds per (pert, context, metric)."""
    frames = []
    for folder in folders:
        path = Path(folder) / "metrics.csv"
        if not path.is_file():
            raise DataError(f"{folder}: no metrics.csv")
        frames.append(pd.read_csv(path))
    long = pd.concat(frames)
    return long.groupby(["pert", "context", "metric"], sort=False, as_index=False)["value"].mean()


def _select(name: str, folders: Sequence[Path]) -> list[Path]:
    path = Path(name)
    if (path / "metrics.csv").is_file():
        return [path]
    chosen = [f for f in folders if run_label(f)[0] == name or f.name == name]
    if not chosen:
        known = ", ".join(dict.fromkeys(run_label(f)[0] for f in folders)) or "none"
        raise ConfigError(f"--compare {name}: no such run folder or run name; runs: {known}")
    return chosen


def directions(folders: Sequence[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in folders:
        for metric, agg in json.loads((Path(f) / "metrics.json").read_text())["metrics"].items():
            out.setdefault(metric, agg["direction"])
    return out


# --------------------------------------------------------------------------- paired comparison


def paired_comparison(a: str | Path, b: str | Path, folders: Sequence[Path] = ()) -> pd.DataFrame:
    """Per metric, over the perturbations both runs scored: mean of A - B, A's win rate (ties
    count half, direction-aware) and the Wilcoxon signed-rank p-value of the paired differences."""
    fa, fb = _select(str(a), folders), _select(str(b), folders)
    require_same_data(fa, fb, (str(a), str(b)))
    return paired_tests(per_perturbation(fa), per_perturbation(fb), directions([*fa, *fb]))


def paired_tests(long_a: pd.DataFrame, long_b: pd.DataFrame, dirs: dict[str, str]) -> pd.DataFrame:
    """:func:`paired_comparison` on two long tables (pert, context, metric, value) in memory."""
    joined = long_a.merge(long_b, on=["pert", "context", "metric"], suffixes=("_a", "_b"))
    rows = []
    for metric, g in joined.groupby("metric", sort=False):
        g = g[np.isfinite(g.value_a) & np.isfinite(g.value_b)]
        diff = (g.value_a - g.value_b).to_numpy()
        sign = -1.0 if dirs.get(metric, "lower") == "lower" else 1.0
        better = sign * diff
        try:
            p = float(wilcoxon(diff).pvalue) if len(diff) and np.any(diff != 0) else 1.0
        except ValueError:
            p = float("nan")
        rows.append({"metric": metric, "direction": dirs.get(metric, "?"), "n": len(diff),
                     "mean_a": float(g.value_a.mean()) if len(g) else float("nan"),
                     "mean_b": float(g.value_b.mean()) if len(g) else float("nan"),
                     "mean_diff": float(diff.mean()) if len(diff) else float("nan"),
                     "win_rate_a": float(((better > 0) + 0.5 * (better == 0)).mean()) if len(diff) else float("nan"),
                     "wilcoxon_p": p})
    return pd.DataFrame(rows, columns=["metric", "direction", "n", "mean_a", "mean_b", "mean_diff", "win_rate_a", "wilcoxon_p"])


# --------------------------------------------------------------------------- table


def fmt(x: Any) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def best_runs(table: pd.DataFrame) -> dict[str, str]:
    """metric -> the run with the best mean (by the metric's direction)."""
    out = {}
    for metric, g in table.groupby("metric", sort=False):
        g = g[np.isfinite(g["mean"])]
        if len(g):
            idx = g["mean"].idxmin() if g["direction"].iloc[0] == "lower" else g["mean"].idxmax()
            out[metric] = str(table.loc[idx, "run"])
    return out


def cell_text(row: pd.Series) -> str:
    if row["seeds"] > 1:
        return f"{fmt(row['mean'])} ± {fmt(row['sd'])}"
    return f"{fmt(row['mean'])} [{fmt(row['ci95_lo'])}, {fmt(row['ci95_hi'])}]"


def rich_table(table: pd.DataFrame, title: str = "ptrag report", best: bool = True):
    """The metric x run table; ``best=False`` (runs on different data) marks no best."""
    from rich.markup import escape
    from rich.table import Table

    runs = list(dict.fromkeys(table["run"]))
    seeds = int(table["seeds"].max()) if len(table) else 1
    note = "mean ± sd over seeds" if seeds > 1 else "mean [95% bootstrap CI over perturbations]"
    out = Table(title=escape(f"{title} ({note}") + ("; best in bold green)" if best else "; no best: different data)"))
    out.add_column("metric")
    out.add_column("better")
    for run in runs:
        out.add_column(escape(run), justify="right")
    marked = best_runs(table) if best else {}
    for metric, g in table.groupby("metric", sort=False):
        by_run = {r["run"]: r for _, r in g.iterrows()}
        cells = []
        for run in runs:
            text = escape(cell_text(by_run[run])) if run in by_run else "-"
            cells.append(f"[bold green]{text}[/]" if marked.get(metric) == run else text)
        direction = g["direction"].iloc[0]
        out.add_row(escape(metric), "↓ lower" if direction == "lower" else "↑ higher", *cells)
    return out


# --------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int):
    cols = min(4, max(n, 1))
    rows = math.ceil(max(n, 1) / cols)
    return rows, cols


def plot_metric_bars(table: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    metrics = list(dict.fromkeys(table["metric"]))
    runs = list(dict.fromkeys(table["run"]))
    rows, cols = _grid(len(metrics))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
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
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def plot_paired_scatter(a: str, b: str, folders: Sequence[Path], path: Path) -> Path:
    plt = _plt()
    fa, fb = _select(a, folders), _select(b, folders)
    dirs = directions([*fa, *fb])
    joined = per_perturbation(fa).merge(per_perturbation(fb), on=["pert", "context", "metric"], suffixes=("_a", "_b"))
    metrics = list(dict.fromkeys(joined.metric))
    rows, cols = _grid(len(metrics))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
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
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


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
    for ax, context in zip(axes[0, 1:], contexts):
        kept = trace[(trace.context.astype(str) == context) & trace.kept]
        counts = (kept["candidate_pert"].astype(str) + "|" + kept["candidate_context"].astype(str)).value_counts().head(top)
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
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def training_curves(folder: Path, keys: Sequence[str]) -> pd.DataFrame:
    """log.jsonl records of one run that carry any of ``keys`` (step + those keys)."""
    path = Path(folder) / "log.jsonl"
    if not path.is_file():
        return pd.DataFrame(columns=["step", *keys])
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
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
    for ax, (kind, runs) in zip(axes[0], panels):
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
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def mean_changes(folder: Path, pert_col: str = "gene", context_col: str = "cell_line",
                 control: str = "non-targeting") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predicted and real mean change from control per (perturbation, cell line) x gene."""
    import anndata as ad

    out = []
    for name in ("predictions", "real"):
        adata = ad.read_h5ad(folder / f"{name}.h5ad")
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
    import yaml

    path = folder / "config.yaml"
    data = (yaml.safe_load(path.read_text()) or {}).get("data", {}) if path.is_file() else {}
    return {"pert_col": data.get("pert_col", "gene"), "context_col": data.get("context_col", "cell_line"),
            "control": data.get("control_label", "non-targeting")}


def _check_genes(folder: Path, genes: Sequence[str]) -> None:
    """``--genes`` must name features of the run (checked before a report writes anything)."""
    if not (folder / "real.h5ad").is_file():
        return
    import anndata as ad

    features = ad.read_h5ad(folder / "real.h5ad", backed="r").var_names
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
    for ax, gene in zip(axes.flat, chosen):
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
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def write_html(out: Path, table: pd.DataFrame, figures: Sequence[Path], paired: pd.DataFrame | None = None,
               title: str = "ptrag report", warnings: Sequence[str] = (), mark_best: bool = True) -> Path:
    best = best_runs(table) if mark_best else {}
    runs = list(dict.fromkeys(table["run"]))
    head = "".join(f"<th>{html.escape(r)}</th>" for r in runs)
    body = []
    for metric, g in table.groupby("metric", sort=False):
        by_run = {r["run"]: r for _, r in g.iterrows()}
        cells = "".join(
            f"<td{' class=best' if best.get(metric) == r else ''}>{html.escape(cell_text(by_run[r])) if r in by_run else '-'}</td>"
            for r in runs)
        body.append(f"<tr><td>{html.escape(metric)}</td><td>{g['direction'].iloc[0]}</td>{cells}</tr>")
    paired_html = paired.to_html(index=False, float_format=lambda x: f"{x:.4g}") if paired is not None else ""
    imgs = "".join(f'<p><img src="{html.escape(f.name)}" style="max-width:100%"></p>' for f in figures)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}"
            ".best{font-weight:bold;color:#1a7f37}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{''.join(f'<p><b>warning:</b> {html.escape(w)}</p>' for w in warnings)}<table><tr><th>metric</th><th>better</th>{head}</tr>{''.join(body)}</table>"
            f"{'<h2>paired comparison</h2>' + paired_html if paired_html else ''}<h2>figures</h2>{imgs}</body></html>")
    path = out / "report.html"
    write_text(path, page)
    return path


def build_report(paths: Sequence[str | Path], out: str | Path, *, compare: tuple[str, str] | None = None,
                 genes: Sequence[str] | None = None) -> dict[str, Any]:
    """Table, paired comparison, figures and report.html for the runs; returns what was made."""
    folders = expand_runs(paths)
    warnings, comparable = comparability(folders)  # different data: warned, no best marked
    if compare:  # refuse before writing anything
        require_same_data(_select(compare[0], folders), _select(compare[1], folders), compare)
    if genes:
        for folder in _one_per_config(folders):
            _check_genes(folder, genes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(folders)
    write_csv(out / "summary.csv", table)
    figures = [plot_metric_bars(table, out / "metric_bars.png")]
    paired = None
    if compare:
        paired = paired_comparison(compare[0], compare[1], folders)
        write_csv(out / "paired.csv", paired)
        figures.append(plot_paired_scatter(compare[0], compare[1], folders, out / "paired_scatter.png"))
    curves = plot_keep_ratio(folders, out / "keep_ratio.png")
    if curves:
        figures.append(curves)
    for folder in _one_per_config(folders):
        fig = plot_retrieval(folder, out / f"retrieval_{folder.name}.png")
        if fig:
            figures.append(fig)
    for folder in _one_per_config(folders):
        fig = plot_mean_change(folder, out / f"mean_change_{folder.name}.png", genes)
        if fig:
            figures.append(fig)
    page = write_html(out, table, figures, paired, warnings=warnings, mark_best=comparable)
    return {"folders": folders, "table": table, "paired": paired, "figures": figures, "html": page,
            "warnings": warnings, "comparable": comparable}


def _one_per_config(folders: Sequence[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for f in folders:
        seen.setdefault(run_label(f)[0], f)
    return list(seen.values())
