"""attribute@<dataset>-<model>: expert-wise token maps, top-K% faithfulness, concentration, specificity.

-> results/attribution/<key>/ (maps.safetensors, faithfulness.parquet, concentration.parquet, skipped.json),
   metrics/attribution/<key>.json, metrics/attribution/curves/<key>.csv (DVC plots), timing/attribution/<key>.json.
"""

import logging
import sys
import time

import pandas as pd
from safetensors.torch import save_file

from fli2moe.artifacts import atomic_folder, write_csv, write_json
from fli2moe.attribution import attribute
from fli2moe.explaining import (attribution_metrics, concentration_table, explained_examples, faithfulness_curves,
                                write_skipped)
from fli2moe.faithfulness import faithfulness
from fli2moe.stage_args import open_stage, refusals

ATTRIBUTION_BATCH = 16  # examples per attribution pass: bounds the memory of the retained graphs


def main() -> int:
    args, params = open_stage("attribute", __doc__, model=True)
    key = args.key
    with refusals(args.label):
        ex = explained_examples(args.dataset, args.model, params.explain, params.attribution.examples)
    config, task = params.attribution, ex.manifest["task"]

    start = time.perf_counter()
    maps = attribute(ex.model, ex.projected, ex.mask, ex.target, config.method, ex.baseline, config.ig_steps,
                     batch_size=ATTRIBUTION_BATCH)
    seconds_maps = time.perf_counter() - start
    faith = faithfulness(ex.model, ex.projected, ex.mask, maps, ex.baseline, ex.target, task, config.k_percents,
                         config.random_repeats, params.seed, config.quantity, params.explain.max_batch)
    seconds_total = time.perf_counter() - start
    table = concentration_table(ex.model, maps, ex.mask)

    with atomic_folder(f"results/attribution/{key}") as folder:
        save_file({"expert": maps.expert.contiguous(), "whole": maps.whole.contiguous(),
                   "contributions": maps.contributions.contiguous(), "index": ex.index,
                   "target": ex.target}, folder / "maps.safetensors")
        pd.DataFrame(faith.table()).to_parquet(folder / "faithfulness.parquet", index=False)
        pd.DataFrame(table).to_parquet(folder / "concentration.parquet", index=False)
        write_skipped(folder / "skipped.json", ex.examined, ex.skipped)
    metrics = attribution_metrics(faith, table, config.bootstrap, params.seed)
    write_json(f"metrics/attribution/{key}.json", {"method": config.method, **metrics, "skipped": len(ex.skipped)})
    write_csv(f"metrics/attribution/curves/{key}.csv", faithfulness_curves(faith))
    write_json(f"timing/attribution/{key}.json", {
        "seconds_maps_per_example": seconds_maps / len(ex.index), "seconds_total": seconds_total})
    whole = {k: v for k, v in metrics["faithfulness"].items() if k.startswith("whole/")}
    for name, row in whole.items():
        logging.info("%s %s: AOPC %.4f, random %.4f, gap %.4f [%.4f, %.4f]", key, name, row["aopc"],
                     row["random_aopc"], row["gap"], row["gap_low"], row["gap_high"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
