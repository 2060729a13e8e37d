"""report.html: the bottom line, the table, the DE genes, the paired comparison and the figures on one page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..files import write_text
from .tables import best_runs, cell_text

#: genes of each list the HTML shows (de_genes.csv has all k)
SHOWN_GENES = 6
STYLE = ("body{font-family:sans-serif;margin:2em;max-width:80em}"
         "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}"
         "td.genes{text-align:left;font-family:monospace;font-size:85%}"
         ".best{font-weight:bold;color:#1a7f37}.bottom{font-size:110%;background:#f3f6fa;padding:0.6em 1em}")


def _metric_table(table: pd.DataFrame, mark_best: bool) -> str:
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
    return f"<table><tr><th>metric</th><th>better</th>{head}</tr>{''.join(body)}</table>"


def _genes(text: str) -> str:
    genes = [g for g in str(text).split(";") if g]
    return html.escape(" ".join(genes[:SHOWN_GENES]) + (" ..." if len(genes) > SHOWN_GENES else ""))


def _de_html(de: pd.DataFrame) -> str:
    """Per run, its shown perturbations' real and predicted DE genes, and its means over all."""
    rows = []
    for run, g in de.groupby("run", sort=False):
        for r in g[g["shown"]].itertuples():
            rows.append(f"<tr><td>{html.escape(run)}</td><td>{html.escape(str(r.pert))}</td>"
                        f"<td>{html.escape(str(r.context))}</td><td class=genes>{_genes(r.real_de_genes)}</td>"
                        f"<td class=genes>{_genes(r.predicted_de_genes)}</td><td>{r.overlap:.2f}</td>"
                        f"<td>{r.direction:.2f}</td></tr>")
        rows.append(f"<tr><td>{html.escape(run)}</td><td colspan=4 style='text-align:left'><i>mean over its "
                    f"{len(g)} held-out perturbations</i></td><td>{g.overlap.mean():.2f}</td>"
                    f"<td>{g.direction.mean():.2f}</td></tr>")
    k = int(de["k"].max()) if len(de) else 0
    return ("<h2>predicted vs real DE genes</h2>"
            f"<p>Per perturbation the real and the predicted top-{k} genes by |mean change from control| (+ up, "
            f"- down; the first {SHOWN_GENES} shown, by size); overlap: the share of the real top-{k} the prediction "
            f"also ranks top-{k}; direction: the share of the real top-{k} it moves the right way (de-overlap@{k}, "
            f"de-direction@{k}). Every perturbation and gene: de_genes.csv.</p>"
            "<table><tr><th>run</th><th>perturbation</th><th>line</th><th>real DE genes</th>"
            f"<th>predicted DE genes</th><th>overlap</th><th>direction</th></tr>{''.join(rows)}</table>")


def write_html(out: Path, table: pd.DataFrame, figures: Sequence[Path], paired: pd.DataFrame | None = None,
               title: str = "ptrag report", warnings: Sequence[str] = (), mark_best: bool = True,
               notes: Sequence[str] = (), bottom: Sequence[str] = (), de: pd.DataFrame | None = None,
               against: pd.DataFrame | None = None) -> Path:
    def frame(f: pd.DataFrame) -> str:
        return f.to_html(index=False, float_format=lambda x: f"{x:.4g}")

    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p class=bottom><b>Bottom line.</b> {html.escape(b)}</p>" for b in bottom]
    parts += [f"<p><b>warning:</b> {html.escape(w)}</p>" for w in warnings]
    parts.append(_metric_table(table, mark_best))
    if notes:
        parts.append("<h2>what was fitted and kept</h2>" + "".join(f"<p>{html.escape(n)}</p>" for n in notes))
    if de is not None and len(de):
        parts.append(_de_html(de))
    if paired is not None:
        parts.append("<h2>paired comparison</h2>" + frame(paired))
    if against is not None:
        parts.append("<h2>against the baseline, setting by setting</h2>" + frame(against))
    parts.append("<h2>figures</h2>" + "".join(f'<p><img src="{html.escape(f.name)}" style="max-width:100%"></p>'
                                               for f in figures))
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path = out / "report.html"
    write_text(path, page)
    return path
