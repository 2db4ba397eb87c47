"""The extract stage end to end on real ENRICO UIs: contract, skipped samples, determinism."""

import subprocess
import sys
from dataclasses import replace

import torch
import yaml

from fli2moe.datasets.enrico import load_enrico
from fli2moe.encoders import EfficientNetLite0
from fli2moe.extraction import extract_feature_set
from fli2moe.features import load_split, read_manifest
from fli2moe.params import load_params
from conftest import REPO, make_enrico_subset, stage_env


def test_feature_set_contract_and_a_sample_that_fails_mid_run(tmp_path):
    root = make_enrico_subset(tmp_path / "enrico", 24)
    params = load_params(REPO / "params.yaml")
    dataset = load_enrico(replace(params.data["enrico"], root=str(root)))
    # A truncated JPEG passes the loader's header check and only fails when decoded in a worker.
    victim = dataset.splits["val"][1]
    data = victim.inputs["screenshot"].read_bytes()
    victim.inputs["screenshot"].write_bytes(data[: len(data) // 3])
    encoder = EfficientNetLite0((256, 128))
    out = tmp_path / "features"
    (out / "stale.safetensors").parent.mkdir()
    (out / "stale.safetensors").write_bytes(b"from an older run")
    manifest = extract_feature_set(dataset, {"screenshot": encoder, "wireframe": encoder}, out,
                                   batch_size=4, num_workers=2, device=torch.device("cpu"))

    assert manifest == read_manifest(out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.safetensors", "train.safetensors",
                                                     "val.safetensors"]
    assert [(s["id"], s["split"]) for s in manifest["skipped"]] == [("50105", None), ("50109", None), (victim.id, "val")]
    assert "OSError" in manifest["skipped"][-1]["reason"]
    assert manifest["ids"]["val"] == [s.id for s in dataset.splits["val"] if s.id != victim.id]
    assert manifest["modalities"][0] == {"name": "screenshot", "kind": "image", "encoder": "efficientnet-lite0",
                                         "revision": encoder.revision, "dim": 1280, "tokens": 32, "grid": [8, 4]}
    train = load_split(out, "train", manifest)
    assert train["screenshot.tokens"].shape == (len(dataset.splits["train"]), 32, 1280)
    assert train["labels"].tolist() == [s.label for s in dataset.splits["train"]]
    # Row i of the file is the encoding of ids[i]: recompute one sample directly.
    sample = dataset.splits["train"][5]
    with torch.inference_mode():
        direct, _ = encoder.encode(encoder.preprocessor.prepare(sample.inputs["wireframe"])[None])
    assert torch.allclose(train["wireframe.tokens"][5].float(), direct[0], atol=2e-2, rtol=1e-2)


def test_stage_output_is_byte_identical_across_processes(tmp_path):
    root = make_enrico_subset(tmp_path / "enrico", 12)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["enrico"]["root"] = str(root)
    raw["extract"]["batch_size"] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    for run in ("a", "b"):
        subprocess.run([sys.executable, str(REPO / "stages" / "extract.py"), "--dataset", "enrico",
                        "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / run),
                        "--metrics-dir", str(tmp_path / f"{run}-metrics"),
                        "--timing-dir", str(tmp_path / f"{run}-timing")], check=True, capture_output=True,
                       env=stage_env())
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(files) == 4
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    metrics = "extract/enrico.json"  # deterministic figures only; the timings have their own file
    assert (tmp_path / "a-metrics" / metrics).read_bytes() == (tmp_path / "b-metrics" / metrics).read_bytes()


def test_stage_rejects_bad_params_before_any_work(tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["extract"]["batch_size"] = 0
    raw["data"]["enrico"]["root"] = str(tmp_path / "missing")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, str(REPO / "stages" / "extract.py"), "--dataset", "enrico",
                             "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=stage_env())
    assert result.returncode == 2 and "extract.batch_size" in result.stderr
    assert not (tmp_path / "out").exists()
    raw["extract"]["batch_size"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, str(REPO / "stages" / "extract.py"), "--dataset", "enrico",
                             "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=stage_env())
    assert result.returncode == 2 and str(tmp_path / "missing") in result.stderr
