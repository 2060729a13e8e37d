"""The metric x run table as the terminal shows it (rich), best runs marked."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from ..evaluation.aggregate import fmt


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
