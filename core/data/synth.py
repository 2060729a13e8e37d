"""The built-in Replogle-like screen, generated from a seed in the real release's schema.

The generative model (documented in docs/data.md) is built so that retrieval has something real
to find and cannot win by construction:

- cell lines differ in size, baseline expression (line markers), batches (gem groups), TP53
  status and the mix of cell states their control cells are in;
- knock-down effects are organised by real complexes (``gene_modules.GENE_MODULES``): genes of a
  module share a response program, scaled by a per-gene loading, plus gene-specific effects and
  a generic response shared by all effective knock-downs (growth/stress, as in essential screens;
  in TP53 wild-type lines it includes p53 targets);
- about a third of knock-downs have no transcriptional effect (``NULL_GENES`` and weak module
  members);
- some modules act in one cell line only and some flip sign in one line, every module has a
  line-specific component and every gene a line-specific potency, so the same gene's response in
  another line is informative but not a copy;
- cells are in one of four states (G1, S, G2M, differentiated) with their own expression
  programs on real read-out genes; knock-downs of some modules shift the mix of states (arrest,
  differentiation), shared across lines but not identically;
- the perturbed gene itself is knocked down when it is a measured feature; a fraction of cells
  escape the knock-down (no effect, the control mix of states) and the response magnitude varies
  per cell;
- counts are negative binomial (gamma-Poisson), library-size normalised to 1e4 and log1p'd.

The ground truth is stored in ``uns['ptrag_synth']`` for retrieval diagnostics and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ConfigError
from .gene_modules import GENE_MODULES, MODULE_STATE_SHIFTS, NULL_GENES
from .readout_genes import (
    CELL_CYCLE_G1S,
    CELL_CYCLE_G2M,
    DIFFERENTIATION,
    LINE_MARKERS,
    P53_TARGETS,
    TP53_WILD_TYPE_LINES,
    readout_genes,
)

VERSION = "3"
CONTROL_LABEL = "non-targeting"
STATES = ("G1", "S", "G2M", "differentiated")
_STATE_MIX = np.array([0.42, 0.30, 0.22, 0.06])  # typical control mix; each line draws its own around it
_STATE_LIBRARY = np.array([1.0, 1.15, 1.4, 0.85], dtype=np.float32)  # RNA content per state


@dataclass(frozen=True)
class Preset:
    lines: tuple[str, ...]  # cell lines, largest first
    line_scale: tuple[float, ...]  # relative size of each line (cells per group and controls)
    n_modules: int
    perts_per_module: int  # 0 = every gene of the module
    n_null: int
    n_features: int
    frac_pert_features: float  # share of perturbed genes that are also measured features
    cells_per_group: float  # mean for the largest line
    controls: int  # control cells in the largest line
    batches: int  # gem groups per line
    coverage: float  # share of the perturbed genes screened in each non-first line
    store_x: bool  # also write .X (sparse); off for `large` to keep one matrix


_FOUR = ("k562", "rpe1", "jurkat", "hepg2")
_SCALE = (1.0, 0.8, 0.7, 0.6)
PRESETS: dict[str, Preset] = {
    "tiny": Preset(("k562", "rpe1"), (1.0, 0.8), 6, 4, 6, 64, 0.3, 30, 250, 2, 1.0, True),
    "demo": Preset(_FOUR, _SCALE, 20, 7, 16, 800, 0.3, 40, 800, 3, 0.9, True),
    "screen": Preset(_FOUR, _SCALE, 20, 0, 16, 1000, 0.3, 60, 2000, 4, 0.9, True),
    "large": Preset(_FOUR, _SCALE, 20, 0, 16, 2000, 0.5, 270, 4000, 4, 0.95, False),
}

_MIN_CELLS = 15  # floor on group size, above the default data.min_cells
_CHUNK = 16384  # cells generated at once (bounds the temporary memory of `large`)
_WEAK_SHARE = 0.25  # module members without transcriptional effect (with NULL_GENES: ~30% nulls)


def synth_screen(preset: str = "demo", seed: int = 0) -> ad.AnnData:
    """A Replogle-Nadig-shaped AnnData: obs gene/cell_line/gem_group, log-normalised obsm['X_hvg']."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    rng = np.random.default_rng([seed, 20240611])
    # the stages draw from one generator in this order; reordering them changes every screen
    genes = pick_genes(p, rng)
    modules = _module_effects(rng, p, genes)
    effects = _perturbation_effects(rng, p, genes, modules)
    baseline = _baselines(rng, p, genes.feat_index)
    cell_pert, cell_line, cell_batch = cell_labels(rng, p, genes.perts)
    X, cell_state, escaped = _expression(rng, p, genes, effects, baseline, cell_pert, cell_line, cell_batch)

    obs = observations(p, cell_pert, cell_line, cell_batch)
    var = pd.DataFrame({"highly_variable": np.ones(len(genes.features), dtype=bool)}, index=pd.Index(genes.features))
    adata = ad.AnnData(X=sp.csr_matrix(X) if p.store_x else None, obs=obs, var=var)
    adata.obsm["X_hvg"] = X
    adata.uns["ptrag_synth"] = _ground_truth(preset, seed, p, genes, modules, effects, baseline, cell_state, escaped)
    return adata


