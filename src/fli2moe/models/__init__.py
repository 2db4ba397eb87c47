"""Models: each module of this package registers its models in `MODELS` (fusion.py): FL-I2MoE (`fl_i2moe`), the
same without interaction loss (`moe_plain`), the dense baseline (`dense`).

Every model maps projected tokens to a `ModelOutput`; see `fusion.py` for the shared parts.
`build_model(name, config)` takes the config dataclass or the plain dict saved next to the weights.
"""

from __future__ import annotations

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
    MODELS,
    FusionConfig,
    FusionExpert,
    ModalitySpec,
    ModelEntry,
    ModelOutput,
    MultimodalModel,
    TokenFront,
    num_parameters,
)
from fli2moe.registry import import_submodules

import_submodules(__name__, __path__)  # a model module added here registers itself


def build_model(name: str, config: FusionConfig | dict[str, Any]) -> MultimodalModel:
    """A freshly initialised model (seed with torch.manual_seed first).

    Raises:
        ValueError: `name` is not registered in `MODELS`.
        TypeError: `config` is not the model's config dataclass (or its dict).
    """
    entry = MODELS[name]
    if isinstance(config, dict):
        config = entry.config.from_dict(config)
    if type(config) is not entry.config:
        raise TypeError(f"model {name!r} needs a {entry.config.__name__} (or its dict), got {type(config).__name__}")
    return entry.build(config)


__all__ = [
    "MODELS",
    "DenseConfig",
    "DenseFusion",
    "FLI2MoE",
    "FLI2MoEConfig",
    "FusionConfig",
    "FusionExpert",
    "ModalitySpec",
    "ModelEntry",
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
