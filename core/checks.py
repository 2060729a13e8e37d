"""What the user asked is what runs: each request that cannot be honoured as asked is refused or
warned in one line, and what really ran is written to config.yaml.

- ``retriever.k=0`` with a retriever: refused (it would silently be a run without retrieval).
- ``k`` above the retrieval database: warned and set to the database size.
- ``train.steps=0`` with a trainable model: warned (the untrained model is evaluated).
- a held-out cell line with no training perturbation: warned (that is zero-shot, not few-shot).
- perturbed genes without a gene embedding: kept when no component reads embeddings; otherwise
  the ``data.missing_embedding`` policy, and a drop of more than ``data.max_dropped_test`` of the
  test groups is an error that says how to provide embeddings or accept the drop.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from .errors import ConfigError, DataError

Log = Callable[[str], None]


def _first(names: Iterable[str], k: int = 5) -> str:
    names = list(names)
    return ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "")


def check_request(config: Any) -> None:
    """Before any data is read: requests that cannot mean what they say."""
    k = config.retriever.params.get("k")
    if config.retriever.name != "none" and k is not None and int(k) <= 0:
        raise ConfigError(f"retriever.k={k} with retriever {config.retriever.name!r} retrieves nothing, so the run "
                          "would have no retrieval; use k >= 1, or --retriever none (e.g. --preset state) for a run "
                          "without retrieval")


def resolve_k(config: Any, database_size: int, log: Log) -> Any:
    """``k`` above the number of retrieval-database entries becomes that number (warned)."""
    k = config.retriever.params.get("k")
    if config.retriever.name == "none" or k is None or int(k) <= database_size:
        return config
    log(f"warning: retriever.k={k} exceeds the {database_size} entries of the retrieval database (training "
        f"perturbation x cell line); using k={database_size}, written to config.yaml")
    retriever = config.retriever.model_copy(update={"params": {**config.retriever.params, "k": int(database_size)}})
    return config.model_copy(update={"retriever": retriever})


def warn_untrained(config: Any, trainable: bool, log: Log) -> None:
    if trainable and config.train.steps == 0:
        log("warning: train.steps=0: the model is evaluated untrained (checkpoint.pt holds its initial weights)")


def warn_zero_shot(split: Any, log: Log) -> None:
    """A held-out line with no training perturbation is zero-shot for that line."""
    trained = {c for _, c in split.train}
    for line in sorted({c for _, c in [*split.test, *split.val]} - trained):
        held = sorted({p for p, c in [*split.test, *split.val] if c == line})
        log(f"warning: cell line {line} has no training perturbation (all {len(held)} of its perturbation(s) are "
            f"held out: {_first(held)}), so it is predicted zero-shot, not few-shot")


def embedding_users(*components: Any) -> list[str]:
    """Names of the components that read gene embeddings (unknown components count as readers)."""
    return [getattr(c, "name", type(c).__name__) or type(c).__name__ for c in components
            if c is not None and getattr(c, "uses_gene_embeddings", True)]


def apply_embedding_policy(split: Any, table: Any, perts: list[str], *, policy: str, max_dropped_test: float,
                           users: list[str], log: Log) -> tuple[Any, dict[str, np.ndarray]]:
    """(split, gene -> vector) under ``data.missing_embedding``; see the module docstring."""
    have = [table.has(p) for p in perts]
    missing = [p for p, ok in zip(perts, have) if not ok]
    matrix, _ = table.lookup(perts, "zero")
    vectors = dict(zip(perts, matrix))
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


def data_drops(data: Any) -> list[dict[str, Any]]:
    """The loader's drops (groups below data.min_cells) as drop records like ``Split.drops``."""
    info = getattr(data, "info", None) or {}
    if not info.get("dropped_groups"):
        return []
    return [{"reason": "fewer than data.min_cells cells", "groups": {"data": int(info["dropped_groups"])},
             "cells": int(info.get("dropped_cells", 0)), "first": list(info.get("dropped_first", []))}]
