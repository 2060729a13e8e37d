"""Bad-input cases of robustness: shallow raw counts, a run folder another thread holds, a resume
after a hand edit of config.yaml, files nested too deeply, and writes that fail (a file-size limit,
as a full quota or disk makes them): one line naming the file, nothing half-written left behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import yaml

from .case import PM, SMALL, Case

DEEP = 3000  # brackets inside each other: the parsers recursed into a RecursionError
TOO_DEEP = "nested too deeply to parse (sections, lists or brackets inside each other, more than the 32 levels"
THREAD = ("another ptrag run (pid 4242 on host lab-host, since 2026-01-01 12:03, in another thread of this process) "
          "is running in this folder; wait for it or choose another --out")

CASES = [
    # ---------------------------------------------------------------- raw counts by integrality
    Case("run-shallow-raw-counts", ["run", *PM, "--data", "{shallow_counts}", "--out", "{new}"],
         "obsm['X_hvg'] looks like raw counts (integer values up to 7",
         why="integer values whatever their maximum: a shallow screen's counts stay below 15"),
    Case("inspect-shallow-raw-counts", ["data", "inspect", "{shallow_counts}"], "looks like raw counts", code=0),
    # ---------------------------------------------------------------- the lock is per run
    Case("run-into-a-folder-another-thread-holds", ["run", *PM, "--out", "{thread_held}"], THREAD,
         held="{thread_held}", why="two ptrag.run threads into one folder both ran"),
    Case("predict-into-a-folder-another-thread-holds", ["predict", "--run", "{run_pm}", "--data", "{tiny}", "--out",
                                                        "{thread_held}"], THREAD, held="{thread_held}"),
    Case("resume-a-run-another-thread-holds", ["run", "--resume", "{thread_killed}"], "in another thread of this "
         "process) is running in this folder", held="{thread_killed}"),
    # ---------------------------------------------------------------- resume after a hand edit
    Case("resume-after-editing-config-yaml", ["run", "--resume", "{killed_edited}"],
         "config.yaml was edited since the run began (train.lr: 0.001 -> 0.01); the checkpoint was trained with the "
         "values fingerprint.json records", why="it trained on with the edited value"),
    Case("resume-after-editing-a-component", ["run", "--resume", "{killed_edited_generator}"],
         "was edited since the run began (generator.n_layers: 1 -> 2)"),
    # ---------------------------------------------------------------- nesting
    Case("run-config-nested-too-deeply", ["run", "--config", "{deep_config}"], TOO_DEEP),
    Case("run-config-nested-40-levels", ["run", "--config", "{nested_config}"],
         "nested_config.yaml: nested 42 levels deep (sections, lists or brackets inside each other), more than the 32"),
    Case("run-config-alias-bomb", ["run", "--config", "{alias_bomb}"],
         "alias_bomb.yaml: holds 3,051,755 values once its YAML aliases (*name) are expanded",
         why="nine lines that expand to millions of values"),
    Case("run-config-contains-itself", ["run", "--config", "{self_alias}"],
         "self_alias.yaml: contains itself (a YAML alias *name inside the &name it refers to)"),
    Case("run-set-nested-too-deeply", ["run", *PM, "--set", "{deep_value}", "--out", "{new}"],
         "--set train.steps: nested too deeply to parse"),
    Case("run-split-toml-nested-too-deeply", ["run", *PM, "--split", "{deep_split_toml}", "--out", "{new}"],
         TOO_DEEP),
    Case("run-split-yaml-nested-too-deeply", ["run", *PM, "--split", "{deep_split_yaml}", "--out", "{new}"],
         TOO_DEEP),
    Case("ablate-grid-nested-too-deeply", ["ablate", "{deep_grid}", "--out", "{new}"], TOO_DEEP),
    Case("resume-config-yaml-nested-too-deeply", ["run", "--resume", "{killed_deep_config}"], TOO_DEEP),
    Case("report-metrics-json-nested-too-deeply", ["report", "{run_deep_metrics}", "--out", "{new}"], TOO_DEEP),
    Case("report-metrics-json-not-json", ["report", "{run_bad_metrics}", "--out", "{new}"],
         "metrics.json: not valid JSON (Expecting value, line 1 column 1)"),
    # ---------------------------------------------------------------- failed writes
    Case("run-checkpoint-past-a-file-size-limit", ["run", "--preset", "ptrag", *SMALL, "--steps", "2", "--set",
                                                   "train.val_every=2", "--out", "{new}"],
         "/checkpoint.pt: File too large", file_limit=500_000,
         why="torch's traceback, and the half-made run folder stayed"),
    Case("predict-past-a-file-size-limit", ["predict", "--run", "{run_pm}", "--data", "{tiny}", "--out", "{new}"],
         "/predictions.h5ad: File too large", file_limit=100_000),
    Case("synth-past-a-file-size-limit", ["data", "synth", "--preset", "tiny", "-o", "{new}/tiny.h5ad"],
         "tiny.h5ad: cannot write the file (File too large)", file_limit=1_000_000,
         why="h5py crashed the process (a segmentation fault) and left half a file"),
    Case("report-past-a-file-size-limit", ["report", "{run_pm}", "--out", "{new}"], "/metric_bars.png: File too large",
         file_limit=20_000),
]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def prepare(root: Path, env: dict[str, str]) -> None:
    import anndata as ad

    tiny = ad.read_h5ad(env["tiny"])
    rng = np.random.default_rng(0)
    shallow = tiny.copy()
    shallow.obsm["X_hvg"] = rng.poisson(0.8, size=tiny.obsm["X_hvg"].shape).astype(np.float32)
    shallow.write_h5ad(root / "shallow_counts.h5ad")
    env["shallow_counts"] = str(root / "shallow_counts.h5ad")

    (root / "thread_held").mkdir()
    env["thread_held"] = str(root / "thread_held")
    env["thread_killed"] = _copy(env["killed"], root / "thread_killed")

    env["killed_edited"] = _copy(env["killed"], root / "killed_edited")
    _edit(root / "killed_edited" / "config.yaml", "  lr: 0.001\n", "  lr: 0.01\n")
    env["killed_edited_generator"] = _copy(env["killed"], root / "killed_edited_generator")
    _edit(root / "killed_edited_generator" / "config.yaml", "  n_layers: 1\n", "  n_layers: 2\n")
    env["killed_deep_config"] = _copy(env["killed"], root / "killed_deep_config")
    (root / "killed_deep_config" / "config.yaml").write_text(f"preset: state\nextra: {_nested(DEEP)}\n")

    _file(root, env, "deep_config", "deep_config.yaml", f"preset: pert-mean\nextra: {_nested(DEEP)}\n")
    nested: dict = {}
    for _ in range(40):
        nested = {"a": nested}
    _file(root, env, "nested_config", "nested_config.yaml", yaml.safe_dump({"preset": "pert-mean", "x": nested}))
    bomb = ["a0: &a0 [x, x, x, x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 5)}]" for i in range(1, 9)]
    _file(root, env, "alias_bomb", "alias_bomb.yaml", "\n".join(bomb) + "\n")
    _file(root, env, "self_alias", "self_alias.yaml", "preset: pert-mean\nloop: &loop [1, *loop]\n")
    env["deep_value"] = f"train.steps={_nested(DEEP)}"
    _file(root, env, "deep_split_toml", "deep_split.toml", f"[training]\nx = {_nested(DEEP)}\n")
    _file(root, env, "deep_split_yaml", "deep_split.yaml", f"training: {_nested(DEEP)}\n")
    _file(root, env, "deep_grid", "deep_grid.yaml", f"runs: {_nested(DEEP)}\n")

    env["run_deep_metrics"] = _copy(env["run_pm"], root / "run_deep_metrics")
    (root / "run_deep_metrics" / "metrics.json").write_text(json.dumps({"metrics": {}})[:-1] +
                                                           f', "x": {_nested(DEEP)}}}')
    env["run_bad_metrics"] = _copy(env["run_pm"], root / "run_bad_metrics")
    (root / "run_bad_metrics" / "metrics.json").write_text("")


def _copy(source: str, target: Path) -> str:
    shutil.copytree(source, target)
    return str(target)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def _file(root: Path, env: dict[str, str], name: str, filename: str, text: str) -> None:
    (root / filename).write_text(text)
    env[name] = str(root / filename)

