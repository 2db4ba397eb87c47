"""Multilabel end to end: the real `dvc repro` of extract -> train -> attribute -> probe -> ablate -> report
(and baselines) on the MM-IMDb fixture with the real MiniLM encoder, in a temporary git + DVC repository."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fli2moe.ablation import budget_key, summary_budgets
from fli2moe.datasets.mmimdb import GENRES
from fli2moe.features import read_manifest
from fli2moe.checkpoints import load_trained_model
from fli2moe.features import load_split_tensors
from conftest import assert_scalar_metrics, make_dvc_repo, run
from make_fixtures import make_mmimdb

pytestmark = pytest.mark.slow

MODELS = ("fl_i2moe", "dense")
ATTRIBUTED, PROBED, BUDGETS = 6, 3, [1, 2]


def tiny_mmimdb(params):
    params["datasets"], params["models"], params["moe_plain_datasets"] = ["mmimdb"], list(MODELS), []
    params["data"]["mmimdb"].update(root="data/mmimdb", max_per_split=None)
    params["extract"].update(image_size=[64, 32], max_tokens=16, batch_size=16, num_workers=0)
    params["model"].update(hidden=8, heads=2)
    params["moe"]["router_hidden"] = 8
    params["train"].update(epochs=2, seeds=[0], batch_size=8)
    params["attribution"].update(examples=ATTRIBUTED, random_repeats=2, bootstrap=50)
    params["probe"].update(examples=PROBED, candidates=2, evaluations=40)
    params["ablate"].update(budgets=BUDGETS, random_repeats=2, permutations=50, bootstrap=50)


def finite_numbers(tree) -> list[float]:
    """Every number in a JSON tree (bools and None left out); fails on a non-finite one."""
    if isinstance(tree, dict):
        return [x for value in tree.values() for x in finite_numbers(value)]
    if isinstance(tree, list):
        return [x for value in tree for x in finite_numbers(value)]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        assert math.isfinite(tree), tree
        return [float(tree)]
    return []


@pytest.fixture(scope="module")
def repo(tmp_path_factory, venv_env):
    repo = make_dvc_repo(tmp_path_factory.mktemp("multilabel") / "repo", venv_env, tiny_mmimdb, enrico_uis=1)
    fixture = make_mmimdb(repo / "data" / "mmimdb", n=(16, 10, 10))
    run(["dvc", "repro"], repo, venv_env)  # the whole DAG, report included
    return repo, fixture


def read_metrics(repo, stage: str, key: str) -> dict:
    return json.loads((repo / "metrics" / stage / f"{key}.json").read_text())


def test_feature_set_is_multilabel_over_the_23_genres(repo):
    repo, fixture = repo
    manifest = read_manifest(repo / "features" / "mmimdb")
    assert manifest["task"] == "multilabel" and manifest["label_names"] == GENRES
    assert manifest["ids"] == fixture.splits and {s["id"] for s in manifest["skipped"]} == set(fixture.faults)
    assert [m["encoder"] for m in manifest["modalities"]] == ["minilm", "efficientnet-lite0"]
    for split, ids in fixture.splits.items():
        labels = load_split_tensors(repo / "features" / "mmimdb", split, manifest).labels
        assert labels.dtype == torch.float32 and labels.shape == (len(ids), 23)
        assert labels.tolist() == [[float(g in fixture.truth[i]["genres"]) for g in GENRES] for i in ids]


@pytest.mark.parametrize("model", MODELS)
def test_train_reports_micro_and_macro_f1(repo, model):
    repo, _ = repo
    metrics = read_metrics(repo, "train", f"mmimdb-{model}")
    for split in ("val", "test"):
        assert set(metrics[split]) == {"micro_f1", "macro_f1"}
        assert all(0.0 <= v["mean"] <= 1.0 and v["std"] == 0.0 for v in metrics[split].values())
    baselines = read_metrics(repo, "baselines", "mmimdb")["test"]
    assert set(baselines) == {"majority", "linear_probe_plot", "linear_probe_poster", "linear_probe_plot+poster"}
    assert all(set(m) == {"micro_f1", "macro_f1"} for m in baselines.values())


@pytest.mark.parametrize("model", MODELS)
def test_explanation_stages_cover_the_expected_examples_with_finite_metrics(repo, model):
    repo, fixture = repo
    key = f"mmimdb-{model}"
    attribution, probe, ablate = (read_metrics(repo, stage, key) for stage in ("attribution", "probe", "ablate"))
    assert attribution["examples"] == ATTRIBUTED
    assert {row["n"] for row in attribution["faithfulness"].values()} == {ATTRIBUTED}
    assert probe["examples"] == PROBED and probe["pairs"] == PROBED * 2 * 2
    assert summary_budgets(ablate) == BUDGETS
    assert {row["n"] for b in BUDGETS for per_ranking in ablate[budget_key(b)].values()
            for row in per_ranking.values()} == {PROBED}
    assert_scalar_metrics(ablate)
    assert set(ablate["unmasked"]) == {"score", "micro_f1", "macro_f1"}
    assert all(finite_numbers(m) for m in (attribution, probe, ablate))
    maps = load_file(repo / "results" / "attribution" / key / "seed_0" / "maps.safetensors")
    assert maps["target"].shape == (ATTRIBUTED, 23) and maps["index"].tolist() == list(range(ATTRIBUTED))


@pytest.mark.parametrize("model", MODELS)
def test_explained_target_is_the_predicted_positive_labels_else_the_top1(repo, model):
    """Recomputed from the trained model's test logits: the attribute stage's recorded target, and the
    ablate stage's unmasked score = mean over the examples of the target labels' mean sigmoid."""
    repo, _ = repo
    key = f"mmimdb-{model}"
    manifest = read_manifest(repo / "features" / "mmimdb")
    test = load_split_tensors(repo / "features" / "mmimdb", "test", manifest)
    trained = load_trained_model(repo / "checkpoints" / key, 0)
    with torch.no_grad():
        tokens, mask, _ = test.batch(torch.arange(ATTRIBUTED), torch.device("cpu"))
        logits = trained.forward_tokens(tokens, mask).logits.double().numpy()  # [N, 23]
    positive = logits > 0
    top1 = np.eye(23, dtype=bool)[logits.argmax(1)]
    expected = np.where(positive.any(1, keepdims=True), positive, top1)  # [N, 23]

    recorded = load_file(repo / "results" / "attribution" / key / "seed_0" / "maps.safetensors")["target"].numpy()
    np.testing.assert_array_equal(recorded, expected)
    probability = 1 / (1 + np.exp(-logits[:PROBED]))
    score = (probability * expected[:PROBED]).sum(1) / expected[:PROBED].sum(1)
    assert read_metrics(repo, "ablate", key)["unmasked"]["score"] == pytest.approx(score.mean(), abs=1e-5)


def test_every_declared_plot_renders(repo, venv_env):
    """The training curves of a multilabel task have no val_accuracy: the plot reads val_score, the selection
    metric under one name for every task."""
    repo, _ = repo
    plots = json.loads(run(["dvc", "plots", "show", "--json"], repo, venv_env))
    assert "errors" not in plots, plots.get("errors")
    train = plots["data"]["metrics/train/curves/mmimdb-fl_i2moe.csv"][0]["content"]
    assert {row["seed"] for row in train["data"]["values"]} == {"0"}
    assert train["encoding"]["y"]["field"] == "val_score"
