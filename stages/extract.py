"""extract@<dataset>: frozen encoders -> features/<dataset>/ (the feature-set contract, docs/design.md section 3)."""

import argparse
import logging
import resource
import sys
import time
from pathlib import Path

import torch

from fli2moe.artifacts import write_json
from fli2moe.datasets import DataError, load_dataset
from fli2moe.datasets.custom import import_feature_set
from fli2moe.datasets.synthetic import write_synthetic_feature_set
from fli2moe.encoders import EncoderError, load_encoder
from fli2moe.extraction import extract_feature_set
from fli2moe.features import FeatureSetError
from fli2moe.params import ParamsError
from fli2moe.runtime import load_stage_params, pick_device


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", help="feature-set folder (default: features/<dataset>)")
    parser.add_argument("--metrics-dir", default="metrics", help="writes <dir>/extract/<dataset>.json")
    parser.add_argument("--timing-dir", default="timing", help="writes <dir>/extract/<dataset>.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    out = args.out or f"features/{args.dataset}"
    # synthetic is generated and custom imported as a finished feature set: no raw data, no encoder.
    synthetic, custom = args.dataset == "synthetic", args.dataset == "custom"
    try:
        params = load_stage_params(args.params)
        if args.dataset not in params.datasets:
            raise ParamsError(f"--dataset {args.dataset!r} is not in datasets: {params.datasets}")
        if not (synthetic or custom):
            device = pick_device(params.device)
            dataset = load_dataset(args.dataset, params)
            encoders = {}
            for modality in dataset.modalities:  # one encoder per kind, shared by the modalities of that kind
                shared = next((e for e in encoders.values() if e.kind == modality.kind), None)
                encoders[modality.name] = shared or load_encoder(modality.kind, params.extract).to(device)
    except (ParamsError, DataError, EncoderError) as e:
        print(f"extract: {e}", file=sys.stderr)
        return 2

    torch.manual_seed(params.seed)
    start = time.perf_counter()
    try:
        if synthetic:
            manifest = write_synthetic_feature_set(params.data["synthetic"], out)
        elif custom:
            manifest = import_feature_set(params.data["custom"].root, out)
        else:
            manifest = extract_feature_set(dataset, encoders, out, params.extract.batch_size,
                                           params.extract.num_workers, device)
    except FeatureSetError as e:
        print(f"extract: {e}", file=sys.stderr)
        return 2
    return finish(args, manifest, time.perf_counter() - start)


def finish(args, manifest: dict, seconds: float) -> int:
    """Log the run and write the stage's metrics."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = sum(manifest["splits"].values())
    for item in manifest["skipped"]:
        logging.warning("skipped %s (split %s): %s", item["id"], item["split"], item["reason"])
    logging.info("%s: %d samples %s, %d skipped, %.1f s (%.1f samples/s), peak RSS %.0f MiB", args.dataset, total,
                 manifest["splits"], len(manifest["skipped"]), seconds, total / seconds, peak_mib)
    # Only deterministic figures go to the metrics; timings vary run to run and have their own file.
    write_json(f"{args.metrics_dir}/extract/{args.dataset}.json",
               {"samples": manifest["splits"], "skipped": len(manifest["skipped"]),
                "tokens": {m["name"]: m["tokens"] for m in manifest["modalities"]}})
    write_json(f"{args.timing_dir}/extract/{args.dataset}.json",
               {"seconds_total": seconds, "samples_per_second": total / seconds, "peak_rss_mib": peak_mib})
    return 0


if __name__ == "__main__":
    sys.exit(main())
