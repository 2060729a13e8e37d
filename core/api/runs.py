"""Configure and run experiments: ``ptrag.configure``, ``ptrag.run``, ``ptrag.run_comparisons``."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad

from ..components.manager import PluginManager, build_manager
from ..config import ExperimentConfig, resolve_config
from ..data.dataset import PerturbationData
from ..data.loading import adata_to_data, load_screen
from ..errors import ConfigError, DataError
from ..files import read_json
from ..runs.compare import run_comparisons as compare_presets
from ..runs.experiment import run_experiment
from ..runs.fingerprints import data_fingerprint
from ..runs.folder import new_run_dir, resumable
from ..runs.results import RunResult, recorded_fingerprint
from ..training.distributed import broadcast, from_env, setup
from .boundary import Log, RunInterrupted, default_log, one_error, threads_kept
from .options import BY_NAME, option_overrides, signature, unknown_options

#: what an AnnData handed over in memory is called in messages, fingerprints and metrics.json
IN_MEMORY = "in-memory AnnData"


def is_anndata(data: Any) -> bool:
    return isinstance(data, ad.AnnData)


def is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def screen_of(data: ad.AnnData | str | os.PathLike, cfg: Any, name: str = IN_MEMORY, *,
              control_like: str = "error") -> PerturbationData:
    """An AnnData or an .h5ad path as a validated screen: the same checks either way."""
    if is_anndata(data):
        return adata_to_data(data, cfg, name, control_like=control_like)
    if is_path(data):
        return load_screen(cfg.model_copy(update={"path": str(data)}), control_like=control_like)
    raise ConfigError(f"expected an AnnData or an .h5ad path, got {type(data).__name__}")


def is_main_process() -> bool:
    """False on the other ranks of a torchrun job (only rank 0 prints and writes)."""
    return from_env().is_main


def _base(config: Any, resume: Any) -> tuple[Any, Path | None]:
    """The user's configuration as resolve_config takes it, and the run folder to resume."""
    if isinstance(config, ExperimentConfig):
        config = config.to_yaml_dict()
    elif isinstance(config, Mapping):
        config = dict(config)
    elif config is not None:
        config = Path(config)
    if resume is None:
        return config, None
    resume = Path(resume)
    resumable(resume)  # a run folder of this ptrag (its marker) before its config.yaml is read
    return resume / "config.yaml", resume


def _configure(config: Any = None, *, set: Sequence[str] = (), manager: PluginManager | None = None,
               **options: Any) -> ExperimentConfig:
    unknown_options(options, list(ExperimentConfig.model_fields))
    if options.get("data") is not None and not is_path(options["data"]):
        raise ConfigError(f"data: expected an .h5ad path, got {type(options['data']).__name__} "
                          "(an AnnData goes to ptrag.run)")
    sets = [set] if isinstance(set, str) else list(set)
    extra = {k: v for k, v in options.items() if k in ExperimentConfig.model_fields and k not in BY_NAME}
    names = option_overrides(options, extra)
    config, resume = _base(config, options.get("resume"))
    if resume is not None:
        extra["output"] = {"dir": str(resume)}
    cfg = resolve_config(config, preset=options.get("preset"), budget=options.get("budget"), components=names,
                         sets=sets, extra=extra, manager=manager or build_manager())
    if isinstance(config, Path) and resume is None and options.get("out") is None and cfg.output.dir and \
            Path(cfg.output.dir).resolve() == config.resolve().parent:
        cfg.output.dir = None  # a run's own config.yaml (older ones name their folder): rerun it elsewhere
    _one_folder(cfg, options.get("out"), resume)
    return cfg


def _one_folder(cfg: ExperimentConfig, out: Any, resume: Path | None) -> None:
    """--out (or --resume) names the run folder; an output.dir set after it (--set, set=...) may not
    send the run elsewhere."""
    flag, given = ("--resume", resume) if resume is not None else ("--out", out)
    if given is not None and Path(cfg.output.dir or "") != Path(given):
        raise ConfigError(f"output.dir={cfg.output.dir} and {flag} {given} name two folders; a run writes into its "
                          f"{flag} folder only: drop output.dir from --set")


@one_error
def configure(config: Any = None, **options: Any) -> ExperimentConfig:
    """The validated experiment configuration, resolved as ``ptrag run`` resolves it: preset <
    budget < ``config`` (a YAML path, a mapping or an ExperimentConfig) < component names <
    the other options and config sections (``train={"steps": 200}``) < ``set``
    (``["train.steps=200"]``). ``data`` is an .h5ad path; an AnnData goes to :func:`run`."""
    return _configure(config, **options)


