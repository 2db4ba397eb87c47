"""Is an attribution map causally right? Top-K% masking, concentration and interaction specificity
(docs/design.md section 5, `attribute`).

Faithfulness, per modality m and K in k_percents, with n_m the real tokens of m in the example and
k = max(1, round_half_up(K/100 * n_m)) (at most n_m), every token removed with `masking.remove_tokens`:
    comprehensiveness(K) = p(x) - p(x without the top-k tokens of m)
    sufficiency(K)       = p(x) - p(x with, of m, only its top-k tokens kept; the other modalities untouched)
"Top" is the k highest *signed* scores among the real tokens of m (ties: lower slot first): the
tokens that most support the target. Keeping the other modalities whole makes sufficiency a question
about one modality: can these k tokens stand in for all of m, given the rest of the input?
Each is compared with random sets of the same size (`random_repeats` per example, seeded): one random
order of the tokens per example and repeat, so that, like the ranked sets, the random sets are nested
over K. AOPC = mean over K; gap = identified - random (per example, then averaged with bootstrap CIs).

Views measured (rows of `Faithfulness`):
- map "whole", measure "prediction": p is the model's target score (logit or prob).
- for a mixture (E > 1), per expert e, with the sets ranked by expert e's map:
  measure "contribution": p is c_e = w_e * mean target logit_e, routing weights held at their unmasked
  value (what the map explains); measure "prediction": p is the whole model's target score.
  The random sets are shared by all views.

Concentration of a map s over the n real tokens of an example, with p_t = |s_t| / sum_u |s_u|:
    entropy = -sum_t p_t log p_t / log n  (0 when n = 1),   Gini = sum_{t,u} |p_t - p_u| / (2 n),
    top10 = mass of the round_half_up(10% of n) (at least 1) largest p_t.
A map that is 0 on every real token has no distribution: its rows are NaN.
Specificity of the experts' maps of an example: mean over expert pairs of the Jensen-Shannon distance
(base 2, so in [0, 1]) between their p's, and each uniqueness expert's mass on its own modality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import entr
from torch import Tensor

from fli2moe.attribution import Attributions
from fli2moe.masking import DEFAULT_MAX_ROWS, masked_scores, modality_ids

K_PERCENTS = (5, 10, 15, 20, 25)
KINDS = ("comprehensiveness", "sufficiency")


def budget(percent, n) -> np.ndarray:
    """Number of tokens for `percent`% of n tokens: max(1, round_half_up(percent/100 * n)), at most n."""
    n = np.asarray(n)
    return np.minimum(np.maximum(1, np.floor(np.asarray(percent) / 100 * n + 0.5)), n).astype(np.int64)


def expert_names(model) -> list[str]:
    """'expert<e>_<kind>[_<modality>]' per expert of the roster, e.g. 'expert0_uniqueness_screenshot'."""
    return roster_names(model.roster)


def roster_names(roster) -> list[str]:
    """The names of `expert_names` from a roster [(kind, modality or None)] (models.fl_i2moe.build_roster)."""
    return [f"expert{e}_{kind}" + (f"_{modality}" if modality else "") for e, (kind, modality) in enumerate(roster)]


def top_sets(rankings: Tensor, mask: Tensor, slices: list[slice], k: Tensor) -> Tensor:
    """sets[n, s, m, j, t] = slot t is among the k[n, m, j] highest of rankings[n, s] in modality m.

    rankings [N, S, T], mask [N, T], k [N, M, nK] -> [N, S, M, nK, T] bool. Only real tokens are
    ranked; ties go to the lower slot (stable sort).
    """
    N, S, T = rankings.shape
    sets = torch.zeros(N, S, len(slices), k.shape[-1], T, dtype=torch.bool, device=rankings.device)
    for m, s in enumerate(slices):
        scores = rankings[:, :, s].masked_fill(~mask[:, None, s], -torch.inf)  # [N, S, T_m]
        order = scores.sort(dim=-1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device)
                                                .expand_as(order))  # [N, S, T_m]: 0 = highest
        sets[:, :, m, :, s] = rank[:, :, None, :] < k[:, None, m, :, None]
    return sets


@dataclass
class Faithfulness:
    """Drops of V views (see the module docstring) for N examples, M modalities, nK budgets."""

    maps: list[str]  # [V]: "whole" or an expert name
    measures: list[str]  # [V]: "prediction" | "contribution"
    modalities: list[str]  # [M]
    k_percents: np.ndarray  # [nK]
    k: np.ndarray  # [N, M, nK]: tokens in the identified (and random) sets
    identified: np.ndarray  # [V, N, M, nK, 2]: drop with the map's top-k; last axis = KINDS
    random: np.ndarray  # [V, N, M, nK, 2]: drop with random k, mean over the repeats

    def table(self) -> dict[str, np.ndarray]:
        """Long format, one row per (view, example, modality, K): columns for a parquet file."""
        V, N, M, nK, _ = self.identified.shape
        v, n, m, j = (a.ravel() for a in np.meshgrid(*map(np.arange, (V, N, M, nK)), indexing="ij"))
        columns = {"map": np.array(self.maps)[v], "measure": np.array(self.measures)[v], "example": n,
                   "modality": np.array(self.modalities)[m], "k_percent": self.k_percents[j], "k": self.k[n, m, j]}
        for i, kind in enumerate(KINDS):
            columns[kind] = self.identified[..., i].ravel()
            columns[f"random_{kind}"] = self.random[..., i].ravel()
        return columns


def faithfulness_summary(runs: Sequence[Faithfulness], resamples: int = 1000, seed: int = 0,
                         level: float = 0.95) -> list[dict]:
    """Per (view, modality, kind): AOPC of the map, of the random sets and their gap, each as the mean over
    the runs' seeds and examples with its `seed_example_ci` over both, {name, name_low, name_high, name_std
    (seed spread)}, plus n examples and seeds.

    runs: one `Faithfulness` per trained seed, over the same examples and views (ValueError otherwise).
    """
    first = runs[0]
    if any(r.maps != first.maps or r.identified.shape != first.identified.shape for r in runs):
        raise ValueError("faithfulness_summary: the runs differ in views or examples")
    aopc = np.stack([r.identified.mean(3) for r in runs], 1)  # [V, S, N, M, 2]
    random = np.stack([r.random.mean(3) for r in runs], 1)
    rows = []
    for v, (map_name, measure) in enumerate(zip(first.maps, first.measures)):
        for m, modality in enumerate(first.modalities):
            for i, kind in enumerate(KINDS):
                row = {"map": map_name, "measure": measure, "modality": modality, "kind": kind}
                for name, values in (("aopc", aopc[v, :, :, m, i]), ("random_aopc", random[v, :, :, m, i]),
                                     ("gap", aopc[v, :, :, m, i] - random[v, :, :, m, i])):
                    ci = seed_example_ci(values, resamples, seed, level)
                    row.update({name: ci["mean"], f"{name}_low": ci["low"], f"{name}_high": ci["high"],
                                f"{name}_std": ci["std"]})
                row.update(n=ci["n"], seeds=ci["seeds"])
                rows.append(row)
    return rows


def faithfulness(model, projected: Tensor, mask: Tensor, attributions: Attributions, baseline: Tensor,
                 target: Tensor, task: str, k_percents=K_PERCENTS, random_repeats: int = 10, seed: int = 0,
                 quantity: str = "prob", max_batch: int = DEFAULT_MAX_ROWS) -> Faithfulness:
    """Top-K% masking of every map in `attributions` (computed on projected [N, T, H], mask [N, T] with
    target [N, C]) against random sets; every masked input of every example in one `masked_scores` call.

    The random sets come from a torch.Generator seeded with `seed`: the same seed gives the same sets.
    """
    if random_repeats < 1:
        raise ValueError(f"random_repeats must be >= 1, got {random_repeats}")
    N, T = mask.shape
    slices, names = list(model.modality_slices.values()), list(model.modality_slices)
    E = attributions.expert.shape[1]
    maps = attributions.stacked()
    S_maps = maps.shape[1]  # [N, S_maps, T]: whole, then each expert of a mixture
    random_order = torch.rand(N, random_repeats, T, generator=torch.Generator().manual_seed(seed))
    rankings = torch.cat([maps.to(mask.device), random_order.to(mask.device, maps.dtype)], 1)  # [N, S, T]

    k_percents = np.asarray(k_percents, dtype=np.float64)
    n_real = torch.stack([mask[:, s].sum(1) for s in slices], 1).cpu().numpy()  # [N, M]
    k = budget(k_percents, n_real[..., None])  # [N, M, nK]
    sets = top_sets(rankings, mask, slices, torch.as_tensor(k, device=mask.device))  # [N, S, M, nK, T]
    in_modality = (modality_ids(model)[None] == torch.arange(len(slices))[:, None]).to(mask.device)  # [M, T]
    real = mask[:, None, None, None]  # [N, 1, 1, 1, T]
    comprehensive = real & ~sets  # the set removed
    sufficient = real & ~(in_modality[:, None] & ~sets)  # of modality m, only the set kept
    keeps = torch.stack([comprehensive, sufficient], -2).flatten(1, -2)  # [N, S*M*nK*2, T]
    keeps = torch.cat([mask[:, None], keeps], 1)  # row 0: nothing removed, p(x)

    scores = masked_scores(model, projected, mask, keeps, baseline, target, task, quantity, max_batch)
    shape = (N, rankings.shape[1], len(slices), len(k_percents), 2)
    whole = (scores.whole[:, :1] - scores.whole[:, 1:]).view(shape).cpu().numpy()  # [N, S, M, nK, 2]
    expert = (scores.expert[:, :1] - scores.expert[:, 1:]).view(*shape, E).cpu().numpy()  # [..., E]
    random_whole, random_expert = whole[:, S_maps:].mean(1), expert[:, S_maps:].mean(1)

    views = [("whole", "prediction", whole[:, 0], random_whole)]
    if E > 1:
        for e, name in enumerate(expert_names(model)):
            views.append((name, "contribution", expert[:, 1 + e, ..., e], random_expert[..., e]))
            views.append((name, "prediction", whole[:, 1 + e], random_whole))
    return Faithfulness(maps=[v[0] for v in views], measures=[v[1] for v in views], modalities=names,
                        k_percents=k_percents, k=k, identified=np.stack([v[2] for v in views]),
                        random=np.stack([v[3] for v in views]))


def bootstrap_ci(values, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean of `values` [N] and its percentile bootstrap interval over `resamples` resamples of the examples
    with replacement, from numpy's default_rng(seed): {mean, low, high, n}.

    NaN marks a value undefined for its example (a map without mass) and is left out: n counts only the
    values used. Raises ValueError on inf, which no statistic here can summarise.
    """
    values = np.asarray(values, dtype=np.float64)
    if np.isinf(values).any():
        raise ValueError(f"bootstrap_ci: {int(np.isinf(values).sum())} of {values.size} values are infinite")
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    index = np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))
    low, high = np.percentile(values[index].mean(1), [50 * (1 - level), 50 * (1 + level)])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high), "n": len(values)}


