"""Datasets: each module of this package registers the `data.<name>` params section of one dataset in `DATASETS`.

A section is a frozen dataclass of the section's keys with `validate(key)`, and either a `RawDataset`, whose
`load()` turns a data folder into splits of `Sample`s that `extract` encodes with the frozen encoders, or a
`FeatureDataset`, whose `write_features(out)` writes the feature set itself (generated or imported).
A loader knows its modalities (name and kind, image or text), its task and label names, and
yields samples whose raw inputs are cheap references (image paths, strings); decoding happens in
the extraction workers, so a loader never holds a dataset's pixels in memory.

`data.<name>` is read by the dataset registered as `<name>`, or as its `kind` key when it has one
(`data.mine: {kind: custom, root: data/mine}`), so one kind serves several named entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError

from fli2moe.registry import Registry, import_submodules


class DataError(ValueError):
    """Bad or missing input data; the message names the folder or file and what to do."""


@dataclass(frozen=True)
class Modality:
    name: str
    kind: str  # "image" | "text"


@dataclass(frozen=True)
class Sample:
    id: str
    inputs: dict[str, Any]  # modality name -> image path or text
    label: Any  # int class index (multiclass) or list of 0/1 (multilabel)


@dataclass
class DatasetSplits:
    name: str
    task: str  # "multiclass" | "multilabel"
    label_names: list[str]
    modalities: list[Modality]
    splits: dict[str, list[Sample]]  # "train" | "val" | "test" -> samples, in a fixed order
    skipped: list[dict] = field(default_factory=list)  # {id, split, reason}; split None if dropped before splitting


def unreadable_reason(path: Path) -> str | None:
    """Why the image at `path` cannot be used, or None. Checks the header and the file structure."""
    if not path.is_file():
        return f"missing file {path.parent.name}/{path.name}"
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        return f"undecodable {path.parent.name}/{path.name}: {type(e).__name__}: {e}"
    return None


def read_json_file(path: Path, how_to_get: str) -> Any:
    """The parsed JSON file at `path`; a missing or malformed file raises DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path} is missing. {how_to_get}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON: {e}") from e


def head_of_splits(splits: dict[str, list[Sample]], max_per_split: int | None,
                   why_empty: Callable[[str], str]) -> dict[str, list[Sample]]:
    """The first `max_per_split` samples of each split (all when None); a split left empty raises
    DataError with `why_empty(split name)`: no later stage can work without every split."""
    if max_per_split is not None:
        splits = {name: samples[:max_per_split] for name, samples in splits.items()}
    for name, samples in splits.items():
        if not samples:
            raise DataError(why_empty(name))
    return splits


class RawDataset:
    """A `data.<name>` section whose dataset is raw inputs, encoded by `extract` with the frozen encoders."""

    def validate(self, key: str) -> None:
        """Raise `ParamsError` naming `key.<field>` for an impossible value."""
        raise NotImplementedError

    def load(self) -> DatasetSplits:
        """The dataset's splits (DataError for bad or missing data)."""
        raise NotImplementedError


class FeatureDataset:
    """A `data.<name>` section whose dataset writes its feature set itself (features.py's contract)."""

    def validate(self, key: str) -> None:
        """Raise `ParamsError` naming `key.<field>` for an impossible value."""
        raise NotImplementedError

    def write_features(self, out: str | Path) -> dict:
        """Write the feature set into folder `out` and return its manifest (FeatureSetError when refused)."""
        raise NotImplementedError


# kind -> the section's dataclass (a RawDataset or FeatureDataset subclass), filled by this package's modules
DATASETS: Registry[type] = Registry("dataset")
import_submodules(__name__, __path__)
