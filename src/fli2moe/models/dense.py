"""Dense baseline: one fusion expert over the tokens of all modalities (no routing, no interaction loss).

It has the same token front, hidden size H and depth L as each FL-I2MoE expert, and returns the same
`ModelOutput` with E = 1 and weight 1, so that training and explanation code treat both alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fli2moe.models import fusion
from fli2moe.models.fusion import (MODELS, FusionConfig, FusionExpert, ModelEntry, ModelOutput, MultimodalModel,
                                  combine_experts)


@dataclass
class DenseConfig(FusionConfig):
    """The dense baseline has no knobs beyond those of the fusion expert."""


class DenseFusion(MultimodalModel):
    roster = [("dense", None)]

    def __init__(self, config: DenseConfig):
        super().__init__(config)
        self.expert = FusionExpert(config)

    def forward(self, projected: Tensor, mask: Tensor, return_attention: bool = False) -> ModelOutput:
        """projected [B, T, H], mask [B, T] -> ModelOutput with E = 1."""
        out = fusion.run_experts([self.expert], self.front.embed(projected, mask), mask, return_attention)
        return combine_experts(out, projected.new_ones(projected.shape[0], 1))  # weights [B, 1]


MODELS.register("dense")(ModelEntry(DenseConfig, DenseFusion))
