"""Predictions and scores: ``ptrag.predict``, ``ptrag.score``, ``ptrag.compare``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd
from pydantic import ValidationError

from ..components.assembly import build_metrics
from ..components.manager import PluginManager, build_manager
from ..config import DataConfig, ExperimentConfig, check_seed, format_validation_error, validate_components
from ..data.dataset import CONTEXT, PERT, PerturbationData
from ..data.gene_sets import read_gmt
from ..data.validation import require_expression
from ..errors import ConfigError, DataError
from ..evaluation.aggregate import aggregate, summary_frame, undefined_notes
from ..evaluation.paired import paired_tests
from ..evaluation.scoring import GroupPrediction
from ..evaluation.scoring import score as score_groups
from ..files import read_json
from ..hookspecs import BuildContext
from ..reporting.folders import paired_comparison
from ..runs import marker
from ..runs.cells import CellEvalData, HeldCells, cell_eval_data, write_metrics
from ..runs.fingerprints import data_fingerprint, input_files, memory_input
from ..runs.folder import RunFolder, occupied
from ..runs.groups import predict_screen
from ..runs.reload import load_run
from ..runs.results import RunResult
from ..runs.trace import write_retrieval
from .boundary import Log, default_log, one_error
from .runs import IN_MEMORY, is_anndata, is_path, screen_of

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class Scores:
    """Metrics of predicted cells: ``metrics`` one row per perturbation x cell line x metric
    (metrics.csv), ``summary`` per metric mean, median, 95% bootstrap CI, n, direction (metrics.json)."""

    metrics: pd.DataFrame
    summary: dict[str, Any]

    @property
    def aggregates(self) -> pd.DataFrame:
        """``summary`` as a table, one row per metric."""
        return summary_frame(self.summary)


@dataclass
class Prediction(Scores, HeldCells):
    """What :func:`predict` returns: the scores, the predicted ``groups`` (perturbation, cell line),
    the ``retrieval`` trace, the ``dropped`` groups, the output ``folder`` (None when nothing was
    written) and ``predictions``/``real`` as AnnData."""

    groups: list[tuple[str, str]] = field(default_factory=list)
    in_training: int = 0  # how many of the scored groups were in the run's training data (not held out)
    retrieval: pd.DataFrame | None = None
    dropped: list[dict] = field(default_factory=list)
    folder: Path | None = None
    cells: CellEvalData | None = field(default=None, repr=False)


def _columns(pert_col, context_col, batch_col, control_label, embed_key) -> dict[str, Any]:
    given = {"pert_col": pert_col, "context_col": context_col, "batch_col": batch_col,
             "control_label": control_label, "embed_key": embed_key}
    return {k: v for k, v in given.items() if v is not None}


def _data_config(base: DataConfig, updates: Mapping[str, Any]) -> DataConfig:
    try:
        return DataConfig.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "data")) from None


def _metric_choices(metrics: Any, manager: PluginManager) -> list:
    try:
        raw = ExperimentConfig.model_validate({} if metrics is None else {"metrics": metrics})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "metrics")) from None
    return validate_components(raw, manager).metrics


def _score(groups: list[GroupPrediction], choices: list, features: Sequence[str], seed: int,
           manager: PluginManager, log: Log | None = None) -> Scores:
    ctx = BuildContext(n_genes=len(features), gene_names=tuple(features), seed=seed)
    metrics = build_metrics(choices, manager, ctx)
    table = score_groups(groups, metrics)
    for note in undefined_notes(table):
        default_log(log)(note)
    return Scores(table, aggregate(table, metrics, seed=seed))


@one_error
def predict(
    run: RunResult | str | os.PathLike,
    data: ad.AnnData | str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    gene_sets: str | os.PathLike | None = None,
    overwrite: bool = False,
    keep_cells: bool = True,
    pert_col: str | None = None,
    context_col: str | None = None,
    batch_col: str | None = None,
    control_label: str | None = None,
    embed_key: str | None = None,
    control_labels: Sequence[str] = (),
    allow_control_like: Sequence[str] = (),
    log: Log | None = None,
    manager: PluginManager | None = None,
) -> Prediction:
    """Predict every perturbation group of ``data`` (an AnnData or an .h5ad path with the run's
    features and trained cell lines) with a finished run's best weights, and score the predictions
    against the real cells of ``data`` with the run's metrics. With ``out``, writes the folder
    ``ptrag predict`` writes (predictions.h5ad, real.h5ad, retrieval.csv, metrics); without it,
    nothing is written. Column arguments default to the run's ``data.*`` keys; ``control_labels`` and
    ``allow_control_like`` add to the run's (labels of this data that look like controls)."""
    if device not in DEVICES:
        raise ConfigError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    manager = manager or build_manager()
    run_dir = Path(run.run_dir if isinstance(run, RunResult) else run)
    loaded = load_run(run_dir, manager, device=device)
    declared = {key: [*getattr(loaded.config.data, key), *extra] for key, extra in
                (("control_labels", control_labels), ("allow_control_like", allow_control_like)) if extra}
    cfg = _data_config(loaded.config.data,
                       {**_columns(pert_col, context_col, batch_col, control_label, embed_key), **declared})
    sets_path = gene_sets or loaded.config.data.gene_sets
    screen, memory = None, {}
    if is_anndata(data):  # converted now: its content hash is part of the output's identity
        screen = screen_of(data, cfg)
        source, data_file, memory = IN_MEMORY, None, {"data": memory_input(screen)}
    elif is_path(data):
        source, data_file = str(Path(data).resolve()), str(data)
    else:
        raise ConfigError(f"data: expected an AnnData or an .h5ad path, got {type(data).__name__}")
    folder, sets_name = None, str(sets_path) if sets_path else None
    if out is not None:
        marker.adopt(Path(out))  # <run>/predict-<data> (ptrag predict's default) goes with its run
    with occupied(out) if out is not None else contextlib.nullcontext():  # held, and cleaned if it fails
        if out is not None:
            identity = {"kind": "prediction",
                        "config": {"run": str(run_dir.resolve()), "data": source, "gene_sets": sets_name},
                        "inputs": {**input_files({"data": data_file, "checkpoint": str(run_dir / "checkpoint.pt"),
                                                  "gene_sets": sets_name}), **memory}}
            folder = RunFolder.claim(out, identity, overwrite=overwrite)
        sets = read_gmt(sets_path) if sets_path and out is not None else None  # before predicting: fail fast
        if screen is None:
            screen = screen_of(data, cfg)
        log = default_log(log)
        predictions, trace, screen, dropped = predict_screen(loaded, screen, log=log)
        trained = set(zip(loaded.database.perts, loaded.database.contexts, strict=True))
        scores = _score(predictions, loaded.config.metrics, screen.features, loaded.config.seed, manager, log)
        cells = cell_eval_data(predictions, screen, where=out or IN_MEMORY)
        if folder is not None:
            folder.begin({"data": data_fingerprint(screen)})
            cells.write(out)
            write_retrieval(out, trace, screen, sets)
            write_metrics(out, scores.metrics, scores.summary,
                          {"run": str(run_dir), "data": data_file or IN_MEMORY, "n_groups": len(predictions),
                           "in_training": sum((p.pert, p.context) in trained for p in predictions),
                           "dropped": dropped})
    return Prediction(scores.metrics, scores.summary, groups=[(p.pert, p.context) for p in predictions],
                      in_training=sum((p.pert, p.context) in trained for p in predictions),
                      retrieval=trace, dropped=dropped, folder=Path(out) if out is not None else None,
                      cells=cells if keep_cells or out is None else None)


