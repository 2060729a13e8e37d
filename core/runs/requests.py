"""What the user asked is what runs: each request that cannot be honoured as asked is refused or
warned in one line, and what really ran is written to config.yaml.

- ``k=0`` with a retriever that retrieves: refused (it would silently be a run without retrieval).
- ``k`` above the retrieval database: warned and set to the database size.
- ``train.steps=0`` with a trainable model: warned (the untrained model is evaluated).
- a held-out cell line with no training perturbation: warned (that is zero-shot, not few-shot).
- ``gene-other-lines`` where no held-out gene was measured in another cell line (a one-line
  screen, say): warned, since it then predicts exactly what ``pert-mean`` does.

Perturbed genes without a gene embedding: ``ptrag.core.data.coverage``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ..errors import ConfigError
from ..interfaces import Retriever

Log = Callable[[str], None]


def _first(names: Iterable[str], k: int = 5) -> str:
    names = list(names)
    return ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "")


def check_request(config: Any, retriever: Retriever) -> None:
    """A retriever that retrieves with k=0 cannot mean what it says."""
    caps = retriever.capabilities
    if caps.retrieves and caps.k <= 0:
        raise ConfigError(f"retriever.k={caps.k} with retriever {config.retriever.name!r} retrieves nothing, so the "
                          "run would have no retrieval; use k >= 1, or --retriever none (e.g. --preset state) "
                          "for a run without retrieval")


def resolve_k(config: Any, retriever: Retriever, database_size: int, log: Log) -> Any:
    """``k`` above the number of retrieval-database entries becomes that number (warned): the
    retriever's capability, and its ``k`` parameter in config.yaml."""
    caps = retriever.capabilities
    if not caps.retrieves or caps.k <= database_size:
        return config
    log(f"warning: retriever.k={caps.k} exceeds the {database_size} entries of the retrieval database (training "
        f"perturbation x cell line); using k={database_size}, written to config.yaml")
    retriever.capabilities = replace(caps, k=int(database_size))
    if "k" not in config.retriever.params:
        return config
    params = {**config.retriever.params, "k": int(database_size)}
    return config.model_copy(update={"retriever": config.retriever.model_copy(update={"params": params})})


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


def warn_no_other_line(config: Any, split: Any, log: Log) -> None:
    """``gene-other-lines`` predicts a held-out gene from its training response in the other cell
    lines and falls back to ``pert-mean`` without one; when that is every test group, say so."""
    if config.generator.name != "gene-other-lines" or not split.test:
        return
    lines_of: dict[str, set[str]] = {}
    for pert, line in split.train:
        lines_of.setdefault(pert, set()).add(line)
    if any(lines_of.get(pert, set()) - {line} for pert, line in split.test):
        return
    lines = sorted({c for _, c in [*split.train, *split.val, *split.test]})
    why = (f"the screen has one cell line ({lines[0]}), so no held-out gene has a response in another line" if
           len(lines) == 1 else f"none of the {len(split.test)} held-out perturbations was measured in another "
           f"cell line ({', '.join(lines)}) in training")
    which = "preset gene-other-lines" if config.preset == "gene-other-lines" else \
        f"generator gene-other-lines (preset {config.preset})"
    log(f"warning: {which}: {why}; every group falls back to pert-mean (control cells plus the line's mean "
        "training response), so this run is pert-mean under another name")
