"""ptrag's Python API, in scverse style: AnnData in, AnnData out; parameters naming columns end in
``_col``/``_key``; results as AnnData and pandas. Reference: docs/api.md; tutorial: docs/tutorial.py.

The command line is a thin caller of these functions (``ptrag run`` -> :func:`configure` +
:func:`run`, ``ptrag predict`` -> :func:`predict`, ``ptrag plugins`` -> :func:`components`), so
both give the same results from one code path. Every user-facing problem is raised as
:class:`PtragError` (or a subclass) with the CLI's one-line message, filesystem errors included.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import anndata as ad
import pandas as pd
from pydantic import ValidationError

from ptrag.core.config import (DataConfig, ExperimentConfig, component_params, format_validation_error,
                               resolve_config, validate_components)
from ptrag.core.data.dataset import CONTEXT, PERT, PerturbationData
from ptrag.core.data.gene_sets import read_gmt
from ptrag.core.data.loading import adata_to_data, load_screen
from ptrag.core.data.validation import require_expression
from ptrag.core.distributed import broadcast, setup
from ptrag.core.errors import ConfigError, DataError, PtragError, os_error_message
from ptrag.core.evaluate import GroupPrediction, aggregate, score as score_groups, summary_frame
from ptrag.core.experiment import RunResult, new_run_dir, run_comparisons as compare_presets, run_experiment
from ptrag.core.hookspecs import KINDS, BuildContext
from ptrag.core.manager import PluginManager, build_manager
from ptrag.core.outputs import CellEvalData, HeldCells, cell_eval_data, write_metrics, write_retrieval
from ptrag.core.predict import load_run, predict_screen
from ptrag.core.report import paired_comparison, paired_tests
from ptrag.core.run_folder import (RunFolder, data_fingerprint, input_files, memory_input, read_json,
                                   recorded_fingerprint)

__all__ = ["configure", "run", "run_comparisons", "predict", "score", "compare", "components",
           "RunResult", "Prediction", "Scores", "PtragError"]

#: what an AnnData handed over in memory is called in messages, fingerprints and metrics.json
IN_MEMORY = "in-memory AnnData"
DEVICES = ("auto", "cpu", "cuda", "mps")
F = TypeVar("F", bound=Callable[..., Any])
Log = Callable[[str], None]


def _one_error(func: F) -> F:
    """PtragError messages on one line; filesystem errors as PtragError, as the CLI shows them."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PtragError as exc:
            exc.args = (" ".join(str(exc).split()),)
            raise
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise PtragError(os_error_message(exc)) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _threads_kept():
    """A run sets torch's CPU threads (``train.threads``); the caller's session keeps its own."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _log(log: Log | None) -> Log:
    """Progress and notes go to ``log`` (e.g. ``print``); by default to the ``ptrag`` logger at INFO."""
    return log if log is not None else logging.getLogger("ptrag").info


# --------------------------------------------------------------------------- results


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
    retrieval: pd.DataFrame | None = None
    dropped: list[dict] = field(default_factory=list)
    folder: Path | None = None
    cells: CellEvalData | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- configuration


def _is_anndata(data: Any) -> bool:
    return isinstance(data, ad.AnnData)


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _columns(pert_col, context_col, batch_col, control_label, embed_key) -> dict[str, Any]:
    given = {"pert_col": pert_col, "context_col": context_col, "batch_col": batch_col,
             "control_label": control_label, "embed_key": embed_key}
    return {k: v for k, v in given.items() if v is not None}


def _section(extra: dict[str, Any], name: str) -> dict[str, Any]:
    value = extra.setdefault(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}=: expected a mapping of {name}.* keys, got {type(value).__name__}")
    extra[name] = dict(value)
    return extra[name]


@_one_error
def configure(
    config: str | os.PathLike | Mapping[str, Any] | ExperimentConfig | None = None,
    *,
    preset: str | None = None,
    budget: str | None = None,
    data: str | os.PathLike | None = None,
    split: str | os.PathLike | None = None,
    retriever: str | Mapping[str, Any] | None = None,
    selector: str | Mapping[str, Any] | None = None,
    generator: str | Mapping[str, Any] | None = None,
    steps: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    set: Sequence[str] = (),
    pert_col: str | None = None,
    context_col: str | None = None,
    batch_col: str | None = None,
    control_label: str | None = None,
    embed_key: str | None = None,
    manager: PluginManager | None = None,
    **overrides: Any,
) -> ExperimentConfig:
    """The validated experiment configuration, resolved as ``ptrag run`` resolves it: preset <
    budget < ``config`` (a YAML path, a mapping or an ExperimentConfig) < component names <
    the other arguments and ``overrides`` (top-level config sections: ``train={"steps": 200}``) <
    ``set`` (``["train.steps=200"]``). ``data`` is an .h5ad path; an AnnData goes to :func:`run`."""
    if data is not None and not _is_path(data):
        raise ConfigError(f"data: expected an .h5ad path, got {type(data).__name__} (an AnnData goes to ptrag.run)")
    sets = [set] if isinstance(set, str) else list(set)
    unknown = sorted(k for k in overrides if k not in ExperimentConfig.model_fields)
    if unknown:
        raise ConfigError(f"unknown keyword argument(s) {', '.join(unknown)}; config keys: "
                          f"{', '.join(ExperimentConfig.model_fields)} (data keys: set=['data.KEY=VALUE'])")
    extra: dict[str, Any] = {k: v for k, v in overrides.items()}
    columns = _columns(pert_col, context_col, batch_col, control_label, embed_key)
    if columns or data is not None or split is not None:
        section = _section(extra, "data")
        section.update(columns)
        if data is not None:
            section["path"] = str(data)
        if split is not None:
            section["split"] = str(split)
    if steps is not None:
        _section(extra, "train")["steps"] = steps
    if seed is not None:
        extra["seed"] = seed
    if device is not None:
        extra["device"] = device
    if out is not None:
        _section(extra, "output")["dir"] = str(out)
    names: dict[str, str | None] = {}
    for name, value in (("retriever", retriever), ("selector", selector), ("generator", generator)):
        if isinstance(value, Mapping):
            extra[name] = dict(value)
        else:
            names[name] = value
    manager = manager or build_manager()
    if isinstance(config, ExperimentConfig):
        config = config.to_yaml_dict()
    elif isinstance(config, Mapping):
        config = dict(config)
    elif config is not None:
        config = Path(config)
    if resume is not None:
        resume = Path(resume)
        if not (resume / "config.yaml").is_file():
            raise ConfigError(f"--resume {resume}: not a run folder (no config.yaml); give the folder `ptrag run` "
                              "printed last")
        config, extra = resume / "config.yaml", {**extra, "output": {"dir": str(resume)}}
    cfg = resolve_config(config, preset=preset, budget=budget, components=names, sets=sets, extra=extra,
                         manager=manager)
    if isinstance(config, Path) and resume is None and out is None and cfg.output.dir and \
            Path(cfg.output.dir).resolve() == config.resolve().parent:
        cfg.output.dir = None  # a run's own config.yaml (older ones name their folder): rerun it elsewhere
    return cfg


def _data_config(base: DataConfig, updates: Mapping[str, Any]) -> DataConfig:
    try:
        return DataConfig.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "data")) from None


def _screen(data: ad.AnnData | str | os.PathLike, cfg: DataConfig, name: str = IN_MEMORY) -> PerturbationData:
    """An AnnData or an .h5ad path as a validated screen: the same checks either way."""
    if _is_anndata(data):
        return adata_to_data(data, cfg, name)
    if _is_path(data):
        return load_screen(cfg.model_copy(update={"path": str(data)}))
    raise ConfigError(f"expected an AnnData or an .h5ad path, got {type(data).__name__}")


# --------------------------------------------------------------------------- run

#: the arguments :func:`run` hands to :func:`configure` as they are
_CONFIGURE_ARGS = ("preset", "budget", "split", "retriever", "selector", "generator", "steps", "seed", "device",
                   "out", "pert_col", "context_col", "batch_col", "control_label", "embed_key")


@_one_error
def run(
    data: ad.AnnData | str | os.PathLike | None = None,
    *,
    config: str | os.PathLike | Mapping[str, Any] | ExperimentConfig | None = None,
    preset: str | None = None,
    budget: str | None = None,
    split: str | os.PathLike | None = None,
    retriever: str | Mapping[str, Any] | None = None,
    selector: str | Mapping[str, Any] | None = None,
    generator: str | Mapping[str, Any] | None = None,
    steps: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
    set: Sequence[str] = (),
    pert_col: str | None = None,
    context_col: str | None = None,
    batch_col: str | None = None,
    control_label: str | None = None,
    embed_key: str | None = None,
    comparisons: bool = True,
    keep_cells: bool = True,
    log: Log | None = None,
    manager: PluginManager | None = None,
    **overrides: Any,
) -> RunResult:
    """Train and evaluate one experiment on ``data`` (an AnnData, an .h5ad path, or None for the
    built-in screen) into a run folder, then the config's ``compare:`` presets (unless
    ``comparisons=False``); arguments as for :func:`configure`. An ExperimentConfig given alone
    is run as it is. The AnnData is validated like a file and never written to disk; the folder's
    fingerprint records its content hash and that it came from memory (config.yaml's
    ``data.path`` stays empty: to rerun from the command line, write the AnnData to .h5ad). Like
    ``ptrag run``, it seeds Python's, NumPy's and torch's global generators with the run's seed."""
    asked = {name: value for name, value in locals().items() if name in _CONFIGURE_ARGS}  # first: only arguments
    in_memory = _is_anndata(data)
    if data is not None and not in_memory and not _is_path(data):
        raise ConfigError(f"data: expected an AnnData or an .h5ad path, got {type(data).__name__}")
    manager = manager or build_manager()
    if isinstance(config, ExperimentConfig) and data is None and all(v is None for v in asked.values()) \
            and not set and not overrides:
        cfg = config.model_copy(deep=True)
    else:
        cfg = configure(config, data=None if in_memory else data, resume=resume, set=set, manager=manager,
                        **asked, **overrides)
    if in_memory:
        cfg.data.path = None  # the AnnData, not a file named by the config
    dist = setup(cfg.device)  # under torchrun: join the process group; rank 0 names the folder
    if not cfg.output.dir:
        cfg.output.dir = broadcast(str(new_run_dir(cfg)), dist)
    screen = _screen(data, cfg.data) if in_memory else None
    log = _log(log)
    with _threads_kept():
        result = run_experiment(cfg, manager, log=log, resume=resume is not None, overwrite=overwrite, data=screen,
                                keep_cells=keep_cells)
        if comparisons and cfg.compare:
            compare_presets(result, manager, log=log, data=screen, keep_cells=keep_cells)
    if comparisons or not cfg.compare:
        result.screen = None  # no comparisons to come: do not hold the matrix (run_comparisons rereads it)
    return result


@_one_error
def run_comparisons(result: RunResult, *, data: ad.AnnData | None = None, keep_cells: bool = True,
                    log: Log | None = None, manager: PluginManager | None = None) -> list[RunResult]:
    """Run ``result``'s ``compare:`` presets on its data, split and seed (what :func:`run` does
    unless ``comparisons=False``); a run made on an AnnData needs that AnnData again as ``data``."""
    stored = read_json(Path(result.run_dir) / "fingerprint.json") or {}
    from_memory = ((stored.get("inputs") or {}).get("data") or {}).get("in_memory", False)
    screen = None
    if data is not None and not _is_anndata(data):
        raise ConfigError(f"data: expected the run's AnnData, got {type(data).__name__} "
                          "(a run made on a file reads it again)")
    if data is not None:
        screen = _screen(data, result.config.data)
        made_on = (recorded_fingerprint(result.run_dir) or {}).get("data")
        if made_on and data_fingerprint(screen)["hash"] != made_on:
            raise DataError(f"{result.run_dir}: this data differs from the data the run was made on (content "
                            "hash); pass the run's own AnnData")
    elif from_memory:
        raise ConfigError(f"{result.run_dir}: the run was made on an {IN_MEMORY}; pass it again: "
                          "run_comparisons(result, data=adata)")
    with _threads_kept():
        return compare_presets(result, manager or build_manager(), log=_log(log), data=screen, keep_cells=keep_cells)


# --------------------------------------------------------------------------- predict and score


def _metric_choices(metrics: Any, manager: PluginManager) -> list:
    try:
        raw = ExperimentConfig.model_validate({} if metrics is None else {"metrics": metrics})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "metrics")) from None
    return validate_components(raw, manager).metrics


def _score(groups: list[GroupPrediction], choices: list, features: Sequence[str], seed: int,
           manager: PluginManager) -> Scores:
    ctx = BuildContext(n_genes=len(features), gene_names=tuple(features), seed=seed)
    metrics = {c.name: manager.get("metric", c.name).build(component_params(c, "metric", manager), ctx)
               for c in choices}
    table = score_groups(groups, metrics)
    return Scores(table, aggregate(table, metrics, seed=seed))


@_one_error
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
    log: Log | None = None,
    manager: PluginManager | None = None,
) -> Prediction:
    """Predict every perturbation group of ``data`` (an AnnData or an .h5ad path with the run's
    features and trained cell lines) with a finished run's best weights, and score the predictions
    against the real cells of ``data`` with the run's metrics. With ``out``, writes the folder
    ``ptrag predict`` writes (predictions.h5ad, real.h5ad, retrieval.csv, metrics); without it,
    nothing is written. Column arguments default to the run's ``data.*`` keys."""
    if device not in DEVICES:
        raise ConfigError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    manager = manager or build_manager()
    run_dir = Path(run.run_dir if isinstance(run, RunResult) else run)
    loaded = load_run(run_dir, manager, device=device)
    cfg = _data_config(loaded.config.data, _columns(pert_col, context_col, batch_col, control_label, embed_key))
    sets_path = gene_sets or loaded.config.data.gene_sets
    screen, memory = None, {}
    if _is_anndata(data):  # converted now: its content hash is part of the output's identity
        screen = _screen(data, cfg)
        source, data_file, memory = IN_MEMORY, None, {"data": memory_input(screen)}
    elif _is_path(data):
        source, data_file = str(Path(data).resolve()), str(data)
    else:
        raise ConfigError(f"data: expected an AnnData or an .h5ad path, got {type(data).__name__}")
    folder = None
    if out is not None:
        sets_name = str(sets_path) if sets_path else None
        identity = {"kind": "prediction",
                    "config": {"run": str(run_dir.resolve()), "data": source, "gene_sets": sets_name},
                    "inputs": {**input_files({"data": data_file, "checkpoint": str(run_dir / "checkpoint.pt"),
                                              "gene_sets": sets_name}), **memory}}
        folder = RunFolder.claim(out, identity, overwrite=overwrite)
    sets = read_gmt(sets_path) if sets_path and out is not None else None  # before predicting: fail fast
    if screen is None:
        screen = _screen(data, cfg)
    log = _log(log)
    predictions, trace, screen, dropped = predict_screen(loaded, screen, log=log)
    scores = _score(predictions, loaded.config.metrics, screen.features, loaded.config.seed, manager)
    cells = cell_eval_data(predictions, screen, where=out or IN_MEMORY)
    if folder is not None:
        folder.begin({"data": data_fingerprint(screen)})
        cells.write(out)
        write_retrieval(out, trace, screen, sets)
        write_metrics(out, scores.metrics, scores.summary,
                      {"run": str(run_dir), "data": data_file or IN_MEMORY,
                       "n_groups": len(predictions), "dropped": dropped})
    return Prediction(scores.metrics, scores.summary, groups=[(p.pert, p.context) for p in predictions],
                      retrieval=trace, dropped=dropped, folder=Path(out) if out is not None else None,
                      cells=cells if keep_cells or out is None else None)


