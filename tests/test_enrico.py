from dataclasses import replace

import pytest

from fli2moe.datasets import DataError
from fli2moe.datasets.enrico import load_enrico, split_cut
from fli2moe.params import load_params
from conftest import BAD_WIREFRAMES, REPO, enrico_rows, make_enrico_subset


@pytest.fixture
def enrico_params():
    return load_params(REPO / "params.yaml").data["enrico"]


def test_full_dataset_gives_the_usual_split_and_reports_the_two_bad_wireframes(enrico_params):
    data = load_enrico(replace(enrico_params, root=str(REPO / "data" / "enrico")))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 947, "val": 219, "test": 292}
    assert [s["id"] for s in data.skipped] == list(BAD_WIREFRAMES)
    assert all("wireframes/" in s["reason"] and s["split"] is None for s in data.skipped)
    ids = [s.id for split in data.splits.values() for s in split]
    assert len(set(ids)) == 1458 and not set(ids) & set(BAD_WIREFRAMES)
    assert len(data.label_names) == 20
    labels = dict(enrico_rows())
    assert all(data.label_names[s.label] == labels[s.id] for split in data.splits.values() for s in split)


def test_split_is_seeded(tmp_path, enrico_params):
    root = make_enrico_subset(tmp_path / "enrico", 40)
    params = replace(enrico_params, root=str(root))
    first = [s.id for s in load_enrico(params).splits["train"]]
    assert first == [s.id for s in load_enrico(params).splits["train"]]
    assert first != [s.id for s in load_enrico(replace(params, split_seed=7)).splits["train"]]
    assert split_cut(1458, [0.65, 0.15, 0.20]) == (947, 1166)


def test_max_per_split_keeps_the_head_of_each_split(tmp_path, enrico_params):
    root = make_enrico_subset(tmp_path / "enrico", 40)
    full = load_enrico(replace(enrico_params, root=str(root)))
    small = load_enrico(replace(enrico_params, root=str(root), max_per_split=3))
    assert {k: [s.id for s in v] for k, v in small.splits.items()} == {k: [s.id for s in v[:3]] for k, v in full.splits.items()}


def test_missing_root_names_the_folder_and_how_to_get_it(tmp_path, enrico_params):
    with pytest.raises(DataError) as e:
        load_enrico(replace(enrico_params, root=str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in str(e.value) and "data.enrico.root" in str(e.value)


@pytest.mark.parametrize("content, message", [
    ("id,label\n1,list\n", "header"),
    ("screen_id,topic\n320,list\nabc,list\n", "design_topics.csv:3"),
    ("screen_id,topic\n320,list\n320,form\n", "appears twice"),
    ("screen_id,topic\n320,\n", "design_topics.csv:2"),
    ("screen_id,topic\n", "no rows"),
])
def test_malformed_label_file(tmp_path, enrico_params, content, message):
    root = make_enrico_subset(tmp_path / "enrico", 3)
    (root / "design_topics.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        load_enrico(replace(enrico_params, root=str(root)))


def test_missing_and_corrupt_images_are_skipped_by_id(tmp_path, enrico_params):
    root = make_enrico_subset(tmp_path / "enrico", 30, extra_ids=())
    rows = enrico_rows()[:30]
    (root / "screenshots" / f"{rows[0][0]}.jpg").unlink()
    (root / "wireframes" / f"{rows[1][0]}.png").write_bytes(b"not a png at all")
    data = load_enrico(replace(enrico_params, root=str(root)))
    skipped = {s["id"]: s["reason"] for s in data.skipped}
    assert set(skipped) == {rows[0][0], rows[1][0]}
    assert "missing file screenshots/" in skipped[rows[0][0]]
    assert "undecodable wireframes/" in skipped[rows[1][0]]
    assert sum(len(v) for v in data.splits.values()) == 28
