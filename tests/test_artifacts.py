import fcntl
import json
import os
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fli2moe.artifacts import SCRATCH, SafetensorsStreamWriter, atomic_folder, atomic_open, scratch_for, write_json


def feature_batch(rng, n):
    return {"screenshot.tokens": rng.standard_normal((n, 4, 3)).astype(np.float16),
            "screenshot.mask": rng.random((n, 4)) > 0.3,
            "labels": rng.integers(0, 20, n).astype(np.int64),
            "aux": rng.standard_normal((n, 2)).astype(np.float32)}


def test_streamed_file_is_byte_identical_to_safetensors_save_file(tmp_path):
    rng = np.random.default_rng(0)
    batches = [feature_batch(rng, n) for n in (3, 1, 5)]
    writer = SafetensorsStreamWriter(tmp_path / "x.safetensors")
    for batch in batches:
        writer.append(batch)
    writer.close()
    whole = {k: torch.from_numpy(np.concatenate([b[k] for b in batches])) for k in batches[0]}
    save_file(whole, tmp_path / "reference.safetensors")
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "reference.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.safetensors", "x.safetensors"]


def test_inconsistent_batches_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    writer = SafetensorsStreamWriter(tmp_path / "x.safetensors")
    writer.append(feature_batch(rng, 2))
    bad = feature_batch(rng, 2)
    bad["screenshot.tokens"] = bad["screenshot.tokens"][:, :3]
    with pytest.raises(ValueError, match="screenshot.tokens"):
        writer.append(bad)
    with pytest.raises(ValueError, match="keys"):
        writer.append({"labels": np.zeros(2, dtype=np.int64)})
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": 1, "a": 2})
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write("partial")
            raise RuntimeError("interrupted")
    assert json.loads(path.read_text()) == {"a": 2, "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.fixture
def repo(tmp_path):
    """A folder holding dvc.yaml, as the repository root from which DVC runs the stages."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


@pytest.fixture
def umask():
    """Run with a known umask (restored after)."""
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("in_repo", [True, False])
def test_outputs_get_the_ordinary_modes(tmp_path, umask, in_repo):
    if in_repo:
        (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    write_json(tmp_path / "metrics" / "m.json", {"a": 1})
    with atomic_folder(tmp_path / "features" / "toy") as folder:
        writer = SafetensorsStreamWriter(folder / "train.safetensors")
        writer.append({"labels": np.arange(3)})
        writer.close()
    assert mode(tmp_path / "metrics" / "m.json") == 0o666 & ~umask
    assert mode(tmp_path / "features" / "toy") == 0o777 & ~umask
    assert mode(tmp_path / "features" / "toy" / "train.safetensors") == 0o666 & ~umask


def test_temporaries_live_in_the_scratch_folder_of_the_repository(repo):
    with atomic_open(repo / "metrics" / "timing" / "m.json") as f:
        f.write("{}")
        # The target folder holds nothing new while the write runs.
        assert list((repo / "metrics" / "timing").iterdir()) == []
        assert [p.name.rpartition("+")[0] for p in (repo / SCRATCH).iterdir()] == ["metrics%2Ftiming%2Fm.json"]
    assert scratch_for(repo / "metrics" / "timing" / "m.json") == (repo / SCRATCH, "metrics%2Ftiming%2Fm.json")
    with atomic_folder(repo / "features" / "toy") as folder:
        assert folder.parent == repo / SCRATCH
        writer = SafetensorsStreamWriter(folder / "train.safetensors")
        writer.append({"labels": np.arange(3)})
        # A file of a folder being filled has its temporaries beside it, inside that folder.
        assert [p.parent for p in (repo / SCRATCH).rglob("*.bin")] == [folder / writer._dir.name]
        writer.close()
        assert [p.name for p in folder.iterdir()] == ["train.safetensors"]
        assert list((repo / "features").iterdir()) == []
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")) == [
        SCRATCH, "dvc.yaml", "features", "features/toy", "features/toy/train.safetensors", "metrics", "metrics/timing",
        "metrics/timing/m.json"]
    assert list((repo / SCRATCH).iterdir()) == []


def test_a_killed_writer_s_leftovers_are_removed_by_the_next_write_of_the_same_target(repo):
    """kill -9 while filling a folder: its temporary stays in the scratch folder (never in features/) until the
    next write of the same target; another target's temporary held by a running writer is kept."""
    code = ("import sys, time\nfrom fli2moe.artifacts import atomic_folder\n"
            "with atomic_folder(sys.argv[1]) as folder:\n"
            "    (folder / 'train.safetensors').write_bytes(b'partial')\n"
            "    print('writing', flush=True)\n    time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(repo / "features" / "toy")], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.stdout.readline() == "writing\n"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    [leftover] = (repo / SCRATCH).iterdir()
    assert leftover.name.startswith("features%2Ftoy+") and list((repo / "features").iterdir()) == []

    live = repo / SCRATCH / "features%2Fother+0123abcd"  # a running writer of another target
    live.mkdir()
    held = os.open(live, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with atomic_folder(repo / "features" / "other") as folder:
            (folder / "manifest.json").write_text("{}")
            assert live.is_dir()  # held: another write of the same target is running
        with atomic_folder(repo / "features" / "toy") as folder:
            (folder / "manifest.json").write_text("{}")
        assert not leftover.exists() and live.is_dir()
    finally:
        os.close(held)
    assert [p.name for p in (repo / "features" / "toy").iterdir()] == ["manifest.json"]
