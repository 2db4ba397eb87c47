"""Small MM-IMDb and MMHS150K folders in the official layouts, built from the real material in tests/data.

    python tests/make_fixtures.py OUT [--source DIR]     # writes OUT/mmimdb and OUT/mmhs150k

What is real and what is generated (neither dataset's posters, images or tweets could be brought
here; see each PROVENANCE.md in tests/data, which also says what was trimmed):
- MM-IMDb: the ids are the real official ones (the first ids of each list in split.json). The dev
  films carry their real plot and genres from val_text.csv (row i = split["dev"][i]); train and
  test films get generated plots and genres. Posters are generated plain JPEGs.
- MMHS150K: val and test ids are the first ids of the real split files; train ids, tweets, the
  annotators' labels, OCR texts and images are generated.
Each builder injects one sample per fault the loader must report, and returns a `Fixture` saying
what the loader should find.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fli2moe.datasets.mmimdb import GENRES

SOURCE = Path(__file__).resolve().parent / "data"  # vendored: the tests need nothing outside the repository
_WORDS = ("a retired detective returns to the small harbour town where her brother vanished and finds that "
          "the mayor the priest and the lighthouse keeper all remember that winter differently while a storm "
          "cuts the roads and an old letter surfaces in the archive").split()


@dataclass
class Fixture:
    root: Path
    splits: dict[str, list[str]]  # our split name -> ids the loader must keep, in order
    faults: dict[str, tuple[str, str]]  # id -> (split, a fragment of the reason the loader must give)
    truth: dict[str, dict]  # id -> what the loader must read for it (see each builder)


def poster(path: Path, index: int, size=(40, 60)) -> None:
    """A small JPEG of a colour that differs from one index to the next, with a lighter band."""
    colour = ((index * 67) % 256, (index * 131 + 40) % 256, (index * 29 + 90) % 256)
    image = Image.new("RGB", size, colour)
    image.paste(tuple(min(255, c + 80) for c in colour), (0, size[1] // 3, size[0], size[1] // 2))
    image.save(path, "JPEG", quality=90)


def generated_plot(rng: random.Random, words: int) -> str:
    start = rng.randrange(len(_WORDS))
    return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(words)).capitalize() + "."


def shortened(plot: str, fraction: float) -> str:
    """The first words of `plot` (fewer than all of them), so strictly shorter than `plot`."""
    words = plot.split()
    return " ".join(words[: max(1, min(len(words) - 1, int(len(words) * fraction)))]) + "."


def read_val_text(source: Path) -> list[tuple[str, list[str]]]:
    """(plot, genres) of each row of val_text.csv, in file order."""
    with (source / "mmimdb" / "val_text.csv").open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return [(row[0], [g for g, v in zip(header[1:], row[1:]) if v == "1"]) for row in reader]


def make_mmimdb(dest: Path, source: Path = SOURCE, n=(12, 12, 6)) -> Fixture:
    """MM-IMDb layout in `dest`. truth[id] = {"plot": the longest plot, "genres": the film's genres}.

    Faults: train[1] unreadable JSON, train[3] empty plot list, train[5] only an unknown genre,
    dev[2] missing poster, test[4] undecodable poster. train[0] also carries "News" (to be ignored).
    """
    official = json.loads((source / "mmimdb" / "split.json").read_text())
    ids = {"train": official["train"][: n[0]], "dev": official["dev"][: n[1]], "test": official["test"][: n[2]]}
    dev_rows = read_val_text(source)
    (dest / "dataset").mkdir(parents=True)
    (dest / "split.json").write_text(json.dumps(ids, indent=4))

    rng = random.Random(0)
    truth, index = {}, 0
    for split, split_ids in ids.items():
        for i, film_id in enumerate(split_ids):
            if split == "dev":
                plot, genres = dev_rows[i]
            else:
                plot = generated_plot(rng, rng.choice((6, 12, 25, 60)))
                genres = rng.sample(GENRES, rng.randint(1, 3))
            # val_text.csv holds one plot text per film: the shorter alternatives are made up for every film.
            plots = [shortened(plot, 0.5), shortened(plot, 0.25)]
            plots.insert(index % 3, plot)  # the longest plot is first, middle or last
            truth[film_id] = {"plot": plot, "genres": genres}
            (dest / "dataset" / f"{film_id}.json").write_text(json.dumps({"title": f"Film {film_id}", "plot": plots,
                                                                          "genres": genres}))
            poster(dest / "dataset" / f"{film_id}.jpeg", index)
            index += 1

    train, dev, test = ids["train"], ids["dev"], ids["test"]
    truth[train[0]]["genres"].append("News")
    (dest / "dataset" / f"{train[0]}.json").write_text(json.dumps({"plot": [truth[train[0]]["plot"]],
                                                                   "genres": truth[train[0]]["genres"]}))
    (dest / "dataset" / f"{train[1]}.json").write_text('{"plot": ["A film cut off in the mid')
    (dest / "dataset" / f"{train[3]}.json").write_text(json.dumps({"plot": [], "genres": ["Drama"]}))
    (dest / "dataset" / f"{train[5]}.json").write_text(json.dumps({"plot": ["A talk show."], "genres": ["Talk-Show"]}))
    (dest / "dataset" / f"{dev[2]}.jpeg").unlink()
    (dest / "dataset" / f"{test[4]}.jpeg").write_bytes(b"not a jpeg at all")
    faults = {train[1]: ("train", f"unreadable dataset/{train[1]}.json"), train[3]: ("train", "no plot"),
              train[5]: ("train", "none of the 23 genres"), dev[2]: ("val", f"missing file dataset/{dev[2]}.jpeg"),
              test[4]: ("test", f"undecodable dataset/{test[4]}.jpeg")}
    ours = {"train": train, "val": dev, "test": test}
    return Fixture(dest, {s: [i for i in v if i not in faults] for s, v in ours.items()}, faults, truth)


_LABELS_STR = ["NotHate", "Racist", "Sexist", "Homophobe", "Religion", "OtherHate"]
# Annotator label patterns, cycled over the tweets: the first two are not hate, the last two hate.
LABEL_PATTERNS = ([0, 0, 0], [1, 0, 0], [1, 2, 0], [4, 4, 4])


def make_mmhs150k(dest: Path, source: Path = SOURCE, n=(10, 8, 6)) -> Fixture:
    """MMHS150K layout in `dest`. truth[id] = {"labels": 3 annotator labels, "tweet": the tweet without
    URLs, "ocr": the OCR text ("" when the image has none)}.

    Faults: train[7] has two labels, val[3] has no image, val[5] is missing from MMHS150K_GT.json,
    test[2] has an unreadable OCR file (reported unless ocr is ignore). Every third tweet has an OCR
    file; train[4]'s tweet is only a link.
    """
    real = {split: (source / "mmhs150k" / "splits" / f"{split}_ids.txt").read_text().split()
            for split in ("val", "test")}
    ids = {"train": [str(1060000000000000000 + 7919 * k) for k in range(n[0])],
           "val": real["val"][: n[1]], "test": real["test"][: n[2]]}
    for folder in ("splits", "img_resized", "img_txt"):
        (dest / folder).mkdir(parents=True)
    for split, split_ids in ids.items():
        (dest / "splits" / f"{split}_ids.txt").write_text("".join(f"{i}\n" for i in split_ids))

    gt, truth, index = {}, {}, 0
    for split_ids in ids.values():
        for tweet_id in split_ids:
            labels = list(LABEL_PATTERNS[index % len(LABEL_PATTERNS)])
            tweet = f"post {index} about the match at the weekend"
            raw = (f"{tweet} https://t.co/Ab{index}Cd9" if index % 2 else
                   f"post {index} about https://t.co/Zz{index} the match  at the weekend")
            ocr = f"words on picture {index}" if index % 3 == 0 else ""
            truth[tweet_id] = {"labels": labels, "tweet": tweet, "ocr": ocr}
            gt[tweet_id] = {"img_url": f"http://pbs.twimg.com/media/{tweet_id}.jpg",
                            "labels": labels, "tweet_url": f"https://twitter.com/user/status/{tweet_id}",
                            "tweet_text": raw, "labels_str": [_LABELS_STR[x] for x in labels]}
            if ocr:
                (dest / "img_txt" / f"{tweet_id}.json").write_text(json.dumps({"img_text": ocr}))
            poster(dest / "img_resized" / f"{tweet_id}.jpg", index, size=(48, 32))
            index += 1

    train, val, test = ids["train"], ids["val"], ids["test"]
    gt[train[4]]["tweet_text"], truth[train[4]]["tweet"] = "https://t.co/OnlyALink", ""
    gt[train[7]]["labels"] = [1, 0]
    (dest / "img_resized" / f"{val[3]}.jpg").unlink()
    del gt[val[5]]
    (dest / "img_txt" / f"{test[2]}.json").write_text('{"img_text": "cut off')
    (dest / "MMHS150K_GT.json").write_text(json.dumps(gt))
    faults = {train[7]: ("train", "expected 3 annotator labels"), val[3]: ("val", f"missing file img_resized/{val[3]}.jpg"),
              val[5]: ("val", "not in MMHS150K_GT.json"), test[2]: ("test", f"unreadable img_txt/{test[2]}.json")}
    return Fixture(dest, {s: [i for i in v if i not in faults] for s, v in ids.items()}, faults, truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", type=Path, default=SOURCE, help=f"the real material (default {SOURCE})")
    args = parser.parse_args()
    for name, make in (("mmimdb", make_mmimdb), ("mmhs150k", make_mmhs150k)):
        fixture = make(args.out / name, args.source)
        print(f"{fixture.root}: {({s: len(v) for s, v in fixture.splits.items()})} usable, {len(fixture.faults)} faults")


if __name__ == "__main__":
    main()
