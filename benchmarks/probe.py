"""Benchmarks of the interaction probe (docs/design.md section 5): run `python benchmarks/probe.py`.

Part (a) times the coalition engine (`fli2moe.probing.coalition_game`) against the engine before issue 15,
a plain batched forward pass over the same masked inputs and a per-coalition loop.
Part (b) compares `fli2moe.interactions.montecarlo` with shapiq's SII approximators at equal
budgets of model evaluations, on one fixed random game with exact SII as the reference, at two sizes:
n = 14, where 8000 evaluations are half of the 2^14 coalitions (the regime of regression estimators
such as KernelSHAP-IQ), and n = 20, where they are 0.8% of them (closer to a probe of many tokens).
Part (c) compares the two Monte Carlo schemes at equal evaluations (`contexts_for_budget`) on the real
probe games of the trained models (the default run's checkpoints and attribution maps), exact SII as the
reference: error, top-pair agreement and the coverage of the 95% intervals (`Estimate.interval`). It
decides `probe.scheme`'s default. `--real` runs part (c) only.
Part (d) is part (b) at the size of an all-token ENRICO probe, n = 64 (1024 cross pairs), on shapiq's
sum-of-unanimity games with known SII, with shapiq's sparse approximators (SPEX, ProxySPEX) as well: MAE,
Spearman's rho and precision of the top 1 and 10, wall time and overhead beyond the game calls. `--large` runs
part (d) only.
Part (e) compares the same estimators on the planted synthetic set's probe games (every token a candidate,
64 cross pairs), exact SII as the reference. `--planted` runs part (e) only.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from scipy.stats import spearmanr
from shapiq import SPEX, SVARMIQ, KernelSHAPIQ, PermutationSamplingSII, ProxySPEX
from shapiq_games.synthetic import SOUM

from fli2moe.attribution import attribute
from fli2moe.explaining import ExplanationContext, explained_examples, seed_folder
from fli2moe.features import load_split_tensors, read_manifest
from fli2moe.interactions import contexts_for_budget, cross_pairs, exact, montecarlo, screen_and_refine
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


def shapiq_approximators(n: int, *, sparse: bool, svarm: bool) -> dict:
    """shapiq's SII approximators by name, each a function of the seed. They estimate every pair (and,
    unless top_order, every player); top_order=True where available so that the whole budget goes to the
    order-2 SII. `sparse` adds SPEX and ProxySPEX (sparse Fourier decoders, ProxySPEX with a LightGBM proxy),
    which are meant for many players; `svarm` adds SVARM-IQ, which is left out at n = 64: at 4000 evaluations
    it spent 205 s beyond the game calls and was 100x less accurate than the others (MAE 0.75 against
    0.005-0.08 on the low-order game)."""
    methods = {
        "shapiq PermutationSamplingSII": lambda seed: PermutationSamplingSII(
            n, max_order=2, index="SII", top_order=True, random_state=seed
        ),
        "shapiq KernelSHAPIQ": lambda seed: KernelSHAPIQ(n, max_order=2, index="SII", random_state=seed),
    }
    if sparse:
        methods["shapiq SPEX"] = lambda seed: SPEX(n=n, index="SII", max_order=2, random_state=seed)
        methods["shapiq ProxySPEX"] = lambda seed: ProxySPEX(n=n, index="SII", max_order=2, random_state=seed)
    if svarm:
        methods["shapiq SVARMIQ"] = lambda seed: SVARMIQ(n, max_order=2, index="SII", top_order=True,
                                                         random_state=seed)
    return methods


def precision_at(estimate: torch.Tensor, truth: torch.Tensor, k: int) -> float:
    """Share of the k largest pairs by exact SII among the estimate's k largest (a NaN estimate ranks last)."""
    top = set(torch.nan_to_num(estimate, nan=-torch.inf).argsort(descending=True)[:k].tolist())
    return len(top & set(truth.argsort(descending=True)[:k].tolist())) / k


