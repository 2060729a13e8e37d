"""`ptrag run`: resolve a config, run one experiment, print the results, name the run folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ptrag.core import api
from ptrag.core.distributed import broadcast, setup
from ptrag.core.experiment import RunResult, new_run_dir
from ptrag.core.manager import build_manager

from .common import check_device, console, escape, fail, friendly_errors


@friendly_errors
def run(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Experiment YAML."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Named preset from registry.yaml (see `ptrag plugins --all`)."),
    budget: Optional[str] = typer.Option(None, "--budget", "-b", help="Named training budget from registry.yaml: demo (2-core CPU) or paper (the authors' 50,000 steps of 64 x 64 sets, for a GPU)."),
    data: Optional[Path] = typer.Option(None, "--data", help="An .h5ad screen; default: the built-in dataset."),
    split: Optional[Path] = typer.Option(None, "--split", help="Split file (STATE TOML or YAML); default: random few-shot."),
    retriever: Optional[str] = typer.Option(None, "--retriever", help="Retriever name (stage 1)."),
    selector: Optional[str] = typer.Option(None, "--selector", help="Selector name (stage 2)."),
    generator: Optional[str] = typer.Option(None, "--generator", help="Generator name."),
    sets: list[str] = typer.Option([], "--set", help="Override any key: --set train.steps=200 (repeatable)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=0, help="Training steps (train.steps)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the split, sampling and model (the built-in data follows data.seed)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | mps."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder; default: a new folder under runs/."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run folder from its checkpoint.pt (same result on CPU); overrides may change only device and train.threads."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run that --out holds (its files are deleted first); without it a folder holding another or a finished run is refused."),
) -> None:
    """Train and evaluate one experiment; write the run folder and print its path last.

    With no arguments: the default preset on the built-in dataset. Precedence: preset < --budget <
    --config YAML < --retriever/--selector/--generator < --steps/--seed/--device/--data/--split/--out
    < --set. With the preset's `compare:` runs, the last lines say whether each retrieval model beat
    the best simple baseline (paired test over perturbations).
    `--config RUN/config.yaml` reruns a run into a new folder; a run folder is never reused
    silently (see --resume and --overwrite).
    """
    manager = build_manager()
    cfg = api.configure(config, preset=preset, budget=budget, data=data, split=split, retriever=retriever,
                        selector=selector, generator=generator, steps=steps, seed=seed,
                        device=None if device is None else check_device(device), out=out, resume=resume,
                        set=sets, manager=manager)
    con = console()
    con.print(f"[bold]ptrag run[/] " + escape(f"preset={cfg.preset} retriever={cfg.retriever.name} "
                                               f"selector={cfg.selector.name} generator={cfg.generator.name} "
                                               f"seed={cfg.seed}"))
    log = lambda message: con.print(f"  {message}", markup=False)
    dist = setup(cfg.device)  # under torchrun: join the process group
    if not cfg.output.dir:  # fixed now so an interrupted run can name its folder (rank 0's name)
        cfg.output.dir = broadcast(str(new_run_dir(cfg)), dist)
    try:  # the main run's table comes before its comparator runs start; no cells held in memory
        result = api.run(config=cfg, resume=resume, overwrite=overwrite, comparisons=False, keep_cells=False,
                         log=log, manager=manager)
    except KeyboardInterrupt:
        raise fail(f"interrupted; continue from the last checkpoint with: ptrag run --resume {cfg.output.dir}", 130) from None
    con.print(results_table(result))
    if cfg.compare:
        api.run_comparisons(result, keep_cells=False, log=log, manager=manager)
        con.print(comparison_table(result))
        for verdict in result.verdicts or []:
            con.print(verdict.text, markup=False, style="bold green" if verdict.beat else "bold red")
    if dist.is_main:
        typer.echo(str(result.run_dir))


def comparison_table(result: RunResult) -> Table:
    """Metric x preset means (this run first, then its `compare:` presets); CIs are in compare.csv."""
    runs = [result, *(result.comparisons or [])]
    table = Table(title=escape(f"{result.config.preset} vs {', '.join(result.config.compare)}: same split and seed "
                               f"(mean over held-out perturbations; 95% CIs in compare.csv)"))
    table.add_column("metric")
    table.add_column("better")
    for run in runs:
        table.add_column(escape(run.config.preset or "custom"), justify="right")
    for name, agg in result.summary.items():
        means = [run.summary.get(name, {}).get("mean", float("nan")) for run in runs]
        table.add_row(escape(name), agg["direction"], *(_fmt(m) for m in means))
    return table


def results_table(result: RunResult) -> Table:
    table = Table(title=escape(f"{result.config.preset}: {result.metrics.drop_duplicates(['pert', 'context']).shape[0]} "
                               "held-out perturbations"))
    for column in ("metric", "better", "mean", "95% CI", "median"):
        table.add_column(column, justify="left" if column in ("metric", "better") else "right")
    for name, agg in result.summary.items():
        lo, hi = agg["ci95"]
        table.add_row(escape(name), agg["direction"], _fmt(agg["mean"]), escape(f"[{_fmt(lo)}, {_fmt(hi)}]"),
                      _fmt(agg["median"]))
    return table


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"
