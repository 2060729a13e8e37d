"""Model components: loss, Gumbel/attention/uniform selectors, set transformer, composition."""

import numpy as np
import pytest
import torch

from ptrag.core.hookspecs import BuildContext
from ptrag.core.interfaces import CellSetBatch, GenerationInput, SelectionInput
from ptrag.core.model.compose import PtragModel
from ptrag.core.training.losses import energy_distance, set_loss
from ptrag.plugins.generators.set_transformer import SetTransformerGenerator, SetTransformerParams
from ptrag.plugins.selectors.attention import AttentionParams, AttentionSelector
from ptrag.plugins.selectors.gumbel import GumbelParams, GumbelSelector, hard_gumbel_keep
from ptrag.plugins.selectors.uniform import UniformSelector

pytestmark = pytest.mark.usefixtures("one_thread")


def test_energy_distance_is_zero_for_equal_sets_and_grows_with_a_shift():
    torch.manual_seed(0)
    x = torch.randn(3, 20, 5)
    assert torch.allclose(energy_distance(x, x), torch.zeros(3), atol=1e-5)
    near, far = energy_distance(x, x + 0.5), energy_distance(x, x + 2.0)
    assert (near > 0).all() and (far > near).all()
    assert torch.allclose(energy_distance(x, x + 1), energy_distance(x + 1, x), atol=1e-5)
    assert set_loss("mse", x, x + 1).item() == pytest.approx(1.0)


def select(selector, states, query, cands, mask=None):
    """A selector's forward on one SelectionInput (stage-1 scores left at 0)."""
    b, k = cands.shape[:2]
    mask = torch.ones(b, k, dtype=torch.bool) if mask is None else mask
    return selector(SelectionInput(states, query, cands, torch.zeros(b, k), mask))


def generate(generator, batch):
    return generator(GenerationInput(batch))


def _selector_inputs(b=2, s=4, k=6, h=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, s, h, generator=g), torch.randn(b, h, generator=g),
            torch.randn(b, k, h, generator=g, requires_grad=True))


def test_gumbel_is_hard_straight_through_and_dropped_candidates_get_no_projection_gradient():
    torch.manual_seed(0)
    sel = GumbelSelector(GumbelParams(), BuildContext(hidden_dim=8)).train()
    states, query, cands = _selector_inputs()
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, -2:] = False  # padding: never kept
    projected = {}

    def keep_output(module, inputs, output):
        output.retain_grad()
        projected["out"] = output

    sel.project.register_forward_hook(keep_output)
    out = select(sel, states, query, cands, mask=mask)
    keep = out.weights
    assert set(keep.unique().tolist()) <= {0.0, 1.0}  # hard 0/1 forward
    assert (keep[..., -2:] == 0).all()
    assert 0 < out.stats["keep_ratio"] < 1 and "sparsity" in out.aux_losses
    out.context.sum().backward()
    # straight-through: the scorer gets a gradient although the forward pass is discrete
    assert sel.scorer[1].weight.grad is not None and sel.scorer[1].weight.grad.abs().sum() > 0
    # d context.sum / d projected[b,k] = number of cells that kept candidate k: zero where dropped
    grad = projected["out"].grad
    kept_by = keep.sum(1)  # [B,K]
    assert torch.allclose(grad, kept_by.unsqueeze(-1).expand_as(grad))
    assert (grad[kept_by == 0] == 0).all() and (grad[kept_by > 0] != 0).all()


def test_logistic_hard_gumbel_matches_the_two_class_gumbel_softmax():
    # same keep frequency as F.gumbel_softmax(hard=True) over (keep, drop) logits, and the same
    # straight-through gradient: d keep / d margin = soft (1 - soft) / tau with soft in (0, 1)
    torch.manual_seed(0)
    margin = torch.tensor([-2.0, 0.0, 1.5]).repeat(100_000, 1)
    ours = hard_gumbel_keep(margin, 0.5).mean(0)
    logits = torch.stack([margin, torch.zeros_like(margin)], -1)
    torch_keep = torch.nn.functional.gumbel_softmax(logits, tau=0.5, hard=True)[..., 0].mean(0)
    assert torch.allclose(ours, torch.sigmoid(margin[0]), atol=0.006)
    assert torch.allclose(ours, torch_keep, atol=0.008)
    m = torch.zeros(10_000, requires_grad=True)
    keep = hard_gumbel_keep(m, 0.5)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    keep.sum().backward()
    assert (m.grad >= 0).all() and (m.grad <= 0.25 / 0.5 + 1e-6).all() and m.grad.mean() > 0.1


