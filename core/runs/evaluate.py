"""Stage 3 of a run, evaluate: predict the held-out groups and score them with the run's metrics.

Each process predicts its share of the held-out groups; rank 0 gathers the shares back into the
order of the full list and scores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..components.guards import ContractError, who
from ..errors import TrainingError
from ..evaluation.aggregate import aggregate, undefined_notes
from ..evaluation.scoring import GroupPrediction, score
from ..training.distributed import gather
from ..training.trainer import divergence_advice
from .groups import predict_groups
from .prepare import Prepared

Shares = list[tuple[list[GroupPrediction], pd.DataFrame]]


@dataclass
class Evaluation:
    predictions: list[GroupPrediction]
    trace: pd.DataFrame  # retrieval trace of the held-out groups
    metrics: pd.DataFrame  # long table: pert, context, metric, value
    summary: dict[str, Any]  # metric -> aggregates


def predict_held_out(prep: Prepared) -> Shares | None:
    """Every process predicts its share of the test groups; the shares in rank order on rank 0."""
    mine = prep.dist.shard(list(enumerate(prep.split.test)))
    share = predict_groups(prep, [g for _, g in mine], [i for i, _ in mine])
    return gather(share, prep.dist)


def merge_shards(parts: Shares) -> tuple[list[GroupPrediction], pd.DataFrame]:
    """The ranks' (predictions, trace) back in the order of the full list of groups: rank r
    predicted groups r, r + world, r + 2 world, ... (``Dist.shard``)."""
    world = len(parts)
    n = sum(len(preds) for preds, _ in parts)
    predictions = [parts[i % world][0][i // world] for i in range(n)]
    order = {(p.pert, p.context): i for i, p in enumerate(predictions)}
    traces = [t for _, t in parts if t is not None and len(t)]
    if not traces:
        return predictions, parts[0][1]
    trace = pd.concat(traces, ignore_index=True)
    if world > 1:
        key = trace.apply(lambda row: order[(row["pert"], row["context"])], axis=1)
        trace = trace.assign(_order=key).sort_values(["_order", "rank"], kind="stable") \
            .drop(columns="_order").reset_index(drop=True)
    return predictions, trace


def check_finite(prep: Prepared, predictions: list[GroupPrediction]) -> None:
    """No run writes a NaN or an infinity as a predicted cell: one line instead, before any file."""
    bad = [p for p in predictions if not np.isfinite(p.pred).all()]
    if not bad:
        return
    generator = prep.components.generator
    what = (f"predicted non-finite values (NaN or inf) for {len(bad)} of {len(predictions)} held-out group(s) "
            f"(first: {bad[0].pert} in {bad[0].context}); no predictions were written")
    if not prep.model.trainable:
        raise ContractError(f"{who(generator)} broke its contract: {what}")
    raise TrainingError(f"{prep.run_dir}: the trained {who(generator)} {what}; "
                        f"{divergence_advice(prep.config.train, prep.device)}")


def evaluate(prep: Prepared, parts: Shares) -> Evaluation:
    """On rank 0: the gathered predictions scored with every metric, aggregated with intervals."""
    predictions, trace = merge_shards(parts)
    check_finite(prep, predictions)
    metrics = prep.components.metrics
    long = score(predictions, metrics)
    for note in undefined_notes(long):
        prep.log(note)
    return Evaluation(predictions, trace, long, aggregate(long, metrics, seed=prep.config.seed))
