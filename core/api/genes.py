"""Gene-embedding tables and GO gene sets made offline (``ptrag genes build|sets``)."""

from __future__ import annotations

from ..data.gene_sets import write_gmt
from ..genes import DEFAULT_MODEL, build_gene_embeddings, locate_sources
from ..genes.go_sets import go_gene_sets

__all__ = ["DEFAULT_MODEL", "build_gene_embeddings", "locate_sources", "go_gene_sets", "write_gmt"]
