"""One run, from a resolved config to a run folder, in four stages: prepare -> train -> evaluate -> write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..components.manager import PluginManager
from ..config import ExperimentConfig
from ..data.dataset import PerturbationData
from ..training.distributed import on_main
from .evaluate import evaluate, predict_held_out
from .prepare import prepare
from .results import RunResult
from .train import save_untrained, train
from .write import write_results


def run_experiment(
    config: ExperimentConfig,
    manager: PluginManager,
    *,
    log: Callable[[str], None] = lambda message: None,
    resume: bool = False,
    overwrite: bool = False,
    data: PerturbationData | None = None,
    keep_cells: bool = False,
    loaded: PerturbationData | None = None,
) -> RunResult:
    """Train (if the generator is trainable) and evaluate one config; ``resume`` continues the
    run folder's ``checkpoint.pt``; ``overwrite`` replaces the run the folder holds (the folder
    rules: runs/folder.py). ``data``: a screen already loaded (an in-memory AnnData, validated by
    ``adata_to_data``) in place of ``data.path``; ``keep_cells`` holds predictions.h5ad/real.h5ad
    in the result (rank 0). ``loaded``: ``config.data`` already read (the main run's screen, for
    its comparisons); unlike ``data`` it leaves the run's identity (its input files) as it is."""
    prep = prepare(config, manager, log=log, resume=resume, overwrite=overwrite, data=data, loaded=loaded)
    training = train(prep, resume=resume)
    save_untrained(prep)
    parts = predict_held_out(prep)
    held: dict[str, Any] = {}  # rank 0's cells: kept out of the broadcast of the scores

    def finish() -> tuple[Any, ...]:
        evaluation = evaluate(prep, parts)
        held["cells"] = write_results(prep, evaluation, training)
        return evaluation.metrics, evaluation.summary, evaluation.trace

    long, summary, trace = on_main(finish, prep.dist)
    return RunResult(prep.run_dir, prep.config, long, summary, retrieval=trace, training=training,
                     uses_retrieval=prep.model.uses_retrieval, cells=held.get("cells") if keep_cells else None,
                     screen=prep.data)