@dataclass(frozen=True)
class _Genes:
    """The perturbed genes and the measured features of one screen."""

    modules: list[str]  # real complexes the perturbations come from
    perts: list[str]  # module members first, then null genes
    gene_module: dict[str, str]  # perturbed gene -> its module ("null" for null genes)
    nulls: list[str]
    features: list[str]

    @property
    def feat_index(self) -> dict[str, int]:
        """Feature name -> column, for placing gene-level effects in the measured features."""
        return {f: i for i, f in enumerate(self.features)}


@dataclass(frozen=True)
class _ModuleEffects:
    """Per-module ground truth, shared by the knock-downs of a module's members."""

    programs: dict[str, np.ndarray]  # response program of each module [G]
    strength: dict[str, float]
    line_factor: dict[str, np.ndarray]  # [L]: 0 where inactive, negative where the sign flips
    line_program: dict[tuple[str, int], np.ndarray]  # line-specific component of each module [G]
    line_specific: dict[str, str]  # module -> the only line it acts in
    opposite: dict[str, str]  # module -> the line where its sign flips
    fitness: np.ndarray  # generic response shared by effective knock-downs [G]
    p53: np.ndarray  # joins the generic response in TP53 wild-type lines [G]
    state_strength: dict[str, float]
    state_line: dict[str, np.ndarray]  # [L]
    p53_arrest: float


@dataclass(frozen=True)
class _Effects:
    """Per perturbation and line: the knock-down's response, state shift and escape rate."""

    delta: np.ndarray  # log-rate shift of a knocked-down cell (magnitude 1) [P, L, G]
    shift: np.ndarray  # log-odds shift of its state vs the control mix [P, L, K]
    weak: list[str]  # module members without transcriptional effect
    escape: np.ndarray  # share of cells escaping the knock-down [P, L]


@dataclass(frozen=True)
class _Baseline:
    """Expression of unperturbed cells: per-line levels, dispersion and cell-state programs."""

    base: np.ndarray  # log-rate per line [L, G]
    theta: np.ndarray  # NB inverse dispersion [G]
    mean_count: float  # library size over the measured genes
    state_program: np.ndarray  # [L, K, G]
    control_mix: np.ndarray  # [L, K]


def pick_genes(p: Preset, rng: np.random.Generator) -> _Genes:
    """Perturbations (real complexes + null genes) and the measured features, drawn in that order."""
    modules = _pick_modules(p.n_modules)
    perts: list[str] = []
    gene_module: dict[str, str] = {}
    for m in modules:
        members = list(GENE_MODULES[m])
        if p.perts_per_module == 0:
            chosen = members
        else:
            size = min(p.perts_per_module, len(members))
            chosen = [members[i] for i in sorted(rng.choice(len(members), size=size, replace=False))]
        for gene in chosen:
            if gene not in gene_module:
                perts.append(gene)
                gene_module[gene] = m
    nulls = list(NULL_GENES[: p.n_null])
    perts += nulls
    gene_module.update({g: "null" for g in nulls})
    features = _pick_features(p, perts, rng)
    return _Genes(modules, perts, gene_module, nulls, features)


