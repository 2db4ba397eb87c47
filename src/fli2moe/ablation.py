"""Pair-level masking ablation (docs/design.md section 5, `ablate`): does removing the cross-modal pairs the
probes rank highest hurt the model more than removing random pairs of the same size?

Per example x, with the probe's candidate tokens A (modality a) and B (modality b) and its estimates
over the pairs A x B of every probed index (`probing.interaction_tensors`; SII and RG by default), and
per budget b:

- Ranked sets: the top-b pairs by each probed index (a ranking), separately: descending, NaN (a pair the
  Monte Carlo probe never sampled) last, ties in (slot a, slot b) order; an index the probe refined
  (`interactions.screen_and_refine`) ranks its refined pairs first. b is clipped to the |A| |B| pairs available.
- Removing a set of pairs removes the union of their tokens, U = U_a + U_b with d_a = |U_a| and
  d_b = |U_b| distinct tokens. Top pairs share tokens (the top 3 may hold only 4 tokens), so d_a + d_b
  ranges from about 2 sqrt(b) (a block of d_a x d_b pairs) to 2b (disjoint pairs), always with
  max(d_a, d_b) <= b <= d_a d_b.
- Random sets, compared with each ranked set: a uniform d_a-subset of modality a's pool and,
  independently, a uniform d_b-subset of modality b's pool, the pool being either the candidates
  ("random_candidates") or all real tokens of the modality ("random_all"); `random_repeats` draws.
  Why this is the fair control: the keep-mask depends on U only, and b uniform random distinct cross
  pairs, conditioned on their union having d_a and d_b tokens, have exactly this union law (the law of
  b random pairs is invariant under permuting the tokens within each modality, and those permutations
  reach every pair of subsets of these sizes); as b lies in [max(d_a, d_b), d_a d_b], b pairs covering
  the drawn tokens exist. So a random set has the ranked set's budget and its number of distinct tokens
  per modality (hence in total) and differs only in which tokens it removes; matching per modality and
  not only in total keeps "how much of each modality is removed" out of the comparison. This also
  avoids sequential rejection sampling, which can dead-end (matching the 4 tokens of a 2 x 2 block of
  4 pairs: 3 drawn pairs sharing one a-token already hold 4 tokens, and no 4th pair fits inside them).
  A pool smaller than its ranked count is taken whole and the set is flagged unmatched. With the
  probe's candidates (real tokens, checked) both pools hold the ranked tokens, so every set is matched;
  the flags and counts are recorded so a stage can say so.
- drop(U) = p(x) - p(remove(x, U)), p the target score (`masking.target_score`, quantity "prob" or
  "logit") with the target fixed on x; the masked logits also give the task metric under removal.

Random draws come from numpy's default_rng([seed, example index]): reproducible per example whatever
subset of examples is ablated and in which order. They follow (budget, ranking, pool, modality) order,
so ranking by one more index changes the random sets drawn for the others at later budgets (equally
valid controls, other numbers); the default rankings (SII, RG) draw as they always have.

Statistics, per budget, ranking and random pool, over the trained seeds and the n examples: the paired
differences d = drop(ranked) - mean over repeats of drop(random), and (see each function) `seed_example_ci`
of their mean over seeds and examples, and of their per-example mean over seeds `wilcoxon_greater`,
`sign_flip_pvalue` (one-sided, ranked > random), `cohens_dz` and `rank_biserial`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.stats import rankdata, wilcoxon
from torch import Tensor

from fli2moe.faithfulness import seed_example_ci
from fli2moe.interactions import INDICES
from fli2moe.task_metrics import task_metrics

if TYPE_CHECKING:  # only a type: the ablation evaluates through the context it is given
    from fli2moe.explaining import ExplanationContext

SELECTIONS = ("ranked", "random_candidates", "random_all")
BUDGET_PREFIX = "budget_"  # a budget's key in the metrics: see `budget_key`


# --- keep-masks ----------------------------------------------------------------------------------

def ranked_pairs(scores: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """(row, column) of the n_a * n_b pairs of scores[:n_a, :n_b] from the highest score down, [P, 2].

    NaN ranks below every number; ties keep row-major order, i.e. the lower candidate slot of a first,
    then of b (the candidates are ascending slots).
    """
    rows, cols = np.divmod(np.arange(n_a * n_b), n_b)  # row-major
    # argsort sorts NaN last and a stable sort keeps row-major order among ties.
    order = np.argsort(-scores[rows, cols], kind="stable")
    return np.stack([rows[order], cols[order]], 1)


def random_token_sets(rng: np.random.Generator, pool: np.ndarray, count: int, repeats: int) -> np.ndarray:
    """`repeats` independent uniform subsets of `count` slots of `pool` [n]: [repeats, min(count, n)]
    (a pool smaller than `count` is taken whole)."""
    return rng.permuted(np.tile(pool, (repeats, 1)), axis=1)[:, :count]


@dataclass
class ExampleMasks:
    """The keep-masks of one example; nB budgets, nR rankings, R random repeats."""

    keeps: np.ndarray  # [nB, nR, 1 + 2R, T] bool: the ranked set, R sets from the candidates, R from all tokens
    pairs: np.ndarray  # [nB] pairs removed: the budget clipped to the available pairs
    tokens: np.ndarray  # [nB, nR, 3, 2] distinct tokens removed per selection (SELECTIONS) and modality
    matched: np.ndarray  # [nB, nR, 3] bool: as many tokens per modality as the ranked set (True for it)


def selection_rows(repeats: int) -> list[slice]:
    """Where each selection of SELECTIONS sits on the 1 + 2R axis of `ExampleMasks.keeps`."""
    return [slice(0, 1), slice(1, 1 + repeats), slice(1 + repeats, 1 + 2 * repeats)]


def example_masks(mask: np.ndarray, slices: Sequence[slice], slots_a: np.ndarray, slots_b: np.ndarray,
                  scores: Mapping[str, np.ndarray], budgets: Sequence[int], repeats: int,
                  rng: np.random.Generator) -> ExampleMasks:
    """Keep-masks of the ranked and random pair sets of one example (module docstring).

    mask [T] bool (real tokens), slices: the two modalities' slot ranges, slots_a [n_a] / slots_b [n_b]:
    the candidates' slots (-1 = padding, after the real ones), scores: {ranking: [n_a, n_b]}, the nR
    rankings in this order. The draws follow a fixed order (budget, ranking, pool, modality), so `rng`
    fixes them.
    """
    valid_a, valid_b = slots_a[slots_a >= 0], slots_b[slots_b >= 0]
    if not mask[np.concatenate([valid_a, valid_b])].all():
        raise ValueError("candidate slots must be real tokens")
    pools = [(valid_a, valid_b),  # random_candidates
             tuple(s.start + np.flatnonzero(mask[s]) for s in slices)]  # random_all
    orders = [ranked_pairs(ranking, len(valid_a), len(valid_b)) for ranking in scores.values()]  # each [P, 2]
    pairs = np.minimum(budgets, len(orders[0]))
    T, R = len(mask), repeats
    keeps = np.broadcast_to(mask, (len(budgets), len(orders), 1 + 2 * R, T)).copy()
    tokens = np.zeros((len(budgets), len(orders), len(SELECTIONS), 2), dtype=np.int64)
    for j, b in enumerate(pairs):
        for r, order in enumerate(orders):
            ranked = [np.unique(valid_a[order[:b, 0]]), np.unique(valid_b[order[:b, 1]])]  # U_a, U_b
            sets = [[u[None] for u in ranked]]  # per selection, per modality: [reps, size] slots
            sets += [[random_token_sets(rng, p, len(u), R) for p, u in zip(pool, ranked)] for pool in pools]
            for s, (rows, modality_sets) in enumerate(zip(selection_rows(R), sets)):
                np.put_along_axis(keeps[j, r, rows], np.concatenate(modality_sets, 1), False, 1)
                tokens[j, r, s] = [m.shape[1] for m in modality_sets]
    return ExampleMasks(keeps, pairs, tokens, matched=(tokens == tokens[:, :, :1]).all(-1))


# --- model evaluation --------------------------------------------------------------------------------

@dataclass
class Ablation:
    """Pair ablation of N examples: nB budgets, nR rankings, R random repeats, C classes.

    The 1 + 2R axis holds the selections of SELECTIONS, `selection_rows(R)` says where.
    """

    rankings: tuple[str, ...]  # [nR] the interaction indices the pairs are ranked by
    budgets: np.ndarray  # [nB] requested pairs
    index: np.ndarray  # [N] the examples' indices in their split (they seed the draws)
    available: np.ndarray  # [N] cross-modal candidate pairs
    pairs: np.ndarray  # [N, nB] pairs removed (budget clipped to available)
    tokens: np.ndarray  # [N, nB, nR, 3, 2] distinct tokens removed per selection and modality
    matched: np.ndarray  # [N, nB, nR, 3] bool
    keeps: np.ndarray  # [N, nB, nR, 1 + 2R, T] bool
    score: np.ndarray  # [N] p(x), unmasked
    drop: np.ndarray  # [N, nB, nR, 1 + 2R] p(x) - p(x masked)
    logits: np.ndarray  # [N, C] unmasked
    masked_logits: np.ndarray  # [N, nB, nR, 1 + 2R, C]

    @property
    def repeats(self) -> int:
        return (self.drop.shape[-1] - 1) // 2


def probed_indices(probe: Mapping[str, object]) -> tuple[str, ...]:
    """The interaction indices a probe stage's tensors hold (`probing.interaction_tensors`), in registry order."""
    return tuple(name for name in INDICES if name in probe)


