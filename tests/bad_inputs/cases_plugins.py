"""Bad-input cases of plugins: components that break their contract, metrics undefined for a
group, baselines that cannot do what their name says, library warnings.

The misbehaving components come from one third-party package, tests/fixtures/misbehaving
(``ptrag-misbehaving``), each breaking one rule, so every case shows the one line the engine
prints for that rule: the component, its package and version, and what it did wrong.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
from typer.testing import CliRunner

from ptrag.cli.app import app

from .case import PM, SMALL, TINY, Case, fixture_on_path

NM = ["--preset", "neighbour-mean", *TINY]  # retrieval without training: exact, k=8, same gene excluded
SEL = [*NM, "--generator", "uses-selection"]  # a selector's output reaches a (well-behaved) generator
GEN = [*NM, "--selector", "uniform-ok"]


def _bad(id: str, args: list[str], expect: str, why: str = "") -> Case:
    """A run (or predict) with a component of the misbehaving package."""
    return Case(id, args, expect, plugins="misbehaving", why=why)


CASES = [
    # ---------------------------------------------------------------- retrievers
    _bad("plugin-retriever-id-past-the-end", ["run", *NM, "--retriever", "bad-ids", "--out", "{new}"],
         "retriever 'bad-ids' (plugin misbehaving, package ptrag-misbehaving 0.1.0) broke its contract: search "
         "returned id 97 for 48 database entries", why="used to crash inside the generator"),
    _bad("plugin-retriever-short-rows", ["run", *NM, "--retriever", "short-rows", "--out", "{new}"],
         "search returned 7 columns for k=8", why="was accepted silently"),
    _bad("plugin-retriever-long-rows", ["run", *NM, "--retriever", "long-rows", "--out", "{new}"],
         "search returned 9 columns for k=8"),
    _bad("plugin-retriever-returns-own-gene", ["run", *NM, "--retriever", "ignores-exclude", "--out", "{new}"],
         "got its gene's entry in k562 (model.exclude_same_gene)", why="was accepted silently"),
    _bad("plugin-retriever-returns-own-entry", ["run", "--preset", "ptrag", *SMALL, "--steps", "1", "--retriever",
                                                "ignores-exclude", "--set", "model.exclude_same_gene=false",
                                                "--out", "{new}"], "got its own entry"),
    _bad("plugin-retriever-nan-scores", ["run", *NM, "--retriever", "nan-scores", "--out", "{new}"],
         "search returned score nan for candidate"),
    _bad("plugin-retriever-unsorted", ["run", *NM, "--retriever", "unsorted", "--out", "{new}"],
         "rows must be sorted by score, highest first"),
    _bad("plugin-retriever-float-ids", ["run", *NM, "--retriever", "float-ids", "--out", "{new}"],
         "search returned ids of dtype torch.float32; ids must be integers"),
    _bad("plugin-retriever-numpy-arrays", ["run", *NM, "--retriever", "numpy-result", "--out", "{new}"],
         "search returned scores as ndarray and ids as ndarray; both must be torch tensors"),
    _bad("plugin-retriever-returns-a-tuple", ["run", *NM, "--retriever", "tuple-result", "--out", "{new}"],
         "search returned tuple, not a RetrievalResult"),
    _bad("plugin-retriever-duplicate-ids", ["run", *NM, "--retriever", "duplicate-ids", "--out", "{new}"],
         "twice for query"),
    _bad("plugin-retriever-search-raises", ["run", *NM, "--retriever", "search-raises", "--out", "{new}"],
         "search failed (RuntimeError: index file is corrupt)", why="used to end in a traceback"),
    _bad("plugin-retriever-build-raises", ["run", *NM, "--retriever", "build-raises", "--out", "{new}"],
         "build failed (KeyError: 'cell_type')", why="used to end in a traceback"),
    _bad("plugin-factory-raises", ["run", *NM, "--retriever", "factory-raises", "--out", "{new}"],
         "its factory failed (RuntimeError: licence server unreachable)"),
    _bad("plugin-factory-returns-another-kind", ["run", *NM, "--retriever", "not-a-retriever", "--out", "{new}"],
         "its factory returned object, not a Retriever"),
    # ---------------------------------------------------------------- selectors
    _bad("plugin-selector-weights-padding", ["run", *SEL, "--selector", "weights-on-padding", "--set",
                                             "retriever.k=500", "--out", "{new}"],
         "a padding candidate (id -1) got a non-zero weight"),
    _bad("plugin-selector-nan-weights", ["run", *SEL, "--selector", "nan-weights", "--out", "{new}"],
         "forward returned weights with NaN or inf values"),
    _bad("plugin-selector-nan-context", ["run", *SEL, "--selector", "nan-context", "--out", "{new}"],
         "forward returned context with NaN or inf values"),
    _bad("plugin-selector-weights-shape", ["run", *SEL, "--selector", "flat-weights", "--out", "{new}"],
         "weights have shape (1, 8); expected [B,S,K]"),
    _bad("plugin-selector-nan-before-training", ["run", "--preset", "ptrag", *SMALL, "--steps", "2", "--set",
                                                 "train.val_every=2", "--selector", "nan-weights", "--out", "{new}"],
         "forward returned weights with NaN or inf values",
         why="a trainable model, caught at its untrained start; NaN after training steps is a divergence instead"),
    _bad("plugin-selector-nan-aux-loss", ["run", *SEL, "--selector", "nan-aux-loss", "--out", "{new}"],
         "forward returned auxiliary loss 'sparsity' with NaN or inf values"),
    _bad("plugin-selector-vector-aux-loss", ["run", *SEL, "--selector", "vector-aux-loss", "--out", "{new}"],
         "auxiliary loss 'sparsity' is (3,), not a scalar tensor"),
    _bad("plugin-selector-raises", ["run", *SEL, "--selector", "selector-raises", "--out", "{new}"],
         "forward failed (IndexError: index 8 is out of bounds"),
    _bad("plugin-selector-returns-a-tuple", ["run", *SEL, "--selector", "tuple-selection", "--out", "{new}"],
         "forward returned tuple, not a SelectorOutput"),
    # ---------------------------------------------------------------- generators
    _bad("plugin-generator-wrong-shape", ["run", *GEN, "--generator", "wrong-shape", "--out", "{new}"],
         "forward returned cells of shape (1, 29, 63); expected [B,S,G] = (1, 29, 64)"),
    _bad("plugin-generator-nan-cells", ["run", *GEN, "--generator", "nan-cells", "--out", "{new}"],
         "forward predicted NaN or inf cells for CCT7 in rpe1"),
    _bad("plugin-generator-fit-raises", ["run", *GEN, "--generator", "fit-raises", "--out", "{new}"],
         "fit failed (ValueError: could not convert string to float"),
    _bad("plugin-generator-forward-raises", ["run", *GEN, "--generator", "forward-raises", "--out", "{new}"],
         "forward failed (RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    _bad("plugin-generator-encode-raises", ["run", *GEN, "--generator", "encode-raises", "--out", "{new}"],
         "encode failed (AttributeError"),
    # ---------------------------------------------------------------- metrics
    _bad("plugin-metric-inf", ["run", *PM, "--set", "metrics=[mse, inf-metric]", "--out", "{new}"],
         "compute on CCT7 in rpe1 returned inf; a value must be finite, or NaN where the metric is undefined"),
    _bad("plugin-metric-several-values", ["run", *PM, "--set", "metrics=[mse, vector-metric]", "--out", "{new}"],
         "compute on CCT7 in rpe1 returned 2 values"),
    _bad("plugin-metric-text", ["run", *PM, "--set", "metrics=[mse, text-metric]", "--out", "{new}"],
         "returned the text '0.5'; a metric returns one number", why="float('0.5') used to pass"),
    _bad("plugin-metric-raises", ["run", *PM, "--set", "metrics=[mse, raises-metric]", "--out", "{new}"],
         "compute on CCT7 in rpe1 failed (ZeroDivisionError: division by zero)"),
    _bad("plugin-set-metric-wrong-length", ["run", *PM, "--set", "metrics=[mse, short-set]", "--out", "{new}"],
         "compute_set on cell line rpe1 returned 8 values (shape (8,)) for 9 groups"),
    Case("plugin-metric-undefined-everywhere", ["run", *PM, "--set", "metrics=[mse, nan-metric]", "--out", "{new}"],
         "nan-metric is undefined for 9 of 9 group(s)", code=0, plugins="misbehaving"),
    # ---------------------------------------------------------------- predict with a plugin's component
    _bad("predict-retriever-load-raises", ["predict", "--run", "{p_run_load_raises}", "--data", "{tiny}", "--out",
                                           "{new}"], "load failed (FileNotFoundError"),
    _bad("predict-retriever-breaks-after-load", ["predict", "--run", "{p_run_breaks}", "--data", "{tiny}", "--out",
                                                 "{new}"], "retriever 'breaks-after-load' (plugin misbehaving, "
         "package ptrag-misbehaving 0.1.0) broke its contract: search returned id 97"),
    Case("predict-plugin-uninstalled", ["predict", "--run", "{p_run_breaks}", "--data", "{tiny}", "--out", "{new}"],
         "unknown retriever 'breaks-after-load'", why="the run's plugin is no longer installed"),
    Case("predict-metric-undefined", ["predict", "--run", "{p_run_nan_metric}", "--data", "{tiny}", "--out",
                                      "{new}"], "nan-metric is undefined for 60 of 60 group(s)", code=0,
         plugins="misbehaving"),
    # ---------------------------------------------------------------- built-in metrics undefined for a group
    Case("run-metric-undefined-for-a-group", ["run", *PM[:2], "--data", "{p_no_change}", "--out", "{new}"],
         "pearson-delta, pearson-delta-de@20, de-overlap@20, de-direction@20 are undefined for 1 of 9 group(s) "
         "(first: CCT7 in rpe1", code=0, why="a group whose real cells do not change; used to be dropped silently"),
    Case("run-set-metric-one-group-in-a-line", ["run", *PM, "--set", "data.test_fraction=0.04", "--out", "{new}"],
         "discrimination is undefined for 1 of 1 group(s)", code=0),
    # ---------------------------------------------------------------- baselines that cannot be what they say
    Case("run-gene-other-lines-one-line", ["run", "--preset", "gene-other-lines", "--data", "{p_one_line}", "--out",
                                           "{new}"], "the screen has one cell line (rpe1)", code=0,
         why="used to be pert-mean under another name, silently"),
    Case("run-gene-other-lines-no-shared-gene", ["run", "--preset", "gene-other-lines", "--data", "{p_disjoint}",
                                                 "--out", "{new}"],
         "none of the 9 held-out perturbations was measured in another cell line", code=0),
    # ---------------------------------------------------------------- library warnings, in ptrag's words
    Case("report-font-lacks-glyphs", ["report", "{p_cjk_run}", "{run_pm}", "--out", "{new}"],
         "note: figures: the font DejaVu Sans has no glyph for some characters of the run or gene names", code=0,
         why="two runs of one preset and seed are named by their folders, one in Chinese; matplotlib used to warn "
             "in two lines once per character and figure"),
]


def misbehaving() -> contextlib.AbstractContextManager[None]:
    """The misbehaving package importable while a run that uses it is prepared."""
    return fixture_on_path("misbehaving")


def _screens(root: Path, env: dict[str, str]) -> None:
    """A group that does not change at all, one cell line, and two lines that share no gene."""
    from ptrag.core.data.synth import synth_screen

    tiny = synth_screen("tiny", 0)
    line, gene = tiny.obs["cell_line"].astype(str).to_numpy(), tiny.obs["gene"].astype(str).to_numpy()
    controls = tiny[(line == "rpe1") & (gene == "non-targeting")].copy()  # CCT7 in rpe1 := the line's controls
    controls.obs["gene"] = "CCT7"
    controls.obs_names = [f"{name}-cct7" for name in controls.obs_names]
    no_change = ad.concat([tiny[~((line == "rpe1") & (gene == "CCT7"))], controls], merge="same", uns_merge="same")
    for name, adata in (("p_no_change", no_change), ("p_one_line", tiny[line == "rpe1"].copy())):
        env[name] = str(root / f"{name}.h5ad")
        adata.write_h5ad(env[name])
    disjoint = tiny.copy()
    renamed = np.where((line == "k562") & (gene != "non-targeting"), np.char.add("K", gene.astype(str)), gene)
    disjoint.obs["gene"] = renamed.astype(object)
    env["p_disjoint"] = str(root / "p_disjoint.h5ad")
    disjoint.write_h5ad(env["p_disjoint"])


def prepare(root: Path, env: dict[str, str]) -> None:
    """The screens and finished runs the cases above point at, named in ``env``."""
    _screens(root, env)
    runner = CliRunner()

    def run(name: str, *args: str) -> None:
        result = runner.invoke(app, ["run", *args, "--out", str(root / name)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        env[name] = str(root / name)

    with misbehaving():
        run("p_run_load_raises", *NM, "--retriever", "load-raises")
        run("p_run_breaks", *NM, "--retriever", "breaks-after-load")
        run("p_run_nan_metric", *PM, "--set", "metrics=[mse, nan-metric]")
    env["p_cjk_run"] = str(root / "运行")  # a run folder named in Chinese ("run")
    shutil.copytree(env["run_pm"], env["p_cjk_run"])
