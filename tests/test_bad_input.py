"""Bad input never passes silently (issue 13): refused with one line naming file, tensor and sample, or
explained with the bad sample skipped and recorded; never a number computed from garbage."""

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from fli2moe.datasets.custom import import_feature_set
from fli2moe.explaining import empty_modalities
from fli2moe.features import FeatureSetError, read_manifest
from fli2moe.interactions import exact, montecarlo
from fli2moe.models import build_model
from fli2moe.params import ParamsError, load_params
from fli2moe.probing import game_degeneracy
from fli2moe.features import load_split_tensors
from fli2moe.training import TrainingError, model_config, train_seed
from conftest import REPO, stage_env, write_feature_set

pytestmark = pytest.mark.usefixtures("one_thread")
SIZES = {"train": 12, "val": 6, "test": 6}


def run_stage(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), *args], cwd=cwd, env=stage_env(),
                          capture_output=True, text=True)


def assert_one_line_refusal(result: subprocess.CompletedProcess, *parts: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for part in parts:
        assert part in result.stderr, (part, result.stderr)


def edit_split(folder: Path, split: str, edit) -> None:
    tensors = load_file(folder / f"{split}.safetensors")
    edit(tensors)
    save_file(tensors, folder / f"{split}.safetensors")


def extract_custom(tmp_path: Path, source: Path, raw_params: dict) -> subprocess.CompletedProcess:
    raw_params["datasets"], raw_params["moe_plain_datasets"] = ["custom"], []
    raw_params["data"]["custom"]["root"] = str(source)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    return run_stage("extract", tmp_path, "--dataset", "custom", "--params", str(tmp_path / "params.yaml"),
                     "--out", str(tmp_path / "out"), "--metrics-dir", str(tmp_path / "metrics"))


# --- the four inputs of the issue --------------------------------------------------------------------

def test_an_overflowed_float16_token_is_refused_naming_file_tensor_and_sample(tmp_path, raw_params):
    source = tmp_path / "custom"
    write_feature_set(source, SIZES)

    def overflow(tensors):
        a = tensors["a.tokens"].float()
        a[4, 1, 2] = 70000.0  # beyond float16's 65504: stored as inf
        tensors["a.tokens"] = a.half()

    edit_split(source, "test", overflow)
    assert torch.isinf(load_file(source / "test.safetensors")["a.tokens"]).any()
    result = extract_custom(tmp_path, source, raw_params)
    assert_one_line_refusal(result, str(source / "test.safetensors"), "a.tokens", "'test4'", "NaN or inf",
                            "65504")
    assert not (tmp_path / "out").exists() and not (tmp_path / "metrics").exists()


def test_one_based_class_labels_are_refused(tmp_path, raw_params):
    source = tmp_path / "custom"
    write_feature_set(source, SIZES)
    for split in SIZES:
        edit_split(source, split, lambda t: t.update(labels=t["labels"] + 1))  # 1..3 for three label_names
    result = extract_custom(tmp_path, source, raw_params)
    first = next(i for i, y in enumerate(load_file(source / "train.safetensors")["labels"].tolist()) if y == 3)
    assert_one_line_refusal(result, str(source / "train.safetensors"), "labels", f"'train{first}'",
                            "outside 0..2", "zero-based")
    assert not (tmp_path / "out").exists()


def test_an_example_with_an_empty_modality_is_skipped_and_recorded_by_every_explanation_stage(tmp_path,
                                                                                              raw_params):
    features = tmp_path / "features" / "toy"
    write_feature_set(features, {"train": 40, "val": 10, "test": 8})
    edit_split(features, "test", lambda t: t["b.mask"][3].fill_(False))  # an empty tweet, a missing poster
    raw_params["model"].update(hidden=16, heads=2)
    raw_params["moe"].update(router_hidden=16)
    raw_params["train"].update(epochs=2, seeds=[0], batch_size=16, lr=3e-3)
    raw_params["attribution"].update(examples=6, random_repeats=2, bootstrap=50, k_percents=[50])
    raw_params["probe"].update(examples=6, candidates=2, estimator="exact", overrides={})
    raw_params["ablate"].update(budgets=[1], random_repeats=2, permutations=100, bootstrap=50)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    expected = [{"example": 3, "id": "test3", "reason": "no real token in b"}]
    for stage, results, metrics in (("train", None, None),
                                    ("attribute", "results/attribution", "metrics/attribution"),
                                    ("probe", "results/probe", "metrics/probe"),
                                    ("ablate", "results/ablate", "metrics/ablate")):
        result = run_stage(stage, tmp_path, "--dataset", "toy", "--model", "dense")
        assert result.returncode == 0, result.stderr
        if results:
            record = json.loads((tmp_path / results / "toy-dense" / "skipped.json").read_text())
            assert record == {"examples": 6, "skipped": expected}, stage
            assert json.loads((tmp_path / metrics / "toy-dense.json").read_text())["skipped"] == 1, stage
    maps = load_file(tmp_path / "results" / "attribution" / "toy-dense" / "seed_0" / "maps.safetensors")
    probe = load_file(tmp_path / "results" / "probe" / "toy-dense" / "seed_0" / "interactions.safetensors")
    assert maps["index"].tolist() == probe["index"].tolist() == [0, 1, 2, 4, 5]
    assert torch.isfinite(probe["sii"][~probe["sii"].isnan()]).all()

    # A Monte Carlo budget that cannot buy the two contexts a standard error needs is refused before any
    # model evaluation, naming the key and the example, and the previous probe results stay as they were.
    before = (tmp_path / "metrics" / "probe" / "toy-dense.json").read_text()
    raw_params["probe"].update(estimator="montecarlo", candidates="all", evaluations=5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    assert_one_line_refusal(run_stage("probe", tmp_path, "--dataset", "toy", "--model", "dense"),
                            "probe.evaluations = 5 is too small", "example 'test0'", "2 contexts cost")
    assert (tmp_path / "metrics" / "probe" / "toy-dense.json").read_text() == before


def test_max_tokens_above_the_text_encoders_limit_is_refused_with_the_params(tmp_path, raw_params):
    raw_params["extract"]["max_tokens"] = 513
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    with pytest.raises(ParamsError, match=r"extract.max_tokens = 513 but the text encoder minilm takes at most 512"):
        load_params(tmp_path / "params.yaml")
    result = run_stage("extract", tmp_path, "--dataset", "enrico", "--params", str(tmp_path / "params.yaml"),
                       "--out", str(tmp_path / "out"))
    assert_one_line_refusal(result, "extract.max_tokens = 513", "at most 512")
    raw_params["extract"].update(max_tokens=64, image_size=[250, 128])  # efficientnet-lite0's stride is 32
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    assert_one_line_refusal(run_stage("extract", tmp_path, "--dataset", "enrico", "--params",
                                      str(tmp_path / "params.yaml")), "extract.image_size[0]", "multiple of 32")


# --- numbers that are not finite ---------------------------------------------------------------------

def test_a_non_finite_training_loss_stops_training_naming_epoch_and_batch(tmp_path, raw_params):
    manifest = write_feature_set(tmp_path, SIZES)
    splits = {s: load_split_tensors(tmp_path, s, manifest) for s in SIZES}
    splits["train"].tokens["a"][:, 0, 0] = float("inf")  # past the contract's check, as a diverging model would
    params = load_params(REPO / "params.yaml")
    config = model_config("dense", manifest, params.model, params.moe)
    with pytest.raises(TrainingError, match=r"dense seed 0, epoch 1, batch 1: the loss is nan"):
        train_seed("dense", config, splits, "multiclass", params.train, 0, torch.device("cpu"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_game_value_is_never_an_interaction_of_zero(bad):
    def value(coalitions):  # v(S) = |S|, except one coalition
        out = coalitions.double().sum(1)
        out[coalitions.all(1)] = bad
        return out

    modality = torch.tensor([0, 0, 1, 1])
    for estimate in (exact(value, modality), montecarlo(value, modality, 64, seed=0)):
        assert not torch.isfinite(estimate["sii"].value).any() and (estimate["sii"].value != 0).all()
    values = value(torch.ones(3, 4, dtype=torch.bool))
    assert game_degeneracy(values).startswith("the target score is NaN or inf on 3 of 3")
    assert game_degeneracy(torch.ones(5)).startswith("constant game")


# --- property-based: corruptions of a small valid feature set -----------------------------------------

KINDS = ("non_finite_token", "label_out_of_range", "label_dtype", "label_names", "empty_split", "missing_split",
         "split_count_mismatch", "tensor_row_mismatch", "all_padding_sample", "one_modality_padding")


@st.composite
def corruptions(draw):
    kind = draw(st.sampled_from(KINDS))
    split = draw(st.sampled_from(tuple(SIZES)))
    row = draw(st.integers(0, SIZES[split] - 1))
    corruption = {"kind": kind, "split": split, "row": row}
    if kind == "non_finite_token":
        modality = draw(st.sampled_from("ab"))
        corruption |= {"modality": modality, "token": draw(st.integers(0, {"a": 2, "b": 3}[modality])),
                       "dim": draw(st.integers(0, {"a": 4, "b": 5}[modality])),
                       "value": draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 70000.0, -1e6]))}
    elif kind == "label_out_of_range":
        corruption["value"] = draw(st.one_of(st.integers(-100, -1), st.integers(3, 100)))
    elif kind == "label_names":
        corruption["value"] = draw(st.sampled_from(["c0 c1 c2", [], ["c0", "c0", "c1"], [0, 1, 2], None]))
    elif kind == "label_dtype":
        corruption["dtype"] = draw(st.sampled_from([torch.float32, torch.int32, torch.uint8]))
    elif kind == "one_modality_padding":
        corruption["modality"] = draw(st.sampled_from("ab"))
    return corruption


def corrupt(folder: Path, c: dict) -> tuple[Path, list[str]]:
    """Apply corruption `c` to the feature set in `folder`: the file at fault and what its message must name."""
    split_file, manifest_file = folder / f"{c['split']}.safetensors", folder / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    sample = f"'{c['split']}{c['row']}'"
    kind = c["kind"]
    if kind == "non_finite_token":
        def edit(t):
            tokens = t[f"{c['modality']}.tokens"].float()
            tokens[c["row"], c["token"], c["dim"]] = c["value"]
            t[f"{c['modality']}.tokens"] = tokens.half()
        edit_split(folder, c["split"], edit)
        return split_file, [f"{c['modality']}.tokens", sample, "NaN or inf"]
    if kind == "label_out_of_range":
        edit_split(folder, c["split"], lambda t: t["labels"].__setitem__(c["row"], c["value"]))
        return split_file, ["labels", sample, f"is {c['value']}, outside 0..2"]
    if kind == "label_dtype":
        edit_split(folder, c["split"], lambda t: t.update(labels=t["labels"].to(c["dtype"])))
        return split_file, ["labels is", "the manifest implies torch.int64"]
    if kind == "label_names":
        manifest["label_names"] = c["value"]
        manifest_file.write_text(json.dumps(manifest))
        return manifest_file, ["label_names"]
    if kind == "empty_split":
        manifest["splits"][c["split"]], manifest["ids"][c["split"]] = 0, []
        manifest_file.write_text(json.dumps(manifest))
        edit_split(folder, c["split"], lambda t: t.update({k: v[:0].contiguous() for k, v in t.items()}))
        return manifest_file, [f"splits.{c['split']} must be a positive sample count, got 0"]
    if kind == "missing_split":
        del manifest["splits"][c["split"]], manifest["ids"][c["split"]]
        manifest_file.write_text(json.dumps(manifest))
        return manifest_file, [f"no split '{c['split']}'", "needs train, val, test"]
    if kind == "split_count_mismatch":
        del manifest["ids"][c["split"]][c["row"]]
        manifest_file.write_text(json.dumps(manifest))
        return manifest_file, [f"splits.{c['split']} = {SIZES[c['split']]}", f"ids.{c['split']}"]
    if kind == "tensor_row_mismatch":
        keep = torch.arange(SIZES[c["split"]]) != c["row"]
        edit_split(folder, c["split"], lambda t: t.update({k: v[keep].contiguous() for k, v in t.items()}))
        return split_file, ["labels is", "the manifest implies"]  # the first tensor checked
    if kind == "all_padding_sample":
        edit_split(folder, c["split"], lambda t: [t[f"{m}.mask"][c["row"]].fill_(False) for m in "ab"])
        return split_file, ["a.mask and b.mask", sample, "no real token in any modality"]
    edit_split(folder, c["split"], lambda t: t[f"{c['modality']}.mask"][c["row"]].fill_(False))
    return None, []  # one empty modality is valid: explained with the sample skipped


TRIED = Counter()


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(corruptions())
def test_every_corruption_is_refused_by_name_or_skipped_and_recorded(c):
    TRIED[c["kind"]] += 1
    with tempfile.TemporaryDirectory() as tmp:
        source, dest = Path(tmp) / "source", Path(tmp) / "features" / "custom"
        write_feature_set(source, SIZES)
        at_fault, names = corrupt(source, c)
        if at_fault is not None:
            with pytest.raises(FeatureSetError) as e:
                import_feature_set(source, dest)
            message = str(e.value)
            assert "\n" not in message and str(at_fault) in message and all(n in message for n in names), \
                (c, message)
            assert not dest.exists()
            return
        manifest = import_feature_set(source, dest)
        split = load_split_tensors(dest, c["split"], read_manifest(dest))
        model = build_model("dense", model_config("dense", manifest, load_params(REPO / "params.yaml").model, None))
        reasons = empty_modalities(model, model.concat_mask(split.mask))
        assert reasons[c["row"]] == f"no real token in {c['modality']}"
        assert all(r is None for i, r in enumerate(reasons) if i != c["row"])


def test_zz_report_how_many_corruptions_were_tried():
    """Runs after the property test (file order): the count goes to the test log for the issue's note."""
    print(f"\ncorruptions tried: {sum(TRIED.values())} {dict(sorted(TRIED.items()))}")
    if TRIED:
        assert set(TRIED) == set(KINDS)
