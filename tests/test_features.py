"""The feature-set contract's checks on a hand-made multilabel feature set (a user's own features)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from fli2moe.datasets.custom import import_feature_set
from fli2moe.features import FeatureSetError, load_split, read_manifest
from conftest import write_feature_set


@pytest.fixture
def multilabel(tmp_path):
    """The toy feature set of `write_feature_set` turned multilabel: 3 labels, float32 multi-hot [N, 3]."""
    folder = tmp_path / "toy"
    manifest = write_feature_set(folder)
    for split in manifest["splits"]:
        tensors = load_file(folder / f"{split}.safetensors")
        tensors["labels"] = torch.nn.functional.one_hot(tensors["labels"], 3).float()
        save_file(tensors, folder / f"{split}.safetensors")
    manifest["task"] = "multilabel"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_multilabel_feature_set_loads(multilabel):
    manifest = read_manifest(multilabel)
    labels = load_split(multilabel, "train", manifest)["labels"]
    assert labels.dtype == torch.float32 and labels.shape == (60, 3)


@pytest.mark.parametrize("labels, message", [
    (lambda y: y[:, :2].contiguous(), "labels is torch.float32 [60, 2], the manifest implies torch.float32 [60, 3]"),
    (lambda y: y.argmax(1), "labels is torch.int64 [60], the manifest implies torch.float32 [60, 3]"),
    (lambda y: y[:59].contiguous(), "labels is torch.float32 [59, 3], the manifest implies torch.float32 [60, 3]"),
])
def test_wrong_label_count_or_type_names_the_file_and_the_shapes(multilabel, labels, message):
    path = multilabel / "train.safetensors"
    tensors = load_file(path)
    tensors["labels"] = labels(tensors["labels"])
    save_file(tensors, path)
    with pytest.raises(FeatureSetError) as e:
        load_split(multilabel, "train")
    assert str(path) in str(e.value) and message in str(e.value)


def test_label_names_are_the_label_count(multilabel):
    manifest = json.loads((multilabel / "manifest.json").read_text())
    manifest["label_names"].append("c3")  # 4 names for 3 label columns
    (multilabel / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeatureSetError, match=r"train.safetensors: labels is torch.float32 \[60, 3\], "
                                              r"the manifest implies torch.float32 \[60, 4\]"):
        load_split(multilabel, "train")


def test_a_custom_feature_set_is_imported_whole(tmp_path, multilabel):
    manifest = import_feature_set(multilabel, tmp_path / "features" / "custom")
    assert manifest["task"] == "multilabel"
    for name in ("manifest.json", "train.safetensors", "val.safetensors", "test.safetensors"):
        assert (tmp_path / "features" / "custom" / name).read_bytes() == (multilabel / name).read_bytes()


def test_a_broken_custom_feature_set_is_refused_before_anything_is_written(tmp_path, multilabel):
    tensors = load_file(multilabel / "test.safetensors")
    tensors["a.tokens"] = tensors["a.tokens"].float()  # the contract wants float16
    save_file(tensors, multilabel / "test.safetensors")
    with pytest.raises(FeatureSetError, match=r"test.safetensors: a.tokens is torch.float32 .* implies torch.float16"):
        import_feature_set(multilabel, tmp_path / "features" / "custom")
    assert not (tmp_path / "features").exists()
    with pytest.raises(FeatureSetError, match=r"folder .*nowhere does not exist: .*data.<name>.root"):
        import_feature_set(tmp_path / "nowhere", tmp_path / "features" / "custom")


def test_extract_stage_imports_a_custom_feature_set(tmp_path, multilabel, raw_params):
    import subprocess
    import sys

    import yaml

    from conftest import REPO, stage_env

    raw_params["datasets"], raw_params["moe_plain_datasets"] = ["custom"], []
    raw_params["data"]["custom"]["root"] = str(multilabel)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    result = subprocess.run([sys.executable, str(REPO / "stages" / "extract.py"), "--dataset", "custom", "--params",
                             str(tmp_path / "params.yaml"), "--out", str(tmp_path / "out"), "--metrics-dir",
                             str(tmp_path / "metrics"), "--timing-dir", str(tmp_path / "timing")], capture_output=True,
                            text=True, env=stage_env())
    assert result.returncode == 0, result.stderr
    assert read_manifest(tmp_path / "out") == read_manifest(multilabel)
    assert json.loads((tmp_path / "metrics" / "extract" / "custom.json").read_text())["samples"] == {
        "train": 60, "val": 20, "test": 20}
