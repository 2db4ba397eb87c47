"""custom: a feature set written outside the pipeline ("bring your own features", README).

`data.custom.root` (default `data/custom`) holds manifest.json and {train,val,test}.safetensors in the
feature-set format of features.py. `extract@custom` checks every split against the manifest and the
contract's values (`features.load_split`) and copies the set into features/custom, so every later stage
runs on it as on any extracted dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fli2moe.artifacts import atomic_folder
from fli2moe.features import SPLITS, FeatureSetError, load_split, read_manifest


def import_feature_set(source: str | Path, dest: str | Path) -> dict:
    """Check a feature set written outside the pipeline (every split against its manifest, values
    included) and copy it whole into `dest`; a set that breaks the contract is refused, with a
    `FeatureSetError` naming the file, tensor and first offending sample, before anything is written."""
    if not Path(source).is_dir():
        raise FeatureSetError(f"the custom feature-set folder {source} does not exist: write your features there "
                              "(README, 'Bring your own features') or point data.custom.root at them")
    manifest = read_manifest(source)
    for split in dict.fromkeys([*SPLITS, *manifest["splits"]]):  # the required ones, then any other
        load_split(source, split, manifest)
    with atomic_folder(dest) as folder:
        for name in ["manifest.json", *(f"{split}.safetensors" for split in manifest["splits"])]:
            shutil.copyfile(Path(source) / name, folder / name)
    return manifest
