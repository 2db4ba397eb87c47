"""Benchmarks of the interaction probe (docs/design.md section 5): run `python benchmarks/probe.py`.

Part (a) times the coalition engine (`fli2moe.probing.coalition_game`) against the engine before issue 15,
a plain batched forward pass over the same masked inputs and a per-coalition loop.
Part (b) compares `fli2moe.interactions.montecarlo` with shapiq's SII approximators at equal
budgets of model evaluations, on one fixed random game with exact SII as the reference, at two sizes:
n = 14, where 8000 evaluations are half of the 2^14 coalitions (the regime of regression estimators
such as KernelSHAP-IQ), and n = 20, where they are 0.8% of them (closer to a probe of many tokens).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from shapiq import SVARMIQ, KernelSHAPIQ, PermutationSamplingSII

from fli2moe.attribution import attribute
from fli2moe.explaining import ExplanationContext
from fli2moe.features import load_split_tensors, read_manifest
from fli2moe.interactions import exact, montecarlo
from fli2moe.masking import remove_tokens, target_labels, target_score
from fli2moe.models import build_model
from fli2moe.params import load_params
from fli2moe.probing import coalition_game, select_candidates
from fli2moe.training import model_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from reference_fusion import per_expert_reference  # noqa: E402
ENGINE_CANDIDATES_PER_MODALITY = 6  # n = 12
CALLS, COALITIONS_PER_CALL = 4, 600
PREVIOUS_MAX_BATCH = 256
LOOP_COALITIONS = 256
REPEATS = 5

GAME_SIZES = (7, 10)  # players per modality: n = 14 and n = 20, both within reach of exact enumeration
BUDGETS = (500, 1000, 2000, 4000, 8000)
SEEDS = (0, 1, 2, 3, 4)
SCHEMES = ("outside", "owen")


def part_a_coalition_engine() -> None:
    """Throughput of the coalition engine against the engine it replaced and against a plain batched forward.

    FL-I2MoE at the params.yaml sizes (random weights: the cost does not depend on them) on one ENRICO
    test example (random tokens of the same shape when features/enrico is missing), n = 12 candidates, the
    coalitions handed over as the probe hands them: CALLS calls of COALITIONS_PER_CALL (the unique coalitions
    of one example at the default probe settings: 509 to 643 measured on ENRICO).
    engine: `coalition_game` at explain.max_batch;
    reference: the engine before issue 15, measured in this run: the experts one at a time
    (tests/reference_fusion.py) and `ExplanationContext.scores` per call, which adds a max_batch pass for
    routing weights that the game does not use, at the previous default max_batch of 256;
    plain: the same model on the same masked inputs, built beforehand, in batches of max_batch and no padding;
    loop: one forward per coalition, timed on LOOP_COALITIONS and extrapolated. Rates: best of REPEATS.
    """
    # Single-threaded: on 2 cores shared with other processes, intra-op threads spin-wait and make every
    # pass erratic (measured: the loop at 1.8 to 19 coalitions/s, batches 5x slower than on one thread);
    # one thread gives all of them the same compute, so the ratios compare ways of batching, not the load.
    torch.set_num_threads(1)
    params = load_params(REPO / "params.yaml")
    max_batch = params.explain.max_batch
    folder = REPO / "features" / "enrico"
    if (folder / "manifest.json").exists():
        manifest = read_manifest(folder)
        tokens, token_mask, _ = load_split_tensors(folder, "test", manifest).batch(torch.arange(1), torch.device("cpu"))
        source = "ENRICO test example 0"
    else:
        manifest = {"modalities": [{"name": name, "dim": 1280, "tokens": 32} for name in ("screenshot", "wireframe")],
                    "label_names": [f"c{c}" for c in range(20)]}
        tokens = {m["name"]: torch.randn(1, 32, 1280) for m in manifest["modalities"]}
        token_mask = {m["name"]: torch.ones(1, 32, dtype=torch.bool) for m in manifest["modalities"]}
        source = "random tokens shaped like ENRICO"
    torch.manual_seed(0)
    model = build_model("fl_i2moe", model_config("fl_i2moe", manifest, params.model, params.moe)).eval()
    with torch.no_grad():
        projected, mask = model.project(tokens)[0], model.concat_mask(token_mask)[0]  # [T, H], [T]
        target = target_labels(model(projected[None], mask[None]).logits, "multiclass")[0]  # [C]
    baseline = torch.zeros_like(projected)  # the baseline's values do not change the cost
    whole = attribute(model, projected[None], mask[None], target[None]).whole[0]  # [T]
    candidates = select_candidates(whole, mask, model.modality_slices, ENGINE_CANDIDATES_PER_MODALITY)
    context = ExplanationContext(model, baseline, "multiclass", "logit", max_batch)
    value, _ = coalition_game(context, projected, mask, target, candidates)
    before = ExplanationContext(model, baseline, "multiclass", "logit", PREVIOUS_MAX_BATCH)

    generator = torch.Generator().manual_seed(0)
    coalitions = torch.rand(CALLS * COALITIONS_PER_CALL, len(candidates), generator=generator) < 0.5  # [K, n]
    keeps = torch.ones(len(coalitions), len(mask), dtype=torch.bool)
    keeps[:, candidates] = coalitions
    inputs = remove_tokens(projected, keeps, baseline, mask)  # [K, T, H], built outside the timing

    def engine() -> torch.Tensor:
        return torch.cat([value(chunk) for chunk in coalitions.split(COALITIONS_PER_CALL)])

    def reference() -> torch.Tensor:
        with per_expert_reference():
            return torch.cat([before.scores(projected, mask, chunk, target).whole
                              for chunk in keeps.split(COALITIONS_PER_CALL)])

    @torch.no_grad()
    def plain() -> torch.Tensor:
        return torch.cat([target_score(model(x, mask.expand(len(x), -1)).logits, target, "multiclass")
                          for x in inputs.split(max_batch)])

    @torch.no_grad()
    def loop() -> None:
        for keep in keeps[:LOOP_COALITIONS]:
            model(remove_tokens(projected, keep, baseline, mask)[None], mask[None])

    def seconds(run) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    # Also the warm-up of each.
    agreement = max((engine() - plain()).abs().max().item(), (engine() - reference()).abs().max().item())
    # Best of REPEATS, alternating, against the load of other processes on the shared cores.
    times = {"engine": [], "reference": [], "plain": [], "loop": []}
    for _ in range(REPEATS):
        times["engine"].append(seconds(engine))
        times["reference"].append(seconds(reference))
        times["plain"].append(seconds(plain))
        times["loop"].append(seconds(loop) * len(coalitions) / LOOP_COALITIONS)
    rates = {name: len(coalitions) / min(t) for name, t in times.items()}
    print(f"part (a) coalition engine: {source}, FL-I2MoE H {params.model.hidden} L {params.model.layers} "
          f"heads {params.model.heads} K {params.moe.num_experts}, T {len(mask)}, n = {len(candidates)} "
          f"candidates, {CALLS} calls of {COALITIONS_PER_CALL} coalitions, torch threads 1, best of {REPEATS}")
    print(f"  engine (coalition_game, max_batch {max_batch:3d})      {rates['engine']:8.1f} coalitions/s")
    print(f"  reference (before issue 15, max_batch {PREVIOUS_MAX_BATCH}) {rates['reference']:8.1f} coalitions/s")
    print(f"  plain batched forward (max_batch {max_batch:3d})      {rates['plain']:8.1f} inputs/s       "
          f"(max |difference| of the three = {agreement:.1e})")
    print(f"  per-coalition loop                          {rates['loop']:8.1f} coalitions/s  ({LOOP_COALITIONS} timed)")
    print(f"  engine / reference = {rates['engine'] / rates['reference']:.2f} (goal >= 2), "
          f"engine / plain = {rates['engine'] / rates['plain']:.2f} (goal >= 0.9), "
          f"engine / loop = {rates['engine'] / rates['loop']:.1f}\n")


def mlp_game(n: int, seed: int):
    """v(x) = w2 . tanh(W1 x + b1) on the 0/1 coalition vector x: smooth, with interactions of every order."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(n, 32, generator=g, dtype=torch.float64) * 2 / n**0.5
    b1 = torch.randn(32, generator=g, dtype=torch.float64) * 0.5
    w2 = torch.randn(32, generator=g, dtype=torch.float64) / 32**0.5
    return lambda coalitions: torch.tanh(coalitions.double() @ w1 + b1) @ w2