_KW = inspect.Parameter.KEYWORD_ONLY
signature(configure, before=[inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)],
          after=[inspect.Parameter("set", _KW, default=()), inspect.Parameter("manager", _KW, default=None),
                 inspect.Parameter("overrides", inspect.Parameter.VAR_KEYWORD)])


def _run_config(data: Any, config: Any, options: dict[str, Any], manager: PluginManager) -> ExperimentConfig:
    given = {k: v for k, v in options.items() if v is not None and v != () and k != "resume"}
    if isinstance(config, ExperimentConfig) and data is None and not given:
        cfg = config.model_copy(deep=True)  # an ExperimentConfig given alone is run as it is
    else:
        cfg = _configure(config, data=None if is_anndata(data) else data, manager=manager, **options)
    if is_anndata(data):
        cfg.data.path = None  # the AnnData, not a file named by the config
    if not cfg.output.dir:  # under torchrun rank 0 names the folder for every rank
        cfg.output.dir = broadcast(str(new_run_dir(cfg)), setup(cfg.device))
    return cfg


@one_error
def run(data: ad.AnnData | str | os.PathLike | None = None, *, config: Any = None, overwrite: bool = False,
        comparisons: bool = True, keep_cells: bool = True, log: Log | None = None,
        manager: PluginManager | None = None, **options: Any) -> RunResult:
    """Train and evaluate one experiment on ``data`` (an AnnData, an .h5ad path, or None for the
    built-in screen) into a run folder, then the config's ``compare:`` presets (unless
    ``comparisons=False``); options as for :func:`configure`. An ExperimentConfig given alone is
    run as it is. The AnnData is validated like a file and never written to disk; the folder's
    fingerprint records its content hash and that it came from memory. Like ``ptrag run``, it
    seeds Python's, NumPy's and torch's global generators with the run's seed."""
    if data is not None and not is_anndata(data) and not is_path(data):
        raise ConfigError(f"data: expected an AnnData or an .h5ad path, got {type(data).__name__}")
    manager = manager or build_manager()
    cfg = _run_config(data, config, options, manager)
    screen = screen_of(data, cfg.data) if is_anndata(data) else None
    log = default_log(log)
    try:
        with threads_kept():
            result = run_experiment(cfg, manager, log=log, resume=options.get("resume") is not None,
                                    overwrite=overwrite, data=screen, keep_cells=keep_cells)
            if comparisons and cfg.compare:
                compare_presets(result, manager, log=log, data=screen, keep_cells=keep_cells)
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; continue from the last checkpoint with: ptrag run --resume "
                             f"{cfg.output.dir}") from None
    if comparisons or not cfg.compare:
        result.screen = None  # no comparisons to come: do not hold the matrix (run_comparisons rereads it)
    return result


signature(run, before=[inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
                       inspect.Parameter("config", _KW, default=None)],
          after=[inspect.Parameter(n, _KW, default=d) for n, d in (
              ("overwrite", False), ("set", ()), ("comparisons", True), ("keep_cells", True), ("log", None),
              ("manager", None))] + [inspect.Parameter("overrides", inspect.Parameter.VAR_KEYWORD)])


@one_error
def run_comparisons(result: RunResult, *, data: ad.AnnData | None = None, keep_cells: bool = True,
                    log: Log | None = None, manager: PluginManager | None = None) -> list[RunResult]:
    """Run ``result``'s ``compare:`` presets on its data, split and seed (what :func:`run` does
    unless ``comparisons=False``); a run made on an AnnData needs that AnnData again as ``data``."""
    stored = read_json(Path(result.run_dir) / "fingerprint.json") or {}
    from_memory = ((stored.get("inputs") or {}).get("data") or {}).get("in_memory", False)
    screen = None
    if data is not None and not is_anndata(data):
        raise ConfigError(f"data: expected the run's AnnData, got {type(data).__name__} "
                          "(a run made on a file reads it again)")
    if data is not None:
        screen = screen_of(data, result.config.data)
        made_on = (recorded_fingerprint(result.run_dir) or {}).get("data")
        if made_on and data_fingerprint(screen)["hash"] != made_on:
            raise DataError(f"{result.run_dir}: this data differs from the data the run was made on (content "
                            "hash); pass the run's own AnnData")
    elif from_memory:
        raise ConfigError(f"{result.run_dir}: the run was made on an {IN_MEMORY}; pass it again: "
                          "run_comparisons(result, data=adata)")
    try:
        with threads_kept():
            return compare_presets(result, manager or build_manager(), log=default_log(log), data=screen,
                                   keep_cells=keep_cells)
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; continue from the last checkpoint with: ptrag run --resume "
                             f"{result.run_dir}") from None
