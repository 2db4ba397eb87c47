"""Models: FL-I2MoE (`fl_i2moe`), the same without interaction loss (`moe_plain`), the dense baseline.

Every model maps projected tokens to a `ModelOutput`; see `fusion.py` for the shared parts.
`build_model(name, config)` takes the config dataclass or the plain dict saved next to the weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fli2moe.models.dense import DenseConfig, DenseFusion
from fli2moe.models.fl_i2moe import (
    FLI2MoE,
    FLI2MoEConfig,
    build_roster,
    redundancy_loss,
    synergy_loss,
    uniqueness_loss,
)
from fli2moe.models.fusion import (
    FusionConfig,
    FusionExpert,
    ModalitySpec,
    ModelOutput,
    MultimodalModel,
    TokenFront,
    num_parameters,
)

CONFIG_CLASSES: dict[str, type[FusionConfig]] = {
    "fl_i2moe": FLI2MoEConfig,
    "moe_plain": FLI2MoEConfig,
    "dense": DenseConfig,
}
MODEL_NAMES = tuple(CONFIG_CLASSES)


def build_model(name: str, config: FusionConfig | dict[str, Any]) -> MultimodalModel:
    """A freshly initialised model (seed with torch.manual_seed first). `moe_plain` forces lambda_int = 0."""
    if name not in CONFIG_CLASSES:
        raise ValueError(f"unknown model {name!r}; known models: {list(MODEL_NAMES)}")
    config_class = CONFIG_CLASSES[name]
    if isinstance(config, dict):
        config = config_class.from_dict(config)
    if type(config) is not config_class:
        raise TypeError(f"model {name!r} needs a {config_class.__name__} (or its dict), got {type(config).__name__}")
    if name == "moe_plain":
        return FLI2MoE(dataclasses.replace(config, lambda_int=0.0))
    if name == "fl_i2moe":
        return FLI2MoE(config)
    return DenseFusion(config)


__all__ = [
    "CONFIG_CLASSES",
    "MODEL_NAMES",
    "DenseConfig",
    "DenseFusion",
    "FLI2MoE",
    "FLI2MoEConfig",
    "FusionConfig",
    "FusionExpert",
    "ModalitySpec",
    "ModelOutput",
    "MultimodalModel",
    "TokenFront",
    "build_model",
    "build_roster",
    "num_parameters",
    "redundancy_loss",
    "synergy_loss",
    "uniqueness_loss",
]
