"""A folder is a run when ptrag marked it (core/runs/marker.py): what the marker lists, what
--overwrite deletes and keeps, folders of earlier versions, grids beside the user's files, and
no write outside --out."""

import hashlib
import json

import pytest
import yaml
from typer.testing import CliRunner

import ptrag
from ptrag.cli.app import app
from ptrag.core.api import reports
from ptrag.core.components.manager import build_manager
from ptrag.core.config import resolve_config
from ptrag.core.errors import ConfigError, RunFolderError
from ptrag.core.files import write_text
from ptrag.core.runs import marker
from ptrag.core.runs.experiment import run_experiment
from ptrag.core.runs.folder import occupied
from ptrag.core.training.interrupt import crash_after

TINY = ["--set", "data.synth_preset=tiny"]
PM = ["run", "--preset", "pert-mean", *TINY]
SMALL = ["data.synth_preset=tiny", "model.hidden_dim=16", "generator.n_layers=1", "generator.n_heads=2",
         "data.cell_set_len=8", "train.batch_size=2", "train.warmup_steps=1", "compare=[]", "device=cpu"]

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def entries(folder):
    return {p.name for p in folder.iterdir() if not marker.bookkeeping(p.name)}


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "r"
    result = invoke(*PM, "--out", folder)
    assert result.exit_code == 0, result.output
    return folder


def test_a_run_lists_every_entry_it_wrote(run):
    mark = marker.read(run)
    assert mark.kind == "run" and len(mark.run_id) == 32 and mark.ptrag == ptrag.__version__
    assert set(mark.files) == entries(run) and {"config.yaml", "metrics.json", "retriever"} <= set(mark.files)


def test_overwrite_refuses_a_users_notebook_and_deletes_nothing(run):
    (run / "notebook.ipynb").write_text("{}")
    (run / "figures").mkdir()
    (run / "figures" / "umap.png").write_bytes(b"png")
    before = digest(run)
    refused = invoke("run", "--preset", "control", *TINY, "--out", run, "--overwrite")
    assert refused.exit_code == 1
    assert "also holds files ptrag did not write (figures/, notebook.ipynb)" in refused.stderr
    assert digest(run) == before
    (run / "notebook.ipynb").unlink()
    (run / "figures" / "umap.png").unlink()
    (run / "figures").rmdir()
    old_id = marker.read(run).run_id
    assert invoke("run", "--preset", "control", *TINY, "--out", run, "--overwrite").exit_code == 0
    mark = marker.read(run)
    assert mark.run_id != old_id and set(mark.files) == entries(run)
    assert json.loads((run / "fingerprint.json").read_text())["config"]["preset"] == "control"


def test_only_ptrags_half_written_files_count_as_its_own(run):
    (run / ".metrics.partial.csv").write_text("half")  # a crash while metrics.csv was written
    (run / ".draft.partial.md").write_text("the user's")
    result = invoke(*PM, "--out", run, "--overwrite")
    assert result.exit_code == 1 and "(.draft.partial.md)" in result.stderr
    (run / ".draft.partial.md").unlink()
    assert invoke(*PM, "--out", run, "--overwrite").exit_code == 0
    assert not (run / ".metrics.partial.csv").exists()


def test_a_killed_run_lists_its_checkpoint_and_log_and_overwrite_clears_them(tmp_path):
    manager = build_manager(entry_points=False)
    folder = tmp_path / "k"
    cfg = resolve_config(None, preset="state", manager=manager,
                         sets=[*SMALL, "train.steps=4", "train.val_every=2", f"output.dir={folder}"])
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, manager)
    listed = set(marker.read(folder).files)
    assert {"checkpoint.pt", "log.jsonl", "config.yaml"} <= listed and entries(folder) <= listed
    assert invoke(*PM, "--out", folder, "--overwrite").exit_code == 0
    assert not (folder / "log.jsonl").exists() and (folder / "metrics.json").is_file()


def test_a_folder_of_an_earlier_version_is_read_never_written(run, tmp_path):
    (run / marker.MARKER).unlink()
    before = digest(run)
    for args in ([*PM, "--out", run], [*PM, "--out", run, "--overwrite"], ["run", "--resume", run]):
        result = invoke(*args)
        assert result.exit_code == 1 and "made by an earlier ptrag" in result.stderr, result.output
    assert invoke("report", run, "--out", tmp_path / "rep").exit_code == 0
    from ptrag.core.data.synth import synth_screen

    synth_screen("tiny", 0).write_h5ad(tmp_path / "tiny.h5ad")
    predicted = invoke("predict", "--run", run, "--data", tmp_path / "tiny.h5ad", "--out", tmp_path / "pred")
    assert predicted.exit_code == 0, predicted.output
    assert digest(run) == before


