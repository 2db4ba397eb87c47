"""probe@<dataset>-<model>: SII and redundancy gap of cross-modal candidate token pairs, with standard errors, for
the model of every explained seed (explain.seeds).

-> results/probe/<key>/ (seed_<s>/{interactions.safetensors, pairs.parquet}, skipped.json), metrics/probe/<key>.json
   (means over seeds and examples with the seed spread and CIs; planted-pair recovery on `synthetic`),
   timing/probe/<key>.json.
"""

import logging
import sys
import time

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from fli2moe.artifacts import atomic_folder, write_json
from fli2moe.explaining import explained_examples, read_skipped, seed_folder, write_skipped
from fli2moe.interactions import check_indices
from fli2moe.params import ParamsError
from fli2moe.probing import (check_pair_modalities, contexts_per_example, interaction_tensors, pair_rows,
                             probe_examples, probe_metrics, recovery_metrics, split_degenerate)
from fli2moe.stage_args import open_stage, refusals


def main() -> int:
    args, params = open_stage("probe", __doc__, model=True)
    key, seeds = args.key, params.explained_seeds(args.dataset)
    attribution = f"results/attribution/{key}"
    with refusals(args.label):
        config = params.probe.for_dataset(args.dataset)
        covered = read_skipped(f"{attribution}/skipped.json")["examples"]
        if config.examples is not None and config.examples > covered:
            raise ParamsError(f"probe.examples = {config.examples} but the attribution covers "
                              f"{covered} examples (attribution.examples): candidates come from its maps")
        maps = {seed: load_file(seed_folder(attribution, seed) / "maps.safetensors") for seed in seeds}
        explained = [explained_examples(args.dataset, args.model, params.explain, config.examples or covered, seed)
                     for seed in seeds]
        check_pair_modalities(explained[0].manifest)
        indices = check_indices(config.indices)
        if config.estimator != "exact":  # whether the budget buys two contexts depends on each example's n
            try:
                contexts_per_example(explained[0].mask, explained[0].model.modality_slices, config.candidates,
                                     config.evaluations, indices, config.rg_keep, config.scheme, explained[0].ids,
                                     estimator=config.estimator, contenders=config.contenders,
                                     screen_share=config.screen_share)
            except ValueError as e:
                raise ParamsError(f"probe.evaluations = {config.evaluations} is too small: {e}") from None

    start = time.perf_counter()
    results = []
    for seed, ex in zip(seeds, explained):
        # Both stages skip the same examples (explained_examples), so every probed one has a map.
        row = {index: r for r, index in enumerate(maps[seed]["index"].tolist())}
        whole = maps[seed]["whole"][[row[index] for index in ex.index.tolist()]]
        context = ex.context(config.quantity, params.explain.max_batch)
        results.append(probe_examples(context, ex.projected, ex.mask, ex.target, whole,
                                      candidates_per_modality=config.candidates, estimator=config.estimator,
                                      indices=indices, evaluations=config.evaluations, rg_keep=config.rg_keep,
                                      scheme=config.scheme, contenders=config.contenders,
                                      screen_share=config.screen_share, seed=params.seed,
                                      example_index=ex.index.tolist(),
                                      workers=torch.get_num_threads()))  # `threads` as 1-thread processes
    seconds = time.perf_counter() - start
    manifest = explained[0].manifest
    results, degenerate = split_degenerate(results, seeds, manifest["ids"]["test"])
    skipped = explained[0].skipped + degenerate
    if not results[0]:
        print(f"probe {key}: every one of the first {explained[0].examined} test examples was skipped, e.g. "
              f"{skipped[0]['id']!r}: {skipped[0]['reason']}", file=sys.stderr)
        return 2

    with atomic_folder(f"results/probe/{key}") as folder:
        names = [m["name"] for m in manifest["modalities"]]
        for seed, per_seed in zip(seeds, results):
            out = seed_folder(folder, seed)
            out.mkdir()
            save_file(interaction_tensors(per_seed), out / "interactions.safetensors")
            pd.DataFrame(pair_rows(per_seed, manifest["ids"]["test"], names)).to_parquet(out / "pairs.parquet",
                                                                                          index=False)
        write_skipped(folder / "skipped.json", explained[0].examined, skipped)
    metrics = probe_metrics(results, config.bootstrap, params.seed) | {"skipped": len(skipped)}
    timing = {"seconds_total": seconds, "seconds_per_example": metrics.pop("mean_seconds")}
    if "ground_truth" in manifest:
        metrics |= recovery_metrics(results, manifest["ground_truth"]["test"], indices, seeds, config.bootstrap,
                                    params.seed)
    method = {"estimator": config.estimator, "candidates_per_modality": config.candidates} \
        | ({"scheme": config.scheme} if config.estimator == "montecarlo" else {}) \
        | ({"contenders": config.contenders, "screen_share": config.screen_share}
           if config.estimator == "screen_and_refine" else {})
    write_json(f"metrics/probe/{key}.json", {**method, **metrics})
    write_json(f"timing/probe/{key}.json", timing)
    logging.info("%s: %d examples x %d seeds, %.0f evaluations and %.2f s per example; mean |index|: %s", key,
                 metrics["examples"], len(seeds), metrics["mean_evaluations"], timing["seconds_per_example"],
                 ", ".join(f"{name} {metrics[f'mean_abs_{name}']['mean']:.4f}" for name in indices))
    for name, recovery in metrics.items():
        if name.startswith("recovery"):
            logging.info("%s %s: %s", key, name, ", ".join(
                f"{kind} P@1 {recovery[f'{kind}_precision@1']['mean']:.2f} "
                f"(seed std {recovery[f'{kind}_precision@1']['std']:.2f}) "
                f"P@5 {recovery[f'{kind}_precision@5']['mean']:.2f}"
                for kind in ("synergy", "redundancy") if f"{kind}_examples" in recovery))
    return 0


if __name__ == "__main__":
    sys.exit(main())
