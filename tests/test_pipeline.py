"""The real `dvc repro` on a small real subset, in a temporary git repository."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import yaml
from safetensors.torch import load_file

from fli2moe.features import load_split, read_manifest
from conftest import assert_scalar_metrics, make_dvc_repo, run

pytestmark = pytest.mark.slow


def tiny(params):
    params["datasets"] = ["enrico"]
    params["data"]["enrico"]["max_per_split"] = 4
    params["extract"]["batch_size"] = 4


def test_extract_stage_runs_under_dvc_and_is_cached(tmp_path, venv_env):
    repo = make_dvc_repo(tmp_path / "repo", venv_env, tiny)
    run(["dvc", "repro", "extract@enrico"], repo, venv_env)
    manifest = read_manifest(repo / "features" / "enrico")
    assert manifest["splits"] == {"train": 4, "val": 4, "test": 4}
    assert [s["id"] for s in manifest["skipped"]] == ["50105", "50109"]
    assert load_split(repo / "features" / "enrico", "test", manifest)["labels"].shape == (4,)
    metrics = json.loads((repo / "metrics" / "extract" / "enrico.json").read_text())
    assert metrics["skipped"] == 2 and metrics["tokens"] == {"screenshot": 32, "wireframe": 32}

    assert "didn't change" in run(["dvc", "repro", "extract@enrico"], repo, venv_env)
    # Model code is not a dependency of extract: changing it never re-extracts features.
    (repo / "src" / "fli2moe" / "models" / "fusion.py").write_text("# changed model code\n")
    assert "up to date" in run(["dvc", "status", "extract@enrico"], repo, venv_env)
    # A param the stage reads does invalidate it.
    params = (repo / "params.yaml").read_text().replace("batch_size: 4", "batch_size: 3")
    (repo / "params.yaml").write_text(params)
    status = run(["dvc", "status", "extract@enrico"], repo, venv_env)
    assert "extract@enrico" in status and re.search(r"modified:\s+extract\n", status)


def test_a_killed_extract_leaves_nothing_that_git_or_dvc_sees(tmp_path, venv_env):
    """kill -9 of `dvc repro` while extract writes features: its temporaries stay in the ignored .tmp/, never in
    features/ (where they would enter the report stage's dependency hash), and the next run removes them."""
    def slow_extract(params):
        tiny(params)
        params["data"]["enrico"]["max_per_split"] = 8
        params["extract"]["batch_size"] = 2

    repo = make_dvc_repo(tmp_path / "repo", venv_env, slow_extract)
    dvc = subprocess.Popen(["dvc", "repro", "extract@enrico"], cwd=repo, env=venv_env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = []
    deadline = time.monotonic() + 300
    while not parts and dvc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        parts = list((repo / ".tmp").glob("features%2Fenrico+*/**/*.bin"))  # a split's batches being written
    assert dvc.poll() is None, "extract ended before it could be killed while writing features"
    os.killpg(dvc.pid, signal.SIGKILL)
    dvc.wait()
    assert parts and not (repo / "features" / "enrico").exists()

    run(["dvc", "repro", "extract@enrico"], repo, venv_env)
    assert list((repo / ".tmp").iterdir()) == []
    hidden = [p for folder in ("features", "metrics") for p in (repo / folder).rglob(".*")]
    assert hidden == [] or all(p.name == ".gitignore" for p in hidden), hidden
    changed = run(["git", "status", "--porcelain", "--untracked-files=all"], repo, venv_env).splitlines()
    assert sorted(changed) == ["?? dvc.lock", "?? metrics/extract/enrico.json"], changed
    assert "up to date" in run(["dvc", "status", "extract@enrico"], repo, venv_env)


def tiny_training(params):
    params["data"]["enrico"]["max_per_split"] = 8
    params["data"]["synthetic"]["sizes"] = [32, 8, 8]
    params["extract"]["batch_size"] = 8
    params["model"].update(hidden=8, heads=2)
    params["moe"]["router_hidden"] = 8
    params["train"].update(epochs=1, seeds=[0, 1], batch_size=8)  # two seeds: every stage explains both
    params["train"]["overrides"] = {"synthetic": {"epochs": 2, "token_dropout": 0.15}}
    params["attribution"].update(examples=4, random_repeats=2, bootstrap=50)
    params["probe"].update(examples=2, candidates=2, evaluations=40)
    # synthetic probes all 16 tokens (params.yaml's override): two owen contexts cost 216 evaluations
    params["probe"]["overrides"]["synthetic"]["evaluations"] = 240
    params["ablate"].update(budgets=[1, 2], random_repeats=2, permutations=50, bootstrap=50)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def assert_metrics_are_scalars(repo) -> None:
    """Every metrics file DVC compares (metrics/ but its timings, and reports/summary.json) holds scalars only."""
    files = [path for path in (repo / "metrics").rglob("*.json") if path.parent.parent.name != "timing"]
    stages = {path.parent.name for path in files}
    assert stages == {"extract", "train", "baselines", "attribution", "probe", "ablate"}
    for path in [*files, repo / "reports" / "summary.json"]:
        assert_scalar_metrics(json.loads(path.read_text()), str(path.relative_to(repo)))


def test_exp_run_with_more_experts_retrains_only_the_moe_models(tmp_path, venv_env):
    repo = make_dvc_repo(tmp_path / "repo", venv_env, tiny_training, enrico_uis=40)
    first = run(["dvc", "repro"], repo, venv_env)
    # moe_plain is trained on moe_plain_datasets only: enrico by default.
    assert stages_run(first) == {f"{stage}@{dataset}{model}" for dataset in ("enrico", "synthetic") for stage, model in
                                 [("extract", ""), ("train", ""), ("train_dense", ""), ("baselines", ""),
                                  ("attribute", "-fl_i2moe"), ("attribute", "-dense"), ("probe", "-fl_i2moe"),
                                  ("probe", "-dense"), ("ablate", "-fl_i2moe"), ("ablate", "-dense")]} \
        | {"train_plain@enrico", "report"}
    page = (repo / "reports" / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 8 and all((repo / "reports" / image).is_file() for image in images)
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert set(summary["enrico"]) == {"fl_i2moe", "moe_plain", "dense"}
    assert set(summary["synthetic"]) == {"fl_i2moe", "dense"}
    assert_metrics_are_scalars(repo)
    # Every budget of ablate.budgets, under the same key in the ablate metrics and in the summary.
    ablate = json.loads((repo / "metrics" / "ablate" / "enrico-fl_i2moe.json").read_text())
    assert {"budget_1", "budget_2"} <= set(ablate) and ablate["budget_2"]["sii"]["vs_random_candidates"]["n"] == 2
    assert set(summary["enrico"]["fl_i2moe"]["budget_2"]) == {"sii_vs_random_candidates", "rg_vs_random_candidates"}
    # Every explanation stage explained both trained seeds, and every headline figure is over both.
    for stage in ("attribution", "probe", "ablate"):
        for key in ("enrico-fl_i2moe", "synthetic-dense"):
            assert json.loads((repo / "metrics" / stage / f"{key}.json").read_text())["seeds"] == 2, (stage, key)
            assert sorted(p.name for p in (repo / "results" / stage / key).glob("seed_*")) == ["seed_0", "seed_1"]
    figure = summary["synthetic"]["fl_i2moe"]["synergy_precision@1"]
    assert figure["seeds"] == 2 and figure["low"] <= figure["mean"] <= figure["high"]
    assert summary["enrico"]["dense"]["gini"]["seeds"] == 2 and summary["enrico"]["dense"]["gini"]["std"] > 0
    assert summary["verdicts"]["concentration"]["enrico"] in ("supported", "not supported", "inconclusive")
    run(["git", "add", "-A"], repo, venv_env)
    run(["git", "commit", "-q", "-m", "baseline run"], repo, venv_env)
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]

    output = run(["dvc", "exp", "run", "-S", "moe.num_experts=5"], repo, venv_env)
    assert stages_run(output) == {f"{stage}@{dataset}{model}" for dataset in ("enrico", "synthetic")
                                  for stage, model in [("train", ""), ("attribute", "-fl_i2moe"),
                                                       ("probe", "-fl_i2moe"), ("ablate", "-fl_i2moe")]} \
        | {"train_plain@enrico", "report"}
    lock_after = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert lock_after["train_dense@enrico"] == lock_before["train_dense@enrico"]
    assert lock_after["train@enrico"]["params"]["params.yaml"]["moe"]["num_experts"] == 5
    routing = load_file(repo / "checkpoints" / "enrico-fl_i2moe" / "test_routing.safetensors")["weights"]
    assert routing.shape[-1] == 5  # [seeds, N_test, experts]
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo, venv_env))
    assert "metrics/train/enrico-fl_i2moe.json" in diff and "metrics/attribution/enrico-fl_i2moe.json" in diff
    assert not any("dense" in path for path in diff)
    changed = diff["reports/summary.json"]
    assert any(name.startswith("enrico.fl_i2moe.") for name in changed)
    # A budget other than the first shows in the diff: DVC flattens dicts, not lists.
    assert any(name.startswith("budget_2.") for name in diff["metrics/ablate/enrico-fl_i2moe.json"])
    assert any(name.startswith("enrico.fl_i2moe.budget_2.") for name in changed)
    assert not any(".dense." in name for name in changed)
    # The experiment, compared with the committed baseline run: params and metrics both show the change.
    experiment = json.loads(run(["dvc", "exp", "diff", "--json"], repo, venv_env))
    change = experiment["params"]["params.yaml"]["moe.num_experts"]
    assert (change["old"], change["new"]) == (4, 5)
    assert "reports/summary.json" in experiment["metrics"]
    assert "up to date" in run(["dvc", "status"], repo, venv_env)

    # All tokens as candidates, screened and refined (issue 17): only the explanation stages downstream of the
    # probes re-run, and the ablation and the report take the probes' top pairs as they are.
    output = run(["dvc", "exp", "run", "-S", "probe.candidates=all", "-S", "probe.estimator=screen_and_refine",
                  "-S", "probe.evaluations=3000"], repo, venv_env)
    assert stages_run(output) == {f"{stage}@{dataset}-{model}" for stage in ("probe", "ablate")
                                  for dataset in ("enrico", "synthetic") for model in ("fl_i2moe", "dense")} | {"report"}
    assert_metrics_are_scalars(repo)
    for key in ("enrico-fl_i2moe", "synthetic-dense"):
        for seed in (0, 1):
            sii = load_file(repo / "results" / "probe" / key / f"seed_{seed}" / "interactions.safetensors")
            folder = repo / "features" / key.split("-")[0]
            features = load_file(folder / "test.safetensors")
            a, b = (features[f"{m['name']}.mask"][sii["index"]].sum(1) for m in read_manifest(folder)["modalities"])
            # Every cross pair of the real tokens was screened; the contenders alone carry an interval.
            assert (~sii["sii"].isnan()).flatten(1).sum(1).tolist() == (a * b).tolist()
            assert 0 < int((~sii["sii_se"].isnan()).sum()) <= int((a * b).sum()) / 8 + 2
        ablate = json.loads((repo / "metrics" / "ablate" / f"{key}.json").read_text())
        assert ablate["budget_2"]["sii"]["vs_random_candidates"]["n"] == 2
    images = re.findall(r'<img src="([^"]+)"', (repo / "reports" / "index.html").read_text())
    assert len(images) >= 8 and all((repo / "reports" / image).is_file() for image in images)
    assert "up to date" in run(["dvc", "status"], repo, venv_env)
