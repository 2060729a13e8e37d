"""Finished run folders found and read back: their per-perturbation scores, paired against each other."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, DataError
from ..evaluation.paired import paired_tests
from ..markup import read_json_file
from ..runs.results import require_same_data, run_label


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders named by ``paths``: a run folder, an ablation folder, or a folder of runs."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if (path / "ablation.json").is_file():
            body = read_json_file(path / "ablation.json")
            out += [path / f for r in body["runs"] for f in r["folders"] if (path / f / "metrics.json").is_file()]
        elif (path / "metrics.json").is_file():
            out.append(path)
        elif path.is_dir() and (found := sorted(p.parent for p in path.glob("*/metrics.json"))):
            out += found
        else:
            raise ConfigError(f"{path}: not a run folder (no metrics.json), an ablation folder or a folder of runs")
    return list(dict.fromkeys(out))


def per_perturbation(folders: Sequence[Path]) -> pd.DataFrame:
    """metrics.csv of the folders, averaged over seeds per (pert, context, metric)."""
    frames = []
    for folder in folders:
        path = Path(folder) / "metrics.csv"
        if not path.is_file():
            raise DataError(f"{folder}: no metrics.csv")
        frames.append(pd.read_csv(path))
    long = pd.concat(frames)
    return long.groupby(["pert", "context", "metric"], sort=False, as_index=False)["value"].mean()


def select_runs(name: str, folders: Sequence[Path]) -> list[Path]:
    path = Path(name)
    if (path / "metrics.csv").is_file():
        return [path]
    chosen = [f for f in folders if run_label(f)[0] == name or f.name == name]
    if not chosen:
        known = ", ".join(dict.fromkeys(run_label(f)[0] for f in folders)) or "none"
        raise ConfigError(f"--compare {name}: no such run folder or run name; runs: {known}")
    return chosen


def directions(folders: Sequence[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in folders:
        for metric, agg in read_json_file(Path(f) / "metrics.json")["metrics"].items():
            out.setdefault(metric, agg["direction"])
    return out


def paired_comparison(a: str | Path, b: str | Path, folders: Sequence[Path] = ()) -> pd.DataFrame:
    """Per metric, over the perturbations both runs scored: mean of A - B, A's win rate (ties
    count half, direction-aware) and the Wilcoxon signed-rank p-value of the paired differences."""
    fa, fb = select_runs(str(a), folders), select_runs(str(b), folders)
    require_same_data(fa, fb, (str(a), str(b)))
    return paired_tests(per_perturbation(fa), per_perturbation(fb), directions([*fa, *fb]))
