"""Pairwise interaction indices for cross-modal pairs of players (docs/design.md section 5, `probe`).

A game is a callable ``value(coalitions) -> values``: ``coalitions`` is a bool tensor [B, n]
(True = player present) and ``values`` a float tensor [B]. Players carry a modality id
(``modality`` [n]); only cross-modal pairs (i < j, modality[i] != modality[j]) are estimated.

For a pair (i, j) and a context S subset of N \\ {i, j}, the discrete derivative is

    D_ij(S) = v(S+ij) - v(S+i) - v(S+j) + v(S)

and every index is a signed expectation of it over a context distribution p_n(S), which depends on
S through its size s = |S| only (the weight of one context of size s):

    index(i, j) = sign * sum_S p_n(|S|) D_ij(S)

    SII  p_n(s) = s!(n-s-2)!/(n-1)!                  sign +1   Shapley interaction index
                                                               (Grabisch & Roubens 1999, eq. 10)
    BII  p_n(s) = 2^-(n-2)                           sign +1   Banzhaf interaction index
                                                               (Grabisch & Roubens 1999, eq. 11)
    RG   p_n(s) = keep^s (1-keep)^(n-2-s)            sign -1   redundancy gap (docs/design.md section 5):
                                                               E_S[v(S+i) + v(S+j) - v(S+ij) - v(S)],
                                                               each other player kept with prob. rg_keep

So RG with rg_keep = 1/2 has BII's context distribution and the opposite sign: RG = -BII exactly.

An index is data, `InteractionIndex` (shapiq's "index as an argument, one weight function per index"):
its name, sign, what a positive value means, its exact weights p_n and its Monte Carlo context
sampler. `INDICES` registers every index where it is defined (below); adding one is one entry.
``exact`` enumerates the 2^n coalitions once; ``montecarlo`` samples contexts shared by all pairs and
returns unbiased estimates with standard errors and their degrees of freedom (`Estimate.interval`: a
Student-t interval, none for a pair sampled fewer than twice); `contexts_for_budget` turns a budget of
evaluations into its number of contexts, so that a budget costs the same in every scheme. Both estimators
return `PairInteractions`, one `Estimate` per requested index.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import stats
from sklearn.linear_model import Lasso

Game = Callable[[torch.Tensor], torch.Tensor]
Scheme = Literal["outside", "owen"]

MAX_EXACT_PLAYERS = 16
DEFAULT_MAX_BATCH = 1024


@dataclass(frozen=True)
class ContextSettings:
    """What the context distributions may read: ``rg_keep`` (RG's keep probability, in [0, 1]) and the
    Monte Carlo ``scheme`` ("outside" or "owen", see `montecarlo`)."""

    rg_keep: float = 1.0
    scheme: Scheme = "outside"


@dataclass(frozen=True)
class InteractionIndex:
    """One pairwise interaction index: index(i, j) = sign * sum_S weights(n)[|S|] D_ij(S) (module docstring).

    name       the key of the index everywhere (`INDICES`, `PairInteractions`, tensors, metrics, params)
    title      its name in words, for tables and figures
    sign       +1 or -1: the sign applied to the expectation of D_ij
    positive   what a positive value means: "synergy" or "redundancy"
    weights    (n, settings) -> float64 [n - 1]: the probability p_n(s) of ONE given context S of size
               s = 0..n-2 (the weights of the 2^(n-2) contexts sum to 1)
    contexts   (n, pairs [P, 2], m, settings, generator) -> `_Contexts`: m Monte Carlo contexts whose
               served samples S = T \\ {i, j} follow p_n for every pair, given that it is served
    """

    name: str
    title: str
    sign: int
    positive: str
    weights: Callable[[int, ContextSettings], torch.Tensor]
    contexts: Callable[[int, torch.Tensor, int, ContextSettings, torch.Generator], _Contexts]


INDICES: dict[str, InteractionIndex] = {}  # name -> index, filled by `register_index`
DEFAULT_INDICES = ("sii", "rg")


def register_index(index: InteractionIndex) -> InteractionIndex:
    """Add an index to `INDICES` under its name and return it.

    Raises:
        ValueError: the name is taken, or the sign or positive meaning is not one of the allowed values.
    """
    if index.name in INDICES:
        raise ValueError(f"interaction index {index.name!r} is already registered")
    if index.sign not in (1, -1) or index.positive not in ("synergy", "redundancy"):
        raise ValueError(f"index {index.name!r}: sign must be +1 or -1 and positive 'synergy' or 'redundancy', "
                         f"got {index.sign!r}, {index.positive!r}")
    INDICES[index.name] = index
    return index


def check_indices(indices: Sequence[str]) -> tuple[str, ...]:
    """The requested index names as a tuple. Raises ValueError: empty, unknown or repeated names."""
    indices = tuple(indices)
    unknown = [name for name in indices if name not in INDICES]
    if not indices or unknown or len(set(indices)) != len(indices):
        raise ValueError(f"indices must be distinct names among {list(INDICES)}, got {list(indices)}")
    return indices


@dataclass(frozen=True)
class Estimate:
    """One index over P pairs: value, se [P] float64 (standard error, 0 when exact), samples [P] int64
    (contexts whose D_ij entered the estimate), df [P] float64, the degrees of freedom of the standard
    error (inf when exact, NaN when the SE is NaN; `montecarlo`), and refined [P] bool, the pairs whose
    estimate comes from `screen_and_refine`'s refinement (None from every other estimator)."""

    value: torch.Tensor
    se: torch.Tensor
    samples: torch.Tensor
    df: torch.Tensor
    refined: torch.Tensor | None = None

    def ranking_score(self) -> torch.Tensor:
        """float64 [P] whose descending order ranks the pairs: the value, except that the pairs the refinement
        did not reach (`refined` False) rank below every refined one, shifted down by the value range plus 1
        in the order of their screening estimates. NaN stays NaN (ranks last)."""
        if self.refined is None or self.refined.all() or not self.refined.any():
            return self.value
        finite = self.value[torch.isfinite(self.value)]
        shift = (finite.max() - finite.min() + 1) if len(finite) else 0.0
        return torch.where(self.refined, self.value, self.value - shift)

    def interval(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """Two-sided Student-t confidence interval of every pair, (low, high) [P] float64:
        value -+ t_{df, (1 + level) / 2} se. NaN where the SE or its df is NaN (a pair sampled fewer than
        twice): such a pair has no interval, never a zero-width one. Exact estimates (df inf, SE 0) give
        low = high = value."""
        quantile = torch.from_numpy(stats.t.ppf((1 + level) / 2, self.df.numpy())).to(torch.float64)
        half = torch.where(self.se == 0, 0.0, quantile * self.se)  # 0 * inf would be NaN for a df-0 exact SE
        return self.value - half, self.value + half


@dataclass(frozen=True)
class PairInteractions:
    """Per cross-modal pair estimates; P pairs, n players.

    pairs        [P, 2] int64, i < j, modality[i] != modality[j], lexicographic order
    estimates    {index name: `Estimate`}, in the order the indices were requested
    evaluations  int: coalitions passed to ``value`` (each distinct coalition once per estimator phase)
    modality     [n] int64: the modality id of every player

    ``result["sii"].value`` reads one index.
    """

    pairs: torch.Tensor
    estimates: dict[str, Estimate]
    evaluations: int
    modality: torch.Tensor

    def __getitem__(self, index: str) -> Estimate:
        return self.estimates[index]

    def matrix(self, index: str = "sii", field: str = "value") -> torch.Tensor:
        """Scatter one index's `Estimate` field ("value", "se" or "samples", or its "ranking_score") into
        [n_a, n_b] for a two-modality game.

        Rows are the players of the smaller modality id, columns those of the other one, both in
        player order: ``matrix()[r, c]`` is the pair (r-th player of modality a, c-th of modality b).
        """
        values = getattr(self.estimates[index], field)
        values = values() if callable(values) else values
        ids = torch.unique(self.modality)
        if len(ids) != 2:
            raise ValueError(f"matrix() needs exactly two modalities, got ids {ids.tolist()}")
        in_a = self.modality == ids[0]
        # Position of each player within its own modality.
        position = torch.empty_like(self.modality)
        position[in_a] = torch.arange(int(in_a.sum()))
        position[~in_a] = torch.arange(int((~in_a).sum()))
        i, j = self.pairs.T
        i_in_a = in_a[i]
        rows = torch.where(i_in_a, position[i], position[j])
        cols = torch.where(i_in_a, position[j], position[i])
        out = torch.zeros(int(in_a.sum()), int((~in_a).sum()), dtype=values.dtype)
        out[rows, cols] = values
        return out


def cross_pairs(modality) -> torch.Tensor:
    """All pairs (i, j), i < j, with modality[i] != modality[j]: int64 [P, 2], lexicographic."""
    modality = _as_modality(modality)
    i, j = torch.triu_indices(len(modality), len(modality), offset=1)
    keep = modality[i] != modality[j]
    return torch.stack([i[keep], j[keep]], dim=1)


def exact(
    value: Game,
    modality,
    *,
    indices: Sequence[str] = DEFAULT_INDICES,
    rg_keep: float = 1.0,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_players: int = MAX_EXACT_PLAYERS,
) -> PairInteractions:
    """Exact indices of every cross-modal pair from one evaluation of all 2^n coalitions.

    With S ranging over the 2^(n-2) subsets of N \\ {i, j} and s = |S|, for each index of `indices`:

        index(i, j) = sign * sum_S weights(n)[s] * D_ij(S)       (module docstring, `InteractionIndex`)

    Args:
        value: game, bool [B, n] -> float [B]; called on chunks of at most ``max_batch`` rows.
        modality: int [n], modality id per player.
        indices: names of registered indices (`INDICES`).
        rg_keep: probability that RG keeps each other player in the context, in [0, 1].
        max_batch: largest number of coalitions per call of ``value``.
        max_players: largest n accepted. Beyond 16, 2^n model evaluations are impractical, but a
            closed-form game (the benchmarks' reference) can go to about 22 players: memory grows
            as P * 2^(n-2) int64 and float64 entries.

    Returns:
        PairInteractions with zero standard errors, ``samples`` = number of contexts with a
        nonzero weight, ``evaluations`` = 2^n.

    Raises:
        ValueError: n > max_players, or invalid arguments.
    """
    modality = _as_modality(modality)
    indices = check_indices(indices)
    n = len(modality)
    if n > max_players:
        raise ValueError(
            f"exact() enumerates 2^n coalitions and supports n <= {max_players} players, got n={n}; "
            "use montecarlo()"
        )
    _check_common(modality, rg_keep, max_batch)
    settings = ContextSettings(rg_keep)
    pairs = cross_pairs(modality)

    # Coalition k has player p present iff bit p of k is set, so a coalition is its own table index.
    members = ((torch.arange(2**n)[:, None] >> torch.arange(n)) & 1).bool()
    table = _call_batched(value, members, max_batch)

    # Every context S of N\{i,j} as a bitmask: insert zero bits at positions i < j into the
    # (n-2)-bit counter k. Shape [P, 2^(n-2)], fully vectorised over pairs and contexts.
    k = torch.arange(2 ** (n - 2))
    i, j = pairs[:, :1], pairs[:, 1:]
    low = k & ((1 << i) - 1)
    mid = (k >> i) & ((1 << (j - 1 - i)) - 1)
    high = k >> (j - 1)
    contexts = low | (mid << (i + 1)) | (high << (j + 1))
    bit_i, bit_j = 1 << i, 1 << j
    derivative = table[contexts | bit_i | bit_j] - table[contexts | bit_i] - table[contexts | bit_j] + table[contexts]

    size = members.sum(dim=1)[contexts]
    estimates = {}
    for name in indices:
        index = INDICES[name]
        weight = index.weights(n, settings)[size]  # [P, 2^(n-2)]
        total = (weight * derivative).sum(dim=1)
        estimates[name] = Estimate(total if index.sign > 0 else -total, torch.zeros(len(pairs), dtype=torch.float64),
                                   (weight > 0).sum(dim=1), torch.full((len(pairs),), math.inf, dtype=torch.float64))
    return PairInteractions(pairs=pairs, estimates=estimates, evaluations=2**n, modality=modality)


def montecarlo(
    value: Game,
    modality,
    num_contexts: int,
    seed: int,
    *,
    indices: Sequence[str] = DEFAULT_INDICES,
    rg_keep: float = 1.0,
    max_batch: int = DEFAULT_MAX_BATCH,
    scheme: Scheme = "outside",
    pairs: torch.Tensor | None = None,
) -> PairInteractions:
    """Unbiased Monte Carlo estimates of every cross-modal pair (or of `pairs`), with evaluations shared by pairs
    and indices.

    A context is a base coalition T [n] and the set of pairs it serves; a served pair (i, j) gets
    one sample D_ij(S) with S = T \\ {i, j}, from the four coalitions S, S+i, S+j, S+ij. Each index
    draws its own ``num_contexts`` contexts (`InteractionIndex.contexts`), index after index in the
    order of `indices` from one generator, so an index's draws do not depend on the indices after
    it. All coalitions of all contexts are deduplicated before calling ``value``, so shared ones
    (v(S), v(S+i) for all pairs containing i, ...) are evaluated once.

    SII contexts, by ``scheme``:

    - ``"outside"`` (docs/design.md section 5): draw |T| = s with probability proportional to 1/((n-s)(n-s-1)),
      s = 0..n-2, then T uniform of that size; T serves the cross pairs outside T. A pair lies
      outside a size-s context with probability (n-s)(n-s-1)/(n(n-1)), which cancels the size
      weight: given that the pair is served, s is uniform on 0..n-2 and T uniform given s, i.e.
      S = T follows the SII distribution. Contexts are i.i.d., so the K_ij samples of a pair are
      i.i.d. given K_ij and their mean is unbiased (for K_ij >= 1; NaN when K_ij = 0). Sizes are
      not stratified here: with fixed counts per size, the random K_ij per size would turn the
      per-pair mean into a ratio estimator, which is biased.
    - ``"owen"``: draw q ~ U(0, 1), then T keeps each player with probability q; T serves every
      cross pair. Given q, S = T \\ {i, j} keeps each other player with probability q, and
      integrating the binomial size over q gives |S| uniform on 0..n-2 (Beta-binomial(1, 1)):
      every pair gets a sample from every context. q, which sets the expected context size, is
      stratified: the contexts are split into strata of two (three for the last when
      num_contexts is odd) and each stratum draws its q's i.i.d. uniformly in its own slice of
      [0, 1] of width proportional to its size, so every pair sees all sizes evenly.

    RG and BII contexts: T keeps each player with probability ``rg_keep`` (RG) or 1/2 (BII), i.i.d.
    contexts serving pairs as in ``scheme`` (given a served pair, the other players of S are
    independent Bernoulli draws). When rg_keep is 0 or 1 the RG context is deterministic: one
    context serves every pair with S = T \\ {i, j} (for 1: N, N\\i, N\\j, N\\ij) and RG is exact.

    Estimate and standard error per pair, with strata h of probability mass W_h, K_h served
    contexts in h and D-sample mean m_h and sample variance s_h^2 (ddof 1), times the index's sign:

        estimate = sum_h W_h m_h,   SE = sqrt(sum_h W_h^2 s_h^2 / K_h)

    which is the unbiased stratified variance estimate (all but "owen" SII: one stratum, so SE is the
    sample std / sqrt(K)). SE is NaN when some stratum has K_h < 2 (only possible for "outside",
    for a pair served fewer than twice), and 0 for a deterministic RG. Its degrees of freedom are
    Welch-Satterthwaite's, with c_h = W_h^2 / K_h (Satterthwaite 1946, eq. 18):

        df = (sum_h c_h s_h^2)^2 / sum_h (c_h s_h^2)^2 / (K_h - 1)

    (K - 1 for one stratum; inf for a deterministic RG), so that `Estimate.interval` is a Student-t
    interval whose width accounts for how few samples a pair had. A sampled SE of 0 (every sample equal,
    possible when contexts repeat at small n) gives a zero-width interval: the samples show no spread.

    Args:
        value: game, bool [B, n] -> float [B]; called on chunks of at most ``max_batch`` rows.
        modality: int [n], modality id per player.
        num_contexts: contexts drawn per index (one for a deterministic RG).
        seed: seed of the torch.Generator driving every draw (same seed -> same result).
        indices: names of registered indices (`INDICES`).
        rg_keep: probability that RG keeps each other player in the context, in [0, 1].
        max_batch: largest number of coalitions per call of ``value``.
        scheme: "outside" (the sharing scheme of docs/design.md section 5) or "owen" (stratified multilinear extension).
        pairs: int [P, 2], the cross pairs to estimate (i < j, distinct, rows of `cross_pairs`); default all.
            The contexts serve these pairs only, so a context costs 1 + (their players) + P evaluations
            ("owen") instead of 1 + n + (all cross pairs): `screen_and_refine` spends its refinement so.

    Returns:
        PairInteractions; ``samples`` [P] are the served contexts per pair and ``evaluations``
        the number of coalitions passed to ``value``.

    Raises:
        ValueError: invalid arguments.
    """
    modality = _as_modality(modality)
    indices = check_indices(indices)
    _check_common(modality, rg_keep, max_batch)
    if scheme not in ("outside", "owen"):
        raise ValueError(f"scheme must be 'outside' or 'owen', got {scheme!r}")
    if num_contexts < 2:
        raise ValueError(f"num_contexts must be >= 2 (a standard error needs two samples), got {num_contexts}")
    n = len(modality)
    pairs = cross_pairs(modality) if pairs is None else _check_pairs(pairs, modality)
    generator = torch.Generator().manual_seed(seed)
    settings = ContextSettings(rg_keep, scheme)

    contexts = [INDICES[name].contexts(n, pairs, num_contexts, settings, generator) for name in indices]
    derivatives, evaluations = _derivatives(value, contexts, pairs, max_batch)
    estimates = {}
    for name, ctx, derivative in zip(indices, contexts, derivatives):
        estimates[name] = Estimate(**_stratified_mean(derivative if INDICES[name].sign > 0 else -derivative, ctx),
                                   samples=ctx.served.sum(dim=0))
    return PairInteractions(pairs=pairs, estimates=estimates, evaluations=evaluations, modality=modality)


DEFAULT_CONTENDERS = 32
DEFAULT_SCREEN_SHARE = 0.5
SURROGATE_ALPHA = 0.003  # Lasso penalty per unit of the screen values' std
# At most this share of the cross pairs is refined. On the planted 16-player game of
# test_screen_and_refine_finds_a_planted_synergy_pair_more_often_than_owen (64 cross pairs, 60 seeds at 1000
# evaluations) the synergy pair ranks first in 50 seeds with 8 pairs refined, 24 with 32 and 21 under plain owen:
# spread over half the pairs, the refinement buys too few contexts for the control variate to pay.
MAX_REFINED_SHARE = 1 / 8


@dataclass(frozen=True)
class MultilinearSurrogate:
    """A sparse multilinear game of degree <= 3 in the +-1 encoding x_k = 2 z_k - 1 of a coalition z [n]:

        f(z) = intercept + sum_T coef_T prod_{k in T} x_k,   T in `terms` (sets of 1 to 3 players)

    players  n
    terms    tuple of int64 [F_d, d] per degree d = 1, 2 (, 3): the players of each term, ascending
    coef     tuple of float64 [F_d], the coefficients of those terms
    """

    players: int
    intercept: float
    terms: tuple[torch.Tensor, ...]
    coef: tuple[torch.Tensor, ...]

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        """f of bool coalitions [B, n] as float64 [B]."""
        return self.intercept + _term_features(coalitions, self.terms) @ torch.cat(self.coef)

    def expected_derivative(self, pairs: torch.Tensor, inclusion: float) -> torch.Tensor:
        """E_S[D_ij f(S)] of every pair [P, 2] (i < j) as float64 [P], when each other player lies in the
        context S with probability `inclusion` (only this marginal matters at degree <= 3).

        D_ij of x_i x_j is 4 and of x_i x_j x_k it is 4 x_k, of expectation 4 (2 inclusion - 1); a term without
        both i and j has D_ij = 0. So the result is 4 (c_ij + (2 inclusion - 1) sum_k c_ijk).
        """
        n = self.players
        key = pairs[:, 0] * n + pairs[:, 1]
        order = key.argsort()
        sorted_key = key[order]
        total = torch.zeros(len(pairs), dtype=torch.float64)
        for terms, coef in zip(self.terms[1:], self.coef[1:]):  # a single has no pair
            weight = (2 * inclusion - 1) ** (terms.shape[1] - 2)
            for a, b in itertools.combinations(range(terms.shape[1]), 2):  # every pair inside a term
                term_key = terms[:, a] * n + terms[:, b]
                where = torch.searchsorted(sorted_key, term_key).clamp(max=len(key) - 1)
                hit = sorted_key[where] == term_key
                total.index_add_(0, order[where[hit]], weight * coef[hit])
        return 4 * total


def fit_surrogate(coalitions: torch.Tensor, values: torch.Tensor, *, alpha: float = SURROGATE_ALPHA,
                  triples: int | None = None) -> MultilinearSurrogate:
    """A `MultilinearSurrogate` fitted to a game's finite values [B] on bool coalitions [B, n] by the Lasso
    (scikit-learn, penalty `alpha` * std(values); `_lasso`) in two rounds: every player and every pair of players,
    then also the `triples` triples of players (default: as many as there are pairs) whose terms correlate most
    with the first round's residual.

    Lasso fits of low-degree multilinear (Fourier) expansions recover sparse set functions from few random
    evaluations (Stobbe & Krause 2012, "Learning Fourier sparse set functions"); SPEX and ProxySPEX (Kang et al.
    2025, Butler et al. 2025) decode the same expansion. Picking the triples by their correlation with the residual
    is sure independence screening (Fan & Lv 2008): the n^3 / 6 triples are too many to fit, and a triple left out
    is noise in the fit of every pair (on sparse degree-3 games at n = 16 and 400 coalitions, the pair terms' error
    fell from 0.1-0.9 of their norm, with the triples of the strongest pairs only, to 0.07-0.34).
    """
    n = coalitions.shape[1]
    alpha = alpha * (float(values.std()) if len(values) > 1 else 0.0)
    singles, pairs = torch.arange(n)[:, None], torch.combinations(torch.arange(n), 2)
    first = _lasso(coalitions, values, (singles, pairs), alpha)
    if n < 3:
        return first
    x = 2 * coalitions.double() - 1
    weighted = x * (values - first(coalitions))[:, None]  # [B, n]: x_a times the residual
    correlation = torch.cat([  # [n, n, n]: sum_t residual_t x_ta x_tb x_tc, in blocks of a to bound memory
        ((weighted[:, block, None] * x[:, None, :]).flatten(1).T @ x).reshape(len(block), n, n)
        for block in torch.arange(n).split(16)])
    candidates = torch.combinations(torch.arange(n), 3)  # [C, 3], a < b < c
    score = correlation[candidates[:, 0], candidates[:, 1], candidates[:, 2]].abs()
    kept = candidates[score.argsort(descending=True, stable=True)[:len(pairs) if triples is None else triples]]
    return _lasso(coalitions, values, (singles, pairs, kept), alpha)


def _term_features(coalitions: torch.Tensor, terms: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """prod_{k in T} x_k of every term T of `terms` for every coalition: float64 [B, sum_d F_d], column-major
    (the layout scikit-learn's coordinate descent reads, so it need not copy)."""
    x = (2 * coalitions.double() - 1).T.contiguous()  # [n, B]: a player's row is contiguous
    blocks = []
    for t in terms:
        block = x[t[:, 0]]  # [F_d, B], multiplied in place by the term's other players' rows
        for k in range(1, t.shape[1]):
            block *= x[t[:, k]]
        blocks.append(block)
    return torch.cat(blocks).T


def _lasso(coalitions: torch.Tensor, values: torch.Tensor, terms: tuple[torch.Tensor, ...],
           alpha: float) -> MultilinearSurrogate:
    """The Lasso fit of `fit_surrogate`, with a degree-d coefficient penalized 2^(d - 1) times as much as a
    single's (a weighted Lasso, fitted on features scaled by 2^-(d - 1)): on shapiq's wide SOUM game at n = 64
    it ranked the top 10 pairs better than equal weights (P@10 0.63 against 0.47 at 8000 evaluations) and the
    low-order game alike. Coordinates are updated in random order (fixed seed), 5x faster to converge there."""
    features = _term_features(coalitions, terms)
    scale = torch.cat([torch.full((len(t),), 2.0 ** (1 - t.shape[1]), dtype=torch.float64) for t in terms])
    if alpha > 0:
        model = Lasso(alpha=alpha, max_iter=2000, tol=1e-3, selection="random", random_state=0, copy_X=False)
        model.fit((features * scale).numpy(), values.numpy())  # a fresh column-major array: centred in place
        coef, intercept = torch.from_numpy(model.coef_) * scale, float(model.intercept_)
    else:  # a constant game (or one coalition): nothing to fit
        coef, intercept = torch.zeros(features.shape[1], dtype=torch.float64), float(values.mean())
    return MultilinearSurrogate(coalitions.shape[1], intercept, terms, tuple(coef.split([len(t) for t in terms])))


def screen_and_refine(
    value: Game,
    modality,
    evaluations: int,
    seed: int,
    *,
    indices: Sequence[str] = DEFAULT_INDICES,
    rg_keep: float = 1.0,
    max_batch: int = DEFAULT_MAX_BATCH,
    contenders: int = DEFAULT_CONTENDERS,
    screen_share: float = DEFAULT_SCREEN_SHARE,
) -> PairInteractions:
    """The top pairs of every index among many cross pairs, with valid intervals: a surrogate screens all pairs,
    then the contenders are refined by Monte Carlo on the game less the surrogate (issue 17).

    0. Exact indices (RG at rg_keep 0 or 1) come from `montecarlo`'s one deterministic context (1 + players
       + P evaluations), paid first.
    1. Screen: `screen_share` of the rest of the budget evaluates distinct coalitions, each drawn as an owen
       context (q ~ U(0, 1), every player present with probability q), and `fit_surrogate` fits a sparse
       multilinear game f to them.
    2. Refine: for every sampled index, the `contenders` pairs (at most an eighth) with the largest index of f (exact:
       `MultilinearSurrogate.expected_derivative` with the index's inclusion probability, 1/2 for SII and BII)
       get `montecarlo` owen contexts restricted to them (`pairs`) on the residual game v - f, as many as fit an
       equal share of what is left. Their estimate is index(f) + the residual's estimate: f is fixed before
       the refinement draws, so the index is linear in the game and the estimate unbiased for index(v) given
       the selection, whatever f is (f is a control variate: the better it fits, the smaller the residual's
       variance; Owen 2013, Monte Carlo theory, section 8.9). SE, samples and df are the residual's, so the
       Student-t interval is valid.

    The other pairs keep the surrogate's index as their value, with no standard error (NaN: no interval, never
    significant) and 0 samples. `Estimate.refined` marks the contenders and `Estimate.ranking_score` ranks them
    first. The phase budgets are fixed before any draw (`screen_and_refine_plan`), and every phase's seed
    derives from `seed`. A non-finite value on the screen leaves the sampled indices NaN (nothing to fit); like
    any sampling estimator, it cannot see one on a coalition it never draws (an unrefined pair then keeps the
    surrogate's finite value, a refined pair whose contexts draw it turns NaN).

    Args:
        value, modality, indices, rg_keep, max_batch: as in `montecarlo`.
        evaluations: budget of coalitions for all phases together (`PairInteractions.evaluations` reports what
            they used: distinct coalitions per phase, at most the budget).
        seed: seed of the draws (same seed -> same result).
        contenders: pairs refined per index, at most an eighth of the pairs (`MAX_REFINED_SHARE`).
        screen_share: share of the sampled budget spent on the screen, in (0, 1).

    Returns:
        PairInteractions over every cross pair.

    Raises:
        ValueError: the budget does not buy the exact indices and 2 refinement contexts per sampled index
            (before any evaluation; the message gives what they cost), or invalid arguments.
    """
    modality = _as_modality(modality)
    indices = check_indices(indices)
    _check_common(modality, rg_keep, max_batch)
    screen_size, refine_budget = screen_and_refine_plan(modality, evaluations, indices=indices, rg_keep=rg_keep,
                                                        contenders=contenders, screen_share=screen_share)
    n, pairs = len(modality), cross_pairs(modality)
    sampled = _sampled_indices(indices, rg_keep)
    fixed = [name for name in indices if name not in sampled]
    screen_seed, refine_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    estimates, used = {}, 0
    if fixed:
        # 2: montecarlo's minimum; the context is deterministic, so both draws are the same coalitions, paid once.
        result = montecarlo(value, modality, 2, seed, indices=fixed, rg_keep=rg_keep, max_batch=max_batch)
        estimates |= result.estimates
        used += result.evaluations
    if sampled:
        coalitions = _screen_coalitions(n, screen_size, torch.Generator().manual_seed(screen_seed))
        screened = _call_batched(value, coalitions, max_batch)
        used += len(coalitions)
        surrogate = fit_surrogate(coalitions, screened) if torch.isfinite(screened).all() else None
        settings = ContextSettings(rg_keep, "owen")
        for name in sampled:
            index = INDICES[name]
            if surrogate is None:
                nan = torch.full((len(pairs),), math.nan, dtype=torch.float64)
                estimates[name] = Estimate(nan, nan.clone(), torch.zeros(len(pairs), dtype=torch.long), nan.clone(),
                                           refined=torch.zeros(len(pairs), dtype=torch.bool))
                continue
            prior = index.sign * surrogate.expected_derivative(pairs, _inclusion(index, n, settings))
            chosen = prior.argsort(descending=True, stable=True)[:_refined_count(contenders, len(pairs))]
            # An owen context T costs exactly T, T xor i per player and T xor i xor j per pair (fewer when two
            # coincide), so this count fits the budget without pilot draws.
            num_contexts = refine_budget // (1 + len(torch.unique(pairs[chosen])) + len(chosen))
            refinement = montecarlo(lambda c: _call_batched(value, c, max_batch) - surrogate(c), modality,
                                    num_contexts, refine_seed, indices=(name,), rg_keep=rg_keep, max_batch=max_batch,
                                    scheme="owen", pairs=pairs[chosen])
            residual, used = refinement[name], used + refinement.evaluations
            fields = {"value": prior.clone(), "se": torch.full_like(prior, math.nan),
                      "samples": torch.zeros(len(pairs), dtype=torch.long), "df": torch.full_like(prior, math.nan)}
            fields["value"][chosen] += residual.value
            for field in ("se", "samples", "df"):
                fields[field][chosen] = getattr(residual, field)
            refined = torch.zeros(len(pairs), dtype=torch.bool)
            refined[chosen] = True
            estimates[name] = Estimate(**fields, refined=refined)
    return PairInteractions(pairs=pairs, estimates={name: estimates[name] for name in indices}, evaluations=used,
                            modality=modality)


def _screen_coalitions(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`size` distinct coalitions bool [size, n] (a few fewer near 2^n / 2), each drawn as an owen context:
    q ~ U(0, 1), then every player present with probability q. Repeats are redrawn, so that the screen spends its
    budget at small n too; the surrogate need not be unbiased, only fixed before the refinement draws."""
    drawn = torch.zeros(0, n, dtype=torch.bool)
    for _ in range(16):  # each round redraws the last one's repeats; near 2^n / 2 a few remain (n = 12: 2036 of 2048)
        missing = size - len(drawn)
        if missing <= 0:
            break
        q = torch.rand(missing, 1, generator=generator, dtype=torch.float64)
        fresh = torch.rand(missing, n, generator=generator, dtype=torch.float64) < q
        drawn, _ = _unique_rows(torch.cat([drawn, fresh]))
    return drawn


def screen_and_refine_plan(modality, evaluations: int, *, indices: Sequence[str] = DEFAULT_INDICES,
                           rg_keep: float = 1.0, contenders: int = DEFAULT_CONTENDERS,
                           screen_share: float = DEFAULT_SCREEN_SHARE) -> tuple[int, int]:
    """(coalitions drawn for the screen, refinement budget per sampled index) of `screen_and_refine`, checked
    before any evaluation. The exact indices' deterministic context is paid first (1 + players + P evaluations
    at most); of the rest, `screen_share` goes to the screen and the remainder is split evenly between the
    sampled indices, and each share must buy 2 refinement contexts of the costliest contender layout,
    2 * (1 + min(n, 2 * c) + c) evaluations for c = min(contenders, ceil(P / 8)) contenders.

    Raises:
        ValueError: the budget is short of that (the message gives the costs), screen_share outside (0, 1) or
            contenders < 1.
    """
    if not 0 < screen_share < 1:
        raise ValueError(f"screen_share must lie in (0, 1), got {screen_share}")
    if contenders < 1:
        raise ValueError(f"contenders must be >= 1, got {contenders}")
    modality = _as_modality(modality)
    indices = check_indices(indices)
    n, num_pairs = len(modality), len(cross_pairs(modality))
    sampled = _sampled_indices(indices, rg_keep)
    exact_cost = 1 + n + num_pairs if len(sampled) < len(indices) else 0
    rest = evaluations - exact_cost
    screen = int(screen_share * rest)
    refine_budget = (rest - screen) // max(len(sampled), 1)
    count = _refined_count(contenders, num_pairs)
    worst = 2 * (1 + min(n, 2 * count) + count)
    if rest < 0 or sampled and (refine_budget < worst or screen < 2):
        sampled_cost = (f", then per sampled index ({', '.join(sampled)}) {worst} for 2 refinement contexts of "
                        f"{count} contenders after a screen share of {screen_share}") if sampled else ""
        raise ValueError(f"a budget of {evaluations} evaluations is short of what screen_and_refine needs for n = "
                         f"{n} players: {exact_cost} for the exact indices{sampled_cost}")
    return screen, refine_budget


def _refined_count(contenders: int, num_pairs: int) -> int:
    """Pairs refined per sampled index: `contenders`, at most `MAX_REFINED_SHARE` of the pairs (rounded up)."""
    return min(contenders, math.ceil(MAX_REFINED_SHARE * num_pairs))


def _sampled_indices(indices: tuple[str, ...], rg_keep: float) -> list[str]:
    """The indices that need samples: those whose context distribution is not a point mass (which makes them
    exact, e.g. RG at rg_keep 0 or 1), asked of each index's own sampler."""
    settings, pairs = ContextSettings(rg_keep, "owen"), torch.tensor([[0, 1]])
    return [name for name in indices
            if not INDICES[name].contexts(2, pairs, 2, settings, torch.Generator().manual_seed(0)).deterministic]


def _inclusion(index: InteractionIndex, n: int, settings: ContextSettings) -> float:
    """P(k in S) for a given other player k under the index's context distribution: E|S| / (n - 2), with |S| = s
    of probability weights[s] * C(n - 2, s) (1/2 when there is no other player: then it never matters)."""
    if n <= 2:
        return 0.5
    size = torch.arange(n - 1, dtype=torch.float64)
    count = torch.tensor([math.comb(n - 2, s) for s in range(n - 1)], dtype=torch.float64)
    return float((index.weights(n, settings) * count * size).sum() / (n - 2))


@dataclass(frozen=True)
class _Contexts:
    """M sampled contexts: base coalitions [M, n], served pairs [M, P], stratum of each context
    [M] with the strata masses [H]; ``deterministic`` when the context distribution is a point mass."""

    base: torch.Tensor
    served: torch.Tensor
    stratum: torch.Tensor
    mass: torch.Tensor
    deterministic: bool = False


PILOT_SEEDS = (0, 1, 2, 3)


def contexts_for_budget(modality, evaluations: int, *, indices: Sequence[str] = DEFAULT_INDICES, rg_keep: float = 1.0,
                        scheme: Scheme = "outside") -> int:
    """The largest `montecarlo` num_contexts whose coalitions, for all `indices` together, fit a budget of
    `evaluations` distinct coalitions, so that a budget means the same cost in every scheme and at every n.

    The count is found by bisection on the mean cost of contexts drawn with fixed pilot seeds
    (`PILOT_SEEDS`), not with an example's own seed: num_contexts must not depend on the draws it then
    governs, or the number of samples of a pair would be a random stopping time and its mean a biased ratio
    estimator. An example's own draws therefore use the budget on average, not exactly: distinct coalitions
    vary from draw to draw (measured at 600 to 4000 evaluations: within 15% for "owen"; for "outside", whose
    contexts serve a random number of pairs, up to 40% at n = 64). `PairInteractions.evaluations` reports
    what they used. The game is never called.

    Args:
        modality: int [n], modality id per player (the cost depends on n and on the modality sizes).
        evaluations: budget of coalitions (model evaluations) per game.
        indices, rg_keep, scheme: as in `montecarlo`.

    Raises:
        ValueError: the budget does not buy the 2 contexts a standard error needs (the message gives their
            cost), or invalid arguments.
    """
    modality = _as_modality(modality)
    return _contexts_for_budget(tuple(modality.tolist()), int(evaluations), check_indices(indices), float(rg_keep),
                                scheme)


@functools.lru_cache(maxsize=1024)  # the examples of one run share a few player layouts
def _contexts_for_budget(modality: tuple[int, ...], evaluations: int, indices: tuple[str, ...], rg_keep: float,
                         scheme: Scheme) -> int:
    def cost(num_contexts: int) -> float:
        return sum(montecarlo(lambda c: torch.zeros(len(c)), torch.tensor(modality), num_contexts, seed,
                              indices=indices, rg_keep=rg_keep, scheme=scheme).evaluations
                   for seed in PILOT_SEEDS) / len(PILOT_SEEDS)

    if cost(2) > evaluations:
        raise ValueError(f"a budget of {evaluations} evaluations buys fewer than the 2 Monte Carlo contexts a "
                         f"standard error needs for n = {len(modality)} players with scheme {scheme!r}; "
                         f"2 contexts cost {cost(2):.0f}")
    low, high = 2, 4
    while cost(high) <= evaluations:
        if high >= 4 * evaluations:  # the budget exceeds the 2^n coalitions: more contexts only repeat them
            return high
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if cost(mid) <= evaluations else (low, mid)
    return low


def _sii_contexts(n: int, pairs: torch.Tensor, m: int, settings: ContextSettings,
                  generator: torch.Generator) -> _Contexts:
    """SII's contexts by settings.scheme (`montecarlo`)."""
    if settings.scheme == "outside":
        s = torch.arange(n - 1)
        size_probability = 1.0 / ((n - s) * (n - s - 1)).double()
        size = torch.multinomial(size_probability, m, replacement=True, generator=generator)
        # A uniform subset of each size: the players whose random rank is below it.
        rank = torch.rand(m, n, generator=generator).argsort(dim=1).argsort(dim=1)
        base = rank < size[:, None]
        return _Contexts(base, _outside(base, pairs), torch.zeros(m, dtype=torch.long), torch.ones(1, dtype=torch.float64))

    # Strata of two contexts (the last takes a third if m is odd): two i.i.d. draws per stratum are
    # the fewest that still give an unbiased within-stratum variance.
    count = torch.full((m // 2,), 2)
    count[-1] += m % 2
    stratum = torch.repeat_interleave(torch.arange(m // 2), count)
    mass = count.double() / m
    start = torch.cumsum(mass, 0) - mass
    q = start[stratum] + mass[stratum] * torch.rand(m, generator=generator, dtype=torch.float64)
    base = torch.rand(m, n, generator=generator, dtype=torch.float64) < q[:, None]
    return _Contexts(base, torch.ones(m, len(pairs), dtype=torch.bool), stratum, mass)


def _bernoulli_contexts(
    n: int, pairs: torch.Tensor, m: int, keep: float, scheme: Scheme, generator: torch.Generator
) -> _Contexts:
    """m i.i.d. contexts keeping each player with probability keep, serving pairs as `scheme` does;
    one deterministic context when keep is 0 or 1."""
    one_stratum = torch.ones(1, dtype=torch.float64)
    if keep in (0.0, 1.0):
        base = torch.full((1, n), keep == 1.0)
        served = torch.ones(1, len(pairs), dtype=torch.bool)
        return _Contexts(base, served, torch.zeros(1, dtype=torch.long), one_stratum, deterministic=True)
    base = torch.rand(m, n, generator=generator, dtype=torch.float64) < keep
    served = _outside(base, pairs) if scheme == "outside" else torch.ones(m, len(pairs), dtype=torch.bool)
    return _Contexts(base, served, torch.zeros(m, dtype=torch.long), one_stratum)


def _outside(base: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """[M, P]: both players of the pair are absent from the base coalition."""
    return ~base[:, pairs[:, 0]] & ~base[:, pairs[:, 1]]


def _derivatives(
    value: Game, contexts: list[_Contexts], pairs: torch.Tensor, max_batch: int
) -> tuple[list[torch.Tensor], int]:
    """D_ij(T \\ {i, j}) for every served (context, pair) of every context set, as [M, P] tensors
    (NaN where not served), evaluating each distinct coalition once; also returns that count."""
    quads = []
    for ctx in contexts:
        context_index, pair_index = ctx.served.nonzero(as_tuple=True)
        rows = torch.arange(len(context_index))
        i, j = pairs[pair_index, 0], pairs[pair_index, 1]
        s = ctx.base[context_index].clone()
        s[rows, i] = False
        s[rows, j] = False
        s_i, s_j = s.clone(), s.clone()
        s_i[rows, i] = True
        s_j[rows, j] = True
        s_ij = s_i.clone()
        s_ij[rows, j] = True
        quads.append(torch.stack([s, s_i, s_j, s_ij]))  # [4, K, n]

    sizes = [q.shape[1] for q in quads]
    coalitions = torch.cat(quads, dim=1).reshape(-1, quads[0].shape[-1])
    unique, inverse = _unique_rows(coalitions)
    values = _call_batched(value, unique, max_batch)[inverse]
    v_s, v_i, v_j, v_ij = values.reshape(4, -1)
    derivative = v_ij - v_i - v_j + v_s

    out = []
    for ctx, d in zip(contexts, derivative.split(sizes)):
        full = torch.full(ctx.served.shape, float("nan"), dtype=torch.float64)
        full[ctx.served] = d
        out.append(full)
    return out, len(unique)


def _stratified_mean(samples: torch.Tensor, ctx: _Contexts) -> dict[str, torch.Tensor]:
    """Stratified mean, its standard error and the SE's Welch-Satterthwaite degrees of freedom per pair
    ({"value", "se", "df"}, each [P]) from samples [M, P] (NaN = not served).

    Unserved entries are zeroed by `ctx.served`, not by their NaN: a served sample that is NaN or inf (a
    non-finite game value) makes its pair's estimate non-finite instead of counting as a 0.
    """
    served = ctx.served.double()
    x = torch.where(ctx.served, samples, 0.0)

    def stratum_sum(t: torch.Tensor) -> torch.Tensor:  # [M, P] -> [H, P]
        return torch.zeros(len(ctx.mass), t.shape[1], dtype=torch.float64).index_add_(0, ctx.stratum, t)

    count = stratum_sum(served)
    mean = stratum_sum(x) / count
    # Two-pass variance: centre on the stratum mean before squaring, for accuracy.
    centred = torch.where(ctx.served, x - mean[ctx.stratum], 0.0)
    variance = stratum_sum(centred**2) / (count - 1)
    estimate = (ctx.mass[:, None] * mean).sum(dim=0)
    if ctx.deterministic:
        return {"value": estimate, "se": torch.zeros_like(estimate), "df": torch.full_like(estimate, math.inf)}
    part = (ctx.mass[:, None] ** 2) * variance / count  # [H, P]: c_h s_h^2
    se2 = part.sum(dim=0)
    df = se2**2 / (part**2 / (count - 1)).sum(dim=0)
    # Every sample of every stratum equal (possible at small n, where contexts repeat): the formula is 0/0;
    # its limit for equal parts, sum_h (K_h - 1), keeps one stratum at K - 1. NaN parts (K_h < 2) stay NaN.
    df = torch.where(se2 == 0, (count - 1).sum(dim=0), df)
    return {"value": estimate, "se": se2.sqrt(), "df": df}


def _unique_rows(coalitions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of a bool [B, n] matrix and the index of each row among them.

    torch.unique(dim=0) is ~30x slower than 1-D unique, so rows are packed into 62-bit integer
    words and identified word by word: after each word, ``ids`` numbers the distinct prefixes.
    """
    b, n = coalitions.shape
    num_words = -(-n // 62)
    width = -(-n // num_words)
    padded = torch.nn.functional.pad(coalitions, (0, num_words * width - n)).reshape(b, num_words, width)
    words = (padded.long() << torch.arange(width)).sum(dim=2)  # [B, num_words]
    ids = torch.zeros(b, dtype=torch.long)
    for word in words.T:
        _, word_id = torch.unique(word, return_inverse=True)
        _, ids = torch.unique(ids * b + word_id, return_inverse=True)  # < b^2: no overflow
    first = torch.full((int(ids.max()) + 1 if b else 0,), b).scatter_reduce_(0, ids, torch.arange(b), "amin")
    return coalitions[first], ids


def _call_batched(value: Game, coalitions: torch.Tensor, max_batch: int) -> torch.Tensor:
    """value() on chunks of at most max_batch rows, concatenated as float64 [B]."""
    out = []
    for chunk in coalitions.split(max_batch):
        result = torch.as_tensor(value(chunk)).to("cpu", torch.float64).reshape(-1)
        if len(result) != len(chunk):
            raise ValueError(f"value() returned {len(result)} values for {len(chunk)} coalitions")
        out.append(result)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _bernoulli_size_weights(n: int, keep: float) -> torch.Tensor:
    """Probability of one given context of size s = 0..n-2 when each of the n-2 others is kept
    with probability keep (0^0 = 1, so keep = 1 puts all mass on S = N \\ {i, j})."""
    s = torch.arange(n - 1, dtype=torch.float64)
    keep_t = torch.tensor(keep, dtype=torch.float64)
    return keep_t**s * (1 - keep_t) ** (n - 2 - s)


def _sii_weights(n: int, settings: ContextSettings) -> torch.Tensor:
    # s!(n-s-2)!/(n-1)! = 1 / ((n-1) C(n-2, s)): |S| uniform on 0..n-2, S uniform given |S|.
    return torch.tensor([1.0 / ((n - 1) * math.comb(n - 2, s)) for s in range(n - 1)], dtype=torch.float64)


SII = register_index(InteractionIndex(
    name="sii", title="Shapley interaction index", sign=1, positive="synergy", weights=_sii_weights,
    contexts=_sii_contexts))
def _bernoulli(keep: Callable[[ContextSettings], float]) -> dict:
    """The weights and the sampler of an index whose context keeps each other player independently with
    probability keep(settings)."""
    return {"weights": lambda n, settings: _bernoulli_size_weights(n, keep(settings)),
            "contexts": lambda n, pairs, m, settings, generator: _bernoulli_contexts(
                n, pairs, m, keep(settings), settings.scheme, generator)}


RG = register_index(InteractionIndex(name="rg", title="redundancy gap", sign=-1, positive="redundancy",
                                     **_bernoulli(lambda settings: settings.rg_keep)))
# Each other player in or out with probability 1/2: every coalition of N \ {i, j} weighs 2^-(n-2).
BII = register_index(InteractionIndex(name="bii", title="Banzhaf interaction index", sign=1, positive="synergy",
                                      **_bernoulli(lambda settings: 0.5)))


def _as_modality(modality) -> torch.Tensor:
    modality = torch.as_tensor(modality)
    if modality.ndim != 1 or modality.dtype.is_floating_point or modality.dtype == torch.bool:
        raise ValueError(
            f"modality must be a 1-D integer tensor of modality ids, got {modality.dtype} {tuple(modality.shape)}"
        )
    return modality.long()


def _check_pairs(pairs, modality: torch.Tensor) -> torch.Tensor:
    """`pairs` as int64 [P, 2] after checking that they are distinct cross pairs (i, j), i < j, of the players."""
    pairs = torch.as_tensor(pairs)
    n = len(modality)
    if (pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0 or pairs.dtype.is_floating_point
            or pairs.dtype == torch.bool):
        raise ValueError(f"pairs must be a non-empty integer tensor [P, 2], got {pairs.dtype} {tuple(pairs.shape)}")
    pairs = pairs.long()
    i, j = pairs.T
    bad = (i < 0) | (j >= n) | (i >= j)
    bad[~bad] = modality[i[~bad]] == modality[j[~bad]]
    if bad.any():
        raise ValueError(f"pairs must be cross-modal pairs (i, j) with 0 <= i < j < {n}, got {pairs[bad][0].tolist()}")
    if len(torch.unique(i * n + j)) != len(pairs):
        raise ValueError("pairs must be distinct")
    return pairs


def _check_common(modality: torch.Tensor, rg_keep: float, max_batch: int) -> None:
    if not 0.0 <= rg_keep <= 1.0:
        raise ValueError(f"rg_keep must lie in [0, 1], got {rg_keep}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if len(torch.unique(modality)) < 2:
        raise ValueError("modality must contain at least two modality ids (no cross-modal pair otherwise)")
