import dataclasses
import shutil

import pytest
import yaml

from fli2moe.params import Params, ParamsError, load_params
from conftest import REPO


def test_repository_params_load():
    params = load_params(REPO / "params.yaml")
    assert params.datasets and set(params.datasets) <= set(params.data)
    assert params.extract.image_encoder == "efficientnet-lite0"


@pytest.mark.parametrize("edit, key", [
    (lambda p: p.update(datasets=["enrico", "imagenet"]), "datasets"),
    (lambda p: p.update(models=["dense", "gpt"]), "models"),
    (lambda p: p["extract"].update(batch_size=0), "extract.batch_size"),
    (lambda p: p["extract"].update(batch_size=2.5), "extract.batch_size"),
    (lambda p: p["extract"].update(num_workers=-1), "extract.num_workers"),
    (lambda p: p["extract"].update(image_encoder="resnet50"), "extract.image_encoder"),
    (lambda p: p["extract"].update(text_encoder="hf:"), "extract.text_encoder"),
    (lambda p: p["extract"].update(image_size=[250, 128]), "extract.image_size[0]"),
    (lambda p: p["extract"].update(batchsize=8), "extract.batchsize"),
    (lambda p: p["extract"].pop("max_tokens"), "extract.max_tokens"),
    (lambda p: p["data"]["enrico"].update(split=[0.7, 0.2, 0.2]), "data.enrico.split"),
    (lambda p: p["data"]["enrico"].update(max_per_split=0), "data.enrico.max_per_split"),
    (lambda p: p["data"].pop("enrico"), "data.enrico"),
    (lambda p: p.update(device="tpu"), "device"),
    (lambda p: p.update(threads=0), "threads"),
    (lambda p: p.update(threads="all"), "threads"),
    (lambda p: p.update(threads=1.5), "threads"),
    (lambda p: p.update(sede=1), "sede"),
    (lambda p: p["model"].update(hidden=30, heads=4), "model.hidden"),
    (lambda p: p["moe"].update(perturb="dropout"), "moe.perturb"),
    (lambda p: p["moe"].update(tau=0), "moe.tau"),
    (lambda p: p["train"].update(seeds=[]), "train.seeds"),
    (lambda p: p["train"].update(lr=-1e-3), "train.lr"),
    (lambda p: p["explain"].update(seeds=[7]), "explain.seeds"),
    (lambda p: p["explain"].update(seeds="some"), "explain.seeds"),
    (lambda p: p["explain"].update(seeds=[0, 0]), "explain.seeds"),
    (lambda p: p["explain"].update(baseline="blur"), "explain.baseline"),
    (lambda p: p["attribution"].update(k_percents=[5, 150]), "attribution.k_percents[1]"),
    (lambda p: p["attribution"].update(method="lime"), "attribution.method"),
    (lambda p: p["probe"].update(estimator="exact", candidates=9), "probe.candidates"),
    (lambda p: p["probe"].update(rg_keep=1.5), "probe.rg_keep"),
    (lambda p: p["probe"].update(indices=["sii", "sii"]), "probe.indices"),
    (lambda p: p["probe"].update(indices=["sii", "shapley"]), "probe.indices"),
    (lambda p: p["probe"].update(evaluations=0), "probe.evaluations"),
    (lambda p: p["probe"].update(num_contexts=128), "probe.num_contexts was replaced by probe.evaluations"),
    (lambda p: p["probe"].update(scheme="permutation"), "probe.scheme"),
    (lambda p: p["probe"].update(estimator="racing"), "probe.estimator"),
    (lambda p: p["probe"].update(contenders=0), "probe.contenders"),
    (lambda p: p["probe"].update(screen_share=1.0), "probe.screen_share"),
    (lambda p: p["probe"].update(screen_share=True), "probe.screen_share"),
    (lambda p: p["data"]["synthetic"].update(tokens=2), "data.synthetic.tokens"),
    (lambda p: p["train"]["overrides"].update(imagenet={"lr": 0.1}), "train.overrides"),
    (lambda p: p["train"]["overrides"].update(enrico={"overrides": {}}), "train.overrides.enrico"),
    (lambda p: (p["explain"].update(seeds=[0]), p["train"]["overrides"].update(enrico={"seeds": [1, 2]})),
     "explain.seeds"),
    (lambda p: p["probe"]["overrides"].update(enrico={"estimator": "exact", "candidates": "all"}),
     "probe.overrides.enrico.estimator"),
    (lambda p: p["train"]["overrides"].update(enrico={"lr": 0}), "train.overrides.enrico.lr"),
    (lambda p: p.update(moe_plain_datasets=["mmimdb"]), "moe_plain_datasets"),
    (lambda p: p.update(moe_plain_datasets="enrico"), "moe_plain_datasets"),
    (lambda p: p.update(models=["fl_i2moe", "moe_plain"], moe_plain_datasets=["enrico"]), "moe_plain_datasets"),
    (lambda p: p["ablate"].update(budgets=[1, 0]), "ablate.budgets[1]"),
    (lambda p: p["ablate"].update(quantity="loss"), "ablate.quantity"),
])

def test_impossible_values_are_rejected_naming_the_key(raw_params, edit, key):
    edit(raw_params)
    with pytest.raises(ParamsError) as e:
        Params.from_dict(raw_params)
    assert key in str(e.value)


def test_train_overrides_apply_to_their_dataset_only(raw_params):
    raw_params["train"]["overrides"] = {"synthetic": {"lr": 0.01, "epochs": 3}}
    train = Params.from_dict(raw_params).train
    assert (train.for_dataset("synthetic").lr, train.for_dataset("synthetic").epochs) == (0.01, 3)
    assert train.for_dataset("enrico").lr == raw_params["train"]["lr"]
    assert train.for_dataset("synthetic").seeds == train.seeds


def test_probe_overrides_apply_to_their_dataset_only(raw_params):
    raw_params["probe"]["overrides"] = {"synthetic": {"candidates": "all", "evaluations": 64}}
    probe = Params.from_dict(raw_params).probe
    assert (probe.for_dataset("synthetic").candidates, probe.for_dataset("synthetic").evaluations) == ("all", 64)
    assert probe.for_dataset("enrico") == dataclasses.replace(probe, overrides={})


def test_hf_encoders_are_accepted(raw_params):
    raw_params["extract"].update(image_encoder="hf:openai/clip-vit-base-patch32", text_encoder="hf:roberta-base")
    assert Params.from_dict(raw_params).extract.text_encoder == "hf:roberta-base"


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("seed: [1\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("written", ["1e-5", "1e-4", "3e-4", "5e-05"])
def test_small_floats_round_trip_through_dvc_set_param(tmp_path, written):
    """`dvc exp run -S train.lr=1e-5` rewrites params.yaml with DVC's writer (`1e-05`); the loader reads it
    as DVC does, and a hand-written `lr: 1e-4` (the papers' value) is a number too."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    apply_overrides(path, [f"train.lr={written}", f"train.weight_decay={written}"])
    params = load_params(path)
    assert params.train.lr == params.train.weight_decay == float(written)
    path.write_text((REPO / "params.yaml").read_text().replace("lr: 0.0003 ", f"lr: {written} "))
    assert load_params(path).train.lr == float(written)
