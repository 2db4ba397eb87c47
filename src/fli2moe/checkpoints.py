"""The train stage's checkpoints: checkpoints/<dataset>-<model>/ holds config.json ({model, dataset, config,
seeds}) and seed<seed>.safetensors per trained seed; the explanation stages load a model from it without any
training code."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from fli2moe.models import MultimodalModel, build_model


def load_trained_model(folder, seed: int) -> MultimodalModel:
    """The model saved by the train stage in `folder` (config.json + seed<seed>.safetensors), in eval mode.

    Raises:
        ValueError: `seed` was not trained (explain.seeds).
        FileNotFoundError: `folder` holds no checkpoint.
    """
    folder = Path(folder)
    saved = json.loads((folder / "config.json").read_text())
    if seed not in saved["seeds"]:
        raise ValueError(f"{folder} holds seeds {saved['seeds']}, not {seed} (explain.seeds)")
    model = build_model(saved["model"], saved["config"])
    model.load_state_dict(load_file(folder / f"seed{seed}.safetensors"))
    return model.eval()
