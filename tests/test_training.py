"""Training loop, task metrics and the train stage on small feature sets with a known signal."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from fli2moe.params import load_params
from fli2moe.task_metrics import aggregate, mean_std, task_metrics
from fli2moe.masking import modality_ids
from fli2moe.models import build_model
from fli2moe.features import load_split_tensors
from fli2moe.training import drop_tokens, model_config, train_seed
from conftest import REPO, assert_scalar_metrics, stage_env, write_feature_set


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def toy(tmp_path):
    manifest = write_feature_set(tmp_path / "toy")
    splits = {s: load_split_tensors(tmp_path / "toy", s, manifest) for s in ("train", "val", "test")}
    params = load_params(REPO / "params.yaml")
    small = replace(params, model=replace(params.model, hidden=16, heads=2),
                    moe=replace(params.moe, router_hidden=16),
                    train=replace(params.train, epochs=8, batch_size=16, lr=3e-3, seeds=[0]))
    return manifest, splits, small


def test_multiclass_metrics_match_hand_computation():
    labels = np.array([0, 0, 1, 2, 2, 2])
    scores = np.eye(3)[[0, 1, 1, 2, 2, 0]]  # predictions 0 1 1 2 2 0: four right
    metrics = task_metrics(scores, labels, "multiclass")
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # per-class F1: class 0 P=1/2 R=1/2 -> 1/2; class 1 P=1/2 R=1 -> 2/3; class 2 P=1 R=2/3 -> 4/5
    assert metrics["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
    assert "auroc" not in metrics


def test_binary_auroc_and_multilabel_f1():
    binary = task_metrics(np.array([[0, 1], [0, -1], [0, 2], [0, -2]]), np.array([1, 0, 0, 1]), "multiclass")
    # positives scored 1, -2; negatives -1, 2: of the 4 (pos, neg) pairs only (1, -1) is ordered right
    assert binary["auroc"] == pytest.approx(0.25)
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    logits = np.array([[2.0, -1.0], [3.0, -2.0], [-1.0, 1.0]])  # predicts [1,0], [1,0], [0,1]
    multilabel = task_metrics(logits, labels, "multilabel")
    assert multilabel["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))  # TP 3, FP 0, FN 1
    assert multilabel["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_a_never_predicted_class_scores_minus_inf_but_nan_and_plus_inf_are_refused():
    # Class 2 absent from a linear probe's training split: -inf for every sample, never the argmax.
    scores = np.array([[1.0, 0.0, -np.inf], [0.0, 1.0, -np.inf], [2.0, 1.0, -np.inf]])
    assert task_metrics(scores, np.array([0, 1, 2]), "multiclass")["accuracy"] == pytest.approx(2 / 3)
    binary = task_metrics(np.array([[0.0, -np.inf], [1.0, -np.inf]]), np.array([0, 1]), "multiclass")
    assert binary["auroc"] == 0.5 and binary["accuracy"] == 0.5
    for bad in (np.nan, np.inf):
        scores[1, 0] = bad
        with pytest.raises(ValueError, match="1 of 3 samples are NaN or \\+inf \\(first: row 1\\)"):
            task_metrics(scores, np.array([0, 1, 2]), "multiclass")


def test_mean_and_sample_std_over_seeds():
    assert mean_std([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(np.sqrt(2.0))}
    assert mean_std([0.7]) == {"mean": 0.7, "std": 0.0}
    assert aggregate([{"a": 1.0}, {"a": 2.0}])["a"]["mean"] == 1.5


@pytest.mark.parametrize("name", ["fl_i2moe", "moe_plain", "dense"])
def test_every_model_learns_the_planted_signal_and_is_seeded(toy, name):
    manifest, splits, params = toy
    config = model_config(name, manifest, params.model, params.moe)
    run = train_seed(name, config, splits, "multiclass", params.train, 0, torch.device("cpu"))
    assert run.test["accuracy"] >= 0.8  # chance is 1/3
    best = max(row["val_accuracy"] for row in run.curves)
    assert run.curves[run.best_epoch - 1]["val_accuracy"] == best
    assert run.val["accuracy"] == pytest.approx(best)  # the kept weights are the selected epoch's
    interaction = [row["interaction_loss"] for row in run.curves]
    assert (max(interaction) > 0) == (name == "fl_i2moe")
    weights = run.test_weights
    assert weights.shape == (20, 4 if name != "dense" else 1) and torch.allclose(weights.sum(1), torch.ones(20))
    again = train_seed(name, config, splits, "multiclass", params.train, 0, torch.device("cpu"))
    assert again.curves == run.curves
    assert all(torch.equal(again.state_dict[k], v) for k, v in run.state_dict.items())
    other = train_seed(name, config, splits, "multiclass", replace(params.train, epochs=1), 1, torch.device("cpu"))
    assert other.curves[0] != run.curves[0]


def test_model_config_reads_moe_only_for_moe_models(toy):
    manifest, _, params = toy
    assert not hasattr(model_config("dense", manifest, params.model, params.moe), "num_experts")
    assert model_config("moe_plain", manifest, params.model, params.moe).num_experts == params.moe.num_experts
    with pytest.raises(ValueError, match="moe.num_experts"):
        model_config("fl_i2moe", manifest, params.model, replace(params.moe, num_experts=3))


def run_train_stage(cwd, model):
    return subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), "--dataset", "toy", "--model", model],
                          cwd=cwd, capture_output=True, text=True, env=stage_env())


def test_train_stage_outputs_are_byte_identical_across_runs(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["model"].update(hidden=16, heads=2)
    raw["moe"].update(router_hidden=16)
    raw["train"].update(epochs=2, seeds=[0, 1], batch_size=16)
    for run in ("a", "b"):
        write_feature_set(tmp_path / run / "features" / "toy")
        (tmp_path / run / "params.yaml").write_text(yaml.safe_dump(raw))
        result = run_train_stage(tmp_path / run, "fl_i2moe")
        assert result.returncode == 0, result.stderr
    for path in ("metrics/train/toy-fl_i2moe.json", "metrics/train/curves/toy-fl_i2moe.csv",
                 "checkpoints/toy-fl_i2moe/seed1.safetensors", "checkpoints/toy-fl_i2moe/config.json",
                 "checkpoints/toy-fl_i2moe/test_routing.safetensors"):
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path
    metrics = yaml.safe_load((tmp_path / "a" / "metrics/train/toy-fl_i2moe.json").read_text())
    assert set(metrics["best_epoch"]) == {"seed_0", "seed_1"} and metrics["parameters"] > 0
    assert set(metrics["test"]) == {"accuracy", "macro_f1"}
    assert_scalar_metrics(metrics)


def test_train_stage_refuses_too_few_experts_before_training(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["moe"]["num_experts"] = 3
    write_feature_set(tmp_path / "features" / "toy")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = run_train_stage(tmp_path, "fl_i2moe")
    assert result.returncode == 2 and "moe.num_experts" in result.stderr
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics").exists()


def test_token_dropout_replaces_real_tokens_by_their_modality_batch_mean(toy):
    manifest, splits, params = toy
    model = build_model("fl_i2moe", model_config("fl_i2moe", manifest, params.model, params.moe))
    tokens, mask, _ = splits["train"].batch(torch.arange(60), torch.device("cpu"))
    projected, mask_cat = model.project(tokens), model.concat_mask(mask)  # [60, 7, 16], [60, 7]
    dropped = drop_tokens(model, projected, mask_cat, 0.3, torch.Generator().manual_seed(0))
    replaced = (dropped != projected).any(-1)  # [60, 7]
    assert not (replaced & ~mask_cat).any()  # padding is never touched
    real = int(mask_cat.sum())
    share = replaced.sum().item() / real
    assert abs(share - 0.3) < 3 * (0.3 * 0.7 / real) ** 0.5
    ids = modality_ids(model)
    for m in range(2):
        in_m = mask_cat & (ids == m)  # real tokens of modality m
        mean = projected[in_m].mean(0)
        assert torch.allclose(dropped[replaced & (ids == m)], mean.expand(int((replaced & (ids == m)).sum()), -1),
                              atol=1e-6)
    # The baseline is a reference, not something to learn through: replaced slots pass no gradient back.
    projected.retain_grad()
    dropped[replaced].sum().backward()
    assert projected.grad.abs().sum() == 0


def test_token_dropout_changes_training_and_stays_seeded(toy):
    manifest, splits, params = toy
    config = model_config("fl_i2moe", manifest, params.model, params.moe)
    train = replace(params.train, epochs=2)
    plain = train_seed("fl_i2moe", config, splits, "multiclass", train, 0, torch.device("cpu"))
    dropped = [train_seed("fl_i2moe", config, splits, "multiclass", replace(train, token_dropout=0.2), 0,
                          torch.device("cpu")) for _ in range(2)]
    assert plain.curves != dropped[0].curves
    assert all(torch.equal(dropped[0].state_dict[k], dropped[1].state_dict[k]) for k in plain.state_dict)


def test_early_stopping_stops_after_patience_epochs_without_improvement_on_the_same_trajectory(toy):
    """A stopped run is the full run cut short: the same curves up to the stop, so the same epoch is kept
    whenever the full run's best comes before `patience` epochs without improvement."""
    manifest, splits, small = toy
    config = model_config("dense", manifest, small.model, small.moe)
    train = replace(small.train, epochs=8, lr=3e-2)  # a high rate, so that the validation score stalls
    full = train_seed("dense", config, splits, "multiclass", train, 0, torch.device("cpu"))
    scores = [row["val_score"] for row in full.curves]
    # patience 1: the first epoch whose score is no better than every earlier one
    stall = next((e for e in range(2, 9) if scores[e - 1] <= max(scores[:e - 1])), None)
    assert stall is not None, f"the toy run never stalls: {scores}"
    stopped = train_seed("dense", config, splits, "multiclass", replace(train, patience=1), 0, torch.device("cpu"))
    assert len(stopped.curves) == stall
    assert stopped.curves == full.curves[:stall]
    assert stopped.best_epoch == scores.index(max(scores[:stall])) + 1
    assert full.best_epoch >= stopped.best_epoch and len(full.curves) == 8
