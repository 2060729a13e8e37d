"""The first bad-input cases: run folders, names and values, the data, predict, ablate, report,
data / genes / plugins commands. Each family module has ``CASES`` and ``prepare(root, env)``,
which writes the files its cases point at and names them in ``env``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ptrag.cli.app import app
from ptrag.core.training.interrupt import crash_after

from .case import PM, SMALL, TINY, Case

CASES = [
    # ---------------------------------------------------------------- run: folders
    Case("run-out-is-a-file", ["run", *PM, "--out", "{file}"], "exists and is a file, not a folder"),
    Case("run-out-unwritable", ["run", *PM, "--out", "/sys/ptrag-bad-input"], "cannot create the folder"),
    Case("run-out-under-a-file", ["run", *PM, "--out", "{file}/run"], "cannot create the folder"),
    Case("run-out-holds-another-run", ["run", "--preset", "control", *TINY, "--out", "{run_pm}"],
         "holds a different run (preset: pert-mean -> control"),
    Case("run-out-holds-this-finished-run", ["run", *PM, "--out", "{run_pm}"], "already holds this finished run"),
    Case("run-out-holds-other-files", ["run", *PM, "--out", "{notes}"], "holds no ptrag run"),
    Case("run-out-holds-a-killed-run", ["run", "--preset", "state", *SMALL, "--steps", "4", "--set",
                                        "train.val_every=2", "--out", "{killed}"], "--resume"),
    Case("resume-with-other-settings", ["run", "--resume", "{run_tr}", "--set", "model.hidden_dim=64"],
         "the checkpoint was trained with other settings (model.hidden_dim: 16 -> 64)"),
    Case("resume-with-other-steps", ["run", "--resume", "{killed}", "--steps", "8"], "train.steps: 4 -> 8"),
    Case("resume-not-a-run", ["run", "--resume", "{notes}"], "not a run folder (no .ptrag-run)"),
    Case("resume-without-checkpoint", ["run", "--resume", "{no_ckpt}"], "nothing to resume"),
    Case("resume-a-finished-run", ["run", "--resume", "{run_pm}"], "finished already in", code=0,
         why="read back, not run again (a finished checkpoint keeps only the weights that predicted); the "
             "comparisons of an interrupted ptrag run go on this way"),
    # ---------------------------------------------------------------- run: names, values, files
    Case("run-unknown-retriever", ["run", "--retriever", "nosuch", "--out", "{new}"], "unknown retriever 'nosuch'"),
    Case("run-unknown-option", ["run", "--stepz", "3"], "No such option: --stepz", code=2),
    Case("run-negative-steps", ["run", "--steps", "-1"], "'--steps'", code=2),
    Case("run-unknown-device", ["run", "--device", "gpu"], "'--device': 'gpu' is not one of", code=2),
    Case("run-set-without-value", ["run", "--set", "train.steps"], "expected dotted.key=value"),
    Case("run-set-unknown-key", ["run", "--set", "train.stepz=3"], "train.stepz"),
    Case("run-config-not-yaml", ["run", "--config", "{bad_yaml}"], "not valid YAML"),
    Case("run-config-missing", ["run", "--config", "{tmp}/nope.yaml"], "config file not found"),
    Case("run-split-missing", ["run", *PM, "--split", "{tmp}/nope.toml", "--out", "{new}"], "split file not found"),
    Case("run-data-missing-markup", ["run", *PM, "--data", "{tmp}/screen[red].h5ad", "--out", "{new}"],
         "screen[red].h5ad: data file not found", why="rich markup in a path is printed as it is"),
    Case("run-data-missing-closing-tag", ["run", *PM, "--data", "{tmp}/a[/]b.h5ad", "--out", "{new}"],
         "a[/]b.h5ad: data file not found", why="used to crash with MarkupError"),
    Case("run-holdout-unknown-line", ["run", *PM, "--set", "data.holdout_context=nope", "--out", "{new}"],
         "no cell line 'nope' to hold out"),
    Case("run-retriever-k-0", ["run", "--preset", "ptrag", *TINY, "--set", "retriever.k=0", "--out", "{new}"],
         "retriever.k=0 with retriever 'exact' retrieves nothing"),
    Case("run-embeddings-not-a-dict", ["run", "--preset", "linear", *TINY, "--set",
                                       "data.gene_embeddings={emb_list}", "--out", "{new}"],
         "expected a non-empty dict of gene symbol -> 1-D tensor"),
    Case("run-embeddings-unknown-format", ["run", "--preset", "linear", *TINY, "--set",
                                           "data.gene_embeddings={file}", "--out", "{new}"],
         "unknown gene-embedding format"),
    Case("run-embeddings-unknown-builtin", ["run", "--preset", "linear", *TINY, "--set",
                                            "data.gene_embeddings=builtin:mouse", "--out", "{new}"],
         "no such built-in table; use builtin:demo, builtin:human"),
    # ---------------------------------------------------------------- run: the data
    Case("run-raw-counts", ["run", *PM, "--data", "{counts}", "--out", "{new}"], "looks like raw counts"),
    Case("run-not-log-transformed", ["run", *PM, "--data", "{cp10k}", "--out", "{new}"],
         "normalised but not log-transformed"),
    Case("run-all-zero", ["run", *PM, "--data", "{zeros}", "--out", "{new}"], "is all zeros"),
    Case("run-constant", ["run", *PM, "--data", "{constant}", "--out", "{new}"], "one constant value"),
    Case("run-nan", ["run", *PM, "--data", "{nan}", "--out", "{new}"], "NaN/inf value(s)"),
    Case("run-no-control-cells", ["run", *PM, "--data", "{tiny}", "--set", "data.control_label=ctrl",
                                  "--out", "{new}"], "no control cells"),
    Case("run-missing-embeddings-drop-too-many", ["run", "--preset", "linear", "--data", "{unknown_genes}",
                                                   "--out", "{new}"], "more than data.max_dropped_test=0.1"),
    Case("run-missing-embeddings-error-policy", ["run", "--preset", "linear", "--data", "{unknown_genes}", "--set",
                                                  "data.missing_embedding=error", "--out", "{new}"],
         "have no embedding"),
    # ---------------------------------------------------------------- run: goes on, says so
    Case("run-missing-embeddings-not-read", ["run", "--preset", "pert-mean", "--data", "{unknown_genes}",
                                              "--out", "{new}"],
         "kept, since no component of this run reads gene embeddings", code=0),
    Case("run-k-above-database", ["run", "--preset", "neighbour-mean", *TINY, "--set", "retriever.k=500",
                                  "--out", "{new}"], "retriever.k=500 exceeds the", code=0),
    Case("run-steps-0", ["run", "--preset", "state", *SMALL, "--steps", "0", "--out", "{new}"],
         "train.steps=0: the model is evaluated untrained", code=0),
    Case("run-single-perturbation-line", ["run", *PM[:2], "--data", "{one_pert_line}", "--set",
                                          "data.holdout_context=rpe1", "--out", "{new}"],
         "predicted zero-shot, not few-shot", code=0),
    Case("run-duplicated-cell-names", ["run", *PM[:2], "--data", "{dup_names}", "--out", "{new}"],
         "duplicated cell name(s)", code=0),
    # ---------------------------------------------------------------- predict
    Case("predict-not-a-run", ["predict", "--run", "{notes}", "--data", "{tiny}"], "not a run folder"),
    Case("predict-unfinished-run", ["predict", "--run", "{killed}", "--data", "{tiny}"],
         "the run has not finished (no metrics.json)"),
    Case("predict-data-missing", ["predict", "--run", "{run_pm}", "--data", "{tmp}/nope.h5ad", "--out", "{new}"],
         "data file not found"),
    Case("predict-raw-counts", ["predict", "--run", "{run_pm}", "--data", "{counts}", "--out", "{new}"],
         "looks like raw counts"),
    Case("predict-out-is-a-file", ["predict", "--run", "{run_pm}", "--data", "{tiny}", "--out", "{file}"],
         "exists and is a file"),
    Case("predict-out-holds-a-run", ["predict", "--run", "{run_pm}", "--data", "{tiny}", "--out", "{run_tr}"],
         "holds a different prediction"),
    Case("predict-other-features", ["predict", "--run", "{run_pm}", "--data", "{half_features}", "--out", "{new}"],
         "expression features differ from the run's"),
    Case("predict-untrained-cell-line", ["predict", "--run", "{run_pm}", "--data", "{new_line}", "--out", "{new}"],
         "were not in the run's training data"),
    Case("predict-missing-embeddings", ["predict", "--run", "{run_linear}", "--data", "{unknown_genes}", "--out",
                                        "{new}"], "more than data.max_dropped_test=0.1"),
    Case("predict-unknown-device", ["predict", "--run", "{run_pm}", "--data", "{tiny}", "--device", "tpu"],
         "'--device': 'tpu' is not one of", code=2),
    # ---------------------------------------------------------------- ablate
    Case("ablate-grid-changed", ["ablate", "{grid_changed}", "--out", "{ablation}"],
         "holds a run of another configuration (train.steps: 1000 -> 7)"),
    Case("ablate-grid-missing", ["ablate", "{tmp}/nope.yaml"], "config file not found"),
    Case("ablate-grid-empty", ["ablate", "{grid_empty}", "--out", "{new}"], "'runs' must be a non-empty list"),
    Case("ablate-out-is-a-file", ["ablate", "{grid}", "--out", "{file}"], "exists and is a file"),
    # ---------------------------------------------------------------- report
    Case("report-not-a-run", ["report", "{notes}"], "not a run folder"),
    Case("report-compare-one-run", ["report", "{run_pm}", "--compare", "{run_pm}", "--out", "{new}"],
         "--compare needs exactly two runs", code=2),
    Case("report-paired-across-data", ["report", "{run_pm}", "{run_pm_other_data}", "--compare", "{run_pm}",
                                       "--compare", "{run_pm_other_data}", "--out", "{new}"],
         "the two were made on different data"),
    Case("report-different-data", ["report", "{run_pm}", "{run_pm_other_data}", "--out", "{new}"],
         "were made on different data", code=0),
    Case("report-unknown-gene", ["report", "{run_pm}", "--genes", "NOPE", "--out", "{new}"],
         "neither a read-out gene (first: RRM1, TYMS, HBG1, POLR3E) nor a held-out perturbation"),
    # ---------------------------------------------------------------- data, genes, plugins
    Case("data-split-test-fraction", ["data", "split", "{tiny}", "--test-fraction", "1.5", "-o", "{new}/s.toml"],
         "--test-fraction: Input should be less than 1 (got 1.5)"),
    Case("data-split-single-perturbation-line", ["data", "split", "{one_pert_line}", "--holdout", "rpe1", "-o",
                                                 "{new}/s.toml"], "predicted zero-shot, not few-shot", code=0),
    Case("data-split-not-toml", ["data", "split", "{tiny}", "-o", "{new}/s.yaml"], "write the split as .toml"),
    Case("data-inspect-min-cells", ["data", "inspect", "{tiny}", "--min-cells", "0"],
         "--min-cells: Input should be greater than or equal to 1 (got 0)"),
    Case("data-inspect-missing", ["data", "inspect", "{tmp}/nope.h5ad"], "data file not found"),
    Case("data-inspect-not-h5ad", ["data", "inspect", "{file}"], "cannot be read as .h5ad"),
    Case("data-inspect-unknown-column", ["data", "inspect", "{tiny}", "--pert-col", "nope"],
         "obs has no perturbation column 'nope'"),
    Case("data-inspect-raw-counts", ["data", "inspect", "{counts}"], "looks like raw counts", code=0),
    Case("data-synth-unwritable", ["data", "synth", "--preset", "tiny", "-o", "/sys/ptrag-bad-input.h5ad"],
         "cannot write the file (Permission denied)"),
    Case("data-synth-unknown-preset", ["data", "synth", "--preset", "nope", "-o", "{new}/x.h5ad"],
         "unknown synthetic preset 'nope'"),
    Case("genes-build-no-annotation", ["genes", "build", "--from", "{notes}", "-o", "{new}/g.npz"],
         "no org.Hs.eg.sqlite and GO.sqlite below it"),
    Case("plugins-unknown-kind", ["plugins", "--kind", "nosuch"], "unknown kind 'nosuch'"),
    Case("plugins-conflict-listed", ["plugins", "--all"], "offered by both", code=0, plugins="clash"),
    Case("run-conflicting-name", ["run", *PM, "--out", "{new}"], "generator 'pert-mean' is offered by both",
         plugins="clash"),
    Case("run-other-name-despite-conflict", ["run", "--preset", "control", *TINY, "--out", "{new}"],
         "control: 9 held-out perturbations", code=0,
         plugins="clash", why="only commands that need the conflicting name fail"),
]


def _write(adata, path: Path) -> str:
    adata.write_h5ad(path)
    return str(path)


def prepare(root: Path, env: dict[str, str]) -> None:
    """The files and run folders the cases point at (tiny data, small budgets)."""
    import torch

    from ptrag.core.components.manager import build_manager
    from ptrag.core.config import resolve_config
    from ptrag.core.data.synth import synth_screen
    from ptrag.core.runs.experiment import run_experiment

    runner = CliRunner()
    tiny = synth_screen("tiny", 0)
    env["tiny"] = _write(tiny, root / "tiny.h5ad")
    x = np.asarray(tiny.obsm["X_hvg"])

    def variant(name: str, matrix=None, **obs):
        a = tiny.copy()
        if matrix is not None:
            a.obsm["X_hvg"] = np.asarray(matrix, dtype=np.float32)
        for col, values in obs.items():
            a.obs[col] = values
        env[name] = _write(a, root / f"{name}.h5ad")
        return a

    variant("counts", np.round(np.expm1(x) * 4))
    variant("cp10k", np.expm1(x) * 10 + 0.5)
    variant("zeros", np.zeros_like(x))
    variant("constant", np.full_like(x, 2.0))
    nan = x.copy()
    nan[3, 5] = np.nan
    variant("nan", nan)
    genes = tiny.obs["gene"].astype(str)
    variant("unknown_genes", gene=np.where(genes == "non-targeting", genes, "ZZ" + genes).astype(object))
    variant("new_line", cell_line=np.where(tiny.obs["cell_line"].astype(str) == "k562", "hepg2",
                                           tiny.obs["cell_line"].astype(str)).astype(object))
    dup = tiny.copy()
    names = dup.obs_names.to_numpy().copy()
    names[1] = names[0]
    dup.obs_names = names
    env["dup_names"] = _write(dup, root / "dup_names.h5ad")
    line = tiny.obs["cell_line"].astype(str)
    first = sorted(set(genes[(line == "rpe1") & (genes != "non-targeting")]))[0]
    keep = (line != "rpe1") | (genes == "non-targeting") | (genes == first)
    env["one_pert_line"] = _write(tiny[keep.to_numpy()].copy(), root / "one_pert_line.h5ad")
    half = tiny[:, : tiny.n_vars // 2].copy()
    half.obsm["X_hvg"] = x[:, : tiny.n_vars // 2].copy()
    env["half_features"] = _write(half, root / "half_features.h5ad")
    env["other_data"] = _write(synth_screen("tiny", 1), root / "other_data.h5ad")

    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("my notes\n")
    env["notes"] = str(root / "notes")
    (root / "file.txt").write_text("not a folder, not an .h5ad\n")
    env["file"] = str(root / "file.txt")
    (root / "bad.yaml").write_text("train: [steps\n")
    env["bad_yaml"] = str(root / "bad.yaml")
    torch.save([1.0, 2.0], root / "emb_list.pt")
    env["emb_list"] = str(root / "emb_list.pt")

    def run(name: str, *args: str) -> str:
        result = runner.invoke(app, ["run", *args, "--out", str(root / name)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        env[name] = str(root / name)
        return env[name]

    run("run_pm", *PM)
    run("run_pm_other_data", *PM[:2], "--data", env["other_data"])
    run("run_linear", "--preset", "linear", *TINY)
    run("run_tr", "--preset", "ptrag", *SMALL, "--steps", "2", "--set", "train.val_every=2")
    manager = build_manager(entry_points=False)
    sets = [s for s in SMALL if s not in ("--set", "--device", "cpu")]
    killed = resolve_config(None, preset="state", manager=manager, sets=[
        *sets, "device=cpu", "train.steps=4", "train.val_every=2", f"output.dir={root / 'killed'}"])
    with crash_after(2), pytest.raises(KeyboardInterrupt):
        run_experiment(killed, manager)
    env["killed"] = str(root / "killed")
    (root / "no_ckpt").mkdir()
    (root / "no_ckpt" / "config.yaml").write_text((root / "run_tr" / "config.yaml").read_text())
    (root / "no_ckpt" / ".ptrag-run").write_text((root / "run_tr" / ".ptrag-run").read_text())  # ptrag's
    env["no_ckpt"] = str(root / "no_ckpt")

    grid = {"base": {"data": {"synth_preset": "tiny"}, "metrics": ["mse"]}, "seeds": [0],
            "runs": [{"preset": "control"}]}
    (root / "grid.yaml").write_text(yaml.safe_dump(grid))
    env["grid"] = str(root / "grid.yaml")
    result = runner.invoke(app, ["ablate", env["grid"], "--out", str(root / "ablation")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    env["ablation"] = str(root / "ablation")
    changed = {**grid, "runs": [{"preset": "control", "set": ["train.steps=7"]}]}
    (root / "grid_changed.yaml").write_text(yaml.safe_dump(changed))
    env["grid_changed"] = str(root / "grid_changed.yaml")
    (root / "grid_empty.yaml").write_text(yaml.safe_dump({"runs": []}))
    env["grid_empty"] = str(root / "grid_empty.yaml")
