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
`read_manifest` and `check_split` check its structure and `check_values` its numbers, so a hand-made
feature set fails early with the file, the key or tensor and the first sample at fault. Values the
contract requires: finite tokens (float16 overflows to inf above 65504), at least one real token per
sample, multiclass labels in 0..C-1 and multilabel labels 0 or 1 for the C label_names, and at least one
sample in each of train, val and test. A sample whose mask row is all False in one modality (an empty
text, a missing image) is valid: the explanation stages skip it (explaining.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file


# safetensors' dtype codes of the contract's tensors, named as torch names them in error messages
DTYPE_NAMES = {"I64": "torch.int64", "F32": "torch.float32", "F16": "torch.float16", "BOOL": "torch.bool"}
MANIFEST_KEYS = ("dataset", "task", "label_names", "splits", "modalities", "skipped", "ids")
SPLITS = ("train", "val", "test")  # training selects on val and reports on test: each needs a sample


class FeatureSetError(ValueError):
    """A feature set that does not follow the contract; the message names the file."""


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FeatureSetError(f"{path} is missing: run `dvc repro extract` or write a feature set (see README)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FeatureSetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise FeatureSetError(f"{path}: must hold a JSON object, got {type(manifest).__name__}")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise FeatureSetError(f"{path}: missing key {missing[0]!r}")
    if manifest["task"] not in ("multiclass", "multilabel"):
        raise FeatureSetError(f"{path}: task must be multiclass or multilabel, got {manifest['task']!r}")
    names = manifest["label_names"]
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)
            and len(set(names)) == len(names)):
        raise FeatureSetError(f"{path}: label_names must be a non-empty list of distinct strings, got {names!r}")
    _check_modalities(path, manifest["modalities"])
    splits, ids = manifest["splits"], manifest["ids"]
    if not (isinstance(splits, dict) and isinstance(ids, dict)):
        raise FeatureSetError(f"{path}: splits and ids must map split names to counts and id lists")
    for split, count in splits.items():
        if not (isinstance(count, int) and not isinstance(count, bool) and count > 0):
            raise FeatureSetError(f"{path}: splits.{split} must be a positive sample count, got {count!r}")
        split_ids = ids.get(split, [])
        if len(split_ids) != count:
            raise FeatureSetError(f"{path}: splits.{split} = {count} but ids.{split} has {len(split_ids)} entries")
        if len(set(map(str, split_ids))) != count:
            duplicate = next(i for n, i in enumerate(split_ids) if i in split_ids[:n])
            raise FeatureSetError(f"{path}: ids.{split} holds {duplicate!r} twice")
    return manifest


def _check_modalities(path: Path, modalities) -> None:
    """`modalities` is a non-empty list of {name, dim, tokens, ...} with distinct names and positive sizes."""
    if not (isinstance(modalities, list) and modalities):
        raise FeatureSetError(f"{path}: modalities must be a non-empty list, got {modalities!r}")
    for i, m in enumerate(modalities):
        if not (isinstance(m, dict) and isinstance(m.get("name"), str)):
            raise FeatureSetError(f"{path}: modalities[{i}] must be a mapping with a name, got {m!r}")
        for key in ("dim", "tokens"):
            if not (isinstance(m.get(key), int) and not isinstance(m[key], bool) and m[key] > 0):
                raise FeatureSetError(f"{path}: modalities[{i}].{key} must be a positive integer, got {m.get(key)!r}")
    names = [m["name"] for m in modalities]
    if len(set(names)) != len(names):
        raise FeatureSetError(f"{path}: modality names must be distinct, got {names}")


def check_split(folder: str | Path, split: str, manifest: dict) -> Path:
    """The split's file, its tensors' shapes and dtypes checked against the manifest without loading them."""
    path = Path(folder) / f"{split}.safetensors"
    if split not in manifest["splits"]:
        raise FeatureSetError(f"{Path(folder) / 'manifest.json'}: no split {split!r} (has {sorted(manifest['splits'])}; "
                              f"every stage after extract needs {', '.join(SPLITS)})")
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


def check_values(path: Path, split: str, tensors: dict[str, torch.Tensor], manifest: dict) -> None:
    """The values of one split's tensors (already of the contract's shapes and dtypes) as the contract
    requires (module docstring).

    Raises:
        FeatureSetError naming `path`, the tensor, the first offending sample's id and row, and how many
        samples break the rule.
    """
    ids = manifest["ids"][split]

    def refuse(key: str, bad: torch.Tensor, problem: str) -> None:  # bad [N] bool
        if bad.any():
            row = int(bad.nonzero()[0])
            raise FeatureSetError(f"{path}: {key} of sample {ids[row]!r} (row {row}) {problem} "
                                  f"({int(bad.sum())} of {len(bad)} samples)")

    names = [m["name"] for m in manifest["modalities"]]
    for name in names:
        refuse(f"{name}.tokens", ~torch.isfinite(tensors[f"{name}.tokens"]).flatten(1).all(1),
               "holds NaN or inf (float16 stores values beyond +-65504 as inf: scale or clip the features "
               "before the cast)")
    real = torch.stack([tensors[f"{name}.mask"].any(1) for name in names], 1)  # [N, M]
    refuse(" and ".join(f"{name}.mask" for name in names), ~real.any(1), "has no real token in any modality")
    labels, num_labels = tensors["labels"], len(manifest["label_names"])
    if manifest["task"] == "multiclass":
        bad = (labels < 0) | (labels >= num_labels)
        first = int(labels[bad][0]) if bad.any() else None
        refuse("labels", bad, f"is {first}, outside 0..{num_labels - 1}: labels are zero-based indices into the "
                              f"{num_labels} label_names")
    else:
        refuse("labels", ~((labels == 0) | (labels == 1)).all(1), "is not 0 or 1 in every column")


def load_split(folder: str | Path, split: str, manifest: dict | None = None) -> dict[str, torch.Tensor]:
    """Tensors of one split, checked against the manifest (shapes, dtypes, counts) and the contract's
    values (`check_values`)."""
    manifest = manifest or read_manifest(folder)
    path = check_split(folder, split, manifest)
    tensors = load_file(path)
    check_values(path, split, tensors, manifest)
    return tensors


@dataclass
class SplitTensors:
    """One split of a feature set in memory: tokens[m] [N, T_m, D_m] float16, mask[m] [N, T_m] bool, labels [N] | [N, C]."""

    tokens: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor, device: torch.device):
        """(tokens, mask, labels) of the rows `index` [b] on `device`."""
        return ({m: t[index].to(device) for m, t in self.tokens.items()},
                {m: k[index].to(device) for m, k in self.mask.items()}, self.labels[index].to(device))


def load_split_tensors(folder: str | Path, split: str, manifest: dict) -> SplitTensors:
    """One split of the feature set in `folder`, checked as `load_split` checks it (FeatureSetError otherwise)."""
    tensors = load_split(folder, split, manifest)
    names = [m["name"] for m in manifest["modalities"]]
    return SplitTensors({m: tensors[f"{m}.tokens"] for m in names}, {m: tensors[f"{m}.mask"] for m in names},
                        tensors["labels"])
