"""custom: a feature set written outside the pipeline ("bring your own features", README).

Any number of `data.<name>` entries with `kind: custom` (or the entry named `custom` itself) each name a
folder `root` holding manifest.json and {train,val,test}.safetensors in the feature-set format of
features.py. `extract@<name>` checks every split against the manifest and the contract's values
(`features.load_split`) and copies the set into features/<name>, so every later stage runs on it as on any
extracted dataset.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fli2moe.artifacts import atomic_folder
from fli2moe.datasets import DATASETS, FeatureDataset
from fli2moe.features import SPLITS, FeatureSetError, load_split, read_manifest
from fli2moe.validation import folder_path


def import_feature_set(source: str | Path, dest: str | Path) -> dict:
    """Check a feature set written outside the pipeline (every split against its manifest, values
    included) and copy it whole into `dest`; a set that breaks the contract is refused, with a
    `FeatureSetError` naming the file, tensor and first offending sample, before anything is written."""
    if not Path(source).is_dir():
        raise FeatureSetError(f"the feature-set folder {source} does not exist: write your features there "
                              "(README, 'Bring your own features') or point its data.<name>.root at them")
    manifest = read_manifest(source)
    for split in dict.fromkeys([*SPLITS, *manifest["splits"]]):  # the required ones, then any other
        load_split(source, split, manifest)
    with atomic_folder(dest) as folder:
        for name in ["manifest.json", *(f"{split}.safetensors" for split in manifest["splits"])]:
            shutil.copyfile(Path(source) / name, folder / name)
    return manifest


@DATASETS.register("custom")
@dataclass(frozen=True)
class CustomParams(FeatureDataset):
    root: str  # a feature set written outside the pipeline (features.py's contract)

    def validate(self, key: str) -> None:
        folder_path(f"{key}.root", self.root)

    def write_features(self, out: str | Path) -> dict:
        return import_feature_set(self.root, out)
