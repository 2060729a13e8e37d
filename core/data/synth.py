"""The built-in Replogle-like screen, generated from a seed in the real release's schema.

Skeleton version: module-structured effects on two cell lines with Poisson counts. The data-layer
issue replaces it with the full generative model documented in docs/data.md.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from .gene_modules import GENE_MODULES, NULL_GENES

PRESETS = {
    "tiny": dict(n_features=64, cells_per_pert=12, n_control=120, perts_per_module=3, modules=6),
    "demo": dict(n_features=200, cells_per_pert=40, n_control=600, perts_per_module=6, modules=20),
    "large": dict(n_features=2000, cells_per_pert=120, n_control=20000, perts_per_module=10, modules=20),
}


def synth_screen(preset: str = "demo", seed: int = 0) -> ad.AnnData:
    p = PRESETS[preset]
    rng = np.random.default_rng(seed)
    g = p["n_features"]
    modules = list(GENE_MODULES)[: p["modules"]]
    perts = [gene for m in modules for gene in GENE_MODULES[m][: p["perts_per_module"]]]
    perts += list(NULL_GENES[: max(2, len(perts) // 8)])
    contexts = {"k562": 1.0, "rpe1": 0.8}
    module_effect = {m: rng.normal(0, 0.6, g) * (rng.random(g) < 0.15) for m in modules}
    rows, blocks = [], []
    for ci, (context, scale) in enumerate(contexts.items()):
        base = rng.gamma(2.0, 1.0, g) * scale + 0.2
        def cells(n, shift):
            rate = np.exp(np.log(base) + shift)[None, :] * rng.gamma(5, 0.2, (n, 1))
            return np.log1p(rng.poisson(rate)).astype(np.float32)
        blocks.append(cells(p["n_control"], 0.0))
        rows += [("non-targeting", context)] * p["n_control"]
        for pert in perts:
            module = next((m for m in modules if pert in GENE_MODULES[m]), None)
            shift = module_effect[module] if module else np.zeros(g)
            shift = shift + rng.normal(0, 0.1, g) * (module is not None)
            blocks.append(cells(p["cells_per_pert"], shift))
            rows += [(pert, context)] * p["cells_per_pert"]
    X = np.concatenate(blocks)
    obs = pd.DataFrame(rows, columns=["gene", "cell_line"])
    obs["gem_group"] = rng.integers(1, 4, len(obs)).astype(str)
    obs.index = [f"cell{i}" for i in range(len(obs))]
    for col in obs:
        obs[col] = obs[col].astype("category")
    var = pd.DataFrame(index=[f"HVG{i}" for i in range(g)])
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.obsm["X_hvg"] = X
    adata.uns["ptrag_synth"] = {"preset": preset, "seed": seed, "version": "skeleton"}
    return adata
