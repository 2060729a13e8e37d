"""Finished runs read back: the result of a run, and what its folder says about comparing runs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import ExperimentConfig
from ..data.dataset import PerturbationData
from ..errors import ConfigError, RunFolderError
from ..evaluation.aggregate import summary_frame
from ..evaluation.verdict import describe_fit, start_name
from ..files import read_json
from ..markup import read_json_file
from .cells import HeldCells
from .folder import FINISHED


@dataclass
class RunResult(HeldCells):
    """A finished run: its folder, config, metrics (long table and aggregates) and, as AnnData,
    ``predictions`` and ``real`` (held in memory with ``keep_cells``, else read from the folder)."""

    run_dir: Path
    config: ExperimentConfig
    metrics: pd.DataFrame  # long table (pert, context, metric, value)
    summary: dict[str, Any]  # metric -> aggregates
    retrieval: pd.DataFrame | None = None  # retrieval trace of the test groups
    training: dict[str, Any] | None = None  # steps, best step, best validation energy, seconds
    comparisons: list[RunResult] | None = None  # runs of the `compare:` presets, same split/seed
    verdicts: list[Any] | None = None  # retrieval runs vs the best baseline (evaluation/verdict.py)
    uses_retrieval: bool = False  # the model used retrieved candidates (its components' capabilities)
    members: list[str] = field(default_factory=list)  # an ensemble's member presets (stack)
    cells: Any = field(default=None, repr=False)  # CellEvalData held in memory (keep_cells), else read back
    # the screen the run read: its comparisons reuse it instead of reading it again, then release it
    screen: PerturbationData | None = field(default=None, repr=False, compare=False)

    @property
    def folder(self) -> Path:
        return self.run_dir

    @property
    def aggregates(self) -> pd.DataFrame:
        """metrics.json's aggregates as a table: one row per metric."""
        return summary_frame(self.summary)

    @property
    def fit_summary(self) -> str | None:
        """In words: an ensemble's fitted weights and what the selection rule kept, with both
        validation scores (None for a run without a fit or a protected start)."""
        return describe_fit(self.config.preset or self.config.generator.name, self.training, start_name(self.members))


def recorded_fingerprint(folder: str | Path) -> dict[str, Any] | None:
    """The hashes a finished run recorded in metrics.json (None for runs made before them)."""
    fingerprint = run_record(folder).get("fingerprint")
    return fingerprint if isinstance(fingerprint, dict) and fingerprint.get("data") else None


def _by_hash(items: list[tuple[str, str]]) -> str:
    groups: dict[str, list[str]] = {}
    for name, value in items:
        groups.setdefault(value, []).append(name)
    return "; ".join(f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''} on {value[:8]}"
                     for value, names in groups.items())


def comparability(folders: list[Path]) -> tuple[list[str], bool]:
    """(warnings, comparable): runs of one seed must share their data (else not comparable) and
    their split (else they were scored on different perturbations). Seeds, and the settings of an
    ablation grid (``name@setting-sN``), may differ in data on purpose, so runs are compared within
    one (setting, seed)."""
    found = {Path(f): recorded_fingerprint(f) for f in folders}
    known = {f: fp for f, fp in found.items() if fp}
    warnings, comparable = [], True
    by_seed: dict[Any, list[Path]] = {}
    for f, fp in known.items():
        by_seed.setdefault(f"{_setting_of(f.name)}seed {fp.get('seed')}", []).append(f)
    for seed, members in by_seed.items():
        data = [(f.name, known[f]["data"]) for f in members]
        if len({d for _, d in data}) > 1:
            comparable = False
            warnings.append(f"runs of {seed} were made on different data (data hash: {_by_hash(data)}); "
                            "their numbers are not comparable, so no best is marked")
            continue
        split = [(f.name, known[f]["split"]) for f in members]
        if len({s for _, s in split}) > 1:
            warnings.append(f"runs of {seed} used different splits (split hash: {_by_hash(split)}); they "
                            "were scored on different held-out perturbations")
    missing = [f.name for f, fp in found.items() if fp is None]
    if missing and known:
        warnings.append(f"{len(missing)} run(s) carry no data fingerprint (made by an older ptrag: "
                        f"{', '.join(missing[:3])}); they were not checked")
    return warnings, comparable


def _setting_of(folder_name: str) -> str:
    """The grid setting a folder belongs to ('' for a plain run): 'grn-0 ' for 'stack@grn-0-s1'."""
    if "@" not in folder_name:
        return ""
    return folder_name.split("@", 1)[1].rsplit("-s", 1)[0] + " "


