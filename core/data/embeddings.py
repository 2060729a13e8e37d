"""Gene-embedding tables: symbol -> vector, their file readers, which table a run uses, and the policy for
missing genes.

Formats (chosen by suffix): GenePT's own pickle (dict symbol -> list of floats), ``.npz``
(``names`` [V] str, ``embeddings`` [V,E] -- or the compressed arrays of codec.py --, optional
``provenance`` JSON string and ``alias_names``/``alias_targets``, as written by ``ptrag genes
build``), ``.csv``/``.tsv`` (first column symbol, with or without a header), ``.parquet`` (symbols
in the index or the first column) and STATE's perturbation-feature files (``.pt``: a torch-saved
dict symbol -> 1-D tensor, read with ``weights_only=True``); a pickled pandas DataFrame (genes as
index) loads too. Pickles are read as data (:mod:`ptrag.core.pickles`): a pickle that names any
other function or class is refused before it runs. Symbols match case-insensitively, then through
a small table of renamed HGNC symbols (e.g. an old embedding keyed by ``SEPT7`` serves
``SEPTIN7``), then through the table's own aliases (each names one gene); every such match is
reported. A table that lists a gene twice is an error unless ``data.duplicate_embeddings=first``:
which row a gene gets must never depend on the order of a file.

Which table (``data.gene_embeddings``): a file; ``builtin:demo`` (the built-in dataset's 250
genes) or ``builtin:human`` (every human protein-coding gene, compressed); empty or ``auto``: the
demo table when it covers every perturbed gene -- so the built-in data keeps its exact vectors --,
else ``builtin:human``.
"""

from __future__ import annotations

import copy
import json
import logging
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..pickles import RefusedGlobal, load_data, torch_refusal
from .codec import KEYS as COMPRESSED_KEYS
from .codec import decode

BUILTIN_EMBEDDINGS = Path(__file__).parent / "resources" / "builtin_gene_embeddings.npz"
HUMAN_EMBEDDINGS = Path(__file__).parent / "resources" / "human_gene_embeddings.npz"
#: the packaged tables by name (data.gene_embeddings=builtin:NAME); both all-MiniLM-L6-v2, 384-d, one recipe
BUILTIN_TABLES = {"demo": BUILTIN_EMBEDDINGS, "human": HUMAN_EMBEDDINGS}
AUTO = "auto"
SHAPE = "one vector per gene: a table [genes x dims], or a dict gene symbol -> list of floats"
SAFE_FORMATS = ".npz, .csv, .parquet or a pickle of a plain dict gene symbol -> list of floats"
log = logging.getLogger("ptrag.data")

#: previous HGNC symbol -> current symbol, for genes renamed after GenePT's tables were made
ALIASES: dict[str, str] = {
    "SEPT2": "SEPTIN2", "SEPT7": "SEPTIN7", "SEPT9": "SEPTIN9", "MARCH5": "MARCHF5",
    "MARCH6": "MARCHF6", "C7ORF26": "INTS15", "H2AFZ": "H2AZ1", "H2AFX": "H2AX", "H3F3A": "H3-3A",
    "H3F3B": "H3-3B", "HIST1H1C": "H1-2", "CTGF": "CCN2", "CYR61": "CCN1", "ATP5A1": "ATP5F1A",
    "ATP5B": "ATP5F1B", "ATP5C1": "ATP5F1C", "ATP5O": "ATP5PO", "FAM96B": "CIAO2B", "KIAA0100": "BLTP2",
    "C11ORF98": "ERCC6L2-AS1", "WDR61": "SKIC8", "SKIV2L": "SKIC2", "TTC37": "SKIC3", "NOP53": "NOP53",
    "GLTSCR2": "NOP53", "SHFM1": "SEM1", "ADRBK1": "GRK2", "MKL1": "MRTFA", "TCEB1": "ELOC",
    "TCEB2": "ELOB", "KIAA1429": "VIRMA", "C9ORF114": "SPOUT1", "FAM58A": "CCNQ", "ZNF259": "ZPR1",
    "KIAA1804": "MAP3K21",  # Norman et al. 2019 label it so; org.Hs.eg.db 3.16 lists only MLK4 as its alias
}