def test_gumbel_fast_scorer_equals_the_literal_layernorm_mlp():
    torch.manual_seed(1)
    sel = GumbelSelector(GumbelParams(), BuildContext(hidden_dim=8))
    torch.nn.init.normal_(sel.scorer[0].weight)  # non-trivial LayerNorm affine
    torch.nn.init.normal_(sel.scorer[0].bias)
    states, query, cands = _selector_inputs()
    assert torch.allclose(sel.logits(states, query, cands), sel.logits_reference(states, query, cands), atol=1e-4)


def test_gumbel_is_deterministic_at_eval_unless_asked_to_sample():
    states, query, cands = _selector_inputs()
    sel = GumbelSelector(GumbelParams(), BuildContext(hidden_dim=8)).eval()
    a, b = select(sel, states, query, cands).weights, select(sel, states, query, cands).weights
    assert torch.equal(a, b)
    assert torch.equal(a, (sel.logits(states, query, cands).argmax(-1) == 0).float())


def _keep_ratio_after_training(sparsity: float, training: bool = False, **params) -> float:
    """Keep-ratio after 60 Adam steps on a toy target: at evaluation (the argmax), or in training
    (the Gumbel samples, mean of the last 10 steps) with ``training``."""
    torch.manual_seed(0)
    sel = GumbelSelector(GumbelParams(sparsity_weight=sparsity, **params), BuildContext(hidden_dim=8)).train()
    states, query, cands = _selector_inputs(b=4, s=8, k=8)
    cands = cands.detach()
    with torch.no_grad():
        target = sel.project(cands).sum(1, keepdim=True).expand(-1, 8, -1) * 0.5
    opt = torch.optim.Adam(sel.parameters(), lr=1e-2)
    sampled = []
    for _ in range(60):
        out = select(sel, states, query, cands)
        sampled.append(out.stats["keep_ratio"])
        loss = (out.context - target).pow(2).mean() + sum(out.aux_losses.values(), torch.zeros(()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sum(sampled[-10:]) / 10 if training else select(sel.eval(), states, query, cands).stats["keep_ratio"]


def test_sparsity_penalty_lowers_the_keep_ratio():
    assert _keep_ratio_after_training(2.0) < _keep_ratio_after_training(0.0) - 0.1


@pytest.mark.parametrize("target", [0.25, 0.6])
def test_a_keep_target_holds_the_training_keep_ratio_where_the_l1_penalty_drives_it_to_zero(target):
    assert _keep_ratio_after_training(10.0, training=True) < 0.05  # the paper's L1, strong: ~nothing kept
    assert abs(_keep_ratio_after_training(10.0, training=True, keep_target=target) - target) < 0.05


def test_standardized_logits_change_training_samples_not_the_evaluation_argmax():
    states, query, cands = _selector_inputs()
    plain = GumbelSelector(GumbelParams(), BuildContext(hidden_dim=8))
    scaled = GumbelSelector(GumbelParams(standardize_logits=True), BuildContext(hidden_dim=8))
    scaled.load_state_dict(plain.state_dict())
    torch.nn.init.normal_(plain.scorer[3].weight, std=10.0)  # large logits: training samples saturate
    scaled.load_state_dict(plain.state_dict())
    assert torch.equal(select(plain.eval(), states, query, cands).weights,
                       select(scaled.eval(), states, query, cands).weights)
    logits = scaled.logits(states, query, cands)
    assert logits.std() > 5  # the raw logits are large; the sampler sees them divided by their sd
    torch.manual_seed(0)
    a = select(plain.train(), states, query, cands).weights
    torch.manual_seed(0)
    b = select(scaled.train(), states, query, cands).weights
    assert not torch.equal(a, b)


def test_temperature_anneals_geometrically_over_training_steps():
    states, query, cands = _selector_inputs()
    sel = GumbelSelector(GumbelParams(tau=0.5, tau_start=2.0, tau_anneal_steps=4), BuildContext(hidden_dim=8)).train()
    taus = [select(sel, states, query, cands).stats["tau"] for _ in range(6)]
    assert taus == pytest.approx([2.0, 2.0 * 0.25 ** 0.25, 1.0, 2.0 * 0.25 ** 0.75, 0.5, 0.5])


def test_sparsity_warmup_ramps_the_penalty_in_training_steps_only():
    states, query, cands = _selector_inputs()
    sel = GumbelSelector(GumbelParams(sparsity_weight=0.4, sparsity_warmup=4), BuildContext(hidden_dim=8))
    select(sel.eval(), states, query, cands)  # evaluation does not advance the warm-up
    assert int(sel.train_steps) == 0
    sel.train()
    scales = []
    for _ in range(6):
        out = select(sel, states, query, cands)
        scales.append(float(out.aux_losses["sparsity"].detach()) / (0.4 * out.stats["keep_ratio"]))
    assert scales == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0], abs=1e-5)
    assert "train_steps" in sel.state_dict()  # restored on --resume