def pair_ablation(context: ExplanationContext, projected: Tensor, mask: Tensor, target: Tensor,
                  probe: Mapping[str, Tensor], *, budgets: Sequence[int], random_repeats: int = 20,
                  seed: int = 0, rankings: Sequence[str] | None = None) -> Ablation:
    """Ranked and random pair removal for N examples (module docstring), all masks in one batched pass.

    projected [N, T, H], mask [N, T], target [N, C] bool (fixed on the unmasked input); the context holds
    the model (two modalities), baseline, task, quantity of the drop and batch limit; probe: the probe
    stage's tensors (per ranking [N, n_a, n_b], ranked by "<ranking>_ranking" where present, "slots_a"
    [N, n_a], "slots_b" [N, n_b], "index" [N]) for
    these N examples, in this order; distinct budgets; rankings: the indices to rank by (default: every
    index the probe holds, `probed_indices`).

    Raises:
        ValueError: not two modalities, repeated budgets, random_repeats < 1, a ranking the probe lacks, or
            a probe of other examples.
    """
    slices = list(context.model.modality_slices.values())
    if len(slices) != 2:
        raise ValueError(f"pair ablation needs a two-modality model, got {len(slices)} modalities")
    if random_repeats < 1:
        raise ValueError(f"random_repeats must be >= 1, got {random_repeats}")
    if len(set(budgets)) != len(budgets):  # each budget is a key of the metrics (`budget_key`)
        raise ValueError(f"budgets must be distinct, got {list(budgets)}")
    rankings = probed_indices(probe) if rankings is None else tuple(rankings)
    if not rankings or not set(rankings) <= set(probe):
        raise ValueError(f"rankings must be indices the probe holds ({list(probed_indices(probe))}), got {list(rankings)}")
    # An index refined by `screen_and_refine` ranks by its ranking score (refined pairs first), the others by value.
    scores = {name: np.asarray(probe.get(f"{name}_ranking", probe[name])) for name in rankings}
    probe = {name: np.asarray(probe[name]) for name in ("slots_a", "slots_b", "index")}
    N, T = mask.shape
    if len(probe["index"]) != N:
        raise ValueError(f"the probe holds {len(probe['index'])} examples, the ablation {N}")
    real = mask.cpu().numpy()
    per_example = [example_masks(real[n], slices, probe["slots_a"][n], probe["slots_b"][n],
                                 {name: scores[name][n] for name in rankings}, budgets, random_repeats,
                                 np.random.default_rng([seed, int(probe["index"][n])])) for n in range(N)]
    keeps = np.stack([m.keeps for m in per_example])  # [N, nB, nR, 1 + 2R, T]
    rows = np.concatenate([real[:, None], keeps.reshape(N, -1, T)], 1)  # [N, K, T]: row 0 removes nothing
    logits = context.logits(projected, mask, torch.from_numpy(rows))  # [N, K, C]
    scores = context.score(logits, target[:, None].to(logits.device)).cpu().numpy()  # [N, K]
    logits = logits.cpu().numpy()
    valid = (probe["slots_a"] >= 0).sum(1) * (probe["slots_b"] >= 0).sum(1)
    return Ablation(rankings=rankings, budgets=np.asarray(budgets), index=probe["index"], available=valid,
                    pairs=np.stack([m.pairs for m in per_example]), tokens=np.stack([m.tokens for m in per_example]),
                    matched=np.stack([m.matched for m in per_example]), keeps=keeps, score=scores[:, 0],
                    drop=(scores[:, :1] - scores[:, 1:]).reshape(keeps.shape[:-1]), logits=logits[:, 0],
                    masked_logits=logits[:, 1:].reshape(*keeps.shape[:-1], -1))


