"""A simulated crash, for tests of resuming: one mechanism in one process and under torchrun.

``PTRAG_CRASH_AFTER_STEP=N`` makes training stop right after the first checkpoint written at or
after step N: every process exits at once with status 137, as after ``kill -9`` (rank 0 has
written the checkpoint: all ranks wait for it first). ``N:interrupt`` raises KeyboardInterrupt
instead, as Ctrl-C would, so a test in the same process can resume the run it interrupted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import ConfigError
from .distributed import Dist, barrier

CRASH_ENV = "PTRAG_CRASH_AFTER_STEP"


@dataclass(frozen=True)
class CrashPoint:
    step: int
    interrupt: bool = False

    @classmethod
    def from_env(cls) -> CrashPoint | None:
        raw = os.environ.get(CRASH_ENV, "").strip()
        if not raw:
            return None
        step, _, how = raw.partition(":")
        if not step.isdigit() or how not in ("", "exit", "interrupt"):
            raise ConfigError(f"{CRASH_ENV}={raw!r}: expected a step, optionally followed by :exit or :interrupt")
        return cls(int(step), how == "interrupt")

    def after_checkpoint(self, step: int, dist: Dist) -> None:
        """Crash now if training has reached the step (called once a checkpoint is on disk)."""
        if step < self.step:
            return
        if self.interrupt:
            raise KeyboardInterrupt
        barrier(dist)  # rank 0 has written the checkpoint: now every rank dies like kill -9
        os._exit(137)


@contextlib.contextmanager
def crash_after(step: int, *, interrupt: bool = True) -> Iterator[None]:
    """Within the block, training crashes after ``step`` (in-process tests: ``interrupt``)."""
    before = os.environ.get(CRASH_ENV)
    os.environ[CRASH_ENV] = f"{step}:{'interrupt' if interrupt else 'exit'}"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CRASH_ENV, None)
        else:
            os.environ[CRASH_ENV] = before