def test_attention_and_uniform_respect_padding():
    states, query, cands = _selector_inputs()
    mask = torch.tensor([[True] * 3 + [False] * 3, [False] * 6])
    att = select(AttentionSelector(AttentionParams(), BuildContext(hidden_dim=8)), states, query, cands, mask=mask)
    assert torch.allclose(att.weights[0].sum(-1), torch.ones(4)) and (att.weights[0, :, 3:] == 0).all()
    assert (att.weights[1] == 0).all() and (att.context[1] == 0).all()  # nothing valid: no context
    uni = select(UniformSelector(None, BuildContext(hidden_dim=8)), states, query, cands, mask=mask)
    assert torch.allclose(uni.weights[0, 0], torch.tensor([1 / 3] * 3 + [0.0] * 3))




class FakeDB:
    """A hand-made retrieval database (what ResponseDatabase offers the model)."""

    def __init__(self, perts, contexts, embeddings, response, n_cells=None):
        self.perts, self.contexts = list(perts), list(contexts)
        self.embeddings = np.asarray(embeddings, np.float32)
        self.response = np.asarray(response, np.float32)
        self.n_cells = np.asarray(n_cells if n_cells is not None else [10] * len(perts))

    def __len__(self):
        return len(self.perts)


def _batch(b=1, s=16, g=12, e=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return CellSetBatch(ctrl=torch.randn(b, s, g, generator=gen), pert_emb=torch.randn(b, e, generator=gen),
                        pert_index=torch.zeros(b, dtype=torch.long), context_index=torch.zeros(b, dtype=torch.long),
                        target=torch.randn(b, s, g, generator=gen) * 1.5 + 2.0)


def test_set_transformer_zero_init_starts_as_the_controls_and_overfits_one_cell_set():
    torch.manual_seed(0)
    ctx = BuildContext(n_genes=12, embed_dim=4, hidden_dim=64, n_perts=1)
    batch = _batch()
    zero = SetTransformerGenerator(SetTransformerParams(n_layers=1, n_heads=4, decoder_init="zero"), ctx)
    assert torch.equal(generate(zero, batch), batch.ctrl)  # zero-initialised residual: "no effect" at step 0
    gen = SetTransformerGenerator(SetTransformerParams(n_layers=1, n_heads=4, dropout=0.0), ctx)
    assert not torch.allclose(generate(gen.eval(), batch), batch.ctrl)  # torch's init (default): an effect from step 0
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    start = energy_distance(generate(gen, batch), batch.target).item()
    for _ in range(250):
        loss = energy_distance(generate(gen, batch), batch.target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * start
    pred = generate(gen, batch)
    assert pred.std(1).mean() > 0.5  # cells stay distinct, not a collapsed mean


def test_onehot_encoding_maps_unknown_perturbations_to_a_reserved_row():
    ctx = BuildContext(n_genes=12, embed_dim=4, hidden_dim=16, n_perts=3)
    gen = SetTransformerGenerator(SetTransformerParams(n_layers=1, n_heads=2, pert_encoding="onehot"), ctx)
    batch = _batch()
    batch.pert_index = torch.tensor([-1])
    assert generate(gen, batch).shape == batch.ctrl.shape


def test_model_routes_candidates_through_the_selector_into_the_generator():
    torch.manual_seed(0)
    g, e, h = 12, 4, 16
    database = FakeDB(["A", "B", "C"], ["x", "y", "x"], np.random.randn(3, e), np.random.randn(3, g))
    ctx = BuildContext(n_genes=g, embed_dim=e, hidden_dim=h, n_perts=3, n_contexts=2, context_names=("x", "y"))
    for mode in ("embedding", "response", "both"):
        gen = SetTransformerGenerator(SetTransformerParams(n_layers=1, n_heads=2), ctx)
        torch.nn.init.normal_(gen.decoder[-1].weight, std=0.1)  # non-zero so the context shows in the output
        model = PtragModel(gen, GumbelSelector(GumbelParams(), ctx), database, hidden_dim=h, context=mode,
                           context_names=["x", "y"]).eval()
        batch = _batch(b=2, g=g, e=e)
        batch.neighbour_ids = torch.tensor([[0, 1, -1], [2, -1, -1]])
        batch.neighbour_scores = torch.ones(2, 3)
        pred, sel = model(batch)
        assert pred.shape == batch.ctrl.shape and sel.weights.shape == (2, 16, 3)
        assert (sel.weights[:, :, 2] == 0).all() and (sel.weights[1, :, 1] == 0).all()
        batch.neighbour_ids = torch.full((2, 0), -1, dtype=torch.long)
        alone, none = model(batch)
        assert none.weights is None and alone.shape == pred.shape
