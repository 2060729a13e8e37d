"""One run, from a resolved config to a run folder, in four stages: prepare -> train -> evaluate -> write.

An ensemble's members are runs too: before training, each member preset runs (or a finished run
of it is reused) beside the top run, in ``<top run>/compare/<preset>``, the folder its comparison
would use, so nothing is trained twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..components.manager import PluginManager
from ..config import ExperimentConfig, resolve_config
from ..data.dataset import PerturbationData
from ..training.distributed import Dist, broadcast, on_main, setup
from .calibrate import calibrate_and_protect
from .ensemble import GroupMembers
from .evaluate import evaluate, predict_held_out
from .fingerprints import run_identity
from .folder import inspect_folder, new_run_dir, occupied
from .prepare import Prepared, prepare
from .reload import attach_members, comparator_folder
from .results import RunResult, read_result
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
    run folder's ``checkpoint.pt`` (a finished run of this configuration and inputs is read back,
    so its comparisons can go on); ``overwrite`` replaces the run the folder holds (the folder
    rules: runs/folder.py). ``data``: a screen already loaded (an in-memory AnnData, validated by
    ``adata_to_data``) in place of ``data.path``; ``keep_cells`` holds predictions.h5ad/real.h5ad
    in the result (rank 0). ``loaded``: ``config.data`` already read (the main run's screen, for
    its comparisons); unlike ``data`` it leaves the run's identity (its input files) as it is.

    The run holds its folder for its whole life (runs/folder.py: ``occupied``): another process is
    refused, and a run that fails with a ptrag error removes what it created there."""
    dist = setup(config.device)
    config = _pinned(config, dist)
    if resume and inspect_folder(config.output.dir, run_identity(config, data)).kind == "finished":
        log(f"{config.preset or 'the run'}: finished already in {config.output.dir}, reused")
        return read_result(Path(config.output.dir), config)  # e.g. to continue its comparisons
    with occupied(config.output.dir, flag="--resume" if resume else "--out", keep_changed=resume, dist=dist):
        return _run(config, manager, log=log, resume=resume, overwrite=overwrite, data=data, keep_cells=keep_cells,
                    loaded=loaded)


def _pinned(config: ExperimentConfig, dist: Dist) -> ExperimentConfig:
    """The run folder named once (rank 0 names a new one for every rank), before it is taken."""
    if config.output.dir:
        return config
    folder = broadcast(str(new_run_dir(config)) if dist.is_main else None, dist)
    return config.model_copy(update={"output": config.output.model_copy(update={"dir": folder})})


def _run(config: ExperimentConfig, manager: PluginManager, *, log: Callable[[str], None], resume: bool,
         overwrite: bool, data: PerturbationData | None, keep_cells: bool,
         loaded: PerturbationData | None) -> RunResult:
    prep = prepare(config, manager, log=log, resume=resume, overwrite=overwrite, data=data, loaded=loaded)
    members = _member_runs(prep, manager, log=log, data=data)
    loaded = attach_members(prep, members, manager)
    if loaded:  # an ensemble of whole groups: its members' saved predictions are reused
        prep.ensemble = GroupMembers(loaded, prep.data, reuse_saved=True, log=prep.log)
    training = train(prep, resume=resume)
    training = calibrate_and_protect(prep, training, prep.start_state, manager)
    save_untrained(prep)
    parts = predict_held_out(prep)
    held: dict[str, Any] = {}  # rank 0's cells: kept out of the broadcast of the scores

    def finish() -> tuple[Any, ...]:
        evaluation = evaluate(prep, parts)
        held["cells"] = write_results(prep, evaluation, training)
        return evaluation.metrics, evaluation.summary, evaluation.trace

    long, summary, trace = on_main(finish, prep.dist)
    return RunResult(prep.run_dir, prep.config, long, summary, retrieval=trace, training=training,
                     uses_retrieval=prep.model.uses_retrieval, members=[m.config.preset for m in members],
                     cells=held.get("cells") if keep_cells else None,
                     screen=prep.data)


def comparator_config(config: ExperimentConfig, preset: str, folder: str, manager: PluginManager) -> ExperimentConfig:
    """``preset`` on the main run's data, seed, device and budget; it keeps its own loss (part of a
    model's design) and reports the main run's metrics."""
    extra = {"seed": config.seed, "device": config.device, "data": config.data.model_dump(mode="json"),
             "train": config.train.model_dump(mode="json", exclude={"loss"}), "compare": [],
             "output": {"dir": folder}}
    cfg = resolve_config(None, preset=preset, budget=config.budget, extra=extra, manager=manager)
    return cfg.model_copy(update={"metrics": config.metrics}) if config.metrics else cfg


def run_or_reuse(cfg: ExperimentConfig, manager: PluginManager, *, log: Callable[[str], None],
                 data: PerturbationData | None = None, keep_cells: bool = False,
                 loaded: PerturbationData | None = None) -> RunResult:
    """A finished run of exactly this configuration and inputs is read back; one stopped with a
    checkpoint resumes; anything else runs."""
    state = inspect_folder(cfg.output.dir, run_identity(cfg, data)).kind
    if state == "finished":
        log(f"{cfg.preset}: finished already in {cfg.output.dir}, reused")
        return read_result(Path(cfg.output.dir), cfg)
    return run_experiment(cfg, manager, log=log, resume=state == "checkpoint", data=data, keep_cells=keep_cells,
                          loaded=loaded)


def _member_runs(prep: Prepared, manager: PluginManager, *, log: Callable[[str], None],
                 data: PerturbationData | None) -> list[RunResult]:
    """The finished runs of an ensemble's member presets (none for other generators)."""
    out = []
    for preset in prep.components.generator.capabilities.members:
        cfg = comparator_config(prep.config, preset, str(comparator_folder(prep.run_dir, preset)), manager)
        log(f"member: {preset}")
        out.append(run_or_reuse(cfg, manager, log=log, data=data, loaded=prep.data))
    return out