# --- statistics --------------------------------------------------------------------------------------

def wilcoxon_greater(differences) -> dict[str, float]:
    """One-sided Wilcoxon signed-rank test of H1: the differences are shifted above 0 (scipy, zero
    differences ranked and split half to each sign, "zsplit"): {statistic: W+, p}."""
    d = np.asarray(differences, dtype=np.float64)
    # scipy's "auto" runs a permutation test when there are zeros or ties, and that refuses a single
    # observation; for one the exact null distribution is the same test.
    result = wilcoxon(d, alternative="greater", zero_method="zsplit", method="auto" if len(d) > 1 else "exact")
    return {"statistic": float(result.statistic), "p": float(result.pvalue)}


def sign_flip_pvalue(differences, permutations: int = 10000, seed: int = 0) -> float:
    """One-sided paired permutation test of H1: mean difference > 0.

    Under H0 each difference is symmetric about 0, so its sign can be flipped independently. Statistic:
    the sum. p = share of sign vectors whose flipped sum is >= the observed one: exact over all 2^n
    vectors when 2^n <= permutations, else Monte Carlo over `permutations` random vectors from numpy's
    default_rng(seed), p = (1 + #{>=}) / (1 + permutations) (the observed vector counts once, so p > 0).
    """
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    exact = 2 ** n <= permutations  # Python ints: no overflow for large n
    if exact:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)  # [2^n, n], all of {-1, 1}^n
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], (permutations, n))
    # The observed sum and the sums of the flips add the same numbers in other orders: a relative
    # tolerance keeps a flip equal to the observed vector from counting as smaller by rounding.
    at_least = signs @ d >= d.sum() - 1e-12 * np.abs(d).sum()
    return float(at_least.mean()) if exact else float((1 + at_least.sum()) / (1 + permutations))