def test_a_marker_that_points_outside_deletes_nothing(run, tmp_path):
    (tmp_path / "victim.txt").write_text("mine")
    body = json.loads((run / marker.MARKER).read_text())
    (run / marker.MARKER).write_text(json.dumps({**body, "files": [*body["files"], "../victim.txt"]}))
    result = invoke(*PM, "--out", run, "--overwrite")
    assert result.exit_code == 1 and "is not one ptrag wrote" in result.stderr
    assert (tmp_path / "victim.txt").read_text() == "mine" and (run / "metrics.json").is_file()


def test_a_write_over_a_file_the_marker_does_not_list_is_refused(run):
    (run / "summary.csv").write_text("the user's\n")
    with occupied(run, clean=False):
        write_text(run / "compare.csv", "ptrag's\n")  # new: listed first
        with pytest.raises(RunFolderError, match="exists and ptrag did not write it"):
            write_text(run / "summary.csv", "ptrag's\n")
    assert (run / "summary.csv").read_text() == "the user's\n" and "compare.csv" in marker.read(run).files


def test_a_report_inside_a_run_is_listed_so_overwrite_clears_it(run):
    assert invoke("report", run, "--compare", "pert-mean", "--compare", "pert-mean").exit_code == 0  # <run>/report
    assert "report" in marker.read(run).files and (run / "report" / "paired.csv").is_file()
    assert invoke("run", "--preset", "control", *TINY, "--out", run, "--overwrite").exit_code == 0
    assert not (run / "report" / "paired.csv").exists()  # the old report's, cleared with the run
    assert (run / "report" / "report.html").is_file()  # ptrag run wrote its own report anew


def test_a_file_of_the_users_in_the_report_keeps_overwrite_off(run):
    (run / "report" / "my_figure.png").write_bytes(b"mine")
    result = invoke("run", "--preset", "control", *TINY, "--out", run, "--overwrite")
    assert result.exit_code == 1 and "report/my_figure.png" in result.stderr
    assert (run / "report" / "my_figure.png").read_bytes() == b"mine"


def test_predicts_default_folder_goes_with_its_run(run, tmp_path):
    from ptrag.core.data.synth import synth_screen

    synth_screen("tiny", 0).write_h5ad(tmp_path / "tiny.h5ad")
    assert invoke("predict", "--run", run, "--data", tmp_path / "tiny.h5ad").exit_code == 0
    assert "predict-tiny" in marker.read(run).files and marker.read(run / "predict-tiny").kind == "prediction"
    (run / "mine").mkdir()  # a folder of the user's in the run is not the run's
    assert invoke("predict", "--run", run, "--data", tmp_path / "tiny.h5ad", "--out", run / "mine" / "p"
                  ).exit_code == 0
    result = invoke(*PM, "--out", run, "--overwrite")
    assert result.exit_code == 1 and "(mine/)" in result.stderr


def test_a_grid_keeps_the_users_files_in_its_folder(tmp_path):
    home = tmp_path / "grid"
    home.mkdir()
    grid = {"base": {"data": {"synth_preset": "tiny"}, "metrics": ["mse"]}, "runs": [{"preset": "control"}]}
    (home / "grid.yaml").write_text(yaml.safe_dump(grid))
    assert invoke("ablate", home / "grid.yaml", "--out", home).exit_code == 0
    mark = marker.read(home)
    assert mark.kind == "ablation" and set(mark.files) == {"control-s0", "ablation.json", "comparison.csv"}
    grid["runs"] = [{"preset": "control", "set": ["train.steps=7"]}]
    (home / "grid.yaml").write_text(yaml.safe_dump(grid))
    assert invoke("ablate", home / "grid.yaml", "--out", home, "--overwrite").exit_code == 0
    assert yaml.safe_load((home / "grid.yaml").read_text()) == grid


def test_a_failed_grid_in_a_new_folder_leaves_nothing(tmp_path):
    grid = {"base": {"data": {"synth_preset": "tiny"}}, "runs": [{"preset": "control", "set": ["data.path=/nope"]}]}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(grid))
    assert invoke("ablate", tmp_path / "g.yaml", "--out", tmp_path / "out").exit_code == 1
    assert not (tmp_path / "out").exists()


def test_no_key_sends_a_run_outside_its_folder(tmp_path):
    with pytest.raises(ConfigError, match="name two folders"):
        ptrag.run(preset="pert-mean", out=tmp_path / "a", set=["data.synth_preset=tiny", f"output.dir={tmp_path}/b"])
    grid = {"base": {"data": {"synth_preset": "tiny"}}, "runs": [{"preset": "control"}],
            "settings": {"output.root": [str(tmp_path / "c")], "output.dir": [str(tmp_path / "b")]}}
    with pytest.raises(ConfigError, match="sets output.dir"):
        reports.ablate(_write(tmp_path / "g.yaml", grid), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.yaml"]


def _write(path, body):
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize("name", ["../escaped", "a/b", ".hidden", ".."])
def test_a_plugin_preset_cannot_name_a_folder_outside_compare(name):
    from ptrag.core.hookspecs import PresetSpec

    with pytest.raises(TypeError, match="a preset's name is a folder name"):
        PresetSpec(name, {"generator": {"name": "pert-mean"}})
