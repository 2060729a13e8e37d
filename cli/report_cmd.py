"""`ptrag report RUNS...`: compare finished runs in a table, figures and an HTML page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ptrag.core import api
from ptrag.core.api import fmt

from .common import console, escape, friendly_errors


@friendly_errors
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders, an ablation folder, or a folder of runs."),
    compare: list[str] | None = typer.Option(None, "--compare",
                                             help="Two runs (folders or names) to compare per perturbation: "
                                                  "--compare A --compare B, or --compare 'A B'."),
    genes: str | None = typer.Option(None, "--genes",
                                     help="Comma-separated features for the mean-change scatter; "
                                          "default: the 4 most variable."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Report folder; default: <first run>/report."),
) -> None:
    """Print the metric x run table (best in bold green, direction noted, seeds as mean ± sd) and
    write summary.csv, PNG figures and report.html; with --compare, a paired test per metric."""
    pair = None
    if compare:
        names = [n for item in compare for n in item.split()]
        if len(names) != 2:
            raise typer.BadParameter(f"--compare needs exactly two runs, got {len(names)}: {' '.join(names)}")
        pair = (names[0], names[1])
    folder = out or Path(runs[0]) / "report"
    result = api.reports.report(runs, folder, compare=pair, genes=[g for g in (genes or "").split(",") if g] or None)
    con = console()
    con.print(api.reports.rich_table(result["table"], title=f"ptrag report: {len(result['folders'])} run folder(s)",
                         best=result.get("comparable", True)))
    if result["paired"] is not None:
        con.print(paired_table(result["paired"], *pair))
    for warning in result.get("warnings", []):
        con.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    con.print(f"figures: {', '.join(f.name for f in result['figures'])}", markup=False)
    typer.echo(str(result["html"]))


def paired_table(paired, a: str, b: str) -> Table:
    table = Table(title=escape(f"paired per perturbation: A = {a}, B = {b} (Wilcoxon signed-rank)"))
    for col in ("metric", "better", "n", "mean A", "mean B", "mean A-B", "A wins", "p"):
        table.add_column(col, justify="left" if col in ("metric", "better") else "right")
    for _, r in paired.iterrows():
        win = r["win_rate_a"]
        significant = r["wilcoxon_p"] < 0.05
        style = "bold green" if win > 0.5 and significant else "bold red" if win < 0.5 and significant else ""
        wins = f"[{style}]{win:.0%}[/]" if style else f"{win:.0%}"
        table.add_row(escape(r["metric"]), r["direction"], str(r["n"]), fmt(r["mean_a"]), fmt(r["mean_b"]),
                      fmt(r["mean_diff"]), wins, fmt(r["wilcoxon_p"]))
    return table
