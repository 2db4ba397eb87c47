"""extract@<dataset>: frozen encoders -> features/<dataset>/ (the feature-set contract, docs/design.md section 3)."""

import logging
import resource
import sys
import time

import torch

from fli2moe.artifacts import write_json
from fli2moe.datasets import RawDataset
from fli2moe.encoders import load_encoder
from fli2moe.extraction import extract_feature_set
from fli2moe.features import FeatureSetError
from fli2moe.params import ParamsError
from fli2moe.runtime import pick_device
from fli2moe.stage_args import open_stage, refusals


def options(parser) -> None:
    parser.add_argument("--out", help="feature-set folder (default: features/<dataset>)")
    parser.add_argument("--metrics-dir", default="metrics", help="writes <dir>/extract/<dataset>.json")
    parser.add_argument("--timing-dir", default="timing", help="writes <dir>/extract/<dataset>.json")


def main() -> int:
    args, params = open_stage("extract", __doc__, options=options)
    out = args.out or f"features/{args.dataset}"
    with refusals(args.label):
        if args.dataset not in params.datasets:
            raise ParamsError(f"--dataset {args.dataset!r} is not in datasets: {params.datasets}")
        section = params.data[args.dataset]
        # A raw dataset goes through the frozen encoders; the others (generated, imported) write their features.
        if isinstance(section, RawDataset):
            device = pick_device(params.device)
            dataset = section.load()
            encoders = {}
            for modality in dataset.modalities:  # one encoder per kind, shared by the modalities of that kind
                shared = next((e for e in encoders.values() if e.kind == modality.kind), None)
                encoders[modality.name] = shared or load_encoder(modality.kind, params.extract).to(device)

    torch.manual_seed(params.seed)
    start = time.perf_counter()
    with refusals(args.label, (FeatureSetError,)):
        if isinstance(section, RawDataset):
            manifest = extract_feature_set(dataset, encoders, out, params.extract.batch_size,
                                           params.extract.num_workers, device)
        else:
            manifest = section.write_features(out)
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
