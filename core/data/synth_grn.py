"""A second built-in simulator family, ``grn``: knock-downs propagated through a gene-regulatory network.

Designed apart from the default family (``v3``, :mod:`.synth`) to test claims on data that no
model here was tuned to. Only the schema and the sizes are shared (the same perturbed genes from
real complexes, read-out features and cells per group, so retrieval and gene embeddings work the
same); every mechanism that makes a response differs:

- a sparse, signed network among the measured genes; each cell line drops and rewires its own
  share of the edges, so a gene's response in another line is a distorted view, not a copy;
- a knock-down acts on its direct targets (shared in part with the other members of its complex)
  and the effect spreads over a few hops of the line's network, saturating (tanh) at a bounded
  log-rate change, so strong and weak knock-downs differ in shape, not only in size;
- every perturbation has 2-4 guides of different knock-down efficiency and every cell its own
  efficiency (and some cells escape), so a group is a mixture of partly and fully knocked-down cells;
- each line has its own rate of perturbations without effect (besides the null genes);
- cells vary along a few line-specific latent programs instead of discrete cell states;
- every strength above (density, drop and rewire rates, saturation, spread of efficiencies,
  null rates) is drawn from the data seed, so data seeds differ in kind, not only in noise.

Counts are negative binomial, library-size normalised to 1e4 and log1p'd. The ground truth is in
``uns['ptrag_synth']`` (``family: grn``). This family is frozen: changing it changes every screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ConfigError
from .synth import CONTROL_LABEL, PRESETS, Preset, cell_labels, observations, pick_genes

FAMILY, VERSION = "grn", "1"
_EFFICIENCY_GRID = np.array([0.25, 0.5, 0.75, 1.0])  # responses precomputed here, interpolated per cell
_HOPS = 3
_CHUNK = 16384


@dataclass(frozen=True)
class Strengths:
    """How strongly each mechanism acts in this screen (drawn from the data seed)."""

    edge_density: float  # share of (regulator gene, target gene) pairs with an edge
    edge_sd: float
    drop_rate: np.ndarray  # [L] share of edges a line loses
    rewire_rate: np.ndarray  # [L] share of edges a line moves to another target
    saturation: float  # the largest log-rate change the propagation reaches
    module_share: float  # share of a knock-down's direct targets common to its complex
    null_rate: np.ndarray  # [L] perturbations without effect in the line (besides the null genes)
    guide_a: float  # guide efficiency ~ Beta(guide_a, guide_b)
    guide_b: float
    cell_spread: float  # cell efficiency multiplier ~ Beta(cell_spread, 1)
    escape: np.ndarray  # [L] share of cells escaping the knock-down
    factor_sd: float  # size of the latent cell programs


def _strengths(rng: np.random.Generator, lines: int) -> Strengths:
    return Strengths(
        edge_density=rng.uniform(0.006, 0.015), edge_sd=rng.uniform(0.4, 0.7),
        drop_rate=rng.uniform(0.05, 0.35, lines), rewire_rate=rng.uniform(0.02, 0.15, lines),
        saturation=rng.uniform(1.5, 3.0), module_share=rng.uniform(0.4, 0.8),
        null_rate=rng.uniform(0.05, 0.35, lines), guide_a=rng.uniform(2.0, 6.0), guide_b=rng.uniform(0.8, 2.0),
        cell_spread=rng.uniform(3.0, 10.0), escape=rng.uniform(0.02, 0.2, lines), factor_sd=rng.uniform(0.15, 0.4))


def _networks(rng: np.random.Generator, G: int, s: Strengths) -> np.ndarray:
    """One signed network per line [L, G, G] (row: regulator, column: target): a shared draw, in
    which a few hub genes regulate many others, with each line's own dropped and rewired edges."""
    hubness = np.minimum(rng.lognormal(0.0, 1.0, G), 20.0)[:, None]  # out-degree propensity per gene
    shared = (rng.random((G, G)) < s.edge_density * hubness) * rng.normal(0.0, s.edge_sd, (G, G))
    np.fill_diagonal(shared, 0.0)
    out = np.empty((len(s.drop_rate), G, G), dtype=np.float32)
    for j, (drop, rewire) in enumerate(zip(s.drop_rate, s.rewire_rate, strict=True)):
        w = shared * (rng.random((G, G)) >= drop)
        src, dst = np.nonzero(w)
        moved = rng.random(len(src)) < rewire
        new_dst = rng.integers(0, G, int(moved.sum()))
        values = w[src[moved], dst[moved]]
        w[src[moved], dst[moved]] = 0.0
        w[src[moved], new_dst] += values
        np.fill_diagonal(w, 0.0)
        out[j] = w
    return out


