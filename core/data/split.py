"""Train / validation / test splits over (perturbation, context) groups."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .dataset import PerturbationData

Group = tuple[str, str]


@dataclass
class Split:
    train: list[Group]
    val: list[Group] = field(default_factory=list)
    test: list[Group] = field(default_factory=list)
    description: str = ""


def random_fewshot_split(
    data: PerturbationData,
    *,
    seed: int,
    holdout_context: str | None = None,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
) -> Split:
    """Hold out a fraction of one context's perturbations; everything else trains (few-shot)."""
    contexts = data.contexts
    if holdout_context is None:
        counts = {c: sum(1 for _, gc in data.groups if gc == c) for c in contexts}
        holdout_context = max(contexts, key=lambda c: (counts[c], c))
    perts = sorted(p for p, c in data.groups if c == holdout_context)
    rng = np.random.default_rng(seed)
    order = [perts[i] for i in rng.permutation(len(perts))]
    n_test = max(1, int(round(test_fraction * len(perts))))
    n_val = int(round(val_fraction * len(perts)))
    test = {(p, holdout_context) for p in order[:n_test]}
    val = {(p, holdout_context) for p in order[n_test : n_test + n_val]}
    train = [g for g in data.groups if g not in test and g not in val]
    return Split(
        train=train,
        val=sorted(val),
        test=sorted(test),
        description=f"random few-shot: {len(test)} test / {len(val)} val perturbations of {holdout_context} (seed {seed})",
    )
