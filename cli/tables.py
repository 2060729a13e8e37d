"""The tables `ptrag run` prints, sized for the terminal they print to (80 columns included).

Presets are rows and metrics columns; when every metric does not fit the width, the metrics are
split over several tables with the presets repeated, so no label is ever cut short.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ptrag.core import api

from .common import escape

ARROW = {"lower": "↓", "higher": "↑"}


def results_table(result: Any) -> Table:
    """One run: per metric its direction, mean, 95% CI and median."""
    n = result.metrics.drop_duplicates(["pert", "context"]).shape[0]
    table = Table(title=escape(f"{result.config.preset}: {n} held-out perturbations"))
    for column in ("metric", "better", "mean", "95% CI", "median"):
        table.add_column(column, justify="left" if column in ("metric", "better") else "right", no_wrap=True)
    for name, agg in result.summary.items():
        lo, hi = agg["ci95"]
        table.add_row(escape(name), agg["direction"], api.fmt(agg["mean"]),
                      escape(f"[{api.fmt(lo)}, {api.fmt(hi)}]"), api.fmt(agg["median"]))
    return table


def _table(title: str | None, runs: list[Any], metrics: list[str], directions: dict[str, str]) -> Table:
    table = Table(title=title)
    table.add_column("preset", no_wrap=True)
    for metric in metrics:
        table.add_column(escape(f"{metric} {ARROW.get(directions[metric], '')}"), justify="right", no_wrap=True)
    for run in runs:
        means = [api.fmt(run.summary.get(m, {}).get("mean", float("nan"))) for m in metrics]
        table.add_row(escape(run.config.preset or "custom"), *means)
    return table


def _width(table: Table) -> int:
    """The columns the table needs to print without cutting anything."""
    return Console(width=10_000).measure(table).maximum


def comparison_tables(result: Any, width: int = 80) -> list[Table]:
    """Preset x metric means of a run and its `compare:` presets, split by metrics to fit ``width``."""
    runs = [result, *(result.comparisons or [])]
    directions = {name: agg["direction"] for name, agg in result.summary.items()}
    title = escape(f"{result.config.preset} vs {', '.join(result.config.compare)}: same split and seed "
                   "(mean over held-out perturbations; ↓ lower / ↑ higher is better; 95% CIs in compare.csv)")
    tables, chunk = [], []
    for metric in directions:
        if chunk and _width(_table(None, runs, [*chunk, metric], directions)) > width:
            tables.append(_table(title if not tables else None, runs, chunk, directions))
            chunk = []
        chunk.append(metric)
    if chunk:
        tables.append(_table(title if not tables else None, runs, chunk, directions))
    return tables
