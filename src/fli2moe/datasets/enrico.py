"""ENRICO (Leiva et al. 2020): 1460 Android UIs, a screenshot and a wireframe each, 20 design topics.

Layout of the folder (`data.enrico.root`, an embedded copy in `data/enrico`):
    design_topics.csv            screen_id,topic
    screenshots/<screen_id>.jpg
    wireframes/<screen_id>.png

The usual split (MultiBench, I2MoE): drop the UIs whose files do not decode (in the real data,
wireframes 50105 and 50109 are empty files), shuffle the rest with Python's `random.Random(42)`,
and cut at int(n * 0.65) and int(n * 0.80): 947/219/292 of the 1458 usable UIs.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from fli2moe.datasets import (DATASETS, DataError, DatasetSplits, Modality, RawDataset, Sample, head_of_splits,
                              unreadable_reason)
from fli2moe.validation import ParamsError, folder_path, non_negative_int, optional_positive_int

MODALITIES = [Modality("screenshot", "image"), Modality("wireframe", "image")]
_FILES = {"screenshot": ("screenshots", ".jpg"), "wireframe": ("wireframes", ".png")}


def image_path(root: Path, modality: str, screen_id: str) -> Path:
    """Where a UI's screenshot or wireframe lives in the ENRICO layout."""
    folder, suffix = _FILES[modality]
    return Path(root) / folder / f"{screen_id}{suffix}"


_HOW_TO_GET = ("The default dataset ships with the repository in data/enrico; for another copy, point "
               "data.enrico.root in params.yaml at a folder with design_topics.csv, screenshots/ and wireframes/.")


def read_labels(path: Path) -> list[tuple[str, str]]:
    """Rows (screen_id, topic) of design_topics.csv, in file order; malformed files raise DataError."""
    if not path.is_file():
        raise DataError(f"{path} is missing. {_HOW_TO_GET}")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["screen_id", "topic"]:
            raise DataError(f"{path}: expected the header 'screen_id,topic', got {header!r}")
        rows, seen = [], set()
        for line, row in enumerate(reader, start=2):
            if len(row) != 2 or not row[0].strip().isdigit() or not row[1].strip():
                raise DataError(f"{path}:{line}: expected '<numeric screen_id>,<topic>', got {','.join(row)!r}")
            screen_id, topic = row[0].strip(), row[1].strip()
            if screen_id in seen:
                raise DataError(f"{path}:{line}: screen_id {screen_id} appears twice")
            seen.add(screen_id)
            rows.append((screen_id, topic))
    if not rows:
        raise DataError(f"{path} has no rows")
    return rows


def split_cut(n: int, fractions: list[float]) -> tuple[int, int]:
    """Cut points of n shuffled items: int(n * f_train) and int(n * (f_train + f_val)), as MultiBench."""
    return int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))


def load_enrico(params) -> DatasetSplits:
    """`params`: the `data.enrico` section (root, split, split_seed, max_per_split)."""
    root = Path(params.root)
    if not root.is_dir():
        raise DataError(f"ENRICO folder {root} does not exist. {_HOW_TO_GET}")
    rows = read_labels(root / "design_topics.csv")
    label_names = sorted({topic for _, topic in rows})

    usable, skipped = [], []
    for screen_id, topic in rows:
        paths = {m.name: image_path(root, m.name, screen_id) for m in MODALITIES}
        reasons = [r for r in map(unreadable_reason, paths.values()) if r]
        if reasons:
            skipped.append({"id": screen_id, "split": None, "reason": "; ".join(reasons)})
        else:
            usable.append(Sample(screen_id, paths, label_names.index(topic)))
    if not usable:
        raise DataError(f"no usable UI in {root}: every sample was skipped ({skipped[0]['reason']})")

    random.Random(params.split_seed).shuffle(usable)
    cut_train, cut_val = split_cut(len(usable), params.split)
    splits = {"train": usable[:cut_train], "val": usable[cut_train:cut_val], "test": usable[cut_val:]}
    splits = head_of_splits(splits, params.max_per_split,
                            lambda name: f"the {name} split of {root} is empty ({len(usable)} usable UIs): use more data")
    return DatasetSplits("enrico", "multiclass", label_names, MODALITIES, splits, skipped)


@DATASETS.register("enrico")
@dataclass(frozen=True)
class EnricoParams(RawDataset):
    root: str
    split: list
    split_seed: int
    max_per_split: int | None

    def validate(self, key: str) -> None:
        folder_path(f"{key}.root", self.root)
        ok = (isinstance(self.split, list) and len(self.split) == 3
              and all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in self.split)
              and abs(sum(self.split) - 1.0) < 1e-6)
        if not ok:
            raise ParamsError(f"{key}.split must be three positive fractions summing to 1, got {self.split!r}")
        non_negative_int(f"{key}.split_seed", self.split_seed)
        optional_positive_int(f"{key}.max_per_split", self.max_per_split)

    def load(self) -> DatasetSplits:
        return load_enrico(self)
