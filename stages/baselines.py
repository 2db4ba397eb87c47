"""baselines@<dataset>: majority class and linear probes on mean-pooled features -> metrics/baselines/<dataset>.json."""

import argparse
import logging
import sys

from fli2moe.artifacts import write_json
from fli2moe.baselines import reference_baselines
from fli2moe.features import FeatureSetError, read_manifest
from fli2moe.params import ParamsError, load_params
from fli2moe.training import load_split_tensors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = load_params(args.params)
        manifest = read_manifest(f"features/{args.dataset}")
        train, test = (load_split_tensors(f"features/{args.dataset}", s, manifest) for s in ("train", "test"))
    except (ParamsError, FeatureSetError) as e:
        print(f"baselines {args.dataset}: {e}", file=sys.stderr)
        return 2
    results = reference_baselines(train, test, manifest["task"], len(manifest["label_names"]), params.seed)
    write_json(f"metrics/baselines/{args.dataset}.json", {"dataset": args.dataset, "test": results})
    for name, metrics in results.items():
        logging.info("%s %s: %s", args.dataset, name, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