def compare_estimators(value, modality: torch.Tensor, truth: torch.Tensor, budgets, seeds, shapiq_methods: dict):
    """Every estimator at equal budgets of evaluations on one game with known SII; prints a table and a summary.

    value: bool [C, n] -> float [C], the game. truth: float [P] exact SII of `cross_pairs(modality)`.
    Per estimator and budget, means over `seeds`: evaluations used, MAE over the cross pairs (pairs with an
    estimate), Spearman's rho and precision of the top 1 and the top 10 by SII against exact, pairs with no
    estimate (NaN), wall time and overhead (wall time less the time spent inside the game). The ranking is by
    signed SII, as the probe ranks synergy (`screen_and_refine`: its `ranking_score`, refined pairs first).
    """
    pairs = [tuple(p) for p in cross_pairs(modality).tolist()]
    game_seconds = [0.0]

    def timed(coalitions: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = value(coalitions)
        game_seconds[0] += time.perf_counter() - start
        return out

    def numpy_game(coalitions: np.ndarray) -> np.ndarray:  # shapiq's game interface, counted
        coalitions = np.atleast_2d(coalitions)
        calls.append(len(coalitions))
        return timed(torch.as_tensor(coalitions, dtype=torch.bool)).numpy()

    def run_ours(scheme: str, budget: int, seed: int):
        num_contexts = contexts_for_budget(modality, budget, indices=("sii",), scheme=scheme)
        result = montecarlo(timed, modality, num_contexts, seed, indices=("sii",), scheme=scheme)
        return result["sii"].value, result["sii"].value, result.evaluations

    def run_screen_and_refine(budget: int, seed: int):
        result = screen_and_refine(timed, modality, budget, seed, indices=("sii",))
        return result["sii"].ranking_score(), result["sii"].value, result.evaluations

    calls: list[int] = []

    def run_shapiq(name: str, budget: int, seed: int):
        calls.clear()
        values = shapiq_methods[name](seed).approximate(budget, numpy_game)
        estimate = torch.tensor([values[p] for p in pairs], dtype=torch.float64)
        return estimate, estimate, sum(calls)

    runners = {f"montecarlo scheme={s}": (lambda b, sd, s=s: run_ours(s, b, sd)) for s in SCHEMES}
    runners["screen_and_refine"] = run_screen_and_refine
    runners |= {name: (lambda b, sd, name=name: run_shapiq(name, b, sd)) for name in shapiq_methods}
    header = (f"{'budget':>6}  {'method':<30} {'evals':>7} {'MAE':>8} {'Spearman':>8} {'P@1':>5} {'P@10':>5} "
              f"{'NaN pairs':>9} {'time s':>7} {'overhead s':>10}")
    print(header)
    print("-" * len(header))
    summary = []
    for budget in budgets:
        rows = {}
        for name, run in runners.items():
            errors, rho, first, top, evaluations, times, overheads, missing = [], [], [], [], [], [], [], []
            for seed in seeds:
                game_seconds[0] = 0.0
                start = time.perf_counter()
                try:
                    ranking, estimate, used = run(budget, seed)
                except ValueError:  # the budget does not buy this estimator's two contexts at this n
                    break
                elapsed = time.perf_counter() - start
                finite = torch.isfinite(estimate)
                errors.append((estimate - truth)[finite].abs().mean().item())
                rho.append(spearmanr(estimate[finite], truth[finite]).statistic)
                first.append(precision_at(ranking, truth, 1))
                top.append(precision_at(ranking, truth, 10))
                missing.append(int((~finite).sum()))
                evaluations.append(used)
                times.append(elapsed)
                overheads.append(elapsed - game_seconds[0])
            if not errors:
                print(f"{budget:>6}  {name:<30} budget too small for two contexts")
                continue
            rows[name] = (np.mean(errors), np.mean(top), np.mean(overheads))
            print(f"{budget:>6}  {name:<30} {np.mean(evaluations):>7.0f} {np.mean(errors):>8.4f} {np.mean(rho):>8.3f} "
                  f"{np.mean(first):>5.2f} {np.mean(top):>5.2f} {np.mean(missing):>9.1f} {np.mean(times):>7.2f} "
                  f"{np.mean(overheads):>10.2f}")
        shapiq_rows = [k for k in rows if k.startswith("shapiq")]
        best_mae = min(shapiq_rows, key=lambda k: rows[k][0])
        best_top = max(shapiq_rows, key=lambda k: rows[k][1])
        for name in (k for k in rows if not k.startswith("shapiq")):
            ours = rows[name]
            summary.append((budget, name.removeprefix("montecarlo "), ours[0] / rows[best_mae][0], best_mae,
                            ours[1] - rows[best_top][1], best_top))
        print()

    print(f"{'budget':>6}  {'ours':<22} {'MAE / best shapiq MAE':>22}  {'by':<22} {'P@10 - best shapiq P@10':>24}  by")
    for budget, name, error_ratio, best_mae, top_gain, best_top in summary:
        print(f"{budget:>6}  {name:<22} {error_ratio:>22.2f}  {best_mae.removeprefix('shapiq '):<22} "
              f"{top_gain:>+24.2f}  {best_top.removeprefix('shapiq ')}")


def part_b_estimators(per_modality: int) -> None:
    # Single-threaded torch: the estimators run many small tensor ops, which intra-op threads slow
    # down on a shared 2-core machine; shapiq's numpy code is single-threaded as well.
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning, module="shapiq")
    modality = torch.tensor([0] * per_modality + [1] * per_modality)
    n = len(modality)
    value = mlp_game(n, seed=0)
    truth = exact(value, modality, max_players=n)  # the MLP game is cheap: 2^20 evaluations take a second
    print(
        f"part (b) estimators: n={n} ({per_modality}+{per_modality}), {len(truth.pairs)} cross pairs, "
        f"MLP game, mean |SII| = {truth['sii'].value.abs().mean():.4f}; means over seeds {SEEDS}"
    )
    compare_estimators(value, modality, truth["sii"].value, BUDGETS, SEEDS,
                       shapiq_approximators(n, sparse=False, svarm=True))


