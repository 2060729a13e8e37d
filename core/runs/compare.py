"""A run's ``compare:`` presets, run on its data, split, seed, device and budget, and the verdicts.

Each comparator lands in ``<run>/compare/<preset>``; ``<run>/compare.csv`` holds every preset's
metric means and ``<run>/verdict.csv`` each trained retrieval run against the best baseline
(paired tests over perturbations, evaluation/verdict.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..components.manager import PluginManager
from ..data.dataset import PerturbationData
from ..evaluation.verdict import retrieval_verdicts
from ..files import write_csv
from ..training.distributed import current
from .experiment import comparator_config, run_or_reuse
from .folder import occupied
from .results import RunResult


def run_comparisons(result: RunResult, manager: PluginManager, *,
                    log: Callable[[str], None] = lambda message: None,
                    data: PerturbationData | None = None, keep_cells: bool = False) -> list[RunResult]:
    """Run each ``compare:`` preset (see the module docstring). ``data``/``keep_cells``: as for
    :func:`run_experiment` (the main run's in-memory screen). The presets share the main run's
    data config, so they reuse the screen it read (``result.screen``), released afterwards. The
    main run's folder is held meanwhile; a comparator that fails removes only its own folder."""
    with occupied(result.run_dir, clean=False, dist=current()):
        return _run_comparisons(result, manager, log=log, data=data, keep_cells=keep_cells)


def _run_comparisons(result: RunResult, manager: PluginManager, *, log: Callable[[str], None],
                     data: PerturbationData | None, keep_cells: bool) -> list[RunResult]:
    out = []
    for name in result.config.compare:
        cfg = comparator_config(result.config, name, str(result.run_dir / "compare" / name), manager)
        log(f"compare: {name}")
        run = run_or_reuse(cfg, manager, log=log, data=data, keep_cells=keep_cells, loaded=result.screen)
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
