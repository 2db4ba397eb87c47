"""The feature-set contract: the one format every stage after `extract` reads (docs/design.md section 3).

    <dir>/manifest.json
        dataset, task ("multiclass" | "multilabel"), label_names, splits {name: count},
        modalities [{name, encoder, revision, dim, tokens, grid: [rows, cols] | null}],
        skipped [{id, split, reason}], ids {split: [...]}, ground_truth (synthetic only)
    <dir>/<split>.safetensors
        "<modality>.tokens" float16 [N, T_m, D_m]
        "<modality>.mask"   bool    [N, T_m]        (True = real token)
        "labels"            int64   [N] (multiclass) | float32 [N, C] (multilabel)

Anyone can bring precomputed features by writing this format (datasets/custom.py imports one);
`read_manifest` and `check_split` check it, so a hand-made feature set fails early with the file and key
at fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file


# safetensors' dtype codes of the contract's tensors, named as torch names them in error messages
DTYPE_NAMES = {"I64": "torch.int64", "F32": "torch.float32", "F16": "torch.float16", "BOOL": "torch.bool"}
MANIFEST_KEYS = ("dataset", "task", "label_names", "splits", "modalities", "skipped", "ids")


class FeatureSetError(ValueError):
    """A feature set that does not follow the contract; the message names the file."""


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FeatureSetError(f"{path} is missing: run `dvc repro extract` or write a feature set (see README)")
    manifest = json.loads(path.read_text())
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise FeatureSetError(f"{path}: missing key {missing[0]!r}")
    if manifest["task"] not in ("multiclass", "multilabel"):
        raise FeatureSetError(f"{path}: task must be multiclass or multilabel, got {manifest['task']!r}")
    for split, count in manifest["splits"].items():
        if len(manifest["ids"].get(split, [])) != count:
            raise FeatureSetError(f"{path}: splits.{split} = {count} but ids.{split} has "
                                  f"{len(manifest['ids'].get(split, []))} entries")
    return manifest


def check_split(folder: str | Path, split: str, manifest: dict) -> Path:
    """The split's file, its tensors' shapes and dtypes checked against the manifest without loading them."""
    path = Path(folder) / f"{split}.safetensors"
    if split not in manifest["splits"]:
        raise FeatureSetError(f"{Path(folder) / 'manifest.json'}: no split {split!r} (has {sorted(manifest['splits'])})")
    if not path.is_file():
        raise FeatureSetError(f"{path} is missing")
    n, num_labels = manifest["splits"][split], len(manifest["label_names"])
    expected = {"labels": ((n,), "I64") if manifest["task"] == "multiclass" else ((n, num_labels), "F32")}
    for m in manifest["modalities"]:
        expected[f"{m['name']}.tokens"] = ((n, m["tokens"], m["dim"]), "F16")
        expected[f"{m['name']}.mask"] = ((n, m["tokens"]), "BOOL")
    with safe_open(path, "pt") as f:
        for key, (shape, dtype) in expected.items():
            if key not in f.keys():
                raise FeatureSetError(f"{path}: missing tensor {key!r}")
            found = f.get_slice(key)
            if tuple(found.get_shape()) != shape or found.get_dtype() != dtype:
                raise FeatureSetError(f"{path}: {key} is {DTYPE_NAMES.get(found.get_dtype(), found.get_dtype())} "
                                      f"{found.get_shape()}, the manifest implies {DTYPE_NAMES[dtype]} {list(shape)}")
    return path


def load_split(folder: str | Path, split: str, manifest: dict | None = None) -> dict[str, torch.Tensor]:
    """Tensors of one split, checked against the manifest (shapes, dtypes, counts)."""
    return load_file(check_split(folder, split, manifest or read_manifest(folder)))
