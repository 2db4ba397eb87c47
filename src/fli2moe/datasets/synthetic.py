"""Synthetic planted-interaction benchmark (docs/design.md section 3): features whose interactions are known.

Two modalities, `a` and `b`, of `tokens` tokens of dimension `dim`, each token N(0, 1) noise. Every
sample plants, at random positions recorded in the manifest's `ground_truth`, three cue tokens per
modality. A cue is amplitude * (+/-1) * a fixed unit direction of its mechanism (directions drawn
once per dataset, orthonormal within a modality), and its sign carries one bit:

    unique_a     bit u_a, written in one token of a only       (uniqueness: only a knows it)
    unique_b     bit u_b, written in one token of b only
    redundancy   bit r, written in one token of a AND one of b  (either copy suffices)
    synergy      bit s = x_a XOR x_b, x_a in one token of a, x_b in one token of b
                 (neither token alone says anything about s)

The label is the 4-bit number (u_a, u_b, r, s): 16 classes, so a model that classifies well must use
every mechanism. Ground truth per split, token positions within each modality:
    {"synergy": [[pos_a, pos_b], ...], "redundancy": [[pos_a, pos_b], ...],
     "unique_a": [pos_a, ...], "unique_b": [pos_b, ...]}
The probes then ask: is the planted synergistic pair the top SII pair, the planted redundant pair the
top redundancy-gap pair?
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from fli2moe.artifacts import atomic_folder, write_json
from fli2moe.datasets import DATASETS, FeatureDataset
from fli2moe.validation import ParamsError, non_negative_int, positive_int, positive_number

MODALITIES = ("a", "b")
MECHANISMS = ("unique", "redundancy", "synergy")  # the three cue slots of each modality
SPLITS = ("train", "val", "test")


def cue_directions(rng: np.random.Generator, dim: int) -> np.ndarray:
    """[M, 3, dim]: per modality, orthonormal unit directions of its unique, redundancy and synergy cues."""
    if dim < len(MECHANISMS):
        raise ValueError(f"data.synthetic.dim must be >= {len(MECHANISMS)} to hold orthogonal cues, got {dim}")
    directions = [np.linalg.qr(rng.standard_normal((dim, len(MECHANISMS))))[0].T for _ in MODALITIES]
    return np.stack(directions)


def generate_split(rng: np.random.Generator, n: int, tokens: int, dim: int, amplitude: float,
                   directions: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Tokens {a, b} [n, tokens, dim] float32, labels [n] int64, and the planted positions."""
    bits = rng.integers(0, 2, size=(n, 5))  # u_a, u_b, r, x_a, x_b
    u_a, u_b, r, x_a, x_b = bits.T
    s = x_a ^ x_b
    labels = (u_a << 3) | (u_b << 2) | (r << 1) | s
    # Per modality and sample: which token holds each mechanism's cue (three distinct positions).
    positions = np.stack([rng.permuted(np.tile(np.arange(tokens), (n, 1)), axis=1)[:, :3] for _ in MODALITIES])
    cue_bits = np.stack([np.stack([u_a, r, x_a], 1), np.stack([u_b, r, x_b], 1)])  # [M, n, 3]
    rows = np.arange(n)[:, None]
    out = {}
    for m, name in enumerate(MODALITIES):
        x = rng.standard_normal((n, tokens, dim)).astype(np.float32)
        signs = (2 * cue_bits[m] - 1)[..., None]  # [n, 3, 1]: bit 1 -> +1, bit 0 -> -1
        x[rows, positions[m]] += (amplitude * signs * directions[m][None]).astype(np.float32)
        out[name] = x
    out["labels"] = labels.astype(np.int64)
    truth = {
        "synergy": np.stack([positions[0, :, 2], positions[1, :, 2]], 1).tolist(),
        "redundancy": np.stack([positions[0, :, 1], positions[1, :, 1]], 1).tolist(),
        "unique_a": positions[0, :, 0].tolist(),
        "unique_b": positions[1, :, 0].tolist(),
    }
    return out, truth


def write_synthetic_feature_set(params, out_dir: str | Path) -> dict:
    """Generate the benchmark from the `data.synthetic` params and write it as a feature set."""
    rng = np.random.default_rng(params.seed)
    directions = cue_directions(rng, params.dim)
    with atomic_folder(out_dir) as folder:
        ids, truth = {}, {}
        for split, n in zip(SPLITS, params.sizes):
            arrays, truth[split] = generate_split(rng, n, params.tokens, params.dim, params.amplitude, directions)
            tensors = {"labels": torch.from_numpy(arrays["labels"])}
            for name in MODALITIES:
                tensors[f"{name}.tokens"] = torch.from_numpy(arrays[name]).half()
                tensors[f"{name}.mask"] = torch.ones(n, params.tokens, dtype=torch.bool)
            save_file(tensors, folder / f"{split}.safetensors")
            ids[split] = [f"{split}-{i:05d}" for i in range(n)]
        manifest = {
            "dataset": "synthetic",
            "task": "multiclass",
            "label_names": [f"ua{c >> 3}-ub{(c >> 2) & 1}-r{(c >> 1) & 1}-s{c & 1}" for c in range(16)],
            "splits": {split: len(split_ids) for split, split_ids in ids.items()},
            "modalities": [{"name": name, "kind": "synthetic", "encoder": "none", "revision": "none",
                            "dim": params.dim, "tokens": params.tokens, "grid": None} for name in MODALITIES],
            "skipped": [],
            "ids": ids,
            "ground_truth": truth,
        }
        write_json(folder / "manifest.json", manifest)
    return manifest


@DATASETS.register("synthetic")
@dataclass(frozen=True)
class SyntheticParams(FeatureDataset):
    tokens: int
    dim: int
    sizes: list
    amplitude: float
    seed: int

    def validate(self, key: str) -> None:
        positive_int(f"{key}.tokens", self.tokens)
        if self.tokens < 3:
            raise ParamsError(f"{key}.tokens must be >= 3 (three cue tokens per modality), got {self.tokens}")
        positive_int(f"{key}.dim", self.dim)
        if self.dim < 3:
            raise ParamsError(f"{key}.dim must be >= 3 (three orthogonal cue directions), got {self.dim}")
        if not isinstance(self.sizes, list) or len(self.sizes) != 3:
            raise ParamsError(f"{key}.sizes must be [train, val, test] sample counts, got {self.sizes!r}")
        for i, size in enumerate(self.sizes):
            positive_int(f"{key}.sizes[{i}]", size)
        positive_number(f"{key}.amplitude", self.amplitude)
        non_negative_int(f"{key}.seed", self.seed)

    def write_features(self, out: str | Path) -> dict:
        return write_synthetic_feature_set(self, out)
