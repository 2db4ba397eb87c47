"""Run frozen encoders over a dataset and write its feature set (the `extract` stage's logic).

Images are decoded and resized in DataLoader workers while the main process runs the encoders,
and each split streams batch by batch into its safetensors file, so peak memory is bounded by the
batch, not the dataset. A sample whose input fails to decode is reported with its id and reason in
the manifest's `skipped` list and left out; it never stops the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fli2moe.artifacts import SafetensorsStreamWriter, atomic_folder, write_json
from fli2moe.datasets import DatasetSplits, Sample
from fli2moe.features import load_split

log = logging.getLogger(__name__)


class PreparedSamples(Dataset):
    """Item i: (id, label, {modality: prepared input}) or (id, label, reason) when an input fails."""

    def __init__(self, samples: list[Sample], preprocessors: dict):
        self.samples, self.preprocessors = samples, preprocessors

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        sample = self.samples[i]
        try:
            return sample.id, sample.label, {m: p.prepare(sample.inputs[m]) for m, p in self.preprocessors.items()}
        except Exception as e:  # any decoding failure of real data is reported, never fatal
            return sample.id, sample.label, f"{type(e).__name__}: {e}"


class CollatePrepared:
    """Batch the prepared items; failed items travel beside the batch as (id, reason)."""

    def __init__(self, preprocessors: dict):
        self.preprocessors = preprocessors

    def __call__(self, items):
        good = [item for item in items if not isinstance(item[2], str)]
        failed = [(item[0], item[2]) for item in items if isinstance(item[2], str)]
        inputs = {m: p.collate([item[2][m] for item in good]) for m, p in self.preprocessors.items()} if good else {}
        return [item[0] for item in good], [item[1] for item in good], inputs, failed


def label_array(labels: list, task: str) -> np.ndarray:
    """int64 [b] class indices (multiclass) or float32 [b, C] multi-hot (multilabel)."""
    return np.asarray(labels, dtype=np.int64 if task == "multiclass" else np.float32)


def to_device(inputs, device):
    if isinstance(inputs, dict):
        return {k: v.to(device) for k, v in inputs.items()}
    return inputs.to(device)


def extract_split(samples: list[Sample], encoders: dict, task: str, path: Path, batch_size: int,
                  num_workers: int, device: torch.device, desc: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Encode one split into `path`; returns the written ids (in order) and the (id, reason) failures."""
    preprocessors = {m: e.preprocessor for m, e in encoders.items()}
    loader = DataLoader(PreparedSamples(samples, preprocessors), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=CollatePrepared(preprocessors))
    writer = SafetensorsStreamWriter(path)
    ids, failures = [], []
    try:
        with torch.inference_mode():
            for batch_ids, labels, inputs, failed in tqdm(loader, desc=desc, unit="batch", leave=False):
                for sample_id, reason in failed:
                    log.warning("%s: sample %s skipped: %s", desc, sample_id, reason)
                failures += failed
                if not batch_ids:
                    continue
                arrays = {"labels": label_array(labels, task)}
                for m, encoder in encoders.items():
                    tokens, mask = encoder.encode(to_device(inputs[m], device))  # [b, T, D], [b, T]
                    arrays[f"{m}.tokens"] = tokens.to(torch.float16).cpu().numpy()
                    arrays[f"{m}.mask"] = mask.cpu().numpy()
                writer.append(arrays)
                ids += batch_ids
        if not ids:
            raise ValueError(f"{desc}: every sample failed to decode (first: {failures[0]})")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return ids, failures


def extract_feature_set(dataset: DatasetSplits, encoders: dict, out_dir: str | Path, batch_size: int,
                        num_workers: int, device: torch.device) -> dict:
    """Write the feature set of `dataset` (docs/design.md section 3) to `out_dir`, replacing it whole at the end.

    `encoders`: modality name -> frozen encoder. Raises `FeatureSetError` when the written set breaks the
    contract's values (`features.check_values`); `out_dir` is then left as it was.
    """
    with atomic_folder(out_dir) as tmp_dir:
        skipped, ids = list(dataset.skipped), {}
        for split, samples in dataset.splits.items():
            ids[split], failures = extract_split(samples, encoders, dataset.task, tmp_dir / f"{split}.safetensors",
                                                 batch_size, num_workers, device, f"{dataset.name}/{split}")
            skipped += [{"id": i, "split": split, "reason": reason} for i, reason in failures]
        manifest = {
            "dataset": dataset.name,
            "task": dataset.task,
            "label_names": dataset.label_names,
            "splits": {split: len(split_ids) for split, split_ids in ids.items()},
            "modalities": [{"name": m.name, "kind": m.kind, "encoder": encoders[m.name].name,
                            "revision": encoders[m.name].revision, "dim": encoders[m.name].dim,
                            "tokens": encoders[m.name].tokens,
                            "grid": list(encoders[m.name].grid) if encoders[m.name].grid else None}
                           for m in dataset.modalities],
            "skipped": skipped,
            "ids": ids,
        }
        write_json(tmp_dir / "manifest.json", manifest)
        # An encoder's activations beyond float16's range are stored as inf: refused here, naming the sample,
        # before the set replaces the previous one.
        for split in ids:
            load_split(tmp_dir, split, manifest)
    return manifest