@dataclass
class GeneEmbeddings:
    names: list[str]
    matrix: np.ndarray  # [V,E] float32
    source: str = "<memory>"
    provenance: dict | None = field(default=None)
    aliases: dict[str, str] = field(default_factory=dict)  # another name -> a table name (the file's own)
    label: str | None = None  # builtin:demo / builtin:human for the packaged tables
    chosen: str | None = None  # how data.gene_embeddings=auto chose this table, when it is worth saying

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or len(self.names) != self.matrix.shape[0]:
            raise DataError(f"{self.source}: {len(self.names)} names but a matrix of shape {self.matrix.shape}")
        self._index: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self._index.setdefault(name.upper(), i)  # files have none (read_gene_embeddings checks them)
        self._alias_index = {a.upper(): self._index[t.upper()] for a, t in self.aliases.items()
                             if t.upper() in self._index and a.upper() not in self._index}

    @property
    def name(self) -> str:
        """What messages call the table: builtin:NAME (path) or the path."""
        return f"{self.label} ({self.source})" if self.label else self.source

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def _row(self, gene: str) -> int | None:
        key = gene.upper()
        j = self._index.get(key)
        if j is None and key in ALIASES:  # old symbol asked, table has the new one
            j = self._index.get(ALIASES[key])
        if j is None:  # new symbol asked, table has an old one
            for old, new in ALIASES.items():
                if new == key and old in self._index:
                    return self._index[old]
        if j is None and self._alias_index:  # the table's own aliases; MT-ND6 is listed as MTND6
            j = self._alias_index.get(key, self._alias_index.get(key.replace("-", "")))
        return j

    def has(self, gene: str) -> bool:
        return self._row(gene) is not None

    def aliased(self, genes: list[str]) -> list[str]:
        """Genes found only through a renamed symbol or an alias (worth reporting)."""
        return list(self.matched_by_alias(genes))

    def matched_by_alias(self, genes: list[str]) -> dict[str, str]:
        """Gene -> the table name it was matched to, for genes not in the table under their own name."""
        out = {}
        for g in genes:
            if g.upper() not in self._index:
                j = self._row(g)
                if j is not None:
                    out[g] = self.names[j]
        return out

    def alias_note(self, genes: list[str]) -> str | None:
        """``n matched through an alias or renamed symbol (KIAA0100 -> BLTP2, ...)``, or None."""
        matched = self.matched_by_alias(genes)
        if not matched:
            return None
        shown = ", ".join(f"{g} -> {t}" for g, t in list(matched.items())[:5]) + (", ..." if len(matched) > 5 else "")
        return f"{len(matched)} matched through an alias or renamed symbol ({shown})"

    def lookup(self, genes: list[str], policy: str = "error") -> tuple[np.ndarray, list[str]]:
        """Vectors for ``genes`` [len(genes),E] and the names that had none.

        ``zero`` fills missing rows with zeros; ``drop`` fills them with zeros too and leaves it to
        the caller to remove the reported names; ``error`` raises naming the first ones.
        """
        rows = [self._row(g) for g in genes]
        missing = [g for g, j in zip(genes, rows, strict=False) if j is None]
        if missing and policy == "error":
            raise DataError(
                f"{self.source}: {len(missing)} perturbed gene(s) have no embedding "
                f"(first: {', '.join(missing[:5])}); set data.missing_embedding to drop or zero"
            )
        out = np.zeros((len(genes), self.dim), dtype=np.float32)
        for i, j in enumerate(rows):
            if j is not None:
                out[i] = self.matrix[j]
        return out, missing

    def coverage_message(self, genes: list[str], policy: str) -> str | None:
        """One line on missing and aliased genes, or None when every gene matched directly."""
        missing = [g for g in genes if not self.has(g)]
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(genes)} perturbed gene(s) have no embedding "
                         f"(first: {', '.join(missing[:5])}); policy {policy}")
        aliased = self.alias_note(genes)
        if aliased:
            parts.append(aliased)
        return f"gene embeddings {self.source}: " + "; ".join(parts) if parts else None


