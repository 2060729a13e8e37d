"""The text recipe: one description per gene, most informative GO terms first, within the token window.

GenePT embedded NCBI gene summaries; offline we write the same kind of text from structured
annotation: symbol, full name, cytogenetic band, a few aliases, then GO terms per ontology. Terms
are ranked so the informative ones survive the cap: roots and near-empty terms ("protein binding")
are dropped, experimental evidence beats curated/phylogenetic, which beats electronic (IEA), and
among equals rarer (more specific) terms come first; very common terms ("nucleus", "cytosol")
go last whatever their evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .annotation import Annotation, GeneFacts

#: Evidence tiers (lower is better). ND ("no biological data") is dropped.
EXPERIMENTAL = frozenset({"EXP", "IDA", "IPI", "IMP", "IGI", "IEP", "HTP", "HDA", "HMP", "HGI", "HEP"})
CURATED = frozenset({"IBA", "IBD", "IKR", "IRD", "ISS", "ISO", "ISA", "ISM", "IGC", "RCA", "TAS", "IC", "NAS"})
ELECTRONIC = frozenset({"IEA"})
DROPPED_EVIDENCE = frozenset({"ND"})

#: Roots and terms that say almost nothing about a gene.
UNINFORMATIVE = frozenset({
    "GO:0008150",  # biological_process
    "GO:0003674",  # molecular_function
    "GO:0005575",  # cellular_component
    "GO:0005515",  # protein binding
    "GO:0005488",  # binding
    "GO:0042802",  # identical protein binding
})
UNINFORMATIVE_NAMES = frozenset({"biological_process", "molecular_function", "cellular_component",
                                 "protein binding", "binding", "identical protein binding"})

LABELS = {"MF": "Molecular function", "BP": "Biological process", "CC": "Cellular component"}

TokenCounter = Callable[[list[str]], list[int]]


def approximate_token_counts(texts: list[str]) -> list[int]:
    """Words and punctuation marks: a lower bound of WordPiece's count (used without a tokenizer)."""
    return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]


@dataclass
class TextRecipe:
    """Parameters of the description; recorded in the output's provenance."""

    max_tokens: int = 256  # the model's window, [CLS] and [SEP] included
    max_aliases: int = 3
    max_terms: dict[str, int] = field(default_factory=lambda: {"MF": 6, "BP": 10, "CC": 6})
    common_term_genes: int = 1000  # terms annotated to more genes than this are ranked last
    order: tuple[str, ...] = ("MF", "BP", "CC")

    def describe(self) -> dict:
        out = asdict(self)
        out["order"] = list(self.order)
        out["template"] = ("{symbol}: {full name}. Cytogenetic location: {band}. Also known as: {aliases}. "
                           "Molecular function: {terms}. Biological process: {terms}. Cellular component: {terms}.")
        out["ranking"] = ("drop ND evidence and uninformative terms " + ", ".join(sorted(UNINFORMATIVE_NAMES))
                          + "; rank by (annotated to > common_term_genes genes, evidence tier "
                          "experimental < curated < IEA, genes annotated with the term, term); cap per "
                          "ontology; then drop the lowest-ranked term of the longest section until the "
                          "text fits max_tokens")
        return out


def evidence_tier(codes: tuple[str, ...]) -> int | None:
    """Best tier among a term's evidence codes: 0 experimental, 1 curated, 2 electronic, None dropped."""
    tiers = [0 if c in EXPERIMENTAL else 1 if c in CURATED else 2 if c in ELECTRONIC else 3
             for c in codes if c not in DROPPED_EVIDENCE]
    return min(tiers) if tiers else None


def rank_terms(annotations: list[Annotation], recipe: TextRecipe) -> dict[str, list[str]]:
    """Ranked, filtered, capped term names per ontology."""
    ranked: dict[str, list[tuple]] = {o: [] for o in recipe.order}
    for a in annotations:
        if a.go_id in UNINFORMATIVE or a.term in UNINFORMATIVE_NAMES or a.ontology not in ranked:
            continue
        tier = evidence_tier(a.evidence)
        if tier is None:
            continue
        ranked[a.ontology].append((a.frequency > recipe.common_term_genes, tier, a.frequency, a.term))
    out = {}
    for ont, items in ranked.items():
        names = list(dict.fromkeys(t[-1] for t in sorted(items)))
        out[ont] = names[: recipe.max_terms.get(ont, len(names))]
    return out


