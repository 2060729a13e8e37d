"""When training stops and which weights it keeps: the best validation value, with a minimum gain.

A validation value counts as an improvement only when it is finite and lower than the best so
far by more than ``min_delta`` (a fraction of the best: 0.002 asks for a 0.2% gain), so a noisy
curve does not keep resetting the count. After ``patience`` validations without an improvement
training stops; the untrained start (step 0) is a candidate like any other, so a model built to
start at a strong baseline never ends worse than it on validation. A run without validation
groups keeps its last weights and trains to ``train.steps``. Every decision is recorded in words.

A non-finite training loss or validation value is no decision but a :class:`Divergence`: training
stops there, and the trainer finishes from finite weights or not at all (``Trainer.fit``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Divergence:
    """Training stopped at the first non-finite value: a training loss or a validation."""

    step: int
    what: str  # in words: "non-finite training loss" or "non-finite validation energy"


@dataclass
class Decision:
    improved: bool  # the weights of this step are the best so far
    stop: bool  # training stops after this validation


@dataclass
class StoppingRule:
    patience: int  # validations without improvement before stopping; 0: never stop early
    min_delta: float = 0.0  # relative gain a validation must show to count as an improvement
    val_every: int = 1  # steps between validations (for the stop reason in words)
    best: float = math.inf
    best_step: int = 0
    bad: int = 0  # validations since the last improvement
    reason: str = ""

    def update(self, step: int, value: float | None) -> Decision:
        """The decision after the validation of ``step`` (``value`` None: no validation groups)."""
        if value is None:  # nothing to validate on: the latest weights are the ones to keep
            self.best_step, self.bad = step, 0
            self.reason = "no validation groups: trained to train.steps and kept the last weights"
            return Decision(improved=True, stop=False)
        threshold = self.best - abs(self.best) * self.min_delta if math.isfinite(self.best) else math.inf
        if math.isfinite(value) and value < threshold:
            self.best, self.best_step, self.bad = value, step, 0
            return Decision(improved=True, stop=False)
        self.bad += 1
        if self.patience and self.bad >= self.patience:
            gain = f"by more than {self.min_delta:.2%} " if self.min_delta else ""
            self.reason = (f"patience: validation did not improve {gain}in {self.bad} validations "
                           f"({self.bad * self.val_every} steps) after step {self.best_step}")
            return Decision(improved=False, stop=True)
        return Decision(improved=False, stop=False)

    def finished(self, step: int, total: int) -> str:
        """Why training ended at ``step`` (after the loop)."""
        if self.reason:
            return self.reason
        return f"cap: reached train.steps={total}" if step >= total else f"stopped at step {step}"

    def state(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad, "reason": self.reason}

    def restore(self, state: dict) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.bad, self.reason = state["bad"], state.get("reason", "")
