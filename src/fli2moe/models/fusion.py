"""Shared parts of the multimodal models: modality specs, the base config, the token front, the fusion
expert and the model output.

Both models are built from these pieces: one `TokenFront` per model, shared by all of its experts (so
that replacing a *projected* token vector with a baseline removes that token for every expert at once,
which is the single masking operator the explanations use), and one (`dense.py`) or K (`fl_i2moe.py`)
`FusionExpert`s.

Shape letters: B batch, M modalities, T_m token slots of modality m, T = sum_m T_m (modalities
concatenated in config order), D_m input feature size, H hidden size, C classes, E experts.
Masks are bool, True = real token, False = padding; padding never changes any output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple, Self

import torch
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
    """

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.modalities = list(config.modalities)
        self.projections = nn.ModuleList(nn.Linear(m.dim, config.hidden) for m in config.modalities)
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
        """tokens[m] [B, T_m, D_m] (any float dtype, e.g. float16 from the feature files) -> [B, T, H]."""
        projected = []
        for spec, projection in zip(self.modalities, self.projections):
            if spec.name not in tokens:
                raise KeyError(f"tokens: modality {spec.name!r} is missing (have {sorted(tokens)})")
            x = tokens[spec.name]
            if x.dim() != 3 or x.shape[1:] != (spec.tokens, spec.dim):
                raise ValueError(f"tokens[{spec.name!r}]: expected [B, {spec.tokens}, {spec.dim}], "
                                 f"got {list(x.shape)}")
            projected.append(projection(x.to(projection.weight.dtype)))
        return torch.cat(projected, 1)

    def concat_mask(self, mask: dict[str, Tensor]) -> Tensor:
        """mask[m] [B, T_m] -> [B, T] bool, in config order."""
        return torch.cat([mask[spec.name].bool() for spec in self.modalities], 1)

    def embed(self, projected: Tensor, mask: Tensor) -> Tensor:
        """projected [B, T, H], mask [B, T] -> [B, T, H] with modality and position embeddings added.

        Padded slots are emptied first, so that nothing computed from them (not even the attention
        rows of padded queries) depends on what the padding holds.
        """
        content = projected.masked_fill(~mask[..., None], 0.0)  # [B, T, H]
        return content + self.position_embedding + self.modality_embedding(self.modality_ids)


class SelfAttention(nn.Module):
    """Multi-head self-attention written out, so the probabilities stay in the autograd graph."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.out = nn.Linear(config.hidden, config.hidden)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, T, H], mask [B, T] -> (output [B, T, H], probabilities [B, heads, T, T])."""
        B, T, H = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)  # [B, h, T, H/h]
        scores = q @ k.transpose(-2, -1) / math.sqrt(H // self.heads)  # [B, h, T, T]
        key_mask = mask[:, None, None, :]  # [B, 1, 1, T]
        scores = scores.masked_fill(~key_mask, float("-inf"))
        # An example without any real token would give rows of -inf, hence NaN: give those rows finite
        # scores and zero probabilities instead (nothing of such an example is ever pooled).
        has_key = mask.any(-1)[:, None, None, None]  # [B, 1, 1, 1]
        probs = scores.masked_fill(~has_key, 0.0).softmax(-1) * has_key  # [B, h, T, T]
        y = (probs @ v).transpose(1, 2).reshape(B, T, H)  # [B, T, H]
        return self.out(y), probs


class Block(nn.Module):
    """Pre-LN Transformer layer with true residuals."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.hidden)
        self.attn = SelfAttention(config)
        self.ln_mlp = nn.LayerNorm(config.hidden)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden, config.mlp_ratio * config.hidden),
            nn.GELU(),
            nn.Linear(config.mlp_ratio * config.hidden, config.hidden),
        )
        # Dropout on the residual branches only: the attention probabilities returned for attribution
        # are exactly the ones that mixed the values.
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, T, H], mask [B, T] -> (x [B, T, H], attention probabilities [B, heads, T, T])."""
        attended, probs = self.attn(self.ln_attn(x), mask)
        x = x + self.dropout(attended)
        x = x + self.dropout(self.mlp(self.ln_mlp(x)))
        return x, probs


class ExpertOutput(NamedTuple):
    logits: Tensor  # [B, C]
    latent: Tensor  # [B, M*H]
    attentions: list[Tensor] | None  # per layer [B, heads, T, T]


class FusionExpert(nn.Module):
    """L Transformer layers over the tokens of all modalities, final LN, masked mean-pool per modality,
    concatenation to the latent z [B, M*H], linear head to logits [B, C]."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.slices = list(config.modality_slices.values())
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(config.hidden)
        self.head = nn.Linear(len(config.modalities) * config.hidden, config.num_classes)

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> ExpertOutput:
        """x [B, T, H] (embedded tokens), mask [B, T]."""
        attentions = []
        for block in self.blocks:
            x, probs = block(x, mask)
            attentions.append(probs)
        z = masked_modality_mean(self.ln_final(x), mask, self.slices).flatten(1)  # [B, M*H]
        return ExpertOutput(self.head(z), z, attentions if return_attention else None)


@dataclass
class ModelOutput:
    """What every model returns; the dense baseline is the case E = 1 with weight 1."""

    logits: Tensor  # [B, C]: sum_e weights[:, e] * expert_logits[:, e]
    expert_logits: Tensor  # [B, E, C]
    latents: Tensor  # [B, E, M*H]
    weights: Tensor  # [B, E]: routing weights, non-negative, summing to 1
    attentions: list[list[Tensor]] | None = None  # [expert][layer] -> [B, heads, T, T]


def combine_experts(outputs: list[ExpertOutput], weights: Tensor) -> ModelOutput:
    """Stack the experts' outputs and mix their logits with weights [B, E]."""
    expert_logits = torch.stack([o.logits for o in outputs], 1)  # [B, E, C]
    logits = torch.einsum("be,bec->bc", weights, expert_logits)  # [B, C]
    attentions = None if outputs[0].attentions is None else [o.attentions for o in outputs]
    return ModelOutput(logits, expert_logits, torch.stack([o.latent for o in outputs], 1), weights, attentions)


class MultimodalModel(nn.Module):
    """The calling convention shared by the models.

    `forward(projected [B, T, H], mask [B, T], return_attention=False) -> ModelOutput` starts from
    projected tokens, so that explanations can replace some of them with a baseline;
    `forward_tokens(tokens, mask)` is the same from the raw feature dicts.
    """

    config: FusionConfig
    roster: list[tuple[str, str | None]]  # per expert: (kind, modality name or None)

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.config = config
        self.front = TokenFront(config)

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