SOUM_GAMES = {  # name: (n_basis_games, min and max interaction size), as in shapiq's SOUM benchmarks
    "low-order": (100, 1, 3),
    "wide": (50, 1, 12),
}
LARGE_PER_MODALITY = 32  # n = 64: ENRICO's 32 + 32 tokens, 1024 cross pairs
LARGE_BUDGETS = (4000, 8000)  # owen needs 2178 for its 2 contexts at n = 64
LARGE_SEEDS = (0, 1, 2)


def part_d_large_games() -> None:
    """Every estimator at n = 64 (two modalities of 32) on shapiq's sum-of-unanimity games, whose SII is
    known in closed form from their Moebius coefficients (`SOUM.exact_values`)."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning, module="shapiq")
    modality = torch.tensor([0] * LARGE_PER_MODALITY + [1] * LARGE_PER_MODALITY)
    n = len(modality)
    for name, (basis, low, high) in SOUM_GAMES.items():
        game = SOUM(n, basis, min_interaction_size=low, max_interaction_size=high, random_state=0)
        exact_sii = game.exact_values(index="SII", order=2)
        truth = torch.tensor([exact_sii[tuple(p)] for p in cross_pairs(modality).tolist()], dtype=torch.float64)
        value = lambda coalitions, game=game: torch.as_tensor(game.value_function(coalitions.numpy()))  # noqa: E731
        print(f"part (d) estimators: n={n} ({LARGE_PER_MODALITY}+{LARGE_PER_MODALITY}), {len(truth)} cross pairs, "
              f"SOUM '{name}' ({basis} unanimity games of size {low}-{high}), mean |SII| = "
              f"{truth.abs().mean():.4f}, {int((truth != 0).sum())} pairs with SII != 0; means over seeds {LARGE_SEEDS}")
        compare_estimators(value, modality, truth, LARGE_BUDGETS, LARGE_SEEDS,
                           shapiq_approximators(n, sparse=True, svarm=False))
        print()


REAL_GAMES = (("enrico", "fl_i2moe", 6, 8), ("synthetic", "fl_i2moe", "all", 3))  # dataset, model, candidates, examples
REAL_BUDGETS = (500, 1000, 2000)
REAL_SEEDS = tuple(range(10))


def exhaustive_game(game, n: int):
    """v of all 2^n coalitions evaluated once (coalition k holds player p iff bit p of k is set), and a
    game that reads them back: every estimator then costs no model time and sees the same values."""
    members = ((torch.arange(2**n)[:, None] >> torch.arange(n)) & 1).bool()
    table = torch.cat([game(chunk).double() for chunk in members.split(1 << 14)])
    return lambda coalitions: table[(coalitions.long() << torch.arange(n)).sum(dim=1)]


def real_probe_games(dataset: str, model_name: str, per_modality, examples: int) -> list:
    """The probe games of the default run's seed-0 model on its first `examples` test examples with
    `per_modality` candidates (an int or "all"), each evaluated exhaustively (`exhaustive_game`):
    a list of (game, modality [n], exact SII [P]); empty, with a message, when the attribution maps are missing."""
    params = load_params(REPO / "params.yaml")
    maps = REPO / "results" / "attribution" / f"{dataset}-{model_name}"
    if not (maps / "skipped.json").exists():
        print(f"{dataset}-{model_name}: no attribution maps (run `dvc repro attribute@{dataset}-{model_name}`)")
        return []
    ex = explained_examples(dataset, model_name, params.explain, examples, 0, str(REPO / "features"),
                            str(REPO / "checkpoints"))
    whole = load_file(seed_folder(maps, 0) / "maps.safetensors")
    rows = {int(index): row for row, index in enumerate(whole["index"].tolist())}
    context = ex.context(params.probe.quantity, params.explain.max_batch)
    games = []
    for b, index in enumerate(ex.index.tolist()):
        candidates = select_candidates(whole["whole"][rows[index]], ex.mask[b], ex.model.modality_slices,
                                       per_modality)
        game, modality = coalition_game(context, ex.projected[b], ex.mask[b], ex.target[b], candidates)
        table = exhaustive_game(game, len(candidates))
        games.append((table, modality, exact(table, modality, indices=("sii",))["sii"].value))
    return games


def part_c_real_games() -> None:
    """SII of the real probe games by each scheme at equal evaluations, against exact SII.

    For each of REAL_GAMES (the seed-0 model of the default run, its first test examples, the default
    candidates), every scheme and budget of REAL_BUDGETS (SII and RG together, as the probe stage spends
    them) over REAL_SEEDS Monte Carlo seeds: evaluations used, relative error (mean |error| over the pairs
    with an estimate / mean |SII|, over runs; "no CI" counts the pairs without one), top-1 (the estimate's top pair is the exact top pair), coverage (exact SII inside
    the 95% t-interval, over pairs that have one) and the share of pairs with no interval.
    """
    torch.set_num_threads(1)
    print(f"{'game':<22} {'scheme':<8} {'budget':>6} {'evals':>6} {'rel. error':>10} {'top-1':>6} "
          f"{'coverage':>8} {'no CI':>6}")
    for dataset, model_name, per_modality, examples in REAL_GAMES:
        games = real_probe_games(dataset, model_name, per_modality, examples)
        for scheme in ("outside", "owen") if games else ():
            for budget in REAL_BUDGETS:
                used, errors, scale, top, covered, no_ci = [], [], [], [], [], []
                for table, modality, truth in games:
                    m = contexts_for_budget(modality, budget, scheme=scheme)
                    for seed in REAL_SEEDS:
                        result = montecarlo(table, modality, m, seed, scheme=scheme)
                        sii = result["sii"]
                        low, high = sii.interval()
                        has = ~low.isnan()
                        used.append(result.evaluations)
                        errors.append((sii.value - truth).abs().nanmean().item())
                        scale.append(truth.abs().mean().item())
                        top.append(int(torch.nan_to_num(sii.value, nan=-torch.inf).argmax()) == int(truth.argmax()))
                        covered.append(((low <= truth) & (truth <= high))[has].double().mean().item())
                        no_ci.append((~has).double().mean().item())
                print(f"{dataset + '-' + model_name:<22} {scheme:<8} {budget:>6} {np.mean(used):>6.0f} "
                      f"{np.mean(errors) / np.mean(scale):>10.3f} {np.mean(top):>6.2f} {np.mean(covered):>8.3f} "
                      f"{np.mean(no_ci):>6.3f}")


PLANTED_BUDGETS = (1000, 2000)  # the default probe.evaluations, and twice it


def part_e_planted_synthetic() -> None:
    """Every estimator (as in part (d), with SVARM-IQ) on the planted synthetic set's probe games with every
    token a candidate (the default run's seed-0 FL-I2MoE, 16 players, 64 cross pairs), exact SII as reference."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning, module="shapiq")
    dataset, model_name, per_modality, examples = REAL_GAMES[1]
    for example, (table, modality, truth) in enumerate(real_probe_games(dataset, model_name, per_modality, examples)):
        n = len(modality)
        print(f"part (e) estimators: {dataset}-{model_name} test example {example}, n={n}, {len(truth)} cross pairs, "
              f"mean |SII| = {truth.abs().mean():.4f}; means over seeds {SEEDS}")
        compare_estimators(table, modality, truth, PLANTED_BUDGETS, SEEDS,
                           shapiq_approximators(n, sparse=True, svarm=True))
        print()


def main() -> None:
    if "--real" in sys.argv:
        part_c_real_games()
        return
    if "--large" in sys.argv:
        part_d_large_games()
        return
    if "--planted" in sys.argv:
        part_e_planted_synthetic()
        return
    part_a_coalition_engine()
    if "--engine" not in sys.argv:
        for per_modality in GAME_SIZES:
            part_b_estimators(per_modality)
            print()
        part_c_real_games()
        part_d_large_games()
        part_e_planted_synthetic()


if __name__ == "__main__":
    main()
