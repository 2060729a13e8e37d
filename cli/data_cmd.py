"""`ptrag data synth|inspect|split`: make, check and split a screen (.h5ad)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pydantic import ValidationError

from ptrag.core.config import DataConfig
from ptrag.core.errors import ConfigError

from .common import console, escape, friendly_errors, write_output

app = typer.Typer(name="data", help="Make, inspect and split perturbation screens (.h5ad).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _cfg(path: Path | None, **fields) -> DataConfig:
    """The options as a DataConfig; a bad value fails in one line naming its option."""
    try:
        return DataConfig(path=str(path) if path else None, **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "option"
        raise ConfigError(f"{option}: {first['msg']} (got {first.get('input')!r})") from None


@app.command("synth")
@friendly_errors
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Output .h5ad file."),
    preset: str = typer.Option("demo", "--preset", help="tiny | demo | screen | large (docs/data.md)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generative model (as data.seed in a run)."),
) -> None:
    """Write the built-in Replogle-like screen (real schema, ground truth in uns['ptrag_synth'])."""
    from ptrag.core.data.synth import synth_screen

    started = time.perf_counter()
    adata = synth_screen(preset, seed)
    write_output(out, adata.write_h5ad)
    console().print(f"built-in {escape(preset)} dataset (data seed {seed}): {adata.n_obs:,} cells x {adata.obsm['X_hvg'].shape[1]} genes, "
                    f"{adata.obs['gene'].nunique() - 1} perturbed genes, {adata.obs['cell_line'].nunique()} cell lines "
                    f"in {time.perf_counter() - started:.1f} s")
    typer.echo(str(out))


@app.command("inspect")
@friendly_errors
def inspect(
    file: Path = typer.Argument(..., help="An .h5ad screen."),
    embed_key: Optional[str] = typer.Option(None, "--embed-key", help="obsm key or X (data.embed_key)."),
    pert_col: Optional[str] = typer.Option(None, "--pert-col"),
    context_col: Optional[str] = typer.Option(None, "--context-col"),
    batch_col: Optional[str] = typer.Option(None, "--batch-col"),
    control_label: Optional[str] = typer.Option(None, "--control-label"),
    min_cells: Optional[int] = typer.Option(None, "--min-cells"),
    gene_embeddings: Optional[str] = typer.Option(None, "--gene-embeddings", help="Table to check coverage against; default: the built-in one."),
) -> None:
    """Validate a screen and summarise it: cells, genes, perturbations per cell line, controls,
    expression source, value range, sparsity and gene-embedding coverage."""
    from ptrag.core.data.embeddings import load_gene_embeddings
    from ptrag.core.data.loading import read_screen

    cfg = _cfg(file, embed_key=embed_key, pert_col=pert_col, context_col=context_col, batch_col=batch_col,
               control_label=control_label, min_cells=min_cells)
    started = time.perf_counter()
    data = read_screen(file, cfg)
    seconds = time.perf_counter() - started
    info = data.info
    con = console()
    con.print(f"[bold]{escape(file)}[/]  read in {seconds:.1f} s")
    con.print(f"  cells {len(data.obs):,} (input {info['input_cells']:,}; dropped {info['dropped_cells']:,} cells in "
              f"{info['dropped_groups']} group(s) under {cfg.min_cells} cells)")
    con.print(f"  genes {data.n_features:,} from {escape(info['expression'])} ({info['storage']}, "
              f"{info['stored_dtype']}); var has {info['n_vars']:,}")
    con.print(f"  values {info['value_min']:.3g} .. {info['value_max']:.3g}; zeros {100 * info['zeros']:.1f}%; "
              f"median library size {info.get('median_library_size', float('nan')):,.4g}")
    if info.get("expression_problem"):  # `ptrag run` and `ptrag predict` refuse such a matrix
        con.print(f"  [yellow]warning:[/] {escape(info['expression_problem'])}", highlight=False)
    con.print(f"  perturbations {len(data.perturbations):,} genes, {len(data.groups):,} (gene, cell line) groups; "
              f"control label {escape(repr(data.control_label))}")
    table = Table(title="per cell line")
    for col in ("cell line", "cells", "controls", "perturbations", "batches", "median cells/group"):
        table.add_column(col, justify="left" if col == "cell line" else "right")
    for row in data.summary().itertuples(index=False):
        sizes = [data.n_cells_of(p, c) for p, c in data.groups if c == row.context]
        median = f"{sorted(sizes)[len(sizes) // 2]}" if sizes else "-"
        table.add_row(escape(row.context), f"{row.cells:,}", f"{row.controls:,}", f"{row.perturbations:,}",
                      f"{row.batches}", median)
    con.print(table)
    emb = load_gene_embeddings(gene_embeddings, data.perturbations)
    have = sum(emb.has(p) for p in data.perturbations)
    con.print(f"  gene embeddings: {escape(emb.source)} (dim {emb.dim}): {have}/{len(data.perturbations)} perturbed "
              "genes covered")
    message = emb.coverage_message(data.perturbations, "drop")
    if message:
        con.print(f"  {message}", markup=False)
    if data.truth:
        con.print(f"  built-in ground truth: preset {escape(data.truth.get('preset'))}, seed {data.truth.get('seed')}, "
                  f"{len(data.truth.get('line_specific_modules', {}))} line-specific module(s)")


@app.command("split")
@friendly_errors
def split(
    file: Path = typer.Argument(..., help="An .h5ad screen."),
    out: Path = typer.Option(..., "--out", "-o", help="Output split (.toml, STATE format)."),
    holdout: Optional[str] = typer.Option(None, "--holdout", help="Cell line whose perturbations are held out; default: the one with most perturbations (as in `ptrag run`)."),
    seed: int = typer.Option(0, "--seed"),
    test_fraction: float = typer.Option(0.3, "--test-fraction", help="Share of the held-out line's perturbations in test (0 < x < 1)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of the held-out line's perturbations in validation (0 <= x < 1)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset name in the TOML; default: the file's stem."),
    embed_key: Optional[str] = typer.Option(None, "--embed-key"),
    pert_col: Optional[str] = typer.Option(None, "--pert-col"),
    context_col: Optional[str] = typer.Option(None, "--context-col"),
    control_label: Optional[str] = typer.Option(None, "--control-label"),
) -> None:
    """Write a random few-shot split of one cell line as a STATE TOML (reproducible from --seed)."""
    from ptrag.core.checks import warn_zero_shot
    from ptrag.core.data.loading import read_screen
    from ptrag.core.data.split import resolve_split, split_to_toml

    if out.suffix.lower() != ".toml":
        raise ConfigError(f"-o {out}: write the split as .toml (STATE format)")
    cfg = _cfg(file, embed_key=embed_key, pert_col=pert_col, context_col=context_col, control_label=control_label,
               test_fraction=test_fraction, val_fraction=val_fraction, holdout_context=holdout)
    data = read_screen(file, cfg)
    result = resolve_split(cfg, data, seed)  # what `ptrag run --data FILE --seed SEED` splits
    name = dataset or file.stem.replace(".", "_")
    text = split_to_toml(result, name, str(file.resolve().parent))
    write_output(out, lambda tmp: tmp.write_text(text))
    con = console()
    con.print(result.description, markup=False)
    warn_zero_shot(result, lambda message: con.print(message, markup=False))
    typer.echo(str(out))