def _direct_targets(rng: np.random.Generator, perts: list[str], gene_module: dict[str, str], nulls: list[str],
                    G: int, s: Strengths) -> np.ndarray:
    """Each knock-down's direct effect on the measured genes [P, G]: part shared with its complex,
    part its own; the null genes have none."""
    core = {m: _sparse(rng, G, 40, 1.0) for m in sorted(set(gene_module.values()) - {"null"})}
    out = np.zeros((len(perts), G), dtype=np.float32)
    for i, gene in enumerate(perts):
        if gene in nulls:
            continue
        m = gene_module[gene]
        keep = rng.random(G) < s.module_share
        out[i] = core[m] * keep * rng.uniform(0.6, 1.4) + _sparse(rng, G, 12, 0.8)
    return out


def _sparse(rng: np.random.Generator, G: int, k: int, sd: float) -> np.ndarray:
    out = np.zeros(G, dtype=np.float32)
    idx = rng.choice(G, size=min(k, G), replace=False)
    out[idx] = rng.normal(0.0, sd, len(idx))
    return out


def propagate(direct: np.ndarray, network: np.ndarray, saturation: float, hops: int = _HOPS) -> np.ndarray:
    """The log-rate change a knock-down of efficiency 1 x ``direct`` [.., G] spreads to over
    ``hops`` steps of ``network`` [G, G], saturating at +/- ``saturation``."""
    delta = saturation * np.tanh(direct / saturation)
    for _ in range(hops):
        delta = saturation * np.tanh((direct + delta @ network) / saturation)
    return delta.astype(np.float32)


@dataclass(frozen=True)
class _Responses:
    curve: np.ndarray  # [P, L, E, G] response at each efficiency of _EFFICIENCY_GRID
    null_in: np.ndarray  # [P, L] bool: no effect in the line
    guides: list[np.ndarray]  # per perturbation, its guides' efficiencies


def _responses(rng: np.random.Generator, p: Preset, perts: list[str], features: list[str], direct: np.ndarray,
               networks: np.ndarray, s: Strengths) -> _Responses:
    L, G, P = len(p.lines), len(features), len(perts)
    null_in = rng.random((P, L)) < s.null_rate[None, :]
    potency = rng.lognormal(0.0, 0.25, (P, L)).astype(np.float32)
    curve = np.zeros((P, L, len(_EFFICIENCY_GRID), G), dtype=np.float32)
    feat = {f: i for i, f in enumerate(features)}
    for j in range(L):
        inputs = -(direct * potency[:, j:j + 1] * ~null_in[:, j:j + 1])  # a knock-down lowers its targets' input
        for e, eff in enumerate(_EFFICIENCY_GRID):
            curve[:, j, e] = propagate(eff * inputs, networks[j], s.saturation)
    for i, gene in enumerate(perts):  # the target's own mRNA falls with the efficiency, effect or not
        if gene in feat:
            curve[i, :, :, feat[gene]] += np.log1p(-0.9 * _EFFICIENCY_GRID)[None, :]
    guides = [rng.beta(s.guide_a, s.guide_b, int(rng.integers(2, 5))) for _ in perts]
    return _Responses(curve, null_in, guides)


def _at_efficiency(curve: np.ndarray, efficiency: np.ndarray) -> np.ndarray:
    """Linear interpolation of each cell's response [n, E, G] at its efficiency [n] (0 at 0)."""
    grid = np.concatenate([[0.0], _EFFICIENCY_GRID])
    full = np.concatenate([np.zeros_like(curve[:, :1]), curve], axis=1)
    hi = np.clip(np.searchsorted(grid, efficiency, side="right"), 1, len(grid) - 1)
    lo = hi - 1
    t = ((efficiency - grid[lo]) / (grid[hi] - grid[lo]))[:, None].astype(np.float32)
    rows = np.arange(len(efficiency))
    return (1 - t) * full[rows, lo] + t * full[rows, hi]


