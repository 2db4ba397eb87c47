"""probe@<dataset>-<model>: SII and redundancy gap of cross-modal candidate token pairs, with standard errors.

-> results/probe/<key>/ (interactions.safetensors, pairs.parquet, skipped.json), metrics/probe/<key>.json
   (with planted-pair recovery on `synthetic`), timing/probe/<key>.json.
"""

import logging
import sys
import time

import pandas as pd
from safetensors.torch import load_file, save_file

from fli2moe.artifacts import atomic_folder, write_json
from fli2moe.explaining import explained_examples, read_skipped, write_skipped
from fli2moe.params import ParamsError
from fli2moe.stage_args import open_stage, refusals
from fli2moe.interactions import check_indices
from fli2moe.probing import (check_pair_modalities, interaction_tensors, pair_rows, probe_examples, probe_metrics,
                             recovery_metrics, split_degenerate)


def main() -> int:
    args, params = open_stage("probe", __doc__, model=True)
    key = args.key
    with refusals(args.label):
        config = params.probe.for_dataset(args.dataset)
        maps = load_file(f"results/attribution/{key}/maps.safetensors")
        covered = read_skipped(f"results/attribution/{key}/skipped.json")["examples"]
        if config.examples is not None and config.examples > covered:
            raise ParamsError(f"probe.examples = {config.examples} but the attribution covers "
                              f"{covered} examples (attribution.examples): candidates come from its maps")
        ex = explained_examples(args.dataset, args.model, params.explain, config.examples or covered)
        check_pair_modalities(ex.manifest)
        indices = check_indices(config.indices)
    # Both stages skip the same examples (explained_examples), so every probed one has a map.
    row = {index: r for r, index in enumerate(maps["index"].tolist())}
    whole = maps["whole"][[row[index] for index in ex.index.tolist()]]

    start = time.perf_counter()
    context = ex.context(config.quantity, params.explain.max_batch)
    results = probe_examples(context, ex.projected, ex.mask, ex.target, whole, candidates_per_modality=config.candidates,
                             estimator=config.estimator, indices=indices, num_contexts=config.num_contexts,
                             rg_keep=config.rg_keep, scheme=config.scheme, seed=params.seed,
                             example_index=ex.index.tolist())
    seconds = time.perf_counter() - start
    results, degenerate = split_degenerate(results, ex.manifest["ids"]["test"])
    skipped = ex.skipped + degenerate
    if not results:
        print(f"probe {key}: every one of the first {ex.examined} test examples was skipped, e.g. "
              f"{skipped[0]['id']!r}: {skipped[0]['reason']}", file=sys.stderr)
        return 2

    with atomic_folder(f"results/probe/{key}") as folder:
        save_file(interaction_tensors(results), folder / "interactions.safetensors")
        names = [m["name"] for m in ex.manifest["modalities"]]
        pd.DataFrame(pair_rows(results, ex.manifest["ids"]["test"], names)).to_parquet(folder / "pairs.parquet",
                                                                                      index=False)
        write_skipped(folder / "skipped.json", ex.examined, skipped)
    metrics = probe_metrics(results) | {"skipped": len(skipped)}
    timing = {"seconds_total": seconds, "seconds_per_example": metrics.pop("mean_seconds")}
    if "ground_truth" in ex.manifest:
        metrics |= recovery_metrics(results, ex.manifest["ground_truth"]["test"], indices)
    method = {"estimator": config.estimator, "candidates_per_modality": config.candidates} \
        | ({"scheme": config.scheme} if config.estimator == "montecarlo" else {})
    write_json(f"metrics/probe/{key}.json", {**method, **metrics})
    write_json(f"timing/probe/{key}.json", timing)
    logging.info("%s: %d examples, %.0f evaluations and %.2f s per example; mean |index|: %s", key,
                 metrics["examples"], metrics["mean_evaluations"], timing["seconds_per_example"],
                 ", ".join(f"{name} {metrics[f'mean_abs_{name}']:.4f}" for name in indices))
    for name, recovery in metrics.items():
        if name.startswith("recovery"):
            logging.info("%s %s: %s", key, name, ", ".join(
                f"{kind} P@1 {recovery[f'{kind}_precision@1']:.2f} P@5 {recovery[f'{kind}_precision@5']:.2f}"
                for kind in ("synergy", "redundancy") if f"{kind}_examples" in recovery))
    return 0


if __name__ == "__main__":
    sys.exit(main())
