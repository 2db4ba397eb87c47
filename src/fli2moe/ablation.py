"""Pair-level masking ablation (docs/design.md section 5, `ablate`): does removing the cross-modal pairs the
probes rank highest hurt the model more than removing random pairs of the same size?

Per example x, with the probe's candidate tokens A (modality a) and B (modality b) and its estimates
SII, RG over the pairs A x B (`probing.interaction_tensors`), and per budget b:

- Ranked sets: the top-b pairs by SII, and separately by RG: descending, NaN (a pair the Monte Carlo
  probe never sampled) last, ties in (slot a, slot b) order. b is clipped to the |A| |B| pairs available.
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
subset of examples is ablated and in which order.

Statistics, per budget, ranking and random pool, over the n examples: the paired differences
d = drop(ranked) - mean over repeats of drop(random), and (see each function)
`bootstrap_ci` of their mean, `wilcoxon_greater`, `sign_flip_pvalue` (one-sided, ranked > random),
`cohens_dz` and `rank_biserial`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata, wilcoxon
from torch import Tensor

from fli2moe.faithfulness import bootstrap_ci
from fli2moe.masking import DEFAULT_MAX_ROWS, evaluating, masked_forward, target_score
from fli2moe.task_metrics import task_metrics

RANKINGS = ("sii", "rg")
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
    """The keep-masks of one example; nB budgets, the rankings of RANKINGS, R random repeats."""

    keeps: np.ndarray  # [nB, 2, 1 + 2R, T] bool: the ranked set, R sets from the candidates, R from all tokens
    pairs: np.ndarray  # [nB] pairs removed: the budget clipped to the available pairs
    tokens: np.ndarray  # [nB, 2, 3, 2] distinct tokens removed per selection (SELECTIONS) and modality
    matched: np.ndarray  # [nB, 2, 3] bool: as many tokens per modality as the ranked set (True for it)


def selection_rows(repeats: int) -> list[slice]:
    """Where each selection of SELECTIONS sits on the 1 + 2R axis of `ExampleMasks.keeps`."""
    return [slice(0, 1), slice(1, 1 + repeats), slice(1 + repeats, 1 + 2 * repeats)]


def example_masks(mask: np.ndarray, slices: Sequence[slice], slots_a: np.ndarray, slots_b: np.ndarray,
                  scores: Mapping[str, np.ndarray], budgets: Sequence[int], repeats: int,
                  rng: np.random.Generator) -> ExampleMasks:
    """Keep-masks of the ranked and random pair sets of one example (module docstring).

    mask [T] bool (real tokens), slices: the two modalities' slot ranges, slots_a [n_a] / slots_b [n_b]:
    the candidates' slots (-1 = padding, after the real ones), scores: {ranking: [n_a, n_b]} for each
    of RANKINGS. The draws follow a fixed order (budget, ranking, pool, modality), so `rng` fixes them.
    """
    valid_a, valid_b = slots_a[slots_a >= 0], slots_b[slots_b >= 0]
    if not mask[np.concatenate([valid_a, valid_b])].all():
        raise ValueError("candidate slots must be real tokens")
    pools = [(valid_a, valid_b),  # random_candidates
             tuple(s.start + np.flatnonzero(mask[s]) for s in slices)]  # random_all
    orders = [ranked_pairs(scores[name], len(valid_a), len(valid_b)) for name in RANKINGS]  # each [P, 2]
    pairs = np.minimum(budgets, len(orders[0]))
    T, R = len(mask), repeats
    keeps = np.broadcast_to(mask, (len(budgets), len(RANKINGS), 1 + 2 * R, T)).copy()
    tokens = np.zeros((len(budgets), len(RANKINGS), len(SELECTIONS), 2), dtype=np.int64)
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

@torch.no_grad()
def masked_logits(model, projected: Tensor, mask: Tensor, keeps: Tensor, baseline: Tensor,
                  max_batch: int = DEFAULT_MAX_ROWS) -> Tensor:
    """logits [B, K, C] of the model on remove(x_b, keeps[b, k]): projected [B, T, H], mask [B, T],
    keeps [B, K, T] bool, baseline [T, H].

    The same forward passes (`masking.masked_forward`) as `masking.masked_scores`, so `target_score` of these logits is its whole-model score, bitwise; one
    pass gives both the drops and the predictions for the task metric. Eval mode inside.
    """
    B, K, _ = keeps.shape
    with evaluating(model):
        logits = [chunk for _, chunk, _ in masked_forward(model, projected, mask, keeps, baseline, max_batch)]
    return torch.cat(logits).view(B, K, -1)


@dataclass
class Ablation:
    """Pair ablation of N examples: nB budgets, the rankings of RANKINGS, R random repeats, C classes.

    The 1 + 2R axis holds the selections of SELECTIONS, `selection_rows(R)` says where.
    """

    budgets: np.ndarray  # [nB] requested pairs
    index: np.ndarray  # [N] the examples' indices in their split (they seed the draws)
    available: np.ndarray  # [N] cross-modal candidate pairs
    pairs: np.ndarray  # [N, nB] pairs removed (budget clipped to available)
    tokens: np.ndarray  # [N, nB, 2, 3, 2] distinct tokens removed per selection and modality
    matched: np.ndarray  # [N, nB, 2, 3] bool
    keeps: np.ndarray  # [N, nB, 2, 1 + 2R, T] bool
    score: np.ndarray  # [N] p(x), unmasked
    drop: np.ndarray  # [N, nB, 2, 1 + 2R] p(x) - p(x masked)
    logits: np.ndarray  # [N, C] unmasked
    masked_logits: np.ndarray  # [N, nB, 2, 1 + 2R, C]

    @property
    def repeats(self) -> int:
        return (self.drop.shape[-1] - 1) // 2


def pair_ablation(model, projected: Tensor, mask: Tensor, target: Tensor, baseline: Tensor, task: str,
                  probe: Mapping[str, Tensor], budgets: Sequence[int], random_repeats: int = 20, seed: int = 0,
                  quantity: str = "prob", max_batch: int = DEFAULT_MAX_ROWS) -> Ablation:
    """Ranked and random pair removal for N examples (module docstring), all masks in one batched pass.

    projected [N, T, H], mask [N, T], target [N, C] bool (fixed on the unmasked input), baseline [T, H];
    probe: the probe stage's tensors ("sii", "rg" [N, n_a, n_b], "slots_a" [N, n_a], "slots_b" [N, n_b],
    "index" [N]) for these N examples, in this order; distinct budgets. A two-modality model.
    """
    slices = list(model.modality_slices.values())
    if len(slices) != 2:
        raise ValueError(f"pair ablation needs a two-modality model, got {len(slices)} modalities")
    if random_repeats < 1:
        raise ValueError(f"random_repeats must be >= 1, got {random_repeats}")
    if len(set(budgets)) != len(budgets):  # each budget is a key of the metrics (`budget_key`)
        raise ValueError(f"budgets must be distinct, got {list(budgets)}")
    probe = {name: np.asarray(probe[name]) for name in ("slots_a", "slots_b", "index", *RANKINGS)}
    N, T = mask.shape
    if len(probe["index"]) != N:
        raise ValueError(f"the probe holds {len(probe['index'])} examples, the ablation {N}")
    real = mask.cpu().numpy()
    per_example = [example_masks(real[n], slices, probe["slots_a"][n], probe["slots_b"][n],
                                 {name: probe[name][n] for name in RANKINGS}, budgets, random_repeats,
                                 np.random.default_rng([seed, int(probe["index"][n])])) for n in range(N)]
    keeps = np.stack([m.keeps for m in per_example])  # [N, nB, 2, 1 + 2R, T]
    rows = np.concatenate([real[:, None], keeps.reshape(N, -1, T)], 1)  # [N, K, T]: row 0 removes nothing
    logits = masked_logits(model, projected, mask, torch.from_numpy(rows), baseline, max_batch)  # [N, K, C]
    scores = target_score(logits, target[:, None].to(logits.device), task, quantity).cpu().numpy()  # [N, K]
    logits = logits.cpu().numpy()
    valid = (probe["slots_a"] >= 0).sum(1) * (probe["slots_b"] >= 0).sum(1)
    return Ablation(budgets=np.asarray(budgets), index=probe["index"], available=valid,
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
    """Ranked vs random drops: ranked [n], random [n] or [n, R] (averaged over the R repeats first).

    d = ranked - random per example: the bootstrap CI of its mean (`faithfulness.bootstrap_ci`),
    `wilcoxon_greater`, `sign_flip_pvalue`, `cohens_dz` and `rank_biserial` of d.
    """
    random = np.asarray(random, dtype=np.float64)
    d = np.asarray(ranked, dtype=np.float64) - (random.mean(1) if random.ndim == 2 else random)
    ci = bootstrap_ci(d, resamples, seed, level)
    test = wilcoxon_greater(d)
    return {"difference": ci["mean"], "low": ci["low"], "high": ci["high"], "n": ci["n"],
            "wilcoxon_statistic": test["statistic"], "wilcoxon_p": test["p"],
            "permutation_p": sign_flip_pvalue(d, permutations, seed), "cohens_dz": cohens_dz(d),
            "rank_biserial": rank_biserial(d)}


# --- stage outputs -----------------------------------------------------------------------------------

def budget_key(budget: int) -> str:
    """How a budget is spelled in the stage's metrics and in reports/summary.json: "budget_3"."""
    return f"{BUDGET_PREFIX}{budget}"


