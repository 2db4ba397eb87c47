"""MM-IMDb (Arevalo et al. 2017): 25,959 films, a plot and a poster each, 23 genres (multilabel).

Layout of the folder (`data.mmimdb.root`; the authors' mmimdb.tar.gz, unpacked):
    split.json            {"train": [15552 ids], "dev": [2608 ids], "test": [7799 ids]}
    dataset/<id>.json     {"plot": [str, ...], "genres": [str, ...], ...other IMDb fields}
    dataset/<id>.jpeg     the poster

The official split is kept as it is, "dev" becoming our "val". The text is the longest of the
film's plot summaries, as the reference preprocessing does (MMBT's format_mmimdb_dataset.py:
argmax of the lengths, the first on ties). The label is a 0/1 list over the 23 genres of `GENRES`, the ones the MM-IMDb
paper keeps; any other genre a film carries (News, Adult, Talk-Show, ...) is ignored. A film
whose JSON does not parse, whose plot is missing or empty, that has none of the 23 genres, or
whose poster is missing or does not decode is reported in `skipped` (id, split, reason) and left
out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fli2moe.datasets import (DATASETS, DataError, DatasetSplits, Modality, RawDataset, Sample, head_of_splits,
                              read_json_file, unreadable_reason)
from fli2moe.validation import folder_path, optional_positive_int

MODALITIES = [Modality("plot", "text"), Modality("poster", "image")]
# The 23 genres of the MM-IMDb paper, in its order (most frequent first over all films; among the 2608
# dev films Animation, 105, edges out Music, 100).
GENRES = ["Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror", "Documentary",
          "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Music", "Animation",
          "Musical", "Western", "Sport", "Short", "Film-Noir"]
_SPLITS = {"train": "train", "dev": "val", "test": "test"}  # split.json key -> our split name
_HOW_TO_GET = ("MM-IMDb is distributed by its authors (Arevalo et al. 2017, https://github.com/johnarevalo/gmu-mmimdb: "
               "mmimdb.tar.gz); unpack it and point data.mmimdb.root in params.yaml at the folder holding "
               "split.json and dataset/.")


def read_split(path: Path) -> dict[str, list[str]]:
    """The official split as {"train", "val", "test"} -> ids in file order ("dev" is our "val")."""
    raw = read_json_file(path, _HOW_TO_GET)
    if not isinstance(raw, dict) or set(raw) != set(_SPLITS):
        raise DataError(f"{path}: expected an object with the keys train, dev and test, got "
                        f"{sorted(raw) if isinstance(raw, dict) else type(raw).__name__}")
    for key, ids in raw.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise DataError(f"{path}: {key} must be a list of film ids (strings)")
    return {ours: raw[theirs] for theirs, ours in _SPLITS.items()}


def read_film(path: Path) -> tuple[str, list[int]] | str:
    """(longest plot, 0/1 label over GENRES) of one dataset/<id>.json, or why the film cannot be used."""
    name = f"{path.parent.name}/{path.name}"
    if not path.is_file():
        return f"missing file {name}"
    try:
        film = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        return f"unreadable {name}: {type(e).__name__}: {e}"
    if not isinstance(film, dict):
        return f"unreadable {name}: not a JSON object"
    plots = film.get("plot")
    if not isinstance(plots, list) or not all(isinstance(p, str) for p in plots) or not any(p.strip() for p in plots):
        return f"no plot in {name}"
    genres = film.get("genres")
    label = [int(isinstance(genres, list) and genre in genres) for genre in GENRES]
    if not any(label):
        return f"none of the 23 genres in {name} (genres: {genres!r})"
    return max(plots, key=len).strip(), label


def load_mmimdb(params) -> DatasetSplits:
    """`params`: the `data.mmimdb` section (root, max_per_split)."""
    root = Path(params.root)
    if not root.is_dir():
        raise DataError(f"MM-IMDb folder {root} does not exist. {_HOW_TO_GET}")
    split_ids = read_split(root / "split.json")

    splits, skipped = {}, []
    for split, ids in split_ids.items():
        splits[split] = []
        for film_id in ids:
            film = read_film(root / "dataset" / f"{film_id}.json")
            poster = root / "dataset" / f"{film_id}.jpeg"
            reasons = [r for r in (film if isinstance(film, str) else None, unreadable_reason(poster)) if r]
            if reasons:
                skipped.append({"id": film_id, "split": split, "reason": "; ".join(reasons)})
            else:
                plot, label = film
                splits[split].append(Sample(film_id, {"plot": plot, "poster": poster}, label))
    splits = head_of_splits(splits, params.max_per_split, lambda name: (
        f"the {name} split of {root} has no usable film ({len(split_ids[name])} listed, "
        f"{sum(s['split'] == name for s in skipped)} skipped)"))
    return DatasetSplits("mmimdb", "multilabel", list(GENRES), MODALITIES, splits, skipped)


@DATASETS.register("mmimdb")
@dataclass(frozen=True)
class MMIMDbParams(RawDataset):
    root: str
    max_per_split: int | None

    def validate(self, key: str) -> None:
        folder_path(f"{key}.root", self.root)
        optional_positive_int(f"{key}.max_per_split", self.max_per_split)

    def load(self) -> DatasetSplits:
        return load_mmimdb(self)
