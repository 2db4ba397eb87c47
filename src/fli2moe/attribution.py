"""Expert-wise token attributions (docs/design.md section 5, `attribute`).

For example b, expert e and the target labels of b (`masking.target_labels`, fixed on the input):

    y_e(x) = mean_{c in target} logit_e(x)_c,      contribution c_e(x) = w_e * y_e(x)

with the routing weights w = w(x) computed once on the input and then held constant (detached): a map
explains what an expert does with the tokens, not how the router picked it. Each method gives a score per
token slot, `expert [B, E, T]` (padded slots 0), and the whole-model map is the map of
sum_e w_e y_e(x), w held:

    whole = sum_e expert[:, e]

For `grad_x_input` and `integrated_gradients` this *is* the attribution of the whole-model target logit,
because both are linear in the function explained (gradients add up; IG integrates the same path for
every expert). Attention rollout is not linear and the experts have separate attention stacks, so there
its whole-model map is *defined* as that sum: the routing-weighted mixture of the experts' rollouts. The
dense model has E = 1 and w = 1, so whole = expert[:, 0].

Methods:
- attn_grad_rollout (default; Chefer, Gur and Wolf, CVPR 2021, rule 6), per expert, with A_l the
  attention probabilities [heads, T, T] of layer l (l = 1 the first layer applied):
      Abar_l = mean_heads ReLU(A_l * dy_e/dA_l)
      R_0 = I,    R_l = R_{l-1} + Abar_l @ R_{l-1}
  Layer l mixes the outputs of layer l - 1 (token i of its output draws on token j of its input through
  Abar_l[i, j], and on itself through the residual), so each new layer multiplies on the *left*;
  R_L[i, j] is then how much output token i draws on input token j. Token score:
      r_e[j] = mean over real query rows i of (R_L - I)[i, j],    expert[:, e] = w_e * r_e
  The identity (every token's own residual path) is the same for all tokens and is left out; it is not
  normalised into the relevance either, because the gradient-weighted attention is orders of magnitude
  smaller than 1 and a row-normalised I + Abar makes every map nearly uniform (we measured normalised
  entropy 1.000 on ENRICO that way). The gradient is that of y_e; w_e enters as the constant factor it is.
- grad_x_input: expert[b, e, t] = sum_h d c_e / d x[t, h] * x[t, h], x the projected tokens.
- integrated_gradients (captum): expert[b, e, t] = sum_h (x - x')[t, h] * int_0^1 d c_e/dx(x' + a (x - x'))[t, h] da
  with x' the masking baseline (every token removed). Completeness: sum_t expert[b, e, t] =
  c_e(x) - w_e * y_e(x') up to the returned convergence delta.

All of a batch's examples go through one forward and one backward per expert (or one for all, for the
rollout): in eval mode examples do not interact, so the gradient of the summed objective with respect to
example b's inputs is that of example b's own objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from captum.attr import IntegratedGradients
from torch import Tensor

from fli2moe.masking import evaluating, target_logit
from fli2moe.registry import Registry


@dataclass
class Attributions:
    expert: Tensor  # [B, E, T]: map of expert e's contribution w_e * y_e; padded slots 0
    whole: Tensor  # [B, T]: sum over experts, the map of the whole-model target logit (w held)
    contributions: Tensor  # [B, E]: c_e(x) = w_e * y_e(x), the quantities explained
    delta: Tensor | None = None  # [B, E]: IG convergence delta, sum_t expert - (c_e(x) - c_e(x'))

    def stacked(self) -> Tensor:
        """[B, S, T]: the whole-model map, then each expert's map when there are several (S = 1 + E, or 1)."""
        whole = self.whole[:, None]
        return whole if self.expert.shape[1] == 1 else torch.cat([whole, self.expert], 1)


class ForwardPass(NamedTuple):
    """One forward pass of a batch that a method explains: x [B, T, H] (requires grad), mask [B, T],
    target [B, C] bool, out (the model's output, with attentions when the method asks for them), weights [B, E]
    (held constant), y [B, E] = mean target logit of each expert, contributions [B, E] = weights * y."""
    model: object
    x: Tensor
    mask: Tensor
    target: Tensor
    out: object
    weights: Tensor
    y: Tensor
    contributions: Tensor


@dataclass(frozen=True)
class AttributionMethod:
    """An entry of `METHODS`: `maps(forward, baseline, n_steps, internal_batch_size)` -> (expert [B, E, T],
    convergence delta [B, E] or None); `attention`: the forward pass returns the attention probabilities;
    `baseline`: the method needs the masking baseline [T, H]."""
    maps: Callable[..., tuple[Tensor, Tensor | None]]
    attention: bool = False
    baseline: bool = False


METHODS: Registry[AttributionMethod] = Registry("attribution method")


def attribution_method(name: str, attention: bool = False, baseline: bool = False):
    """Decorator: register `maps` (see `AttributionMethod`) as the attribution method `name`."""
    def add(maps):
        METHODS.register(name)(AttributionMethod(maps, attention, baseline))
        return maps

    return add


