"""Read a screen (an .h5ad file or the built-in dataset) into :class:`PerturbationData`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import BATCH, CONTEXT, PERT, PerturbationData


def adata_to_data(adata: ad.AnnData, cfg: Any, source: str) -> PerturbationData:
    for role, col in (("perturbation", cfg.pert_col), ("context", cfg.context_col)):
        if col not in adata.obs:
            raise DataError(f"{source}: obs has no {role} column {col!r}; columns: {', '.join(map(str, adata.obs.columns))}")
    if cfg.embed_key == "X":
        X, features = adata.X, list(map(str, adata.var_names))
    elif cfg.embed_key in adata.obsm:
        X = adata.obsm[cfg.embed_key]
        features = (list(map(str, adata.var_names[adata.var["highly_variable"].to_numpy(bool)]))
                    if "highly_variable" in adata.var and adata.var["highly_variable"].sum() == X.shape[1]
                    else list(map(str, adata.var_names)) if adata.n_vars == X.shape[1]
                    else [f"{cfg.embed_key}_{i}" for i in range(X.shape[1])])
    else:
        keys = ", ".join(["X", *map(str, adata.obsm.keys())])
        raise DataError(f"{source}: no expression under obsm[{cfg.embed_key!r}]; available: {keys} (set data.embed_key)")
    if hasattr(X, "toarray"):
        X = X.toarray()
    obs = pd.DataFrame({
        PERT: adata.obs[cfg.pert_col].astype(str).to_numpy(),
        CONTEXT: adata.obs[cfg.context_col].astype(str).to_numpy(),
    }, index=adata.obs_names)
    if cfg.batch_col and cfg.batch_col in adata.obs:
        obs[BATCH] = adata.obs[cfg.batch_col].astype(str).to_numpy()
    return PerturbationData(
        X=np.ascontiguousarray(X, dtype=np.float32), obs=obs, features=features,
        control_label=cfg.control_label, source=source,
        columns={PERT: cfg.pert_col, CONTEXT: cfg.context_col, BATCH: cfg.batch_col},
    )


def load_screen(cfg: Any, seed: int) -> PerturbationData:
    if cfg.path:
        path = Path(cfg.path)
        if not path.is_file():
            raise DataError(f"{path}: data file not found")
        try:
            adata = ad.read_h5ad(path)
        except Exception as exc:
            raise DataError(f"{path}: cannot be read as .h5ad ({type(exc).__name__}: {exc})") from None
        return adata_to_data(adata, cfg, str(path))
    from .synth import synth_screen

    return adata_to_data(synth_screen(cfg.synth_preset, seed), cfg, f"built-in {cfg.synth_preset} dataset")
