"""Where a stage's tensors run: `device` and `threads` of params.yaml."""

from __future__ import annotations

import torch

from fli2moe.params import Params, ParamsError, load_params


def pick_device(device: str) -> torch.device:
    """`device: auto` takes CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamsError("device: cuda was asked for but CUDA is not available")
    return torch.device(device)


def use_threads(threads: int | str) -> None:
    """`threads: auto` keeps torch's default (one per core); a number pins the CPU threads of this process.

    Pin 1 when several stages share the cores (`dvc queue start -j 2`): small tensor ops with more threads
    than free cores spin-wait and run several times slower.
    """
    if threads != "auto":
        torch.set_num_threads(threads)


def load_stage_params(path: str) -> Params:
    """The validated params of a torch stage, with its CPU threads already set from `threads`."""
    params = load_params(path)
    use_threads(params.threads)
    return params
