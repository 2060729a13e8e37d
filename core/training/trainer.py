"""The training loop for every trainable model, in one process or several (torchrun)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..components.guards import ContractError
from ..data.cellsets import step_seed
from ..errors import ConfigError, PtragError, TrainingError
from ..files import announce, write_text
from ..markup import load_json
from ..progress import LoopProgress
from .checkpoints import load_checkpoint, load_weights, save_checkpoint
from .device import autocast
from .distributed import SINGLE, Dist, all_min, all_sum, broadcast
from .interrupt import CrashPoint
from .losses import PCSpace, set_distance, set_loss
from .stopping import Divergence, StoppingRule


def lr_lambda(warmup: int, total: int, schedule: str = "cosine"):
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total`` (or constant)."""
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        span = max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))
    return factor


def make_optimizer(params: list[torch.Tensor], cfg: Any) -> torch.optim.Optimizer:
    """``train.optimizer``: AdamW (decoupled weight decay, our default) or the authors' Adam."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


#: selector statistics under their log.jsonl names: the keep ratio of training's sampled decisions is
#: not the run's keep ratio (the evaluation's, in metrics.json and retrieval_summary.json: docs/metrics.md)
TRAINING_NAMES = {"keep_ratio": "training_keep_ratio"}


@dataclass
class TrainResult:
    steps: int
    best_step: int
    best_val: float
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""
    diverged_at: int | None = None  # the first step with a non-finite training loss or validation


def _step_of(line: str) -> float:
    """A log record's step; a line cut short by a kill (or not a record) counts as past any step,
    so a resume drops it."""
    try:
        record = load_json(line, "log.jsonl")
    except (ValueError, PtragError):
        return math.inf
    return record.get("step", 0) if isinstance(record, dict) and isinstance(record.get("step", 0), int) else math.inf


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def divergence_advice(cfg: Any, device: torch.device) -> str:
    """What to change after a divergence, from the settings that allow it."""
    tips = [f"lower train.lr (now {cfg.lr:g})"]
    if not cfg.grad_clip:
        tips.append("set train.grad_clip (e.g. 1.0; now 0, off)")
    if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
        tips.append(f"set train.precision=float32 (now {cfg.precision})")
    return ", ".join(tips[:-1]) + " or " + tips[-1] if len(tips) > 1 else tips[0]


class Trainer:
    """One training loop for every trainable model, in one process or several (torchrun).

    AdamW or Adam, linear warmup + cosine (or constant) LR, gradient clipping, validation (energy
    distance on fixed cell sets of the validation groups) before training and every ``val_every``
    steps, best weights by validation energy (the untrained start is a candidate, so a model built
    to start at a strong baseline never ends worse than it on validation), early stop after
    ``patience`` validations without improvement. ``checkpoint.pt`` is written at every validation
    and holds everything a resumed run needs: model, optimiser, scheduler, step, best weights.

    Training stops at the first non-finite training loss (checked where the loss is read anyway: at
    every logged or validated step, naming the first bad step) or validation value, writing no
    checkpoint after it. It then finishes from the best weights of a validation after the start,
    or, when ``start_is_baseline`` (the generator's ``protects_start``), from the untrained start;
    with neither, there is nothing worth predicting with and :class:`TrainingError` says what to
    change. A NaN never becomes the best validation (:class:`StoppingRule`).

    ``sample(step)`` gives this process's batch of a step and every step reseeds torch from
    (seed, step, rank), so nothing random carries over between steps: a run resumed from its
    checkpoint reaches the same result as an uninterrupted one (on CPU), and it can resume on
    another number of processes. With ``dist`` enabled the model is wrapped in
    ``DistributedDataParallel`` (each rank its own batch; gradients averaged), validation batches
    are shared out and their distances all-reduced, and only rank 0 reads and writes the run folder.
    """

    def __init__(self, model: nn.Module, *, sample: Callable[[int], Any], val_batches: list[Any], train_cfg: Any,
                 loss: str, device: torch.device, seed: int, run_dir: Path, meta: dict[str, Any] | None = None,
                 on_epoch: Callable[[], None] | None = None, epoch_steps: int = 0,
                 space: PCSpace | None = None, dist: Dist = SINGLE, start_is_baseline: bool = False,
                 log: Callable[[str], None] = lambda message: None):
        self.model, self.sample, self.val_batches = model, sample, val_batches
        self.space = space.to(device) if space is not None else None
        self.cfg, self.loss_name, self.device, self.seed = train_cfg, loss, device, seed
        self.run_dir, self.meta, self.log, self.dist = Path(run_dir), meta or {}, log, dist
        self.on_epoch, self.epoch_steps = on_epoch, epoch_steps
        self.start_is_baseline = start_is_baseline
        self.diverged: Divergence | None = None
        self._first_bad = torch.zeros((), dtype=torch.long, device=device)  # first step with a non-finite loss
        self.train_model = model
        if dist.enabled:  # buffers (the retrieval database) never change: do not re-broadcast them
            self.train_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False,
                find_unused_parameters=train_cfg.find_unused_parameters)
        if train_cfg.compile:  # the training forward only; validation and prediction run the plain module
            self.train_model = torch.compile(self.train_model)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(params, train_cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(train_cfg.warmup_steps, train_cfg.steps, train_cfg.schedule))
        self.step = 0
        self.stopping = StoppingRule(train_cfg.patience, train_cfg.min_delta, train_cfg.val_every)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.start_state: dict[str, torch.Tensor] | None = None  # the untrained weights (step 0)
        self.history: list[dict[str, Any]] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "log.jsonl"

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "best_model": self.best_state, "start_model": self.start_state,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "stopping": self.stopping.state(), "history": self.history,
            "world_size": self.dist.world_size, "meta": self.meta,
        }

    def resume(self) -> None:
        """Continue from ``checkpoint.pt`` (read by rank 0, sent to the others); log records past its
        step are dropped (they re-run)."""
        ck = broadcast(load_checkpoint(self.checkpoint_path) if self.dist.is_main else None, self.dist)
        missing = [k for k in ("model", "optimizer", "scheduler", "step", "history", "best_model")
                   if not isinstance(ck, dict) or k not in ck]
        if missing:
            raise ConfigError(f"{self.checkpoint_path}: not a checkpoint to resume from (it lacks "
                              f"{', '.join(missing)}); start the run again with --overwrite")
        load_weights(self.model, ck["model"], self.checkpoint_path)
        try:
            self.optimizer.load_state_dict(ck["optimizer"])
            self.scheduler.load_state_dict(ck["scheduler"])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConfigError(f"{self.checkpoint_path}: its optimiser state does not fit this model "
                              f"({type(exc).__name__}: {exc}); start the run again with --overwrite") from None
        self.step, self.history, self.best_state = ck["step"], ck["history"], ck["best_model"]
        self.start_state = ck.get("start_model")
        self.stopping.restore(ck.get("stopping") or  # checkpoints of ptrag 0.1
                              {"best": ck["best_val"], "best_step": ck["best_step"], "bad": ck["bad_vals"]})
        if self.dist.is_main and self.log_path.is_file():
            kept = [line for line in self.log_path.read_text().splitlines() if _step_of(line) <= self.step]
            write_text(self.log_path, "".join(line + "\n" for line in kept))  # never half a log
        before = ck.get("world_size", 1)
        more = f"; trained on {before} process(es) before, {self.dist.world_size} now" \
            if before != self.dist.world_size else ""
        self.log(f"resumed at step {self.step} (best validation energy {self.stopping.best:.4g} at step "
                 f"{self.stopping.best_step}{more})")

    # ------------------------------------------------------------------ loop

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean energy distance (in the loss's space: genes or PCs) over the fixed validation cell
        sets, each rank scoring its share (None when there are none). Torch is seeded with the
        same evaluation seed every time, so a stochastic model (a Gumbel selector sampling at
        evaluation) draws the same numbers at every validation and the curve shows the model.

        Once training has begun, an output the components' checks refuse (NaN cells or weights, a
        component failing on NaN inputs) comes from the weights training made: the validation is
        NaN, a divergence, not a plugin's fault; at the untrained start it is the plugin's."""
        if not self.val_batches:
            return None
        self.model.eval()
        torch.manual_seed(step_seed(self.seed, 0, self.dist.rank, stream=3))
        total, count = 0.0, 0
        distance = "mse" if self.loss_name == "mse" else self.loss_name.removesuffix("+mse")
        for batch in self.dist.shard(self.val_batches):
            batch = batch.to(self.device)
            try:
                with autocast(self.device, self.cfg.precision):
                    pred, _ = self.model(batch)
            except ContractError:
                if self.step == 0:
                    raise
                total = math.nan  # every rank sees it in the sum below
                break
            values = set_distance(distance, pred.float(), batch.target.float(), self.space, batch.context_index)
            total, count = total + float(values.double().sum()), count + len(values)
        self.model.train()
        total, count = all_sum([total, count], self.dist)
        return total / count if count else None

    def _record(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            announce(self.log_path)  # appended, not replaced: listed in the run folder's marker first
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _seed_step(self) -> None:
        torch.manual_seed(step_seed(self.seed, self.step, self.dist.rank, stream=1))

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train to ``train.steps`` (or until validation stops improving, or a divergence); the best
        (finite) weights are loaded into the model at the end. A simulated crash (:mod:`.interrupt`)
        stops it early."""
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.resume()
        elif self.step == 0 and not self.history:
            self._validate_and_checkpoint()  # the untrained start: step 0 of the history
        crash, total, stopped = CrashPoint.from_env(), self.cfg.steps, self.diverged is not None
        started = self._window_start = time.perf_counter()
        self._window_cells = 0
        self.model.train()
        with LoopProgress("training", total, self.step, log=self.log) as progress:
            while self.step < total and not stopped:
                if self.on_epoch and self.epoch_steps and self.step % self.epoch_steps == 0 and self.step:
                    self.on_epoch()
                loss, sel = self._train_step()
                logs = self.step % self.cfg.log_every == 0 or self.step == total
                validates = self.step % self.cfg.val_every == 0 or self.step == total
                if (logs or validates) and self._loss_diverged():
                    break
                if logs:
                    self._log_step(loss, sel, progress)
                if validates:
                    stopped = self._validate_and_checkpoint()
                if crash is not None:
                    crash.after_checkpoint(self.step, self.dist)
        seconds = time.perf_counter() - started
        reason = self._finish(total)
        return TrainResult(self.step, self.stopping.best_step, self.stopping.best, stopped, seconds, self.history,
                           reason, self.diverged.step if self.diverged else None)

    def _diverge(self, step: int, what: str) -> bool:
        """Record the divergence (said once, in the stop reason); True: training stops."""
        self.diverged = Divergence(step, what)
        return True

    def _loss_diverged(self) -> bool:
        """Whether a training loss since the last check was NaN or infinite (the first such step over
        every rank: the same decision on all of them)."""
        first = int(self._first_bad)
        first = all_min(float(first) if first else math.inf, self.dist)
        if not math.isfinite(first):
            return False
        return self._diverge(int(first), "non-finite training loss")

    def _finish(self, total: int) -> str:
        """Load the weights training ends with and say why it ended (see the class docstring)."""
        if self.diverged is None:
            if self.best_state is not None:
                self.model.load_state_dict(self.best_state)
            return self.stopping.finished(self.step, total)
        best, where = self.stopping.best_step, self.diverged
        usable = self.best_state is not None and _finite(self.best_state)
        if usable and best > 0:
            kept = f"the weights of step {best} (the best validation before it)"
        elif usable and self.start_is_baseline:
            kept = "the untrained start (step 0), which this generator declares a baseline"
        elif where.step == 0:
            raise TrainingError(f"{self.run_dir}: the untrained model already gives a {where.what} (step 0); "
                                "check the data and the generator's parameters")
        else:
            raise TrainingError(
                f"{self.run_dir}: training diverged at step {where.step} ({where.what}) before any validation "
                f"improved on the untrained start, so there are no weights to predict with; "
                f"{divergence_advice(self.cfg, self.device)}")
        self.model.load_state_dict(self.best_state)
        return f"diverged at step {where.step} ({where.what}); predictions use {kept}"

    def _train_step(self) -> tuple[torch.Tensor, Any]:
        """One optimiser step on this process's batch of the current step."""
        batch = self.sample(self.step).to(self.device, non_blocking=self.device.type == "cuda")
        self._seed_step()
        with autocast(self.device, self.cfg.precision):
            pred, sel = self.train_model(batch)
        loss = set_loss(self.loss_name, pred.float(), batch.target.float(), self.space, batch.context_index)
        total_loss = loss + sum(sel.aux_losses.values(), torch.zeros((), device=loss.device))
        bad = ~torch.isfinite(total_loss.detach())  # on the device: read at the next log or validation
        self.optimizer.zero_grad(set_to_none=True)
        total_loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self._first_bad = torch.where(bad & (self._first_bad == 0), self.step, self._first_bad)
        self._window_cells += batch.ctrl.shape[0] * batch.ctrl.shape[1] * self.dist.world_size
        return loss, sel

    def _log_step(self, loss: torch.Tensor, sel: Any, progress: LoopProgress) -> None:
        now = time.perf_counter()
        record = {"step": self.step, "loss": round(float(loss.detach()), 6),  # finite: checked before
                  "aux": {k: round(float(v.detach()), 6) for k, v in sel.aux_losses.items()},
                  "lr": self.scheduler.get_last_lr()[0],
                  "cells_per_s": round(self._window_cells / max(now - self._window_start, 1e-9), 1),
                  **{TRAINING_NAMES.get(k, k): round(v, 4) for k, v in sel.stats.items()}}
        self._record(record)
        self._window_start, self._window_cells = now, 0
        progress.update(self.step, loss=record["loss"], keep=sel.stats.get("keep_ratio"),
                        cells_per_s=record["cells_per_s"])

    def _validate_and_checkpoint(self) -> bool:
        """Validate, keep the weights if they are the best, write checkpoint.pt; True: stop now (early
        stop, or a non-finite validation: a divergence, with no checkpoint of these weights)."""
        val = self.validate()
        record = {"step": self.step, "val_energy": None if val is None or not math.isfinite(val) else round(val, 6)}
        self.history.append(record)
        self._record(record)
        if self.step == 0 and self.start_state is None:
            self.start_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if val is not None and not math.isfinite(val):
            return self._diverge(self.step, "non-finite validation energy")
        decision = self.stopping.update(self.step, val)
        if decision.improved:
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, self.state())
        return decision.stop  # why: the stop reason, said once by whoever runs the trainer
