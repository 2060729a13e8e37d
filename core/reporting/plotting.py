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
    """Write each point's name beside it, towards the panel's centre, joined to it by a thin line;
    the names on one side are spread apart (away from the nearer edge) so that none covers another."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    gap, dx = (y1 - y0) * 0.06, (x1 - x0) * 0.05
    points = [(float(a), float(b), str(n)) for a, b, n in zip(np.asarray(x, float), np.asarray(y, float), names,
                                                              strict=True) if np.isfinite(a) and np.isfinite(b)]
    for right in (True, False):  # points right of the centre are named to their left, and the reverse
        side = [p for p in points if (p[0] > (x0 + x1) / 2) == right]
        upwards = bool(side) and float(np.mean([p[1] for p in side])) < (y0 + y1) / 2  # low points: spread up
        last = -np.inf if upwards else np.inf
        for px, py, name in sorted(side, key=lambda p: p[1] if upwards else -p[1]):
            ty = max(py, last + gap) if upwards else min(py, last - gap)
            last = ty
            ax.annotate(name, (px, py), xytext=(px - dx if right else px + dx, ty), textcoords="data",
                        ha="right" if right else "left", va="center", fontsize=fontsize, color=colour, zorder=4,
                        arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.4, "alpha": 0.7},
                        bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.7})


def pick_extremes(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest |values| (finite only), for naming the points that matter most."""
    values = np.where(np.isfinite(values), np.abs(values), -np.inf)
    order = np.argsort(-values, kind="stable")
    return order[:n][np.isfinite(values[order[:n]])]
