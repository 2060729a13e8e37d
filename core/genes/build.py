"""``ptrag genes build``: annotation -> texts -> embeddings -> table with provenance."""

from __future__ import annotations

import datetime as _dt
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import DataError
from .annotation import GeneSelection, builtin_genes, load_gene_facts, read_gene_list
from .encoder import DEFAULT_MODEL, TextEncoder
from .sources import AnnotationSources
from .tables import write_table
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


def build_gene_embeddings(out: Path, sources: AnnotationSources, *, types: str = "protein-coding",
                          genes: str | None = None, model: str = DEFAULT_MODEL, batch_size: int = 32,
                          threads: int | None = None, dtype: str = "float32", command: str = "",
                          recipe: TextRecipe | None = None,
                          on_start: Callable[[int], None] | None = None,
                          progress: Callable[[int], None] | None = None) -> BuildResult:
    """Build and write the table. ``on_start(n)`` announces n texts; ``progress(k)`` follows each batch."""
    t0 = time.perf_counter()
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
    provenance = {
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
            "types": types if wanted is None else None,
            "requested": genes,
            "n": len(names),
            "not_found": selection.not_found,
            "resolved_by_alias": selection.by_alias,
            "duplicate_symbols_merged": selection.duplicate_symbols,
        },
        "dtype": dtype,
        "example_text": texts[0],
    }
    write_table(Path(out), names, matrix, provenance, dtype=dtype)
    t_write = time.perf_counter()
    seconds = {"read": t_read - t0, "text": t_text - t_read, "embed": t_embed - t_text,
               "write": t_write - t_embed, "total": t_write - t0}
    return BuildResult(Path(out), len(names), matrix.shape[1], selection, stats,
                       {k: round(v, 2) for k, v in seconds.items()}, provenance)
