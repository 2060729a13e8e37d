"""Gene sets (complexes, pathways, GO terms) in GMT files: the co-annotation that tells a reader
whether retrieved neighbours share the query gene's biology on real data.

GMT is the format MSigDB, Enrichr and CORUM exports use: one set per line, tab-separated
``name<TAB>description<TAB>gene<TAB>gene...``. Symbols match case-insensitively.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..files import write_text


@dataclass
class GeneSets:
    """Named gene sets plus the reverse index gene -> set names."""

    sets: dict[str, frozenset[str]]
    _of_gene: dict[str, frozenset[str]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, set[str]] = defaultdict(set)
        for name, genes in self.sets.items():
            for gene in genes:
                index[gene.upper()].add(name)
        self._of_gene = {g: frozenset(s) for g, s in index.items()}

    @classmethod
    def from_mapping(cls, sets: Mapping[str, Iterable[str]]) -> GeneSets:
        return cls({str(k): frozenset(str(g) for g in v) for k, v in sets.items()})

    def of(self, gene: str) -> frozenset[str]:
        return self._of_gene.get(str(gene).upper(), frozenset())

    def annotated(self, gene: str) -> bool:
        return bool(self.of(gene))

    def shared(self, a: str, b: str) -> frozenset[str]:
        """The sets holding both genes (empty when they share none)."""
        return self.of(a) & self.of(b)

    def __len__(self) -> int:
        return len(self.sets)

    @property
    def genes(self) -> int:
        return len(self._of_gene)


def read_gmt(path: str | Path) -> GeneSets:
    """Read a GMT file; malformed lines and empty files fail with the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: gene-set file not found (expected GMT: name<TAB>description<TAB>genes...; "
                        "`ptrag genes sets -o FILE.gmt` writes one from GO)")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (expected GMT lines name<TAB>description<TAB>genes...)") from None
    sets: dict[str, frozenset[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        genes = [g.strip() for g in fields[2:] if g.strip()]
        if len(fields) < 3 or not fields[0].strip() or not genes:
            raise DataError(f"{path}:{number}: not a GMT line (expected name<TAB>description<TAB>gene<TAB>...; "
                            "tabs, not spaces)")
        name = fields[0].strip()
        if name in sets:
            raise DataError(f"{path}:{number}: gene set {name!r} appears twice; set names must be unique")
        sets[name] = frozenset(genes)
    if not sets:
        raise DataError(f"{path}: no gene sets in the file (expected GMT lines name<TAB>description<TAB>genes...)")
    return GeneSets(sets)


def write_gmt(path: str | Path, sets: Mapping[str, Iterable[str]],
              descriptions: Mapping[str, str] | None = None) -> Path:
    """Write sets as GMT (genes sorted, so files diff cleanly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptions = descriptions or {}
    lines = []
    for name, genes in sets.items():
        text = descriptions.get(name, "").replace("\t", " ").replace("\n", " ")
        lines.append("\t".join([name, text, *sorted(genes)]) + "\n")
    return write_text(path, "".join(lines))  # whole or not at all


def load_gene_sets(path: str | Path | None, perturbations: Iterable[str],
                   log: Callable[[str], None] = lambda message: None) -> GeneSets | None:
    """Read ``data.gene_sets`` (before training, so a bad file fails early) and log its coverage."""
    if not path:
        return None
    sets = read_gmt(path)
    perts = sorted(set(map(str, perturbations)))
    missing = [p for p in perts if not sets.annotated(p)]
    log(f"gene sets: {path}: {len(sets):,} sets over {sets.genes:,} genes; {len(perts) - len(missing):,} of "
        f"{len(perts):,} perturbed genes annotated"
        + (f" (not: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})" if missing else ""))
    return sets
