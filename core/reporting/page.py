"""report.html: the table, the paired comparison and the figures on one page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..files import write_text
from .tables import best_runs, cell_text


def write_html(out: Path, table: pd.DataFrame, figures: Sequence[Path], paired: pd.DataFrame | None = None,
               title: str = "ptrag report", warnings: Sequence[str] = (), mark_best: bool = True,
               notes: Sequence[str] = ()) -> Path:
    best = best_runs(table) if mark_best else {}
    runs = list(dict.fromkeys(table["run"]))
    head = "".join(f"<th>{html.escape(r)}</th>" for r in runs)
    body = []
    for metric, g in table.groupby("metric", sort=False):
        by_run = {r["run"]: r for _, r in g.iterrows()}
        cells = "".join(
            f"<td{' class=best' if best.get(metric) == r else ''}>"
            f"{html.escape(cell_text(by_run[r])) if r in by_run else '-'}</td>"
            for r in runs)
        body.append(f"<tr><td>{html.escape(metric)}</td><td>{g['direction'].iloc[0]}</td>{cells}</tr>")
    paired_html = paired.to_html(index=False, float_format=lambda x: f"{x:.4g}") if paired is not None else ""
    imgs = "".join(f'<p><img src="{html.escape(f.name)}" style="max-width:100%"></p>' for f in figures)
    warning_html = "".join(f"<p><b>warning:</b> {html.escape(w)}</p>" for w in warnings)
    notes_html = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:2em}"
            "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}"
            ".best{font-weight:bold;color:#1a7f37}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{warning_html}"
            f"<table><tr><th>metric</th><th>better</th>{head}</tr>{''.join(body)}</table>"
            f"{'<h2>what was fitted and kept</h2>' + notes_html if notes_html else ''}"
            f"{'<h2>paired comparison</h2>' + paired_html if paired_html else ''}<h2>figures</h2>{imgs}</body></html>")
    path = out / "report.html"
    write_text(path, page)
    return path
