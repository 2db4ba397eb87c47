"""Throughput of the extract stage against the raw batched encoder forward: `python benchmarks/extract.py`.

Both are measured in this run on the same ENRICO UIs (two images each):
- raw: EfficientNet-Lite0 forward on preloaded, already decoded and resized tensors, batch by batch;
- stage: `extract_feature_set`, i.e. decoding in DataLoader workers + forward + streaming float16 writes.
The ratio stage/raw is the share of the encoder's speed that the whole stage keeps (goal >= 0.7).
Then peak RSS of the stage script on two dataset sizes: bounded by the batch, it should not grow.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from fli2moe.datasets import DatasetSplits
from fli2moe.datasets.enrico import load_enrico
from fli2moe.encoders import EfficientNetLite0
from fli2moe.extraction import extract_feature_set
from fli2moe.params import load_params

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 256


def raw_forward(encoder, pixels: torch.Tensor, batch_size: int) -> float:
    """Seconds for the encoder alone over preloaded pixels [N, 3, H, W]."""
    start = time.perf_counter()
    with torch.inference_mode():
        for chunk in pixels.split(batch_size):
            encoder.encode(chunk)
    return time.perf_counter() - start


def stage_peak_rss_mib(max_per_split: int, folder: Path) -> tuple[int, float]:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["enrico"].update(root=str(REPO / "data" / "enrico"), max_per_split=max_per_split)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, str(REPO / "stages" / "extract.py"), "--dataset", "enrico",
                             "--params", str(folder / "params.yaml"), "--out", str(folder / "features"),
                             "--metrics-dir", str(folder / "metrics"),
                             "--timing-dir", str(folder / "timing")], capture_output=True, text=True, check=True)
    match = re.search(r"enrico: (\d+) samples .* peak RSS (\d+) MiB", result.stderr)
    return int(match.group(1)), float(match.group(2))


def main() -> None:
    params = load_params(REPO / "params.yaml")
    extract = params.extract
    dataset = load_enrico(replace(params.data["enrico"], root=str(REPO / "data" / "enrico")))
    samples = dataset.splits["train"][:SAMPLES]
    encoder = EfficientNetLite0(tuple(extract.image_size))
    images = 2 * len(samples)
    print(f"torch threads {torch.get_num_threads()}, {len(samples)} UIs = {images} images, "
          f"batch {extract.batch_size}, {extract.num_workers} workers")

    pixels = torch.stack([encoder.preprocessor.prepare(s.inputs[m]) for s in samples for m in s.inputs])
    raw_forward(encoder, pixels[: extract.batch_size], extract.batch_size)  # warm-up
    raw_seconds = raw_forward(encoder, pixels, extract.batch_size)
    # The layout the encoder ran in before issue 15: the same weights and pixels, contiguous (NCHW) tensors.
    nchw = copy.deepcopy(encoder.model).to(memory_format=torch.contiguous_format)
    start = time.perf_counter()
    with torch.inference_mode():
        for chunk in pixels.split(extract.batch_size):
            nchw.extract_features(chunk)
    nchw_seconds = time.perf_counter() - start

    subset = DatasetSplits(dataset.name, dataset.task, dataset.label_names, dataset.modalities, {"train": samples})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        extract_feature_set(subset, {"screenshot": encoder, "wireframe": encoder}, Path(tmp) / "features",
                            extract.batch_size, extract.num_workers, torch.device("cpu"))
        stage_seconds = time.perf_counter() - start

    print(f"raw forward, NCHW   : {images / nchw_seconds:7.1f} images/s ({nchw_seconds:.1f} s), the layout before issue 15")
    print(f"raw batched forward : {images / raw_seconds:7.1f} images/s ({raw_seconds:.1f} s), channels-last: "
          f"{nchw_seconds / raw_seconds:.2f}x NCHW")
    print(f"extract stage       : {images / stage_seconds:7.1f} images/s ({stage_seconds:.1f} s)")
    print(f"ratio stage / raw   : {raw_seconds / stage_seconds:7.2f}   (goal >= 0.7)")

    for size in (16, 96):
        with tempfile.TemporaryDirectory() as tmp:
            n, rss = stage_peak_rss_mib(size, Path(tmp))
        print(f"peak RSS of stages/extract.py on {n:4d} UIs: {rss:6.0f} MiB")


if __name__ == "__main__":
    main()
