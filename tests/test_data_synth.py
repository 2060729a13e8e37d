"""The built-in screen: schema, determinism, size presets and the realism the science needs."""

import time
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import chisquare

from ptrag.core.config import DataConfig, resolve_config
from ptrag.core.data.gene_modules import GENE_MODULES, MODULE_STATE_SHIFTS, NULL_GENES, all_module_genes
from ptrag.core.data.loading import adata_to_data, load_screen
from ptrag.core.data.readout_genes import CELL_CYCLE_G1S, CELL_CYCLE_G2M, DIFFERENTIATION, P53_TARGETS, readout_genes
from ptrag.core.data.split import resolve_split
from ptrag.core.data.synth import PRESETS, STATES, VERSION, synth_screen


@pytest.fixture(scope="module")
def tiny():
    return synth_screen("tiny", 0)


@pytest.fixture(scope="module")
def deep():
    """`tiny` with 10x the cells per group and controls: power for the state-mix test (~0.3 s)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "tiny-deep", replace(PRESETS["tiny"], cells_per_group=300, controls=2500))
        return synth_screen("tiny-deep", 0)


@pytest.fixture(scope="module")
def tiny_data(tiny):
    return adata_to_data(tiny, DataConfig(), "synth")


def test_schema_matches_the_real_release(tiny):
    assert {"gene", "cell_line", "gem_group"} <= set(tiny.obs.columns)
    assert "non-targeting" in set(tiny.obs.gene)
    assert tiny.var["highly_variable"].all() and tiny.obsm["X_hvg"].dtype == np.float32
    assert tiny.obsm["X_hvg"].min() >= 0
    known = {g for genes in GENE_MODULES.values() for g in genes} | set(NULL_GENES)
    assert set(tiny.obs.gene) - {"non-targeting"} <= known
    assert tiny.n_obs <= 3000 and tiny.obsm["X_hvg"].shape[1] <= 100 and tiny.obs.cell_line.nunique() >= 2


def test_deterministic_from_the_seed_and_fast(tiny):
    t = time.perf_counter()
    again = synth_screen("tiny", 0)
    assert time.perf_counter() - t < 2.0
    np.testing.assert_array_equal(again.obsm["X_hvg"], tiny.obsm["X_hvg"])
    assert (again.obs.gene == tiny.obs.gene).all() and list(again.var_names) == list(tiny.var_names)
    other = synth_screen("tiny", 1)
    assert other.n_obs != tiny.n_obs or not np.array_equal(other.obsm["X_hvg"], tiny.obsm["X_hvg"])


def _expected_cells(p) -> float:
    """Expected cell count of a preset from its parameters (group sizes ~ LogNormal(0, 0.35))."""
    genes = (sum(len(g) for g in GENE_MODULES.values()) if p.perts_per_module == 0
             else p.n_modules * p.perts_per_module) + p.n_null
    screened = [1.0] + [p.coverage] * (len(p.lines) - 1)
    per_group = p.cells_per_group * np.exp(0.35 ** 2 / 2)
    return sum(genes * cov * s * per_group + p.controls * s for cov, s in zip(screened, p.line_scale, strict=False))


def test_presets_sizes():
    large, screen, demo = PRESETS["large"], PRESETS["screen"], PRESETS["demo"]
    assert _expected_cells(large) >= 200_000 and large.n_features == 2000 and not large.store_x
    # `screen`: the measurement preset: 4 lines, every module gene + the null genes, 1,000 features
    assert len(screen.lines) == 4 and screen.perts_per_module == 0 and screen.n_null == len(NULL_GENES)
    assert screen.n_features == 1000 and screen.store_x and 50_000 <= _expected_cells(screen) <= 60_000
    assert 20_000 <= _expected_cells(demo) <= 24_000 and demo.n_features == 800


def test_state_and_p53_genes_are_real_readouts():
    readouts, perturbed = set(readout_genes()), set(all_module_genes())
    for genes in (CELL_CYCLE_G1S, CELL_CYCLE_G2M, *DIFFERENTIATION.values()):
        assert set(genes) <= readouts
    assert set(P53_TARGETS) <= readouts | perturbed
    assert set(MODULE_STATE_SHIFTS) <= set(GENE_MODULES) and set(MODULE_STATE_SHIFTS.values()) <= set(STATES)


def _responses(adata, line):
    """Pseudobulk response per gene of ``line`` and its size relative to the noise floor (the
    same-size random control subset's distance from the control mean)."""
    data = adata_to_data(adata, DataConfig(), "synth")
    ctrl = data.control_indices(line)
    mean = data.X[ctrl].mean(0)
    rng = np.random.default_rng(0)
    resp, snr = {}, {}
    for p, c in data.groups:
        if c != line:
            continue
        idx = data.group_indices(p, c)
        resp[p] = data.X[idx].mean(0) - mean
        floor = np.median([np.linalg.norm(data.X[rng.choice(ctrl, len(idx), replace=False)].mean(0) - mean)
                           for _ in range(8)])
        snr[p] = np.linalg.norm(resp[p]) / floor
    return resp, snr


def test_realism_modules_nulls_and_line_specific(tiny):
    truth = tiny.uns["ptrag_synth"]
    module = truth["gene_module"]
    null = set(truth["null_genes"])
    specific = truth["line_specific_modules"]
    line = tiny.obs.cell_line.cat.categories[0]
    resp, snr = _responses(tiny, line)
    active = [g for g in resp if g not in null and module[g] not in specific]
    common = np.mean([resp[g] for g in active], axis=0)  # the generic knock-down response
    same, cross = [], []
    for i, a in enumerate(active):
        for b in active[i + 1:]:
            r = np.corrcoef(resp[a] - common, resp[b] - common)[0, 1]
            (same if module[a] == module[b] else cross).append(r)
    assert np.mean(same) > np.mean(cross) + 0.15  # shared biology within a complex

    nulls = [snr[g] for g in resp if g in NULL_GENES]
    assert nulls and np.median(nulls) < 1.4  # null knock-downs look like control noise
    assert np.median([snr[g] for g in active]) > 1.3 * np.median(nulls)

    assert specific, "at least one module acts in one cell line only"
    # line-specific modules, read from the stored ground truth (the observed signature of one
    # 4-gene module is too noisy in `tiny` to test on): along the module's own direction (its
    # members' mean effect minus the line's mean effect), the off line has next to nothing
    effect = dict(zip(truth["effect_groups"], truth["effect"], strict=False))
    effective = {k.split("|")[0] for k in effect} - null
    line_mean = {c: np.mean([effect[f"{g}|{c}"] for g in effective], axis=0) for c in truth["cell_lines"]}
    for m, on_line in specific.items():
        genes = [g for g in effective if module[g] == m]
        off_line = next(c for c in truth["cell_lines"] if c != on_line)
        direction = np.mean([effect[f"{g}|{on_line}"] for g in genes], axis=0) - line_mean[on_line]
        direction /= np.linalg.norm(direction)
        on = np.mean([effect[f"{g}|{on_line}"] @ direction for g in genes])
        off = np.mean([effect[f"{g}|{off_line}"] @ direction for g in genes])
        assert on > 2 * abs(off)


def test_same_gene_correlates_across_lines_with_line_specific_parts(tiny, tiny_data):
    """What makes `gene-other-lines` strong on real screens: the same gene's observed response
    in another line tracks its response here far better than an unrelated gene's does, yet the
    true effects are not copies (and much less alike where a module flips sign in one line)."""
    from ptrag.core.data.database import ResponseDatabase

    truth = tiny.uns["ptrag_synth"]
    null, module = set(truth["null_genes"]), truth["gene_module"]
    special = set(truth["line_specific_modules"]) | set(truth["opposite_sign_modules"])
    data = tiny_data
    db = ResponseDatabase.from_data(data, data.groups, np.zeros((len(data.groups), 1), np.float32))
    resp = dict(zip(data.groups, db.response, strict=False))
    a, b = data.contexts
    both = [p for p in data.perturbations if p not in null and (p, a) in resp and (p, b) in resp]
    genes = [p for p in both if module[p] not in special]
    same = [np.corrcoef(resp[(g, a)], resp[(g, b)])[0, 1] for g in genes]
    other = [np.corrcoef(resp[(g, a)], resp[(h, b)])[0, 1] for g in genes for h in genes
             if module[g] != module[h]]
    assert np.mean(same) > np.mean(other) + 0.25
    effect = dict(zip(truth["effect_groups"], truth["effect"], strict=False))

    def true_r(g):
        return np.corrcoef(effect[f"{g}|{a}"], effect[f"{g}|{b}"])[0, 1]

    typical = np.median([true_r(g) for g in genes])
    assert 0.5 < typical < 0.99  # shared, with line-specific parts
    flipped = [g for g in both if module[g] in truth["opposite_sign_modules"]]
    assert all(true_r(g) < typical - 0.4 for g in flipped)  # the module program's sign flips


def test_null_knockdowns_have_no_true_effect(tiny):
    truth = tiny.uns["ptrag_synth"]
    null = set(truth["null_genes"])
    features = list(tiny.var_names)
    rows = dict(zip(truth["effect_groups"], truth["effect"], strict=False))
    shift = dict(zip(truth["effect_groups"], truth["state_shift"], strict=False))
    size = {}
    for key, effect in rows.items():
        gene = key.split("|")[0]
        effect = effect.copy()
        if gene in features:
            effect[features.index(gene)] = 0.0  # the on-target knock-down is not a response
        size[key] = np.linalg.norm(effect)
    null_keys = [k for k in rows if k.split("|")[0] in null]
    live = [v for k, v in size.items() if k.split("|")[0] not in null and v > 0]
    assert null_keys and max(size[k] for k in null_keys) < 0.2 * np.median(live)  # weak: loading < 0.08
    assert all(np.abs(shift[k]).max() == 0 for k in null_keys)  # and no change of the state mix
    share = len({k.split("|")[0] for k in null_keys}) / len({k.split("|")[0] for k in rows})
    assert 0.2 <= share <= 0.55  # real screens: about a third (`tiny` has 6 null genes of 30)


def test_knockdowns_shift_the_state_mix_and_escapers_keep_the_control_mix(deep):
    truth = deep.uns["ptrag_synth"]
    state = np.asarray(truth["cell_state"])
    escaped = np.asarray(truth["escaped"]).astype(bool)
    gene = deep.obs.gene.astype(str).to_numpy()
    line = deep.obs.cell_line.astype(str).to_numpy()
    control = gene == "non-targeting"
    assert len(state) == len(escaped) == deep.n_obs and not escaped[control].any()
    assert 0.05 < escaped[~control].mean() < 0.3
    shift = dict(zip(truth["effect_groups"], truth["state_shift"], strict=False))
    true_mix = dict(zip(truth["cell_lines"], np.asarray(truth["control_state_mix"], dtype=np.float64), strict=False))
    for c in truth["cell_lines"]:
        # escapers of every knock-down together follow the line's control mix (chi-square fit)
        counts = np.bincount(state[escaped & (line == c)], minlength=len(STATES))
        assert chisquare(counts, true_mix[c] / true_mix[c].sum() * counts.sum()).pvalue > 1e-3, c
    # knocked-down cells of groups shifted towards one state, pooled per state: enriched in that
    # state (arrest, differentiation) well beyond what the control mix gives
    observed, expected = np.zeros(len(STATES)), np.zeros(len(STATES))
    for key, v in shift.items():
        p, c = key.split("|")
        hit = (gene == p) & (line == c) & ~escaped
        if v.max() > 0.8 and (v > 0).sum() == 1 and hit.any():
            k = int(v.argmax())
            observed[k] += (state[hit] == k).sum()
            expected[k] += hit.sum() * true_mix[c][k]
    tested = expected >= 15
    assert tested.sum() >= 2
    z = (observed - expected)[tested] / np.sqrt(expected[tested])
    assert (observed[tested] > 1.2 * expected[tested]).all() and (z > 3).all(), (observed, expected)


def test_state_programs_show_in_expression(tiny):
    """Cells in S / G2M express their phase genes above G1 cells; the mix is real biology on real
    read-out genes, visible to any model that looks at single cells."""
    truth = tiny.uns["ptrag_synth"]
    state = np.asarray(truth["cell_state"])
    X = tiny.obsm["X_hvg"]
    control = (tiny.obs.gene == "non-targeting").to_numpy()
    features = list(tiny.var_names)
    for phase, genes in (("S", CELL_CYCLE_G1S), ("G2M", CELL_CYCLE_G2M)):
        cols = [features.index(g) for g in genes if g in features]
        assert cols, f"`tiny` measures no {phase} gene"
        in_phase = X[control & (state == STATES.index(phase))][:, cols].mean()
        in_g1 = X[control & (state == STATES.index("G1"))][:, cols].mean()
        assert in_phase > in_g1 + 0.2
    programs = np.asarray(truth["state_programs"])
    assert programs.shape == (len(truth["cell_lines"]), len(STATES), len(features)) and not programs[:, 0].any()


def test_escapers_are_not_knocked_down(tiny):
    truth = tiny.uns["ptrag_synth"]
    escaped = np.asarray(truth["escaped"]).astype(bool)
    gene = tiny.obs.gene.astype(str).to_numpy()
    features = list(tiny.var_names)
    X = tiny.obsm["X_hvg"]
    knocked_means, escaper_means, control_means = [], [], []
    for g in sorted(set(gene) & set(features)):
        col = features.index(g)
        cells = gene == g
        knocked_means.append(X[cells & ~escaped, col].mean())
        escaper_means.append(X[cells & escaped, col].mean() if (cells & escaped).any() else np.nan)
        control_means.append(X[gene == "non-targeting", col].mean())
    knocked, escapers, controls = map(np.array, (knocked_means, escaper_means, control_means))
    assert len(knocked) >= 3
    assert np.nanmean(escapers - controls) > np.mean(knocked - controls) + 0.3  # on-target knock-down


def test_built_in_data_follows_data_seed_not_the_run_seed():
    one = resolve_config(None, preset="pert-mean", sets=["data.synth_preset=tiny", "seed=0"])
    two = resolve_config(None, preset="pert-mean", sets=["data.synth_preset=tiny", "seed=1"])
    a, b = load_screen(one.data), load_screen(two.data)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.truth["seed"] == b.truth["seed"] == 0 and a.truth["version"] == VERSION
    # the run seed still draws the split: same held-out line, other perturbations
    s1, s2 = resolve_split(one.data, a, one.seed), resolve_split(two.data, b, two.seed)
    assert {c for _, c in s1.test} == {c for _, c in s2.test} and s1.test != s2.test
    other = load_screen(DataConfig(synth_preset="tiny", seed=1))
    assert other.truth["seed"] == 1 and (other.X.shape != a.X.shape or not np.array_equal(other.X, a.X))


def test_ground_truth_is_stored(tiny):
    truth = tiny.uns["ptrag_synth"]
    n_groups = len(truth["effect_groups"])
    assert truth["effect"].shape == (n_groups, tiny.obsm["X_hvg"].shape[1])
    assert truth["state_shift"].shape == (n_groups, len(STATES)) and truth["escape_rate"].shape == (n_groups,)
    mix = np.asarray(truth["control_state_mix"])
    assert mix.shape == (len(truth["cell_lines"]), len(STATES)) and np.allclose(mix.sum(1), 1)
    assert truth["preset"] == "tiny" and truth["seed"] == 0 and truth["version"] == VERSION
