"""Shared parts of the multimodal models: modality specs, the base config, the token front, the fusion
expert and the model output.

Both models are built from these pieces: one `TokenFront` per model, shared by all of its experts (so
that replacing a *projected* token vector with a baseline removes that token for every expert at once,
which is the single masking operator the explanations use), and one (`dense.py`) or K (`fl_i2moe.py`)
`FusionExpert`s.

Shape letters: B batch, M modalities, T_m token slots of modality m, T = sum_m T_m (modalities
concatenated in config order), D_m input feature size, H hidden size, W width of a projected token
(`TokenFront.width`: H, plus the side channels of a router that reads encoder tokens), C classes, E experts.
Masks are bool, True = real token, False = padding; padding never changes any output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fli2moe.registry import Registry


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    dim: int  # D_m: feature size of the frozen encoder's tokens
    tokens: int  # T_m: number of token slots (shorter inputs are padded, mask False)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class FusionConfig:
    """Architecture of the token front and of one fusion expert (the dense baseline's whole config)."""

    modalities: list[ModalitySpec]
    num_classes: int
    hidden: int = 64  # H
    layers: int = 2  # L
    heads: int = 4
    mlp_ratio: int = 2  # MLP width = mlp_ratio * H
    dropout: float = 0.1

    def __post_init__(self) -> None:
        # Dicts come back from JSON; accept them so that from_dict(to_dict(c)) == c.
        self.modalities = [m if isinstance(m, ModalitySpec) else ModalitySpec(**m) for m in self.modalities]
        require(len(self.modalities) > 0, "modalities must not be empty")
        names = [m.name for m in self.modalities]
        require(len(set(names)) == len(names), f"modalities: names must be unique, got {names}")
        for i, m in enumerate(self.modalities):
            for key in ("dim", "tokens"):
                value = getattr(m, key)
                require(is_positive_int(value), f"modalities[{i}].{key} must be a positive integer, got {value!r}")
        for key in ("num_classes", "hidden", "layers", "heads", "mlp_ratio"):
            value = getattr(self, key)
            require(is_positive_int(value), f"{key} must be a positive integer, got {value!r}")
        require(self.hidden % self.heads == 0,
                 f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    @property
    def num_tokens(self) -> int:
        return sum(m.tokens for m in self.modalities)

    @property
    def modality_slices(self) -> dict[str, slice]:
        """The slice of the concatenated T axis that holds each modality, in config order."""
        slices, start = {}, 0
        for m in self.modalities:
            slices[m.name] = slice(start, start + m.tokens)
            start += m.tokens
        return slices

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        require(not unknown, f"{cls.__name__}: unknown config keys {unknown}")
        return cls(**data)


def masked_modality_mean(x: Tensor, mask: Tensor, slices: list[slice]) -> Tensor:
    """Mean of the real tokens of each modality: x [B, T, H], mask [B, T] -> [B, M, H].

    A modality with no real token gets the zero vector. masked_fill (not a product with the mask)
    so that even non-finite padded vectors cannot leak in.
    """
    means = []
    for s in slices:
        keep = mask[:, s, None]  # [B, T_m, 1]
        total = x[:, s].masked_fill(~keep, 0.0).sum(1)  # [B, H]
        means.append(total / keep.sum(1).clamp(min=1))
    return torch.stack(means, 1)


class TokenFront(nn.Module):
    """Per-modality projection D_m -> H, then learned modality and position embeddings.

    Split in two steps (`project`, `embed`) because explanations replace projected vectors with a
    baseline *before* the embeddings are added: a removed token keeps its position and modality.

    A model whose router reads the encoder tokens themselves (FL-I2MoE with `moe.router_input: encoder`)
    asks for `side` more channels: each token's vector is then [H expert channels | side channels], the side
    ones a separate linear map of the encoder token (no bias) that only the router reads. The explanations'
    single removal operator replaces the whole vector, so a removed token is gone for the router too.
    """

    def __init__(self, config: FusionConfig, side: int = 0, side_fan_in: int | None = None):
        super().__init__()
        self.modalities = list(config.modalities)
        self.hidden = config.hidden
        self.width = config.hidden + side  # W: channels of a projected token
        self.projections = nn.ModuleList(nn.Linear(m.dim, config.hidden) for m in config.modalities)
        self.side_projections = nn.ModuleList(nn.Linear(m.dim, side, bias=False) for m in config.modalities) \
            if side else None
        if side and side_fan_in is not None:
            # nn.Linear's own initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for the layer these maps are
            # blocks of (the router's first layer over the concatenated modality means, fan_in = sum_m D_m).
            for projection in self.side_projections:
                nn.init.uniform_(projection.weight, -side_fan_in ** -0.5, side_fan_in ** -0.5)
        self.modality_embedding = nn.Embedding(len(config.modalities), config.hidden)
        # One row per token slot, i.e. T_m positions per modality, concatenated.
        self.position_embedding = nn.Parameter(torch.zeros(config.num_tokens, config.hidden))
        sizes = torch.tensor([m.tokens for m in config.modalities])
        # Derived from the config, so not saved with the weights.
        self.register_buffer("modality_ids", torch.repeat_interleave(torch.arange(len(sizes)), sizes),
                             persistent=False)  # [T]
        nn.init.normal_(self.modality_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)

    def project(self, tokens: dict[str, Tensor]) -> Tensor:
        """tokens[m] [B, T_m, D_m] (any float dtype, e.g. float16 from the feature files) -> [B, T, W]."""
        projected = []
        for m, (spec, projection) in enumerate(zip(self.modalities, self.projections)):
            if spec.name not in tokens:
                raise KeyError(f"tokens: modality {spec.name!r} is missing (have {sorted(tokens)})")
            x = tokens[spec.name]
            if x.dim() != 3 or x.shape[1:] != (spec.tokens, spec.dim):
                raise ValueError(f"tokens[{spec.name!r}]: expected [B, {spec.tokens}, {spec.dim}], "
                                 f"got {list(x.shape)}")
            x = x.to(projection.weight.dtype)
            projected.append(projection(x) if self.side_projections is None
                             else torch.cat([projection(x), self.side_projections[m](x)], -1))
        return torch.cat(projected, 1)

    def concat_mask(self, mask: dict[str, Tensor]) -> Tensor:
        """mask[m] [B, T_m] -> [B, T] bool, in config order."""
        return torch.cat([mask[spec.name].bool() for spec in self.modalities], 1)

    def embed(self, projected: Tensor, mask: Tensor) -> Tensor:
        """projected [B, T, W], mask [B, T] -> [B, T, H]: the expert channels with modality and position
        embeddings added.

        Padded slots are emptied first, so that nothing computed from them (not even the attention
        rows of padded queries) depends on what the padding holds.
        """
        content = projected[..., : self.hidden].masked_fill(~mask[..., None], 0.0)  # [B, T, H]
        return content + self.position_embedding + self.modality_embedding(self.modality_ids)


class SelfAttention(nn.Module):
    """The parameters of one expert's multi-head self-attention (computed by `run_experts`)."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.out = nn.Linear(config.hidden, config.hidden)


class Block(nn.Module):
    """The parameters of one pre-LN Transformer layer with true residuals (computed by `run_experts`)."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.hidden)
        self.attn = SelfAttention(config)
        self.ln_mlp = nn.LayerNorm(config.hidden)
        # A Sequential (Linear, GELU, Linear) so that the weights keep the names mlp.0 and mlp.2 of saved models.
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden, config.mlp_ratio * config.hidden),
            nn.GELU(),
            nn.Linear(config.mlp_ratio * config.hidden, config.hidden),
        )


