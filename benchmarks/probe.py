"""Benchmarks of the interaction probe (DESIGN.md section 5): run `python benchmarks/probe.py`.

Part (a), the coalition engine, is left to the engine's author (see `part_a_coalition_engine`).
Part (b) compares `fli2moe.interactions.montecarlo` with shapiq's SII approximators at equal
budgets of model evaluations, on one fixed random game with exact SII as the reference.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from shapiq import SVARMIQ, KernelSHAPIQ, PermutationSamplingSII

from fli2moe.interactions import exact, montecarlo

N_PER_MODALITY = 7  # n = 14: 2^14 = 16384 coalitions, so every budget below is a real sample
BUDGETS = (500, 1000, 2000, 4000, 8000)
SEEDS = (0, 1, 2, 3, 4)
SCHEMES = ("outside", "owen")


def part_a_coalition_engine() -> None:
    """PART (a): coalition engine benchmark (batched masked forward passes). To be written."""
    print("part (a) coalition engine: not written yet\n")


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


def part_b_estimators() -> None:
    # Single-threaded torch: the estimators run many small tensor ops, which intra-op threads slow
    # down on a shared 2-core machine; shapiq's numpy code is single-threaded as well.
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning, module="shapiq")
    modality = torch.tensor([0] * N_PER_MODALITY + [1] * N_PER_MODALITY)
    n = len(modality)
    value = mlp_game(n, seed=0)

    def numpy_game(coalitions: np.ndarray) -> np.ndarray:  # shapiq's game interface
        return value(torch.as_tensor(np.atleast_2d(coalitions), dtype=torch.bool)).numpy()

    truth = exact(value, modality)
    pairs = [tuple(p) for p in truth.pairs.tolist()]
    print(
        f"part (b) estimators: n={n} ({N_PER_MODALITY}+{N_PER_MODALITY}), {len(pairs)} cross pairs, "
        f"MLP game, mean |SII| = {truth.sii.abs().mean():.4f}; MAE over cross pairs vs exact, "
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
        return result.sii, result.evaluations, elapsed

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
                errors.append((estimate - truth.sii)[finite].abs().mean().item())
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
    part_b_estimators()


if __name__ == "__main__":
    main()