def _baseline(rng: np.random.Generator, L: int, G: int, s: Strengths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per line log-rates [L, G], latent cell programs [L, 3, G] and NB inverse dispersion [G]."""
    level = rng.normal(0.0, 1.0, G)
    base = level[None, :] + rng.normal(0.0, 0.5, (L, G)) * (rng.random((L, G)) < 0.25)
    factors = rng.normal(0.0, s.factor_sd, (L, 3, G)) * (rng.random((L, 3, G)) < 0.2)
    theta = rng.uniform(1.5, 8.0, G)
    return base.astype(np.float32), factors.astype(np.float32), theta.astype(np.float32)


def _cells(rng: np.random.Generator, perts: list[str], resp: _Responses, s: Strengths, cell_pert: np.ndarray,
           cell_line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: its guide (index, -1 for controls) and its knock-down efficiency (0: escaped)."""
    index = {g: i for i, g in enumerate(perts)}
    pidx = np.array([index.get(g, -1) for g in cell_pert])
    guide = np.full(len(pidx), -1)
    efficiency = np.zeros(len(pidx))
    for i in np.unique(pidx[pidx >= 0]):
        rows = np.flatnonzero(pidx == i)
        guide[rows] = rng.integers(0, len(resp.guides[i]), len(rows))
        efficiency[rows] = resp.guides[i][guide[rows]] * rng.beta(s.cell_spread, 1.0, len(rows))
        efficiency[rows] *= rng.random(len(rows)) >= s.escape[cell_line[rows]]
    return guide, efficiency


def _counts(rng: np.random.Generator, p: Preset, perts: list[str], resp: _Responses, base: tuple, cell_pert,
            cell_line, cell_batch, efficiency: np.ndarray) -> np.ndarray:
    """Log-normalised negative-binomial counts, in chunks."""
    log_base, factors, theta = base
    n, G = len(cell_pert), log_base.shape[1]
    index = {g: i for i, g in enumerate(perts)}
    pidx = np.array([index.get(g, -1) for g in cell_pert])
    batch_shift = rng.normal(0.0, 0.06, (len(p.lines) * p.batches, G)).astype(np.float32)
    X = np.empty((n, G), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        pi, li = pidx[sl], cell_line[sl]
        z = rng.normal(0.0, 1.0, (len(pi), 3)).astype(np.float32)
        log_rate = log_base[li] + batch_shift[cell_batch[sl]] + np.einsum("nf,nfg->ng", z, factors[li])
        hit = pi >= 0
        if hit.any():
            log_rate[hit] += _at_efficiency(resp.curve[pi[hit], li[hit]], efficiency[sl][hit])
        log_rate -= log_rate.max(axis=1, keepdims=True)
        prop = np.exp(log_rate)
        prop /= prop.sum(axis=1, keepdims=True)
        mu = prop * (6.0 * G * rng.lognormal(0.0, 0.3, len(pi)))[:, None]
        counts = rng.poisson(rng.gamma(theta, 1.0, (len(pi), G)) * mu / theta)
        total = np.maximum(counts.sum(axis=1, keepdims=True), 1)
        X[sl] = np.log1p(counts * (1e4 / total))
    return X


def synth_grn_screen(preset: str = "demo", seed: int = 0) -> ad.AnnData:
    """A Replogle-Nadig-shaped AnnData from the ``grn`` family (see the module docstring)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    rng = np.random.default_rng([seed, 20261203])
    genes = pick_genes(p, rng)
    G, L = len(genes.features), len(p.lines)
    s = _strengths(rng, L)
    networks = _networks(rng, G, s)
    direct = _direct_targets(rng, genes.perts, genes.gene_module, genes.nulls, G, s)
    resp = _responses(rng, p, genes.perts, genes.features, direct, networks, s)
    base = _baseline(rng, L, G, s)
    cell_pert, cell_line, cell_batch = cell_labels(rng, p, genes.perts)
    guide, efficiency = _cells(rng, genes.perts, resp, s, cell_pert, cell_line)
    X = _counts(rng, p, genes.perts, resp, base, cell_pert, cell_line, cell_batch, efficiency)
    obs = observations(p, cell_pert, cell_line, cell_batch)
    obs["guide"] = pd.Categorical([f"{g}_g{k + 1}" if k >= 0 else "non-targeting"
                                   for g, k in zip(cell_pert.astype(str), guide, strict=True)])
    var = pd.DataFrame({"highly_variable": np.ones(G, dtype=bool)}, index=pd.Index(genes.features))
    adata = ad.AnnData(X=sp.csr_matrix(X) if p.store_x else None, obs=obs, var=var)
    adata.obsm["X_hvg"] = X
    adata.uns["ptrag_synth"] = _truth(preset, seed, p, genes, s, resp, efficiency)
    return adata


def _truth(preset: str, seed: int, p: Preset, genes, s: Strengths, resp: _Responses, efficiency: np.ndarray) -> dict:
    P, L = len(genes.perts), len(p.lines)
    return {
        "family": FAMILY, "version": VERSION, "preset": preset, "seed": int(seed), "control_label": CONTROL_LABEL,
        "cell_lines": list(p.lines), "gene_module": genes.gene_module, "null_genes": list(genes.nulls),
        "strengths": {k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in vars(s).items()},
        "effect_groups": [f"{g}|{line}" for g in genes.perts for line in p.lines],
        "effect": resp.curve[:, :, -1].reshape(P * L, -1),  # response of a fully knocked-down cell
        "efficiency_grid": _EFFICIENCY_GRID,
        "null_in_line": resp.null_in.reshape(P * L),
        "guide_efficiency": {g: e.astype(np.float32) for g, e in zip(genes.perts, resp.guides, strict=True)},
        "cell_efficiency": efficiency.astype(np.float32),  # per cell, in obs order (0: control or escaped)
    }
