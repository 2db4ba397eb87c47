"""What the pipeline wrote, read back for the report: metrics/, timing/, results/, checkpoints/ and features/.

Every reader returns None (or an empty frame) when the stage that writes the file is not part of this
run, e.g. the routing weights of the dense model or planted-pair recovery outside `synthetic`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file
from scipy import stats

from fli2moe.faithfulness import roster_names
from fli2moe.features import read_manifest
from fli2moe.models.fl_i2moe import build_roster
from fli2moe.task_metrics import SEED_PREFIX

TRAINED_MODELS = ("fl_i2moe", "moe_plain", "dense")  # every model the train stages can produce, in table order


@dataclass(frozen=True)
class Routing:
    """Test-split routing weights of a mixture: weights [seeds, N, E], one name per expert."""
    weights: np.ndarray
    experts: list[str]

    def spread(self) -> np.ndarray:
        """[seeds, E]: each expert's routing-weight standard deviation across the test samples (ddof 0), per
        seed: how much the reweighting model varies its weight of that expert from sample to sample."""
        return self.weights.std(axis=1)

    def most_varied(self, level: float = 0.95) -> tuple[str, dict]:
        """The expert whose weight varies most across samples (largest mean spread over seeds) and its spread as
        a headline figure: {mean, std, seeds} over seeds and, with 2 or more seeds, low and high, the
        Student-t interval over seeds, mean +- t_{S-1} std / sqrt(S) (the samples are the same in every seed;
        what varies is the trained model)."""
        spread = self.spread()  # [S, E]
        e = int(spread.mean(0).argmax())
        values, S = spread[:, e], spread.shape[0]
        figure = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if S > 1 else 0.0, "seeds": S}
        if S > 1:
            half = float(stats.t.ppf((1 + level) / 2, S - 1) * figure["std"] / np.sqrt(S))
            figure |= {"low": figure["mean"] - half, "high": figure["mean"] + half}
        return self.experts[e], figure


@dataclass(frozen=True)
class RunOutputs:
    """The outputs of one pipeline run under `root` for the params' `datasets`, explained `models` and
    `moe_plain_datasets`: files of other datasets or models, left over from earlier runs, are never read."""
    root: Path
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    moe_plain_datasets: tuple[str, ...]
    # Per dataset, the probability with which training removed each token (train.token_dropout): 0 means the
    # models never saw a removed token, which every explanation here does to them.
    token_dropout: Mapping[str, float] = field(default_factory=dict)
    # Files already read, by path: every section and table asks again, and they do not change meanwhile.
    _read: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def removal_note(self, dataset: str) -> str:
        """A sentence for the removal-based results on `dataset` when its models were not trained with removed
        tokens (issue 19), else ""."""
        if self.token_dropout.get(dataset, 0.0) > 0:
            return ""
        return (f" Caution: the {dataset} models were trained without removed tokens (train.token_dropout = 0), so "
                "the masked inputs of these explanations lie outside their training distribution.")

    def metrics(self, stage: str, key: str) -> dict | None:
        """metrics/<stage>/<key>.json, e.g. ("train", "enrico-dense"); None when absent. Read-only."""
        return self._json(self.root / "metrics" / stage / f"{key}.json")

    def timing(self, stage: str, key: str) -> dict | None:
        """timing/<stage>/<key>.json: wall seconds, kept out of the DVC metrics; None when absent. Read-only."""
        return self._json(self.root / "timing" / stage / f"{key}.json")

    def _json(self, path: Path) -> dict | None:
        if path not in self._read:
            self._read[path] = json.loads(path.read_text()) if path.is_file() else None
        return self._read[path]

    def curves(self, stage: str, key: str) -> pd.DataFrame:
        path = self.root / "metrics" / stage / "curves" / f"{key}.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    def seed_folders(self, stage: str, key: str) -> list[Path]:
        """results/<stage>/<key>/seed_<s>/ of every explained seed, in ascending seed order."""
        folders = (self.root / "results" / stage / key).glob(f"{SEED_PREFIX}*/")
        return sorted(folders, key=lambda folder: int(folder.name.removeprefix(SEED_PREFIX)))

    def table(self, stage: str, key: str, name: str) -> pd.DataFrame:
        """results/<stage>/<key>/seed_<s>/<name>.parquet of every seed, e.g. ("attribution", "enrico-dense",
        "faithfulness"), one frame with a `seed` column."""
        frames = [pd.read_parquet(path).assign(seed=int(folder.name.removeprefix(SEED_PREFIX)))
                  for folder in self.seed_folders(stage, key) if (path := folder / f"{name}.parquet").is_file()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def tensors(self, stage: str, key: str, name: str) -> dict[str, np.ndarray] | None:
        """results/<stage>/<key>/seed_<s>/<name>.safetensors of the first explained seed (the report draws one
        model's maps and interactions), None when absent."""
        folders = self.seed_folders(stage, key)
        path = folders[0] / f"{name}.safetensors" if folders else None
        return load_file(path) if path is not None and path.is_file() else None

    def trained(self, dataset: str) -> list[str]:
        """The models trained on `dataset` in this run: fl_i2moe, dense, and moe_plain on moe_plain_datasets."""
        return [m for m in TRAINED_MODELS if (m != "moe_plain" or dataset in self.moe_plain_datasets)
                and self.metrics("train", f"{dataset}-{m}") is not None]

    def explained(self, dataset: str, stage: str) -> list[str]:
        """The explained models with outputs of `stage` ("attribution", "probe", "ablate") on `dataset`."""
        return [m for m in self.models if self.metrics(stage, f"{dataset}-{m}") is not None]

    @cached_property
    def manifests(self) -> dict[str, dict]:
        return {d: read_manifest(self.root / "features" / d) for d in self.datasets}

    def routing(self, dataset: str, model: str) -> Routing | None:
        """The mixture's routing weights; None for the dense model (one expert, nothing routed)."""
        folder = self.root / "checkpoints" / f"{dataset}-{model}"
        if folder not in self._read:
            self._read[folder] = self.read_routing(folder)
        return self._read[folder]

    @staticmethod
    def read_routing(folder: Path) -> Routing | None:
        if not (folder / "config.json").is_file():
            return None
        config = json.loads((folder / "config.json").read_text())["config"]
        if "num_experts" not in config:
            return None
        roster = build_roster([m["name"] for m in config["modalities"]], config["num_experts"])
        return Routing(load_file(folder / "test_routing.safetensors")["weights"], roster_names(roster))