def seed_example_ci(values, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean of values [S, N] (trained seeds x the same N examples) with its seed spread and a confidence
    interval that accounts for both sources of variation: {mean, std, low, high, n, seeds}.

    mean is the mean over seeds of the per-seed means over examples; std their sample standard deviation
    (ddof = 1), the seed spread; n the examples with a value in some seed. In a crossed design the mean's
    variance is sigma_seed^2 / S + sigma_example^2 / N + sigma_noise^2 / (S N) (Owen 2007, "The pigeonhole
    bootstrap", Ann. Appl. Stat. 1(2)). With m_s the per-seed means and e_n the per-example means over seeds,
    it is estimated as

        var(m) / S + var(e) / N

    (each term also holds part of the seed x example noise, so the estimate errs on the large side), and
    the interval is

        mean +- sqrt(t^2 var(m) / S + z^2 var(e) / N),   t = t_{S-1} and z normal quantiles at `level`:

    the seed term gets Student's t because S is small (3 seeds: t = 4.30). A percentile bootstrap over seeds
    and examples covered the mean in only 83% of simulated 3-seed runs; this interval covers it in 95-98%
    (tests/test_attribution.py). One seed is `bootstrap_ci` of its examples (`resamples`, `seed`) plus std 0.

    NaN marks a value undefined for its cell (a map without mass) and is left out of the means. Raises
    ValueError on inf.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"seed_example_ci: values must be [seeds, examples], got shape {values.shape}")
    if np.isinf(values).any():
        raise ValueError(f"seed_example_ci: {int(np.isinf(values).sum())} of {values.size} values are infinite")
    S = values.shape[0]
    if S == 1:
        return bootstrap_ci(values[0], resamples, seed, level) | {"std": 0.0, "seeds": 1}
    defined = ~np.isnan(values)
    filled = np.where(defined, values, 0.0)
    per_seed_count, per_example_count = defined.sum(1), defined.sum(0)
    examples = per_example_count > 0
    n = int(examples.sum())
    if n == 0 or (per_seed_count == 0).any():
        return {"mean": float("nan"), "std": float("nan"), "low": float("nan"), "high": float("nan"), "n": n,
                "seeds": S}
    per_seed = filled.sum(1) / per_seed_count  # [S]
    per_example = filled.sum(0)[examples] / per_example_count[examples]  # [n]
    mean = float(per_seed.mean())
    seed_variance = per_seed.var(ddof=1) / S
    example_variance = per_example.var(ddof=1) / n if n > 1 else 0.0
    t, z = stats.t.ppf((1 + level) / 2, S - 1), stats.norm.ppf((1 + level) / 2)
    half = float(np.sqrt(t * t * seed_variance + z * z * example_variance))
    return {"mean": mean, "std": float(per_seed.std(ddof=1)), "low": mean - half, "high": mean + half, "n": n,
            "seeds": S}


def distribution(scores, mask) -> np.ndarray:
    """p = |scores| / sum over real tokens, 0 on padded slots: [..., T] float64 (rows NaN when the sum is 0).

    Raises ValueError when a real token's score is NaN or inf: such a map has no distribution, and NaN
    rows are kept for maps without mass.
    """
    magnitude = np.where(np.asarray(mask), np.abs(np.asarray(scores, dtype=np.float64)), 0.0)
    if not np.isfinite(magnitude).all():
        raise ValueError("attribution scores must be finite on the real tokens")
    total = magnitude.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, magnitude / total, np.nan)


