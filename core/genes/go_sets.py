"""GO gene sets from the same Bioconductor SQLite files, for co-annotation on real screens.

Why GO cellular component by default: its small terms are complexes (mediator, proteasome,
ribosome subunits), the relation that makes one knock-down's response predict another's. Direct
annotations only, roots and binding terms dropped, and size bounds remove both singletons (no
pair to share) and catch-alls ("nucleus": thousands of genes, shared by chance).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..errors import ConfigError
from .annotation import _GO_SCHEMA, _ORG_SCHEMA, ONTOLOGIES, _connect
from .sources import AnnotationSources
from .text import DROPPED_EVIDENCE, EXPERIMENTAL, UNINFORMATIVE

EVIDENCE = ("experimental", "any")


@dataclass
class GoGeneSets:
    sets: dict[str, set[str]]  # GO id -> gene symbols
    terms: dict[str, str]  # GO id -> "term (ontology)"
    too_small: int
    too_large: int


def go_gene_sets(sources: AnnotationSources, ontology: str = "CC", *, min_size: int = 3, max_size: int = 200,
                 evidence: str = "any") -> GoGeneSets:
    """GO id -> symbols directly annotated with it, for terms with ``min_size..max_size`` genes."""
    ontologies = ONTOLOGIES if ontology.upper() == "ALL" else (ontology.upper(),)
    if any(o not in ONTOLOGIES for o in ontologies):
        raise ConfigError(f"--ontology {ontology!r}: choose CC, BP, MF or all")
    if evidence not in EVIDENCE:
        raise ConfigError(f"--evidence {evidence!r}: choose {' or '.join(EVIDENCE)}")
    if min_size < 2 or max_size < min_size:
        raise ConfigError(f"--min-size {min_size} / --max-size {max_size}: need 2 <= min-size <= max-size")
    org = _connect(sources.orgdb, _ORG_SCHEMA, "Bioconductor's org.Hs.eg.sqlite (package org.Hs.eg.db)")
    go = _connect(sources.godb, _GO_SCHEMA, "Bioconductor's GO.sqlite (package GO.db)")
    members: dict[str, set[str]] = defaultdict(set)
    with org, go:
        names = {gid: f"{term} ({ont})" for gid, term, ont in go.execute("SELECT go_id, term, ontology FROM go_term")}
        for ont in ontologies:
            rows = org.execute(f"SELECT i.symbol, g.go_id, g.evidence FROM go_{ont.lower()} g "
                               "JOIN gene_info i ON g._id = i._id")
            for symbol, gid, code in rows:
                if gid in UNINFORMATIVE or code in DROPPED_EVIDENCE:
                    continue
                if evidence == "experimental" and code not in EXPERIMENTAL:
                    continue
                members[gid].add(symbol)
    sizes = {gid: len(genes) for gid, genes in members.items()}
    kept = {gid: genes for gid, genes in sorted(members.items()) if min_size <= len(genes) <= max_size}
    return GoGeneSets(kept, {gid: names.get(gid, gid) for gid in kept},
                      sum(s < min_size for s in sizes.values()), sum(s > max_size for s in sizes.values()))
