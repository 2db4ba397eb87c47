"""The attribute stage on a small trained model: outputs, their shapes and their determinism."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from fli2moe.explaining import explained_examples
from fli2moe.params import load_params
from conftest import REPO, stage_env, write_feature_set

pytestmark = pytest.mark.usefixtures("one_thread")


def stage(cwd, name, model):
    result = subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), "--dataset", "toy",
                             "--model", model], cwd=cwd, capture_output=True, text=True, env=stage_env())
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    """Two workspaces with the same toy feature set and trained models, each attributed on its own."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["model"].update(hidden=16, heads=2)
    raw["moe"].update(router_hidden=16)
    raw["train"].update(epochs=2, seeds=[0], batch_size=16, lr=3e-3)
    raw["attribution"].update(examples=10, random_repeats=3, bootstrap=100, k_percents=[25, 50])
    roots = []
    for name in ("a", "b"):
        root = tmp_path_factory.mktemp(name)
        write_feature_set(root / "features" / "toy")
        (root / "params.yaml").write_text(yaml.safe_dump(raw))
        for model in ("fl_i2moe", "dense"):
            if roots:  # training is tested for determinism elsewhere: reuse the first workspace's models
                shutil.copytree(roots[0] / "checkpoints" / f"toy-{model}", root / "checkpoints" / f"toy-{model}")
            else:
                stage(root, "train", model)
            stage(root, "attribute", model)
        roots.append(root)
    return roots


@pytest.mark.parametrize("model, experts", [("fl_i2moe", 4), ("dense", 1)])
def test_attribute_outputs(workspaces, model, experts):
    root = workspaces[0]
    folder = root / "results" / "attribution" / f"toy-{model}" / "seed_0"
    maps = load_file(folder / "maps.safetensors")
    T = 3 + 4  # toy modalities a (3 tokens) and b (4 tokens)
    assert maps["expert"].shape == (10, experts, T) and maps["whole"].shape == (10, T)
    assert torch.allclose(maps["expert"].sum(1), maps["whole"], atol=1e-6)
    assert maps["target"].sum(1).tolist() == [1] * 10  # multiclass: one target class each
    views = 1 + (2 * experts if experts > 1 else 0)  # whole, then per expert: contribution and prediction
    faith = pd.read_parquet(folder / "faithfulness.parquet")
    assert len(faith) == views * 10 * 2 * 2  # views x examples x modalities x K
    concentration = pd.read_parquet(folder / "concentration.parquet")
    assert ("expert_js_distance" in concentration) == (experts > 1)
    assert concentration["entropy"].between(0, 1).all() and concentration["gini"].between(0, 1).all()
    metrics = json.loads((root / "metrics" / "attribution" / f"toy-{model}.json").read_text())
    row = metrics["faithfulness"]["whole/prediction/a/comprehensiveness"]
    assert row["aopc_low"] <= row["aopc"] <= row["aopc_high"] and row["n"] == 10
    assert metrics["examples"] == 10 and set(metrics["concentration"]) >= {"whole"}


def test_attribute_outputs_are_byte_identical_across_runs(workspaces):
    a, b = workspaces
    for model in ("fl_i2moe", "dense"):
        for path in (f"metrics/attribution/toy-{model}.json", f"metrics/attribution/curves/toy-{model}.csv",
                     f"results/attribution/toy-{model}/seed_0/maps.safetensors"):
            assert (a / path).read_bytes() == (b / path).read_bytes(), path


def test_explained_examples_targets_are_the_predictions(workspaces, monkeypatch):
    monkeypatch.chdir(workspaces[0])
    params = load_params("params.yaml")
    ex = explained_examples("toy", "dense", params.explain, 7, 0)
    assert ex.projected.shape[0] == 7 and ex.ids == [f"test{i}" for i in range(7)]
    with torch.no_grad():
        logits = ex.model(ex.projected, ex.mask).logits
    assert torch.equal(ex.target.float().argmax(1), logits.argmax(1))
    # The mean baseline of a slot is the mean projected real training token of its modality.
    assert torch.allclose(ex.baseline[0], ex.baseline[2]) and not torch.allclose(ex.baseline[0], ex.baseline[3])
    assert np.isfinite(ex.baseline.numpy()).all()


def test_probe_stage_covers_the_attributed_examples(workspaces):
    root = workspaces[1]
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["probe"].update(examples=None, candidates=2, evaluations=40)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    stage(root, "probe", "dense")
    metrics = json.loads((root / "metrics" / "probe" / "toy-dense.json").read_text())
    assert metrics["examples"] == 10 and metrics["pairs"] == 10 * 2 * 2  # 2 candidates per modality
    tensors = load_file(root / "results" / "probe" / "toy-dense" / "seed_0" / "interactions.safetensors")
    assert tensors["sii"].shape == (10, 2, 2) and tensors["index"].tolist() == list(range(10))
    raw["probe"]["examples"] = 11
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, str(REPO / "stages" / "probe.py"), "--dataset", "toy", "--model", "dense"],
                            cwd=root, capture_output=True, text=True, env=stage_env())
    assert result.returncode == 2 and "probe.examples" in result.stderr


def test_every_explanation_stage_runs_on_the_i2moe_recipe(tmp_path):
    """The router on encoder tokens widens each projected token (side channels): training, the maps, the probes and
    the pair ablation all run on it, and the expert maps still add up to the whole map."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["model"].update(hidden=16, heads=2)
    raw["moe"].update(router_hidden=16, router_input="encoder", router_activation="relu", router_dropout=0.5,
                      expert_init="shared")
    raw["train"].update(epochs=2, seeds=[0], batch_size=16, lr=3e-3)
    raw["attribution"].update(examples=6, random_repeats=2, bootstrap=50, k_percents=[50])
    raw["probe"].update(examples=4, candidates=2, evaluations=60, bootstrap=50)
    raw["ablate"].update(budgets=[1], random_repeats=2, permutations=50, bootstrap=50)
    write_feature_set(tmp_path / "features" / "toy")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    for name in ("train", "attribute", "probe", "ablate"):
        stage(tmp_path, name, "fl_i2moe")
    config = json.loads((tmp_path / "checkpoints" / "toy-fl_i2moe" / "config.json").read_text())["config"]
    assert config["router_input"] == "encoder" and config["expert_init"] == "shared"
    maps = load_file(tmp_path / "results" / "attribution" / "toy-fl_i2moe" / "seed_0" / "maps.safetensors")
    assert maps["expert"].shape == (6, 4, 7) and torch.allclose(maps["expert"].sum(1), maps["whole"], atol=1e-6)
    probe = json.loads((tmp_path / "metrics" / "probe" / "toy-fl_i2moe.json").read_text())
    assert probe["pairs"] == 4 * 2 * 2 and np.isfinite(probe["mean_abs_sii"]["mean"])
    ablate = json.loads((tmp_path / "metrics" / "ablate" / "toy-fl_i2moe.json").read_text())
    assert np.isfinite(ablate["budget_1"]["sii"]["vs_random_candidates"]["difference"])
