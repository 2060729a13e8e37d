"""``ptrag genes build``: annotation -> texts -> embeddings -> table with provenance."""

from __future__ import annotations

import datetime as _dt
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import ConfigError, DataError
from .annotation import GeneSelection, builtin_genes, load_gene_facts, read_gene_list, unambiguous_aliases
from .compress import Compressed, parse_spec
from .compress import compress as compress_table
from .encoder import DEFAULT_MODEL, TextEncoder
from .sources import AnnotationSources
from .tables import check_output, write_table
from .text import TextRecipe, compose_texts

FORMAT = "ptrag-gene-embeddings/1"


@dataclass
class BuildResult:
    path: Path
    genes: int
    dim: int
    selection: GeneSelection
    text_stats: dict
    seconds: dict[str, float] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


def requested_genes(spec: str | None) -> list[str] | None:
    """``None`` (all genes of the chosen types), ``builtin``, or a file of symbols."""
    if spec is None:
        return None
    if spec == "builtin":
        return builtin_genes()
    return read_gene_list(Path(spec))


def table_aliases(sources: AnnotationSources, selection: GeneSelection) -> dict[str, str]:
    """Unambiguous aliases (annotation.unambiguous_aliases) of the table's genes -> their table names;
    an alias that is itself a table name is left out (the name wins)."""
    name_of = {f.official_symbol: f.symbol for f in selection.facts}
    taken = {f.symbol.upper() for f in selection.facts}
    return {alias: name_of[symbol] for alias, symbol in unambiguous_aliases(sources.orgdb).items()
            if symbol in name_of and alias.upper() not in taken}


def _provenance(command: str, sources: AnnotationSources, encoder: TextEncoder, recipe: TextRecipe, stats: dict,
                selection: GeneSelection, genes: str | None, types: str | None, dtype: str, example: str,
                packed: Compressed | None, aliases: dict[str, str] | None) -> dict:
    """What made the table: inputs with checksums, model, recipe, genes, compression, aliases."""
    out = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "ptrag_version": __version__,
        "python": platform.python_version(),
        "sources": sources.provenance(),
        "model": encoder.provenance(),
        "text_recipe": recipe.describe(),
        "text_stats": stats,
        "genes": {
            "types": types,
            "requested": genes,
            "n": len(selection.facts),
            "not_found": selection.not_found,
            "resolved_by_alias": selection.by_alias,
            "duplicate_symbols_merged": selection.duplicate_symbols,
        },
        "dtype": dtype if packed is None else "int8 codes (compression)",
        "example_text": example,
    }
    if packed is not None:
        out["compression"] = packed.provenance
    if aliases is not None:
        out["aliases"] = {"n": len(aliases), "rule": "org.Hs.eg.db aliases that name exactly one gene (of any type) "
                          "and are no gene's official symbol, case-insensitively; an alias that is a table name is "
                          "left out"}
    return out


def build_gene_embeddings(out: Path, sources: AnnotationSources, *, types: str = "protein-coding",
                          genes: str | None = None, model: str = DEFAULT_MODEL, batch_size: int = 32,
                          threads: int | None = None, dtype: str = "float32", command: str = "",
                          recipe: TextRecipe | None = None, compress: str | None = None, aliases: bool = False,
                          on_start: Callable[[int], None] | None = None,
                          progress: Callable[[int], None] | None = None) -> BuildResult:
    """Build and write the table. ``on_start(n)`` announces n texts; ``progress(k)`` follows each batch.
    ``compress`` (``pca:D``) stores D principal components as int8 (compress.py); ``aliases`` stores
    the genes' unambiguous aliases so a screen's old symbols find them (.npz only, both)."""
    t0 = time.perf_counter()
    dims = parse_spec(compress)
    if dims is not None and dtype != "float32":
        raise ConfigError(f"--dtype {dtype} with --compress {compress}: a compressed table stores int8 codes; "
                          "leave out --dtype")
    check_output(Path(out), dtype, "--compress or --aliases" if dims is not None or aliases else None)
    recipe = recipe or TextRecipe()
    wanted = requested_genes(genes)
    selection = load_gene_facts(sources.orgdb, sources.godb, types=types, genes=wanted)
    if not selection.facts:
        raise DataError(f"{sources.orgdb}: none of the requested genes is in the annotation "
                        f"(first: {', '.join(selection.not_found[:5])})")
    t_read = time.perf_counter()
    encoder = TextEncoder(model, threads=threads, batch_size=batch_size, max_tokens=recipe.max_tokens)
    recipe.max_tokens = encoder.max_tokens
    texts, stats = compose_texts(selection.facts, recipe, encoder.count_tokens)
    t_text = time.perf_counter()
    if on_start is not None:
        on_start(len(texts))
    matrix = encoder.encode(texts, progress=progress)
    t_embed = time.perf_counter()
    names = [f.symbol for f in selection.facts]
    packed = compress_table(matrix, dims) if dims is not None else None
    other_names = table_aliases(sources, selection) if aliases else None
    t_compress = time.perf_counter()
    seconds = {"read": t_read - t0, "text": t_text - t_read, "embed": t_embed - t_text,
               "compress": t_compress - t_embed}
    provenance = _provenance(command, sources, encoder, recipe, stats, selection, genes,
                             types if wanted is None else None, dtype, texts[0], packed, other_names)
    provenance["build"] = {"seconds_before_writing": {k: round(v, 1) for k, v in seconds.items()},
                           "threads": encoder.threads, "machine": platform.machine()}
    write_table(Path(out), names, matrix, provenance, dtype=dtype,
                compressed=packed.arrays if packed is not None else None, aliases=other_names)
    t_write = time.perf_counter()
    seconds.update(write=t_write - t_compress, total=t_write - t0)
    return BuildResult(Path(out), len(names), matrix.shape[1], selection, stats,
                       {k: round(v, 2) for k, v in seconds.items()}, provenance)
