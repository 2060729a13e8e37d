"""Bad-input cases of labels spelled in two ways (issue 26, part 4): a gene or cell line whose
labels differ only in case or surrounding spaces is one gene or line, so a screen holding both
spellings is refused (one could train while the other is scored, and retrieval would find the
query's own cells); split files and ``ptrag predict`` match names by spelling.

``prepare`` writes variants of the tiny built-in screen: some of CCT7's cells in rpe1 labelled
``cct7``, CCT7 in k562 labelled ``CCT7 ``, some rpe1 cells labelled ``RPE1``, every gene in lower
case; a split naming ``cct7 `` in ``rpe1 ``; and a finished neighbour-mean run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ptrag.cli.app import app

from .case import PM, TINY, Case

TWO = "spells one gene in 2 ways"
CASE_FIX = "ptrag would take them for different genes (one could train while the other is held out and scored)"

CASES = [
    Case("run-gene-in-two-cases", ["run", *PM[:2], "--data", "{l_lower}", "--out", "{new}"],
         f"obs['gene'] {TWO}, 'CCT7' (51 cells) and 'cct7' (14 cells), differing only in case or surrounding "
         f"spaces; {CASE_FIX}", why="one label trained, the other was held out and scored"),
    Case("run-gene-with-a-trailing-space", ["run", *PM[:2], "--data", "{l_space}", "--out", "{new}"],
         f"{TWO}, 'CCT7 ' (36 cells) and 'CCT7' (29 cells)"),
    Case("run-neighbour-mean-gene-in-two-cases", ["run", "--preset", "neighbour-mean", "--data", "{l_lower}", "--out",
                                                  "{new}"], TWO,
         why="neighbour-mean retrieved the query's own cells at score 1.0"),
    Case("run-cell-line-in-two-cases", ["run", *PM[:2], "--data", "{l_line}", "--out", "{new}"],
         "obs['cell_line'] spells one cell line in 2 ways"),
    Case("predict-gene-in-two-cases", ["predict", "--run", "{run_pm}", "--data", "{l_lower}", "--out", "{new}"], TWO),
    Case("data-split-gene-in-two-cases", ["data", "split", "{l_lower}", "-o", "{new}/s.toml"], TWO),
    Case("ablate-gene-in-two-cases", ["ablate", "{l_grid}", "--out", "{new}"], TWO),
    Case("data-inspect-gene-in-two-cases", ["data", "inspect", "{l_lower}"], TWO, code=0,
         why="inspect notes what run refuses"),
    Case("run-split-names-another-spelling", ["run", *PM, "--split", "{l_split}", "--out", "{new}"],
         "pert-mean: 1 held-out perturbations", code=0, why="'cct7 ' in 'rpe1 ' names the data's CCT7 in rpe1"),
    Case("predict-with-another-spelling-than-the-run", ["predict", "--run", "{l_run_nm}", "--data", "{l_all_lower}",
                                                        "--out", "{new}"], "predicted 60 perturbation groups", code=0,
         why="cct7 never retrieves the run's CCT7 entries (tests/test_label_spellings.py)"),
]


def prepare(root: Path, env: dict[str, str]) -> None:
    """The screens, split, grid and run the cases above point at, named in ``env``."""
    import yaml

    from ptrag.core.data.synth import synth_screen

    tiny = synth_screen("tiny", 0)
    gene = tiny.obs["gene"].astype(str).to_numpy()
    line = tiny.obs["cell_line"].astype(str).to_numpy()

    def variant(name: str, column: str, values: np.ndarray) -> None:
        adata = tiny.copy()
        adata.obs[column] = values.astype(object)
        env[name] = str(root / f"{name}.h5ad")
        adata.write_h5ad(env[name])

    cct7_rpe1 = np.flatnonzero((gene == "CCT7") & (line == "rpe1"))
    lower = gene.copy()
    lower[cct7_rpe1[: len(cct7_rpe1) // 2]] = "cct7"
    variant("l_lower", "gene", lower)
    variant("l_space", "gene", np.where((gene == "CCT7") & (line == "k562"), "CCT7 ", gene))
    rpe1 = np.flatnonzero(line == "rpe1")
    upper = line.copy()
    upper[rpe1[::10]] = "RPE1"
    variant("l_line", "cell_line", upper)
    variant("l_all_lower", "gene", np.where(gene == "non-targeting", gene, np.char.lower(gene.astype(str))))
    (root / "l_split.yaml").write_text('fewshot:\n  "rpe1 ":\n    test: ["cct7 "]\n')
    env["l_split"] = str(root / "l_split.yaml")
    grid = {"base": {"data": {"path": env["l_lower"]}, "metrics": ["mse"]}, "runs": [{"preset": "pert-mean"}]}
    (root / "l_grid.yaml").write_text(yaml.safe_dump(grid))
    env["l_grid"] = str(root / "l_grid.yaml")
    result = CliRunner().invoke(app, ["run", "--preset", "neighbour-mean", *TINY, "--out", str(root / "l_run_nm")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    env["l_run_nm"] = str(root / "l_run_nm")
