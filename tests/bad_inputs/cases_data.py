"""Bad-input cases of the data layer (issue 20): labels that look like controls, split files,
gene-embedding tables, duplicated feature names, seeds, and damaged .h5ad files. ``prepare``
writes the files they point at (variants of the tiny built-in screen) and names them in ``env``;
``{run_pm}`` is a finished run of cases_core."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from .case import PM, TINY, Case

LINEAR = ["--preset", "linear", *TINY]
SEEDS = [("negative", "-1"), ("2-32", "4294967296"), ("2-63", "9223372036854775808")]
RANGE = "must be an integer from 0 to 4294967295 = 2**32 - 1"
LOOKS = "look like controls but are not data.control_label 'non-targeting'"

CASES = [
    # ---------------------------------------------------------------- labels that look like controls
    Case("run-control-like-nt", ["run", *PM[:2], "--data", "{d_nt}", "--out", "{new}"], f"{LOOKS} ('NT': 225 cell(s)",
         why="half the controls labelled NT were held out and scored as a knock-down"),
    Case("run-control-like-capitalised", ["run", *PM[:2], "--data", "{d_capital}", "--out", "{new}"],
         "('Non-Targeting': 225 cell(s) in k562, rpe1)"),
    Case("run-control-like-underscore", ["run", *PM[:2], "--data", "{d_underscore}", "--out", "{new}"],
         "('non_targeting': 225 cell(s)"),
    Case("run-control-like-numbered", ["run", *PM[:2], "--data", "{d_numbered}", "--out", "{new}"],
         "('NTC_1': 113 cell(s) in k562, rpe1; 'NTC_2': 112 cell(s) in k562, rpe1)"),
    Case("run-control-like-two-words", ["run", *PM[:2], "--data", "{d_negative}", "--out", "{new}"],
         "('negative control': 225 cell(s)"),
    Case("run-control-like-in-held-out-line", ["run", *PM[:2], "--data", "{d_heldout}", "--out", "{new}"],
         "('ctrl': 100 cell(s) in rpe1)"),
    Case("run-control-like-declared-controls", ["run", *PM[:2], "--data", "{d_nt}", "--set",
                                                "data.control_labels=[NT]", "--out", "{new}"],
         "225 cell(s) labelled 'NT' are counted as controls", code=0),
    Case("run-control-like-allowed", ["run", *PM[:2], "--data", "{d_nt}", "--set", "data.allow_control_like=[NT]",
                                      "--out", "{new}"], "62 perturbation groups", code=0,
         why="NT declared a perturbation: it is one more group"),
    Case("run-control-like-declared-twice", ["run", *PM, "--set", "data.control_labels=[NT]", "--set",
                                             "data.allow_control_like=[NT]"], "are in both data.control_labels"),
    Case("run-control-labels-not-a-list", ["run", *PM, "--set", "data.control_labels=NT"],
         "data.control_labels: Input should be a valid list (got 'NT')"),
    Case("predict-control-like", ["predict", "--run", "{run_pm}", "--data", "{d_nt}", "--out", "{new}"], LOOKS),
    Case("predict-control-like-declared", ["predict", "--run", "{run_pm}", "--data", "{d_nt}", "--control-labels",
                                           "NT", "--out", "{new}"], "are counted as controls", code=0),
    Case("data-split-control-like", ["data", "split", "{d_numbered}", "-o", "{new}/s.toml"], "'NTC_1': 113 cell(s)"),
    Case("data-split-control-like-declared", ["data", "split", "{d_nt}", "--control-labels", "NT", "-o",
                                              "{new}/s.toml"], "are counted as controls", code=0),
    Case("data-inspect-control-like", ["data", "inspect", "{d_nt}"], "has label(s) that look like controls", code=0,
         why="inspect reports what run refuses, with the same words"),
    # ---------------------------------------------------------------- split files
    Case("run-split-number-toml", ["run", *PM, "--split", "{d_split_number}", "--out", "{new}"],
         'fewshot."tiny.rpe1".test[1] is the number 123, not a gene name; write gene names in quotes'),
    Case("run-split-string-toml", ["run", *PM, "--split", "{d_split_string}", "--out", "{new}"],
         'fewshot."tiny.rpe1".test is the string \'CCT2, MCM5\'; write a list of gene names, e.g. test = '
         '["CCT2", "MCM5"]', why="was read as one gene named 'CCT2, MCM5'"),
    Case("run-split-nested-toml", ["run", *PM, "--split", "{d_split_nested}", "--out", "{new}"],
         'fewshot."tiny.rpe1".test[0] is a list, not a gene name'),
    Case("run-split-number-yaml", ["run", *PM, "--split", "{d_split_number_yaml}", "--out", "{new}"],
         'fewshot."rpe1".val[0] is the number 7'),
    Case("run-split-string-yaml", ["run", *PM, "--split", "{d_split_string_yaml}", "--out", "{new}"],
         'fewshot."rpe1".test is the string \'CCT2\'; write a list of gene names, e.g. test: ["CCT2"]'),
    Case("run-split-empty-entry-yaml", ["run", *PM, "--split", "{d_split_null_yaml}", "--out", "{new}"],
         'fewshot."rpe1".test is nothing (null)'),
    Case("run-split-section-a-list-yaml", ["run", *PM, "--split", "{d_split_list_yaml}", "--out", "{new}"],
         "[fewshot] must be a table (e.g. [fewshot.\"replogle.k562\"] test = [\"AARS\"]), got a list"),
    Case("run-split-binary", ["run", *PM, "--split", "{d_split_binary}", "--out", "{new}"], "not a text file"),
    Case("run-split-zeroshot-number", ["run", *PM, "--split", "{d_split_zeroshot}", "--out", "{new}"],
         "[zeroshot] 'tiny.rpe1' = 1; expected \"val\" or \"test\""),
    # ---------------------------------------------------------------- gene-embedding tables
    Case("run-embeddings-duplicated-keys", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_dup}", "--out",
                                            "{new}"], "2 gene(s) have more than one row (first: CCT2, MCM5;"),
    Case("run-embeddings-duplicated-case", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_dup_case}",
                                            "--out", "{new}"],
         "(first: cct2 (= CCT2); symbols match case-insensitively)"),
    Case("run-embeddings-duplicated-keep-first", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_dup}",
                                                  "--set", "data.duplicate_embeddings=first", "--out", "{new}"],
         "kept the first row of each and left out 2 row(s)", code=0),
    Case("run-embeddings-duplicate-policy-unknown", ["run", *LINEAR, "--set", "data.duplicate_embeddings=last"],
         "data.duplicate_embeddings: Input should be 'error' or 'first'"),
    Case("run-embeddings-1d-npz", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_1d}", "--out", "{new}"],
         "embeddings of shape (30,); expected one vector per gene"),
    Case("run-embeddings-1d-pickle", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_1d_pkl}", "--out",
                                      "{new}"], "holds a ndarray of shape (384,)"),
    Case("run-embeddings-dict-of-numbers", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_scalars}",
                                            "--out", "{new}"], "the value of 'CCT2' is a single value (0.5)"),
    Case("run-embeddings-dataframe-pickle", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_frame}",
                                             "--out", "{new}"], "linear: 9 held-out perturbations", code=0,
         why="a pickled DataFrame (genes as index) is a table like any other"),
    Case("run-embeddings-dataframe-text-column", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_frame_text}",
                                                  "--out", "{new}"], "column(s) note of the DataFrame are not numeric"),
    Case("run-embeddings-dataframe-pt", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_frame_pt}", "--out",
                                         "{new}"], "holds a pandas object, which a .pt is not read for"),
    Case("run-embeddings-object-npz", ["run", *LINEAR, "--set", "data.gene_embeddings={d_emb_object}", "--out",
                                       "{new}"], "its arrays hold Python objects"),
    Case("data-inspect-embeddings-duplicated", ["data", "inspect", "{d_tiny}", "--gene-embeddings", "{d_emb_dup}"],
         "have more than one row"),
    Case("data-inspect-embeddings-keep-first", ["data", "inspect", "{d_tiny}", "--gene-embeddings", "{d_emb_dup}",
                                                "--duplicate-embeddings", "first"],
         "kept the first row of each", code=0),
    # ---------------------------------------------------------------- duplicated feature names
    Case("run-duplicated-var-names", ["run", *PM[:2], "--data", "{d_dup_var}", "--out", "{new}"],
         "2 feature name(s) appear more than once in var_names", why="ptrag report crashed on such a run"),
    Case("run-duplicated-var-names-in-x", ["run", *PM[:2], "--data", "{d_dup_var_x}", "--set", "data.embed_key=X",
                                           "--out", "{new}"], "1 feature name(s) appear more than once in var_names"),
    Case("predict-duplicated-var-names", ["predict", "--run", "{run_pm}", "--data", "{d_dup_var}", "--out", "{new}"],
         "adata.var_names_make_unique()"),
    Case("data-inspect-duplicated-var-names", ["data", "inspect", "{d_dup_var}"], "appear more than once"),
    # ---------------------------------------------------------------- seeds
    *[Case(f"run-seed-{name}", ["run", *PM, "--seed", value, "--out", "{new}"], f"seed: {RANGE} (got {value})")
      for name, value in SEEDS],
    Case("run-data-seed-negative", ["run", *PM, "--set", "data.seed=-1", "--out", "{new}"],
         f"data.seed: {RANGE} (got -1)"),
    Case("run-seed-fraction", ["run", *PM, "--set", "seed=1.5", "--out", "{new}"],
         "seed: Input should be a valid integer, got a number with a fractional part"),
    Case("run-seed-boolean", ["run", *PM, "--set", "seed=true", "--out", "{new}"], "not true/false"),
    Case("run-seed-text", ["run", *PM, "--seed", "abc"], "'--seed': Input should be a valid integer", code=2),
    *[Case(f"data-synth-seed-{name}", ["data", "synth", "--preset", "tiny", "--seed", value, "-o", "{new}/x.h5ad"],
           f"--seed: {RANGE} (got {value})") for name, value in SEEDS],
    Case("data-synth-seed-fraction", ["data", "synth", "--preset", "tiny", "--seed", "1.5", "-o", "{new}/x.h5ad"],
         "'--seed': Input should be a valid integer", code=2),
    *[Case(f"data-split-seed-{name}", ["data", "split", "{d_tiny}", "--seed", value, "-o", "{new}/s.toml"],
           f"--seed: {RANGE} (got {value})") for name, value in SEEDS],
    # ---------------------------------------------------------------- damaged files
    Case("run-data-truncated", ["run", *PM[:2], "--data", "{d_truncated}", "--out", "{new}"],
         "cannot be read as .h5ad: the file is truncated (1,024 of"),
    Case("run-data-random-bytes", ["run", *PM[:2], "--data", "{d_random}", "--out", "{new}"],
         "cannot be read as .h5ad: not an HDF5 file"),
    Case("run-data-damaged-block", ["run", *PM[:2], "--data", "{d_damaged}", "--out", "{new}"],
         "the file may be damaged or not written by anndata"),
    Case("predict-data-truncated", ["predict", "--run", "{run_pm}", "--data", "{d_truncated}", "--out", "{new}"],
         "the file is truncated"),
    Case("data-inspect-hdf5-not-anndata", ["data", "inspect", "{d_plain_hdf5}"],
         "an HDF5 file without obs, not an AnnData (its top level: counts)"),
    Case("data-split-truncated", ["data", "split", "{d_truncated}", "-o", "{new}/s.toml"], "the file is truncated"),
    Case("run-gene-sets-binary", ["run", *PM, "--set", "data.gene_sets={d_random}", "--out", "{new}"],
         "not a text file (expected GMT lines"),
]


def _variant(tiny, root: Path, env: dict[str, str], name: str, genes=None, **changes):
    a = tiny.copy()
    if genes is not None:
        a.obs["gene"] = pd.Categorical(genes)
    for key, value in changes.items():
        setattr(a, key, value)
    env[name] = str(root / f"{name}.h5ad")
    a.write_h5ad(env[name])
    return a


def _labels(tiny, root: Path, env: dict[str, str]) -> None:
    genes = tiny.obs["gene"].astype(str).to_numpy()
    line = tiny.obs["cell_line"].astype(str).to_numpy()
    controls = np.flatnonzero(genes == "non-targeting")

    def relabel(name: str, rows, label):
        out = genes.copy()
        out[rows] = label
        _variant(tiny, root, env, name, out)

    half = controls[::2]
    _variant(tiny, root, env, "d_tiny")
    relabel("d_nt", half, "NT")
    relabel("d_capital", half, "Non-Targeting")
    relabel("d_underscore", half, "non_targeting")
    relabel("d_negative", half, "negative control")
    relabel("d_numbered", half, np.where(np.arange(len(half)) % 2 == 0, "NTC_1", "NTC_2"))
    relabel("d_heldout", controls[line[controls] == "rpe1"][::2], "ctrl")


def _splits(root: Path, env: dict[str, str]) -> None:
    files = {
        "d_split_number.toml": '[fewshot."tiny.rpe1"]\ntest = ["CCT2", 123]\n',
        "d_split_string.toml": '[fewshot."tiny.rpe1"]\ntest = "CCT2, MCM5"\n',
        "d_split_nested.toml": '[fewshot."tiny.rpe1"]\ntest = [["CCT2"], ["MCM5"]]\n',
        "d_split_number_yaml.yaml": "fewshot:\n  rpe1:\n    val: [7]\n    test: [CCT2]\n",
        "d_split_string_yaml.yaml": "fewshot:\n  rpe1:\n    test: CCT2\n",
        "d_split_null_yaml.yaml": "fewshot:\n  rpe1:\n    test:\n",
        "d_split_list_yaml.yaml": "fewshot: [rpe1]\n",
        "d_split_zeroshot.toml": '[zeroshot]\n"tiny.rpe1" = 1\n',
    }
    for name, text in files.items():
        (root / name).write_text(text)
        env[name.split(".")[0]] = str(root / name)
    (root / "d_split_binary.toml").write_bytes(bytes(range(256)) * 4)
    env["d_split_binary"] = str(root / "d_split_binary.toml")


def _embeddings(tiny, root: Path, env: dict[str, str]) -> None:
    import torch

    from ptrag.core.data.embeddings import BUILTIN_EMBEDDINGS

    with np.load(BUILTIN_EMBEDDINGS) as z:
        table = pd.DataFrame(z["embeddings"].astype(np.float32), index=[str(n) for n in z["names"]])
    perts = sorted(set(tiny.obs["gene"].astype(str)) - {"non-targeting"})
    table = table.loc[perts]  # every perturbed gene of tiny (30)

    def npz(name: str, names, matrix, **more):
        env[name] = str(root / f"{name}.npz")
        np.savez(env[name], names=np.asarray(names, dtype=str), embeddings=matrix, **more)

    def pkl(name: str, value):
        env[name] = str(root / f"{name}.pkl")
        Path(env[name]).write_bytes(pickle.dumps(value))

    repeated = table.loc[["CCT2", "MCM5"]] + 1.0  # later rows, other vectors
    npz("d_emb_dup", [*table.index, *repeated.index], np.vstack([table.to_numpy(), repeated.to_numpy()]))
    pkl("d_emb_dup_case", {**{g: list(v) for g, v in table.iterrows()}, "cct2": list(table.loc["CCT2"] + 1)})
    npz("d_emb_1d", table.index, table.to_numpy()[:, 0])
    pkl("d_emb_1d_pkl", table.to_numpy()[0])
    pkl("d_emb_scalars", {g: 0.5 for g in table.index})
    pkl("d_emb_frame", table)
    pkl("d_emb_frame_text", table.assign(note="x"))
    env["d_emb_frame_pt"] = str(root / "d_emb_frame_pt.pt")
    torch.save(table, env["d_emb_frame_pt"])
    env["d_emb_object"] = str(root / "d_emb_object.npz")  # names saved as Python objects (pickled)
    np.savez(env["d_emb_object"], names=np.asarray(list(table.index), dtype=object), embeddings=table.to_numpy())


def _files(tiny, root: Path, env: dict[str, str]) -> None:
    import h5py

    names = tiny.var_names.to_numpy().copy()
    names[1], names[5] = names[0], names[4]
    _variant(tiny, root, env, "d_dup_var", var=tiny.var.set_axis(names))
    x = tiny.copy()
    x.var_names = [*names[:1], names[0], *tiny.var_names[2:]]
    x.X = np.asarray(tiny.obsm["X_hvg"])
    env["d_dup_var_x"] = str(root / "d_dup_var_x.h5ad")
    x.write_h5ad(env["d_dup_var_x"])
    whole = (root / "d_whole.h5ad")
    tiny.write_h5ad(whole)
    raw = whole.read_bytes()
    whole.unlink()
    (root / "d_truncated.h5ad").write_bytes(raw[:1024])
    env["d_truncated"] = str(root / "d_truncated.h5ad")
    (root / "d_random.h5ad").write_bytes(np.random.default_rng(0).bytes(4096))
    env["d_random"] = str(root / "d_random.h5ad")
    damaged = bytearray(raw)
    damaged[300_000:1_200_000] = np.random.default_rng(1).bytes(900_000)
    (root / "d_damaged.h5ad").write_bytes(bytes(damaged))
    env["d_damaged"] = str(root / "d_damaged.h5ad")
    with h5py.File(root / "d_plain_hdf5.h5ad", "w") as f:
        f["counts"] = np.zeros((3, 3))
    env["d_plain_hdf5"] = str(root / "d_plain_hdf5.h5ad")


def prepare(root: Path, env: dict[str, str]) -> None:
    """The files the cases above point at, named in ``env``."""
    import anndata as ad

    from ptrag.core.data.synth import synth_screen

    tiny = synth_screen("tiny", 0)
    assert isinstance(tiny, ad.AnnData)
    _labels(tiny, root, env)
    _splits(root, env)
    _embeddings(tiny, root, env)
    _files(tiny, root, env)
