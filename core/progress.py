"""Progress of long loops (training steps, predicted groups) wherever the output goes.

On a terminal: a rich bar. Elsewhere (a pipe, a log file, CI): a plain line about every tenth
of the work and at least every ``PLAIN_EVERY_S`` seconds, with the step, loss, keep ratio,
cells/s and the time left, so a log shows that the run is alive and how far it is. While the
loop runs, Python warnings are caught and shown once each as one line through the same output,
so a warning never breaks the bar.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

PLAIN_EVERY_S = 60.0


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LoopProgress:
    """``with LoopProgress("training", total, done, log) as p: p.update(step, loss=..., ...)``."""

    def __init__(self, label: str, total: int, done: int = 0, *, log: Callable[[str], None] = lambda m: None,
                 terminal: bool | None = None):
        self.label, self.total, self.start_done, self.log = label, int(total), int(done), log
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.every = max(1, math.ceil(self.total / 10) if self.total >= 10 else self.total)  # ~10 lines
        self._bar: Any = None
        self._task: Any = None
        self._seen: set[str] = set()
        self._warnings: Any = None
        self._next_mark = (self.start_done // self.every + 1) * self.every
        self._last_line = 0.0
        self._started = 0.0

    # ------------------------------------------------------------------ context

    def __enter__(self) -> LoopProgress:
        self._started = self._last_line = time.perf_counter()
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()  # filters unchanged: only where warnings are shown
        warnings.showwarning = self._show_warning
        if self.terminal and self.total > 0:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.start_done, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
        self._warnings.__exit__(*exc)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    # ------------------------------------------------------------------ output

    def message(self, text: str) -> None:
        """One line above the bar (or in the plain log)."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            self.log(text)

    def _show_warning(self, message: Any, category: type, filename: str, lineno: int, *rest: Any) -> None:
        text = f"warning: {category.__name__}: {' '.join(str(message).split())} ({filename}:{lineno})"
        if text not in self._seen:
            self._seen.add(text)
            self.message(text)

    def _info(self, loss: float | None, keep: float | None, cells_per_s: float | None) -> str:
        parts = []
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        if keep is not None:
            parts.append(f"keep {keep:.2f}")
        if cells_per_s is not None:
            parts.append(f"{cells_per_s:,.0f} cells/s")
        return " ".join(parts)

    def update(self, done: int, *, loss: float | None = None, keep: float | None = None,
               cells_per_s: float | None = None) -> None:
        info = self._info(loss, keep, cells_per_s)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, info=info)
            return
        now = time.perf_counter()
        if done < self._next_mark and done < self.total and now - self._last_line < PLAIN_EVERY_S:
            return
        self._next_mark = (done // self.every + 1) * self.every
        self._last_line = now
        rate = (done - self.start_done) / max(now - self._started, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        pct = 100 * done / self.total if self.total else 100.0
        self.log(f"{self.label} {done}/{self.total} ({pct:.0f}%)" + (f" {info}" if info else "")
                 + (f", {_duration(left)} left" if done < self.total else f" in {_duration(now - self._started)}"))
