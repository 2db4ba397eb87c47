"""`dvc exp` as a user runs it, in a temporary git + DVC repository on a bring-your-own feature set that lives
outside the repository behind a committed symlink (the README's flow for data too large for the repository):
small floats through `-S`, the run-cache across experiments, queued experiments running their own commit's
code, and what `dvc metrics` / `dvc plots` show."""

import json
import os
import re

import pytest

from conftest import make_dvc_repo, run, write_feature_set
from fli2moe.experiments import experiments

pytestmark = pytest.mark.slow


def toy_custom(params):
    params["datasets"], params["models"], params["moe_plain_datasets"] = ["custom"], ["dense"], []
    params["model"].update(hidden=8, heads=2)
    params["moe"]["router_hidden"] = 8
    params["train"].update(epochs=1, seeds=[0], batch_size=16)
    params["attribution"].update(examples=4, random_repeats=2, bootstrap=50)
    params["probe"].update(examples=2, candidates=2, evaluations=40, indices=["sii", "rg", "bii"])
    params["ablate"].update(budgets=[1, 2], random_repeats=2, permutations=50, bootstrap=50)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def stages_restored(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


def metric_keys(tree, prefix="") -> list[str]:
    """Every key path of a metrics tree; a list anywhere fails (DVC shows nothing inside a list)."""
    assert not isinstance(tree, list), f"{prefix} is a list"
    if not isinstance(tree, dict):
        return [prefix]
    return [k for key, value in tree.items() for k in metric_keys(value, f"{prefix}.{key}" if prefix else key)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory, venv_env):
    root = tmp_path_factory.mktemp("experiments")
    write_feature_set(root / "external" / "custom", sizes={"train": 48, "val": 16, "test": 16})
    repo = make_dvc_repo(root / "repo", venv_env, toy_custom, enrico_uis=1)
    os.symlink(root / "external" / "custom", repo / "data" / "custom")
    run(["git", "add", "data/custom"], repo, venv_env)  # git stores the link, not the data behind it
    run(["git", "commit", "-q", "-m", "custom features behind a link"], repo, venv_env)
    first = run(["dvc", "repro"], repo, venv_env)
    assert "report" in stages_run(first)
    run(["git", "add", "-A"], repo, venv_env)
    run(["git", "commit", "-q", "-m", "baseline run"], repo, venv_env)
    return repo


def test_metrics_are_scalars_and_hold_no_wall_time(repo, venv_env):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo, venv_env))[""]["data"]
    assert "reports/summary.json" in shown and "metrics/ablate/custom-dense.json" in shown
    keys = [f"{path}:{key}" for path, entry in shown.items() for key in metric_keys(entry["data"])]
    assert not [k for k in keys if "second" in k or "timing" in k]
    assert any(k.startswith("metrics/ablate/custom-dense.json:budget_2.") for k in keys)
    # The Banzhaf index end to end: probed, ranked by in the ablation, summarised in the report.
    # Every headline figure carries its seed spread next to its mean, each a scalar of its own.
    assert {"metrics/probe/custom-dense.json:mean_abs_bii.mean", "metrics/probe/custom-dense.json:mean_abs_bii.std",
            "metrics/ablate/custom-dense.json:budget_2.bii.vs_random_candidates.difference",
            "reports/summary.json:custom.dense.budget_1.bii_vs_random_candidates.mean",
            "reports/summary.json:custom.dense.budget_1.bii_vs_random_candidates.std",
            "reports/summary.json:custom.dense.mean_abs_bii.mean"} <= set(keys)


