"""Progress of long loops (training steps, predicted groups) wherever the output goes.

On a terminal: a rich bar. Elsewhere (a pipe, a log file, CI): a plain line about every tenth
of the work and at least every ``PLAIN_EVERY_S`` seconds, with the step, loss, keep ratio,
cells/s and the time left, so a log shows that the run is alive and how far it is. While the
loop runs, Python warnings are caught and shown once each as one line through the same output,
so a warning never breaks the bar.

Warnings are worded in one place, :func:`warning_line` (the loop's and the command line's): a
library warning ptrag knows (:data:`LIBRARY_NOTES`) becomes a ``note:`` that says what it means
for the user, or nothing when it adds nothing to what ptrag says itself; any other warning is one
``warning:`` line, never hidden.
"""

from __future__ import annotations

import math
import re
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

PLAIN_EVERY_S = 60.0

#: library messages (warnings, and matplotlib's logged warnings) in ptrag's words: (pattern, note
#: with the pattern's groups as {0}, {1}, ...); a note of None silences a message that adds nothing
LIBRARY_NOTES: tuple[tuple[str, str | None], ...] = (
    # anndata, on repeated gene or cell names: ptrag's data checks say it in their own words (an
    # error for genes, a note for cells), with what follows from it
    (r"(?:Variable|Observation) names are not unique", None),
    # matplotlib, drawing a run or gene name in `ptrag report`'s figures
    (r"Glyph \d+ \((.+?)\) missing from (?:current font|font\(s\) (.+?))\.?$",
     "figures: the font {1} has no glyph for some characters of the run or gene names (first: {0}); they show "
     "as empty boxes in the PNG figures, and as they are in report.html and the tables"),
    # matplotlib, importing with a home folder it cannot write (containers, clusters): the next line says it all
    (r"(?:mkdir -p failed for path|.* is not a writable directory)", None),
    (r"Matplotlib created a temporary cache directory at .* there was an issue with (?:the default path |"
     r"MPLCONFIGDIR )?\(?(.+?)\)?; it is",
     "figures: matplotlib has no writable cache folder ({0}), so every ptrag report rebuilds its font cache in "
     "a temporary folder (slow); set MPLCONFIGDIR to a writable folder"),
    (r"Matplotlib is building the font cache", "figures: matplotlib is building its font cache (first use only; "
     "this can take a minute)"),
)


def _decoded(group: str | None) -> str:
    """A matched group as it reads (matplotlib writes a missing glyph as an ``\\N{NAME}`` escape)."""
    if group and group.startswith("\\N{"):
        try:
            return group.encode("ascii").decode("unicode_escape")
        except (UnicodeError, ValueError):
            return group
    return group or ""


def library_note(text: str) -> tuple[str, str | None] | None:
    """(key, ``note: ...`` or None: silenced) for a library message in :data:`LIBRARY_NOTES`; None
    for any other. The key is the table entry, so repeats (one per glyph, say) show once."""
    for index, (pattern, note) in enumerate(LIBRARY_NOTES):
        match = re.search(pattern, text)
        if match:
            words = None if note is None else "note: " + note.format(*map(_decoded, match.groups()))
            return f"library-{index}", words
    return None


def _where(filename: str) -> str:
    """A warning's file, short: from the installed package's folder on."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def warning_line(message: Any, category: type, filename: str, lineno: int) -> tuple[str, str] | None:
    """(key to show it once by, the one line) for a Python warning; None when it is silenced."""
    text = " ".join(str(message).split())
    known = library_note(text)
    if known is not None:
        return None if known[1] is None else (known[0], known[1])
    if category.__module__.startswith("ptrag."):  # ptrag's own (LegacyContractWarning): its words say it all
        return text, f"warning: {text}"
    return f"{category.__name__}: {text}", f"warning: {category.__name__}: {text} ({_where(filename)}:{lineno})"


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
        shown = warning_line(message, category, filename, lineno)
        if shown is not None and shown[0] not in self._seen:
            self._seen.add(shown[0])
            self.message(shown[1])

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