def _module_effects(rng: np.random.Generator, p: Preset, genes: _Genes) -> _ModuleEffects:
    """Module programs, loadings and line-specific effects, plus the generic and state responses."""
    modules, feat_index = genes.modules, genes.feat_index
    G, L = len(genes.features), len(p.lines)
    p53_wt = np.array([line in TP53_WILD_TYPE_LINES for line in p.lines])
    programs = {m: _sparse_effects(rng, G, 0.12, 0.8, strong=3) for m in modules}
    strength = {m: rng.uniform(0.6, 1.4) for m in modules}
    line_factor = {m: rng.normal(1.0, 0.1, L) for m in modules}
    if "tp53_pathway" in line_factor:  # no p53 to regulate in TP53-null / mutant lines
        line_factor["tp53_pathway"] *= p53_wt
    order = [modules[i] for i in rng.permutation(len(modules)) if modules[i] != "tp53_pathway"]
    n_specific = max(1, round(0.15 * len(modules)))
    n_flip = max(1, round(0.10 * len(modules)))
    line_specific, opposite = {}, {}
    for m in order[:n_specific]:  # active in one line only
        j = int(rng.integers(L))
        line_factor[m] = np.where(np.arange(L) == j, line_factor[m], 0.0)
        line_specific[m] = p.lines[j]
    for m in order[n_specific : n_specific + n_flip]:  # opposite sign in one line
        j = int(rng.integers(1, L))
        line_factor[m][j] *= -1.0
        opposite[m] = p.lines[j]
    line_program = {(m, j): _sparse_effects(rng, G, 0.05, 0.4) for m in modules for j in range(L)}
    fitness = _sparse_effects(rng, G, 0.15, 0.4)  # generic response shared by effective knock-downs
    p53 = _program(rng, feat_index, P53_TARGETS, 0.4, 1.0)  # joins the generic response in TP53 wt lines
    # state shifts (log-odds of one state vs the control mix): module-driven, shared across lines
    # with a line factor; in TP53 wild-type lines every effective knock-down also arrests in G1
    state_strength = {m: rng.uniform(0.8, 1.6) for m in modules}
    state_line = {m: np.clip(rng.normal(1.0, 0.3, L), 0.0, None) * (line_factor[m] != 0) for m in modules}
    p53_arrest = rng.uniform(0.6, 1.0)
    return _ModuleEffects(programs, strength, line_factor, line_program, line_specific, opposite,
                          fitness, p53, state_strength, state_line, p53_arrest)


def _perturbation_effects(rng: np.random.Generator, p: Preset, genes: _Genes, mod: _ModuleEffects) -> _Effects:
    """Each perturbation's response per line: its module's program scaled by a loading, own effects."""
    perts, feat_index = genes.perts, genes.feat_index
    G, L, P = len(genes.features), len(p.lines), len(perts)
    p53_wt = np.array([line in TP53_WILD_TYPE_LINES for line in p.lines])
    weak = []
    delta = np.zeros((P, L, G), dtype=np.float32)
    shift = np.zeros((P, L, len(STATES)), dtype=np.float32)
    for i, gene in enumerate(perts):
        m = genes.gene_module[gene]
        if m != "null":
            relative = rng.uniform(0.5, 1.2)
            loading = mod.strength[m] * relative
            effective = rng.random() >= _WEAK_SHARE
            if not effective:  # a module member without transcriptional effect
                loading = rng.uniform(0.0, 0.08)
                weak.append(gene)
            potency = rng.lognormal(0.0, 0.2, L)  # how much the gene matters in each line
            own = _sparse_effects(rng, G, 0.06, 0.4) * effective
            b = rng.uniform(0.3, 1.0) * effective
            p53_on = p53_wt & (gene != "TP53")  # without TP53, stress cannot activate p53
            for j in range(L):
                module_part = mod.line_factor[m][j] * loading * (mod.programs[m] + mod.line_program[(m, j)])
                delta[i, j] = potency[j] * (module_part + own + b * (mod.fitness + p53_on[j] * mod.p53))
            if effective and m in MODULE_STATE_SHIFTS:
                k = STATES.index(MODULE_STATE_SHIFTS[m])
                shift[i, :, k] += potency * mod.state_line[m] * mod.state_strength[m] * relative
            shift[i, :, STATES.index("G1")] += potency * p53_on * b * mod.p53_arrest
        if gene in feat_index:  # on-target knock-down of a measured gene (~85% less mRNA)
            delta[i, :, feat_index[gene]] += np.log(0.15)
    escape = rng.uniform(0.05, 0.3, (P, L))
    return _Effects(delta, shift, weak, escape)


