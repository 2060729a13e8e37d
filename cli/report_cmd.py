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
    runs: list[Path] = typer.Argument(..., help="Run folders (each with its compare/ runs), an ablation folder, "
                                                "or a folder of runs."),
    compare: list[str] | None = typer.Option(None, "--compare",
                                             help="Two runs (folders or names) to compare per perturbation: "
                                                  "--compare A --compare B, or --compare 'A B'."),
    genes: str | None = typer.Option(None, "--genes",
                                     help="Comma-separated genes: held-out perturbations for the per-perturbation "
                                          "figures (default: the 4 strongest real responses) and read-out genes for "
                                          "the mean-change scatter (default: the 4 most variable)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Report folder; default: <first run>/report."),
    against: str | None = typer.Option(None, "--against",
                                       help="A baseline run name (e.g. gene-other-lines): pair every run with it "
                                            "setting by setting and count wins / ties / losses (p < 0.01)."),
) -> None:
    """Print the bottom line and the metric x run table (best in bold green, direction noted, seeds
    as mean ± sd; runs named by preset) and write summary.csv, de_genes.csv, PNG figures and
    report.html; with --compare, a paired test per metric; with --against, every run against one
    baseline in every setting (a run and its comparisons, or a grid setting, x seed)."""
    pair = None
    if compare:
        names = [n for item in compare for n in item.split()]
        if len(names) != 2:
            raise typer.BadParameter(f"--compare needs exactly two runs, got {len(names)}: {' '.join(names)}")
        pair = (names[0], names[1])
    folder = out or Path(runs[0]) / "report"
    result = api.reports.report(runs, folder, compare=pair, genes=[g for g in (genes or "").split(",") if g] or None,
                                against=against)
    con = console()
    for line in result.get("bottom_line", []):
        con.print(line, markup=False, style="bold")
    con.print(api.reports.rich_table(result["table"], title=f"ptrag report: {len(result['folders'])} run folder(s)",
                         best=result.get("comparable", True)))
    if result["paired"] is not None:
        con.print(paired_table(result["paired"], *pair))
    if result.get("against"):
        for table in against_tables(result["against"]):
            con.print(table)
    for said in result.get("fits", []):
        con.print(said, markup=False)
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
        p = "identical" if r.get("identical") else fmt(r["wilcoxon_p"])
        table.add_row(escape(r["metric"]), r["direction"], str(r["n"]), fmt(r["mean_a"]), fmt(r["mean_b"]),
                      fmt(r["mean_diff"]), wins, p)
    return table


def against_tables(versus: dict) -> list[Table]:
    """Wins / ties / losses per run and metric, and the headline count per run."""
    summary = Table(title=escape(f"against {versus['baseline']}: setting by setting (Wilcoxon over perturbations, "
                                 "p < 0.01); improvement relative to its mean"))
    for col in ("run", "metric", "settings", "wins", "ties", "losses", "mean improvement"):
        summary.add_column(col, justify="left" if col in ("run", "metric") else "right", no_wrap=col == "run")
    for _, r in versus["summary"].iterrows():
        ties = f"{r['ties']} ({r['identical']} identical)" if r.get("identical") else str(r["ties"])
        summary.add_row(escape(r["run"]), escape(r["metric"]), str(r["settings"]), str(r["wins"]), ties,
                        str(r["losses"]), f"{r['mean_improvement']:+.1%}")
    head = Table(title="headline: energy and pearson-delta")
    for col in versus["headline"].columns:
        head.add_column(col.replace("_", " "), justify="left" if col == "run" else "right")
    for _, r in versus["headline"].iterrows():
        head.add_row(*(escape(str(v)) for v in r.tolist()))
    return [summary, head]
