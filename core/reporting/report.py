"""Compare finished runs: a metric x run table, paired per-perturbation tests, PNG figures, HTML.

Inputs are run folders (with metrics.json / metrics.csv, optionally predictions.h5ad, real.h5ad,
retrieval.csv) or an ablation folder (with ablation.json), whose seeds are aggregated as
mean ± sd per configuration. Figures use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evaluation.verdict import describe_fit, start_name
from ..files import write_csv
from ..runs.results import comparability, comparison_table, require_same_data, run_label, run_record
from .against import headline, settings_table, summary_table
from .figures import (
    check_genes,
    plot_keep_ratio,
    plot_mean_change,
    plot_metric_bars,
    plot_paired_scatter,
    plot_retrieval,
    plot_selection_auc,
    plot_validation_curves,
)
from .folders import expand_runs, paired_comparison, select_runs
from .page import write_html


def build_report(paths: Sequence[str | Path], out: str | Path, *, compare: tuple[str, str] | None = None,
                 genes: Sequence[str] | None = None, against: str | None = None) -> dict[str, Any]:
    """Table, paired comparison, figures and report.html for the runs; returns what was made."""
    folders = expand_runs(paths)
    warnings, comparable = comparability(folders)  # different data: warned, no best marked
    if compare:  # refuse before writing anything
        require_same_data(select_runs(compare[0], folders), select_runs(compare[1], folders), compare)
    if genes:
        for folder in _one_per_config(folders):
            check_genes(folder, genes)
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
    for fig in (plot_validation_curves(folders, out / "validation_curves.png"),
                plot_keep_ratio(folders, out / "keep_ratio.png"),
                plot_selection_auc(folders, out / "selection_auc.png")):
        if fig:
            figures.append(fig)
    for folder in _one_per_config(folders):
        fig = plot_retrieval(folder, out / f"retrieval_{folder.name}.png")
        if fig:
            figures.append(fig)
    for folder in _one_per_config(folders):
        fig = plot_mean_change(folder, out / f"mean_change_{folder.name}.png", genes)
        if fig:
            figures.append(fig)
    versus = _against(folders, against, out) if against else None
    fits = fit_texts(folders)
    page = write_html(out, table, figures, paired, warnings=warnings, mark_best=comparable, notes=fits)
    return {"folders": folders, "table": table, "paired": paired, "figures": figures, "html": page, "against": versus,
            "warnings": warnings, "comparable": comparable, "fits": fits}


def fit_texts(folders: Sequence[Path]) -> list[str]:
    """Per run that fitted an ensemble or protected its start: what it fitted and kept, in words."""
    out = []
    for folder in folders:
        run = run_record(folder)
        said = describe_fit(run_label(folder)[0], run.get("training"), start_name(run.get("members") or []))
        if said:
            out.append(said)
    return out


def _one_per_config(folders: Sequence[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for f in folders:
        seen.setdefault(run_label(f)[0], f)
    return list(seen.values())


def _against(folders: Sequence[Path], baseline: str, out: Path) -> dict[str, Any]:
    """Every run against ``baseline`` setting by setting: against.csv, against_summary.csv."""
    known = {run_label(f)[0].partition("@")[0] for f in folders}
    if baseline not in known:
        raise ConfigError(f"--against {baseline}: no run of that name among the reported runs "
                          f"({', '.join(sorted(known))})")
    table = settings_table(folders, baseline)
    summary = summary_table(table)
    write_csv(out / "against.csv", table)
    write_csv(out / "against_summary.csv", summary)
    return {"baseline": baseline, "settings": table, "summary": summary, "headline": headline(table)}