def test_queued_experiments_run_their_own_code_and_share_the_run_cache(repo, venv_env):
    # Queued as a named set (python -m fli2moe.experiments queue). DVC writes 1e-5 as `1e-05`: the stages must
    # read it as the number it is. The second experiment trains with the same inputs as the first, so both of
    # its models come from the run-cache.
    (repo / "experiments.yaml").write_text("toy:\n  wd: {train.weight_decay: 1e-5}\n"
                                           "  wd-probe: {train.weight_decay: 1e-5, probe.evaluations: 30}\n")
    queued = run(["python", "-m", "fli2moe.experiments", "queue", "toy"], repo, venv_env)
    assert "-n toy-wd -S train.weight_decay=1e-05" in queued
    library = repo / "src" / "fli2moe" / "training.py"
    committed = library.read_text()
    # Changed after queueing, never committed: the queued experiments must not run it.
    library.write_text(committed + '\nraise RuntimeError("the workspace copy ran")\n')
    try:
        run(["dvc", "exp", "run", "--run-all", "-j", "1"], repo, venv_env)
    finally:
        library.write_text(committed)
    status = run(["dvc", "queue", "status"], repo, venv_env)
    assert re.search(r"toy-wd\s.*Success", status) and re.search(r"toy-wd-probe\s.*Success", status), status
    first, second = (run(["dvc", "queue", "logs", name], repo, venv_env) for name in ("toy-wd", "toy-wd-probe"))
    assert "the workspace copy ran" not in first + second
    assert {"train@custom", "train_dense@custom"} <= stages_run(first)
    assert {"train@custom", "train_dense@custom", "attribute@custom-dense"} <= stages_restored(second)
    assert {"probe@custom-dense", "ablate@custom-dense", "report"} <= stages_run(second)
    assert not stages_run(second) & {"extract@custom", "train@custom", "train_dense@custom"}
    diff = json.loads(run(["dvc", "exp", "diff", "toy-wd", "toy-wd-probe", "--json"], repo, venv_env))
    assert diff["params"]["params.yaml"]["probe.evaluations"] == {"old": 40, "new": 30, "diff": -10}
    assert "metrics/probe/custom-dense.json" in diff["metrics"]
    assert not any("timing" in path for path in diff["metrics"])

    # The claims table of the set, from the experiments' own summaries.
    run(["python", "-m", "fli2moe.experiments", "claims", "toy", "-o", "reports/toy.md"], repo, venv_env)
    table = (repo / "reports" / "toy.md").read_text()
    assert "| claim | subject | wd | wd-probe |" in table
    shown = {r["name"]: r["summary"] for r in experiments(json.loads(run(["dvc", "exp", "show", "--json"], repo,
                                                                          venv_env)))}
    masking = next(line for line in table.splitlines() if line.startswith("| pair-level masking | custom-dense |"))
    verdicts = [shown[f"toy-{e}"]["verdicts"]["pair-level_masking"]["custom-dense"] for e in ("wd", "wd-probe")]
    gains = [shown[f"toy-{e}"]["custom"]["dense"]["budget_1"]["bii_vs_random_candidates"]["mean"]
             for e in ("wd", "wd-probe")]
    cells = masking.split(" | ")[2:]
    assert [c.split(" (")[0] for c in cells] == verdicts
    assert all(f"bii@1 {gain:+.3f} ± " in cell for gain, cell in zip(gains, cells))
    # ... and the record that lets a clone without these experiment refs rebuild it.
    kept = json.loads((repo / "reports" / "toy.json").read_text())["experiments"]
    assert {e: r["summary"] for e, r in kept.items()} == {e: shown[f"toy-{e}"] for e in ("wd", "wd-probe")}


def test_every_declared_plot_renders(repo, venv_env):
    plots = json.loads(run(["dvc", "plots", "show", "--json"], repo, venv_env))
    assert "errors" not in plots, plots.get("errors")
    assert {"metrics/train/curves/custom-fl_i2moe.csv", "metrics/attribution/curves/custom-dense.csv",
            "metrics/ablate/curves/custom-dense.csv"} <= set(plots["data"])
    # The offline page: no script is loaded from elsewhere.
    run(["dvc", "plots", "show", "-o", "page"], repo, venv_env)
    page = (repo / "page" / "index.html").read_text()
    assert "vegaEmbed" in page and not re.search(r"<script[^>]+src=", page)
    status = run(["git", "status", "--porcelain"], repo, venv_env)
    assert "page" in status  # written where asked; dvc_plots/, the default, is ignored
