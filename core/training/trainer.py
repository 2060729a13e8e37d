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

from ..data.cellsets import step_seed
from ..files import write_text
from ..progress import LoopProgress
from .checkpoints import load_checkpoint, load_weights, save_checkpoint
from .device import autocast
from .distributed import SINGLE, Dist, all_sum, broadcast
from .interrupt import CrashPoint
from .losses import PCSpace, set_distance, set_loss
from .stopping import StoppingRule


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


@dataclass
class TrainResult:
    steps: int
    best_step: int
    best_val: float
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""


class Trainer:
    """One training loop for every trainable model, in one process or several (torchrun).

    AdamW or Adam, linear warmup + cosine (or constant) LR, gradient clipping, validation (energy
    distance on fixed cell sets of the validation groups) before training and every ``val_every``
    steps, best weights by validation energy (the untrained start is a candidate, so a model built
    to start at a strong baseline never ends worse than it on validation), early stop after
    ``patience`` validations without improvement. ``checkpoint.pt`` is written at every validation
    and holds everything a resumed run needs: model, optimiser, scheduler, step, best weights.

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
                 space: PCSpace | None = None, dist: Dist = SINGLE,
                 log: Callable[[str], None] = lambda message: None):
        self.model, self.sample, self.val_batches = model, sample, val_batches
        self.space = space.to(device) if space is not None else None
        self.cfg, self.loss_name, self.device, self.seed = train_cfg, loss, device, seed
        self.run_dir, self.meta, self.log, self.dist = Path(run_dir), meta or {}, log, dist
        self.on_epoch, self.epoch_steps = on_epoch, epoch_steps
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
        load_weights(self.model, ck["model"], self.checkpoint_path)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.step, self.history, self.best_state = ck["step"], ck["history"], ck["best_model"]
        self.start_state = ck.get("start_model")
        self.stopping.restore(ck.get("stopping") or  # checkpoints of ptrag 0.1
                              {"best": ck["best_val"], "best_step": ck["best_step"], "bad": ck["bad_vals"]})
        if self.dist.is_main and self.log_path.is_file():
            kept = [line for line in self.log_path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.step]
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
        evaluation) draws the same numbers at every validation and the curve shows the model."""
        if not self.val_batches:
            return None
        self.model.eval()
        torch.manual_seed(step_seed(self.seed, 0, self.dist.rank, stream=3))
        total, count = 0.0, 0
        distance = "mse" if self.loss_name == "mse" else self.loss_name.removesuffix("+mse")
        for batch in self.dist.shard(self.val_batches):
            batch = batch.to(self.device)
            with autocast(self.device, self.cfg.precision):
                pred, _ = self.model(batch)
            values = set_distance(distance, pred.float(), batch.target.float(), self.space, batch.context_index)
            total, count = total + float(values.double().sum()), count + len(values)
        self.model.train()
        total, count = all_sum([total, count], self.dist)
        return total / count if count else None

    def _record(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _seed_step(self) -> None:
        torch.manual_seed(step_seed(self.seed, self.step, self.dist.rank, stream=1))

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train to ``train.steps`` (or until validation stops improving); the best weights are
        loaded into the model at the end. A simulated crash (:mod:`.interrupt`) stops it early."""
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.resume()
        elif self.step == 0 and not self.history:
            self._validate_and_checkpoint()  # the untrained start: step 0 of the history
        crash, total, stopped = CrashPoint.from_env(), self.cfg.steps, False
        started = self._window_start = time.perf_counter()
        self._window_cells = 0
        self.model.train()
        with LoopProgress("training", total, self.step, log=self.log) as progress:
            while self.step < total and not stopped:
                if self.on_epoch and self.epoch_steps and self.step % self.epoch_steps == 0 and self.step:
                    self.on_epoch()
                loss, sel = self._train_step()
                if self.step % self.cfg.log_every == 0 or self.step == total:
                    self._log_step(loss, sel, progress)
                if self.step % self.cfg.val_every == 0 or self.step == total:
                    stopped = self._validate_and_checkpoint()
                if crash is not None:
                    crash.after_checkpoint(self.step, self.dist)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        seconds = time.perf_counter() - started
        return TrainResult(self.step, self.stopping.best_step, self.stopping.best, stopped, seconds, self.history,
                           self.stopping.finished(self.step, total))

    def _train_step(self) -> tuple[torch.Tensor, Any]:
        """One optimiser step on this process's batch of the current step."""
        batch = self.sample(self.step).to(self.device, non_blocking=self.device.type == "cuda")
        self._seed_step()
        with autocast(self.device, self.cfg.precision):
            pred, sel = self.train_model(batch)
        loss = set_loss(self.loss_name, pred.float(), batch.target.float(), self.space, batch.context_index)
        total_loss = loss + sum(sel.aux_losses.values(), torch.zeros((), device=loss.device))
        self.optimizer.zero_grad(set_to_none=True)
        total_loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self._window_cells += batch.ctrl.shape[0] * batch.ctrl.shape[1] * self.dist.world_size
        return loss, sel

    def _log_step(self, loss: torch.Tensor, sel: Any, progress: LoopProgress) -> None:
        now = time.perf_counter()
        record = {"step": self.step, "loss": round(float(loss.detach()), 6),
                  "aux": {k: round(float(v.detach()), 6) for k, v in sel.aux_losses.items()},
                  "lr": self.scheduler.get_last_lr()[0],
                  "cells_per_s": round(self._window_cells / max(now - self._window_start, 1e-9), 1),
                  **{k: round(v, 4) for k, v in sel.stats.items()}}
        self._record(record)
        self._window_start, self._window_cells = now, 0
        progress.update(self.step, loss=record["loss"], keep=sel.stats.get("keep_ratio"),
                        cells_per_s=record["cells_per_s"])

    def _validate_and_checkpoint(self) -> bool:
        """Validate, keep the weights if they are the best, write checkpoint.pt; True: stop now."""
        val = self.validate()
        record = {"step": self.step, "val_energy": None if val is None or not math.isfinite(val) else round(val, 6)}
        self.history.append(record)
        self._record(record)
        decision = self.stopping.update(self.step, val)
        if decision.improved:
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.step == 0 and self.start_state is None:
            self.start_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, self.state())
        if decision.stop:
            self.log(f"early stop at step {self.step}: {self.stopping.reason}")
        return decision.stop