def random_embeddings(genes: list[str], dim: int = 64, seed: int = 0) -> GeneEmbeddings:
    """A clearly labelled stand-in with no biology in it (used until a real table is given)."""
    rng = np.random.default_rng(seed)
    return GeneEmbeddings(list(genes), rng.standard_normal((len(genes), dim)).astype(np.float32),
                          source="random stand-in embedding (no gene semantics)")


def read_gene_embeddings(path: str | Path, duplicates: str = "error") -> GeneEmbeddings:
    """Read a table in any supported format; one clear error for a bad file. ``duplicates``
    (``data.duplicate_embeddings``): a gene listed twice is an ``error``, or its ``first`` row is kept."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: gene-embedding file not found")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix.lower()
    readers = {".pkl": _read_pickle, ".pickle": _read_pickle, ".npz": _read_npz, ".csv": _read_table,
               ".tsv": _read_table, ".csv.gz": _read_table, ".tsv.gz": _read_table, ".parquet": _read_parquet,
               ".pq": _read_parquet, ".pt": _read_torch, ".pth": _read_torch}
    if suffix not in readers:
        raise DataError(f"{path}: unknown gene-embedding format {suffix or '(no suffix)'!r}; use "
                        ".pkl (GenePT), .npz, .csv/.tsv, .parquet or .pt (STATE)")
    try:
        names, matrix, provenance, *more = readers[suffix](path)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read gene embeddings ({type(exc).__name__}: {exc})") from None
    names, matrix = _table(path, names, matrix)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} embedding(s) contain NaN/inf "
                        f"(first: {', '.join(np.asarray(names)[bad][:5])}); fix or remove them")
    names, matrix = _unique(path, names, matrix, duplicates)
    if len(matrix) > 1 and np.ptp(matrix, axis=0).max() == 0:
        same = "all zeros" if not matrix.any() else "one vector"
        raise DataError(f"{path}: every gene has the same embedding ({same} for {len(names)} genes), so similar "
                        "genes cannot be told apart; check the file (or leave data.gene_embeddings empty for the "
                        "built-in table)")
    return GeneEmbeddings(names, matrix, source=str(path), provenance=provenance, aliases=more[0] if more else {})


def _table(path: Path, names, matrix) -> tuple[list[str], np.ndarray]:
    """Names and a float32 [genes x dims] matrix, or one line saying what the file holds instead."""
    names = [str(n) for n in names]
    if len(names) == 0:
        raise DataError(f"{path}: the gene-embedding table is empty")
    if np.iscomplexobj(matrix):
        raise DataError(f"{path}: the gene embeddings are complex numbers; expected real numbers, {SHAPE}")
    try:
        matrix = np.asarray(matrix, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{path}: the gene embeddings are not all numbers; expected {SHAPE}") from None
    if matrix.ndim != 2 or matrix.shape[0] != len(names) or matrix.shape[1] == 0:
        raise DataError(f"{path}: {len(names)} gene name(s) and embeddings of shape {tuple(matrix.shape)}; expected "
                        f"{SHAPE}")
    return names, matrix


def _unique(path: Path, names: list[str], matrix: np.ndarray, policy: str) -> tuple[list[str], np.ndarray]:
    """Each gene once (symbols compared case-insensitively, as lookups are): an error naming the
    first repeated keys, or with ``policy="first"`` the first row of each, said in a note."""
    first_row: dict[str, int] = {}
    repeated: list[int] = []
    for i, name in enumerate(names):
        if first_row.setdefault(name.upper(), i) != i:
            repeated.append(i)
    if not repeated:
        return names, matrix
    shown = list(dict.fromkeys(names[i] if names[i] == names[first_row[names[i].upper()]]
                               else f"{names[i]} (= {names[first_row[names[i].upper()]]})" for i in repeated))
    listed = ", ".join(shown[:5]) + (", ..." if len(shown) > 5 else "")
    if policy != "first":
        raise DataError(f"{path}: {len(shown)} gene(s) have more than one row (first: {listed}; symbols match "
                        "case-insensitively); remove the extra rows, or set data.duplicate_embeddings=first to keep "
                        "the first row of each (ptrag run: --set data.duplicate_embeddings=first)")
    log.warning(f"{path}: {len(shown)} gene(s) have more than one row (first: {listed}); kept the first row of each "
                f"and left out {len(repeated)} row(s) (data.duplicate_embeddings=first)")
    keep = np.setdiff1d(np.arange(len(names)), repeated)
    return [names[i] for i in keep], matrix[keep]


def unpickle_table(path: Path):
    """A pickle's object, rebuilt as data (:mod:`ptrag.core.pickles`), or one line naming what it
    asked for instead: loading it would have called that function."""
    try:
        with open(path, "rb") as fh:
            return load_data(fh)
    except RefusedGlobal as exc:
        raise DataError(f"{path}: not loaded: the pickle asks for {exc.name}, and loading it would run that code; "
                        f"ptrag reads pickles as data only; save the table as {SAFE_FORMATS}") from None


def _read_pickle(path: Path):
    # GenePT ships its embeddings as a pickled dict: read as data only (a crafted pickle runs no code)
    table = unpickle_table(path)
    if isinstance(table, pd.Series) and table.map(np.ndim).eq(1).all():
        table = table.to_dict()  # gene -> vector, as a Series
    if isinstance(table, pd.DataFrame):
        names, matrix = _frame(path, table)
    elif isinstance(table, dict):
        names, matrix = _vectors(path, table)
    else:
        raise DataError(f"{path}: holds a {_kind(table)}; expected {SHAPE} (GenePT's pickle) or a pandas DataFrame "
                        "with genes as its index")
    sidecar = Path(str(path) + ".provenance.json")  # written beside a pickle by `ptrag genes build`
    provenance = json.loads(sidecar.read_text()) if sidecar.is_file() else None
    return names, matrix, provenance


def _kind(value) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else type(value).__name__


def _vectors(path: Path, table: dict) -> tuple[list[str], np.ndarray]:
    """A dict gene -> vector (list, array or 1-D tensor) as names and a matrix; a number or a
    matrix where a gene's vector belongs is named, with the shape expected."""
    if not table:
        raise DataError(f"{path}: the gene-embedding table is empty")
    vectors = {}
    for name, value in table.items():
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().float().cpu().numpy()
        if isinstance(value, (numbers.Number, str)) or np.ndim(value) == 0:
            shown = value.item() if isinstance(value, np.ndarray) else value
            raise DataError(f"{path}: the value of {name!r} is a single value ({shown!r}); expected {SHAPE}")
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise DataError(f"{path}: the vector of {name!r} is not all numbers; expected {SHAPE}") from None
        if array.ndim != 1:
            raise DataError(f"{path}: the vector of {name!r} has shape {tuple(array.shape)}; expected 1-D")
        vectors[str(name)] = array
    lengths = {len(v) for v in vectors.values()}
    if len(lengths) > 1:
        raise DataError(f"{path}: vectors have different lengths ({sorted(lengths)[:5]})")
    return list(vectors), np.stack(list(vectors.values()))