def cohens_dz(differences) -> float | None:
    """Cohen's d_z = mean(d) / sd(d), sd with ddof = 1; None when undefined (n < 2 or sd = 0)."""
    d = np.asarray(differences, dtype=np.float64)
    sd = d.std(ddof=1) if len(d) > 1 else 0.0
    return float(d.mean() / sd) if sd > 0 else None


def rank_biserial(differences) -> float:
    """Matched-pairs rank-biserial correlation r = (R+ - R-) / (n (n + 1) / 2), in [-1, 1].

    Ranks of |d| over all n differences (average ranks for ties); R+ and R- sum the ranks of the
    positive and negative ones, a zero difference's rank split half to each (as the Wilcoxon zsplit
    test does, so r = 2 W+ / (n (n + 1) / 2) - 1). Without zeros this is Kerby's simple difference formula.
    """
    d = np.asarray(differences, dtype=np.float64)
    ranks = rankdata(np.abs(d))
    return float((ranks * np.sign(d)).sum() / ranks.sum())


def paired_comparison(ranked, random, permutations: int = 10000, resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """Ranked vs random drops over S trained seeds and n examples: ranked [S, n], random [S, n, R]
    (averaged over the R repeats first).

    d = ranked - random per seed and example: the mean of d with its `faithfulness.seed_example_ci` over seeds
    and examples (difference, std (seed spread), low, high, n, seeds); the paired tests and effect sizes
    (`wilcoxon_greater`, `sign_flip_pvalue`, `cohens_dz`, `rank_biserial`) of the per-example mean of d over
    the seeds: examples are their unit, so they ask whether the seeds' models, on average, separate ranked
    from random pairs on these examples.
    """
    d = np.asarray(ranked, dtype=np.float64) - np.asarray(random, dtype=np.float64).mean(-1)  # [S, n]
    if d.ndim != 2:
        raise ValueError(f"paired_comparison: ranked must be [seeds, examples], got shape {d.shape}")
    ci = seed_example_ci(d, resamples, seed, level)
    per_example = d.mean(0)
    test = wilcoxon_greater(per_example)
    return {"difference": ci["mean"], "std": ci["std"], "low": ci["low"], "high": ci["high"], "n": ci["n"],
            "seeds": ci["seeds"], "wilcoxon_statistic": test["statistic"], "wilcoxon_p": test["p"],
            "permutation_p": sign_flip_pvalue(per_example, permutations, seed), "cohens_dz": cohens_dz(per_example),
            "rank_biserial": rank_biserial(per_example)}


# --- stage outputs -----------------------------------------------------------------------------------

def budget_key(budget: int) -> str:
    """How a budget is spelled in the stage's metrics and in reports/summary.json: "budget_3"."""
    return f"{BUDGET_PREFIX}{budget}"


def summary_budgets(summary: Mapping) -> list[int]:
    """The budgets of an `ablation_summary` (or of its metrics file), ascending.

    Read back from the keys, which the metrics file sorts as strings ("budget_10" before "budget_2").
    """
    return sorted(int(key.removeprefix(BUDGET_PREFIX)) for key in summary if key.startswith(BUDGET_PREFIX))


def summary_rankings(summary: Mapping) -> list[str]:
    """The rankings (interaction indices) of an `ablation_summary` or its metrics file, in registry order."""
    return [name for name in INDICES if name in summary[budget_key(summary_budgets(summary)[0])]]


def ablation_summary(ablations: Sequence[Ablation], labels: np.ndarray, task: str, permutations: int = 10000,
                     resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The metrics of the stage over its trained seeds (one `Ablation` per seed, the same examples, budgets
    and rankings), JSON-ready (no NaN) and nested dicts of scalars only: DVC shows each leaf under its
    dotted path (`dvc metrics diff`, `dvc exp show`), and nothing inside a list.

    unmasked:                                mean p(x) ("score") and the task metrics (`task_metrics`
                                             against `labels`), means over seeds
    budget_<b>.<ranking>.<selection>:        for each ranking (probed index) and selection of SELECTIONS:
                                             mean drop (random: per example the mean over repeats) over seeds
                                             and examples with its `seed_example_ci` over both (drop, std (seed
                                             spread), low, high, n, seeds), the task metrics under removal
                                             (mean over seeds and random repeats), mean_pairs and mean_tokens
                                             removed, examples whose budget was clipped and unmatched
                                             examples (counted over seeds)
    budget_<b>.<ranking>.vs_<random>:        for each random selection (random_candidates, random_all):
                                             `paired_comparison` of ranked vs random (difference, std, low,
                                             high, n, seeds, wilcoxon_statistic, wilcoxon_p, permutation_p,
                                             cohens_dz (None when undefined), rank_biserial)

    e.g. budget_1.sii.vs_random_candidates.difference; `budget_key` spells the budgets.
    """
    first = ablations[0]
    if any(a.rankings != first.rankings or a.drop.shape != first.drop.shape
           or not np.array_equal(a.index, first.index) for a in ablations):
        raise ValueError("ablation_summary: the seeds' ablations differ in examples, budgets or rankings")
    rows = selection_rows(first.repeats)

    def seed_mean(metrics: list[dict]) -> dict:
        return {name: float(np.mean([m[name] for m in metrics])) for name in metrics[0]}

    summary = {"unmasked": {"score": float(np.mean([a.score.mean() for a in ablations])),
                            **seed_mean([task_metrics(a.logits, labels, task) for a in ablations])}}
    drop = np.stack([a.drop for a in ablations])  # [S, N, nB, nR, 1 + 2R]
    for j, budget in enumerate(first.budgets.tolist()):
        per_budget = summary[budget_key(budget)] = {}
        for r, ranking in enumerate(first.rankings):
            per_ranking = per_budget[ranking] = {}
            per_selection = [drop[:, :, j, r, rows[s]] for s in range(len(SELECTIONS))]  # each [S, N, reps]
            for s, selection in enumerate(SELECTIONS):
                ci = seed_example_ci(per_selection[s].mean(-1), resamples, seed, level)
                repeats = [task_metrics(a.masked_logits[:, j, r, k], labels, task)
                           for a in ablations for k in range(rows[s].start, rows[s].stop)]
                per_ranking[selection] = {
                    "drop": ci["mean"], "std": ci["std"], "low": ci["low"], "high": ci["high"], "n": ci["n"],
                    "seeds": ci["seeds"], **seed_mean(repeats),
                    "mean_pairs": float(np.mean([a.pairs[:, j].mean() for a in ablations])),
                    "mean_tokens": float(np.mean([a.tokens[:, j, r, s].sum(-1).mean() for a in ablations])),
                    "clipped": int(sum((a.pairs[:, j] < budget).sum() for a in ablations)),
                    "unmatched": int(sum((~a.matched[:, j, r, s]).sum() for a in ablations)),
                }
            for s, selection in enumerate(SELECTIONS[1:], 1):
                per_ranking[f"vs_{selection}"] = paired_comparison(per_selection[0][..., 0], per_selection[s],
                                                                   permutations, resamples, seed, level)
    return summary


def ablation_table(ablation: Ablation) -> dict[str, np.ndarray]:
    """Long format, one row per (example, budget, ranking, selection): columns for a parquet file.

    drop is the mean over repeats for the random selections (their token counts are equal across
    repeats: the matched sizes); tokens = tokens_a + tokens_b.
    """
    N, nB, nR, nS = ablation.matched.shape
    n, j, r, s = (a.ravel() for a in np.meshgrid(*map(np.arange, (N, nB, nR, nS)), indexing="ij"))
    rows = selection_rows(ablation.repeats)
    drop = np.stack([ablation.drop[..., rows[k]].mean(-1) for k in range(nS)], -1)  # [N, nB, nR, 3]
    tokens = ablation.tokens[n, j, r, s]  # [rows, 2]
    return {"example": ablation.index[n], "budget": ablation.budgets[j], "pairs": ablation.pairs[n, j],
            "clipped": ablation.pairs[n, j] < ablation.budgets[j], "ranking": np.array(ablation.rankings)[r],
            "selection": np.array(SELECTIONS)[s], "drop": drop[n, j, r, s], "tokens_a": tokens[:, 0],
            "tokens_b": tokens[:, 1], "tokens": tokens.sum(1), "matched": ablation.matched[n, j, r, s]}


def plot_rows(summary: dict) -> list[dict]:
    """DVC plot rows from `ablation_summary`, by budget (ascending), ranking and selection: budget, series
    ("<ranking>/<selection>"), drop, low, high (over seeds and examples)."""
    rows = []
    for budget in summary_budgets(summary):
        for ranking in summary_rankings(summary):
            for selection in SELECTIONS:
                drop = summary[budget_key(budget)][ranking][selection]
                rows.append({"budget": budget, "series": f"{ranking}/{selection}", "drop": drop["drop"],
                             "low": drop["low"], "high": drop["high"]})
    return rows