class ExpertOutput(NamedTuple):
    logits: Tensor  # [B, E, C]
    latents: Tensor  # [B, E, M*H]
    attentions: list[list[Tensor]] | None  # [expert][layer] -> [B, heads, T, T]


class FusionExpert(nn.Module):
    """L Transformer layers over the tokens of all modalities, final LN, masked mean-pool per modality,
    concatenation to the latent z [B, M*H], linear head to logits [B, C].

    An expert holds its parameters; `run_experts` computes any number of experts at once, so a model with
    K experts calls it once (calling one expert computes it alone, E = 1).
    """

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.slices = list(config.modality_slices.values())
        # On the residual branches only: the attention probabilities returned for attribution are exactly
        # the ones that mixed the values.
        self.dropout = config.dropout
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(config.hidden)
        self.head = nn.Linear(len(config.modalities) * config.hidden, config.num_classes)

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> ExpertOutput:
        """x [B, T, H] (embedded tokens), mask [B, T] -> this expert's `ExpertOutput` (E = 1)."""
        return run_experts([self], x, mask, return_attention)


def run_experts(experts: list[FusionExpert], x: Tensor, mask: Tensor, return_attention: bool = False) -> ExpertOutput:
    """E fusion experts of one config on the same embedded tokens, as one batched computation.

    x [B, T, H], mask [B, T] -> ExpertOutput(logits [B, E, C], latents [B, E, M*H], attentions [E][L] of
    [B, heads, T, T] when asked for). Each expert's weights are stacked along a leading expert axis, so every
    layer is a few batched matmuls over [E, B, T, H] instead of E sequences of small ones (the gradients flow
    back to each expert's own parameters through the stacking). Attention is PyTorch's fused
    `scaled_dot_product_attention` unless the probabilities are asked for; then they are written out and
    stay in the autograd graph, one tensor per expert and layer. In training mode the residual dropout masks
    are drawn in the order that running the experts one after another draws them (expert by expert, layer
    by layer), so that a seed gives the same masks as the per-expert computation
    (tests/test_batched_experts.py checks both against tests/reference_fusion.py).
    """
    first = experts[0]
    E, (B, T, H), heads = len(experts), x.shape, first.blocks[0].attn.heads

    def stacked(name: str) -> Tensor:  # [E, *shape of the parameter]; a view, not a copy, for one expert
        parameters = [expert.get_parameter(name) for expert in experts]
        return parameters[0][None] if E == 1 else torch.stack(parameters)

    def linear(h: Tensor, name: str) -> Tensor:  # h [E, B, ..., in] -> [E, B, ..., out]
        out = torch.baddbmm(stacked(f"{name}.bias")[:, None], h.flatten(1, -2),
                            stacked(f"{name}.weight").transpose(1, 2))
        return out.view(*h.shape[:-1], -1)

    def layer_norm(h: Tensor, name: str) -> Tensor:  # h [E, B, T, H]
        if E == 1:  # the fused affine form: the dense model pays nothing for the expert axis
            return F.layer_norm(h, (H,), first.get_parameter(f"{name}.weight"), first.get_parameter(f"{name}.bias"))
        return F.layer_norm(h, (H,)) * stacked(f"{name}.weight")[:, None, None] + stacked(f"{name}.bias")[:, None, None]

    noise = residual_dropout_noise(experts, (B, T, H), x)  # [E, L, 2, B, T, H] or None
    has_key = mask.any(-1)  # [B]
    # An example without any real token attends to all of its (emptied) slots, and its attention output is
    # zeroed: finite everywhere, and nothing of such an example is ever pooled.
    key_mask = (mask | ~has_key[:, None]).repeat(E, 1)[:, None, None, :]  # [E*B, 1, 1, T]
    keep_rows = has_key.repeat(E)[:, None, None, None].to(x.dtype)  # [E*B, 1, 1, 1]
    x = x.expand(E, B, T, H)
    attentions = []
    for layer in range(len(first.blocks)):
        prefix = f"blocks.{layer}"
        qkv = linear(layer_norm(x, f"{prefix}.ln_attn"), f"{prefix}.attn.qkv")  # [E, B, T, 3H]
        q, k, v = qkv.view(E * B, T, 3, heads, H // heads).permute(2, 0, 3, 1, 4)  # each [E*B, heads, T, H/heads]
        if return_attention:
            scores = (q @ k.transpose(-2, -1) / math.sqrt(H // heads)).masked_fill(~key_mask, float("-inf"))
            per_expert = (scores.softmax(-1) * keep_rows).view(E, B, heads, T, T).unbind(0)
            attentions.append(per_expert)
            y = torch.stack(per_expert).view(E * B, heads, T, T) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask) * keep_rows
        attended = linear(y.transpose(1, 2).reshape(E, B, T, H), f"{prefix}.attn.out")  # [E, B, T, H]
        x = x + (attended if noise is None else attended * noise[:, layer, 0])
        hidden = F.gelu(linear(layer_norm(x, f"{prefix}.ln_mlp"), f"{prefix}.mlp.0"))
        mlp = linear(hidden, f"{prefix}.mlp.2")
        x = x + (mlp if noise is None else mlp * noise[:, layer, 1])
    z = masked_modality_mean(layer_norm(x, "ln_final").flatten(0, 1), mask.repeat(E, 1), first.slices)
    z = z.view(E, B, -1)  # [E, B, M*H]
    logits = linear(z, "head")  # [E, B, C]
    return ExpertOutput(logits.transpose(0, 1), z.transpose(0, 1),
                        [list(a) for a in zip(*attentions)] if return_attention else None)


def residual_dropout_noise(experts: list[FusionExpert], shape: tuple[int, ...], like: Tensor) -> Tensor | None:
    """Dropout noise of the residual branches, [E, L, 2, *shape] (attention, MLP), or None when not training
    or p = 0: bernoulli(1 - p) / (1 - p) per element, drawn from the global generator in the order, shapes and
    way (`torch.nn.functional.dropout` on CPU) that the experts run one after another draw it."""
    first = experts[0]
    p = first.dropout
    if not first.training or p == 0:
        return None
    noise = torch.stack([torch.stack([torch.stack([like.new_empty(shape).bernoulli_(1 - p) for _ in range(2)])
                                      for _ in first.blocks]) for _ in experts])
    return noise.div_(1 - p)


@dataclass
class ModelOutput:
    """What every model returns; the dense baseline is the case E = 1 with weight 1."""

    logits: Tensor  # [B, C]: sum_e weights[:, e] * expert_logits[:, e]
    expert_logits: Tensor  # [B, E, C]
    latents: Tensor  # [B, E, M*H]
    weights: Tensor  # [B, E]: routing weights, non-negative, summing to 1
    attentions: list[list[Tensor]] | None = None  # [expert][layer] -> [B, heads, T, T]


def combine_experts(outputs: ExpertOutput, weights: Tensor) -> ModelOutput:
    """The model's output from its experts' (`run_experts`) and routing weights [B, E]: logits mixed by weight."""
    logits = torch.einsum("be,bec->bc", weights, outputs.logits)  # [B, C]
    return ModelOutput(logits, outputs.logits, outputs.latents, weights, outputs.attentions)


class MultimodalModel(nn.Module):
    """The calling convention shared by the models.

    `forward(projected [B, T, W], mask [B, T], return_attention=False) -> ModelOutput` starts from
    projected tokens (W = `front.width`, H unless the front carries side channels), so that explanations can replace some of them with a baseline;
    `forward_tokens(tokens, mask)` is the same from the raw feature dicts.
    """

    config: FusionConfig
    roster: list[tuple[str, str | None]]  # per expert: (kind, modality name or None)

    def __init__(self, config: FusionConfig, front: TokenFront | None = None):
        super().__init__()
        self.config = config
        self.front = front or TokenFront(config)

    @property
    def modality_slices(self) -> dict[str, slice]:
        return self.config.modality_slices

    @property
    def lambda_int(self) -> float:
        """Weight of `interaction_loss` in the training loss; models without one return 0."""
        return 0.0

    def project(self, tokens: dict[str, Tensor]) -> Tensor:
        return self.front.project(tokens)

    def concat_mask(self, mask: dict[str, Tensor]) -> Tensor:
        return self.front.concat_mask(mask)

    def forward_tokens(self, tokens: dict[str, Tensor], mask: dict[str, Tensor],
                       return_attention: bool = False) -> ModelOutput:
        return self(self.project(tokens), self.concat_mask(mask), return_attention=return_attention)

    def interaction_loss(self, projected: Tensor, mask: Tensor, output: ModelOutput,
                         generator: torch.Generator | None = None) -> Tensor:
        """Auxiliary training loss; 0 (and no computation) unless the model defines one."""
        return projected.new_zeros(())


def num_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (shared modules counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class ModelEntry:
    """An entry of `MODELS`: the model's config dataclass (a `FusionConfig`, torch-free) and `build(config)`,
    which returns a freshly initialised model. params.yaml's `model` section holds the `FusionConfig` fields,
    `moe` those that FL-I2MoE's config adds; `train` fills a config's fields from those two sections."""
    config: type[FusionConfig]
    build: Callable[[FusionConfig], MultimodalModel]


MODELS: Registry[ModelEntry] = Registry("model")