def _baselines(rng: np.random.Generator, p: Preset, feat_index: dict[str, int]) -> _Baseline:
    """Unperturbed expression: shared level, line deviations, line markers, dispersion, states."""
    G, L = len(feat_index), len(p.lines)
    level = rng.normal(0.0, 1.0, G)
    base = level[None, :] + rng.normal(0.0, 0.35, (L, G)) * (rng.random((L, G)) < 0.3)
    for j, line in enumerate(p.lines):
        for gene in LINE_MARKERS.get(line, ()):
            if gene in feat_index:
                base[:, feat_index[gene]] -= 1.5
                base[j, feat_index[gene]] += 4.0
    theta = rng.uniform(2.0, 10.0, G).astype(np.float32)  # NB inverse dispersion
    mean_count = 6.0 * G  # library size over the measured genes
    state_program = _state_programs(rng, p.lines, feat_index)  # [L, K, G]
    control_mix = np.stack([rng.dirichlet(80.0 * _STATE_MIX) for _ in p.lines])  # [L, K]
    return _Baseline(base, theta, mean_count, state_program, control_mix)


def cell_labels(rng: np.random.Generator, p: Preset, perts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: perturbation label, line code and batch, shuffled within each line."""
    labels, lines_col, batch_col = [], [], []
    for j in range(len(p.lines)):
        screened = perts if j == 0 else [g for g in perts if rng.random() < p.coverage]
        group_scale = p.cells_per_group * p.line_scale[j] * rng.lognormal(0.0, 0.35, len(screened))
        sizes = np.maximum(_MIN_CELLS, np.round(group_scale)).astype(int)
        n_ctrl = int(round(p.controls * p.line_scale[j]))
        cell_pert = np.concatenate([np.repeat(np.array(screened, dtype=object), sizes),
                                    np.full(n_ctrl, CONTROL_LABEL, dtype=object)])
        cell_pert = cell_pert[rng.permutation(len(cell_pert))]
        labels.append(cell_pert)
        lines_col.append(np.full(len(cell_pert), j))
        batch_col.append(rng.integers(0, p.batches, len(cell_pert)) + j * p.batches)
    return np.concatenate(labels), np.concatenate(lines_col), np.concatenate(batch_col)


def _expression(rng: np.random.Generator, p: Preset, genes: _Genes, effects: _Effects, baseline: _Baseline,
                cell_pert: np.ndarray, cell_line: np.ndarray,
                cell_batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-normalised counts per cell, in chunks; also each cell's state and whether it escaped."""
    n, G, L = len(cell_pert), len(genes.features), len(p.lines)
    batch_shift = rng.normal(0.0, 0.08, (L * p.batches, G)).astype(np.float32)
    pert_index = {g: i for i, g in enumerate(genes.perts)}
    pidx = np.array([pert_index.get(g, -1) for g in cell_pert])
    log_mix = np.log(baseline.control_mix)
    X = np.empty((n, G), dtype=np.float32)
    cell_state = np.empty(n, dtype=np.int8)
    escaped = np.zeros(n, dtype=bool)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        pi, li, bi = pidx[sl], cell_line[sl], cell_batch[sl]
        m = len(pi)
        gi = np.maximum(pi, 0)
        knocked = (pi >= 0) & (rng.random(m) >= effects.escape[gi, li])
        escaped[sl] = (pi >= 0) & ~knocked
        magnitude = rng.gamma(6.0, 1.0 / 6.0, m).astype(np.float32) * knocked
        state = _draw_states(rng, log_mix[li] + magnitude[:, None] * effects.shift[gi, li])
        cell_state[sl] = state
        log_rate = baseline.base[li].astype(np.float32) + batch_shift[bi] + baseline.state_program[li, state]
        log_rate += magnitude[:, None] * effects.delta[gi, li]
        log_rate -= log_rate.max(axis=1, keepdims=True)
        prop = np.exp(log_rate)
        prop /= prop.sum(axis=1, keepdims=True)
        lib = (baseline.mean_count * _STATE_LIBRARY[state] * rng.lognormal(0.0, 0.35, m)).astype(np.float32)
        mu = prop * lib[:, None]
        counts = rng.poisson(rng.gamma(baseline.theta, 1.0, (m, G)).astype(np.float32) * mu / baseline.theta)
        total = np.maximum(counts.sum(axis=1, keepdims=True), 1)
        X[sl] = np.log1p(counts * (1e4 / total)).astype(np.float32)
    return X, cell_state, escaped


def observations(p: Preset, cell_pert: np.ndarray, cell_line: np.ndarray, cell_batch: np.ndarray) -> pd.DataFrame:
    """The obs table in the real release's schema (gene, cell_line, 1-based gem_group)."""
    return pd.DataFrame({
        "gene": pd.Categorical(cell_pert.astype(str)),
        "cell_line": pd.Categorical.from_codes(cell_line, categories=list(p.lines)),
        "gem_group": pd.Categorical((cell_batch + 1).astype(str)),
    }, index=[f"{p.lines[j]}_{i:07d}" for i, j in enumerate(cell_line)])


def _ground_truth(preset: str, seed: int, p: Preset, genes: _Genes, mod: _ModuleEffects, effects: _Effects,
                  baseline: _Baseline, cell_state: np.ndarray, escaped: np.ndarray) -> dict:
    """The generative truth stored in uns['ptrag_synth'] for retrieval diagnostics and tests."""
    perts, weak = genes.perts, effects.weak
    G, L, P = len(genes.features), len(p.lines), len(perts)
    groups = [(g, line) for g in perts for line in p.lines]
    return {
        "preset": preset,
        "seed": int(seed),
        "version": VERSION,
        "control_label": CONTROL_LABEL,
        "cell_lines": list(p.lines),
        "gene_module": genes.gene_module,
        "null_genes": genes.nulls + weak,
        "weak_module_genes": weak or ["<none>"],
        "line_specific_modules": mod.line_specific,
        "opposite_sign_modules": mod.opposite,
        "tp53_wild_type_lines": [line for line in p.lines if line in TP53_WILD_TYPE_LINES] or ["<none>"],
        "effect_groups": [f"{g}|{line}" for g, line in groups],
        "effect": effects.delta.reshape(P * L, G),  # log-rate shift of a knocked-down cell (magnitude 1)
        "escape_rate": effects.escape.reshape(P * L).astype(np.float32),
        # cell states: programs [line, state, gene], control mix [line, state], and per group the
        # log-odds shift of a knocked-down cell's state (magnitude 1); rows as in effect_groups
        "state_names": list(STATES),
        "state_modules": {m: s for m, s in MODULE_STATE_SHIFTS.items() if m in genes.modules} or {"<none>": "<none>"},
        "state_programs": baseline.state_program,
        "control_state_mix": baseline.control_mix.astype(np.float32),
        "state_shift": effects.shift.reshape(P * L, len(STATES)),
        # per cell, in obs order: the state drawn and whether the cell escaped the knock-down
        "cell_state": cell_state,
        "escaped": escaped,
    }


def _pick_modules(k: int) -> list[str]:
    names = list(GENE_MODULES)
    if k >= len(names):
        return names
    step = len(names) / k  # spread over the list: diverse biology even for `tiny`
    return [names[int(i * step)] for i in range(k)]


def _pick_features(p: Preset, perts: list[str], rng: np.random.Generator) -> list[str]:
    measured = [g for g in perts if rng.random() < p.frac_pert_features]
    pool = [g for g in readout_genes() if g not in set(perts)]
    n_rest = p.n_features - len(measured)
    # line markers and the genes of the cell states and the p53 response first (interleaved, so
    # even `tiny` measures some of each), then a random draw from the other read-outs
    lists = ([LINE_MARKERS.get(line, ()) for line in p.lines] + [CELL_CYCLE_G1S, CELL_CYCLE_G2M]
             + [DIFFERENTIATION.get(line, ()) for line in p.lines] + [P53_TARGETS])
    head = _interleave(lists, set(pool), max(0, n_rest // 3))
    rest = [g for g in pool if g not in set(head)]
    need = n_rest - len(head)
    if need > len(rest):  # not enough read-outs: measure more perturbed genes
        extra = [g for g in perts if g not in set(measured)][: need - len(rest)]
        measured += extra
        need = len(rest)
    picked = head + [rest[i] for i in sorted(rng.choice(len(rest), size=need, replace=False))]
    features = measured + picked
    return [features[i] for i in rng.permutation(len(features))]


def _interleave(lists: list, allowed: set[str], cap: int) -> list[str]:
    out: dict[str, None] = {}
    for row in zip_longest(*lists):
        for gene in row:
            if len(out) >= cap:
                return list(out)
            if gene is not None and gene in allowed:
                out.setdefault(gene)
    return list(out)


def _program(rng: np.random.Generator, feat_index: dict[str, int], genes, lo: float, hi: float) -> np.ndarray:
    """Up-regulation of the measured genes of a real gene set (log-rate shift U(lo, hi) each)."""
    out = np.zeros(len(feat_index), dtype=np.float32)
    for gene in genes:
        if gene in feat_index:
            out[feat_index[gene]] = rng.uniform(lo, hi)
    return out


def _state_programs(rng: np.random.Generator, lines: tuple[str, ...], feat_index: dict[str, int]) -> np.ndarray:
    """Expression program of each state per line, relative to G1: S raises G1/S genes, G2M the
    G2/M genes (and some G1/S), the differentiated state its line's genes and silences both."""
    g1s = _program(rng, feat_index, CELL_CYCLE_G1S, 0.5, 1.2)
    g2m = _program(rng, feat_index, CELL_CYCLE_G2M, 0.6, 1.5)
    cycling = ((g1s > 0) | (g2m > 0)).astype(np.float32)
    out = np.zeros((len(lines), len(STATES), len(feat_index)), dtype=np.float32)
    for j, line in enumerate(lines):
        scale = rng.normal(1.0, 0.1)
        out[j, STATES.index("S")] = scale * g1s
        out[j, STATES.index("G2M")] = scale * (g2m + 0.4 * g1s)
        out[j, STATES.index("differentiated")] = (_program(rng, feat_index, DIFFERENTIATION.get(line, ()), 0.8, 1.8)
                                                  - 0.8 * cycling)
    return out


def _draw_states(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    u = rng.random(len(prob))
    return np.minimum((prob.cumsum(axis=1) < u[:, None]).sum(axis=1), len(STATES) - 1).astype(np.int8)


def _sparse_effects(rng: np.random.Generator, G: int, density: float, sd: float, strong: int = 0) -> np.ndarray:
    out = (rng.normal(0.0, sd, G) * (rng.random(G) < density)).astype(np.float32)
    if strong:
        idx = rng.choice(G, size=strong, replace=False)
        out[idx] = rng.choice([-1.0, 1.0], size=strong) * rng.uniform(0.8, 1.4, strong)
    return out
