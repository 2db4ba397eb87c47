"""Dataset loaders: each turns a data folder into splits of `Sample`s for `extract`.

A loader knows its modalities (name and kind, image or text), its task and label names, and
yields samples whose raw inputs are cheap references (image paths, strings); decoding happens in
the extraction workers, so a loader never holds a dataset's pixels in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError


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


def load_dataset(name: str, params) -> DatasetSplits:
    """Load dataset `name` with its `data.<name>` params section."""
    if name == "enrico":
        from fli2moe.datasets.enrico import load_enrico

        return load_enrico(params.data[name])
    if name == "mmimdb":
        from fli2moe.datasets.mmimdb import load_mmimdb

        return load_mmimdb(params.data[name])
    if name == "mmhs150k":
        from fli2moe.datasets.mmhs150k import load_mmhs150k

        return load_mmhs150k(params.data[name])
    raise DataError(f"unknown dataset {name!r}")
