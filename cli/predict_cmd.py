"""`ptrag predict`: apply a finished run (config + checkpoint + retriever) to a new .h5ad."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ptrag.core.config import component_params
from ptrag.core.data.gene_sets import read_gmt
from ptrag.core.evaluate import aggregate, score
from ptrag.core.hookspecs import BuildContext
from ptrag.core.manager import build_manager
from ptrag.core.outputs import write_cell_eval_files, write_metrics, write_retrieval
from ptrag.core.predict import load_run, predict_file

from .common import console, friendly_errors
from .run_cmd import _fmt


@friendly_errors
def predict(
    run: Path = typer.Option(..., "--run", help="A run folder written by `ptrag run`."),
    data: Path = typer.Option(..., "--data", help="The .h5ad to predict (same features, trained cell lines)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder; default: <run>/predict-<file stem>."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    gene_sets: Optional[Path] = typer.Option(None, "--gene-sets", help="GMT gene sets for the retrieval co-annotation summary; default: the run's data.gene_sets."),
) -> None:
    """Predict every perturbation group of DATA with the run's best weights; print the output folder last.

    Writes predictions.h5ad + real.h5ad (cell-eval compatible), retrieval.csv and, since the file
    holds the real cells, metrics.csv/metrics.json with the run's metrics.
    """
    con = console()
    manager = build_manager()
    loaded = load_run(run, manager, device=device)
    out = out or run / f"predict-{data.stem}"
    out.mkdir(parents=True, exist_ok=True)
    log = lambda message: con.print(f"  {message}", markup=False)
    sets_path = gene_sets or loaded.config.data.gene_sets
    sets = read_gmt(sets_path) if sets_path else None  # before predicting: a bad file fails fast
    predictions, trace, screen = predict_file(loaded, data, log=log)
    ctx = BuildContext(n_genes=screen.n_features, gene_names=tuple(screen.features), seed=loaded.config.seed)
    metrics = {c.name: manager.get("metric", c.name).build(component_params(c, "metric", manager), ctx)
               for c in loaded.config.metrics}
    table = score(predictions, metrics)
    summary = aggregate(table, metrics, seed=loaded.config.seed)
    write_metrics(out, table, summary, {"run": str(run), "data": str(data), "n_groups": len(predictions)})
    write_cell_eval_files(out, predictions, screen)
    write_retrieval(out, trace, screen, sets)
    con.print(f"predicted {len(predictions)} perturbation groups of {data} with {run}")
    for name, agg in summary.items():
        con.print(f"  {name}: {_fmt(agg['mean'])}", markup=False)
    typer.echo(str(out))
