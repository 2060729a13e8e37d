"""What a report calls each run: its configuration's name, its setting and its seed.

A run made by ``ptrag run`` is called by its preset, read from its config.yaml, whatever its
folder is called (a timestamp, or what ``--out`` named), and so are its comparisons in
``compare/<preset>``: a run and its comparisons are one setting. A grid run (``ptrag ablate``:
``<name>@<setting>-s<seed>``, or ``<name>-s<seed>`` beside ablation.json) is called by its grid
name and setting. When runs of several run trees would share a name and a seed, each tree is a
setting of its own, named by its top folder, so nothing is averaged across trees as if seeds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from ..errors import PtragError
from ..markup import load_yaml, read_text
from ..runs.results import run_label


@dataclass(frozen=True)
class RunKey:
    name: str  # the configuration: a preset, or a grid run's name
    setting: str  # a grid setting or a run tree ('' for the runs of one plain tree)
    seed: int | None

    @property
    def label(self) -> str:
        """The column a table shows: seeds of one (name, setting) are aggregated under it."""
        return f"{self.name}@{self.setting}" if self.setting else self.name


def tree_top(folder: Path) -> Path:
    """The run a folder belongs to: itself, or the run whose ``compare/`` holds it."""
    return folder.parent.parent if folder.parent.name == "compare" else folder


def _config(folder: Path) -> dict:
    try:
        return load_yaml(read_text(folder / "config.yaml"), str(folder / "config.yaml")) or {}
    except (OSError, yaml.YAMLError, PtragError):
        return {}


def _key(folder: Path) -> tuple[RunKey, bool]:
    """(key, whether it is a grid run)."""
    name, seed = run_label(folder)
    if "@" in name or (folder.parent / "ablation.json").is_file():
        grid, _, setting = name.partition("@")
        return RunKey(grid, setting, seed), True
    config = _config(folder)
    preset = config.get("preset")
    if preset:
        seed = config.get("seed", seed)
        return RunKey(str(preset), "", int(seed) if seed is not None else None), False
    return RunKey(name, "", seed), False


def label_runs(folders: Sequence[Path]) -> dict[Path, RunKey]:
    """Every folder's key (see the module docstring)."""
    keys, grid = {}, set()
    for folder in map(Path, folders):
        keys[folder], in_grid = _key(folder)
        if in_grid:
            grid.add(folder)
    plain = [f for f in keys if f not in grid]
    if any(n > 1 for n in Counter(keys[f] for f in plain).values()):  # several trees: a setting each
        for f in plain:
            keys[f] = replace(keys[f], setting=tree_top(f).name)
    taken = Counter(keys.values())
    for f in plain:  # the same preset twice in one tree (a run compared with itself): the folder says which
        if taken[keys[f]] > 1 and f != tree_top(f):
            keys[f] = replace(keys[f], name=f"{keys[f].name} ({f.name})")
    return keys
