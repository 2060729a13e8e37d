"""`ptrag predict`: apply a finished run (config + checkpoint + retriever) to a new .h5ad."""

from __future__ import annotations

from pathlib import Path

import typer

from ptrag.core import api

from .common import check_device, console, friendly_errors


@friendly_errors
def predict(
    run: Path = typer.Option(..., "--run", help="A run folder written by `ptrag run`."),
    data: Path = typer.Option(..., "--data", help="The .h5ad to predict (same features, trained cell lines)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder; default: <run>/predict-<file stem>."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    gene_sets: Path | None = typer.Option(None, "--gene-sets",
                                          help="GMT gene sets for the retrieval co-annotation summary; "
                                               "default: the run's data.gene_sets."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace the prediction that the output folder holds; without it a folder "
                                        "holding another or a finished prediction is refused."),
    control_labels: list[str] | None = typer.Option(None, "--control-labels",
                                                    help="More labels of control cells in DATA, besides the run's "
                                                         "(data.control_labels; repeatable)."),
    allow_control_like: list[str] | None = typer.Option(None, "--allow-control-like",
                                                        help="Labels of DATA that look like controls but are real "
                                                             "perturbations (data.allow_control_like; repeatable)."),
) -> None:
    """Predict every perturbation group of DATA with the run's best weights; print the output folder last.

    Writes predictions.h5ad + real.h5ad (cell-eval compatible), retrieval.csv and, since the file
    holds the real cells, metrics.csv/metrics.json with the run's metrics. Genes new to the run
    follow the run's data.missing_embedding policy.
    """
    con = console()
    out = out or run / f"predict-{data.stem}"

    def log(message: str) -> None:
        con.print(f"  {message}", markup=False)

    result = api.predict(run, data, out=out, device=check_device(device), gene_sets=gene_sets, overwrite=overwrite,
                         keep_cells=False, control_labels=control_labels or (),
                         allow_control_like=allow_control_like or (), log=log)
    con.print(f"predicted {len(result.groups)} perturbation groups of {data} with {run}", markup=False)
    for name, agg in result.summary.items():
        con.print(f"  {name}: {api.fmt(agg['mean'])}", markup=False)
    typer.echo(str(out))
