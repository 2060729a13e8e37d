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
from ptrag.core.run_folder import RunFolder, data_fingerprint, input_files

from .common import check_device, console, friendly_errors
from .run_cmd import _fmt


@friendly_errors
def predict(
    run: Path = typer.Option(..., "--run", help="A run folder written by `ptrag run`."),
    data: Path = typer.Option(..., "--data", help="The .h5ad to predict (same features, trained cell lines)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder; default: <run>/predict-<file stem>."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    gene_sets: Optional[Path] = typer.Option(None, "--gene-sets", help="GMT gene sets for the retrieval co-annotation summary; default: the run's data.gene_sets."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the prediction that the output folder holds; without it a folder holding another or a finished prediction is refused."),
) -> None:
    """Predict every perturbation group of DATA with the run's best weights; print the output folder last.

    Writes predictions.h5ad + real.h5ad (cell-eval compatible), retrieval.csv and, since the file
    holds the real cells, metrics.csv/metrics.json with the run's metrics. Genes new to the run
    follow the run's data.missing_embedding policy.
    """
    con = console()
    manager = build_manager()
    loaded = load_run(run, manager, device=check_device(device))
    out = out or run / f"predict-{data.stem}"
    sets_path = gene_sets or loaded.config.data.gene_sets
    identity = {"kind": "prediction", "config": {"run": str(run.resolve()), "data": str(data.resolve()),
                                                 "gene_sets": str(sets_path) if sets_path else None},
                "inputs": input_files({"data": str(data), "checkpoint": str(run / "checkpoint.pt"),
                                       "gene_sets": str(sets_path) if sets_path else None})}
    folder = RunFolder.claim(out, identity, overwrite=overwrite)
    log = lambda message: con.print(f"  {message}", markup=False)
    sets = read_gmt(sets_path) if sets_path else None  # before predicting: a bad file fails fast
    predictions, trace, screen, dropped = predict_file(loaded, data, log=log)
    ctx = BuildContext(n_genes=screen.n_features, gene_names=tuple(screen.features), seed=loaded.config.seed)
    metrics = {c.name: manager.get("metric", c.name).build(component_params(c, "metric", manager), ctx)
               for c in loaded.config.metrics}
    table = score(predictions, metrics)
    summary = aggregate(table, metrics, seed=loaded.config.seed)
    folder.begin({"data": data_fingerprint(screen)})
    write_cell_eval_files(out, predictions, screen)
    write_retrieval(out, trace, screen, sets)
    write_metrics(out, table, summary, {"run": str(run), "data": str(data), "n_groups": len(predictions),
                                        "dropped": dropped})
    con.print(f"predicted {len(predictions)} perturbation groups of {data} with {run}", markup=False)
    for name, agg in summary.items():
        con.print(f"  {name}: {_fmt(agg['mean'])}", markup=False)
    typer.echo(str(out))
