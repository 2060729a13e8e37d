"""`ptrag predict`: apply a finished run (config + checkpoint + retriever) to a new .h5ad."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ptrag.core import api

from .common import check_device, console, friendly_errors


@friendly_errors
def predict(
    run: Path = typer.Option(..., "--run", help="A run folder written by `ptrag run`."),
    data: Path | None = typer.Option(None, "--data", help="The .h5ad to predict (same features, trained cell lines); "
                                     "with --genes, the screen whose control cells start the knock-downs "
                                     "(default: the run's own)."),
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
    genes: str | None = typer.Option(None, "--genes", help="In-silico screen: knock-downs to predict, comma-"
                                     "separated (measured in the line or not); needs --line."),
    line: str | None = typer.Option(None, "--line", help="With --genes: the cell line to predict them in."),
    cells: int | None = typer.Option(None, "--cells", help="With --genes: cells per knock-down; default: the "
                                     "line's median perturbation group size."),
) -> None:
    """Predict every perturbation group of DATA with the run's best weights; print the output folder last.

    Writes predictions.h5ad + real.h5ad (cell-eval compatible), retrieval.csv and, since the file
    holds the real cells, metrics.csv/metrics.json with the run's metrics. Genes new to the run
    follow the run's data.missing_embedding policy.
    """
    con = console()
    if genes is not None or line is not None:
        unused = [flag for flag, value in (("--gene-sets", gene_sets), ("--control-labels", control_labels),
                                           ("--allow-control-like", allow_control_like)) if value]
        if unused:
            raise api.ConfigError(f"{', '.join(unused)}: not used by an in-silico screen (--genes/--line), which reads "
                                  "the run's own data settings; leave them out, or predict a file with --data")
        return _knockdowns(con, run, genes, line, data, cells, out, check_device(device), overwrite)
    if cells is not None:
        raise api.ConfigError("--cells goes with --genes and --line (cells per in-silico knock-down); a prediction "
                              "of --data predicts every cell of each group")
    if data is None:
        raise api.ConfigError("--data: give the .h5ad to predict, or --genes A,B --line L for an in-silico screen")
    out = out or run / f"predict-{data.stem}"

    def log(message: str) -> None:
        con.print(f"  {message}", markup=False)

    result = api.predict(run, data, out=out, device=check_device(device), gene_sets=gene_sets, overwrite=overwrite,
                         keep_cells=False, control_labels=control_labels or (),
                         allow_control_like=allow_control_like or (), log=log)
    con.print(f"predicted {len(result.groups)} perturbation groups of {data} with {run}", markup=False)
    if result.in_training:
        con.print(f"note: {result.in_training} of these {len(result.groups)} groups were in the run's training "
                  "data: their scores are not held-out scores", markup=False)
    for name, agg in result.summary.items():
        con.print(f"  {name}: {api.fmt(agg['mean'])}", markup=False)
    typer.echo(str(out))


def _knockdowns(con, run: Path, genes: str | None, line: str | None, data: Path | None, cells: int | None,
                out: Path | None, device: str, overwrite: bool) -> None:
    """`ptrag predict --genes ... --line ...`: the ranked effects table, then the folder."""
    if not genes or not line:
        raise api.ConfigError("--genes and --line go together: --genes MAPK1,TP53 --line k562")
    out = out or run / f"knockdowns-{line}"

    def log(message: str) -> None:
        con.print(f"  {message}", markup=False)

    result = api.predict_knockdowns(run, genes, line, data=data, cells=cells, out=out, device=device,
                                    overwrite=overwrite, log=log)
    table = Table(title=escape(f"in-silico knock-downs in {line}, strongest predicted effect first "
                               "(confidence: agreement of the gene's responses in other lines)"))
    for col in ("rank", "gene", "status", "effect", "confidence", "top up", "top down"):
        table.add_column(col, justify="right" if col in ("rank", "effect", "confidence") else "left")
    for r in result.effects.itertuples():
        table.add_row(str(r.rank), escape(r.gene), r.status, f"{r.effect:.3g}",
                      "-" if r.confidence != r.confidence else f"{r.confidence:.2f}", escape(r.top_up),
                      escape(r.top_down))
    con.print(table)
    typer.echo(str(out))
