"""attribute@<dataset>-<model>: expert-wise token maps, top-K% faithfulness, concentration, specificity, for the
model of every explained seed (explain.seeds).

-> results/attribution/<key>/ (seed_<s>/{maps.safetensors, faithfulness.parquet, concentration.parquet},
   skipped.json), metrics/attribution/<key>.json (means over seeds and examples with the seed spread and CIs),
   metrics/attribution/curves/<key>.csv (DVC plots), timing/attribution/<key>.json.
"""

import logging
import sys
import time

import pandas as pd
from safetensors.torch import save_file

from fli2moe.artifacts import atomic_folder, write_csv, write_json
from fli2moe.attribution import attribute
from fli2moe.explaining import (attribution_metrics, concentration_table, explained_examples, faithfulness_curves,
                                seed_folder, write_skipped)
from fli2moe.faithfulness import faithfulness
from fli2moe.stage_args import open_stage, refusals

ATTRIBUTION_BATCH = 16  # examples per attribution pass: bounds the memory of the retained graphs


def main() -> int:
    args, params = open_stage("attribute", __doc__, model=True)
    key, config, seeds = args.key, params.attribution, params.explained_seeds(args.dataset)
    with refusals(args.label):
        explained = [explained_examples(args.dataset, args.model, params.explain, config.examples, seed)
                     for seed in seeds]

    start = time.perf_counter()
    seconds_maps, faiths, tables = 0.0, [], []
    with atomic_folder(f"results/attribution/{key}") as folder:
        for seed, ex in zip(seeds, explained):
            began = time.perf_counter()
            maps = attribute(ex.model, ex.projected, ex.mask, ex.target, config.method, ex.baseline, config.ig_steps,
                             batch_size=ATTRIBUTION_BATCH)
            seconds_maps += time.perf_counter() - began
            faiths.append(faithfulness(ex.model, ex.projected, ex.mask, maps, ex.baseline, ex.target,
                                       ex.manifest["task"], config.k_percents, config.random_repeats, params.seed,
                                       config.quantity, params.explain.max_batch))
            tables.append(concentration_table(ex.model, maps, ex.mask))
            out = seed_folder(folder, seed)
            out.mkdir()
            save_file({"expert": maps.expert.contiguous(), "whole": maps.whole.contiguous(),
                       "contributions": maps.contributions.contiguous(), "index": ex.index,
                       "target": ex.target}, out / "maps.safetensors")
            pd.DataFrame(faiths[-1].table()).to_parquet(out / "faithfulness.parquet", index=False)
            pd.DataFrame(tables[-1]).to_parquet(out / "concentration.parquet", index=False)
        # The skipped examples lack a real token in some modality: the same for every seed's model.
        write_skipped(folder / "skipped.json", explained[0].examined, explained[0].skipped)
    seconds_total = time.perf_counter() - start
    metrics = attribution_metrics(faiths, tables, config.bootstrap, params.seed)
    write_json(f"metrics/attribution/{key}.json", {"method": config.method, **metrics,
                                                   "skipped": len(explained[0].skipped)})
    write_csv(f"metrics/attribution/curves/{key}.csv", faithfulness_curves(faiths))
    write_json(f"timing/attribution/{key}.json", {
        "seconds_maps_per_example": seconds_maps / (len(seeds) * len(explained[0].index)),
        "seconds_total": seconds_total})
    whole = {k: v for k, v in metrics["faithfulness"].items() if k.startswith("whole/")}
    for name, row in whole.items():
        logging.info("%s %s over %d seeds: AOPC %.4f, random %.4f, gap %.4f [%.4f, %.4f], seed std %.4f", key, name,
                     len(seeds), row["aopc"], row["random_aopc"], row["gap"], row["gap_low"], row["gap_high"],
                     row["gap_std"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
