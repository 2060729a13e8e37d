"""Run folders that never lie: atomic writes, fingerprints, resume/rerun/overwrite, ablate, report."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.files import atomic_write, write_json, write_text
from ptrag.core.runs.ablate import grid_configs, load_grid
from ptrag.core.runs.experiment import run_experiment
from ptrag.core.runs.results import comparability
from ptrag.core.training.interrupt import crash_after

TINY = ["--set", "data.synth_preset=tiny"]
SMALL = ["data.synth_preset=tiny", "model.hidden_dim=16", "generator.n_layers=1", "generator.n_heads=2",
         "data.cell_set_len=8", "train.batch_size=2", "train.warmup_steps=1", "compare=[]", "device=cpu"]

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def small_config(out, *sets, preset="state"):
    return resolve_config(None, preset=preset, sets=[*SMALL, f"output.dir={out}", *sets],
                          manager=build_manager(entry_points=False))


# --------------------------------------------------------------------------- writing


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    path = write_text(tmp_path / "config.yaml", "old\n")

    def half(tmp):
        tmp.write_text("half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, half)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_json_outputs_are_valid_json_with_null_for_nan(tmp_path):
    def no_bare_constants(name):
        raise AssertionError(f"bare {name} in JSON")

    write_json(tmp_path / "a.json", {"nan": float("nan"), "inf": [np.float32(np.inf)], "x": np.float64(1.5),
                                     "n": np.int64(3), "arr": np.array([1.0, np.nan])})
    body = json.loads((tmp_path / "a.json").read_text(), parse_constant=no_bare_constants)
    assert body == {"nan": None, "inf": [None], "x": 1.5, "n": 3, "arr": [1.0, None]}


def test_retrieval_summary_has_no_bare_nan(tmp_path):
    # neighbour-mean has no selector: keep-weights are NaN, so the keep rates have no data
    assert invoke("run", "--preset", "neighbour-mean", *TINY, "--out", tmp_path / "r").exit_code == 0
    text = (tmp_path / "r" / "retrieval_summary.json").read_text()
    body = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name}"))
    assert "NaN" not in text and any(v is None for line in body.values() for v in line.values())


# --------------------------------------------------------------------------- run, rerun, overwrite


def test_a_run_folder_records_what_made_it(tmp_path):
    run = tmp_path / "r"
    assert invoke("run", "--preset", "pert-mean", *TINY, "--out", run).exit_code == 0
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    assert fingerprint["kind"] == "run" and fingerprint["config"]["generator"]["name"] == "pert-mean"
    assert "output" not in fingerprint["config"]
    content = fingerprint["content"]
    assert content["data"]["cells"] == 2221 and content["data"]["matrix_rows_hashed"] == "all"  # tiny, v3
    assert content["split"]["test"] == 9
    recorded = json.loads((run / "metrics.json").read_text())["run"]["fingerprint"]
    assert recorded["data"] == content["data"]["hash"] and recorded["split"] == content["split"]["hash"]
    assert yaml.safe_load((run / "config.yaml").read_text())["output"]["dir"] is None


def test_config_of_a_run_reruns_it_into_a_new_folder(tmp_path):
    run = tmp_path / "r"
    assert invoke("run", "--preset", "pert-mean", *TINY, "--out", run).exit_code == 0
    before = digest(run)
    result = invoke("run", "--config", run / "config.yaml", "--set", f"output.root={tmp_path / 'runs'}")
    assert result.exit_code == 0, result.output
    again = tmp_path / "runs" / result.output.strip().splitlines()[-1].rsplit("/", 1)[-1]
    assert again.parent == tmp_path / "runs" and digest(run) == before
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv"), pd.read_csv(again / "metrics.csv"))
    # a config.yaml from before this change names its own folder: still a new folder
    old = yaml.safe_load((run / "config.yaml").read_text())
    old["output"]["dir"] = str(run)
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    result = invoke("run", "--config", run / "config.yaml", "--set", f"output.root={tmp_path / 'runs'}")
    assert result.exit_code == 0 and result.output.strip().splitlines()[-1] != str(run)


def test_overwrite_replaces_another_run_entirely(tmp_path):
    run = tmp_path / "r"
    assert invoke("run", "--preset", "neighbour-mean", *TINY, "--out", run).exit_code == 0
    assert (run / "retrieval.csv").is_file()
    refused = CliRunner().invoke(app, ["run", "--preset", "pert-mean", *TINY, "--out", str(run)])
    assert refused.exit_code == 1 and "holds a different run (preset: neighbour-mean -> pert-mean" in refused.stderr
    assert invoke("run", "--preset", "pert-mean", *TINY, "--out", run, "--overwrite").exit_code == 0
    assert not (run / "retrieval.csv").exists()  # the old run's trace does not stay beside the new metrics
    assert json.loads((run / "fingerprint.json").read_text())["config"]["preset"] == "pert-mean"


def test_overwrite_never_clears_a_folder_that_holds_no_run(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("\\begin{document}")
    result = CliRunner().invoke(app, ["run", "--preset", "pert-mean", *TINY, "--out", str(tmp_path / "mine"),
                                      "--overwrite"])
    assert result.exit_code == 1 and "holds no ptrag run" in result.stderr
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "\\begin{document}"


def test_a_run_stopped_before_its_first_checkpoint_starts_again_cleanly(tmp_path, monkeypatch):
    from ptrag.core.training.trainer import Trainer

    manager = build_manager(entry_points=False)
    cfg = small_config(tmp_path / "r", "train.steps=4", "train.val_every=4", "train.log_every=1")
    fit = Trainer.fit

    def killed(self, **kwargs):  # as if killed after the folder was written, before step 0's checkpoint
        self._record({"step": 99, "loss": 1.0})  # as the trainer writes its log (listed in the marker)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", killed)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)
    assert not (tmp_path / "r" / "checkpoint.pt").exists() and (tmp_path / "r" / "config.yaml").is_file()
    monkeypatch.setattr(Trainer, "fit", fit)
    run_experiment(cfg, manager)  # nothing to resume: it starts again, clearing its own files
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert 99 not in steps and steps[0] == 0 and max(steps) == 4


def test_resume_refuses_other_settings_before_touching_anything(tmp_path):
    manager = build_manager(entry_points=False)
    run = tmp_path / "r"
    cfg = small_config(run, "train.steps=4", "train.val_every=2")
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)
    before = digest(run)
    refused = CliRunner().invoke(app, ["run", "--resume", str(run), "--set", "model.hidden_dim=64"])
    assert refused.exit_code == 1 and "model.hidden_dim: 16 -> 64" in refused.stderr
    assert digest(run) == before  # config.yaml was not rewritten: the run is still usable
    allowed = invoke("run", "--resume", run, "--set", "train.threads=1")  # how fast, not what: allowed
    assert allowed.exit_code == 0, allowed.output
    assert "resumed at step 2" in allowed.output and (run / "metrics.json").is_file()


def test_resume_refuses_a_hand_edited_config_yaml_naming_the_keys(tmp_path):
    """--resume reads config.yaml: an edit would train the checkpoint on with values the folder's
    fingerprint.json does not record, as the same change by flags is refused."""
    manager = build_manager(entry_points=False)
    run = tmp_path / "r"
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(small_config(run, "train.steps=4", "train.val_every=2"), manager)
    original = (run / "config.yaml").read_text()
    edited = yaml.safe_load(original)
    edited["train"]["lr"], edited["model"]["hidden_dim"] = 0.5, 32
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    before = digest(run)
    refused = CliRunner().invoke(app, ["run", "--resume", str(run)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    [line] = [line for line in refused.stderr.splitlines() if line.strip()]
    assert line.startswith(f"error: --resume {run}: {run / 'config.yaml'} was edited since the run began (")
    assert "model.hidden_dim: 16 -> 32" in line and "train.lr: 0.001 -> 0.5" in line
    assert digest(run) == before
    edited = yaml.safe_load(original)
    edited["train"]["threads"] = 2  # where and how fast it runs may change, as by flags
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    allowed = invoke("run", "--resume", run)
    assert allowed.exit_code == 0, allowed.output
    assert "resumed at step 2" in allowed.output


def test_resuming_a_run_resumes_its_comparator_runs(tmp_path):
    run = tmp_path / "r"
    args = ["run", "--preset", "neighbour-mean", *TINY, "--set", "retriever.k=500", "--set", "compare=[linear]",
            "--out", run]
    assert invoke(*args).exit_code == 0
    (run / "metrics.json").unlink()  # as if killed while evaluating: its comparator had finished
    result = invoke("run", "--resume", run)  # k was resolved to the database size in config.yaml
    assert result.exit_code == 0, result.output
    assert (run / "metrics.json").is_file() and (run / "compare" / "linear" / "metrics.json").is_file()


def test_resume_of_a_run_made_before_an_option_existed(tmp_path):
    manager = build_manager(entry_points=False)
    run = tmp_path / "r"
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(small_config(run, "train.steps=4", "train.val_every=2"), manager)
    old = yaml.safe_load((run / "config.yaml").read_text())
    del old["data"]["max_dropped_test"]  # as written by a ptrag without that option
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    (run / "fingerprint.json").unlink()  # nor fingerprints
    result = invoke("run", "--resume", run)
    assert result.exit_code == 0, result.output


def test_resume_refuses_changed_data(tmp_path):
    from ptrag.core.data.synth import synth_screen

    data = tmp_path / "screen.h5ad"
    synth_screen("tiny", 0).write_h5ad(data)
    manager = build_manager(entry_points=False)
    run = tmp_path / "r"
    cfg = small_config(run, "train.steps=4", "train.val_every=2", f"data.path={data}")
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)
    synth_screen("tiny", 1).write_h5ad(data)
    result = CliRunner().invoke(app, ["run", "--resume", str(run)])
    assert result.exit_code == 1 and "data file" in result.stderr and "changed since that run" in result.stderr


# --------------------------------------------------------------------------- ablate


def _grid(tmp_path, runs, name="grid.yaml"):
    grid = {"base": {"data": {"synth_preset": "tiny"}, "metrics": ["mse"]}, "seeds": [0], "runs": runs}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(grid))
    return path


def test_ablate_refuses_a_changed_grid_and_reruns_it_with_overwrite(tmp_path):
    out = tmp_path / "abl"
    assert invoke("ablate", _grid(tmp_path, [{"preset": "control"}]), "--out", out).exit_code == 0
    changed = _grid(tmp_path, [{"preset": "control", "set": ["train.steps=7"]}], "changed.yaml")
    refused = CliRunner().invoke(app, ["ablate", str(changed), "--out", str(out)])
    assert refused.exit_code == 1 and "train.steps: 1000 -> 7" in refused.stderr
    rerun = invoke("ablate", changed, "--out", out, "--overwrite")
    assert rerun.exit_code == 0 and "rerun: its configuration changed" in rerun.output
    assert yaml.safe_load((out / "control-s0" / "config.yaml").read_text())["train"]["steps"] == 7


def test_ablate_resumes_a_killed_run_from_its_checkpoint(tmp_path):
    out = tmp_path / "abl"
    grid = _grid(tmp_path, [{"name": "st", "preset": "state", "set": [*SMALL[1:], "train.steps=4",
                                                                      "train.val_every=2", "train.log_every=1"]}])
    manager = build_manager(entry_points=False)
    [(_, _, cfg)] = grid_configs(load_grid(grid), out, manager)
    with crash_after(3), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)  # checkpoint at step 2, log records up to step 3
    result = invoke("ablate", grid, "--out", out)
    assert result.exit_code == 0 and "resuming from its checkpoint" in result.output
    assert "resumed at step 2" in result.output
    steps = [json.loads(line)["step"] for line in (out / "st-s0" / "log.jsonl").read_text().splitlines()
             if "loss" in line]
    assert steps == [1, 2, 3, 4]  # resumed, not restarted and appended


# --------------------------------------------------------------------------- report


def _finished(folder, data, split, seed):
    folder.mkdir()
    fingerprint = {"config": "c", "data": data, "split": split, "embeddings": "e", "seed": seed}
    (folder / "metrics.json").write_text(json.dumps({"run": {"fingerprint": fingerprint}, "metrics": {}}))
    return folder


def test_report_compares_fingerprints_within_a_seed(tmp_path):
    a0, b0 = _finished(tmp_path / "a-s0", "D0", "S0", 0), _finished(tmp_path / "b-s0", "D0", "S0", 0)
    a1 = _finished(tmp_path / "a-s1", "D1", "S1", 1)  # another seed may vary data.seed on purpose
    assert comparability([a0, b0, a1]) == ([], True)
    c0 = _finished(tmp_path / "c-s0", "D9", "S0", 0)
    warnings, comparable = comparability([a0, b0, c0])
    assert not comparable and "different data" in warnings[0] and "c-s0 on D9" in warnings[0]
    d0 = _finished(tmp_path / "d-s0", "D0", "S7", 0)
    warnings, comparable = comparability([a0, d0])
    assert comparable and "different splits" in warnings[0]
    old = tmp_path / "old-s0"
    old.mkdir()
    (old / "metrics.json").write_text(json.dumps({"run": {}, "metrics": {}}))
    assert "carry no data fingerprint" in comparability([a0, old])[0][0]


def test_report_table_marks_no_best_across_different_data(tmp_path):
    from ptrag.core.data.synth import synth_screen

    other = tmp_path / "other.h5ad"
    synth_screen("tiny", 1).write_h5ad(other)
    assert invoke("run", "--preset", "pert-mean", *TINY, "--out", tmp_path / "a").exit_code == 0
    assert invoke("run", "--preset", "control", "--data", other, "--out", tmp_path / "b").exit_code == 0
    result = invoke("report", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "rep")
    assert result.exit_code == 0 and "no best: different data" in result.output
    assert "warning: runs of seed 0 were made on different data" in result.output
    assert "class=best" not in (tmp_path / "rep" / "report.html").read_text()
    assert "were made on different data" in (tmp_path / "rep" / "report.html").read_text()