def _groups_in_order(data: PerturbationData) -> list[tuple[str, str]]:
    """Perturbation groups in the order their cells first appear (a run's order, in its files)."""
    obs = data.obs.loc[~data.is_control]
    return list(dict.fromkeys(zip(obs[PERT].astype(str), obs[CONTEXT].astype(str), strict=False)))


@one_error
def score(
    predictions: ad.AnnData | str | os.PathLike,
    real: ad.AnnData | str | os.PathLike,
    *,
    metrics: Sequence[str | Mapping[str, Any]] | None = None,
    pert_col: str = "gene",
    context_col: str = "cell_line",
    control_label: str = "non-targeting",
    embed_key: str = "X",
    seed: int = 0,
    manager: PluginManager | None = None,
) -> Scores:
    """Score predicted cells against real cells with any metric set (names or ``{"name": ...,
    params}``; default: a run's default metrics), per perturbation x cell line group of
    ``predictions``. Both in the layout of a run's predictions.h5ad / real.h5ad (cell-eval's):
    the same features, and ``real`` holding each group's real cells and its cell line's controls."""
    seed = check_seed(seed, "seed")
    manager = manager or build_manager()
    cfg = _data_config(DataConfig(), {"pert_col": pert_col, "context_col": context_col, "batch_col": None,
                                      "control_label": control_label, "embed_key": embed_key, "min_cells": 1})
    # labels are scored as given (a run may have allowed a control-like one), never refused here
    pred = screen_of(predictions, cfg, f"predictions ({IN_MEMORY})", control_like="report")
    true = screen_of(real, cfg, f"real ({IN_MEMORY})", control_like="report")
    for screen in (pred, true):
        require_expression(screen)
    if list(pred.features) != list(true.features):
        first = next((i for i, (a, b) in enumerate(zip(pred.features, true.features, strict=False)) if a != b),
                     min(len(pred.features), len(true.features)))
        raise DataError(f"{pred.source}: its {len(pred.features)} features differ from {true.source}'s "
                        f"{len(true.features)} (first difference at position {first}); give both the same genes "
                        "in the same order")
    groups = _groups_in_order(pred)
    if not groups:
        raise DataError(f"{pred.source}: no perturbed cells to score (only {control_label!r} cells)")
    known = dict.fromkeys(true.groups)
    missing = [f"{p}/{c}" for p, c in groups if (p, c) not in known]
    if missing:
        raise DataError(f"{pred.source}: {len(missing)} group(s) have no real cells in {true.source} (first: "
                        f"{', '.join(missing[:5])}); score only groups whose real cells you have")
    scored = [GroupPrediction(p, c, pred.X[pred.group_indices(p, c)], true.X[true.group_indices(p, c)],
                              true.control_cells(c)) for p, c in groups]
    return _score(scored, _metric_choices(metrics, manager), true.features, seed, manager)