def _groups_in_order(data: PerturbationData) -> list[tuple[str, str]]:
    """Perturbation groups in the order their cells first appear (a run's order, in its files)."""
    obs = data.obs.loc[~data.is_control]
    return list(dict.fromkeys(zip(obs[PERT].astype(str), obs[CONTEXT].astype(str))))


@_one_error
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
    manager = manager or build_manager()
    cfg = _data_config(DataConfig(), {"pert_col": pert_col, "context_col": context_col, "batch_col": None,
                                      "control_label": control_label, "embed_key": embed_key, "min_cells": 1})
    pred = _screen(predictions, cfg, f"predictions ({IN_MEMORY})")
    true = _screen(real, cfg, f"real ({IN_MEMORY})")
    for screen in (pred, true):
        require_expression(screen)
    if list(pred.features) != list(true.features):
        first = next((i for i, (a, b) in enumerate(zip(pred.features, true.features)) if a != b),
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
    if _is_path(result):
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


@_one_error
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
    if _is_path(result):
        return (read_json(Path(result) / "metrics.json") or {}).get("metrics", {})
    return result.summary


def _long(result: Any) -> pd.DataFrame:
    return pd.read_csv(Path(result) / "metrics.csv") if _is_path(result) else result.metrics


@_one_error
def components(kind: str | None = None, *, include_builtin: bool = True,
               manager: PluginManager | None = None) -> list[dict[str, Any]]:
    """The installed plugins and their components, one record per plugin, as ``ptrag plugins
    --json`` prints them (plugin, package, version, builtin, status, error, components with kind,
    name and summary). ``kind`` keeps one kind; ``include_builtin=False`` keeps third-party
    plugins (and optional built-ins whose extra is absent), as ``ptrag plugins`` without --all."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    manager = manager or build_manager()
    out = []
    for record in manager.records:
        if record.builtin and not include_builtin and record.status != "absent":
            continue
        offered = [(k, n) for k, n in record.components if kind is None or k == kind]
        if kind is not None and not offered and record.status not in ("failed", "absent"):
            continue
        item = record.as_dict()
        item["components"] = [{"kind": k, "name": n, "summary": manager.summary(k, n, record)} for k, n in offered]
        out.append(item)
    return out
