"""``ptrag report``: finished runs as a table, a bottom line, paired tests, figures and report.html.

RUNS are run folders (each with its comparisons in ``compare/``), an ablation folder or a folder of
runs; runs are called by their preset or grid name (reporting/labels.py) and the seeds of one are
aggregated as mean ± sd. ``ptrag run`` writes this report of its own run into ``<run>/report``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, DataError
from ..evaluation.de_table import de_table
from ..evaluation.verdict import describe_fit, start_name
from ..files import write_csv
from ..runs.results import comparability, comparison_table, require_same_data, run_label, run_record
from .against import headline, settings_table, summary_table
from .bottom import bottom_lines
from .changes import Changes, read_changes
from .figures import plot_keep_ratio, plot_metric_bars, plot_paired_scatter, plot_selection_auc, plot_validation_curves
from .figures_cells import choose_groups, plot_mean_change, plot_perturbations, readout_genes
from .figures_retrieval import plot_candidates, plot_retrieval
from .folders import expand_runs, paired_comparison, select_runs
from .labels import RunKey, label_runs
from .page import write_html

#: DE genes per perturbation in de_genes.csv (the k of de-overlap@k / de-direction@k)
DE_K = 20


def build_report(paths: Sequence[str | Path], out: str | Path, *, compare: tuple[str, str] | None = None,
                 genes: Sequence[str] | None = None, against: str | None = None) -> dict[str, Any]:
    """Table, bottom line, paired comparison, figures and report.html for the runs; returns what was made."""
    folders = expand_runs(paths)
    keys = label_runs(folders)
    names = {f: k.label for f, k in keys.items()}
    warnings, comparable = comparability(folders)  # different data: warned, no best marked
    if compare:  # refuse before writing anything
        require_same_data(select_runs(compare[0], folders, keys), select_runs(compare[1], folders, keys), compare)
    if against:
        _known_baseline(keys, against)
    firsts = _one_per_config(folders, names)
    changes = {f: read_changes(f) for f in firsts}
    if genes:
        check_genes(changes, genes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(folders, name_of=lambda f: (keys[f].label, keys[f].seed))
    write_csv(out / "summary.csv", table)
    figures = [plot_metric_bars(table, out / "metric_bars.png")]
    paired = None
    if compare:
        paired = paired_comparison(compare[0], compare[1], folders, keys)
        write_csv(out / "paired.csv", paired)
        figures.append(plot_paired_scatter(compare[0], compare[1], folders, out / "paired_scatter.png", keys))
    figures += [plot_validation_curves(folders, out / "validation_curves.png", names),
                plot_keep_ratio(folders, out / "keep_ratio.png", names),
                plot_selection_auc(folders, out / "selection_auc.png", names)]
    cells, de = _run_figures(firsts, changes, names, genes, out)
    figures += cells
    versus = _against(folders, keys, against, out) if against else None
    fits = fit_texts(folders, names)
    bottom = bottom_lines(folders, keys)
    figures = [f for f in figures if f]
    page = write_html(out, table, figures, paired, warnings=warnings, mark_best=comparable, notes=fits,
                      bottom=bottom, de=de, against=versus["summary"] if versus else None)
    return {"folders": folders, "labels": names, "table": table, "paired": paired, "figures": figures, "html": page,
            "against": versus, "warnings": warnings, "comparable": comparable, "fits": fits, "bottom_line": bottom,
            "de": de}


def _safe(label: str) -> str:
    return re.sub(r"[^\w.@+-]+", "_", label)


def _run_figures(firsts: Sequence[Path], changes: Mapping[Path, Changes | None], names: Mapping[Path, str],
                 genes: Sequence[str] | None, out: Path) -> tuple[list[Path | None], pd.DataFrame | None]:
    """Per configuration: its perturbations, read-out genes, DE genes (de_genes.csv) and retrieval."""
    figures: list[Path | None] = []
    tables = []
    for folder in firsts:
        label, change, groups = names[folder], changes[folder], []
        if change is not None:
            groups = choose_groups(change, genes)
            figures.append(plot_perturbations(change, groups, out / f"perturbations_{_safe(label)}.png", label))
            readout = readout_genes(change, genes)
            figures.append(plot_mean_change(change, readout, out / f"mean_change_{_safe(label)}.png", label,
                                            chosen=bool(genes) and any(g in change.genes for g in genes)))
            table = de_table(change.groups, change.genes, change.pred, change.real, DE_K)
            table.insert(0, "run", label)
            table["shown"] = list(zip(table.pert, table.context, strict=True))
            table["shown"] = table["shown"].isin(groups)
            tables.append(table)
        figures.append(plot_retrieval(folder, out / f"retrieval_{_safe(label)}.png", label))
        figures.append(plot_candidates(folder, groups, out / f"candidates_{_safe(label)}.png", label))
    de = pd.concat(tables, ignore_index=True) if tables else None
    if de is not None:
        write_csv(out / "de_genes.csv", de)
    return figures, de


def check_genes(changes: Mapping[Path, Changes | None], genes: Sequence[str]) -> None:
    """``--genes`` must name read-out genes or held-out perturbations of the runs, and every run
    must have the predicted and real cells its figure plots (checked before a report writes anything)."""
    for folder, change in changes.items():
        if change is None:
            missing = [n for n in ("predictions.h5ad", "real.h5ad") if not (Path(folder) / n).is_file()]
            what = " or ".join(missing) or "group scored in both predictions.h5ad and real.h5ad"
            raise DataError(f"{folder}: --genes plots predicted against real mean changes, and it has no {what}; "
                            "report it without --genes, or restore the file(s)")
    if not changes:
        return
    features = {g for c in changes.values() for g in c.genes}
    perturbed = {p for c in changes.values() for p, _ in c.groups}
    unknown = [g for g in genes if g not in features and g not in perturbed]
    if unknown:
        folder, first = next(iter(changes.items()))
        raise DataError(f"--genes: {', '.join(unknown)} in {folder}: neither a read-out gene (first: "
                        f"{', '.join(first.genes[:4])}) nor a held-out perturbation (first: "
                        f"{', '.join(sorted(perturbed)[:4])}) of the reported runs; name genes of either kind")


def fit_texts(folders: Sequence[Path], names: Mapping[Path, str]) -> list[str]:
    """Per run that fitted an ensemble or protected its start: what it fitted and kept, in words."""
    out = []
    for folder in folders:
        run = run_record(folder)
        seed = run_label(folder)[1]
        label = names[folder] if seed is None or f"s{seed}" in names[folder] else f"{names[folder]} (seed {seed})"
        said = describe_fit(label, run.get("training"), start_name(run.get("members") or []))
        if said:
            out.append(said)
    return out


def _one_per_config(folders: Sequence[Path], names: Mapping[Path, str]) -> list[Path]:
    seen: dict[str, Path] = {}
    for f in folders:
        seen.setdefault(names[f], f)
    return list(seen.values())


def _known_baseline(keys: Mapping[Path, RunKey], baseline: str) -> None:
    known = {k.name for k in keys.values()}
    if baseline not in known:
        raise ConfigError(f"--against {baseline}: no run of that name among the reported runs "
                          f"({', '.join(sorted(known))})")


def _against(folders: Sequence[Path], keys: Mapping[Path, RunKey], baseline: str, out: Path) -> dict[str, Any]:
    """Every run against ``baseline`` setting by setting: against.csv, against_summary.csv."""
    table = settings_table(folders, baseline, keys=keys)
    summary = summary_table(table)
    write_csv(out / "against.csv", table)
    write_csv(out / "against_summary.csv", summary)
    return {"baseline": baseline, "settings": table, "summary": summary, "headline": headline(table)}
