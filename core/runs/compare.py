"""A run's ``compare:`` presets, run on its data, split, seed, device and budget, and the verdicts.

Each comparator lands in ``<run>/compare/<preset>``; ``<run>/compare.csv`` holds every preset's
metric means and ``<run>/verdict.csv`` each trained retrieval run against the best baseline
(paired tests over perturbations, evaluation/verdict.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..components.manager import PluginManager
from ..config import ExperimentConfig, resolve_config
from ..data.dataset import PerturbationData
from ..evaluation.verdict import retrieval_verdicts
from ..files import write_csv
from .experiment import run_experiment
from .fingerprints import run_identity
from .folder import inspect_folder
from .results import RunResult


def comparator_config(config: ExperimentConfig, preset: str, folder: str, manager: PluginManager) -> ExperimentConfig:
    """``preset`` on the main run's data, seed, device and budget; it keeps its own loss (part of a
    model's design) and reports the main run's metrics."""
    extra = {"seed": config.seed, "device": config.device, "data": config.data.model_dump(mode="json"),
             "train": config.train.model_dump(mode="json", exclude={"loss"}), "compare": [],
             "output": {"dir": folder}}
    cfg = resolve_config(None, preset=preset, budget=config.budget, extra=extra, manager=manager)
    return cfg.model_copy(update={"metrics": config.metrics}) if config.metrics else cfg


def run_comparisons(result: RunResult, manager: PluginManager, *,
                    log: Callable[[str], None] = lambda message: None,
                    data: PerturbationData | None = None, keep_cells: bool = False) -> list[RunResult]:
    """Run each ``compare:`` preset (see the module docstring). ``data``/``keep_cells``: as for
    :func:`run_experiment` (the main run's in-memory screen). The presets share the main run's
    data config, so they reuse the screen it read (``result.screen``), released afterwards."""
    out = []
    for name in result.config.compare:
        cfg = comparator_config(result.config, name, str(result.run_dir / "compare" / name), manager)
        log(f"compare: {name}")
        done = inspect_folder(cfg.output.dir, run_identity(cfg, data)).kind in ("finished", "checkpoint")
        run = run_experiment(cfg, manager, log=log, resume=done,  # a resumed main run resumes these too
                             data=data, keep_cells=keep_cells, loaded=result.screen)
        run.screen = None
        out.append(run)
    result.screen = None  # the comparisons have run: free the matrix
    rows = [{"preset": r.config.preset, "metric": m, "mean": agg["mean"], "ci95_lo": agg["ci95"][0],
             "ci95_hi": agg["ci95"][1], "direction": agg["direction"]}
            for r in [result, *out] for m, agg in r.summary.items()]
    write_csv(result.run_dir / "compare.csv", pd.DataFrame(rows))
    result.comparisons = out
    result.verdicts = retrieval_verdicts([result, *out])
    tests = [v.tests.assign(run=v.run, beat=v.beat) for v in result.verdicts]
    if tests:
        write_csv(result.run_dir / "verdict.csv", pd.concat(tests))
    return out