# --------------------------------------------------------------------------- compare, components


def _finished_folder(result: Any) -> Path | None:
    """The folder holding ``result``'s metrics.csv and metrics.json, if it has one."""
    if is_path(result):
        path = Path(result)
        if not (path / "metrics.csv").is_file() or not (path / "metrics.json").is_file():
            raise ConfigError(f"{path}: not a finished run folder (no metrics.csv / metrics.json)")
        return path
    folder = getattr(result, "folder", None)
    if folder is not None and (Path(folder) / "metrics.csv").is_file() and (Path(folder) / "metrics.json").is_file():
        return Path(folder)
    if not isinstance(getattr(result, "metrics", None), pd.DataFrame) or \
            not isinstance(getattr(result, "summary", None), dict):
        raise ConfigError(f"compare: expected a run result, a prediction, scores or a run folder, got "
                          f"{type(result).__name__}")
    return None


@one_error
def compare(a: RunResult | Prediction | Scores | str | os.PathLike,
            b: RunResult | Prediction | Scores | str | os.PathLike) -> pd.DataFrame:
    """Paired per-perturbation comparison of A and B, as ``ptrag report --compare A B``: per metric,
    over the groups both scored, the means, the mean of A - B, A's win rate (direction-aware, ties
    half) and the Wilcoxon signed-rank p-value. Runs made on different data are refused."""
    fa, fb = _finished_folder(a), _finished_folder(b)
    if fa is not None and fb is not None:
        return paired_comparison(fa, fb)
    direction = {m: agg["direction"] for r in (a, b) for m, agg in _summary(r).items()}
    return paired_tests(_long(a), _long(b), direction)


def _summary(result: Any) -> dict[str, Any]:
    if is_path(result):
        return (read_json(Path(result) / "metrics.json") or {}).get("metrics", {})
    return result.summary


def _long(result: Any) -> pd.DataFrame:
    return pd.read_csv(Path(result) / "metrics.csv") if is_path(result) else result.metrics


