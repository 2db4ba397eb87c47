"""ablate@<dataset>-<model>: remove the top-b cross-modal pairs by SII and by RG vs b random pairs.

-> results/ablate/<key>/ (drops.parquet, skipped.json: the examples the probe skipped), metrics/ablate/<key>.json
   (per budget and ranking: drops, differences ranked - random with bootstrap CIs, paired tests, effect sizes,
   task metric; scalars under keys such as budget_1.sii.vs_random_candidates.difference, see
   `ablation_summary`), metrics/ablate/curves/<key>.csv.
"""

import logging
import sys
import time

import pandas as pd
import torch
from safetensors.torch import load_file

from fli2moe.ablation import ablation_summary, ablation_table, pair_ablation, plot_rows
from fli2moe.artifacts import atomic_folder, write_csv, write_json
from fli2moe.explaining import explained_examples, read_skipped, write_skipped
from fli2moe.stage_args import open_stage, refusals


def main() -> int:
    args, params = open_stage("ablate", __doc__, model=True)
    key = args.key
    with refusals(args.label):
        probe = load_file(f"results/probe/{key}/interactions.safetensors")
        probed = read_skipped(f"results/probe/{key}/skipped.json")
        ex = explained_examples(args.dataset, args.model, params.explain, probed["examples"])
        # The probe also skips examples whose game is degenerate: only the probed ones can be ablated.
        ex = ex.select(torch.nonzero(torch.isin(ex.index, probe["index"])).flatten())
        if probe["index"].tolist() != ex.index.tolist():
            raise ValueError(f"results/probe/{key} covers test examples {probe['index'].tolist()[:5]}..., "
                             f"not the first {len(ex.index)}: re-run the probe stage")
    config, task = params.ablate, ex.manifest["task"]

    start = time.perf_counter()
    context = ex.context(config.quantity, params.explain.max_batch)
    ablation = pair_ablation(context, ex.projected, ex.mask, ex.target, probe, budgets=config.budgets,
                             random_repeats=config.random_repeats, seed=params.seed)
    summary = ablation_summary(ablation, ex.labels.numpy(), task, config.permutations, config.bootstrap, params.seed)
    seconds = time.perf_counter() - start

    with atomic_folder(f"results/ablate/{key}") as folder:
        pd.DataFrame(ablation_table(ablation)).to_parquet(folder / "drops.parquet", index=False)
        write_skipped(folder / "skipped.json", probed["examples"], probed["skipped"])
    write_json(f"metrics/ablate/{key}.json", {**summary, "skipped": len(probed["skipped"])})
    write_csv(f"metrics/ablate/curves/{key}.csv", plot_rows(summary))
    write_json(f"timing/ablate/{key}.json", {"seconds_total": seconds})
    for row in plot_rows(summary):
        logging.info("%s budget %s %s: drop %.4f [%.4f, %.4f]", key, row["budget"], row["series"], row["drop"],
                     row["low"], row["high"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
