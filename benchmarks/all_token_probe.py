"""All-token probes on ENRICO (issue 17): every cross-modal pair of up to 64 tokens, against the default's
top-6 candidates per modality.

    python benchmarks/all_token_probe.py [--examples 32] [--evaluations 4000 8000] [--model-seed 0]

On the first test examples of ENRICO and one FL-I2MoE of the default run (features/enrico, checkpoints/ and
results/attribution/ from `dvc repro`), each estimator (`montecarlo` with probe.scheme, and
`screen_and_refine` with probe.contenders and probe.screen_share) probes every real token as a candidate
(SII and RG) at each budget of --evaluations per example, as the probe stage probes them: in as many
single-threaded worker processes as there are CPU threads (`probe_examples`' `workers`). Timed: the wall
time per example (the whole run's over the examples; the whole test split is projected from it) and each
example's own time in its worker. The reference, timed in the same run: the game alone, in this process
with all its threads, on as many coalitions as the estimator evaluated on the first example (owen-drawn), so
that the probe's throughput is a ratio that another machine can check. Then, per estimator, where its top
pairs lie relative to the default's candidates (the top probe.candidates tokens per modality by the
whole-model attribution, `select_candidates`):

- inside@k: the share of its top-k pairs by SII and by RG (k = 1, 5, 10) whose two tokens are both default
  candidates, against the chance level (the share of all cross pairs that are);
- significant@10: the share of its top-10 SII pairs whose 95% Student-t interval excludes 0;
- separated: the share of examples whose top SII pair's interval lies above the second pair's estimate;
- and the overlap of the two estimators' top-10 SII pairs.

Pairs rank by `Estimate.ranking_score` (refined pairs first). RG at probe.rg_keep = 1 is exact (v(N),
v(N - i), v(N - j), v(N - ij) for every pair: 1 + n + P evaluations), so its ranking carries no Monte Carlo
noise; SII's does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from fli2moe.explaining import explained_examples, seed_folder
from fli2moe.params import load_params
from fli2moe.probing import coalition_game, probe_examples, select_candidates, significant

REPO = Path(__file__).resolve().parents[1]
KS = (1, 5, 10)
ESTIMATORS = ("montecarlo", "screen_and_refine")


def top(estimate, k: int) -> torch.Tensor:
    """The k best pairs of an estimate by its ranking score, NaN last."""
    return torch.nan_to_num(estimate.ranking_score(), nan=-torch.inf).argsort(descending=True)[:k]


def engine_seconds(game, n: int, evaluations: int) -> float:
    """Seconds the game alone takes on `evaluations` coalitions of n players, each drawn as an owen context
    (q ~ U(0, 1), every player present with probability q), in one call as the estimators make them."""
    generator = torch.Generator().manual_seed(0)
    coalitions = torch.rand(evaluations, n, generator=generator) < torch.rand(evaluations, 1, generator=generator)
    start = time.perf_counter()
    game(coalitions)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--evaluations", type=int, nargs="+", default=[4000, 8000])
    parser.add_argument("--model-seed", type=int, default=0)
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    probe = params.probe.for_dataset("enrico")
    maps = REPO / "results" / "attribution" / "enrico-fl_i2moe"
    if not (maps / "skipped.json").exists():
        raise SystemExit("no attribution maps: run `dvc repro attribute@enrico-fl_i2moe` first")
    ex = explained_examples("enrico", "fl_i2moe", params.explain, args.examples, args.model_seed,
                            str(REPO / "features"), str(REPO / "checkpoints"))
    whole = load_file(seed_folder(maps, args.model_seed) / "maps.safetensors")
    rows = {int(index): row for row, index in enumerate(whole["index"].tolist())}
    whole = whole["whole"][[rows[index] for index in ex.index.tolist()]]  # [N, T]
    context = ex.context(probe.quantity, params.explain.max_batch)
    split = len(ex.manifest["ids"]["test"])
    first = select_candidates(whole[0], ex.mask[0], ex.model.modality_slices, "all")
    game, _ = coalition_game(context, ex.projected[0], ex.mask[0], ex.target[0], first)
    print(f"ENRICO FL-I2MoE seed {args.model_seed}, {len(ex.index)} test examples (of {split}), all tokens as "
          f"candidates (default: {probe.candidates} per modality), {torch.get_num_threads()} threads")
    for evaluations in args.evaluations:
        print(f"\n## budget {evaluations} evaluations per example")
        compare(ex, context, whole, probe, params.seed, evaluations, game, len(first), split)


def compare(ex, context, whole, probe, seed: int, evaluations: int, game, n: int, split: int) -> None:
    """Both estimators at one budget: time per example against the game alone, and where their top pairs lie."""
    tops = {}
    for estimator in ESTIMATORS:
        start = time.perf_counter()
        results = probe_examples(context, ex.projected, ex.mask, ex.target, whole, candidates_per_modality="all",
                                 estimator=estimator, indices=("sii", "rg"), evaluations=evaluations,
                                 rg_keep=probe.rg_keep, scheme=probe.scheme, contenders=probe.contenders,
                                 screen_share=probe.screen_share, seed=seed,
                                 example_index=ex.index.tolist(), workers=torch.get_num_threads())
        wall = (time.perf_counter() - start) / len(results)
        reference = engine_seconds(game, n, results[0].evaluations)
        inside_at = {(name, k): [] for name in ("sii", "rg") for k in KS}
        chance, significant_at_10, separated = [], [], []
        tops[estimator] = []
        for b, result in enumerate(results):
            default = select_candidates(whole[b], ex.mask[b], ex.model.modality_slices, probe.candidates)
            slots = result.candidates[result.interactions.pairs]  # [P, 2] token slots of each pair
            inside = torch.isin(slots, default).all(dim=1)  # [P]
            chance.append(inside.double().mean().item())
            for name in ("sii", "rg"):
                for k in KS:
                    inside_at[name, k].append(inside[top(result.interactions[name], k)].double().mean().item())
            sii = result.interactions["sii"]
            best = top(sii, 10)
            tops[estimator].append(set(best.tolist()))
            significant_at_10.append(significant(sii)[best].double().mean().item())
            separated.append(bool(sii.interval()[0][best[0]] > sii.value[best[1]]))
        print(f"{estimator}: candidates per example {np.mean([len(r.candidates) for r in results]):.1f}, cross pairs "
              f"{np.mean([len(r.interactions.pairs) for r in results]):.0f}, evaluations "
              f"{np.mean([r.evaluations for r in results]):.0f}, SII samples of a top-10 pair "
              f"{np.mean([r.interactions['sii'].samples[top(r.interactions['sii'], 10)].double().mean().item() for r in results]):.1f}")
        used = np.mean([r.evaluations for r in results])
        print(f"  wall seconds per example {wall:.2f} ({used / wall:.0f} evaluations/s), the whole test split "
              f"({split} examples) {wall * split / 60:.1f} min; each example in its worker "
              f"{np.mean([r.seconds for r in results]):.2f} s")
        print(f"  the game alone, {torch.get_num_threads()} threads, on the first example's {results[0].evaluations} "
              f"evaluations: {reference:.2f} s ({results[0].evaluations / reference:.0f} evaluations/s); the probe's "
              f"throughput is {reference / results[0].evaluations * used / wall:.2f}x that")
        print(f"  chance that a pair lies inside the default candidates: {np.mean(chance):.3f}")
        for name in ("sii", "rg"):
            print(f"  top pairs by {name.upper()} inside the default candidates: " + ", ".join(
                f"@{k} {np.mean(inside_at[name, k]):.3f}" for k in KS))
        print(f"  top-10 SII pairs significant: {np.mean(significant_at_10):.3f}; examples whose top SII pair is "
              f"separated from the second: {np.mean(separated):.3f}")
    overlap = [len(a & b) / 10 for a, b in zip(*tops.values())]
    print(f"top-10 SII pairs shared by the two estimators: {np.mean(overlap):.3f}")


if __name__ == "__main__":
    main()
