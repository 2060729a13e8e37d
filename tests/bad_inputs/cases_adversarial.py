"""Bad-input cases of the adversarial round after issue 26 (tests/bad_inputs/adversarial-round.md
has every case tried and its class): each finding of that round, and some of the cases that were
already fine, through the real CLI.

Findings by family: files that are not UTF-8 text or give a YAML key twice; ``--set preset=``
that relabelled a run; one obs column in two roles; a matrix without features; run records
(metrics.json, fingerprint.json, ablation.json, checkpoint.pt) edited by hand; ``--overwrite``
and the user's files inside a run's own folders (``retriever/``, ``report/``); outputs written
into a run's own entries (``compare/``, ``retriever/``) or over an existing file; a finished
run whose records were deleted, and a finished in-silico screen, taken for stopped ones;
``ptrag predict`` of a run whose config.yaml was edited; in-silico gene names (another spelling,
a control label, a combination, too many cells) and options it ignored; plugins raising a
``BaseException`` that is no ``Exception`` or returning an int beyond a float; a TOML writer
that let a dataset name inject sections; embedding tables whose first data row was taken for
a header, or whose vectors are all the same; two reported runs averaged as seeds of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ptrag.core.runs.marker import MARKER

from .case import PM, TINY, Case

LINEAR = ["run", "--preset", "linear", *TINY]
KD = ["predict", "--run", "{run_pm}", "--line", "rpe1"]
NOT_MINE = "also holds files ptrag did not write"
NOT_OURS = "not a metrics.json ptrag wrote"
BELONGS = "and ptrag adds nothing to it; choose a path outside"
NEVER = "exists; ptrag never overwrites a file: give a new name"
ADVERSARY, CLOSING = "adversary", "closing"

CASES = [
    # ---------------------------------------------------------------- files people write
    Case("adv-config-not-utf8", ["run", "--config", "{a_binary_yaml}"], "a_binary.yaml: not UTF-8 text (byte 128",
         why="a UnicodeDecodeError traceback"),
    Case("adv-config-utf16", ["run", "--config", "{a_utf16_yaml}"], "a_utf16.yaml: not UTF-8 text",
         why="a UnicodeDecodeError traceback (a spreadsheet's UTF-16 export)"),
    Case("adv-grid-not-utf8", ["ablate", "{tiny}", "--out", "{new}"], "tiny.h5ad: not UTF-8 text"),
    Case("adv-config-key-twice", ["run", "--config", "{a_twice_yaml}"],
         "the key 'train' is given twice (first on line 2); the second would silently replace the first",
         why="the second train: section silently replaced the first"),
    Case("adv-set-preset-unknown", ["run", *PM, "--set", "preset=../../escaped", "--out", "{new}"],
         "unknown preset '../../escaped'",
         why="--set preset= only relabelled the run (and named its default folder with ..)"),
    Case("adv-set-preset-applies", ["run", *PM, "--set", "preset=control", "--out", "{new}"],
         "control: 9 held-out perturbations", code=0, why="ran pert-mean labelled control"),
    Case("adv-column-in-two-roles", ["run", *PM, "--pert-col", "cell_line", "--out", "{new}"],
         "data.pert_col and data.context_col both name obs column 'cell_line'", why="an AttributeError traceback"),
    Case("adv-inspect-column-in-two-roles", ["data", "inspect", "{tiny}", "--batch-col", "gene"],
         "data.pert_col and data.batch_col both name obs column 'gene'"),
    Case("adv-matrix-without-features", ["run", *PM[:2], "--data", "{a_no_features}", "--out", "{new}"],
         "holds no values (no features, or no cells)", why="a ValueError traceback in the PCA"),
    Case("adv-prepare-target-sum-nan", ["data", "prepare", "{a_counts}", "--target-sum", "nan", "-o", "{new}/p.h5ad"],
         "--target-sum nan: must be a finite number above 0", why="wrote a screen of NaN"),
    Case("adv-prepare-not-h5ad", ["data", "prepare", "{a_counts}", "-o", "{new}/p.csv"],
         "write the prepared screen as .h5ad"),
    Case("adv-split-dataset-with-quotes", ["data", "split", "{tiny}", "--dataset", 'my "screen" [v2]', "-o",
                                           "{new}/s.toml"],
         "random few-shot: 9 test / 3 val perturbations of rpe1", code=0,
         why="wrote a TOML ptrag could not read back (a name with a newline injected a section: "
             "tests/test_adversarial.py)"),
    Case("adv-grid-seed-twice", ["ablate", "{a_seeds_twice_yaml}", "--out", "{new}"],
         "'seeds' lists [0] more than once",
         why="refused only after the first run, as 'already holds this finished run'"),
    # ---------------------------------------------------------------- gene-embedding tables
    Case("adv-embeddings-nan-first-row", [*LINEAR, "--set", "data.gene_embeddings={a_nan_first_csv}", "--out",
                                          "{new}"],
         "a_nan_first.csv: 1 row(s) have missing or non-numeric values (first: CCT2)",
         why="the row was taken for a header: CCT2 was dropped as a gene without an embedding"),
    Case("adv-embeddings-all-zero", ["run", "--preset", "neighbour-mean", *TINY, "--set", "compare=[]", "--set",
                                     "data.gene_embeddings={a_zero_npz}", "--out", "{new}"],
         "every gene has the same embedding (all zeros for 30 genes)", why="retrieved arbitrary neighbours"),
    Case("adv-embeddings-complex", [*LINEAR, "--set", "data.gene_embeddings={a_complex_npz}", "--out", "{new}"],
         "the gene embeddings are complex numbers", why="numpy's warning, then the real parts (zeros) were used"),
    Case("adv-embeddings-deeply-nested-pickle", [*LINEAR, "--set", "data.gene_embeddings={a_deep_pkl}", "--out",
                                                 "{new}"],
         "a_deep.pkl: cannot read gene embeddings (ValueError", why="fine: a list 100,000 levels deep, no recursion"),
    # ---------------------------------------------------------------- run records edited by hand
    Case("adv-metrics-json-a-list", ["report", "{a_metrics_list}", "--out", "{new}"], f"{NOT_OURS} (a list",
         why="an AttributeError traceback"),
    Case("adv-metrics-json-without-metrics", ["report", "{a_metrics_empty}", "--out", "{new}"],
         f"{NOT_OURS} (no 'metrics' object)", why="a KeyError traceback"),
    Case("adv-metrics-json-text-values", ["report", "{a_metrics_text}", "--out", "{new}"],
         f"{NOT_OURS} (metric 'mse' is not", why="a TypeError traceback"),
    Case("adv-ablation-json-edited", ["report", "{a_grid_edited}", "--out", "{new}"],
         "ablation.json: not an ablation.json ptrag wrote", why="a TypeError traceback"),
    Case("adv-fingerprint-a-list", ["run", *PM, "--out", "{a_fingerprint_list}"],
         "already holds this finished run", why="an AttributeError traceback"),
    Case("adv-config-yaml-not-utf8-predict", ["predict", "--run", "{a_config_binary}", "--data", "{tiny}", "--out",
                                              "{new}"], "config.yaml: not UTF-8 text"),
    Case("adv-checkpoint-without-meta", ["predict", "--run", "{a_ckpt_no_meta}", "--data", "{tiny}", "--out",
                                         "{new}"],
         "checkpoint.pt: not a checkpoint ptrag wrote (meta lacks perts, contexts, batches, pert_embedding, database)",
         why="a KeyError traceback"),
    Case("adv-checkpoint-nan-weights", ["predict", "--run", "{a_ckpt_nan}", "--data", "{tiny}", "--out", "{new}"],
         "hold NaN or inf; ptrag never saves such weights", why="blamed a built-in selector: 'a bug in ptrag'"),
    Case("adv-resume-checkpoint-without-optimiser", ["run", "--resume", "{a_killed_no_optimiser}"],
         "not a checkpoint to resume from (it lacks optimizer)"),
    Case("adv-predictions-h5ad-damaged-report", ["report", "{a_predictions_damaged}", "--out", "{new}"],
         "predictions.h5ad: cannot be read as .h5ad: not an HDF5 file", why="h5py's words without the file's name"),
    Case("adv-report-genes-without-real", ["report", "{a_no_real}", "--genes", "RRM1", "--out", "{new}"],
         "--genes plots predicted against real mean changes, and it has no real.h5ad",
         why="the requested figure was left out without a word"),
    Case("adv-predict-after-editing-config", ["predict", "--run", "{a_config_edited}", "--data", "{tiny}", "--out",
                                              "{new}"],
         "config.yaml was edited since the run began (seed: 0 -> 5)", why="predicted with the edited value"),
    Case("adv-records-deleted-rerun", ["run", *PM, "--out", "{a_records_deleted}"],
         "its config.yaml and fingerprint.json are missing, so what made it is unknown",
         why="taken for a stopped run: its results were deleted without --overwrite"),
    Case("adv-report-two-runs-one-name", ["report", "{run_pm}", "{a_twin}/run_pm", "--out", "{new}"],
         "are both run 'pert-mean@run_pm' with the same seed: the report would average them",
         why="two pert-mean runs of one seed in folders of one name averaged as two seeds of one configuration"),
    Case("adv-report-two-presets-one-folder-name", ["report", "{run_pm}", "{a_twin_linear}/run_pm", "--out", "{new}"],
         "linear", code=0, why="a linear and a pert-mean run averaged as two seeds of one configuration"),
    # ---------------------------------------------------------------- the user's files and ptrag's folders
    Case("adv-overwrite-keeps-a-file-in-retriever", ["run", *PM, "--out", "{a_user_in_retriever}", "--overwrite"],
         f"{NOT_MINE} (retriever/notes.txt)", why="--overwrite deleted it with the retriever's files"),
    Case("adv-overwrite-keeps-a-file-in-report", ["run", *PM, "--out", "{a_user_in_report}", "--overwrite"],
         f"{NOT_MINE} (report/my_figure.png)", why="--overwrite deleted it with the report"),
    Case("adv-overwrite-a-listed-file-now-a-folder", ["run", *PM, "--out", "{a_listed_now_folder}", "--overwrite"],
         f"{NOT_MINE} (metrics.csv/thesis.docx)", why="--overwrite deleted the folder with the user's file in it"),
    Case("adv-report-over-the-users-report", ["report", "{run_pm}", "--out", "{a_users_report}"],
         "report.html: exists and ptrag did not write it", why="the user's report.html was overwritten"),
    Case("adv-report-into-the-run", ["report", "{run_pm}", "--out", "{a_report_self}"],
         "holds a ptrag run; a report goes in a folder of its own",
         why="the run's marker listed the report as its own"),
    Case("adv-report-into-a-runs-retriever", ["report", "{run_pm}", "--out", "{a_report_self}/retriever"],
         "holds a ptrag retriever; a report goes in a folder of its own", why="written into the run's retriever/"),
    Case("adv-run-into-a-runs-retriever", ["run", *PM, "--out", "{a_report_self}/retriever", "--overwrite"],
         "holds a ptrag retriever, not a run; --overwrite never replaces one with the other",
         why="fine before only because retriever/ held files; its marker says so now"),
    Case("adv-grid-into-a-runs-compare", ["ablate", "{grid}", "--out", "{a_with_compare}/compare"], BELONGS,
         why="a grid's runs mixed with the run's comparisons"),
    Case("adv-synth-over-a-users-file", ["data", "synth", "--preset", "tiny", "-o", "{a_users_h5ad}"], NEVER,
         why="the user's file was replaced"),
    Case("adv-split-over-a-users-file", ["data", "split", "{tiny}", "-o", "{a_users_toml}"], NEVER),
    Case("adv-genes-sets-over-a-users-file", ["genes", "sets", "--from", "{tmp}", "-o", "{a_users_toml}"], NEVER,
         why="checked before the annotation is looked for, and before hours of embedding in genes build"),
    Case("adv-synth-over-a-runs-predictions", ["data", "synth", "--preset", "tiny", "-o",
                                               "{a_report_self}/predictions.h5ad"], NEVER,
         why="a run's predictions.h5ad was replaced by a screen"),
    Case("adv-synth-into-a-runs-compare", ["data", "synth", "--preset", "tiny", "-o",
                                           "{a_with_compare}/compare/x.h5ad"], BELONGS),
    Case("adv-run-beside-a-runs-entries", ["run", *PM, "--out", "{a_with_compare}/mine", "--set", "metrics=[mse]"],
         "pert-mean: 9 held-out perturbations", code=0,
         why="fine: beside the run's entries an output is the user's (--overwrite of the run then names it)"),
    # ---------------------------------------------------------------- in-silico screens
    Case("adv-kd-other-spelling", [*KD, "--genes", "cct7,CCT7", "--out", "{new}"], "strongest predicted effect first",
         code=0, why="cct7 was predicted as a second, unmeasured gene"),
    Case("adv-kd-control-label", [*KD, "--genes", "non-targeting", "--out", "{new}"],
         "--genes non-targeting: a control label (or one that looks like it), not a gene to knock down",
         why="predicted as a knock-down"),
    Case("adv-kd-control-like", [*KD, "--genes", "NTC,CCT7", "--out", "{new}"], "--genes NTC: a control label"),
    Case("adv-kd-combination", [*KD, "--genes", "CCT7+POLR2C", "--out", "{new}"],
         "--genes CCT7+POLR2C: a combination of genes (joined by '+')", why="predicted as one gene named CCT7+POLR2C"),
    Case("adv-kd-too-many-cells", [*KD, "--genes", "CCT7", "--cells", "1000000000", "--out", "{new}"],
         "is more than the 2,000,000,000 values one in-silico screen predicts", why="ran out of memory (a hang)"),
    Case("adv-kd-finished-again", [*KD, "--genes", "CCT7", "--out", "{a_kd_done}"],
         "already holds this finished knockdowns", why="redone silently: the screen was never 'finished'"),
    Case("adv-kd-ignores-gene-sets", [*KD, "--genes", "CCT7", "--gene-sets", "{tmp}/nope.gmt", "--out", "{new}"],
         "--gene-sets: not used by an in-silico screen", why="ignored without a word"),
    Case("adv-predict-cells-without-genes", ["predict", "--run", "{run_pm}", "--data", "{tiny}", "--cells", "5",
                                             "--out", "{new}"],
         "--cells goes with --genes and --line", why="ignored without a word"),
    # ---------------------------------------------------------------- plugins
    Case("adv-plugin-metric-raises-generatorexit", ["run", *PM, "--set", "metrics=[mse, exits-generator]", "--out",
                                                    "{new}"],
         "compute on CCT7 in rpe1 failed (it raised GeneratorExit: closing, which is not an Exception",
         plugins=ADVERSARY, why="escaped every handler: a traceback"),
    Case("adv-plugin-metric-huge-int", ["run", *PM, "--set", "metrics=[mse, huge-int]", "--out", "{new}"],
         "returned a number too large for a float", plugins=ADVERSARY, why="an OverflowError traceback"),
    Case("adv-plugin-import-raises-generatorexit", ["plugins"],
         "import failed (it raised GeneratorExit: the plugin closed itself, which is not an Exception", code=0,
         plugins=CLOSING, why="a traceback, and no plugin listed"),
    Case("adv-plugin-run-beside-a-failed-import", ["run", *PM, "--set", "metrics=[mse]", "--out", "{new}"],
         "pert-mean: 9 held-out perturbations", code=0, plugins=CLOSING),
    Case("adv-plugin-save-fails", ["run", "--preset", "neighbour-mean", *TINY, "--set", "compare=[]", "--retriever",
                                   "save-fails", "--out", "{new}"],
         "save failed (OSError: [Errno 28] No space left on device", plugins=ADVERSARY,
         why="fine: one line, and the folder removed"),
    Case("adv-plugin-hooks-of-wrong-types", ["plugins"], "hook ptrag_selectors returned a metric spec", code=0,
         plugins="hostile", why="fine: listed as failed, the others work"),
]


def _copy(env: dict[str, str], source: str, root: Path, name: str) -> Path:
    shutil.copytree(env[source], root / name)
    env[name] = str(root / name)
    return root / name


def _write(root: Path, env: dict[str, str], name: str, body: str | bytes) -> None:
    path = root / name
    path.write_bytes(body) if isinstance(body, bytes) else path.write_text(body)
    env[name.replace(".", "_")] = str(path)


def _checkpoint(folder: Path, change) -> None:
    import torch

    ck = torch.load(folder / "checkpoint.pt", weights_only=False)  # the test's own file
    torch.save(change(ck), folder / "checkpoint.pt")


def _nan_weights(ck: dict) -> dict:
    state = ck.get("best_model") or ck["model"]
    import torch

    return {**ck, "best_model": {k: v * float("nan") if torch.is_tensor(v) and v.is_floating_point() else v
                                 for k, v in state.items()}}


def _pickle_deeply_nested(genes: list[str], depth: int = 100_000) -> bytes:
    """A GenePT-style dict whose first vector is a list ``depth`` levels deep, written as pickle
    opcodes (pickling such a list from Python would recurse)."""
    import struct

    out = b"\x80\x04}"
    for i, name in enumerate(genes):
        out += b"X" + struct.pack("<I", len(name.encode())) + name.encode()
        out += b"]" * depth + b"a" * (depth - 1) if i == 0 else b"](G" + struct.pack(">d", 0.5) + b"e"
        out += b"s"
    return out + b"."


def _files(root: Path, env: dict[str, str], tiny) -> None:
    _write(root, env, "a_binary.yaml", bytes(range(256)))
    _write(root, env, "a_utf16.yaml", "preset: pert-mean\n".encode("utf-16"))
    _write(root, env, "a_twice.yaml", "preset: pert-mean\ntrain: {steps: 10}\ndata: {synth_preset: tiny}\n"
                                      "train: {lr: 0.01}\n")
    grid = {"base": {"data": {"synth_preset": "tiny"}, "metrics": ["mse"]}, "seeds": [0, 0], "runs": ["control"]}
    _write(root, env, "a_seeds_twice.yaml", yaml.safe_dump(grid))
    empty = tiny[:, :0].copy()
    empty.obsm["X_hvg"] = np.zeros((tiny.n_obs, 0), dtype=np.float32)
    empty.write_h5ad(root / "a_no_features.h5ad")
    env["a_no_features"] = str(root / "a_no_features.h5ad")
    counts = tiny.copy()
    counts.X = np.round(np.expm1(np.asarray(tiny.obsm["X_hvg"])) * 4).astype(np.float32)
    del counts.obsm["X_hvg"]
    counts.write_h5ad(root / "a_counts.h5ad")
    env["a_counts"] = str(root / "a_counts.h5ad")
    _write(root, env, "a_users.h5ad", "the user's own file\n")
    _write(root, env, "a_users.toml", "# the user's own split\n")


def _embeddings(root: Path, env: dict[str, str], tiny) -> None:
    genes = sorted(set(tiny.obs["gene"].astype(str)) - {"non-targeting"})
    matrix = np.random.default_rng(0).standard_normal((len(genes), 8)).astype(np.float32)
    first_nan = matrix.copy()
    first_nan[0, 0] = np.nan
    pd.DataFrame(first_nan, index=genes).to_csv(root / "a_nan_first.csv", header=False)
    env["a_nan_first_csv"] = str(root / "a_nan_first.csv")
    np.savez(root / "a_zero.npz", names=np.array(genes), embeddings=np.zeros_like(matrix))
    env["a_zero_npz"] = str(root / "a_zero.npz")
    np.savez(root / "a_complex.npz", names=np.array(genes), embeddings=matrix.astype(np.complex64) * 1j)
    env["a_complex_npz"] = str(root / "a_complex.npz")
    _write(root, env, "a_deep.pkl", _pickle_deeply_nested(genes))


def _records(root: Path, env: dict[str, str]) -> None:
    for name, body in (("a_metrics_list", "[1, 2]"), ("a_metrics_empty", "{}"),
                       ("a_metrics_text", json.dumps({"metrics": {"mse": "low"}}))):
        (_copy(env, "run_pm", root, name) / "metrics.json").write_text(body)
    (_copy(env, "ablation", root, "a_grid_edited") / "ablation.json").write_text('{"runs": 3}')
    (_copy(env, "run_pm", root, "a_fingerprint_list") / "fingerprint.json").write_text("[1]")
    (_copy(env, "run_pm", root, "a_config_binary") / "config.yaml").write_bytes(bytes(range(128, 256)))
    _checkpoint(_copy(env, "run_tr", root, "a_ckpt_no_meta"), lambda ck: {**ck, "meta": {"features": []}})
    _checkpoint(_copy(env, "run_tr", root, "a_ckpt_nan"), _nan_weights)
    _checkpoint(_copy(env, "killed", root, "a_killed_no_optimiser"),
                lambda ck: {k: v for k, v in ck.items() if k != "optimizer"})
    (_copy(env, "run_pm", root, "a_predictions_damaged") / "predictions.h5ad").write_text("not hdf5")
    (_copy(env, "run_pm", root, "a_no_real") / "real.h5ad").unlink()
    edited = _copy(env, "run_pm", root, "a_config_edited")
    (edited / "config.yaml").write_text((edited / "config.yaml").read_text().replace("seed: 0\n", "seed: 5\n", 1))
    deleted = _copy(env, "run_pm", root, "a_records_deleted")
    (deleted / "config.yaml").unlink()
    (deleted / "fingerprint.json").unlink()
    for name, source in (("a_twin", "run_pm"), ("a_twin_linear", "run_linear")):  # a run under the same name
        (root / name).mkdir()
        shutil.copytree(env[source], root / name / "run_pm")
        env[name] = str(root / name)


def _folders(root: Path, env: dict[str, str]) -> None:
    from typer.testing import CliRunner

    from ptrag.cli.app import app

    (_copy(env, "run_pm", root, "a_user_in_retriever") / "retriever" / "notes.txt").write_text("mine\n")
    reported = _copy(env, "run_pm", root, "a_user_in_report")
    result = CliRunner().invoke(app, ["report", str(reported)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (reported / "report" / "my_figure.png").write_bytes(b"\x89PNG mine")
    listed = _copy(env, "run_pm", root, "a_listed_now_folder")
    (listed / "metrics.csv").unlink()
    (listed / "metrics.csv").mkdir()
    (listed / "metrics.csv" / "thesis.docx").write_text("mine\n")
    (root / "a_users_report").mkdir()
    (root / "a_users_report" / "report.html").write_text("<p>my own report</p>\n")
    env["a_users_report"] = str(root / "a_users_report")
    _copy(env, "run_pm", root, "a_report_self")
    with_compare = _copy(env, "run_pm", root, "a_with_compare")
    (with_compare / "compare").mkdir()
    mark = json.loads((with_compare / MARKER).read_text())
    (with_compare / MARKER).write_text(json.dumps({**mark, "files": [*mark["files"], "compare"]}))
    done = root / "a_kd_done"
    result = CliRunner().invoke(app, [*(a.format(**env) for a in KD), "--genes", "CCT7", "--out", str(done)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    env["a_kd_done"] = str(done)


def prepare(root: Path, env: dict[str, str]) -> None:
    import anndata as ad

    tiny = ad.read_h5ad(env["tiny"])
    _files(root, env, tiny)
    _embeddings(root, env, tiny)
    _records(root, env)
    _folders(root, env)
