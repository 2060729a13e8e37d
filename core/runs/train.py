"""Stage 2 of a run, train: fixed validation sets, the epoch schedule, and the training loop.

Only a trainable model trains. Stage-1 neighbours of every training and validation group are
searched once (by rank 0, shared with the others); validation cell sets are drawn once, from
their own seed, so every validation scores the same cells.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..data.cellsets import EpochSchedule, step_seed
from ..errors import ConfigError
from ..model.neighbours import NeighbourTable
from ..training.checkpoints import save_checkpoint, save_meta
from ..training.distributed import Dist, broadcast, on_main
from ..training.losses import fit_pc_space, sample_blocks, uses_pc_space
from ..training.trainer import Trainer
from .prepare import Prepared


def share_neighbours(neighbours: NeighbourTable, dist: Dist, search: Callable[[], None]) -> None:
    """Run a stage-1 ``search`` on rank 0 only and give every rank its rows (one search per run,
    and identical neighbours on every rank even for approximate indexes)."""
    if not dist.enabled:
        search()
        return
    if dist.is_main:
        search()
    neighbours.adopt(broadcast(neighbours.export() if dist.is_main else None, dist))


def validation_batches(prep: Prepared) -> list[Any]:
    """Fixed cell sets of the validation groups (never a test group), drawn once from their own seed."""
    config = prep.config
    val_rng = np.random.default_rng([config.seed, 1])  # fixed sets, independent of training draws
    val_groups = [g for g in prep.split.fitting_val for _ in range(config.train.val_sets)]
    size = config.train.eval_batch_size
    return [prep.neighbours.attach(prep.sampler.make_batch(val_groups[i:i + size], val_rng))
            for i in range(0, len(val_groups), size)]


def _trainer(prep: Prepared) -> Trainer:
    config, dist, sampler, neighbours, split = prep.config, prep.dist, prep.sampler, prep.neighbours, prep.split
    share_neighbours(neighbours, dist, lambda: neighbours.add(list(split.train) + list(split.val)))
    space = None
    if uses_pc_space(config.train.loss):  # each line's principal axes, from its training cells only
        pc_rng = np.random.default_rng([config.seed, 3])
        blocks = sample_blocks(sampler.data, split.train, sampler.vocab.contexts, pc_rng)
        space = fit_pc_space(blocks)
    schedule = EpochSchedule(len(split.train), config.train.batch_size, config.seed, dist.rank, dist.world_size)
    pin = prep.device.type == "cuda"

    def sample(step: int):
        rng = np.random.default_rng(step_seed(config.seed, step, dist.rank))
        batch = neighbours.attach(sampler.make_batch([split.train[i] for i in schedule.groups(step)], rng))
        return batch.pin_memory() if pin else batch

    exact = prep.components.retriever.capabilities.exact
    return Trainer(
        prep.model, sample=sample, val_batches=validation_batches(prep), train_cfg=config.train,
        loss=config.train.loss, device=prep.device, seed=config.seed, run_dir=prep.run_dir, meta=prep.meta,
        on_epoch=None if exact else lambda: share_neighbours(neighbours, dist, neighbours.refresh),
        epoch_steps=schedule.steps_per_epoch, space=space, dist=dist, log=prep.log,
        start_is_baseline=prep.components.generator.capabilities.protects_start,
    )


def _memory() -> int | None:
    """This machine's physical memory in bytes, where the system says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_size(prep: Prepared) -> None:
    """One line, before any batch is drawn, when the cells of one batch alone (control and target
    sets of train.batch_size or train.eval_batch_size sets x data.cell_set_len cells) would not fit
    in this machine's memory: the process would swap or be killed long after it started."""
    train, sets = prep.config.train, prep.config.data.cell_set_len
    batch = max(train.batch_size, train.eval_batch_size)
    need = 2 * batch * sets * prep.data.n_features * 4
    have = _memory()
    if have is not None and need > have // 2:
        raise ConfigError(f"one batch of {batch} cell sets x data.cell_set_len={sets:,} cells x "
                          f"{prep.data.n_features:,} features needs {need / 2**30:,.1f} GiB for its cells alone, more "
                          f"than half of this machine's {have / 2**30:,.1f} GiB; lower data.cell_set_len (64 is usual) "
                          "or train.batch_size / train.eval_batch_size")


def train(prep: Prepared, *, resume: bool) -> dict[str, Any] | None:
    """Train a trainable model (None for one that learns only in ``fit``); a summary for metrics.json."""
    if not prep.model.trainable:
        return None
    check_batch_size(prep)
    config, dist = prep.config, prep.dist
    trainer = _trainer(prep)
    n_params = sum(p.numel() for p in prep.model.parameters() if p.requires_grad)
    procs = f" x {dist.world_size} processes (global batch {dist.world_size * config.train.batch_size} sets)" \
        if dist.enabled else ""
    prep.log(f"training {config.generator.name} + {config.selector.name} ({n_params:,} parameters) for "
             f"{config.train.steps} steps on {prep.device}{procs}; validation on {len(prep.split.fitting_val)} "
             f"groups every {config.train.val_every}")
    result = trainer.fit(resume=resume)
    prep.start_state = trainer.start_state
    prep.log(f"trained {result.steps} steps in {result.seconds:.1f} s; best validation energy "
             f"{result.best_val:.4g} at step {result.best_step}")
    prep.log(f"training stopped at step {result.steps}: {result.stop_reason}")  # each fact once: the trainer is silent
    start = result.history[0]["val_energy"] if result.history and result.history[0]["step"] == 0 else None
    return {"steps": result.steps, "best_step": result.best_step,
            "best_val_energy": None if not np.isfinite(result.best_val) else result.best_val,
            "start_val_energy": start, "seconds": round(result.seconds, 3), "stopped_early": result.stopped_early,
            "stop_reason": result.stop_reason, "budget": prep.config.budget,
            **({"diverged_at_step": result.diverged_at} if result.diverged_at is not None else {}),
            "validation": [(r["step"], r["val_energy"]) for r in result.history]}


def has_own_weights(prep: Prepared) -> bool:
    """Whether the model holds state that ``fit`` on the database does not rebuild: parameters, or
    what an ensemble calibrated."""
    return any(True for _ in prep.model.parameters()) or prep.components.generator.capabilities.calibrates


def save_untrained(prep: Prepared) -> None:
    """A model that did not train still leaves what ``ptrag predict`` reads: the checkpoint of its
    weights (a trainable model at train.steps=0, a calibrated ensemble), or, for a model without
    weights of its own that ``fit`` rebuilds from the database (the baselines), meta.pt alone."""
    path = prep.run_dir / "checkpoint.pt"

    def save() -> None:
        if path.is_file():
            return
        if not has_own_weights(prep):
            save_meta(prep.run_dir, prep.meta)
        else:
            save_checkpoint(path, {"model": prep.model.state_dict(), "best_model": None, "step": 0, "meta": prep.meta})

    on_main(save, prep.dist)
