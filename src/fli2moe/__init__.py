"""fli2moe: feature-level interaction explanations in multimodal transformers, as a DVC workflow."""

__version__ = "0.1.0"