def summary_budgets(summary: Mapping) -> list[int]:
    """The budgets of an `ablation_summary` (or of its metrics file), ascending.

    Read back from the keys, which the metrics file sorts as strings ("budget_10" before "budget_2").
    """
    return sorted(int(key.removeprefix(BUDGET_PREFIX)) for key in summary if key.startswith(BUDGET_PREFIX))


def ablation_summary(ablation: Ablation, labels: np.ndarray, task: str, permutations: int = 10000,
                     resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The metrics of the stage, JSON-ready (no NaN) and nested dicts of scalars only: DVC shows each
    leaf under its dotted path (`dvc metrics diff`, `dvc exp show`), and nothing inside a list.

    unmasked:                                mean p(x) ("score") and the task metrics (`task_metrics`
                                             against `labels`)
    budget_<b>.<ranking>.<selection>:        for each ranking of RANKINGS and selection of SELECTIONS:
                                             mean drop (random: per example the mean over repeats) with its
                                             bootstrap CI (drop, low, high, n), the task metrics under
                                             removal (random: mean over repeats), mean_pairs and mean_tokens
                                             removed, examples whose budget was clipped, unmatched examples
    budget_<b>.<ranking>.vs_<random>:        for each random selection (random_candidates, random_all):
                                             `paired_comparison` of ranked vs random (difference, low, high,
                                             n, wilcoxon_statistic, wilcoxon_p, permutation_p, cohens_dz
                                             (None when undefined), rank_biserial)

    e.g. budget_1.sii.vs_random_candidates.difference; `budget_key` spells the budgets.
    """
    rows = selection_rows(ablation.repeats)
    summary = {"unmasked": {"score": float(ablation.score.mean()), **task_metrics(ablation.logits, labels, task)}}
    for j, budget in enumerate(ablation.budgets.tolist()):
        per_budget = summary[budget_key(budget)] = {}
        for r, ranking in enumerate(RANKINGS):
            per_ranking = per_budget[ranking] = {}
            per_selection = [ablation.drop[:, j, r, rows[s]] for s in range(len(SELECTIONS))]  # each [N, reps]
            for s, selection in enumerate(SELECTIONS):
                ci = bootstrap_ci(per_selection[s].mean(1), resamples, seed, level)
                repeats = [task_metrics(ablation.masked_logits[:, j, r, k], labels, task)
                           for k in range(rows[s].start, rows[s].stop)]
                per_ranking[selection] = {
                    "drop": ci["mean"], "low": ci["low"], "high": ci["high"], "n": ci["n"],
                    **{name: float(np.mean([m[name] for m in repeats])) for name in repeats[0]},
                    "mean_pairs": float(ablation.pairs[:, j].mean()),
                    "mean_tokens": float(ablation.tokens[:, j, r, s].sum(-1).mean()),
                    "clipped": int((ablation.pairs[:, j] < budget).sum()),
                    "unmatched": int((~ablation.matched[:, j, r, s]).sum()),
                }
            for s, selection in enumerate(SELECTIONS[1:], 1):
                per_ranking[f"vs_{selection}"] = paired_comparison(per_selection[0][:, 0], per_selection[s],
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
    drop = np.stack([ablation.drop[..., rows[k]].mean(-1) for k in range(nS)], -1)  # [N, nB, 2, 3]
    tokens = ablation.tokens[n, j, r, s]  # [rows, 2]
    return {"example": ablation.index[n], "budget": ablation.budgets[j], "pairs": ablation.pairs[n, j],
            "clipped": ablation.pairs[n, j] < ablation.budgets[j], "ranking": np.array(RANKINGS)[r],
            "selection": np.array(SELECTIONS)[s], "drop": drop[n, j, r, s], "tokens_a": tokens[:, 0],
            "tokens_b": tokens[:, 1], "tokens": tokens.sum(1), "matched": ablation.matched[n, j, r, s]}


def plot_rows(summary: dict) -> list[dict]:
    """DVC plot rows from `ablation_summary`, by budget (ascending), ranking and selection: budget, series
    ("<ranking>/<selection>"), drop, low, high."""
    rows = []
    for budget in summary_budgets(summary):
        for ranking in RANKINGS:
            for selection in SELECTIONS:
                drop = summary[budget_key(budget)][ranking][selection]
                rows.append({"budget": budget, "series": f"{ranking}/{selection}", "drop": drop["drop"],
                             "low": drop["low"], "high": drop["high"]})
    return rows
