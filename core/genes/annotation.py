"""One fact record per gene, read from org.Hs.eg.sqlite (genes, names, aliases, GO) and GO.sqlite (terms).

Tables are joined on AnnotationDbi's internal ``_id``. Which genes: protein-coding plus any gene
with a GO annotation (``types="protein-coding"``, ~22.5k), protein-coding genes only
(``"protein-coding-only"``, ~20.6k: the shipped human table), every gene (``"all"``), or an explicit
list resolved by symbol, then by unambiguous alias; what could not be found is reported.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..data.gene_modules import NULL_GENES, all_module_genes
from ..errors import ConfigError, DataError

ONTOLOGIES = ("MF", "BP", "CC")
TYPES = ("protein-coding", "protein-coding-only", "all")

_ORG_SCHEMA = {
    "genes": ("_id", "gene_id"),
    "gene_info": ("_id", "gene_name", "symbol"),
    "genetype": ("_id", "gene_type"),
    "cytogenetic_locations": ("_id", "cytogenetic_location"),
    "alias": ("_id", "alias_symbol"),
    "go_bp": ("_id", "go_id", "evidence"),
    "go_mf": ("_id", "go_id", "evidence"),
    "go_cc": ("_id", "go_id", "evidence"),
}
_GO_SCHEMA = {"go_term": ("go_id", "term", "ontology")}


@dataclass
class Annotation:
    """One GO annotation of a gene: term, ontology, the evidence codes seen, and how many genes share it."""

    go_id: str
    term: str
    ontology: str
    evidence: tuple[str, ...]
    frequency: int  # genes directly annotated with this term in the whole database


@dataclass
class GeneFacts:
    symbol: str  # the name the output table uses (the requested name where one was given)
    entrez_id: str
    name: str
    gene_type: str
    location: str = ""
    aliases: list[str] = field(default_factory=list)
    go: list[Annotation] = field(default_factory=list)
    official_symbol: str = ""


@dataclass
class GeneSelection:
    """What was read and what was asked for but not found (never dropped silently)."""

    facts: list[GeneFacts]
    not_found: list[str] = field(default_factory=list)
    by_alias: dict[str, str] = field(default_factory=dict)  # requested -> official symbol
    duplicate_symbols: list[str] = field(default_factory=list)
    requested: int | None = None


def _connect(path: Path, schema: dict[str, tuple[str, ...]], what: str) -> sqlite3.Connection:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected {what})")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path}: not a readable SQLite file ({exc}); expected {what}") from None
    for table, columns in schema.items():
        if table not in tables:
            raise DataError(f"{path}: table {table!r} is missing; expected {what}")
        have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        lacking = [c for c in columns if c not in have]
        if lacking:
            raise DataError(f"{path}: table {table!r} lacks column(s) {', '.join(lacking)}; expected {what}")
    return con


def read_gene_list(path: Path) -> list[str]:
    """Symbols, one per line (``#`` comments and blank lines ignored; commas/tabs also split)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--genes {path}: file not found (one gene symbol per line, or `builtin`)")
    genes: list[str] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0]
        genes.extend(g for g in re.split(r"[,\t ]+", line.strip()) if g)
    if not genes:
        raise DataError(f"--genes {path}: no gene symbols in the file")
    return list(dict.fromkeys(genes))


def builtin_genes() -> list[str]:
    """The built-in dataset's perturbed genes: every complex/pathway module gene plus the null genes."""
    return list(dict.fromkeys([*all_module_genes(), *NULL_GENES]))


