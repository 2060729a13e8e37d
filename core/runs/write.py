"""Stage 4 of a run, write: the result files, each whole or not at all, metrics.json last.

metrics.json's ``run`` section says what ran: data, split and every group left out and why,
the components and whether retrieval was used, the training summary, fingerprints and outputs.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .. import __version__
from ..components.guards import calling
from ..files import announce, temporary_name, write_csv, write_json
from ..training.checkpoints import keep_for_prediction
from . import marker
from .cells import CellEvalData, cell_eval_data, describe_cell_eval_files
from .evaluate import Evaluation
from .fingerprints import fingerprint_summary
from .prepare import Prepared
from .shared import share_with_tree
from .trace import keep_ratio, write_retrieval


def run_info(prep: Prepared, training: dict[str, Any] | None) -> dict[str, Any]:
    config, dist = prep.config, prep.dist
    return {
        "ptrag_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - prep.started, 3),
        "device": str(prep.device),
        "world_size": dist.world_size,
        "global_batch": {"sets": dist.world_size * config.train.batch_size,
                         "cells": dist.world_size * config.train.batch_size * config.data.cell_set_len},
        "data": prep.data.source,
        "split": prep.split.summary(),
        "n_test_groups": len(prep.split.test),
        "dropped": prep.data.drop_records() + prep.split.drops,  # every group left out, and why
        "fingerprint": fingerprint_summary(prep.folder.identity, prep.content, config.seed),
        "components": {s: getattr(config, s).name for s in ("retriever", "selector", "generator")},
        "uses_retrieval": prep.model.uses_retrieval,
        "members": list(prep.components.generator.capabilities.members),  # an ensemble's member presets
        "training": training,
    }


def _retrieval_used(prep: Prepared, evaluation: Evaluation, info: dict[str, Any]) -> None:
    """retrieval.csv + retrieval_summary.json, and in metrics.json the evaluation keep-ratio (the
    mean over cells and candidates of the keep decisions applied) and the selection AUC per line;
    a selector that kept nothing is said loudly."""
    trace = evaluation.trace
    if trace is None or not len(trace):
        return
    summary = write_retrieval(prep.run_dir, trace, prep.data, prep.gene_sets)
    ratio = keep_ratio(trace)
    info["retrieval"] = {"keep_ratio": ratio, "selection_auc": {c: s["selection_auc"] for c, s in summary.items()}}
    # No keep-weights at all (selector none) means the generator uses the candidates directly.
    info["retrieval_used"] = bool(not np.isfinite(ratio) or ratio > 0)
    if not info["retrieval_used"]:
        prep.log(f"warning: the {prep.config.selector.name} selector kept none of the retrieved candidates for any "
                 "held-out query, so retrieval did not affect these predictions (training_keep_ratio in log.jsonl; "
                 "docs/model.md: the sparsity penalty can switch retrieval off)")


def save_retriever(prep: Prepared) -> None:
    """retriever/, written whole under a temporary name and renamed into place, so a file it shares
    with a sibling run (runs/shared.py) is replaced, never written into."""
    final = prep.run_dir / "retriever"
    tmp = temporary_name(final)
    announce(final)  # a folder the plugin writes: listed in the run folder's marker first
    if tmp.exists():
        shutil.rmtree(tmp)
    with calling(prep.components.retriever, "save"):
        prep.components.retriever.save(tmp)
    if final.exists():
        shutil.rmtree(final)
    if tmp.exists():
        os.replace(tmp, final)


def write_results(prep: Prepared, evaluation: Evaluation, training: dict[str, Any] | None) -> CellEvalData:
    """On rank 0: metrics.csv, the retriever, the cell files, the retrieval trace, metrics.json;
    then checkpoint.pt keeps only the weights the predictions used, and the files the run shares
    byte for byte with its run tree become hard links (runs/shared.py)."""
    run_dir = prep.run_dir
    write_csv(run_dir / "metrics.csv", evaluation.metrics)
    save_retriever(prep)
    marker.seal(run_dir / "retriever", "retriever")  # its files, told apart from any added later
    info = run_info(prep, training)
    cells = cell_eval_data(evaluation.predictions, prep.data, where=run_dir)
    info["outputs"] = cells.write(run_dir)  # predictions.h5ad, real.h5ad
    prep.log(describe_cell_eval_files(info["outputs"]))
    _retrieval_used(prep, evaluation, info)
    write_json(run_dir / "metrics.json", {"run": info, "metrics": evaluation.summary})  # last: the run is finished
    keep_for_prediction(run_dir / "checkpoint.pt")
    share_with_tree(run_dir)
    return cells
