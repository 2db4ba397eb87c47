"""FL-I2MoE: an interaction-aware mixture of K fusion experts (I2MoE, Xin et al. 2025) over token
features, as used by Kim et al. 2026 for feature-level interaction explanations.

Every expert is a `FusionExpert` that sees all modalities. The roster fixes each expert's role: the
first M experts are uniqueness experts (one per modality, in config order), the remaining K - M
alternate synergy, redundancy, synergy, ... A reweighting MLP (the router: Linear, activation, dropout,
Linear) reads one summary per modality and gives w = softmax(MLP(.) / tau); the prediction is
sum_e w_e * logits_e. Its input (`router_input`):
  projected: the L2-normalised masked mean of each modality's projected tokens (this project's default);
  encoder:   the masked mean of each modality's *encoder* tokens, as I2MoE's `MLPReWeighting` reads its
             inputs (Xin et al. 2025, reference code `InteractionMoE.py`), untouched by the experts'
             projection. Since the first layer is linear, Linear(concat_m mean_m x) = sum_m mean_m (A_m x) + b:
             each token carries A_m x as side channels of its projected vector (`TokenFront`), so the one
             removal operator of the explanations removes a token from the router's input too (a removed
             token's side channels become the modality's mean A_m x, i.e. the mean encoder token, or zero).
I2MoE's recipe is `router_input: encoder`, `router_activation: relu`, `router_dropout: 0.5`; its experts
all start as copies of one model (`expert_init: shared`), here they are drawn independently by default.

The interaction losses push each expert towards its role. A modality m is "removed" by replacing its
projected tokens with `perturb` (gaussian | zero | mean); with o0 an expert's output (latent z or
logits, `interaction_on`) on the full input and o_m with modality m removed:
  uniqueness expert i: mean_{j != i} mean_b max(0, ||o0 - o_j|| - ||o0 - o_i|| + 1)
  synergy expert:      mean_m mean_b cos(o0, o_m)       (removing any modality must change it)
  redundancy expert:   mean_m mean_b (1 - cos(o0, o_m)) (removing one modality must not)
The training loss is L_task + lambda_int * (mean over experts); the train loop adds it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fli2moe.models import fusion
from fli2moe.models.fusion import (
    MODELS,
    FusionConfig,
    FusionExpert,
    ModelEntry,
    ModelOutput,
    MultimodalModel,
    TokenFront,
    combine_experts,
    is_positive_int,
    masked_modality_mean,
    require,
)

INTERACTION_ON = ("latent", "logits")
PERTURBATIONS = ("gaussian", "zero", "mean")
EXPERT_INITS = ("independent", "shared")
ROUTER_INPUTS = ("projected", "encoder")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


@dataclass
class FLI2MoEConfig(FusionConfig):
    """Fusion-expert architecture plus the `moe` section of params.yaml."""

    num_experts: int = 4  # K >= M + 2
    tau: float = 2.0  # softmax temperature of the reweighting model
    lambda_int: float = 0.5  # weight of the interaction loss; 0 gives moe_plain
    interaction_on: str = "latent"  # "latent" (z) | "logits"
    perturb: str = "gaussian"  # how a modality is removed: "gaussian" | "zero" | "mean"
    router_hidden: int = 64  # hidden width of the reweighting MLP
    router_input: str = "projected"  # "projected" | "encoder" (module docstring)
    router_activation: str = "gelu"  # "gelu" | "relu" (I2MoE)
    router_dropout: float = 0.0  # dropout after the router's activation, training only (I2MoE: 0.5)
    expert_init: str = "independent"  # "independent" draws | "shared": every expert starts as a copy of the first

    def __post_init__(self) -> None:
        super().__post_init__()
        M = len(self.modalities)
        require(M >= 2, f"modalities: FL-I2MoE needs at least 2 modalities, got {M}")
        require(is_positive_int(self.num_experts) and self.num_experts >= M + 2,
                 f"moe.num_experts = {self.num_experts!r} is too small: with {M} modalities FL-I2MoE needs at "
                 f"least M + 2 = {M + 2} experts (one uniqueness expert per modality, one synergy, one redundancy)")
        require(self.tau > 0, f"moe.tau must be > 0, got {self.tau!r}")
        require(self.lambda_int >= 0, f"moe.lambda_int must be >= 0, got {self.lambda_int!r}")
        require(self.interaction_on in INTERACTION_ON,
                 f"moe.interaction_on must be one of {list(INTERACTION_ON)}, got {self.interaction_on!r}")
        require(self.perturb in PERTURBATIONS,
                 f"moe.perturb must be one of {list(PERTURBATIONS)}, got {self.perturb!r}")
        require(is_positive_int(self.router_hidden),
                 f"moe.router_hidden must be a positive integer, got {self.router_hidden!r}")
        require(self.router_input in ROUTER_INPUTS,
                 f"moe.router_input must be one of {list(ROUTER_INPUTS)}, got {self.router_input!r}")
        require(self.router_activation in ACTIVATIONS,
                 f"moe.router_activation must be one of {list(ACTIVATIONS)}, got {self.router_activation!r}")
        require(0.0 <= self.router_dropout < 1.0, f"moe.router_dropout must be in [0, 1), got {self.router_dropout!r}")
        require(self.expert_init in EXPERT_INITS,
                 f"moe.expert_init must be one of {list(EXPERT_INITS)}, got {self.expert_init!r}")


def build_roster(modality_names: list[str], num_experts: int) -> list[tuple[str, str | None]]:
    """[(kind, modality or None)] per expert: M uniqueness experts, then synergy, redundancy, ..."""
    extra = ("synergy", "redundancy")
    return [("uniqueness", name) for name in modality_names] + [
        (extra[i % 2], None) for i in range(num_experts - len(modality_names))
    ]


def uniqueness_loss(full: Tensor, removed: Tensor, own: int, margin: float = 1.0) -> Tensor:
    """Triplet loss of the uniqueness expert for modality `own`.

    full [B, D]: output on the full input; removed [M, B, D]: removed[m] = output without modality m.
    Removing its own modality must move the output by at least `margin` more than removing any other.
    """
    distance = (removed - full).norm(dim=-1)  # [M, B]
    others = [m for m in range(removed.shape[0]) if m != own]
    return F.relu(distance[others] - distance[own] + margin).mean()


def synergy_loss(full: Tensor, removed: Tensor) -> Tensor:
    """mean_m mean_b cos(full, removed[m]); full [B, D], removed [M, B, D]."""
    return F.cosine_similarity(removed, full.unsqueeze(0), dim=-1).mean()


def redundancy_loss(full: Tensor, removed: Tensor) -> Tensor:
    """mean_m mean_b (1 - cos(full, removed[m])); full [B, D], removed [M, B, D]."""
    return (1.0 - F.cosine_similarity(removed, full.unsqueeze(0), dim=-1)).mean()


class FLI2MoE(MultimodalModel):
    def __init__(self, config: FLI2MoEConfig):
        M, H, R = len(config.modalities), config.hidden, config.router_hidden
        encoder = config.router_input == "encoder"
        # encoder: the router's first layer is the front's side maps (weights) plus `router_bias`.
        super().__init__(config, TokenFront(config, side=R, side_fan_in=sum(m.dim for m in config.modalities))
                         if encoder else None)
        self.roster = build_roster(config.modality_names, config.num_experts)
        self.experts = nn.ModuleList(FusionExpert(config) for _ in range(config.num_experts))
        if config.expert_init == "shared":
            for expert in self.experts[1:]:
                expert.load_state_dict(self.experts[0].state_dict())
        # Indices 0 and 2 hold the weights whatever the options, so saved models keep their parameter names.
        self.router = nn.Sequential(
            nn.Identity() if encoder else nn.Linear(M * H, R),
            ACTIVATIONS[config.router_activation](),
            nn.Linear(R, config.num_experts),
        )
        if encoder:
            fan_in = sum(m.dim for m in config.modalities)
            self.router_bias = nn.Parameter(torch.empty(R).uniform_(-fan_in ** -0.5, fan_in ** -0.5))

    @property
    def lambda_int(self) -> float:
        return self.config.lambda_int

    def route(self, projected: Tensor, mask: Tensor) -> Tensor:
        """projected [B, T, W], mask [B, T] -> routing weights [B, K] (module docstring: `router_input`)."""
        slices, H = list(self.modality_slices.values()), self.config.hidden
        if self.config.router_input == "encoder":
            # sum_m mean_m(A_m x) + b = the first layer of I2MoE's MLP on the concatenated encoder-token means
            hidden = masked_modality_mean(projected[..., H:], mask, slices).sum(1) + self.router_bias  # [B, R]
        else:
            summary = masked_modality_mean(projected[..., :H], mask, slices)  # [B, M, H]
            # Normalised per modality so that no modality dominates the router by its scale.
            hidden = self.router[0](F.normalize(summary, dim=-1).flatten(1))  # [B, R]
        hidden = F.dropout(self.router[1](hidden), self.config.router_dropout, self.training)
        return torch.softmax(self.router[2](hidden) / self.config.tau, dim=-1)

    def forward(self, projected: Tensor, mask: Tensor, return_attention: bool = False) -> ModelOutput:
        """projected [B, T, W], mask [B, T] -> ModelOutput with E = K."""
        x = self.front.embed(projected, mask)  # [B, T, H]
        return combine_experts(fusion.run_experts(self.experts, x, mask, return_attention), self.route(projected, mask))

    def remove_modality(self, projected: Tensor, mask: Tensor, index: int,
                        generator: torch.Generator | None = None) -> Tensor:
        """projected [B, T, W] with modality `index`'s slice replaced according to `config.perturb`.

        The replacement statistics come from the real tokens of that modality in the batch and are
        detached: they are a reference input, not something to learn through.
        """
        s = list(self.modality_slices.values())[index]
        B, T_m, H = projected[:, s].shape
        real = projected[:, s][mask[:, s]].detach()  # [N_real, H]
        if real.shape[0] == 0:
            real = projected.new_zeros(1, H)
        if self.config.perturb == "zero":
            fill = projected.new_zeros(B, T_m, H)
        elif self.config.perturb == "mean":
            fill = real.mean(0).expand(B, T_m, H)
        else:  # gaussian: per-feature mean and std of the real tokens
            noise = torch.randn(B, T_m, H, generator=generator, device=projected.device, dtype=projected.dtype)
            fill = real.mean(0) + real.std(0, correction=0) * noise
        return torch.cat([projected[:, : s.start], fill, projected[:, s.stop :]], 1)

    def interaction_loss(self, projected: Tensor, mask: Tensor, output: ModelOutput,
                         generator: torch.Generator | None = None) -> Tensor:
        """Mean over experts of their interaction losses (a scalar, differentiable).

        `output` is this model's output on (projected, mask), which supplies o0. The M perturbed inputs
        are run as one batch of M*B examples through all K experts at once (`fusion.run_experts`): M extra
        passes' worth of compute per expert. With lambda_int = 0 (moe_plain) nothing is computed and 0 is
        returned.
        """
        if self.config.lambda_int == 0:
            return projected.new_zeros(())
        M, B = len(self.config.modalities), projected.shape[0]
        removed = torch.stack([self.remove_modality(projected, mask, m, generator) for m in range(M)])  # [M, B, T, W]
        mask_removed = mask.repeat(M, 1)  # [M*B, T], row m*B + b is mask[b]
        x = self.front.embed(removed.flatten(0, 1), mask_removed)  # [M*B, T, H]
        on_latent = self.config.interaction_on == "latent"
        full = output.latents if on_latent else output.expert_logits  # [B, K, D]
        out = fusion.run_experts(self.experts, x, mask_removed)
        removed_out = (out.latents if on_latent else out.logits).unflatten(0, (M, B))  # [M, B, K, D]
        losses = []
        for e, (kind, modality) in enumerate(self.roster):
            o_removed = removed_out[:, :, e]  # [M, B, D]
            if kind == "uniqueness":
                losses.append(uniqueness_loss(full[:, e], o_removed, self.config.modality_names.index(modality)))
            elif kind == "synergy":
                losses.append(synergy_loss(full[:, e], o_removed))
            else:
                losses.append(redundancy_loss(full[:, e], o_removed))
        return torch.stack(losses).mean()


MODELS.register("fl_i2moe")(ModelEntry(FLI2MoEConfig, FLI2MoE))
# The same mixture without interaction losses: does training with them help?
MODELS.register("moe_plain")(ModelEntry(FLI2MoEConfig, lambda config: FLI2MoE(replace(config, lambda_int=0.0))))
