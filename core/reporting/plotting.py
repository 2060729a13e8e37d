"""What every report figure shares: matplotlib's Agg backend (no display needed), figures written
whole, grids of panels, and named points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..files import atomic_write


def plt_module():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid(n: int, most: int = 4) -> tuple[int, int]:
    cols = min(most, max(n, 1))
    return math.ceil(max(n, 1) / cols), cols


def save(fig, path: Path) -> Path:
    """Every figure is written whole or not at all, and its memory freed."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt_module().close(fig)
    return path


def name_points(ax, x: np.ndarray, y: np.ndarray, names: Sequence[str], colour: str = "black",
                fontsize: float = 6) -> None:
    """Write each point's name beside it, nudged away from the panel's centre so names stay on it."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    for xi, yi, name in zip(np.asarray(x, float), np.asarray(y, float), names, strict=True):
        if not (np.isfinite(xi) and np.isfinite(yi)):
            continue
        right = xi < (x0 + x1) / 2
        up = yi < (y0 + y1) / 2
        ax.annotate(str(name), (xi, yi), xytext=(4 if right else -4, 3 if up else -3), textcoords="offset points",
                    ha="left" if right else "right", va="bottom" if up else "top", fontsize=fontsize,
                    color=colour, zorder=4)


def pick_extremes(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest |values| (finite only), for naming the points that matter most."""
    values = np.where(np.isfinite(values), np.abs(values), -np.inf)
    order = np.argsort(-values, kind="stable")
    return order[:n][np.isfinite(values[order[:n]])]