def _header(facts: GeneFacts, recipe: TextRecipe) -> str:
    parts = [f"{facts.symbol}: {facts.name}."]
    if facts.official_symbol and facts.official_symbol.upper() != facts.symbol.upper():
        parts.append(f"Official symbol: {facts.official_symbol}.")
    if facts.gene_type and facts.gene_type != "protein-coding":
        parts.append(f"Gene type: {facts.gene_type}.")
    if facts.location:
        parts.append(f"Cytogenetic location: {facts.location}.")
    aliases = [a for a in facts.aliases if a.upper() != facts.symbol.upper()][: recipe.max_aliases]
    if aliases:
        parts.append(f"Also known as: {', '.join(aliases)}.")
    return " ".join(parts)


def _render(header: str, sections: dict[str, list[str]], recipe: TextRecipe) -> str:
    parts = [header]
    for ont in recipe.order:
        if sections.get(ont):
            parts.append(f"{LABELS[ont]}: {', '.join(sections[ont])}.")
    return " ".join(parts)


def compose_texts(facts: list[GeneFacts], recipe: TextRecipe | None = None,
                  count_tokens: TokenCounter = approximate_token_counts) -> tuple[list[str], dict]:
    """One text per gene that fits ``recipe.max_tokens`` by ``count_tokens`` (which excludes specials).

    Returns the texts and figures for the provenance (terms kept/dropped, token lengths).
    """
    recipe = recipe or TextRecipe()
    budget = recipe.max_tokens - 2  # [CLS] ... [SEP]
    headers = [_header(f, recipe) for f in facts]
    sections = [rank_terms(f.go, recipe) for f in facts]
    # estimate from piece lengths (each term costs its tokens + one separator), trim, then verify exactly
    pieces = sorted({t for s in sections for terms in s.values() for t in terms}
                    | {LABELS[o] + ":" for o in recipe.order})
    cost = dict(zip(pieces, count_tokens(pieces), strict=False))
    head_cost = count_tokens(headers) if headers else []
    dropped = 0
    for k, sec in enumerate(sections):
        total = head_cost[k] + sum(cost[LABELS[o] + ":"] + sum(cost[t] + 1 for t in sec[o]) for o in sec if sec[o])
        while total > budget and any(sec.values()):
            total -= _drop_one(sec, cost)
            dropped += 1
    texts = [_render(h, s, recipe) for h, s in zip(headers, sections, strict=False)]
    todo = list(range(len(texts)))
    while todo:  # the estimate can be off by a token or two where pieces merge: check the real count
        lengths = count_tokens([texts[k] for k in todo])
        over = [k for k, n in zip(todo, lengths, strict=False) if n > budget and any(sections[k].values())]
        for k in over:
            _drop_one(sections[k], cost)
            dropped += 1
            texts[k] = _render(headers[k], sections[k], recipe)
        todo = over
    lengths = count_tokens(texts) if texts else []
    stats = {
        "genes": len(texts),
        "genes_without_go_terms": sum(1 for s in sections if not any(s.values())),
        "terms_kept": sum(len(t) for s in sections for t in s.values()),
        "terms_dropped_for_length": dropped,
        "tokens_max": max(lengths, default=0) + 2,
        "tokens_mean": round(sum(lengths) / max(len(lengths), 1) + 2, 1),
        "over_window": sum(1 for n in lengths if n > budget),
    }
    return texts, stats


def _drop_one(sections: dict[str, list[str]], cost: dict[str, int]) -> int:
    """Remove the lowest-ranked term of the longest section; return its estimated token cost."""
    ont = max(sections, key=lambda o: len(sections[o]))
    term = sections[ont].pop()
    saved = cost.get(term, 1) + 1
    if not sections[ont]:
        saved += cost.get(LABELS[ont] + ":", 2)
    return saved
