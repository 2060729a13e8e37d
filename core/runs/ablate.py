"""Ablation grids: several configurations x seeds, one folder each, one comparison table.

Grid YAML (documented in docs/metrics.md and docs/examples/ablation.yaml)::

    base: {data: {synth_preset: demo}}      # overrides applied to every run (optional)
    seeds: [0, 1, 2]                        # default [0]
    runs:                                   # each: a preset and/or component overrides
      - preset: ptrag
      - {name: ptrag-hnsw, preset: ptrag, retriever: {name: hnsw, k: 32}}
      - {preset: state, set: ["train.steps=200"]}
    settings:                               # optional: every run in every combination of these
      data.synth_family: [v3, grn]
      data.seed: [0, 1, 2]

A run's folder is ``<out>/<name>-s<seed>``, or ``<out>/<name>@<setting>-s<seed>`` in a setting
(``<setting>``: its values joined by ``-``, e.g. ``ptrag@grn-1-s0``). Before anything runs, every folder is checked
against its resolved configuration (runs/folder.py): a finished run of the same
configuration and inputs is skipped, a killed one resumes from its checkpoint, and a folder
holding a run of another configuration (the grid changed) is refused naming the differing keys,
unless ``overwrite`` reruns it. So an interrupted grid resumes where it stopped and the table
never shows old results under a new grid's names.

The grid holds its ``--out`` folder while it runs (a second grid into it is refused at once) and
each run holds its own; a run that fails removes what it created, the grid's finished runs stay.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ExperimentConfig, read_yaml, resolve_config
from ..errors import ConfigError, RunFolderError
from ..files import write_csv, write_json
from ..training.distributed import from_env
from . import marker
from .experiment import run_experiment
from .fingerprints import run_identity
from .folder import inspect_folder, is_legacy, legacy_message, occupied
from .results import comparison_table

RUN_KEYS = {"name", "preset", "set"}
#: what the grid writes into its folder beside the runs (listed in its marker, runs/marker.py)
GRID_FILES = ("ablation.json", "comparison.csv")


@dataclass
class GridRun:
    name: str
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)


@dataclass
class Grid:
    runs: list[GridRun]
    seeds: list[int]
    base: dict[str, Any]
    source: str = "<grid>"
    sets: list[str] = field(default_factory=list)  # --set overrides for every run (after each run's own)
    settings: list[tuple[str, list[str]]] = field(default_factory=lambda: [("", [])])  # (label, --set overrides)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "run"


def parse_grid(raw: dict[str, Any], source: str = "<grid>") -> Grid:
    unknown = set(raw) - {"runs", "seeds", "base", "settings"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; a grid has runs, seeds, base, "
                          "settings")
    runs_raw = raw.get("runs")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise ConfigError(f"{source}: 'runs' must be a non-empty list, "
                          "e.g. runs: [{preset: ptrag}, {preset: state}]")
    seeds = raw.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) else seeds
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                            for s in seeds):
        raise ConfigError(f"{source}: 'seeds' must be a list of integers, e.g. seeds: [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: 'seeds' lists {sorted({s for s in seeds if seeds.count(s) > 1})} more than once; "
                          "each seed runs once")
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{source}: 'base' must be a mapping of config overrides")
    runs, names = [], set()
    for i, item in enumerate(runs_raw):
        if isinstance(item, str):
            item = {"preset": item}
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: runs[{i}] must be a preset name or a mapping")
        body = dict(item)
        preset = body.pop("preset", None)
        sets = body.pop("set", []) or []
        sets = [sets] if isinstance(sets, str) else list(sets)
        overrides = {k: v for k, v in body.items() if k != "name"}
        name = str(body.get("name") or preset or "")
        if not name:
            raise ConfigError(f"{source}: runs[{i}] needs a 'name' when it has no 'preset'")
        name = _slug(name)
        if name in names:
            raise ConfigError(f"{source}: two runs are named {name!r}; give one a distinct 'name'")
        names.add(name)
        runs.append(GridRun(name, preset, overrides, [str(s) for s in sets]))
    return Grid(runs, [int(s) for s in seeds], base, source, settings=_settings(raw.get("settings"), source))


def _settings(raw: Any, source: str) -> list[tuple[str, list[str]]]:
    """Every combination of the settings' values, as (label, --set overrides)."""
    if not raw:
        return [("", [])]
    if not isinstance(raw, dict) or not all(isinstance(v, list) and v for v in raw.values()):
        raise ConfigError(f"{source}: 'settings' must map config keys to non-empty lists of values, "
                          "e.g. settings: {data.seed: [0, 1, 2]}")
    combos = [("", [])]
    for key, values in raw.items():
        combos = [(f"{label}-{value}".lstrip("-"), [*sets, f"{key}={value}"]) for label, sets in combos
                  for value in values]
    return [(_slug(label), sets) for label, sets in combos]


def load_grid(path: str | Path) -> Grid:
    return parse_grid(read_yaml(path), str(path))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def run_dir_for(out: Path, run: GridRun, seed: int, setting: str = "") -> Path:
    return out / f"{run.name}{'@' + setting if setting else ''}-s{seed}"