def require_same_data(a: list[Path], b: list[Path], names: tuple[str, str]) -> None:
    """A paired test pairs the same held-out cells: refuse runs made on different data."""
    fa, fb = [recorded_fingerprint(f) for f in a], [recorded_fingerprint(f) for f in b]
    if not all(fa) or not all(fb):
        return  # made before fingerprints: cannot tell
    da, db = {fp["data"] for fp in fa}, {fp["data"] for fp in fb}
    if da != db:
        raise RunFolderError(f"--compare {names[0]} {names[1]}: the two were made on different data (data hash "
                             f"{', '.join(sorted(h[:8] for h in da))} vs {', '.join(sorted(h[:8] for h in db))}); "
                             "a paired test needs the same held-out cells, so compare runs on the same data")


def read_result(folder: Path, config: ExperimentConfig) -> RunResult:
    """A finished run read back from its folder (reused, not rerun); its cells stay on disk."""
    body = read_run(folder)
    run = body.get("run") or {}
    trace = folder / "retrieval.csv"
    return RunResult(folder, config, pd.read_csv(folder / "metrics.csv"), body["metrics"],
                     retrieval=pd.read_csv(trace) if trace.is_file() else None, training=run.get("training"),
                     uses_retrieval=bool(run.get("uses_retrieval")), members=list(run.get("members") or []))


def read_run(folder: str | Path) -> dict[str, Any]:
    """A finished run's metrics.json, checked to be the record ptrag writes (``run``: a mapping;
    ``metrics``: metric -> {mean, ci95, direction, ...}), or one line naming the file and what is
    wrong: the file is read by people's tools too, and an edit must not end in a traceback."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: not a finished run (no metrics.json)")
    body = read_json_file(path)
    problem = _record_problem(body)
    if problem:
        raise ConfigError(f"{path}: not a metrics.json ptrag wrote ({problem}); restore it from the run (ptrag run "
                          "writes it last) or run again")
    return body


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _record_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return f"a {type(body).__name__}, not an object"
    if not isinstance(body.get("run", {}), dict):
        return "'run' is not an object"
    metrics = body.get("metrics")
    if not isinstance(metrics, dict):
        return "no 'metrics' object"
    for name, agg in metrics.items():
        ci = agg.get("ci95") if isinstance(agg, dict) else None
        well_formed = isinstance(agg, dict) and _number(agg.get("mean")) and agg.get("direction") in ("lower", "higher")
        if not well_formed or not (isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci))):
            return f"metric {name!r} is not {{mean, ci95: [lo, hi], direction: lower|higher}}"
    return None


def run_record(folder: str | Path) -> dict[str, Any]:
    """metrics.json's ``run`` section for what reading tolerates missing (fits, figures): {} when the
    file is missing, unreadable or not ptrag's."""
    body = read_json(Path(folder) / FINISHED) or {}
    run = body.get("run")
    return run if isinstance(run, dict) else {}


def run_label(folder: Path) -> tuple[str, int | None]:
    """``name-s3`` -> (name, 3): seeds of one configuration are aggregated together."""
    m = re.fullmatch(r"(.+)-s(\d+)", folder.name)
    return (m.group(1), int(m.group(2))) if m else (folder.name, None)


def comparison_table(folders: list[Path],
                     name_of: Callable[[Path], tuple[str, int | None]] = run_label) -> pd.DataFrame:
    """One row per configuration x metric: mean over seeds of the run means, their sd, and the
    per-run 95% bootstrap intervals' mean ends (a single run: its own interval); ``name_of``:
    a folder's (configuration name, seed), by default from its folder name."""
    rows = []
    for folder in folders:
        folder = Path(folder)
        if not (folder / "metrics.json").is_file():
            continue
        body = read_run(folder)
        name, seed = name_of(folder)
        for metric, agg in body["metrics"].items():
            rows.append({"run": name, "seed": seed, "metric": metric, "mean": agg["mean"],
                         "ci95_lo": agg["ci95"][0], "ci95_hi": agg["ci95"][1],
                         "direction": agg["direction"], "n": agg.get("n")})
    if not rows:
        return pd.DataFrame(columns=["run", "metric", "direction", "mean", "sd", "seeds", "ci95_lo", "ci95_hi"])
    long = pd.DataFrame(rows)
    order = list(dict.fromkeys(long.run))
    metric_order = list(dict.fromkeys(long.metric))
    table = (long.groupby(["run", "metric"], sort=False)
             .agg(direction=("direction", "first"), mean=("mean", "mean"),
                  sd=("mean", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")),
                  seeds=("mean", "size"), ci95_lo=("ci95_lo", "mean"), ci95_hi=("ci95_hi", "mean"))
             .reset_index())
    table["run"] = pd.Categorical(table["run"], order)
    table["metric"] = pd.Categorical(table["metric"], metric_order)
    return table.sort_values(["metric", "run"]).reset_index(drop=True).astype({"run": str, "metric": str})
