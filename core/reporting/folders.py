"""Finished run folders found and read back: their per-perturbation scores, paired against each other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..errors import ConfigError, DataError, PtragError
from ..evaluation.paired import paired_tests
from ..files import read_json
from ..markup import load_yaml, read_json_file, read_text
from ..runs.folder import RESUME_MAY_CHANGE, differences
from ..runs.results import read_run, require_same_data
from .labels import RunKey, label_runs


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders named by ``paths``: a run folder with its comparisons (``compare/<preset>``), an
    ablation folder, or a folder of runs (each with its comparisons)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if (path / "ablation.json").is_file():
            out += [path / f for f in grid_folders(path) if (path / f / "metrics.json").is_file()]
        elif (path / "metrics.json").is_file():
            out += with_comparisons(path)
        elif path.is_dir() and (found := sorted(p.parent for p in path.glob("*/metrics.json"))):
            out += [run for f in found for run in with_comparisons(f)]
        else:
            raise ConfigError(f"{path}: not a run folder (no metrics.json), an ablation folder or a folder of runs")
    unique: dict[Path, Path] = {}
    for p in out:  # each folder once, as first named
        unique.setdefault(p.resolve() if p.exists() else p, p)
    return _named_apart(list(unique.values()))


def grid_folders(path: Path) -> list[str]:
    """The run folders an ablation folder's ablation.json lists, or one line when it is not the
    record ptrag writes ({"runs": [{"folders": [...]}, ...]})."""
    body = read_json_file(path / "ablation.json")
    runs = body.get("runs") if isinstance(body, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("folders"), list)
                                             and all(isinstance(f, str) for f in r["folders"]) for r in runs):
        raise ConfigError(f"{path / 'ablation.json'}: not an ablation.json ptrag wrote (expected "
                          '{"runs": [{"folders": [...]}, ...]}); restore it, or report the run folders themselves')
    return [f for r in runs for f in r["folders"]]


def _named_apart(folders: list[Path]) -> list[Path]:
    """The runs, once each; two runs the report would take for one (the same label and seed, or
    the same label and different configurations: averaged as seeds of one) are one line. Labels are
    the report's own (:func:`label_runs`: run trees of one seed are already settings apart)."""
    keys = label_runs(folders)
    by_label: dict[tuple[str, int | None], Path] = {}
    configs: dict[str, tuple[Path, Any]] = {}
    for folder in folders:
        label = keys[folder].label
        recorded = _recorded(folder)
        seed = keys[folder].seed if keys[folder].seed is not None else (recorded or {}).get("seed")
        other = by_label.setdefault((label, seed), folder)
        first = configs.setdefault(label, (folder, recorded))
        if other != folder or (recorded is not None and first[1] is not None and
                               differences(first[1], recorded, ignore=RESUME_MAY_CHANGE + ("seed", "output"))):
            twin = other if other != folder else first[0]
            why = "the same seed" if other != folder else "different configurations"
            raise ConfigError(f"{twin} and {folder} are both run {label!r} with {why}: the report would average them "
                              "as seeds of one configuration; report them separately, or rename one folder")
    return folders


def _recorded(folder: Path) -> dict[str, Any] | None:
    """The configuration a run recorded (fingerprint.json), None when it has none."""
    body = read_json(Path(folder) / "fingerprint.json")
    config = (body or {}).get("config")
    return config if isinstance(config, dict) else None


def with_comparisons(folder: Path) -> list[Path]:
    """A run and its finished ``compare/`` runs, in the order its config lists them (an ensemble's
    members after); a grid run's members are not its comparisons, so it comes alone."""
    if "@" in folder.name or (folder.parent / "ablation.json").is_file():
        return [folder]
    found = {p.name: p for p in sorted((folder / "compare").glob("*")) if (p / "metrics.json").is_file()}
    try:
        path = folder / "config.yaml"
        listed = list((load_yaml(read_text(path), str(path)) or {}).get("compare") or [])
    except (OSError, yaml.YAMLError, PtragError):
        listed = []
    order = [n for n in listed if n in found] + [n for n in found if n not in listed]
    return [folder, *(found[n] for n in order)]


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


def select_runs(name: str, folders: Sequence[Path], keys: Mapping[Path, RunKey] | None = None) -> list[Path]:
    """The runs ``name`` means: a run folder, or every run (seeds) of that name in the report."""
    path = Path(name)
    if (path / "metrics.csv").is_file():
        return [path]
    keys = keys or label_runs(folders)
    chosen = [f for f in folders if keys[f].label == name or f.name == name]
    if not chosen:
        known = ", ".join(dict.fromkeys(keys[f].label for f in folders)) or "none"
        raise ConfigError(f"--compare {name}: no such run folder or run name; runs: {known}")
    return chosen


def directions(folders: Sequence[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in folders:
        for metric, agg in read_run(f)["metrics"].items():
            out.setdefault(metric, agg["direction"])
    return out


def paired_comparison(a: str | Path, b: str | Path, folders: Sequence[Path] = (),
                      keys: Mapping[Path, RunKey] | None = None) -> pd.DataFrame:
    """Per metric, over the perturbations both runs scored: mean of A - B, A's win rate (ties
    count half, direction-aware) and the Wilcoxon signed-rank p-value of the paired differences."""
    fa, fb = select_runs(str(a), folders, keys), select_runs(str(b), folders, keys)
    require_same_data(fa, fb, (str(a), str(b)))
    return paired_tests(per_perturbation(fa), per_perturbation(fb), directions([*fa, *fb]))
