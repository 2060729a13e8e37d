"""`ptrag data synth|inspect|split`: make, check and split a screen (.h5ad)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from ptrag.core import api

from .common import console, escape, friendly_errors, write_output

#: the column options' help, with their defaults, as `ptrag run` shows them
_HELP = {name: api.BY_NAME[name].described for name in ("embed_key", "pert_col", "context_col", "batch_col",
                                                          "control_label")}

CONTROL_LABELS_HELP = ("More labels of control cells, counted as --control-label's (data.control_labels; "
                       "repeatable).")
ALLOW_HELP = ("Labels that look like controls (NT, control, ...) but are real perturbations "
              "(data.allow_control_like; repeatable).")

app = typer.Typer(name="data", help="Make, inspect and split perturbation screens (.h5ad).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command("synth")
@friendly_errors
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Output .h5ad file."),
    preset: str = typer.Option("demo", "--preset", help="tiny | demo | screen | large (docs/data.md)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generative model (as data.seed in a run), 0 to 2**32 - 1."),
    family: str = typer.Option("v3", "--family", help="Simulator family: v3 or grn (as data.synth_family in a run; "
                               "docs/data.md)."),
) -> None:
    """Write a built-in Replogle-like screen (real schema, ground truth in uns['ptrag_synth'])."""
    if out.suffix.lower() != ".h5ad":
        raise api.ConfigError(f"-o {out}: write the screen as .h5ad")
    started = time.perf_counter()
    adata = api.data.synth(preset, seed, family)
    write_output(out, api.with_room(adata.write_h5ad, api.h5ad_bytes(adata)))  # HDF5 crashes on a full disk
    console().print(f"built-in {escape(family)} {escape(preset)} dataset (data seed {seed}): "
                    f"{adata.n_obs:,} cells x {adata.obsm['X_hvg'].shape[1]} genes, "
                    f"{adata.obs['gene'].nunique() - 1} perturbed genes, {adata.obs['cell_line'].nunique()} cell lines "
                    f"in {time.perf_counter() - started:.1f} s")
    typer.echo(str(out))


@app.command("prepare")
@friendly_errors
def prepare(
    file: Path = typer.Argument(..., help="An .h5ad screen of raw counts (in X or a layer)."),
    out: Path = typer.Option(..., "--out", "-o", help="The prepared .h5ad to write (a new file)."),
    counts_layer: str | None = typer.Option(None, "--counts-layer", help="Layer holding the raw counts. "
                                            "Default: X."),
    pert_col: str = typer.Option("gene", "--pert-col", help=_HELP["pert_col"]),
    target_sum: float = typer.Option(10_000, "--target-sum", help="Counts per cell after scaling, before log1p."),
    n_top_genes: int | None = typer.Option(None, "--n-top-genes", help="Keep the N most variable genes (plus the "
                                           "perturbed genes measured). Default: every gene."),
) -> None:
    """Log-normalise a raw-count screen for ptrag: X = log1p(counts scaled to --target-sum per
    cell), the counts kept in layers['counts'], every cell and obs column kept. Then: ptrag run
    --data OUT --embed-key X (docs/own-data.md)."""
    if out.suffix.lower() != ".h5ad":
        raise api.ConfigError(f"-o {out}: write the prepared screen as .h5ad")
    api.require_new_file(out)
    started = time.perf_counter()
    done = api.data.prepare(file, pert_col=pert_col, counts_layer=counts_layer, target_sum=target_sum,
                            n_top_genes=n_top_genes)
    write_output(out, api.with_room(done.adata.write_h5ad, api.h5ad_bytes(done.adata)))
    console().print(f"prepared {escape(str(file))}: {done.adata.n_obs:,} cells, {done.genes_kept:,} of "
                    f"{done.genes_in:,} genes ({done.targets_kept} perturbed genes among them), counts from "
                    f"{escape(done.counts_from)}, log1p of counts per {target_sum:,.0f}, in "
                    f"{time.perf_counter() - started:.1f} s; next: ptrag data inspect {escape(str(out))} --embed-key X")
    typer.echo(str(out))


@app.command("inspect")
@friendly_errors
def inspect(
    file: Path = typer.Argument(..., help="An .h5ad screen."),
    embed_key: str | None = typer.Option(None, "--embed-key", help=_HELP["embed_key"]),
    pert_col: str | None = typer.Option(None, "--pert-col", help=_HELP["pert_col"]),
    context_col: str | None = typer.Option(None, "--context-col", help=_HELP["context_col"]),
    batch_col: str | None = typer.Option(None, "--batch-col", help=_HELP["batch_col"]),
    control_label: str | None = typer.Option(None, "--control-label", help=_HELP["control_label"]),
    min_cells: int | None = typer.Option(None, "--min-cells", help="Perturbation groups with fewer cells are left "
                                         "out (data.min_cells). Default: 10."),
    control_labels: list[str] | None = typer.Option(None, "--control-labels", help=CONTROL_LABELS_HELP),
    allow_control_like: list[str] | None = typer.Option(None, "--allow-control-like", help=ALLOW_HELP),
    gene_embeddings: str | None = typer.Option(None, "--gene-embeddings",
                                               help="Table to check coverage against: a file, builtin:human or "
                                                    "builtin:demo; default auto (the demo table when it covers "
                                                    "every perturbed gene, else builtin:human)."),
    duplicate_embeddings: str | None = typer.Option(None, "--duplicate-embeddings",
                                                    help="A gene listed twice in the table: error (default) or "
                                                         "first (data.duplicate_embeddings)."),
    modality_col: str | None = typer.Option(None, "--modality-col",
                                            help="obs column of each perturbation's modality, e.g. "
                                                 "perturbation_type (data.modality_col)."),
) -> None:
    """Validate a screen and summarise it: cells, genes, perturbations per cell line, controls,
    expression source, value range, sparsity and gene-embedding coverage. What `ptrag run` would
    refuse in the labels or values (control-like labels, raw counts) is printed as a warning."""
    found = api.data.inspect(file, gene_embeddings=gene_embeddings, embed_key=embed_key, pert_col=pert_col,
                             context_col=context_col, batch_col=batch_col, control_label=control_label,
                             min_cells=min_cells, control_labels=control_labels or None,
                             allow_control_like=allow_control_like or None, duplicate_embeddings=duplicate_embeddings,
                             modality_col=modality_col)
    data, cfg, info = found.data, found.config, found.data.info
    con = console()
    con.print(f"[bold]{escape(file)}[/]  read in {found.seconds:.1f} s")
    combos = f"{info['combination_groups']} combinatorial group(s) and " if info.get("combination_groups") else ""
    con.print(f"  cells {len(data.obs):,} (input {info['input_cells']:,}; dropped {info['dropped_cells']:,} cells in "
              f"{combos}{info['dropped_groups']} group(s) under {cfg.min_cells} cells)")
    con.print(f"  genes {data.n_features:,} from {escape(info['expression'])} ({info['storage']}, "
              f"{info['stored_dtype']}); var has {info['n_vars']:,}")
    con.print(f"  values {info['value_min']:.3g} .. {info['value_max']:.3g}; zeros {100 * info['zeros']:.1f}%; "
              f"median library size {info.get('median_library_size', float('nan')):,.4g}")
    if info.get("expression_problem"):  # `ptrag run` and `ptrag predict` refuse such a matrix
        con.print(f"  [yellow]warning:[/] {escape(info['expression_problem'])}", highlight=False)
    con.print(f"  perturbations {len(data.perturbations):,} genes, {len(data.groups):,} (gene, cell line) groups; "
              f"control label {escape(repr(data.control_label))}")
    if found.control_like:  # `ptrag run`, `predict` and `data split` stop on these
        con.print(f"  [yellow]warning:[/] {escape(found.control_like)}", highlight=False)
    table = Table(title="per cell line")
    columns = ("cell line", "cells", "controls", "perturbations", "batches", "median cells/group")
    for col in (*columns, *(("modality",) if data.modality else ())):
        table.add_column(col, justify="left" if col in ("cell line", "modality") else "right")
    for row in data.summary().itertuples(index=False):
        sizes = [data.n_cells_of(p, c) for p, c in data.groups if c == row.context]
        median = f"{sorted(sizes)[len(sizes) // 2]}" if sizes else "-"
        modality = (escape(data.modality.get(row.context, "-")),) if data.modality else ()
        table.add_row(escape(row.context), f"{row.cells:,}", f"{row.controls:,}", f"{row.perturbations:,}",
                      f"{row.batches}", median, *modality)
    con.print(table)
    emb = found.embeddings
    con.print(f"  gene embeddings: {escape(emb.name)} (dim {emb.dim}): {found.covered}/{len(data.perturbations)} "
              "perturbed genes covered")
    if emb.chosen:
        con.print(f"  {emb.chosen}", markup=False)
    message = found.coverage_note
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
    holdout: str | None = typer.Option(None, "--holdout",
                                       help="Cell line whose perturbations are held out; default: the one with most "
                                            "perturbations (as in `ptrag run`)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (as `ptrag run --seed`), 0 to 2**32 - 1."),
    test_fraction: float = typer.Option(0.3, "--test-fraction",
                                        help="Share of the held-out line's perturbations in test (0 < x < 1)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction",
                                       help="Share of the held-out line's perturbations in validation (0 <= x < 1)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name in the TOML; default: the file's stem."),
    embed_key: str | None = typer.Option(None, "--embed-key", help=_HELP["embed_key"]),
    pert_col: str | None = typer.Option(None, "--pert-col", help=_HELP["pert_col"]),
    context_col: str | None = typer.Option(None, "--context-col", help=_HELP["context_col"]),
    control_label: str | None = typer.Option(None, "--control-label", help=_HELP["control_label"]),
    control_labels: list[str] | None = typer.Option(None, "--control-labels", help=CONTROL_LABELS_HELP),
    allow_control_like: list[str] | None = typer.Option(None, "--allow-control-like", help=ALLOW_HELP),
) -> None:
    """Write a random few-shot split of one cell line as a STATE TOML (reproducible from --seed)."""
    if out.suffix.lower() != ".toml":
        raise api.ConfigError(f"-o {out}: write the split as .toml (STATE format)")
    notes: list[str] = []
    written = api.data.split(file, seed=seed, dataset=dataset, log=notes.append, embed_key=embed_key,
                             pert_col=pert_col, context_col=context_col, control_label=control_label,
                             test_fraction=test_fraction, val_fraction=val_fraction, holdout_context=holdout,
                             control_labels=control_labels or None, allow_control_like=allow_control_like or None)
    write_output(out, lambda tmp: tmp.write_text(written.toml))
    con = console()
    con.print(written.split.description, markup=False)
    for note in notes:
        con.print(note, markup=False)
    typer.echo(str(out))
