"""Shared fixtures: the repository's own params and small real subsets of the embedded ENRICO data."""

import csv
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENRICO = REPO / "data" / "enrico"
BAD_WIREFRAMES = ("50105", "50109")  # real empty files of the dataset


def enrico_rows() -> list[list[str]]:
    with (ENRICO / "design_topics.csv").open(newline="") as f:
        return list(csv.reader(f))[1:]


def make_enrico_subset(dest: Path, n: int, extra_ids=BAD_WIREFRAMES) -> Path:
    """Copy the first `n` UIs of the real ENRICO (plus `extra_ids`) into `dest`, in the real layout."""
    rows = enrico_rows()
    keep = rows[:n] + [r for r in rows if r[0] in extra_ids and r not in rows[:n]]
    (dest / "screenshots").mkdir(parents=True)
    (dest / "wireframes").mkdir()
    with (dest / "design_topics.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["screen_id", "topic"])
        writer.writerows(keep)
    for screen_id, _ in keep:
        shutil.copy(ENRICO / "screenshots" / f"{screen_id}.jpg", dest / "screenshots")
        shutil.copy(ENRICO / "wireframes" / f"{screen_id}.png", dest / "wireframes")
    return dest


@pytest.fixture
def one_thread():
    """Run a test module single-threaded (`pytestmark = pytest.mark.usefixtures("one_thread")`).

    Small tensor ops on 2 cores shared with other processes: intra-op threads spin-wait and make them
    up to ~100x slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def raw_params() -> dict:
    """The repository's params.yaml as a plain dict, to modify per test."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="session")
def venv_env() -> dict:
    """Environment for subprocesses (dvc, stage scripts) that finds this interpreter's `python` and `dvc`."""
    import os

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def stage_env() -> dict:
    """Environment for running a stage script directly: it imports the library of this tree, as dvc.yaml's
    `PYTHONPATH=src` makes it (the virtualenv's editable install may point at another checkout)."""
    import os

    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


def non_scalar_keys(tree, path: str = "") -> list[str]:
    """The dotted keys of every list or other non-scalar value in a metrics JSON tree.

    DVC shows a metrics file's nested dicts under dotted keys (`dvc metrics diff`, `dvc exp show`) but
    nothing inside a list, so every number a user compares must be a leaf of dicts only. Scalars: numbers,
    strings, booleans, null.
    """
    if isinstance(tree, dict):
        return [key for name, value in tree.items()
                for key in non_scalar_keys(value, f"{path}.{name}" if path else str(name))]
    if tree is None or isinstance(tree, (str, int, float, bool)):
        return []
    return [f"{path or '<root>'} ({type(tree).__name__})"]


def assert_scalar_metrics(tree, source: str = "metrics") -> None:
    """Fail naming each key of `tree` (a metrics file's JSON) whose value DVC would not show: see `non_scalar_keys`."""
    bad = non_scalar_keys(tree)
    assert not bad, f"{source}: not a scalar, DVC would not show it: {', '.join(bad)}"


def run(cmd: list[str], cwd: Path, env: dict) -> str:
    """Run a command, failing the test with its output if it fails; returns stdout."""
    import subprocess

    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def make_dvc_repo(dest: Path, env: dict, edit_params=None, enrico_uis: int = 24) -> Path:
    """A fresh git + DVC repository with this project's pipeline, code and a small real ENRICO subset."""
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):  # dvc init keeps this .dvcignore
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "stages", dest / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    make_enrico_subset(dest / "data" / "enrico", enrico_uis)
    shutil.copytree(REPO / "data" / "synthetic", dest / "data" / "synthetic")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    if edit_params:
        edit_params(params)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest, env)
    # A repository-local identity: CI machines need not have a global one, and `dvc exp` commits too.
    run(["git", "config", "user.name", "fli2moe tests"], dest, env)
    run(["git", "config", "user.email", "tests@fli2moe.invalid"], dest, env)
    run(["git", "commit", "-q", "--allow-empty", "-m", "root"], dest, env)
    run(["dvc", "init", "-q"], dest, env)
    # The project's DVC settings: no analytics, the offline plots page and the plot templates.
    for name in ("config", "plots_page.html"):
        shutil.copy(REPO / ".dvc" / name, dest / ".dvc" / name)
    shutil.copytree(REPO / ".dvc" / "plots", dest / ".dvc" / "plots")
    run(["git", "add", "-A"], dest, env)
    run(["git", "commit", "-q", "-m", "project"], dest, env)
    return dest


def write_feature_set(folder: Path, sizes=None, tokens=(3, 4), dims=(5, 6), num_classes=3, seed=0) -> dict:
    """A small feature set in the contract's format whose label is learnable from both modalities.

    Class k adds +4 to feature k of token 0 of modality "a" and -4 to feature k of the last real
    token of modality "b"; modality "b" has padding (its last slots masked out in half the samples).
    """
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from fli2moe.artifacts import write_json

    sizes = sizes or {"train": 60, "val": 20, "test": 20}
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = {}
    for split, n in sizes.items():
        labels = rng.integers(0, num_classes, n)
        a = rng.standard_normal((n, tokens[0], dims[0])).astype(np.float32)
        b = rng.standard_normal((n, tokens[1], dims[1])).astype(np.float32)
        lengths = np.where(rng.random(n) < 0.5, tokens[1], tokens[1] - 1)
        mask_b = np.arange(tokens[1])[None] < lengths[:, None]
        a[np.arange(n), 0, labels] += 4.0
        b[np.arange(n), lengths - 1, labels] -= 4.0
        save_file({"a.tokens": torch.from_numpy(a).half(), "a.mask": torch.ones(n, tokens[0], dtype=torch.bool),
                   "b.tokens": torch.from_numpy(b).half(), "b.mask": torch.from_numpy(mask_b),
                   "labels": torch.from_numpy(labels.astype(np.int64))}, folder / f"{split}.safetensors")
        ids[split] = [f"{split}{i}" for i in range(n)]
    manifest = {"dataset": "toy", "task": "multiclass", "label_names": [f"c{k}" for k in range(num_classes)],
                "splits": {s: len(v) for s, v in ids.items()}, "skipped": [], "ids": ids,
                "modalities": [{"name": name, "kind": "synthetic", "encoder": "none", "revision": "none", "dim": d,
                                "tokens": t, "grid": None} for name, t, d in zip("ab", tokens, dims)]}
    write_json(folder / "manifest.json", manifest)
    return manifest
