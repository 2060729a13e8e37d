"""Bad-input cases of run folders (issue 26, part 2): a folder is a run only when ptrag marked it
(``.ptrag-run``), ``--overwrite`` deletes only what the marker lists and refuses, naming them,
the user's files; run folders of earlier ptrag versions (no marker) are read, never written; no
key sends a write outside ``--out``.

``prepare`` copies finished runs of cases_core (``{run_pm}``, ``{killed}``, ``{ablation}``) and
changes the copies: a user's notebook beside the run, the marker removed (an earlier version's
folder), a marker that points outside the folder. What a successful ``--overwrite`` removes and
keeps (it changes files, which these cases may not) is tested in tests/test_run_marker.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.runs.marker import MARKER

from .case import PM, TINY, Case

NM = ["--preset", "neighbour-mean", *TINY]
NOT_MINE = "also holds files ptrag did not write"
LEGACY = "holds a run made by an earlier ptrag (it has no .ptrag-run marker): ptrag reads it (ptrag report, " \
         "ptrag predict --run) but never resumes, reuses or overwrites it"
FOREIGN_MARKER = "is not one ptrag wrote"
MOVED = "a grid writes each run into its --out"

CASES = [
    # ---------------------------------------------------------------- a config.yaml is not a run
    Case("run-out-holds-a-workflow-config", ["run", *PM, "--out", "{f_workflow}"],
         "the folder is not empty and holds no ptrag run (Snakefile, config.yaml)",
         why="was taken for a run folder; the refusal suggested --overwrite"),
    Case("run-overwrite-a-workflow-config", ["run", *PM, "--out", "{f_workflow}", "--overwrite"],
         "holds no ptrag run (Snakefile, config.yaml)", why="--overwrite used to delete everything in it"),
    Case("resume-a-workflow-config", ["run", "--resume", "{f_workflow}"], "not a run folder (no .ptrag-run)"),
    Case("run-overwrite-an-experiment-folder", ["run", *PM, "--out", "{f_experiment}", "--overwrite"],
         "holds no ptrag run (config.yaml, data.h5ad)"),
    # ---------------------------------------------------------------- --overwrite and the user's files
    Case("run-overwrite-keeps-a-notebook", ["run", *PM, "--out", "{f_notebook}", "--overwrite"],
         f"{NOT_MINE} (figures/, notebook.ipynb); --overwrite deletes only ptrag's own files",
         why="--overwrite used to delete the notebook and the figures"),
    Case("run-overwrite-another-run-keeps-a-notebook", ["run", "--preset", "control", *TINY, "--out",
                                                        "{f_notebook}", "--overwrite"], f"{NOT_MINE} (figures/"),
    Case("run-overwrite-user-file-in-a-comparator", ["run", *NM, "--out", "{f_compare_note}", "--overwrite"],
         f"{NOT_MINE} (compare/pert-mean/notes.txt)"),
    Case("run-overwrite-user-file-beside-comparators", ["run", *NM, "--out", "{f_compare_beside}", "--overwrite"],
         f"{NOT_MINE} (compare/summary.xlsx)"),
    Case("run-restart-keeps-a-users-file", ["run", *PM, "--out", "{f_stopped_note}"],
         f"{NOT_MINE} (notes.txt); starting its stopped run again deletes only ptrag's own files",
         why="a stopped run with other files said: pass --overwrite to clear it"),
    Case("run-overwrite-a-grid", ["run", *PM, "--out", "{ablation}", "--overwrite"],
         "holds a ptrag ablation, not a run; --overwrite never replaces one with the other"),
    # ---------------------------------------------------------------- markers that ptrag did not write
    Case("run-overwrite-marker-points-outside", ["run", *PM, "--out", "{f_marker_outside}", "--overwrite"],
         f"its .ptrag-run {FOREIGN_MARKER}", why="a crafted marker listing ../victim.txt deletes nothing"),
    Case("run-overwrite-marker-not-json", ["run", *PM, "--out", "{f_marker_garbage}", "--overwrite"],
         f"its .ptrag-run {FOREIGN_MARKER}"),
    Case("resume-marker-of-a-grid", ["run", "--resume", "{ablation}"],
         "holds no run to resume (it holds a ptrag ablation)"),
    # ---------------------------------------------------------------- folders of earlier ptrag versions
    Case("legacy-run-rerun", ["run", *PM, "--out", "{f_legacy}"], LEGACY),
    Case("legacy-run-overwrite", ["run", *PM, "--out", "{f_legacy}", "--overwrite"], LEGACY),
    Case("legacy-run-resume", ["run", "--resume", "{f_legacy_killed}"], LEGACY,
         why="resume wrote into a folder no marker vouches for"),
    Case("legacy-run-report", ["report", "{f_legacy}", "--out", "{new}"], "report.html", code=0,
         why="reading is harmless"),
    Case("legacy-run-predict", ["predict", "--run", "{f_legacy}", "--data", "{tiny}", "--out", "{new}"],
         "predicted 60 perturbation groups", code=0),
    Case("legacy-grid-rerun", ["ablate", "{grid}", "--out", "{f_legacy_grid}"],
         "holds a grid made by an earlier ptrag"),
    # ---------------------------------------------------------------- grids and the user's files
    Case("ablate-beside-the-users-grid-file", ["ablate", "{f_grid_home}/grid.yaml", "--out", "{f_grid_home}"],
         "1 configuration(s) x 1 seed(s)", code=0, why="the grid folder may hold the user's files: they stay"),
    Case("ablate-over-the-users-table", ["ablate", "{grid}", "--out", "{f_users_table}"],
         "holds comparison.csv, which ptrag did not write, where the grid writes its table",
         why="refused before any run, not after"),
    Case("ablate-into-a-run-folder", ["ablate", "{grid}", "--out", "{run_pm}"],
         "holds a ptrag run, not an ablation grid"),
    # ---------------------------------------------------------------- no write outside --out
    Case("ablate-run-sets-output-dir", ["ablate", "{f_grid_escapes}", "--out", "{new}"],
         f"/escaped); {MOVED}", why="the run was written outside --out"),
    Case("ablate-setting-sets-output-dir", ["ablate", "{f_grid_setting_escapes}", "--out", "{new}"],
         f"sets output.dir (../escaped-a); {MOVED}"),
    Case("ablate-cli-sets-output-dir", ["ablate", "{grid}", "--out", "{new}", "--set", "output.dir={tmp}/escaped"],
         MOVED),
    Case("run-set-output-dir-beside-out", ["run", *PM, "--out", "{new}", "--set", "output.dir={tmp}/escaped"],
         "name two folders; a run writes into its --out folder only",
         why="--set won: the run went elsewhere than --out"),
    Case("resume-set-output-dir", ["run", "--resume", "{killed}", "--set", "output.dir={tmp}/escaped"],
         "name two folders; a run writes into its --resume folder only"),
    Case("run-compare-a-path", ["run", *PM, "--set", "compare=[../../escaped]", "--out", "{new}"],
         "compare: unknown preset '../../escaped'", why="was found only after the main run had finished"),
]


def _copy(env: dict[str, str], source: str, root: Path, name: str) -> Path:
    shutil.copytree(env[source], root / name)
    env[name] = str(root / name)
    return root / name


def _without_markers(folder: Path) -> Path:
    for found in folder.rglob(MARKER):
        found.unlink()
    return folder


def _user_files(root: Path, env: dict[str, str]) -> None:
    workflow = root / "f_workflow"
    workflow.mkdir()
    (workflow / "config.yaml").write_text("samples: [a, b]\nthreads: 8\n")
    (workflow / "Snakefile").write_text("rule all:\n    input: 'results.txt'\n")
    env["f_workflow"] = str(workflow)
    experiment = root / "f_experiment"
    experiment.mkdir()
    (experiment / "config.yaml").write_text(yaml.safe_dump({"preset": "pert-mean"}))
    shutil.copy(env["tiny"], experiment / "data.h5ad")
    env["f_experiment"] = str(experiment)

    notebook = _copy(env, "run_pm", root, "f_notebook")
    (notebook / "notebook.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4}))
    (notebook / "figures").mkdir()
    (notebook / "figures" / "umap.png").write_bytes(b"\x89PNG")
    stopped = _copy(env, "run_pm", root, "f_stopped_note")
    for entry in stopped.iterdir():
        if entry.name not in (MARKER, "config.yaml", "fingerprint.json"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    (stopped / "notes.txt").write_text("why this run stopped\n")


def _markers(root: Path, env: dict[str, str]) -> None:
    (root / "victim.txt").write_text("the user's file, beside the folder\n")
    outside = _copy(env, "run_pm", root, "f_marker_outside")
    body = json.loads((outside / MARKER).read_text())
    body["files"].append("../victim.txt")
    (outside / MARKER).write_text(json.dumps(body))
    garbage = _copy(env, "run_pm", root, "f_marker_garbage")
    (garbage / MARKER).write_text("not json")
    _without_markers(_copy(env, "run_pm", root, "f_legacy"))
    _without_markers(_copy(env, "killed", root, "f_legacy_killed"))
    _without_markers(_copy(env, "ablation", root, "f_legacy_grid"))


def _grids(root: Path, env: dict[str, str]) -> None:
    grid = yaml.safe_load(Path(env["grid"]).read_text())
    home = root / "f_grid_home"
    home.mkdir()
    (home / "grid.yaml").write_text(yaml.safe_dump(grid))
    (home / "README.md").write_text("my grid\n")
    env["f_grid_home"] = str(home)
    table = root / "f_users_table"
    table.mkdir()
    (table / "comparison.csv").write_text("mine,1\n")
    env["f_users_table"] = str(table)
    escapes = {**grid, "runs": [{"preset": "control", "set": [f"output.dir={root / 'escaped'}"]}]}
    (root / "f_grid_escapes.yaml").write_text(yaml.safe_dump(escapes))
    env["f_grid_escapes"] = str(root / "f_grid_escapes.yaml")
    setting = {**grid, "settings": {"output.dir": ["../escaped-a", "../escaped-b"]}}
    (root / "f_grid_setting_escapes.yaml").write_text(yaml.safe_dump(setting))
    env["f_grid_setting_escapes"] = str(root / "f_grid_setting_escapes.yaml")


def prepare(root: Path, env: dict[str, str]) -> None:
    """The folders the cases above point at, named in ``env`` (after cases_core's)."""
    _user_files(root, env)
    _markers(root, env)
    _grids(root, env)
    result = CliRunner().invoke(app, ["run", *NM, "--set", "compare=[pert-mean]", "--out",
                                      str(root / "f_compare_note")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    env["f_compare_note"] = str(root / "f_compare_note")
    beside = _copy(env, "f_compare_note", root, "f_compare_beside")
    (beside / "compare" / "summary.xlsx").write_bytes(b"PK")
    (root / "f_compare_note" / "compare" / "pert-mean" / "notes.txt").write_text("pert-mean looks odd\n")
