"""The grn simulator family: each mechanism it claims is present in what it writes."""

from __future__ import annotations

import numpy as np
import pytest

from ptrag.core.config import DataConfig
from ptrag.core.data.builtin import builtin_screen
from ptrag.core.data.loading import adata_to_data
from ptrag.core.data.synth_grn import propagate


@pytest.fixture(scope="module")
def grn():
    return builtin_screen("demo", 0, "grn")


def _means(adata, line):
    X, obs = adata.obsm["X_hvg"], adata.obs
    ctrl = X[((obs.gene == "non-targeting") & (obs.cell_line == line)).to_numpy()].mean(0)
    return X, obs, ctrl


def test_it_is_a_screen_in_the_release_schema_and_repeats_from_its_seed(grn):
    assert {"gene", "cell_line", "gem_group", "guide"} <= set(grn.obs.columns)
    assert grn.uns["ptrag_synth"]["family"] == "grn" and grn.obsm["X_hvg"].min() >= 0
    data = adata_to_data(grn, DataConfig(), "grn")
    assert len(data.contexts) == 4 and len(data.groups) > 300
    again = builtin_screen("tiny", 3, "grn")
    assert np.array_equal(again.obsm["X_hvg"], builtin_screen("tiny", 3, "grn").obsm["X_hvg"])


def test_the_strengths_of_the_mechanisms_are_drawn_from_the_data_seed():
    a, b = (builtin_screen("tiny", seed, "grn").uns["ptrag_synth"]["strengths"] for seed in (0, 1))
    assert a["saturation"] != b["saturation"] and a["null_rate"] != b["null_rate"]


def test_knockdowns_spread_through_the_network_and_saturate():
    network = np.zeros((4, 4))
    network[0, 1] = network[1, 2] = 1.0  # gene 0 -> 1 -> 2; gene 3 unconnected
    direct = np.array([[-1.0, 0.0, 0.0, 0.0]])
    response = propagate(direct, network, saturation=1.5)
    assert response[0, 2] != 0 and response[0, 3] == 0  # two hops away, through the network
    strong = propagate(4 * direct, network, saturation=1.5)
    assert np.abs(strong).max() <= 1.5 and abs(strong[0, 0]) < 4 * abs(response[0, 0])  # saturates


def test_each_line_has_its_own_perturbations_without_effect(grn):
    truth = grn.uns["ptrag_synth"]
    lines = list(truth["cell_lines"])
    null = np.asarray(truth["null_in_line"]).reshape(-1, len(lines))
    varies = np.flatnonzero(null.any(1) & ~null.all(1))
    assert len(varies) > 5  # without effect in one line, with effect in another
    X, obs = grn.obsm["X_hvg"], grn.obs
    ctrl = {line: X[((obs.gene == "non-targeting") & (obs.cell_line == line)).to_numpy()].mean(0) for line in lines}
    without, with_ = [], []
    for i in varies:
        gene = truth["effect_groups"][len(lines) * i].split("|")[0]
        for j, line in enumerate(lines):
            rows = ((obs.gene == gene) & (obs.cell_line == line)).to_numpy()
            if rows.sum() and gene not in truth["null_genes"]:
                (without if null[i, j] else with_).append(np.linalg.norm(X[rows].mean(0) - ctrl[line]))
    assert len(without) >= 3 and len(with_) >= 3
    assert np.median(without) < np.median(with_)  # the observed responses follow the line's nulls


def test_guides_differ_in_efficiency_and_cells_vary_and_escape(grn):
    truth = grn.uns["ptrag_synth"]
    eff = np.asarray(truth["cell_efficiency"])
    obs, X = grn.obs, grn.obsm["X_hvg"]
    perturbed = (obs.gene != "non-targeting").to_numpy()
    assert (eff[perturbed] == 0).mean() > 0.01  # escapers
    ctrl = X[((obs.gene == "non-targeting") & (obs.cell_line == "k562")).to_numpy()].mean(0)
    guides = truth["guide_efficiency"]
    stronger = 0
    tested = 0
    for gene in sorted(guides, key=lambda g: -np.ptp(guides[g]))[:20]:
        rows = (obs.gene == gene).to_numpy() & (obs.cell_line == "k562").to_numpy()
        best, worst = (f"{gene}_g{int(f(guides[gene])) + 1}" for f in (np.argmax, np.argmin))
        cells = {g: rows & (obs.guide == g).to_numpy() for g in (best, worst)}
        if min(c.sum() for c in cells.values()) < 3 or gene in truth["null_genes"]:
            continue
        direction = X[rows].mean(0) - ctrl
        proj = {g: float((X[c].mean(0) - ctrl) @ direction) for g, c in cells.items()}
        tested += 1
        stronger += proj[best] > proj[worst]
        assert eff[rows].std() > 0.05  # every cell its own efficiency
    assert tested >= 5 and stronger >= 0.7 * tested  # a stronger guide's cells move further along the response