def grid_configs(grid: Grid, out: Path, manager: Any = None) -> list[tuple[GridRun, int, ExperimentConfig]]:
    """Resolve and validate every (run, setting, seed) config before any work starts; each config's
    ``output.dir`` is its folder."""
    configs = []
    for label, setting in grid.settings:
        for seed in grid.seeds:  # seed-major: an interrupted grid has every configuration's first seeds
            for run in grid.runs:
                extra = _merge(grid.base, run.overrides)
                folder = str(run_dir_for(out, run, seed, label))
                extra = _merge(extra, {"seed": seed, "output": {"dir": folder}})
                try:
                    cfg = resolve_config(None, preset=run.preset, sets=[*run.sets, *setting, *grid.sets],
                                         extra=extra, manager=manager)
                except ConfigError as exc:
                    raise ConfigError(f"{grid.source}: run {run.name!r}: {exc}") from None
                if cfg.output.dir != folder:  # a set, a setting or --set moved it: never outside --out
                    raise ConfigError(f"{grid.source}: run {run.name!r} sets output.dir ({cfg.output.dir}); a grid "
                                      f"writes each run into its --out, here {folder}: remove output.dir from the "
                                      "grid and --set")
                configs.append((run, seed, cfg.model_copy(update={"compare": []})))
    return configs


def run_grid(grid: Grid, out: str | Path, manager: Any, *,
             log: Callable[[str], None] = lambda message: None,
             runner: Callable[..., Any] | None = None, overwrite: bool = False) -> pd.DataFrame:
    """Run every missing (run, seed), resume killed ones, skip finished ones of the same
    configuration (see the module docstring); return and write the comparison table."""
    runner = runner or run_experiment
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: exists and is a file, not a folder; give a folder path")
    configs = grid_configs(grid, out, manager)
    main = from_env().is_main
    with occupied(out, clean=False) if main else contextlib.nullcontext():  # rank 0 holds it
        mark = _grid_folder(out) if main else None
        states = _states(configs, overwrite)
        made = main and mark is None
        if made:
            marker.create(out, "ablation")
        try:
            return _run_all(grid, out, manager, configs, states, log, runner)
        except BaseException:
            if made and not any((out / name).exists() for name in marker.read(out).files):
                (out / marker.MARKER).unlink()  # nothing of the grid's stayed: the folder is as it was
            raise


def _grid_folder(out: Path) -> marker.Marker | None:
    """The grid folder's marker (None: none yet). It may hold the user's files, never where the
    grid writes; a folder of another kind, or a grid of a ptrag before markers, is refused."""
    mark = marker.read(out)
    if mark is None and is_legacy(out):
        raise RunFolderError(legacy_message(out, "--out", "grid" if (out / "ablation.json").is_file() else "run"))
    if mark is not None and mark.kind != "ablation":
        raise RunFolderError(f"--out {out}: holds a ptrag {mark.kind}, not an ablation grid; choose another --out")
    taken = [name for name in GRID_FILES if (out / name).exists() and (mark is None or name not in mark.files)]
    if taken:
        raise RunFolderError(f"--out {out}: holds {', '.join(taken)}, which ptrag did not write, where the grid writes "
                             "its table; move it away or choose another --out")
    return mark


def _states(configs: list[tuple[GridRun, int, ExperimentConfig]], overwrite: bool) -> list[Any]:
    """What each run's folder holds; a folder the grid may not use is refused before anything runs."""
    states = [inspect_folder(cfg.output.dir, run_identity(cfg)) for _, _, cfg in configs]
    for (_, _, cfg), state in zip(configs, states, strict=True):
        folder = Path(cfg.output.dir)
        if state.kind == "foreign":
            raise RunFolderError(f"{folder}: holds files that are not a ptrag run ({state.differences[0]}); "
                                 "move them or choose another --out")
        if state.kind == "legacy":
            raise RunFolderError(legacy_message(folder, "--out"))
        if state.kind in ("different", "new-kind") and not overwrite:
            changed = sum(s.kind in ("different", "new-kind") for s in states)
            raise RunFolderError(f"{folder}: holds a run of another configuration "
                                 f"({'; '.join(state.differences[:3])}); "
                                 f"the grid changed since it ran ({changed} run(s) differ): choose another --out, or "
                                 "pass --overwrite to rerun the changed runs")
    return states


def _run_all(grid: Grid, out: Path, manager: Any, configs: list[tuple[GridRun, int, ExperimentConfig]],
             states: list[Any], log: Callable[[str], None], runner: Callable[..., Any]) -> pd.DataFrame:
    for i, ((_, _, cfg), state) in enumerate(zip(configs, states, strict=True), 1):
        folder = Path(cfg.output.dir)
        if state.kind == "finished":
            log(f"[{i}/{len(configs)}] {folder.name}: done already, skipped (same configuration and inputs)")
            continue
        how = {"checkpoint": "resuming from its checkpoint", "different": "rerun: its configuration changed",
               "stopped": "starting again (stopped before its first checkpoint)"}.get(state.kind, "")
        log(f"[{i}/{len(configs)}] {folder.name}: preset={cfg.preset} generator={cfg.generator.name} "
            f"retriever={cfg.retriever.name} selector={cfg.selector.name}" + (f"; {how}" if how else ""))
        options = {"resume": True} if state.kind == "checkpoint" else \
            {"overwrite": True} if state.kind in ("different", "new-kind") else {}
        runner(cfg, manager, log=lambda message: log(f"    {message}"), **options)
    entries = [(f"{r.name}@{label}" if label else r.name, [run_dir_for(out, r, seed, label) for seed in grid.seeds])
               for label, _ in grid.settings for r in grid.runs]
    write_json(out / "ablation.json", {
        "runs": [{"name": name, "folders": [f.name for f in folders]} for name, folders in entries],
        "seeds": grid.seeds, "settings": [label for label, _ in grid.settings if label],
    })
    table = comparison_table([f for _, folders in entries for f in folders])
    write_csv(out / "comparison.csv", table)
    return table
