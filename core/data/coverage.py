"""Perturbed genes without a gene embedding: kept, zeroed, dropped or refused, never silently.

Which table ``data.gene_embeddings=auto`` chose and which genes matched through an alias are logged.
A gene without an embedding is kept as it is when no component of the run reads embeddings;
otherwise ``data.missing_embedding`` decides (``drop`` | ``zero`` | ``error``), and a drop of more
than ``data.max_dropped_test`` of the test groups is an error that says how to provide embeddings
or accept the drop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import DataError

Log = Callable[[str], None]


def _first(names: Iterable[str], k: int = 5) -> str:
    names = list(names)
    return ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "")


def apply_embedding_policy(split: Any, table: Any, perts: list[str], *, policy: str, max_dropped_test: float,
                           users: list[str], log: Log) -> tuple[Any, dict[str, np.ndarray]]:
    """(split, gene -> vector) under ``data.missing_embedding``; see the module docstring. Which table
    ``auto`` chose (when not the demo one) and genes matched through an alias are said, never silent."""
    if table.chosen:
        log(f"gene embeddings: {table.chosen}")
    aliased = table.alias_note(perts)
    if aliased:
        log(f"gene embeddings: {aliased} in {table.source}")
    have = [table.has(p) for p in perts]
    missing = [p for p, ok in zip(perts, have, strict=False) if not ok]
    matrix, _ = table.lookup(perts, "zero")
    vectors = dict(zip(perts, matrix, strict=False))
    if not missing:
        return split, vectors
    where = f"{len(missing)} of {len(perts)} perturbed gene(s) have no embedding in {table.source} " \
            f"(first: {_first(missing)})"
    if not users:
        log(f"gene embeddings: {where}; kept, since no component of this run reads gene embeddings")
        return split, vectors
    if policy == "error":
        raise DataError(f"{where}; {', '.join(users)} read(s) them: provide a table that covers them "
                        "(--set data.gene_embeddings=FILE; `ptrag genes build`) or set data.missing_embedding to "
                        "drop or zero")
    if policy == "zero":
        log(f"gene embeddings: {where}; policy zero: they get a zero vector")
        return split, vectors
    reduced = split.without_perts(set(missing), "without a gene embedding")
    lost = len(split.test) - len(reduced.test)
    if split.test and lost / len(split.test) > max_dropped_test:
        raise DataError(
            f"{where}: dropping them (data.missing_embedding=drop) removes {lost} of the {len(split.test)} test "
            f"groups, more than data.max_dropped_test={max_dropped_test:g}; {', '.join(users)} read(s) gene "
            "embeddings: provide a table that covers them (--set data.gene_embeddings=FILE; `ptrag genes build`), "
            "use --set data.missing_embedding=zero, or accept the drop with --set data.max_dropped_test=1")
    log(f"gene embeddings: {where}; policy drop: {reduced.notes[-1] if reduced is not split else 'no group lost'}")
    return reduced, vectors
