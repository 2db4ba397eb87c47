"""Models: interaction losses, routing, padding, roster, dependence on every modality, attention maps,
configs. Tiny sizes (H = 8, T = 7) so the whole file runs in a few seconds on a 2-core CPU."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from fli2moe.models import fusion
from fli2moe.models import (
    DenseConfig,
    FLI2MoEConfig,
    ModalitySpec,
    build_model,
    build_roster,
    num_parameters,
    redundancy_loss,
    synergy_loss,
    uniqueness_loss,
)

MODALITIES = [ModalitySpec("a", dim=5, tokens=3), ModalitySpec("b", dim=4, tokens=4)]
FUSION = dict(modalities=MODALITIES, num_classes=3, hidden=8, layers=2, heads=2, mlp_ratio=2, dropout=0.0)
LENGTHS = {"a": [3, 2, 1, 3], "b": [4, 1, 3, 2]}  # real tokens per example; the rest is padding
# "<registered name>:<variant>": a registered model with the options of VARIANTS[variant]
VARIANTS = {"i2moe": dict(router_input="encoder", router_activation="relu", router_dropout=0.5, expert_init="shared")}
MODEL_NAMES = ["fl_i2moe", "moe_plain", "dense", "fl_i2moe:i2moe"]


pytestmark = pytest.mark.usefixtures("one_thread")


def config_for(name: str, **overrides):
    name, _, variant = name.partition(":")
    if name == "dense":
        return DenseConfig(**{**FUSION, **overrides})
    return FLI2MoEConfig(**{**FUSION, "num_experts": 4, "router_hidden": 8, **VARIANTS.get(variant, {}), **overrides})


def make_model(name: str, **overrides):
    torch.manual_seed(0)
    return build_model(name.partition(":")[0], config_for(name, **overrides)).eval()


def make_batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    tokens = {m.name: torch.randn(4, m.tokens, m.dim, generator=g) for m in MODALITIES}
    mask = {m.name: torch.arange(m.tokens) < torch.tensor(LENGTHS[m.name])[:, None] for m in MODALITIES}
    return tokens, mask


# --- interaction losses on hand-made tensors ---------------------------------------------------------

def test_identical_outputs_give_redundancy_zero_and_synergy_one():
    full = torch.randn(5, 6)
    removed = full.expand(2, 5, 6)
    assert redundancy_loss(full, removed).item() == pytest.approx(0.0, abs=1e-6)
    assert synergy_loss(full, removed).item() == pytest.approx(1.0, abs=1e-6)


def test_opposite_outputs_give_synergy_minus_one():
    full = torch.randn(5, 6)
    removed = -full.expand(2, 5, 6)
    assert synergy_loss(full, removed).item() == pytest.approx(-1.0, abs=1e-6)
    assert redundancy_loss(full, removed).item() == pytest.approx(2.0, abs=1e-6)


def along_x(distances: list[list[float]]) -> torch.Tensor:
    """[M, B] distances -> [M, B, 2] vectors at those distances from the origin."""
    d = torch.tensor(distances)
    return torch.stack([d, torch.zeros_like(d)], -1)


def test_uniqueness_loss_is_zero_when_the_margin_holds():
    full = torch.zeros(2, 2)
    removed = along_x([[0.5, 0.2], [3.0, 2.5], [1.0, 1.4]])  # own modality 1 moves the output most
    assert uniqueness_loss(full, removed, own=1).item() == 0.0


def test_uniqueness_loss_matches_hand_computation():
    full = torch.zeros(2, 2)
    removed = along_x([[1.0, 1.0], [0.5, 3.0], [2.0, 0.0]])
    # j=0: max(0, 1 - 0.5 + 1) = 1.5, max(0, 1 - 3 + 1) = 0; j=2: 2 - 0.5 + 1 = 2.5, max(0, 0 - 3 + 1) = 0
    assert uniqueness_loss(full, removed, own=1).item() == pytest.approx((1.5 + 0 + 2.5 + 0) / 4)


# --- routing -----------------------------------------------------------------------------------------

def test_routing_weights_are_a_distribution_and_mix_the_expert_logits():
    model = make_model("fl_i2moe")
    out = model.forward_tokens(*make_batch())
    assert out.weights.shape == (4, 4)
    assert (out.weights >= 0).all()
    torch.testing.assert_close(out.weights.sum(1), torch.ones(4))
    torch.testing.assert_close(out.logits, (out.weights[..., None] * out.expert_logits).sum(1))


@pytest.mark.parametrize("expert", [0, 3])
def test_one_hot_routing_predicts_that_experts_logits(expert):
    model = make_model("fl_i2moe")
    with torch.no_grad():
        model.router[-1].bias[expert] = 1e4
    out = model.forward_tokens(*make_batch())
    torch.testing.assert_close(out.weights[:, expert], torch.ones(4))
    torch.testing.assert_close(out.logits, out.expert_logits[:, expert])
    assert not torch.allclose(out.logits, out.expert_logits[:, (expert + 1) % 4])


# --- padding -----------------------------------------------------------------------------------------

def assert_outputs_equal(a, b):
    for key in ("logits", "expert_logits", "latents", "weights"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    for maps_a, maps_b in zip(a.attentions, b.attentions, strict=True):
        for layer_a, layer_b in zip(maps_a, maps_b, strict=True):
            assert torch.equal(layer_a, layer_b)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_padded_tokens_change_no_output(name):
    model = make_model(name)
    tokens, mask = make_batch()
    reference = model.forward_tokens(tokens, mask, return_attention=True)

    garbage = {m: torch.where(mask[m][..., None], x, 100 * torch.randn_like(x)) for m, x in tokens.items()}
    assert_outputs_equal(reference, model.forward_tokens(garbage, mask, return_attention=True))

    projected, mask_cat = model.project(tokens), model.concat_mask(mask)
    projected = torch.where(mask_cat[..., None], projected, 100 * torch.randn_like(projected))
    assert_outputs_equal(reference, model(projected, mask_cat, return_attention=True))

    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    loss = model.interaction_loss(model.project(tokens), mask_cat, reference, generator=g1)
    assert torch.equal(loss, model.interaction_loss(projected, mask_cat, reference, generator=g2))


@pytest.mark.parametrize("name", ["fl_i2moe", "dense", "fl_i2moe:i2moe"])
def test_an_example_without_real_tokens_gives_no_nan(name):
    model = make_model(name)
    tokens, mask = make_batch()
    mask = {m: v.clone() for m, v in mask.items()}
    for v in mask.values():
        v[2] = False
    out = model.forward_tokens(tokens, mask, return_attention=True)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.latents).all()
    assert all(torch.isfinite(a).all() and (a[2] == 0).all() for maps in out.attentions for a in maps)


# --- roster ------------------------------------------------------------------------------------------

def test_too_few_experts_is_refused_with_the_key_name():
    with pytest.raises(ValueError, match=r"moe\.num_experts.*at least M \+ 2 = 4"):
        config_for("fl_i2moe", num_experts=3)


def test_roster_for_m_plus_two_and_five_experts():
    paper = [("uniqueness", "a"), ("uniqueness", "b"), ("synergy", None), ("redundancy", None)]
    assert make_model("fl_i2moe").roster == paper
    model = make_model("fl_i2moe", num_experts=5)
    assert model.roster == paper + [("synergy", None)]
    assert len(model.experts) == 5
    assert build_roster(["x", "y", "z"], 6) == [
        ("uniqueness", "x"), ("uniqueness", "y"), ("uniqueness", "z"),
        ("synergy", None), ("redundancy", None), ("synergy", None),
    ]


# --- every expert uses every modality ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["fl_i2moe", "dense", "fl_i2moe:i2moe"])
def test_every_expert_depends_on_every_modality(name):
    model = make_model(name)
    tokens, mask = make_batch()
    tokens = {m: x.requires_grad_() for m, x in tokens.items()}
    out = model.forward_tokens(tokens, mask)
    for e in range(out.expert_logits.shape[1]):
        grads = torch.autograd.grad(out.expert_logits[:, e].sum(), list(tokens.values()), retain_graph=True)
        for m, grad in zip(tokens, grads):
            assert grad[mask[m]].abs().sum() > 0, (e, m)
            assert (grad[~mask[m]] == 0).all(), (e, m)


# --- attention maps ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fl_i2moe", "dense"])
def test_attention_maps_are_row_stochastic_over_real_keys_and_differentiable(name):
    model = make_model(name)
    tokens, mask = make_batch()
    out = model.forward_tokens(tokens, mask, return_attention=True)
    mask_cat = model.concat_mask(mask)
    assert len(out.attentions) == out.expert_logits.shape[1]
    maps = [a for per_expert in out.attentions for a in per_expert]
    assert all(len(per_expert) == 2 for per_expert in out.attentions)
    for a in maps:
        assert a.shape == (4, 2, 7, 7)
        torch.testing.assert_close(a.sum(-1), torch.ones(4, 2, 7))
        assert (a.masked_select(~mask_cat[:, None, None, :]) == 0).all()
    grads = torch.autograd.grad(out.logits.sum(), maps)
    assert all(g.abs().sum() > 0 for g in grads)
    assert model.forward_tokens(tokens, mask).attentions is None


# --- interaction loss --------------------------------------------------------------------------------

@pytest.mark.parametrize("perturb", ["gaussian", "zero", "mean"])
@pytest.mark.parametrize("interaction_on", ["latent", "logits"])
def test_interaction_loss_is_differentiable(perturb, interaction_on):
    model = make_model("fl_i2moe", perturb=perturb, interaction_on=interaction_on).train()
    tokens, mask = make_batch()
    projected, mask_cat = model.project(tokens), model.concat_mask(mask)
    loss = model.interaction_loss(projected, mask_cat, model(projected, mask_cat))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    for part in (model.front, *model.experts):
        assert sum(p.grad.abs().sum() for p in part.parameters() if p.grad is not None) > 0


def test_interaction_loss_runs_all_experts_in_one_batched_pass_and_nothing_for_moe_plain(monkeypatch):
    """One `run_experts` call over the K experts on the M*B perturbed rows (fl_i2moe); none without losses."""
    tokens, mask = make_batch()
    calls = []
    batched = fusion.run_experts
    monkeypatch.setattr(fusion, "run_experts",
                        lambda experts, x, *args: calls.append((len(experts), len(x))) or batched(experts, x, *args))
    for name, expected in (("fl_i2moe", [(4, 2 * 4)]), ("moe_plain", []), ("dense", [])):
        model = make_model(name)
        projected, mask_cat = model.project(tokens), model.concat_mask(mask)
        out = model(projected, mask_cat)
        calls.clear()
        loss = model.interaction_loss(projected, mask_cat, out)
        assert calls == expected, name
        assert (loss == 0).item() == (not expected), name
        assert model.lambda_int == (0.5 if name == "fl_i2moe" else 0.0)


def test_gaussian_removal_is_seeded_and_replaces_only_that_modality():
    model = make_model("fl_i2moe")
    tokens, mask = make_batch()
    projected, mask_cat = model.project(tokens), model.concat_mask(mask)
    s = model.modality_slices["b"]
    a = model.remove_modality(projected, mask_cat, 1, torch.Generator().manual_seed(3))
    b = model.remove_modality(projected, mask_cat, 1, torch.Generator().manual_seed(3))
    c = model.remove_modality(projected, mask_cat, 1, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a[:, s], c[:, s])
    assert torch.equal(a[:, : s.start], projected[:, : s.start])
    assert not torch.allclose(a[:, s], projected[:, s])


def test_gaussian_removal_matches_the_real_tokens_feature_statistics():
    model = make_model("fl_i2moe")
    g = torch.Generator().manual_seed(0)
    scale, shift = torch.arange(1.0, 9.0), -torch.arange(8.0)  # per feature
    mask_cat = torch.rand(256, 7, generator=g) < 0.7
    projected = torch.where(mask_cat[..., None], shift + scale * torch.randn(256, 7, 8, generator=g), 1000.0)
    s = model.modality_slices["b"]
    fill = model.remove_modality(projected, mask_cat, 1, g)[:, s].flatten(0, 1)  # [256 * 4, 8]
    assert ((fill.mean(0) - shift).abs() < 0.2 * scale).all()
    torch.testing.assert_close(fill.std(0), scale, atol=0, rtol=0.1)


def test_mean_and_zero_removal_values():
    model = make_model("fl_i2moe", perturb="mean")
    tokens, mask = make_batch()
    projected, mask_cat = model.project(tokens), model.concat_mask(mask)
    s = model.modality_slices["a"]
    removed = model.remove_modality(projected, mask_cat, 0)
    expected = projected[:, s][mask_cat[:, s]].mean(0)
    torch.testing.assert_close(removed[:, s], expected.expand(4, 3, 8))
    # The replacement is a reference input: no gradient flows back through it.
    (grad,) = torch.autograd.grad(removed[:, s].sum() + removed[:, s.stop :].sum(), projected)
    assert (grad[:, s] == 0).all() and (grad[:, s.stop :] == 1).all()
    assert torch.equal(removed[:, s.stop :], projected[:, s.stop :])
    model.config.perturb = "zero"
    assert (model.remove_modality(projected, mask_cat, 0)[:, s] == 0).all()


# --- configs and build -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_round_trips_through_json_and_weights_through_safetensors(name, tmp_path):
    model = make_model(name)
    saved = json.loads(json.dumps(model.config.to_dict(), sort_keys=True))
    assert type(model.config).from_dict(saved) == model.config
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    torch.manual_seed(123)
    reloaded = build_model(name.partition(":")[0], saved).eval()
    reloaded.load_state_dict(load_file(tmp_path / "model.safetensors"))
    tokens, mask = make_batch()
    assert torch.equal(model.forward_tokens(tokens, mask).logits, reloaded.forward_tokens(tokens, mask).logits)


def test_same_seed_gives_the_same_model():
    a, b = make_model("fl_i2moe"), make_model("fl_i2moe")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_moe_plain_forces_lambda_zero_without_touching_the_config():
    config = config_for("fl_i2moe", lambda_int=0.7)
    assert build_model("moe_plain", config).config.lambda_int == 0.0
    assert config.lambda_int == 0.7


@pytest.mark.parametrize(("overrides", "key"), [
    (dict(hidden=10, heads=4), "hidden"),
    (dict(layers=0), "layers"),
    (dict(dropout=1.0), "dropout"),
    (dict(perturb="blur"), "moe.perturb"),
    (dict(interaction_on="z"), "moe.interaction_on"),
    (dict(tau=0.0), "moe.tau"),
    (dict(lambda_int=-1.0), "moe.lambda_int"),
    (dict(router_input="tokens"), "moe.router_input"),
    (dict(router_activation="tanh"), "moe.router_activation"),
    (dict(router_dropout=1.0), "moe.router_dropout"),
    (dict(expert_init="copied"), "moe.expert_init"),
    (dict(modalities=[ModalitySpec("a", 5, 0), ModalitySpec("b", 4, 4)]), r"modalities\[0\]\.tokens"),
])
def test_invalid_configs_name_the_field(overrides, key):
    with pytest.raises(ValueError, match=key):
        config_for("fl_i2moe", **overrides)


def test_build_model_refuses_unknown_names_keys_and_config_types():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("sparse", config_for("dense"))
    with pytest.raises(ValueError, match="unknown config keys"):
        build_model("dense", {**config_for("dense").to_dict(), "num_experts": 4})
    with pytest.raises(TypeError, match="FLI2MoEConfig"):
        build_model("fl_i2moe", config_for("dense"))


def test_dense_has_one_expert_with_weight_one_and_fewer_parameters():
    model = make_model("dense")
    out = model.forward_tokens(*make_batch())
    assert out.expert_logits.shape == (4, 1, 3) and out.latents.shape == (4, 1, 16)
    assert torch.equal(out.weights, torch.ones(4, 1))
    assert torch.equal(out.logits, out.expert_logits[:, 0])
    assert model.roster == [("dense", None)]
    moe = make_model("fl_i2moe")
    expert = num_parameters(moe.experts[0])
    assert num_parameters(model) == num_parameters(model.front) + expert
    assert num_parameters(moe) == num_parameters(moe.front) + 4 * expert + num_parameters(moe.router)


# --- I2MoE-faithful options (issue 16) ----------------------------------------------------------------

def expert_states(model) -> list[dict]:
    return [expert.state_dict() for expert in model.experts]


def test_shared_init_gives_identical_experts_before_the_first_step_and_independent_does_not():
    shared, independent = expert_states(make_model("fl_i2moe", expert_init="shared")), \
        expert_states(make_model("fl_i2moe"))
    assert all(torch.equal(shared[0][k], other[k]) for other in shared[1:] for k in shared[0])
    assert all(not torch.equal(independent[0][k], other[k]) for other in independent[1:]
               for k in independent[0] if k.endswith("weight") and "ln" not in k)
    # copies, not one shared module: a step moves each expert by its own gradient
    model = make_model("fl_i2moe", expert_init="shared").train()
    tokens, mask = make_batch()
    projected, mask_cat = model.project(tokens), model.concat_mask(mask)
    out = model(projected, mask_cat)
    (out.logits.logsumexp(-1).mean() + model.interaction_loss(projected, mask_cat, out)).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    after = expert_states(model)
    assert not torch.equal(after[0]["head.weight"], after[2]["head.weight"])


def i2moe_routing(model, tokens: dict, mask: dict) -> torch.Tensor:
    """I2MoE's MLPReWeighting written out on the raw encoder tokens: softmax(W2 act(W1 concat_m mean_m x + b1)
    + b2) / tau), W1 the side maps side by side (the first layer of an MLP over the concatenated means)."""
    means = [(tokens[m].masked_fill(~mask[m][..., None], 0).sum(1) / mask[m].sum(1, keepdim=True).clamp(min=1))
             for m in model.config.modality_names]  # M x [B, D_m]
    w1 = torch.cat([side.weight for side in model.front.side_projections], 1)  # [R, sum D_m]
    hidden = model.router[1](torch.cat(means, 1) @ w1.T + model.router_bias)
    return torch.softmax(model.router[2](hidden) / model.config.tau, -1)


def test_encoder_router_is_i2moe_mlp_on_the_encoder_token_means_and_ignores_the_projection():
    model = make_model("fl_i2moe:i2moe")
    tokens, mask = make_batch()
    before = model.forward_tokens(tokens, mask)
    weights = before.weights
    torch.testing.assert_close(weights, i2moe_routing(model, tokens, mask), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        for projection in model.front.projections:  # the experts' projection: the router must not read it
            projection.weight.mul_(-3.0).add_(1.0)
            projection.bias.add_(2.0)
    moved = model.forward_tokens(tokens, mask)
    assert torch.equal(moved.weights, weights)
    assert not torch.allclose(moved.expert_logits, before.expert_logits)  # while the experts do read it
    projected_router = make_model("fl_i2moe")
    before = projected_router.forward_tokens(tokens, mask).weights
    with torch.no_grad():
        projected_router.front.projections[0].weight.mul_(-3.0)
    assert not torch.allclose(projected_router.forward_tokens(tokens, mask).weights, before)


@pytest.mark.parametrize("baseline", ["mean", "zero"])
def test_a_removed_token_is_gone_for_the_encoder_router_too(baseline):
    """The explanations' removal operator on [expert | side] channels = the token replaced, for the router, by
    its modality's mean encoder token over the split (baseline mean) or by the zero token (baseline zero)."""
    from fli2moe.features import SplitTensors
    from fli2moe.masking import baseline_vectors, remove_tokens

    model = make_model("fl_i2moe:i2moe")
    tokens, mask = make_batch()
    split = SplitTensors(tokens, mask, torch.zeros(4, dtype=torch.long))
    base = baseline_vectors(model, split, baseline)  # [T, W]
    assert base.shape == (7, model.front.width) and model.front.width == 8 + 8
    keep = torch.rand(4, 7, generator=torch.Generator().manual_seed(3)) < 0.5
    projected, mask_cat = model.project(tokens), model.concat_mask(mask)
    weights = model(remove_tokens(projected, keep, base, mask_cat), mask_cat).weights
    replaced = {}
    for m, s in model.modality_slices.items():
        if baseline == "mean":
            fill = tokens[m][mask[m]].mean(0)  # [D_m]: the mean real encoder token of modality m
        else:
            fill = torch.zeros(tokens[m].shape[-1])
        replaced[m] = torch.where(keep[:, s, None] | ~mask[m][..., None], tokens[m], fill)
    torch.testing.assert_close(weights, i2moe_routing(model, replaced, mask), rtol=1e-5, atol=1e-6)


