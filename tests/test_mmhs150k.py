"""The MMHS150K loader on a small folder in the official layout built around the real val/test ids."""

from dataclasses import replace

import pytest
import torch

from fli2moe.datasets import DataError
from fli2moe.datasets.mmhs150k import clean_text, hate_label, load_mmhs150k, read_ids
from fli2moe.params import Params, ParamsError, load_params
from conftest import REPO
from make_fixtures import LABEL_PATTERNS, SOURCE, make_mmhs150k


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return make_mmhs150k(tmp_path_factory.mktemp("data") / "mmhs150k")


@pytest.fixture
def load(fixture):
    """Load the fixture with data.mmhs150k from params.yaml, fields overridden by keyword."""
    defaults = load_params(REPO / "params.yaml").data["mmhs150k"]
    return lambda root=fixture.root, **fields: load_mmhs150k(replace(defaults, root=str(root), **fields))


def test_real_split_files():
    val, test = (read_ids(SOURCE / "mmhs150k" / "splits" / f"{s}_ids.txt") for s in ("val", "test"))
    assert (len(val), len(test), len(set(val) | set(test))) == (5000, 10000, 15000)
    assert all(i.isdigit() and len(i) == 19 for i in val + test)


def test_official_splits_in_order_with_faults_reported_by_id(fixture, load):
    data = load()
    assert data.task == "multiclass" and data.label_names == ["not_hate", "hate"]
    assert {k: [s.id for s in v] for k, v in data.splits.items()} == fixture.splits
    assert {s["id"]: s["split"] for s in data.skipped} == {i: split for i, (split, _) in fixture.faults.items()}
    for item in data.skipped:
        assert fixture.faults[item["id"]][1] in item["reason"], item


@pytest.mark.parametrize("labels, hate", list(zip(LABEL_PATTERNS, (0, 0, 1, 1))))
def test_hate_needs_two_of_three_non_zero_annotators(fixture, load, labels, hate):
    assert hate_label(labels) == hate
    loaded = [s for split in load().splits.values() for s in split if fixture.truth[s.id]["labels"] == labels]
    assert len(loaded) >= 3 and {s.label for s in loaded} == {hate}


def test_urls_are_removed_from_tweets(fixture, load):
    assert clean_text("look https://t.co/AbC12 at  this\nhttp://x.y/z") == "look at this"
    samples = [s for split in load(ocr="ignore").splits.values() for s in split]
    assert [s.inputs["tweet"] for s in samples] == [fixture.truth[s.id]["tweet"] for s in samples]
    assert "" in [s.inputs["tweet"] for s in samples]  # a tweet that was only a link


def test_ocr_append_modality_and_ignore(fixture, load):
    append, modality, ignore = (load(ocr=mode) for mode in ("append", "modality", "ignore"))
    assert [m.name for m in append.modalities] == [m.name for m in ignore.modalities] == ["tweet", "image"]
    assert [(m.name, m.kind) for m in modality.modalities] == [("tweet", "text"), ("image", "image"),
                                                               ("image_text", "text")]
    with_ocr = 0
    for a, m in zip(*(sum(d.splits.values(), []) for d in (append, modality))):
        truth = fixture.truth[a.id]
        assert a.id == m.id and a.inputs["image"] == fixture.root / "img_resized" / f"{a.id}.jpg"
        assert a.inputs["tweet"] == (f"{truth['tweet']} {truth['ocr']}".strip() if truth["ocr"] else truth["tweet"])
        assert (m.inputs["tweet"], m.inputs["image_text"]) == (truth["tweet"], truth["ocr"])
        with_ocr += bool(truth["ocr"])
    assert 0 < with_ocr < len(sum(append.splits.values(), []))
    # ignore never reads img_txt/, so the tweet whose OCR file is broken is kept.
    broken = next(i for i, (_, reason) in fixture.faults.items() if "img_txt/" in reason)
    assert broken not in {s["id"] for s in ignore.skipped} and broken in [s.id for s in ignore.splits["test"]]
    assert all(set(s.inputs) == {"tweet", "image"} for split in ignore.splits.values() for s in split)


def test_empty_image_text_gives_only_the_special_tokens(load):
    from fli2moe.encoders import minilm

    samples = sum(load(ocr="modality").splits.values(), [])
    texts = [s.inputs["image_text"] for s in samples]
    assert "" in texts and any(texts)
    encoder = minilm(max_tokens=16)
    batch = encoder.preprocessor.collate([encoder.preprocessor.prepare(t) for t in texts])
    with torch.inference_mode():
        tokens, mask = encoder.encode(batch)
    assert tokens.shape == (len(texts), 16, 384) and torch.isfinite(tokens).all()
    assert all(n == 2 for n, t in zip(mask.sum(1).tolist(), texts) if not t)  # [CLS] [SEP]
    assert all(n > 2 for n, t in zip(mask.sum(1).tolist(), texts) if t)


def test_max_per_split_keeps_the_head_of_each_split(fixture, load):
    small = load(max_per_split=3)
    assert {k: [s.id for s in v] for k, v in small.splits.items()} == {k: v[:3] for k, v in fixture.splits.items()}
    assert len(small.skipped) == len(fixture.faults)


def test_load_dataset_dispatches_by_name(fixture, raw_params):
    raw_params["data"]["mmhs150k"]["root"] = str(fixture.root)
    data = Params.from_dict(raw_params).data["mmhs150k"].load()
    assert data.name == "mmhs150k" and len(data.modalities) == 2


@pytest.mark.parametrize("missing", ["", "MMHS150K_GT.json", "splits/train_ids.txt"])
def test_missing_root_or_files_name_the_path_and_how_to_get_it(tmp_path, load, missing):
    root = make_mmhs150k(tmp_path / "mmhs150k").root
    if missing:
        gone = root / missing
        gone.unlink()
    else:
        root = gone = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        load(root=root)
    assert str(gone) in str(e.value) and "data.mmhs150k.root" in str(e.value) and "Gomez" in str(e.value)


def test_unreadable_ground_truth_is_an_error(tmp_path, load):
    root = make_mmhs150k(tmp_path / "mmhs150k").root
    (root / "MMHS150K_GT.json").write_text("{cut")
    with pytest.raises(DataError, match="MMHS150K_GT.json is not valid JSON"):
        load(root=root)


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.update(ocr="both"), "data.mmhs150k.ocr"),
    (lambda d: d.pop("ocr"), "data.mmhs150k.ocr"),
    (lambda d: d.update(max_per_split=-1), "data.mmhs150k.max_per_split"),
])
def test_params_validation(raw_params, edit, key):
    edit(raw_params["data"]["mmhs150k"])
    with pytest.raises(ParamsError) as e:
        Params.from_dict(raw_params)
    assert key in str(e.value)
