import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fli2moe.artifacts import SafetensorsStreamWriter, atomic_open, write_json


def feature_batch(rng, n):
    return {"screenshot.tokens": rng.standard_normal((n, 4, 3)).astype(np.float16),
            "screenshot.mask": rng.random((n, 4)) > 0.3,
            "labels": rng.integers(0, 20, n).astype(np.int64),
            "aux": rng.standard_normal((n, 2)).astype(np.float32)}


def test_streamed_file_is_byte_identical_to_safetensors_save_file(tmp_path):
    rng = np.random.default_rng(0)
    batches = [feature_batch(rng, n) for n in (3, 1, 5)]
    writer = SafetensorsStreamWriter(tmp_path / "x.safetensors")
    for batch in batches:
        writer.append(batch)
    writer.close()
    whole = {k: torch.from_numpy(np.concatenate([b[k] for b in batches])) for k in batches[0]}
    save_file(whole, tmp_path / "reference.safetensors")
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "reference.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.safetensors", "x.safetensors"]


def test_inconsistent_batches_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    writer = SafetensorsStreamWriter(tmp_path / "x.safetensors")
    writer.append(feature_batch(rng, 2))
    bad = feature_batch(rng, 2)
    bad["screenshot.tokens"] = bad["screenshot.tokens"][:, :3]
    with pytest.raises(ValueError, match="screenshot.tokens"):
        writer.append(bad)
    with pytest.raises(ValueError, match="keys"):
        writer.append({"labels": np.zeros(2, dtype=np.int64)})
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": 1, "a": 2})
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write("partial")
            raise RuntimeError("interrupted")
    assert json.loads(path.read_text()) == {"a": 2, "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