def contexts_for_budget(modality: torch.Tensor, budget: int, seed: int, scheme: str) -> int:
    """Largest num_contexts whose evaluations (SII + RG) fit the budget. The count depends on the
    sampled contexts only, not on the game's values, so a zero game finds it at no model cost."""
    zero = lambda coalitions: torch.zeros(len(coalitions))  # noqa: E731
    low, high = 2, 2
    while montecarlo(zero, modality, high, seed, scheme=scheme).evaluations <= budget:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        if montecarlo(zero, modality, mid, seed, scheme=scheme).evaluations <= budget:
            low = mid
        else:
            high = mid
    return low


def part_b_estimators(per_modality: int) -> None:
    # Single-threaded torch: the estimators run many small tensor ops, which intra-op threads slow
    # down on a shared 2-core machine; shapiq's numpy code is single-threaded as well.
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning, module="shapiq")
    modality = torch.tensor([0] * per_modality + [1] * per_modality)
    n = len(modality)
    value = mlp_game(n, seed=0)

    def numpy_game(coalitions: np.ndarray) -> np.ndarray:  # shapiq's game interface
        return value(torch.as_tensor(np.atleast_2d(coalitions), dtype=torch.bool)).numpy()

    truth = exact(value, modality, max_players=n)  # the MLP game is cheap: 2^20 evaluations take a second
    pairs = [tuple(p) for p in truth.pairs.tolist()]
    print(
        f"part (b) estimators: n={n} ({per_modality}+{per_modality}), {len(pairs)} cross pairs, "
        f"MLP game, mean |SII| = {truth['sii'].value.abs().mean():.4f}; MAE over cross pairs vs exact, "
        f"mean over seeds {SEEDS}"
    )

    # shapiq estimates every pair (and, unless top_order, every player); top_order=True where
    # available so that its whole budget goes to the order-2 SII.
    shapiq_methods = {
        "shapiq PermutationSamplingSII": lambda seed: PermutationSamplingSII(
            n, max_order=2, index="SII", top_order=True, random_state=seed
        ),
        "shapiq SVARMIQ": lambda seed: SVARMIQ(n, max_order=2, index="SII", top_order=True, random_state=seed),
        "shapiq KernelSHAPIQ": lambda seed: KernelSHAPIQ(n, max_order=2, index="SII", random_state=seed),
    }

    def run_ours(scheme: str, budget: int, seed: int):
        num_contexts = contexts_for_budget(modality, budget, seed, scheme)
        start = time.perf_counter()
        result = montecarlo(value, modality, num_contexts, seed, scheme=scheme)
        elapsed = time.perf_counter() - start
        return result["sii"].value, result.evaluations, elapsed

    def run_shapiq(name: str, budget: int, seed: int):
        calls = []

        def counted(coalitions: np.ndarray) -> np.ndarray:
            calls.append(len(np.atleast_2d(coalitions)))
            return numpy_game(coalitions)

        start = time.perf_counter()
        values = shapiq_methods[name](seed).approximate(budget, counted)
        elapsed = time.perf_counter() - start
        return torch.tensor([values[p] for p in pairs], dtype=torch.float64), sum(calls), elapsed

    header = f"{'budget':>6}  {'method':<30} {'evals':>7} {'MAE':>8} {'NaN pairs':>9} {'time ms':>8}"
    print(header)
    print("-" * len(header))
    summary = []
    for budget in BUDGETS:
        rows = {}
        runners = {f"montecarlo scheme={s}": (lambda b, sd, s=s: run_ours(s, b, sd)) for s in SCHEMES}
        runners |= {name: (lambda b, sd, name=name: run_shapiq(name, b, sd)) for name in shapiq_methods}
        for name, run in runners.items():
            errors, evaluations, times, missing = [], [], [], []
            for seed in SEEDS:
                estimate, used, elapsed = run(budget, seed)
                finite = torch.isfinite(estimate)
                errors.append((estimate - truth["sii"].value)[finite].abs().mean().item())
                missing.append(int((~finite).sum()))
                evaluations.append(used)
                times.append(elapsed)
            rows[name] = (np.mean(errors), np.mean(times))
            print(
                f"{budget:>6}  {name:<30} {np.mean(evaluations):>7.0f} {np.mean(errors):>8.4f} "
                f"{np.mean(missing):>9.1f} {1000 * np.mean(times):>8.1f}"
            )
        best = min((k for k in rows if k.startswith("shapiq")), key=lambda k: rows[k][0])
        for scheme in SCHEMES:
            ours = rows[f"montecarlo scheme={scheme}"]
            summary.append((budget, scheme, ours[0] / rows[best][0], rows[best][1] / ours[1], best))
        print()

    print(f"{'budget':>6}  {'scheme':<8} {'our MAE / best shapiq MAE':>26} {'shapiq time / our time':>23}  best shapiq")
    for budget, scheme, error_ratio, time_ratio, best in summary:
        print(f"{budget:>6}  {scheme:<8} {error_ratio:>26.2f} {time_ratio:>23.2f}  {best.removeprefix('shapiq ')}")


def main() -> None:
    part_a_coalition_engine()
    if "--engine" not in sys.argv:
        for per_modality in GAME_SIZES:
            part_b_estimators(per_modality)
            print()


if __name__ == "__main__":
    main()
