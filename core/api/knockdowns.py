"""In-silico screens: ``ptrag.predict_knockdowns`` (``ptrag predict --genes ... --line ...``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import pandas as pd

from ..components.manager import PluginManager, build_manager
from ..data.loading import load_screen
from ..errors import ConfigError
from ..files import atomic_write, write_csv, write_json
from ..runs import marker
from ..runs.cells import cell_eval_data
from ..runs.fingerprints import data_fingerprint, input_files
from ..runs.folder import RunFolder, occupied
from ..runs.knockdowns import effects_table, plan_knockdowns, predict_planned
from ..runs.reload import load_run
from ..runs.results import RunResult
from .boundary import Log, default_log, one_error
from .predictions import DEVICES
from .runs import is_anndata, is_path, screen_of

EFFECTS = "effects.csv"
MEAN_CHANGE = "mean_change.csv"


@dataclass
class Knockdowns:
    """What :func:`predict_knockdowns` returns: ``effects`` (one row per gene, strongest predicted
    effect first: effect size, top up/down features, confidence, status), ``mean_change`` (gene x
    feature: predicted mean minus the line's control mean), ``predictions`` (the predicted cells +
    the line's control cells, as AnnData), ``dropped`` genes and the output ``folder``."""

    effects: pd.DataFrame
    mean_change: pd.DataFrame
    predictions: ad.AnnData | None = None
    dropped: list[dict] = field(default_factory=list)
    folder: Path | None = None


@one_error
def predict_knockdowns(
    run: RunResult | str | os.PathLike,
    genes: Sequence[str] | str,
    line: str,
    *,
    data: ad.AnnData | str | os.PathLike | None = None,
    cells: int | None = None,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    overwrite: bool = False,
    log: Log | None = None,
    manager: PluginManager | None = None,
) -> Knockdowns:
    """Predict knock-downs of ``genes`` in cell line ``line`` with a finished run, whether or not
    they were ever measured there: each gene as ``cells`` cells (default: the line's median
    perturbation group size) from the line's control cells of ``data`` (default: the screen the
    run was trained on). With ``out``, writes predictions.h5ad, effects.csv and mean_change.csv."""
    if device not in DEVICES:
        raise ConfigError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if not isinstance(genes, (str, Iterable)):
        raise ConfigError(f"genes: expected gene symbols, as a list or one comma-separated string, got "
                          f"{type(genes).__name__}")
    genes = genes.split(",") if isinstance(genes, str) else list(genes)
    manager, log = manager or build_manager(), default_log(log)
    run_dir = Path(run.run_dir if isinstance(run, RunResult) else run)
    loaded = load_run(run_dir, manager, device=device)
    if data is None:
        screen, data_file = load_screen(loaded.config.data), loaded.config.data.path
    elif is_anndata(data) or is_path(data):
        screen, data_file = screen_of(data, loaded.config.data), (str(data) if is_path(data) else None)
    else:
        raise ConfigError(f"data: expected an AnnData or an .h5ad path, got {type(data).__name__}")
    plan = plan_knockdowns(loaded, screen, genes, line, cells)
    for status in ("in training", "held out"):
        named = [g for g, s in plan.status.items() if s == status]
        if named:
            log(f"note: {len(named)} of the genes were measured in {line} ({status}): {', '.join(named[:5])}; "
                "they are predicted like the others, and the effects table says so")
    if out is not None:
        marker.adopt(Path(out))  # <run>/knockdowns-<line> (ptrag predict's default) goes with its run
    with occupied(out) if out is not None else contextlib.nullcontext():
        folder = None
        if out is not None:
            identity = {"kind": "knockdowns", "config": {"run": str(run_dir.resolve()), "genes": list(plan.status),
                                                         "line": line, "cells": plan.sizes[plan.groups[0]]},
                        "inputs": input_files({"data": data_file, "checkpoint": str(run_dir / "checkpoint.pt")})}
            folder = RunFolder.claim(out, identity, overwrite=overwrite)
        preds, dropped = predict_planned(loaded, screen, plan, log=log)
        effects, mean_change = effects_table(loaded, preds, plan, screen)
        cells_out = cell_eval_data(preds, screen, where=out or "knockdowns").predictions
        if folder is not None:
            folder.begin({"data": data_fingerprint(screen)})
            atomic_write(Path(out) / "predictions.h5ad", cells_out.write_h5ad)
            write_csv(Path(out) / EFFECTS, effects)
            write_csv(Path(out) / MEAN_CHANGE, mean_change.reset_index())
            write_json(Path(out) / "knockdowns.json", {"run": str(run_dir), "line": line, "dropped": dropped,
                                                       "genes": plan.status, "cells": plan.sizes[plan.groups[0]]})
    return Knockdowns(effects, mean_change, cells_out, dropped, Path(out) if out is not None else None)
