"""Device choice, seeding and (with trainable generators) the training loop."""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .losses import PCSpace, set_distance, set_loss
from .progress import LoopProgress


def seed_everything(seed: int) -> np.random.Generator:
    """One seed drives Python, NumPy and torch; returns the NumPy generator for sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but it is not available; use --device auto or cpu")
    return torch.device(name)


# --------------------------------------------------------------------------- training


def autocast(device: torch.device):
    """bf16 autocast on CUDA only; a no-op context elsewhere (CPU/MPS run in float32)."""
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


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


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Every random state a training step reads: NumPy sampling, torch (CPU, CUDA), Python."""
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically so an interrupt never leaves a half-written checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint; was the run started with this ptrag version?")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # our own file
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from None


def load_weights(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """``model.load_state_dict`` with one line instead of torch's traceback when they differ."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{path}: the saved weights do not fit this model ({first}); use the run's own "
                          "configuration (config.yaml) and ptrag version") from None


@dataclass
class TrainResult:
    steps: int
    best_step: int
    best_val: float
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """One training loop for every trainable model.

    AdamW or Adam, linear warmup + cosine (or constant) LR, gradient clipping, validation (energy
    distance on fixed cell sets of the validation groups) before training and every ``val_every``
    steps, best weights by validation energy (the untrained start is a candidate, so a model built
    to start at a strong baseline never ends worse than it on validation), early stop after
    ``patience`` validations without improvement. ``checkpoint.pt`` is
    written at every validation and holds everything a resumed run needs to continue to the same
    result on CPU: model, optimiser, scheduler, step, best weights and all random states.
    """

    def __init__(self, model: nn.Module, *, sample: Callable[[int, np.random.Generator], Any],
                 val_batches: list[Any], train_cfg: Any, loss: str, device: torch.device,
                 rng: np.random.Generator, run_dir: Path, meta: dict[str, Any] | None = None,
                 on_epoch: Callable[[], None] | None = None, epoch_steps: int = 0,
                 space: PCSpace | None = None, log: Callable[[str], None] = lambda message: None):
        self.model, self.sample, self.val_batches = model, sample, val_batches
        self.space = space.to(device) if space is not None else None
        self.cfg, self.loss_name, self.device, self.rng = train_cfg, loss, device, rng
        self.run_dir, self.meta, self.log = Path(run_dir), meta or {}, log
        self.on_epoch, self.epoch_steps = on_epoch, epoch_steps
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(params, train_cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(train_cfg.warmup_steps, train_cfg.steps, train_cfg.schedule))
        self.step, self.best_val, self.best_step, self.bad_vals = 0, math.inf, 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None
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
            "model": self.model.state_dict(), "best_model": self.best_state,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "best_val": self.best_val, "best_step": self.best_step,
            "bad_vals": self.bad_vals, "history": self.history, "rng": rng_state(self.rng),
            "meta": self.meta,
        }

    def resume(self) -> None:
        """Continue from ``checkpoint.pt``; log records past its step are dropped (they re-run)."""
        ck = load_checkpoint(self.checkpoint_path)
        load_weights(self.model, ck["model"], self.checkpoint_path)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.step, self.best_val, self.best_step = ck["step"], ck["best_val"], ck["best_step"]
        self.bad_vals, self.history, self.best_state = ck["bad_vals"], ck["history"], ck["best_model"]
        set_rng_state(self.rng, ck["rng"])
        if self.log_path.is_file():
            kept = [line for line in self.log_path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.step]
            self.log_path.write_text("".join(line + "\n" for line in kept))
        self.log(f"resumed at step {self.step} (best validation energy {self.best_val:.4g} at step {self.best_step})")

    # ------------------------------------------------------------------ loop

    @torch.no_grad()
    def validate(self) -> float:
        """Mean energy distance (in the loss's space: genes or PCs) over the fixed validation cell
        sets (nan when there are none)."""
        if not self.val_batches:
            return math.nan
        self.model.eval()
        values = []
        distance = "mse" if self.loss_name == "mse" else self.loss_name.removesuffix("+mse")
        for batch in self.val_batches:
            batch = batch.to(self.device)
            with autocast(self.device):
                pred, _ = self.model(batch)
            values.append(set_distance(distance, pred.float(), batch.target.float(), self.space,
                                       batch.context_index).cpu())
        self.model.train()
        return float(torch.cat(values).mean())

    def _record(self, record: dict[str, Any]) -> None:
        with self.log_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def fit(self, *, resume: bool = False, stop_at: int | None = None) -> TrainResult:
        """Train to ``train.steps`` (or early stop). ``stop_at`` interrupts after that step, as a
        crash would, leaving the last checkpoint behind (used to test resuming)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.resume()
        elif self.step == 0 and not self.history:
            self._validate_and_checkpoint()  # the untrained start: step 0 of the history
        cfg, total = self.cfg, self.cfg.steps
        started = time.perf_counter()
        window_t, window_cells, stopped = time.perf_counter(), 0, False
        self.model.train()
        with LoopProgress("training", total, self.step, log=self.log) as progress:
            while self.step < total:
                if self.on_epoch and self.epoch_steps and self.step % self.epoch_steps == 0 and self.step:
                    self.on_epoch()
                batch = self.sample(cfg.batch_size, self.rng).to(self.device)
                with autocast(self.device):
                    pred, sel = self.model(batch)
                loss = set_loss(self.loss_name, pred.float(), batch.target.float(), self.space, batch.context_index)
                total_loss = loss + sum(sel.aux_losses.values(), torch.zeros((), device=loss.device))
                self.optimizer.zero_grad(set_to_none=True)
                total_loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                window_cells += batch.ctrl.shape[0] * batch.ctrl.shape[1]
                if self.step % cfg.log_every == 0 or self.step == total:
                    now = time.perf_counter()
                    record = {"step": self.step, "loss": round(float(loss.detach()), 6),
                              "aux": {k: round(float(v.detach()), 6) for k, v in sel.aux_losses.items()},
                              "lr": self.scheduler.get_last_lr()[0],
                              "cells_per_s": round(window_cells / max(now - window_t, 1e-9), 1),
                              **{k: round(v, 4) for k, v in sel.stats.items()}}
                    self._record(record)
                    window_t, window_cells = now, 0
                    progress.update(self.step, loss=record["loss"], keep=sel.stats.get("keep_ratio"),
                                    cells_per_s=record["cells_per_s"])
                if self.step % cfg.val_every == 0 or self.step == total:
                    stopped = self._validate_and_checkpoint()
                    if stopped:
                        break
                if stop_at is not None and self.step >= stop_at:
                    raise KeyboardInterrupt
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        seconds = time.perf_counter() - started
        return TrainResult(self.step, self.best_step, self.best_val, stopped, seconds, self.history)

    def _validate_and_checkpoint(self) -> bool:
        val = self.validate()
        record = {"step": self.step, "val_energy": None if math.isnan(val) else round(val, 6)}
        self.history.append(record)
        self._record(record)
        if math.isnan(val) or val < self.best_val:
            self.best_val = val if not math.isnan(val) else self.best_val
            self.best_step, self.bad_vals = self.step, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad_vals += 1
        save_checkpoint(self.checkpoint_path, self.state())
        if self.cfg.patience and self.bad_vals >= self.cfg.patience:
            self.log(f"early stop at step {self.step}: no validation improvement in {self.bad_vals} checks")
            return True
        return False