def test_router_dropout_is_on_in_training_and_off_in_eval():
    model = make_model("fl_i2moe", router_dropout=0.5)
    reference = make_model("fl_i2moe")  # same seed, same weights, no router dropout
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    tokens, mask = make_batch()
    assert torch.equal(model.forward_tokens(tokens, mask).weights, reference.forward_tokens(tokens, mask).weights)
    model.train()  # FUSION has dropout 0: only the router's dropout can make two passes differ
    torch.manual_seed(1)
    first = model.forward_tokens(tokens, mask).weights
    assert not torch.allclose(first, model.forward_tokens(tokens, mask).weights)
    assert not torch.allclose(first, reference.forward_tokens(tokens, mask).weights)


def test_relu_router_differs_from_gelu_only_in_its_activation():
    relu, gelu = make_model("fl_i2moe", router_activation="relu"), make_model("fl_i2moe")
    assert isinstance(relu.router[1], torch.nn.ReLU) and isinstance(gelu.router[1], torch.nn.GELU)
    assert all(torch.equal(a, b) for a, b in zip(relu.state_dict().values(), gelu.state_dict().values()))
    tokens, mask = make_batch()
    assert not torch.equal(relu.forward_tokens(tokens, mask).weights, gelu.forward_tokens(tokens, mask).weights)
