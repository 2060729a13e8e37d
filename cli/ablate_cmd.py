"""`ptrag ablate grid.yaml`: run a grid of configurations x seeds and print one comparison table."""

from __future__ import annotations

from pathlib import Path

import typer

from ptrag.core import api

from .common import console, escape, friendly_errors


@friendly_errors
def ablate(
    grid: Path = typer.Argument(..., help="Grid YAML: runs (presets / overrides), seeds, base (see docs/metrics.md)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Ablation folder; default: runs/ablate-<grid name>."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Rerun the runs whose folder holds another configuration (the grid changed); "
                                        "without it they are refused."),
    sets: list[str] = typer.Option([], "--set", help="Override a key in every run of the grid, after the grid's own "
                                   "(e.g. --set data.synth_preset=screen); repeatable."),
) -> None:
    """Run every (configuration, seed) of the grid into OUT/<name>-s<seed>; finished runs of the
    same configuration are skipped and killed ones resume from their checkpoint, so re-running
    continues; a run whose configuration changed is refused (or rerun with --overwrite). Writes
    OUT/comparison.csv and prints the table; the folder path is printed last (feed it to
    `ptrag report`)."""
    spec = api.reports.load_grid(grid)
    folder = out or Path("runs") / f"ablate-{grid.stem}"
    con = console()
    con.print(f"[bold]ptrag ablate[/] {escape(str(grid))}: {len(spec.runs)} configuration(s) x {len(spec.seeds)} "
              f"seed(s) -> {escape(str(folder))}")
    table = api.reports.ablate(spec, folder, overwrite=overwrite, set=sets,
                                  log=lambda message: con.print(f"  {message}", markup=False))
    con.print(api.reports.rich_table(table, title=f"ablation {grid.stem}"))
    typer.echo(str(folder))
