"""The planted-interaction benchmark: labels follow the planted bits, and each mechanism is what it claims."""

from dataclasses import replace

import numpy as np
import pytest
from safetensors.torch import load_file

from fli2moe.datasets.synthetic import cue_directions, generate_split, write_synthetic_feature_set
from fli2moe.features import load_split, read_manifest
from fli2moe.params import load_params
from conftest import REPO


def decoded_bits(tokens: np.ndarray, positions: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The bit a cue token carries: the sign of its projection on the mechanism's direction."""
    return (tokens[np.arange(len(tokens)), positions] @ direction > 0).astype(int)


def test_label_is_the_planted_bits_and_synergy_is_a_xor():
    rng = np.random.default_rng(3)
    directions = cue_directions(rng, 16)
    arrays, truth = generate_split(rng, 4000, tokens=8, dim=16, amplitude=20.0, directions=directions)
    a, b, labels = arrays["a"], arrays["b"], arrays["labels"]
    syn, red = np.array(truth["synergy"]), np.array(truth["redundancy"])
    u_a = decoded_bits(a, np.array(truth["unique_a"]), directions[0, 0])
    u_b = decoded_bits(b, np.array(truth["unique_b"]), directions[1, 0])
    r_a, r_b = decoded_bits(a, red[:, 0], directions[0, 1]), decoded_bits(b, red[:, 1], directions[1, 1])
    x_a, x_b = decoded_bits(a, syn[:, 0], directions[0, 2]), decoded_bits(b, syn[:, 1], directions[1, 2])
    assert np.array_equal(r_a, r_b)  # both copies of the redundant bit agree
    assert np.array_equal(labels, (u_a << 3) | (u_b << 2) | (r_a << 1) | (x_a ^ x_b))
    # Either synergy token alone carries nothing about the synergy bit.
    s = labels & 1
    assert abs(np.corrcoef(x_a, s)[0, 1]) < 0.06 and abs(np.corrcoef(x_b, s)[0, 1]) < 0.06
    for positions in (np.stack([truth["unique_a"], red[:, 0], syn[:, 0]], 1),
                      np.stack([truth["unique_b"], red[:, 1], syn[:, 1]], 1)):
        assert all(len(set(row)) == 3 for row in positions.tolist())
    assert len(np.unique(labels)) == 16


def test_feature_set_is_valid_and_seeded(tmp_path):
    params = replace(load_params(REPO / "params.yaml").data["synthetic"], sizes=[40, 10, 10])
    manifest = write_synthetic_feature_set(params, tmp_path / "one")
    assert read_manifest(tmp_path / "one") == manifest
    assert load_split(tmp_path / "one", "train", manifest)["a.tokens"].shape == (40, params.tokens, params.dim)
    assert len(manifest["ground_truth"]["test"]["synergy"]) == 10
    write_synthetic_feature_set(params, tmp_path / "two")
    write_synthetic_feature_set(replace(params, seed=params.seed + 1), tmp_path / "other")
    for split in ("train", "val", "test"):
        same = (tmp_path / "one" / f"{split}.safetensors").read_bytes()
        assert same == (tmp_path / "two" / f"{split}.safetensors").read_bytes()
    assert not np.array_equal(load_file(tmp_path / "one" / "test.safetensors")["a.tokens"].numpy(),
                              load_file(tmp_path / "other" / "test.safetensors")["a.tokens"].numpy())


def test_too_small_dimension_is_refused():
    with pytest.raises(ValueError, match="data.synthetic.dim"):
        cue_directions(np.random.default_rng(0), 2)