def attribute(model, projected: Tensor, mask: Tensor, target: Tensor, method: str = "attn_grad_rollout",
              baseline: Tensor | None = None, n_steps: int = 32, internal_batch_size: int | None = None,
              batch_size: int | None = None) -> Attributions:
    """Token maps of each expert's contribution and of the whole model for a batch of examples.

    projected [B, T, H] (not modified), mask [B, T], target [B, C] bool; baseline [T, H] (the masking
    baseline) is needed by integrated_gradients only; n_steps and internal_batch_size are captum's.
    `batch_size` examples at a time (all at once when None) bound the memory of the retained graphs;
    examples do not interact, so the maps do not depend on it. Eval mode inside; the model's mode is
    restored after.
    """
    entry = METHODS[method]
    if entry.baseline and baseline is None:
        raise ValueError(f"{method} needs the masking baseline vectors [T, H]")
    parts = [_attribute_batch(model, projected[chunk], mask[chunk], target[chunk], entry, baseline, n_steps,
                              internal_batch_size)
             for chunk in torch.arange(len(projected)).split(batch_size or len(projected))]
    delta = None if parts[0].delta is None else torch.cat([p.delta for p in parts])
    return Attributions(*(torch.cat([getattr(p, name) for p in parts]) for name in ("expert", "whole", "contributions")),
                        delta)


def _attribute_batch(model, projected: Tensor, mask: Tensor, target: Tensor, method: AttributionMethod,
                     baseline: Tensor | None, n_steps: int, internal_batch_size: int | None) -> Attributions:
    x = projected.detach().requires_grad_()  # [B, T, H]
    # enable_grad: the maps are gradients even when the caller runs under no_grad.
    with evaluating(model), torch.enable_grad():
        out = model(x, mask, return_attention=method.attention)
        weights = out.weights.detach()  # [B, E], held constant
        y = target_logit(out.expert_logits, target[:, None])  # [B, E]
        contributions = weights * y
        expert, delta = method.maps(ForwardPass(model, x, mask, target, out, weights, y, contributions), baseline,
                                    n_steps, internal_batch_size)
    return Attributions(expert, expert.sum(1), contributions.detach(), delta)


@attribution_method("attn_grad_rollout", attention=True)
def _attn_grad_rollout(f: ForwardPass, baseline, n_steps, internal_batch_size) -> tuple[Tensor, None]:
    return f.weights[..., None] * _rollout_maps(f.out.attentions, f.y, f.mask), None


@attribution_method("grad_x_input")
def _grad_x_input(f: ForwardPass, baseline, n_steps, internal_batch_size) -> tuple[Tensor, None]:
    E = f.y.shape[1]
    grads = [torch.autograd.grad(f.contributions[:, e].sum(), f.x, retain_graph=e < E - 1)[0] for e in range(E)]
    return torch.stack([(g * f.x).sum(-1) for g in grads], 1).detach(), None  # [B, E, T]


@attribution_method("integrated_gradients", baseline=True)
def _integrated_gradients_maps(f: ForwardPass, baseline, n_steps, internal_batch_size) -> tuple[Tensor, Tensor]:
    return _integrated_gradients(f.model, f.x.detach(), f.mask, f.target, f.weights, baseline, n_steps,
                                 internal_batch_size)


def rollout(attentions: list[Tensor], gradients: list[Tensor], mask: Tensor) -> Tensor:
    """Token scores [B, T] of one expert from its per-layer attentions and their gradients.

    attentions, gradients: per layer, in the order the layers are applied, [B, heads, T, T] (query rows,
    key columns); mask [B, T]. Abar_l = mean_heads ReLU(A_l * G_l), R_0 = I, R_l = R_{l-1} + Abar_l R_{l-1},
    score[j] = mean over real query rows i of (R_L - I)[i, j]. Padded columns get 0: a real row never
    attends to a padded key, and padded rows carry no gradient.
    """
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T, dtype=attentions[0].dtype, device=attentions[0].device)
    R = eye.expand(B, T, T)
    for A, G in zip(attentions, gradients, strict=True):
        a_bar = (A * G).relu().mean(1)  # [B, T, T]
        R = R + a_bar @ R  # the later layer on the left
    real = mask.to(R.dtype)  # [B, T]
    return (real[:, :, None] * (R - eye)).sum(1) / real.sum(1, keepdim=True).clamp(min=1)


def _rollout_maps(attentions: list[list[Tensor]], y: Tensor, mask: Tensor) -> Tensor:
    """[B, E, T]: rollout of y_e for every expert, from one backward pass.

    Expert e's attention probabilities only reach y_e, so the gradient of sum_e y_e with respect to them
    is dy_e/dA^e for every expert at once.
    """
    flat = [a for per_expert in attentions for a in per_expert]
    grads = torch.autograd.grad(y.sum(), flat)
    L = len(attentions[0])
    return torch.stack([rollout([a.detach() for a in per_expert], grads[e * L:(e + 1) * L], mask)
                        for e, per_expert in enumerate(attentions)], 1)


def _integrated_gradients(model, x: Tensor, mask: Tensor, target: Tensor, weights: Tensor, baseline: Tensor,
                          n_steps: int, internal_batch_size: int | None) -> tuple[Tensor, Tensor]:
    """Captum IG of each contribution c_e on the path from the baseline to x: ([B, E, T], delta [B, E])."""

    def contributions(inputs: Tensor, mask: Tensor, weights: Tensor, target: Tensor) -> Tensor:
        # [N, E] along the path; the router's output is replaced by the held weights.
        return weights * target_logit(model(inputs, mask).expert_logits, target[:, None])

    ig = IntegratedGradients(contributions)
    # Padded slots of the baseline input are irrelevant: the model empties them.
    start = baseline.to(x.dtype).expand_as(x).contiguous()  # [B, T, H]
    maps, deltas = [], []
    for e in range(weights.shape[1]):
        attr, delta = ig.attribute(x, baselines=start, target=e, additional_forward_args=(mask, weights, target),
                                   n_steps=n_steps, internal_batch_size=internal_batch_size,
                                   return_convergence_delta=True)
        maps.append(attr.sum(-1))  # [B, T]
        deltas.append(delta)
    return torch.stack(maps, 1).detach(), torch.stack(deltas, 1).detach()
