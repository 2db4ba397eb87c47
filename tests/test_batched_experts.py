"""The batched experts (`fusion.run_experts`, issue 15) against the per-expert computation they replaced
(tests/reference_fusion.py): same outputs, routing, interaction losses and gradients within 1e-5 in
float32, the same dropout masks from the same seed, and weights saved before still loading."""

from __future__ import annotations

import pytest
import torch

from fli2moe.models import FLI2MoEConfig, DenseConfig, ModalitySpec, build_model
from reference_fusion import per_expert_reference

pytestmark = pytest.mark.usefixtures("one_thread")

MODALITIES = [ModalitySpec("a", dim=5, tokens=3), ModalitySpec("b", dim=4, tokens=4)]
FUSION = dict(modalities=MODALITIES, num_classes=3, hidden=8, layers=2, heads=2, mlp_ratio=2)
LENGTHS = {"a": [3, 2, 1, 3, 0], "b": [4, 1, 3, 2, 0]}  # the last example has no real token at all
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def make_model(name: str, dropout: float = 0.0, **moe):
    torch.manual_seed(0)
    if name == "dense":
        return build_model(name, DenseConfig(**FUSION, dropout=dropout))
    return build_model(name, FLI2MoEConfig(**FUSION, dropout=dropout, num_experts=5, router_hidden=8, **moe))


def make_batch():
    g = torch.Generator().manual_seed(1)
    tokens = {m.name: torch.randn(5, m.tokens, m.dim, generator=g) for m in MODALITIES}
    mask = {m.name: torch.arange(m.tokens) < torch.tensor(LENGTHS[m.name])[:, None] for m in MODALITIES}
    return tokens, mask


def training_step(model, seed: int):
    """Output, interaction loss and parameter gradients of one training-mode step from global seed `seed`."""
    tokens, mask = make_batch()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    projected, mask_cat = model.project(tokens), model.concat_mask(mask)
    out = model(projected, mask_cat)
    loss_int = model.interaction_loss(projected, mask_cat, out, generator=torch.Generator().manual_seed(seed + 1))
    (out.logits.square().mean() + model.lambda_int * loss_int).backward()
    return out, loss_int, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_step(batched, reference):
    (out, loss, grads), (ref_out, ref_loss, ref_grads) = batched, reference
    for field in ("logits", "expert_logits", "latents", "weights"):
        torch.testing.assert_close(getattr(out, field), getattr(ref_out, field), **TOLERANCE, msg=field)
    torch.testing.assert_close(loss, ref_loss, **TOLERANCE)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], **TOLERANCE, msg=name)


@pytest.mark.parametrize("perturb", ["gaussian", "zero", "mean"])
@pytest.mark.parametrize("interaction_on", ["latent", "logits"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_batched_experts_equal_the_per_expert_reference(perturb, interaction_on, dropout):
    """Training mode, so that with dropout > 0 the same seed must give the same dropout masks too."""
    model = make_model("fl_i2moe", dropout, perturb=perturb, interaction_on=interaction_on).train()
    batched = training_step(model, seed=7)
    with per_expert_reference():
        reference = training_step(model, seed=7)
    assert_same_step(batched, reference)
    assert batched[1] > 0 and torch.isfinite(batched[0].logits).all()


@pytest.mark.parametrize("name", ["dense", "moe_plain"])
def test_dense_and_moe_plain_equal_the_reference(name):
    model = make_model(name, dropout=0.3).train()
    batched = training_step(model, seed=3)
    with per_expert_reference():
        reference = training_step(model, seed=3)
    assert_same_step(batched, reference)


def test_another_seed_draws_other_dropout_masks():
    """The check above could pass with dropout switched off: two seeds must differ."""
    model = make_model("fl_i2moe", dropout=0.3).train()
    a, b = training_step(model, seed=7)[0].logits, training_step(model, seed=8)[0].logits
    assert not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("name", ["fl_i2moe", "dense"])
def test_attention_maps_and_their_gradients_equal_the_reference(name):
    """Attribution differentiates the target logit with respect to every expert's attention maps."""
    model = make_model(name).eval()
    tokens, mask = make_batch()

    def maps_and_gradients():
        out = model.forward_tokens(tokens, mask, return_attention=True)
        flat = [a for per_expert in out.attentions for a in per_expert]
        return flat, torch.autograd.grad(out.logits[:, 0].sum(), flat)

    maps, grads = maps_and_gradients()
    with per_expert_reference():
        ref_maps, ref_grads = maps_and_gradients()
    assert len(maps) == len(ref_maps) == len(model.roster) * FUSION["layers"]
    for a, b in zip(maps + list(grads), ref_maps + list(ref_grads)):
        torch.testing.assert_close(a, b, **TOLERANCE)


def test_eval_outputs_are_the_same_with_and_without_attention_maps():
    """Fused attention when no map is asked for, written-out attention when one is: the same outputs."""
    model = make_model("fl_i2moe").eval()
    tokens, mask = make_batch()
    with torch.no_grad():
        fused, written = model.forward_tokens(tokens, mask), model.forward_tokens(tokens, mask, return_attention=True)
    torch.testing.assert_close(fused.logits, written.logits, **TOLERANCE)
    torch.testing.assert_close(fused.latents, written.latents, **TOLERANCE)


def test_weights_keep_their_names_so_saved_checkpoints_load():
    """The batched experts read each expert's own parameters: the state dict has the names it always had."""
    model = make_model("fl_i2moe")
    expert = {"blocks.0.ln_attn.weight", "blocks.0.ln_attn.bias", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
              "blocks.0.attn.out.weight", "blocks.0.attn.out.bias", "blocks.0.ln_mlp.weight", "blocks.0.ln_mlp.bias",
              "blocks.0.mlp.0.weight", "blocks.0.mlp.0.bias", "blocks.0.mlp.2.weight", "blocks.0.mlp.2.bias"}
    expert |= {name.replace("blocks.0", "blocks.1") for name in expert}
    expert |= {"ln_final.weight", "ln_final.bias", "head.weight", "head.bias"}
    names = set(model.state_dict())
    assert {n for n in names if n.startswith("experts.")} == {f"experts.{e}.{n}" for e in range(5) for n in expert}
    assert {n for n in names if not n.startswith("experts.")} == {
        "front.projections.0.weight", "front.projections.0.bias", "front.projections.1.weight",
        "front.projections.1.bias", "front.modality_embedding.weight", "front.position_embedding",
        "router.0.weight", "router.0.bias", "router.2.weight", "router.2.bias"}