def _text(values) -> bool:
    return values.dtype == object or pd.api.types.is_string_dtype(values.dtype)


def _frame(path: Path, df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """A DataFrame as names and a matrix: genes in a string index (else the first column), one
    numeric column per dimension, or one column holding each gene's vector."""
    if isinstance(df.index, pd.RangeIndex) or not _text(df.index):
        if df.shape[1] < 2 or not _text(df.iloc[:, 0]):
            raise DataError(f"{path}: a DataFrame without gene names (no string index, first column "
                            f"{df.columns[0] if df.shape[1] else '(none)'!r} not text); expected {SHAPE}")
        df = df.set_index(df.columns[0])
    names = [str(n) for n in df.index]
    if df.shape[1] == 1 and df.iloc[:, 0].map(np.ndim).eq(1).all():  # one column of vectors
        return _vectors(path, dict(zip(names, df.iloc[:, 0], strict=True)))
    values = df.apply(pd.to_numeric, errors="coerce")
    bad = [str(c) for c in df.columns if values[c].isna().any() and not df[c].isna().any()]
    if bad:
        raise DataError(f"{path}: column(s) {', '.join(bad[:5])} of the DataFrame are not numeric; expected {SHAPE}")
    return names, values.to_numpy(np.float32)


def _read_torch(path: Path):
    """STATE's perturbation features: ``torch.save({symbol: 1-D tensor})``. ``weights_only`` loads
    tensors and plain containers only, never code."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch on the pickle protocol of a file it then refuses
            table = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "pandas" in str(exc):  # weights_only refuses to rebuild Python objects, a DataFrame among them
            raise DataError(f"{path}: holds a pandas object, which a .pt is not read for (torch.load with "
                            "weights_only: tensors only, never code); save the DataFrame as .parquet (df.to_parquet) "
                            "or .pkl, or save a dict gene symbol -> 1-D tensor") from None
        refused = torch_refusal(exc)
        if refused is not None and refused[0] is not None:
            raise DataError(f"{path}: not loaded: {refused[1]}, and loading it could run code; a .pt is read as "
                            f"tensors only: save a dict gene symbol -> 1-D tensor, or the table as {SAFE_FORMATS}"
                            ) from None
        raise DataError(f"{path}: not a torch-saved dict of tensors ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(table, dict) or not table:
        raise DataError(f"{path}: expected a non-empty dict of gene symbol -> 1-D tensor (STATE's "
                        f"perturbation features), got {_kind(table)}")
    return (*_vectors(path, table), None)


def _read_npz(path: Path):
    with np.load(path, allow_pickle=False) as z:
        packed = all(k in z.files for k in COMPRESSED_KEYS)  # ptrag genes build --compress (codec.py)
        missing = [k for k in ("names", "embeddings") if k not in z.files and not (packed and k == "embeddings")]
        if missing:
            raise DataError(f"{path}: .npz needs arrays 'names' and 'embeddings'; it has {', '.join(z.files)}")
        try:
            names = [str(n) for n in np.atleast_1d(z["names"])]
            matrix = decode(z, str(path)) if packed else z["embeddings"]
            aliases = _npz_aliases(path, z)
        except ValueError as exc:  # object arrays (a DataFrame or lists saved with np.savez) need pickle
            raise DataError(f"{path}: its arrays hold Python objects ({exc}); save 'names' as strings and "
                            "'embeddings' as a numeric [genes x dims] array, or a DataFrame as .parquet / .pkl"
                            ) from None
        provenance = None
        if "provenance" in z.files:
            try:
                provenance = json.loads(str(z["provenance"]))
            except json.JSONDecodeError:
                provenance = {"text": str(z["provenance"])}
    return names, matrix, provenance, aliases


def _npz_aliases(path: Path, z) -> dict[str, str]:
    """``alias_names`` [A] -> ``alias_targets`` [A], when the file has them (``ptrag genes build --aliases``)."""
    if "alias_names" not in z.files:
        return {}
    names, targets = np.atleast_1d(z["alias_names"]), np.atleast_1d(z.get("alias_targets", np.array([])))
    if names.shape != targets.shape:
        raise DataError(f"{path}: 'alias_names' and 'alias_targets' must have one entry each per alias "
                        f"(got {names.shape} and {targets.shape})")
    return dict(zip((str(a) for a in names), (str(t) for t in targets), strict=True))


def _read_table(path: Path):
    sep = "\t" if ".tsv" in path.name.lower() else ","
    df = pd.read_csv(path, sep=sep, header=None, low_memory=False)
    first = df.iloc[0, 1:]
    if first.notna().all() and pd.to_numeric(first, errors="coerce").isna().all():  # a header row: all text
        df = df.iloc[1:]
    values = df.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1).to_numpy()
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} row(s) have missing or non-numeric values "
                        f"(first: {', '.join(df.iloc[:, 0].astype(str)[bad][:5])})")
    return df.iloc[:, 0].astype(str).tolist(), values.to_numpy(np.float32), None


def _read_parquet(path: Path):
    return (*_frame(path, pd.read_parquet(path)), None)


def default_embeddings(genes: list[str]) -> GeneEmbeddings:
    """The packaged demo table when it ships, else the labelled random stand-in."""
    if BUILTIN_EMBEDDINGS.is_file():
        return builtin_embeddings("demo")
    return random_embeddings(genes, seed=0)


_BUILTIN: dict[str, GeneEmbeddings] = {}


def builtin_embeddings(name: str) -> GeneEmbeddings:
    """A packaged table by name (``demo``, ``human``), read once per process."""
    if name not in BUILTIN_TABLES:
        raise ConfigError(f"data.gene_embeddings={'builtin:' + name!r}: no such built-in table; use "
                          f"{', '.join('builtin:' + n for n in BUILTIN_TABLES)}, {AUTO} (or empty), or a file")
    if name not in _BUILTIN:
        path = BUILTIN_TABLES[name]
        if not path.is_file():
            raise DataError(f"{path}: the built-in table builtin:{name} is not installed with this copy of ptrag; "
                            "reinstall ptrag, or give a file (`ptrag genes build`)")
        table = read_gene_embeddings(path)
        table.label = f"builtin:{name}"
        _BUILTIN[name] = table
    return _BUILTIN[name]


def auto_embeddings(genes: list[str]) -> GeneEmbeddings:
    """``data.gene_embeddings`` empty or ``auto``: the demo table when it covers every perturbed gene
    (the built-in data keeps its exact vectors), else the human protein-coding table."""
    demo = default_embeddings(genes)
    covered = sum(demo.has(g) for g in genes)
    if covered == len(genes) or not HUMAN_EMBEDDINGS.is_file():
        return demo
    human = copy.copy(builtin_embeddings("human"))
    found = sum(human.has(g) for g in genes)
    human.chosen = (f"data.gene_embeddings={AUTO}: builtin:demo covers {covered} of {len(genes)} perturbed genes, "
                    f"builtin:human {found}; using builtin:human")
    return human


_CACHE: dict[tuple, GeneEmbeddings] = {}


def load_gene_embeddings(path: str | None, genes: list[str], duplicates: str = "error") -> GeneEmbeddings:
    """``data.gene_embeddings`` resolved: a file, ``builtin:NAME``, or ``auto`` when empty (module docstring).

    The last file read is kept (keyed by path, size and mtime): a run asks twice, once to drop
    groups without an embedding and once for the vectors, and GenePT's pickle is 1.5 GB.
    """
    spec = str(path).strip() if path else ""
    if not spec or spec.lower() == AUTO:
        return auto_embeddings(genes)
    if spec.lower().startswith("builtin:"):
        return builtin_embeddings(spec.split(":", 1)[1].strip().lower())
    p = Path(path)
    key = (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns, duplicates) if p.is_file() else None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    table = read_gene_embeddings(p, duplicates)
    _CACHE.clear()
    _CACHE[key] = table
    return table