def load_gene_facts(orgdb: Path, godb: Path, types: str = "protein-coding",
                    genes: list[str] | None = None) -> GeneSelection:
    """Fact records for the selected genes, in database order (or in the order of ``genes``)."""
    if types not in TYPES:
        raise ConfigError(f"--types {types!r}: choose one of {', '.join(TYPES)}")
    org = _connect(orgdb, _ORG_SCHEMA, "Bioconductor's org.Hs.eg.sqlite (package org.Hs.eg.db)")
    go = _connect(godb, _GO_SCHEMA, "Bioconductor's GO.sqlite (package GO.db)")
    with org, go:
        info = {i: (entrez, name, symbol) for i, entrez, name, symbol in org.execute(
            "SELECT g._id, g.gene_id, i.gene_name, i.symbol FROM genes g JOIN gene_info i ON g._id = i._id "
            "ORDER BY g._id")}
        gtype = dict(org.execute("SELECT _id, gene_type FROM genetype"))
        loc: dict[int, list[str]] = defaultdict(list)
        for i, band in org.execute("SELECT _id, cytogenetic_location FROM cytogenetic_locations"):
            loc[i].append(band)
        aliases: dict[int, list[str]] = defaultdict(list)
        for i, alias in org.execute("SELECT _id, alias_symbol FROM alias"):
            aliases[i].append(alias)
        terms = {gid: (term, ont) for gid, term, ont in go.execute("SELECT go_id, term, ontology FROM go_term")}
        evidence: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for ont in ONTOLOGIES:
            for i, gid, ev in org.execute(f"SELECT _id, go_id, evidence FROM go_{ont.lower()}"):
                evidence[i][gid].add(ev)
    frequency = Counter(gid for per_gene in evidence.values() for gid in per_gene)

    def facts_of(i: int, symbol: str | None = None) -> GeneFacts:
        entrez, name, official = info[i]
        annotations = []
        for gid, evs in evidence.get(i, {}).items():
            term, ont = terms.get(gid, (None, None))
            if term is None:  # a GO id that GO.db does not know (obsolete): no text to show
                continue
            annotations.append(Annotation(gid, term, ont, tuple(sorted(evs)), frequency[gid]))
        annotations.sort(key=lambda a: a.go_id)
        return GeneFacts(symbol or official, str(entrez), name, gtype.get(i, "unknown"),
                         "; ".join(loc.get(i, [])), [a for a in aliases.get(i, []) if a != official],
                         annotations, official)

    if genes is not None:
        return _select_requested(genes, info, aliases, facts_of)

    chosen = [i for i in info if types == "all" or gtype.get(i) == "protein-coding"
              or (types == "protein-coding" and i in evidence)]
    by_symbol: dict[str, int] = {}
    duplicates = []
    for i in chosen:  # one row per symbol: prefer protein-coding, then the better annotated entry
        symbol = info[i][2]
        j = by_symbol.get(symbol)
        if j is None:
            by_symbol[symbol] = i
            continue
        duplicates.append(symbol)
        rank = lambda k: (gtype.get(k) == "protein-coding", len(evidence.get(k, {})), -k)  # noqa: E731
        if rank(i) > rank(j):
            by_symbol[symbol] = i
    keep = sorted(by_symbol.values())
    return GeneSelection([facts_of(i) for i in keep], duplicate_symbols=sorted(set(duplicates)))


def _select_requested(genes, info, aliases, facts_of) -> GeneSelection:
    by_symbol: dict[str, list[int]] = defaultdict(list)
    for i, (_, _, symbol) in info.items():
        by_symbol[symbol.upper()].append(i)
    by_alias: dict[str, set[int]] = defaultdict(set)
    for i, names in aliases.items():
        for alias in names:
            by_alias[alias.upper()].add(i)
    facts, not_found, via_alias = [], [], {}
    for gene in dict.fromkeys(genes):
        key = gene.upper()
        hits = by_symbol.get(key)
        if hits:
            facts.append(facts_of(min(hits), gene))
            continue
        for candidate in (key, key.replace("-", "")):  # e.g. MT-ND6 is listed as ND6 with alias MTND6
            ids = by_alias.get(candidate, set())
            if len(ids) == 1:
                i = next(iter(ids))
                facts.append(facts_of(i, gene))
                via_alias[gene] = info[i][2]
                break
        else:
            not_found.append(gene)
    return GeneSelection(facts, not_found, via_alias, requested=len(dict.fromkeys(genes)))


def unambiguous_aliases(orgdb: Path) -> dict[str, str]:
    """Alias -> official symbol, for each alias that names exactly one gene and is no gene's official
    symbol (both case-insensitively): a screen's old name (KIAA1804) that cannot mean another gene."""
    org = _connect(orgdb, _ORG_SCHEMA, "Bioconductor's org.Hs.eg.sqlite (package org.Hs.eg.db)")
    with org:
        symbol = dict(org.execute("SELECT _id, symbol FROM gene_info"))
        rows = org.execute("SELECT _id, alias_symbol FROM alias ORDER BY _id, alias_symbol").fetchall()
    official = {s.upper() for s in symbol.values()}
    genes_of: dict[str, set[int]] = defaultdict(set)
    spelling: dict[str, str] = {}
    for i, alias in rows:
        key = alias.upper()
        genes_of[key].add(i)
        spelling.setdefault(key, alias)
    return {spelling[key]: symbol[next(iter(ids))] for key, ids in sorted(genes_of.items())
            if len(ids) == 1 and key not in official and next(iter(ids)) in symbol}
