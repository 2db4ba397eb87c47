"""The real `dvc repro` on a small real subset, in a temporary git repository."""

import json
import re

import pytest

from fli2moe.features import load_split, read_manifest
from conftest import make_dvc_repo, run

pytestmark = pytest.mark.slow


def tiny(params):
    params["data"]["enrico"]["max_per_split"] = 4
    params["extract"]["batch_size"] = 4


def test_extract_stage_runs_under_dvc_and_is_cached(tmp_path, venv_env):
    repo = make_dvc_repo(tmp_path / "repo", venv_env, tiny)
    run(["dvc", "repro"], repo, venv_env)
    manifest = read_manifest(repo / "features" / "enrico")
    assert manifest["splits"] == {"train": 4, "val": 4, "test": 4}
    assert [s["id"] for s in manifest["skipped"]] == ["50105", "50109"]
    assert load_split(repo / "features" / "enrico", "test", manifest)["labels"].shape == (4,)
    metrics = json.loads((repo / "metrics" / "extract" / "enrico.json").read_text())
    assert metrics["skipped"] == 2 and metrics["tokens"] == {"screenshot": 32, "wireframe": 32}

    assert "didn't change" in run(["dvc", "repro"], repo, venv_env)
    # Model code is not a dependency of extract: changing it never re-extracts features.
    (repo / "src" / "fli2moe" / "models").mkdir(exist_ok=True)
    (repo / "src" / "fli2moe" / "models" / "new_model.py").write_text("# a new model\n")
    assert "up to date" in run(["dvc", "status"], repo, venv_env)
    # A param the stage reads does invalidate it.
    params = (repo / "params.yaml").read_text().replace("batch_size: 4", "batch_size: 3")
    (repo / "params.yaml").write_text(params)
    status = run(["dvc", "status"], repo, venv_env)
    assert "extract@enrico" in status and re.search(r"modified:\s+extract\n", status)
