"""MMHS150K (Gomez et al., WACV 2020): 150,000 tweets with an image each, binary hate speech.

Layout of the folder (`data.mmhs150k.root`; the authors' MMHS150K.zip, unzipped):
    MMHS150K_GT.json           {tweet_id: {"tweet_text": str, "labels": [3 annotator labels 0..5], ...}}
    img_resized/<id>.jpg       the tweet's image
    img_txt/<id>.json          {"img_text": str}: OCR text of the image, only for images with text
    splits/{train,val,test}_ids.txt   the official split, one tweet id per line

Annotator labels: 0 NotHate, 1 Racist, 2 Sexist, 3 Homophobe, 4 Religion, 5 OtherHate. The target
is binary, as in the paper: "hate" (1) when at least 2 of the 3 annotators gave a non-zero label,
else "not_hate" (0). URLs (the https://t.co/... links Twitter appends) are removed from the tweet
and the OCR text, and runs of whitespace collapse to one space; a tweet that was only a link
becomes an empty string, which the text encoder turns into its special tokens alone.

`data.mmhs150k.ocr` decides what becomes of the OCR text:
    append    (default) text = tweet + " " + OCR text when the image has some
    modality  a third modality, image_text (empty string when the image has no OCR file)
    ignore    img_txt/ is not read

A tweet listed in a split file but absent from MMHS150K_GT.json, without 3 labels in 0..5 or
without tweet_text, whose image is missing or does not decode, or (unless ocr is ignore) whose
OCR file does not parse is reported in `skipped` (id, split, reason) and left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from fli2moe.datasets import (DATASETS, DataError, DatasetSplits, Modality, RawDataset, Sample, head_of_splits,
                              read_json_file, unreadable_reason)
from fli2moe.validation import choice, folder_path, optional_positive_int

LABEL_NAMES = ["not_hate", "hate"]
OCR_MODES = ("append", "modality", "ignore")  # the image's OCR text: appended to the tweet | a third modality | unused
SPLITS = ("train", "val", "test")
_URL = re.compile(r"https?://\S+")
_GT = "MMHS150K_GT.json"
_HOW_TO_GET = ("MMHS150K is distributed by its authors (Gomez et al. 2020, https://gombru.github.io/2019/10/09/MMHS/: "
               "MMHS150K.zip); unzip it and point data.mmhs150k.root in params.yaml at the folder holding "
               f"{_GT}, img_resized/, img_txt/ and splits/.")


def modalities(ocr: str) -> list[Modality]:
    """tweet text and image, plus the image's OCR text as image_text when `ocr` is "modality"."""
    return [Modality("tweet", "text"), Modality("image", "image")] + (
        [Modality("image_text", "text")] if ocr == "modality" else [])


def clean_text(text: str) -> str:
    """`text` without URLs, whitespace runs collapsed to one space."""
    return " ".join(_URL.sub(" ", text).split())


def hate_label(labels: list[int]) -> int:
    """1 (hate) when at least 2 of the 3 annotators gave a non-zero label, else 0."""
    return int(sum(label != 0 for label in labels) >= 2)


def read_ids(path: Path) -> list[str]:
    """Tweet ids of one split file, in file order (blank lines ignored)."""
    if not path.is_file():
        raise DataError(f"{path} is missing. {_HOW_TO_GET}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_ground_truth(path: Path) -> dict:
    gt = read_json_file(path, _HOW_TO_GET)
    if not isinstance(gt, dict):
        raise DataError(f"{path}: expected an object keyed by tweet id, got {type(gt).__name__}")
    return gt


def read_tweet(entry) -> tuple[str, int] | str:
    """(cleaned tweet text, binary label) of one ground-truth entry, or why it cannot be used."""
    labels = entry.get("labels") if isinstance(entry, dict) else None
    if not (isinstance(labels, list) and len(labels) == 3
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 5 for x in labels)):
        return f"expected 3 annotator labels in 0..5 in {_GT}, got {labels!r}"
    if not isinstance(entry.get("tweet_text"), str):
        return f"no tweet_text in {_GT}"
    return clean_text(entry["tweet_text"]), hate_label(labels)


def read_ocr(path: Path) -> tuple[str, str | None]:
    """(cleaned OCR text, None), ("", None) when the image has no OCR file, or ("", why it is unusable)."""
    if not path.is_file():
        return "", None
    try:
        text = json.loads(path.read_text()).get("img_text")
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        return "", f"unreadable {path.parent.name}/{path.name}: {type(e).__name__}: {e}"
    if not isinstance(text, str):
        return "", f"no img_text string in {path.parent.name}/{path.name}"
    return clean_text(text), None


def load_mmhs150k(params) -> DatasetSplits:
    """`params`: the `data.mmhs150k` section (root, ocr, max_per_split)."""
    root = Path(params.root)
    if not root.is_dir():
        raise DataError(f"MMHS150K folder {root} does not exist. {_HOW_TO_GET}")
    split_ids = {split: read_ids(root / "splits" / f"{split}_ids.txt") for split in SPLITS}
    gt = read_ground_truth(root / _GT)

    splits, skipped = {}, []
    for split, ids in split_ids.items():
        splits[split] = []
        for tweet_id in ids:
            if tweet_id not in gt:
                skipped.append({"id": tweet_id, "split": split, "reason": f"not in {_GT}"})
                continue
            tweet = read_tweet(gt[tweet_id])
            image = root / "img_resized" / f"{tweet_id}.jpg"
            ocr, ocr_reason = read_ocr(root / "img_txt" / f"{tweet_id}.json") if params.ocr != "ignore" else ("", None)
            reasons = [r for r in (tweet if isinstance(tweet, str) else None, unreadable_reason(image), ocr_reason) if r]
            if reasons:
                skipped.append({"id": tweet_id, "split": split, "reason": "; ".join(reasons)})
                continue
            text, label = tweet
            inputs = {"tweet": f"{text} {ocr}".strip() if params.ocr == "append" else text, "image": image}
            if params.ocr == "modality":
                inputs["image_text"] = ocr
            splits[split].append(Sample(tweet_id, inputs, label))
    splits = head_of_splits(splits, params.max_per_split, lambda name: (
        f"the {name} split of {root} has no usable tweet ({len(split_ids[name])} listed, "
        f"{sum(s['split'] == name for s in skipped)} skipped)"))
    return DatasetSplits("mmhs150k", "multiclass", list(LABEL_NAMES), modalities(params.ocr), splits, skipped)


@DATASETS.register("mmhs150k")
@dataclass(frozen=True)
class MMHS150KParams(RawDataset):
    root: str
    ocr: str
    max_per_split: int | None

    def validate(self, key: str) -> None:
        folder_path(f"{key}.root", self.root)
        choice(f"{key}.ocr", self.ocr, OCR_MODES)
        optional_positive_int(f"{key}.max_per_split", self.max_per_split)

    def load(self) -> DatasetSplits:
        return load_mmhs150k(self)
