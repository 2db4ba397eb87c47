"""Masking operator, expert-wise attributions, faithfulness, concentration and specificity.

Known answers come from two kinds of models:
- `SpotModel`, hand-made: expert e reads exactly one token, so rankings, completeness and masking
  drops are known in closed form (a trained or random Transformer has no such ground truth);
- the real FL-I2MoE and dense models, tiny (H = 8), for everything that must hold for them: padding,
  chunking, eval mode, one-hot routing, the sum over experts, IG completeness, uniform attention.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from fli2moe.attribution import METHODS, attribute, rollout
from fli2moe.faithfulness import (
    bootstrap_ci,
    faithfulness_summary,
    seed_example_ci,
    concentration,
    expert_divergence,
    faithfulness,
    own_modality_share,
)
from fli2moe.masking import baseline_vectors, masked_scores, remove_tokens, target_labels, target_score
from fli2moe.models import DenseConfig, FLI2MoEConfig, ModalitySpec, ModelOutput, build_model
from fli2moe.features import SplitTensors

MODALITIES = [ModalitySpec("a", dim=5, tokens=4), ModalitySpec("b", dim=4, tokens=5)]
T, H = 9, 8
FUSION = dict(modalities=MODALITIES, num_classes=3, hidden=H, layers=2, heads=2, mlp_ratio=2, dropout=0.0)
LENGTHS_B = [5, 3, 4]  # real tokens of modality b per example; a is always full


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(name: str = "fl_i2moe", **overrides):
    torch.manual_seed(0)
    if name == "dense":
        return build_model(name, DenseConfig(**{**FUSION, **overrides})).eval()
    return build_model(name, FLI2MoEConfig(**{**FUSION, "num_experts": 4, "router_hidden": 8, **overrides})).eval()


def make_inputs(seed: int = 1, lengths_b=LENGTHS_B):
    """projected [B, T, H] and mask [B, T]: modality a full, modality b padded at the end."""
    g = torch.Generator().manual_seed(seed)
    projected = torch.randn(len(lengths_b), T, H, generator=g)
    mask = torch.ones(len(lengths_b), T, dtype=torch.bool)
    for i, n in enumerate(lengths_b):
        mask[i, 4 + n:] = False
    return projected, mask


def predicted_target(model, projected, mask, task="multiclass"):
    with torch.no_grad():
        return target_labels(model(projected, mask).logits, task)


class SpotModel(nn.Module):
    """Expert e reads token reads[e] only, through a hard attention that sends every query to that key.

    Its value is v_e = projected[reads[e], e]; the mean over the real queries is v_e again; its logits are
    (v_e, -v_e); the routing weights are constants. With v_e > 0 the target is class 0 and the target logit
    is sum_e w_e v_e, an exact function of the read tokens.
    """

    def __init__(self, reads: list[int], weights: list[float], roster):
        super().__init__()
        self.reads = reads
        self.register_buffer("w", torch.tensor(weights))
        self.modality_slices = {"a": slice(0, 4), "b": slice(4, T)}
        self.roster = roster

    def forward(self, projected, mask, return_attention=False):
        B = projected.shape[0]
        real = mask.to(projected.dtype)
        logits, attentions = [], []
        for e, t in enumerate(self.reads):
            probs = torch.zeros(B, 1, T, T)
            probs[..., t] = 1.0
            probs.requires_grad_()  # a leaf in the graph, as the real models' probabilities are
            mixed = (probs[:, 0] @ projected[..., e : e + 1])[..., 0]  # [B, T]: every query gets v_e
            pooled = (mixed * real).sum(1) / real.sum(1)  # [B]
            logits.append(torch.stack([pooled, -pooled], -1))
            attentions.append([probs])
        expert_logits = torch.stack(logits, 1)  # [B, E, 2]
        weights = self.w.expand(B, -1)
        return ModelOutput(torch.einsum("be,bec->bc", weights, expert_logits), expert_logits, expert_logits,
                           weights, attentions if return_attention else None)


def spot_inputs(reads, n=6, seed=2):
    """Random projected tokens with a positive read value v_e >= 2 at each read token; b padded in some."""
    projected, mask = make_inputs(seed, lengths_b=[5, 3, 4, 5, 3, 4][:n])
    g = torch.Generator().manual_seed(seed)
    for e, t in enumerate(reads):
        projected[:, t, e] = 2 + torch.rand(n, generator=g)
    return projected, mask


# --- masking operator --------------------------------------------------------------------------------

def test_removing_one_token_changes_only_that_tokens_vector():
    projected, mask = make_inputs()
    baseline = torch.randn(T, H)
    keep = torch.ones(3, T, dtype=torch.bool)
    keep[1, 2] = False
    out = remove_tokens(projected, keep, baseline, mask)
    assert torch.equal(out[1, 2], baseline[2])
    changed = (out != projected).any(-1)
    assert changed.sum() == 1 and changed[1, 2]


def test_removing_a_padded_slot_changes_nothing():
    model = make_model()
    projected, mask = make_inputs()
    baseline = torch.randn(T, H)
    padded = (1, 8)
    assert not mask[padded]
    keeps = mask[:, None].repeat(1, 2, 1)  # [B, 2, T]: everything kept; then also the padded slot removed
    keeps[padded[0], 1, padded[1]] = False
    assert torch.equal(remove_tokens(projected, keeps[:, 1], baseline, mask), projected)
    target = predicted_target(model, projected, mask)
    scores = masked_scores(model, projected, mask, keeps, baseline, target, "multiclass")
    assert torch.equal(scores.whole[:, 0], scores.whole[:, 1])
    assert torch.equal(scores.expert[:, 0], scores.expert[:, 1])


def test_masked_scores_do_not_depend_on_the_chunk_and_use_eval_mode():
    model = make_model(dropout=0.5).train()  # dropout would make every evaluation different
    projected, mask = make_inputs()
    baseline = torch.randn(T, H)
    g = torch.Generator().manual_seed(3)
    keeps = (torch.rand(3, 23, T, generator=g) < 0.6) & mask[:, None]  # [B, K, T]
    target = predicted_target(model.eval(), projected, mask)
    model.train()
    together = masked_scores(model, projected, mask, keeps, baseline, target, "multiclass", "prob", max_batch=7)
    assert model.training  # mode restored
    assert together.whole.std() > 0  # the masks do change the score
    for b in range(3):
        alone = [masked_scores(model, projected[b], mask[b], keeps[b, k : k + 1], baseline, target[b], "multiclass",
                               "prob", max_batch=7) for k in range(23)]
        assert torch.equal(together.whole[b], torch.cat([s.whole for s in alone]))
        assert torch.equal(together.expert[b], torch.cat([s.expert for s in alone]))
    # And the values are those of a plain forward pass on the masked input.
    with torch.no_grad():
        model.eval()
        out = model(remove_tokens(projected[:1], keeps[0, 5:6], baseline), mask[:1])
        weights = model(projected[:1], mask[:1]).weights
    c = target[0].nonzero().item()
    torch.testing.assert_close(together.whole[0, 5], out.logits[0].softmax(-1)[c])
    torch.testing.assert_close(together.expert[0, 5], weights[0] * out.expert_logits[0, :, c])


def test_mean_baseline_is_the_projection_of_each_modalitys_mean_real_token():
    model = make_model()
    g = torch.Generator().manual_seed(4)
    n = 7
    tokens = {m.name: torch.randn(n, m.tokens, m.dim, generator=g).half() for m in MODALITIES}
    mask = {"a": torch.ones(n, 4, dtype=torch.bool), "b": torch.arange(5) < torch.randint(1, 6, (n, 1), generator=g)}
    split = SplitTensors(tokens, mask, torch.zeros(n, dtype=torch.long))
    baseline = baseline_vectors(model, split, "mean", batch_size=3)  # 3 chunks
    for m, projection, s in zip(MODALITIES, model.front.projections, model.modality_slices.values()):
        mean_token = tokens[m.name].float()[mask[m.name]].mean(0)  # [D_m]
        expected = projection.weight.detach() @ mean_token + projection.bias.detach()  # the map is affine
        torch.testing.assert_close(baseline[s], expected.expand(m.tokens, H))
    assert torch.equal(baseline_vectors(model, split, "zero"), torch.zeros(T, H))


def test_targets_and_scores():
    logits = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -2.0, -0.5]])
    assert target_labels(logits, "multiclass").tolist() == [[False, False, True], [False, False, True]]
    # multilabel: the positive labels, else the top-1
    target = target_labels(logits, "multilabel")
    assert target.tolist() == [[True, False, True], [False, False, True]]
    torch.testing.assert_close(target_score(logits, target, "multilabel", "logit"), torch.tensor([1.5, -0.5]))
    expected = (torch.sigmoid(torch.tensor(1.0)) + torch.sigmoid(torch.tensor(2.0))) / 2
    torch.testing.assert_close(target_score(logits, target, "multilabel", "prob")[0], expected)
    softmax = target_score(logits, target_labels(logits, "multiclass"), "multiclass", "prob")
    torch.testing.assert_close(softmax, logits.softmax(-1)[:, 2])


# --- attributions: known answers ---------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS.names)
def test_a_model_that_reads_one_token_gets_it_ranked_first_and_maximal_comprehensiveness(method):
    reads = [6]  # a token of modality b, real in every example
    model = SpotModel(reads, [1.0], roster=[("dense", None)])
    projected, mask = spot_inputs(reads)
    target = predicted_target(model, projected, mask)
    baseline = torch.zeros(T, H)
    maps = attribute(model, projected, mask, target, method, baseline=baseline)
    assert (maps.whole.argmax(1) == 6).all() and (maps.expert[:, 0].argmax(1) == 6).all()
    assert (maps.whole[~mask] == 0).all()

    result = faithfulness(model, projected, mask, maps, baseline, target, "multiclass", random_repeats=5,
                          quantity="logit")
    b = result.modalities.index("b")
    v = projected[:, 6, 0].numpy()  # p(x) = v, and removing token 6 takes all of it
    comprehensive, sufficient = result.identified[0, :, b, :, 0], result.identified[0, :, b, :, 1]
    np.testing.assert_allclose(comprehensive, np.repeat(v[:, None], 5, 1), rtol=1e-6)  # top-1 covers t*
    np.testing.assert_allclose(sufficient, 0.0, atol=1e-6)  # keeping t* keeps everything
    assert (result.random[0, :, b, :, 0] < comprehensive - 1e-6).any()
    assert (result.random[0, :, b, :, 0] <= comprehensive + 1e-6).all()
    assert result.random[0, :, b, :, 1].mean() > 0
    gap = {(r["modality"], r["kind"]): r["gap"] for r in faithfulness_summary([result], resamples=200)}
    assert gap[("b", "comprehensiveness")] > 0 and gap[("b", "sufficiency")] < 0


def test_rollout_multiplies_the_layers_in_the_order_they_are_applied():
    # Layer 1: token 2 copies token 0. Layer 2: token 1 copies token 2. So token 0 reaches token 1
    # only through token 2, two layers deep; gradients are all 1, so Abar_l = A_l.
    eye = torch.eye(3)
    first, second = eye.clone(), eye.clone()
    first[2] = torch.tensor([1.0, 0.0, 0.0])
    second[1] = torch.tensor([0.0, 0.0, 1.0])
    attentions = [a[None, None] for a in (first, second)]  # [1, 1, 3, 3]
    scores = rollout(attentions, [torch.ones(1, 1, 3, 3)] * 2, torch.ones(1, 3, dtype=torch.bool))
    # R - I = (I + A_2)(I + A_1) - I = A_1 + A_2 + A_2 A_1, rows: 3 e0; e0 + e1 + e2; 2 e0 + e2 (the e0 in
    # row 1 is the two-layer path 0 -> 2 -> 1; the other order would put it nowhere). Column means:
    torch.testing.assert_close(scores[0], torch.tensor([6.0, 1.0, 2.0]) / 3)


def test_rollout_with_uniform_attention_and_symmetric_tokens_is_uniform_on_real_tokens():
    # With q and k independent of the input, attention is uniform over the real keys. Chefer's relevance
    # weighs A by dy/dA, so the map is uniform only if the tokens are interchangeable too: one modality,
    # identical real tokens, no position embedding. Padding is the one asymmetry left.
    model = build_model("dense", DenseConfig(**{**FUSION, "modalities": [ModalitySpec("a", 5, 6)], "layers": 1}))
    with torch.no_grad():
        model.expert.blocks[0].attn.qkv.weight[: 2 * H] = 0.0
        model.front.position_embedding.zero_()
    mask = torch.tensor([[True] * 4 + [False] * 2])
    same = torch.randn(1, 1, H).expand(1, 6, H).contiguous()
    target = predicted_target(model, same, mask)
    maps = attribute(model.eval(), same, mask, target)
    real = maps.whole[0, :4]
    assert real.min() > 0 and torch.allclose(real, real.mean().expand(4)) and (maps.whole[0, 4:] == 0).all()
    # The same model on distinct tokens: uniform attention alone does not make the map uniform.
    distinct = torch.randn(1, 6, H)
    maps = attribute(model, distinct, mask, predicted_target(model, distinct, mask))
    assert maps.whole[0, :4].std() > 1e-4


@pytest.mark.parametrize("method", METHODS.names)
@pytest.mark.parametrize("expert", [0, 2])
def test_one_hot_routing_gives_that_experts_map_as_the_whole_map(method, expert):
    model = make_model()
    with torch.no_grad():
        model.router[-1].bias[expert] = 1e4
    projected, mask = make_inputs()
    maps = attribute(model, projected, mask, predicted_target(model, projected, mask), method,
                     baseline=torch.randn(T, H), n_steps=8)
    others = [e for e in range(4) if e != expert]
    torch.testing.assert_close(maps.whole, maps.expert[:, expert])
    assert maps.expert[:, others].abs().max() < 1e-6 and maps.contributions[:, others].abs().max() < 1e-6
    assert maps.whole[mask].abs().sum() > 0


def test_grad_x_input_whole_map_is_that_of_the_whole_target_logit_with_routing_held(monkeypatch):
    model = make_model()
    projected, mask = make_inputs()
    target = torch.tensor([[True, False, True]] * 3)  # two labels: the mean over them
    maps = attribute(model, projected, mask, target, "grad_x_input")
    torch.testing.assert_close(maps.expert.sum(1), maps.whole)
    # Independently: freeze the router's output, differentiate the model's own combined logits.
    weights = model(projected, mask).weights.detach()
    monkeypatch.setattr(model, "route", lambda projected, mask: weights)
    x = projected.clone().requires_grad_()
    logits = model(x, mask).logits
    grad = torch.autograd.grad(((logits[:, 0] + logits[:, 2]) / 2).sum(), x)[0]
    torch.testing.assert_close(maps.whole, (grad * x).sum(-1))


def test_integrated_gradients_are_complete():
    model = make_model()
    projected, mask = make_inputs()
    baseline = torch.randn(T, H)
    target = predicted_target(model, projected, mask)
    maps = attribute(model, projected, mask, target, "integrated_gradients", baseline=baseline, n_steps=64)
    with torch.no_grad():
        out = model(projected, mask)
        at_baseline = model(baseline.expand(3, T, H), mask).expert_logits  # routing held at w(x)
    c = target.float().argmax(1)
    rows = torch.arange(3)
    difference = (out.weights * (out.expert_logits[rows, :, c] - at_baseline[rows, :, c])).sum(1)  # [B]
    torch.testing.assert_close(maps.whole.sum(1), difference, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(maps.delta.sum(1), maps.whole.sum(1) - difference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS.names)
def test_a_batch_gives_the_maps_of_its_examples_one_by_one(method):
    model = make_model()
    projected, mask = make_inputs()
    target = predicted_target(model, projected, mask)
    baseline = torch.randn(T, H)
    together = attribute(model, projected, mask, target, method, baseline=baseline, n_steps=8)
    for b in range(3):
        alone = attribute(model, projected[b : b + 1], mask[b : b + 1], target[b : b + 1], method,
                          baseline=baseline, n_steps=8)
        torch.testing.assert_close(together.expert[b : b + 1], alone.expert, atol=1e-5, rtol=1e-4)
    assert (together.expert.transpose(0, 1)[:, ~mask] == 0).all()  # padded slots


# --- faithfulness per expert, randomness, specificity --------------------------------------------------

def two_spot_experts():
    reads = [1, 6]  # expert 0 reads a token of a, expert 1 one of b
    model = SpotModel(reads, [0.7, 0.3], roster=[("uniqueness", "a"), ("uniqueness", "b")])
    projected, mask = spot_inputs(reads)
    target = predicted_target(model, projected, mask)
    return model, projected, mask, target, attribute(model, projected, mask, target, "grad_x_input")


def test_expert_maps_find_their_own_token_and_their_masking_removes_their_contribution():
    model, projected, mask, target, maps = two_spot_experts()
    assert (maps.expert[:, 0].argmax(1) == 1).all() and (maps.expert[:, 1].argmax(1) == 6).all()
    result = faithfulness(model, projected, mask, maps, torch.zeros(T, H), target, "multiclass",
                          random_repeats=3, quantity="logit")
    assert result.maps == ["whole", "expert0_uniqueness_a", "expert0_uniqueness_a",
                           "expert1_uniqueness_b", "expert1_uniqueness_b"]
    view = result.maps.index("expert0_uniqueness_a")  # the contribution view comes first
    assert result.measures[view] == "contribution"
    contribution = 0.7 * projected[:, 1, 0].numpy()
    np.testing.assert_allclose(result.identified[view, :, 0, :, 0], np.repeat(contribution[:, None], 5, 1),
                               rtol=1e-6)  # masking its top token of a removes all of it
    np.testing.assert_allclose(result.identified[view, :, 1, :, 0], 0.0, atol=1e-6)  # b is none of its business
    np.testing.assert_allclose(result.identified[view + 1, :, 0, :, 0], result.identified[view, :, 0, :, 0],
                               rtol=1e-6)  # the whole prediction loses exactly that contribution
    shares = own_modality_share(model, maps.expert.numpy(), mask.numpy())
    np.testing.assert_allclose(shares["expert0_uniqueness_a"], 1.0)
    np.testing.assert_allclose(shares["expert1_uniqueness_b"], 1.0)
    np.testing.assert_allclose(expert_divergence(maps.expert.numpy(), mask.numpy()), 1.0)  # disjoint maps
    table = result.table()
    assert len(table["map"]) == 5 * 6 * 2 * 5 and set(table) >= {"comprehensiveness", "random_sufficiency", "k"}


def test_random_control_is_reproducible_with_its_seed_and_changes_with_another():
    model, projected, mask, target, maps = two_spot_experts()

    def random_drops(seed):
        return faithfulness(model, projected, mask, maps, torch.zeros(T, H), target, "multiclass",
                            random_repeats=2, seed=seed).random

    first = random_drops(3)
    assert np.array_equal(first, random_drops(3))
    assert not np.array_equal(first, random_drops(4))


def test_js_distance_between_identical_maps_is_zero():
    maps = np.random.default_rng(0).standard_normal((4, 1, T)).repeat(3, 1)  # three identical experts
    np.testing.assert_allclose(expert_divergence(maps, np.ones((4, T), bool)), 0.0, atol=1e-7)


# --- concentration and confidence intervals ----------------------------------------------------------

def test_concentration_of_one_hot_and_uniform_maps():
    n = 7
    mask = np.array([[True] * n + [False] * 2] * 2)
    one_hot = np.zeros((2, n + 2))
    one_hot[0, 3] = -2.5  # magnitude counts, not sign
    one_hot[1] = np.r_[np.ones(n), 0, 0]
    c = concentration(one_hot, mask)
    np.testing.assert_allclose(c["entropy"], [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(c["gini"], [(n - 1) / n, 0.0], atol=1e-12)
    np.testing.assert_allclose(c["top10_mass"], [1.0, 1 / n], atol=1e-12)  # 10% of 7 tokens -> 1 token
    padded_mass = concentration(np.r_[np.ones(n), 100, 100][None], mask[:1])
    np.testing.assert_allclose(padded_mass["entropy"], [1.0])  # padded slots are not tokens


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_examples():
    rng = np.random.default_rng(0)
    small, large = bootstrap_ci(rng.normal(1.0, 1.0, 20)), bootstrap_ci(rng.normal(1.0, 1.0, 2000))
    for ci in (small, large):
        assert ci["low"] < ci["mean"] < ci["high"]
    assert large["high"] - large["low"] < (small["high"] - small["low"]) / 5  # ~ 1/sqrt(n): 10x
    assert large["low"] < 1.0 < large["high"]
    assert bootstrap_ci([1.0, 2.0, 3.0], seed=5) == bootstrap_ci([1.0, 2.0, 3.0], seed=5)


def test_seed_example_ci_on_hand_made_numbers():
    # Seeds shift every example by 0, 1, 2: per-seed means 2.5, 3.5, 4.5; per-example means 2, 3, 4, 5.
    values = np.array([[1.0, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]])
    ci = seed_example_ci(values)
    half = np.sqrt(stats.t.ppf(0.975, 2) ** 2 * 1.0 / 3 + stats.norm.ppf(0.975) ** 2 * (5 / 3) / 4)
    assert ci == pytest.approx({"mean": 3.5, "std": 1.0, "low": 3.5 - half, "high": 3.5 + half, "n": 4, "seeds": 3})
    # A NaN cell is left out of its seed's and its example's mean.
    values[0, 0] = np.nan
    ci = seed_example_ci(values)
    assert ci["mean"] == pytest.approx((3.0 + 3.5 + 4.5) / 3)
    assert ci["std"] == pytest.approx(np.std([3, 3.5, 4.5], ddof=1))
    assert ci["n"] == 4
    # One seed: the bootstrap over its examples, with no spread.
    assert seed_example_ci(values[1:2]) == bootstrap_ci(values[1]) | {"std": 0.0, "seeds": 1}
    with pytest.raises(ValueError, match="infinite"):
        seed_example_ci(np.array([[1.0, np.inf], [1.0, 2.0]]))


def test_seed_example_ci_covers_the_mean_of_a_crossed_design_where_an_example_bootstrap_does_not():
    # y[s, n] = seed effect + example effect + noise, true mean 0: 3 seeds, 64 examples, as the pipeline.
    rng = np.random.default_rng(1)
    covered = naive = 0
    for _ in range(1000):
        y = rng.normal(0, 1, (3, 1)) + rng.normal(0, 1, (1, 64)) + rng.normal(0, 0.5, (3, 64))
        ci = seed_example_ci(y)
        covered += ci["low"] <= 0 <= ci["high"]
        pooled = bootstrap_ci(y.ravel(), resamples=200)  # seeds ignored: the spread between them is missed
        naive += pooled["low"] <= 0 <= pooled["high"]
    assert 0.93 <= covered / 1000 <= 0.99 and naive / 1000 < 0.5
