"""GenePT-style gene embeddings built offline: annotation text per gene, embedded by a local text model.

Pipeline: ``sources`` finds (or fetches) Bioconductor's SQLite annotation files, ``annotation``
reads one fact record per gene, ``text`` writes one description per gene within the model's token
window, ``encoder`` embeds the texts, ``tables`` writes ``.npz`` / GenePT-style ``.pkl`` with
provenance, and ``build`` ties them together for ``ptrag genes build``.
"""

from .annotation import GeneFacts, GeneSelection, load_gene_facts
from .build import BuildResult, build_gene_embeddings
from .encoder import DEFAULT_MODEL, MissingExtraError, TextEncoder
from .sources import AnnotationSources, locate_sources
from .tables import read_table, write_table
from .text import TextRecipe, compose_texts

__all__ = [
    "AnnotationSources", "BuildResult", "DEFAULT_MODEL", "GeneFacts", "GeneSelection", "MissingExtraError",
    "TextEncoder", "TextRecipe", "build_gene_embeddings", "compose_texts", "load_gene_facts",
    "locate_sources", "read_table", "write_table",
]
