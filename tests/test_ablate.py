"""`ptrag ablate`: a grid of presets x seeds on tiny data, resumable, one comparison table."""

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.errors import ConfigError
from ptrag.core.runs.ablate import grid_configs, load_grid, parse_grid

GRID = {"base": {"data": {"synth_preset": "tiny"}, "metrics": ["mse", "w1", "discrimination"]},
        "seeds": [0, 1],
        "runs": [{"preset": "control"}, {"preset": "pert-mean"}]}


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("abl")
    grid = folder / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    result = CliRunner().invoke(app, ["ablate", str(grid), "--out", str(folder / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder, result


def test_ablate_runs_the_grid_and_writes_one_table(ablation):
    folder, result = ablation
    out = folder / "out"
    assert result.output.strip().splitlines()[-1] == str(out)
    for name in ("control-s0", "control-s1", "pert-mean-s0", "pert-mean-s1"):
        body = json.loads((out / name / "metrics.json").read_text())
        assert set(body["metrics"]) == {"mse", "w1", "discrimination"}
    seeds = [yaml.safe_load((out / f"pert-mean-s{s}" / "config.yaml").read_text())["seed"] for s in (0, 1)]
    assert seeds == [0, 1]
    table = pd.read_csv(out / "comparison.csv")
    assert set(table.run) == {"control", "pert-mean"} and (table.seeds == 2).all()
    mse = table[table.metric == "mse"].set_index("run")["mean"]
    assert mse["pert-mean"] < mse["control"]
    assert "± " in result.output and "↓ lower" in result.output


def test_ablate_resumes_and_skips_finished_runs(ablation):
    folder, _ = ablation
    before = (folder / "out" / "control-s0" / "metrics.json").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["ablate", str(folder / "grid.yaml"), "--out", str(folder / "out")],
                                catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output.count("done already, skipped") == 4
    assert (folder / "out" / "control-s0" / "metrics.json").stat().st_mtime_ns == before


def test_grid_overrides_components_and_names_runs(tmp_path):
    grid = parse_grid({"runs": [{"name": "pm-fast", "preset": "pert-mean", "set": ["train.steps=3"]},
                                {"name": "ctl", "generator": {"name": "control"}, "retriever": "none",
                                 "selector": "none"}],
                       "seeds": 4})
    configs = grid_configs(grid, tmp_path, build_manager(entry_points=False))
    assert [(r.name, s) for r, s, _ in configs] == [("pm-fast", 4), ("ctl", 4)]
    assert configs[0][2].train.steps == 3 and configs[1][2].generator.name == "control"
    assert configs[1][2].output.dir == str(tmp_path / "ctl-s4")


@pytest.mark.parametrize("raw, message", [
    ({"runs": []}, "non-empty list"),
    ({"runs": [{"preset": "control"}], "seeds": ["a"]}, "list of integers"),
    ({"runs": [{"preset": "control"}], "sed": [0]}, "unknown key"),
    ({"runs": [{"preset": "control"}, {"preset": "control"}]}, "two runs are named"),
])
def test_bad_grids_are_one_line_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid(raw)


def test_unknown_preset_names_the_run(tmp_path):
    with pytest.raises(ConfigError, match="run 'nosuch'.*unknown preset"):
        grid_configs(parse_grid({"runs": ["nosuch"]}), tmp_path)


def test_the_committed_example_grid_resolves(tmp_path):
    from pathlib import Path

    grid = load_grid(Path(__file__).parent.parent / "docs" / "examples" / "ablation.yaml")
    assert len(grid.seeds) == 3
    names = {r.name for r in grid.runs}
    assert {"ptrag", "vanilla-rag", "state", "state-genept", "pert-mean", "linear", "neighbour-mean"} <= names
    assert len(grid_configs(grid, tmp_path, build_manager(entry_points=False))) == 3 * len(grid.runs)


def test_grid_settings_run_every_combination_and_report_against_a_baseline(tmp_path):
    grid = tmp_path / "families.yaml"
    grid.write_text(yaml.safe_dump({"base": {"data": {"synth_preset": "tiny"}}, "seeds": [0],
                                    "settings": {"data.synth_family": ["v3", "grn"]},
                                    "runs": ["gene-other-lines", "pert-mean"]}))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["ablate", str(grid), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["gene-other-lines@grn-s0", "gene-other-lines@v3-s0", "pert-mean@grn-s0", "pert-mean@v3-s0"]
    family = {f: yaml.safe_load((out / f / "config.yaml").read_text())["data"]["synth_family"] for f in folders}
    assert family["pert-mean@grn-s0"] == "grn" and family["pert-mean@v3-s0"] == "v3"
    assert json.loads((out / "ablation.json").read_text())["settings"] == ["v3", "grn"]
    result = CliRunner().invoke(app, ["report", *(str(out / f) for f in folders), "--against", "gene-other-lines",
                                      "--out", str(tmp_path / "report")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "different data" not in result.output  # families differ on purpose: compared within a setting
    assert "against gene-other-lines" in result.output and "headline" in result.output

    from ptrag.core.reporting.against import settings_table, summary_table

    table = settings_table([out / f for f in folders], "gene-other-lines")
    assert set(table.run) == {"pert-mean"} and set(table.setting) == {"v3", "grn"}
    energy = table[table.metric == "energy"]
    lower_is_better = energy["mean"] < energy["baseline_mean"]
    assert ((energy.improvement > 0) == lower_is_better).all()  # direction-aware
    assert (energy.outcome.isin(["win", "tie", "loss"])).all() and (energy.p >= 0).all()
    summary = summary_table(table)
    counts = summary[["wins", "ties", "losses"]].sum(axis=1)
    assert (counts == summary.settings).all() and (summary.settings == 2).all()
