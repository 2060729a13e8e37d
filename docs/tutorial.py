"""ptrag from Python: train, compare, plot and predict on an AnnData, without leaving the notebook.

Run it as a script (`python docs/tutorial.py`: 122 s with the defaults on 2 shared CPU cores) or
paste the sections into notebook cells. The test suite runs this very file on the `tiny` built-in
screen with a few training steps (tests/test_tutorial.py), so every line here works as written.
The functions are documented in docs/api.md.
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write PNG files; in a notebook, leave this out to see the figures inline
import matplotlib.pyplot as plt
import numpy as np

import ptrag
from ptrag.core.data.synth import synth_screen

# Settings. The test suite shrinks these through the environment; change them freely.
DATA = os.environ.get("PTRAG_TUTORIAL_DATA", "demo")  # built-in screen: tiny | demo | screen | large
STEPS = int(os.environ.get("PTRAG_TUTORIAL_STEPS", "400"))  # training steps per learned model
OUT = Path(os.environ.get("PTRAG_TUTORIAL_OUT", "tutorial"))  # run folders and the figure go here
SEED = 0

# %% 1. Load a screen as AnnData ------------------------------------------------------------
# The built-in screen has the layout of Arc Institute's Replogle-Nadig release: obs['gene'] (the
# knocked-down gene, 'non-targeting' for controls), obs['cell_line'], obs['gem_group'] and
# log-normalised expression in obsm['X_hvg']. Your own AnnData works the same way; name its
# columns with pert_col=, context_col=, batch_col=, control_label= and embed_key=.
adata = synth_screen(DATA, seed=SEED)
print(adata)

# Keep three knock-downs out of everything the models see: section 5 predicts them as new data.
controls = adata.obs["gene"] == "non-targeting"
genes = sorted(adata.obs.loc[~controls, "gene"].unique())
unseen = genes[::max(1, len(genes) // 3)][:3]
screen = adata[~adata.obs["gene"].isin(unseen)].copy()
print(f"training screen: {screen.n_obs:,} cells; kept out for later: {', '.join(unseen)}")

# What can be swapped: the same records as `ptrag plugins --all --json`.
generators = [c["name"] for r in ptrag.components("generator") for c in r["components"]]
print("generators:", ", ".join(generators))

# %% 2. Run two presets on the same split and seed ------------------------------------------
# `state` is the STATE-like set transformer; `ptrag-evidence` starts from the observed responses
# of retrieved perturbations and learns a correction. compare=[] skips each preset's own
# comparator runs; output={"root": ...} puts the run folders under OUT (one new folder each).
runs = {}
for preset in ("state", "ptrag-evidence"):
    runs[preset] = ptrag.run(screen, preset=preset, seed=SEED, steps=STEPS, compare=[],
                             output={"root": str(OUT)}, log=print)
    print(f"{preset}: run folder {runs[preset].run_dir}")

state, evidence = runs["state"], runs["ptrag-evidence"]
# Each result holds AnnData and pandas: no files to read back.
print(evidence.predictions)  # predicted cells + the real control cells (predictions.h5ad)
print(evidence.real)  # held-out real cells + the same controls (real.h5ad)
print(evidence.aggregates[["mean", "ci95_lo", "ci95_hi", "direction"]])  # metrics.json
per_perturbation = evidence.metrics.pivot_table(index=["pert", "context"], columns="metric", values="value")
print(per_perturbation.head())  # metrics.csv, one column per metric

# %% 3. A paired test: is one model better on the same held-out perturbations? --------------
# Per metric: mean of A - B over the perturbations both scored, A's win rate (direction-aware)
# and a Wilcoxon signed-rank p-value. Small data and short training make wide uncertainty:
# read the p-values, not only the means.
paired = ptrag.compare(evidence, state)
print(paired.to_string(index=False))

# %% 4. Plot ----------------------------------------------------------------------------------
energy = {name: r.metrics[r.metrics.metric == "energy"].set_index(["pert", "context"])["value"]
          for name, r in runs.items()}
both = energy["state"].index.intersection(energy["ptrag-evidence"].index)
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
x, y = energy["state"].loc[both], energy["ptrag-evidence"].loc[both]
left.scatter(x, y, s=14)
lims = [min(x.min(), y.min()), max(x.max(), y.max())]
left.plot(lims, lims, color="grey", lw=0.8)
left.set(xlabel="state: energy distance", ylabel="ptrag-evidence: energy distance")
left.set_title("per held-out perturbation (below the line: evidence better)", fontsize=9)
means = [r.aggregates.loc["pearson-delta"] for r in runs.values()]
right.bar(list(runs), [m["mean"] for m in means],
          yerr=np.array([[m["mean"] - m["ci95_lo"], m["ci95_hi"] - m["mean"]] for m in means]).T.clip(min=0),
          capsize=4)
right.set(ylabel="pearson-delta (higher is better)")
right.set_title("mean, 95% bootstrap CI", fontsize=9)
fig.tight_layout()
OUT.mkdir(parents=True, exist_ok=True)
figure = OUT / "tutorial.png"
fig.savefig(figure, dpi=100)
plt.close(fig)
print(f"figure: {figure}")

# %% 5. Predict on a new AnnData with the finished run --------------------------------------
# The new data must have the run's features and cell lines; it holds knock-downs the run never
# saw, plus control cells. Genes new to the run get their gene embedding from the run's table.
# Nothing is written unless you pass out=...; the real cells in `new` are scored as well.
new = adata[adata.obs["gene"].isin(unseen) | controls].copy()
prediction = ptrag.predict(evidence, new, log=print)
print(f"predicted {len(prediction.groups)} groups: {prediction.groups}")
print(prediction.predictions)
print(prediction.aggregates[["mean", "direction"]])

# Any predictions AnnData can be scored against real cells with any metric set:
scores = ptrag.score(prediction.predictions, prediction.real, metrics=["energy", "pearson-delta", "mse"])
print(scores.aggregates[["mean", "n", "direction"]])
