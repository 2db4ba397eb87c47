"""ablate@<dataset>-<model>: remove the top-b cross-modal pairs by SII and by RG vs b random pairs, for the model of
every explained seed (explain.seeds).

-> results/ablate/<key>/ (seed_<s>/drops.parquet, skipped.json: the examples the probe skipped),
   metrics/ablate/<key>.json (per budget and ranking, over seeds and examples: drops, differences ranked - random
   with their seed spread and CIs, paired tests, effect sizes, task metric; scalars under keys such as
   budget_1.sii.vs_random_candidates.difference, see `ablation_summary`), metrics/ablate/curves/<key>.csv.
"""

import logging
import sys
import time

import pandas as pd
import torch
from safetensors.torch import load_file

from fli2moe.ablation import ablation_summary, ablation_table, pair_ablation, plot_rows
from fli2moe.artifacts import atomic_folder, write_csv, write_json
from fli2moe.explaining import explained_examples, read_skipped, seed_folder, write_skipped
from fli2moe.stage_args import open_stage, refusals


def main() -> int:
    args, params = open_stage("ablate", __doc__, model=True)
    key, config, seeds = args.key, params.ablate, params.explained_seeds(args.dataset)
    with refusals(args.label):
        probed = read_skipped(f"results/probe/{key}/skipped.json")
        probes, explained = [], []
        for seed in seeds:
            probe = load_file(seed_folder(f"results/probe/{key}", seed) / "interactions.safetensors")
            ex = explained_examples(args.dataset, args.model, params.explain, probed["examples"], seed)
            # The probe also skips examples whose game is degenerate: only the probed ones can be ablated.
            ex = ex.select(torch.nonzero(torch.isin(ex.index, probe["index"])).flatten())
            if probe["index"].tolist() != ex.index.tolist():
                raise ValueError(f"results/probe/{key} covers test examples {probe['index'].tolist()[:5]}..., "
                                 f"not the first {len(ex.index)}: re-run the probe stage")
            probes.append(probe)
            explained.append(ex)

    start = time.perf_counter()
    ablations = [pair_ablation(ex.context(config.quantity, params.explain.max_batch), ex.projected, ex.mask,
                               ex.target, probe, budgets=config.budgets, random_repeats=config.random_repeats,
                               seed=params.seed) for ex, probe in zip(explained, probes)]
    summary = ablation_summary(ablations, explained[0].labels.numpy(), explained[0].manifest["task"],
                               config.permutations, config.bootstrap, params.seed)
    seconds = time.perf_counter() - start

    with atomic_folder(f"results/ablate/{key}") as folder:
        for seed, ablation in zip(seeds, ablations):
            out = seed_folder(folder, seed)
            out.mkdir()
            pd.DataFrame(ablation_table(ablation)).to_parquet(out / "drops.parquet", index=False)
        write_skipped(folder / "skipped.json", probed["examples"], probed["skipped"])
    write_json(f"metrics/ablate/{key}.json", {**summary, "seeds": len(seeds),
                                              "skipped": len(probed["skipped"])})
    write_csv(f"metrics/ablate/curves/{key}.csv", plot_rows(summary))
    write_json(f"timing/ablate/{key}.json", {"seconds_total": seconds})
    for row in plot_rows(summary):
        logging.info("%s budget %s %s over %d seeds: drop %.4f [%.4f, %.4f]", key, row["budget"], row["series"],
                     len(seeds), row["drop"], row["low"], row["high"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
