"""`ptrag ablate grid.yaml`: run a grid of configurations x seeds and print one comparison table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ptrag.core.ablate import load_grid, run_grid
from ptrag.core.manager import build_manager
from ptrag.core.report import rich_table

from .common import console, friendly_errors


@friendly_errors
def ablate(
    grid: Path = typer.Argument(..., help="Grid YAML: runs (presets / overrides), seeds, base (see docs/metrics.md)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Ablation folder; default: runs/ablate-<grid name>."),
) -> None:
    """Run every (configuration, seed) of the grid into OUT/<name>-s<seed>; finished runs are
    skipped, so re-running resumes. Writes OUT/comparison.csv and prints the table; the folder
    path is printed last (feed it to `ptrag report`)."""
    spec = load_grid(grid)
    folder = out or Path("runs") / f"ablate-{grid.stem}"
    con = console()
    con.print(f"[bold]ptrag ablate[/] {grid}: {len(spec.runs)} configuration(s) x {len(spec.seeds)} seed(s) -> {folder}")
    table = run_grid(spec, folder, build_manager(), log=lambda message: con.print(f"  {message}", markup=False))
    con.print(rich_table(table, title=f"ablation {grid.stem}"))
    typer.echo(str(folder))
