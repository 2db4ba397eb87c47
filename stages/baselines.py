"""baselines@<dataset>: majority class and linear probes on mean-pooled features -> metrics/baselines/<dataset>.json."""

import logging
import sys

from fli2moe.artifacts import write_json
from fli2moe.baselines import reference_baselines
from fli2moe.features import load_split_tensors, read_manifest
from fli2moe.stage_args import open_stage, refusals


def main() -> int:
    args, params = open_stage("baselines", __doc__)
    with refusals(args.label):
        manifest = read_manifest(f"features/{args.dataset}")
        train, test = (load_split_tensors(f"features/{args.dataset}", s, manifest) for s in ("train", "test"))
    results = reference_baselines(train, test, manifest["task"], len(manifest["label_names"]), params.seed)
    write_json(f"metrics/baselines/{args.dataset}.json", {"dataset": args.dataset, "test": results})
    for name, metrics in results.items():
        logging.info("%s %s: %s", args.dataset, name, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