def concentration(scores, mask) -> dict[str, np.ndarray]:
    """Normalised entropy, Gini and top-10% mass of maps [..., T] over their real tokens: each [...]."""
    mask = np.asarray(mask, dtype=bool)
    p, n = distribution(scores, mask), mask.sum(-1)
    T = p.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        entropy = np.where(n > 1, entr(p).sum(-1) / np.log(np.maximum(n, 2)), 0.0)
        # Gini from the ascending order: sum_i (2 i - n - 1) p_(i) / n with sum p = 1, i = 1..n; padded
        # slots sort first (key -1) and add nothing (p = 0).
        ascending = np.maximum(np.sort(np.where(mask, p, -1.0), -1), 0.0)
        rank = np.arange(1, T + 1) - (T - n)[..., None]  # [..., T]: 1..n on the real tokens
        gini = ((2 * rank - n[..., None] - 1) * ascending).sum(-1) / n
    descending = -np.sort(-np.where(mask, p, 0.0), -1)
    top = np.take_along_axis(descending.cumsum(-1), budget(10, n)[..., None] - 1, -1)[..., 0]
    nan = np.isnan(p).any(-1)  # maps without mass stay undefined, whatever the formulas gave
    return {name: np.where(nan, np.nan, value) for name, value in
            (("entropy", entropy), ("gini", gini), ("top10_mass", top))}


def expert_divergence(expert, mask) -> np.ndarray:
    """Mean pairwise Jensen-Shannon distance (base 2) between the experts' maps: expert [N, E, T] -> [N]."""
    p = distribution(expert, np.asarray(mask)[:, None])  # [N, E, T]
    pairs = list(combinations(range(p.shape[1]), 2))
    if not pairs:
        raise ValueError("expert_divergence needs at least two experts")
    return np.mean([jensenshannon(p[:, e], p[:, f], base=2, axis=-1) for e, f in pairs], 0)


def own_modality_share(model, expert, mask) -> dict[str, np.ndarray]:
    """{uniqueness expert name: [N] share of its map's mass on its own modality's tokens}."""
    p = distribution(expert, np.asarray(mask)[:, None])  # [N, E, T]
    slices = model.modality_slices
    return {name: p[:, e, slices[modality]].sum(-1)
            for e, (name, (kind, modality)) in enumerate(zip(expert_names(model), model.roster))
            if kind == "uniqueness"}
