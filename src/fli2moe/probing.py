"""Interaction probes of one model on real examples (docs/design.md section 5, `probe`).

Per example x with target labels (fixed on x) and candidate tokens N = {c_1, ..., c_n} (token slots of
every modality), the game is

    v(S) = score(remove(x, keep_S)),   keep_S[t] = (t not in N) or (t in S)          S subset of N

the target score (`masking.target_score`, quantity "logit" or "prob") of the model when the candidates
outside S are removed by the one masking operator and every other token stays present. The estimators
of `interactions.py` turn v into the requested indices (`probe.indices`: SII and RG by default, BII
too, any entry of `interactions.INDICES`) of every cross-modal candidate pair.

Parts:
- `coalition_game`: v for a [B, n] coalition matrix through the stage's `ExplanationContext` (chunked
  fixed-shape batched forward passes: memory bounded by max_batch, bitwise batch-invariant);
- `select_candidates`: the top tokens of each modality by the whole-model attribution;
- `probe_examples`: candidates, game and estimator for many examples, with evaluations and seconds;
- `planted_pair_recovery`, `aggregate_recovery`, `synthetic_recovery`, `recovery_metrics`: how well the
  probes find the planted pairs of the synthetic benchmark (docs/design.md section 3);
- `pair_rows`, `probe_metrics`: the per-pair table and summary numbers of the stage.
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from fli2moe.faithfulness import seed_example_ci
from fli2moe.interactions import (DEFAULT_CONTENDERS, DEFAULT_INDICES, DEFAULT_SCREEN_SHARE, INDICES, Estimate, Game,
                                   PairInteractions, contexts_for_budget, exact, montecarlo, screen_and_refine,
                                   screen_and_refine_plan)
from fli2moe.masking import modality_ids
from fli2moe.task_metrics import SEED_PREFIX

if TYPE_CHECKING:  # only a type: the probes evaluate through the context they are given
    from fli2moe.explaining import ExplanationContext

ESTIMATORS = ("exact", "montecarlo", "screen_and_refine")
PLANTED = {"synergy": "sii", "redundancy": "rg"}  # planted mechanism -> the paper's index that should rank it first
PRECISION_KS = (1, 5)
SIGNIFICANCE_Z = 1.96
# Coalitions handed to the game per call. A call costs the bool keep-masks [B, T] (a few MB at this size)
# while the forward passes stay at max_batch rows; few calls matter because each call pads its last chunk.
GAME_CALL_ROWS = 1 << 16


def coalition_game(context: ExplanationContext, projected: Tensor, mask: Tensor, target: Tensor,
                   candidates) -> tuple[Game, Tensor]:
    """The game of one example over its candidate tokens, and the candidates' modality ids.

    projected [T, H], mask [T], target [C] bool, candidates [n] distinct real token slots; the context
    holds the model, baseline, task, quantity and batch limit.
    Returns (value, modality): value(coalitions bool [B, n]) -> float [B] with
    value[b] = v({c_k : coalitions[b, k]}) as in the module docstring, and modality [n] int64.

    All B coalitions go through one `ExplanationContext.logits` call: forward passes of exactly max_batch rows, so a
    coalition's value is bitwise the same whichever batch it is evaluated in, and equal to the whole-model score
    of `ExplanationContext.scores` (which also runs the routing weights that the game does not need).
    """
    T = mask.shape[0]
    candidates = torch.as_tensor(candidates, dtype=torch.long).cpu()
    if candidates.ndim != 1 or len(candidates) == 0:
        raise ValueError(f"candidates must be a non-empty 1-D tensor of slots, got shape {tuple(candidates.shape)}")
    if len(candidates.unique()) != len(candidates) or candidates.min() < 0 or candidates.max() >= T:
        raise ValueError(f"candidates must be distinct token slots in [0, {T}), got {candidates.tolist()}")
    padded = candidates[~mask.cpu()[candidates]]
    if len(padded):
        raise ValueError(f"candidates must be real tokens: slots {padded.tolist()} are padding")

    def value(coalitions: Tensor) -> Tensor:
        if coalitions.ndim != 2 or coalitions.shape[1] != len(candidates):
            raise ValueError(f"coalitions must be [B, {len(candidates)}], got {tuple(coalitions.shape)}")
        keeps = torch.ones(len(coalitions), T, dtype=torch.bool)  # [B, T]: non-candidates always present
        keeps[:, candidates] = coalitions.bool().cpu()
        return context.score(context.logits(projected[None], mask[None], keeps[None])[0], target)

    return value, modality_ids(context.model)[candidates]


def check_pair_modalities(manifest: dict) -> None:
    """The probes score pairs across exactly two modalities; refuse any other feature set before any work."""
    names = [m["name"] for m in manifest["modalities"]]
    if len(names) != 2:
        hint = " (for mmhs150k, set data.mmhs150k.ocr to append or ignore)" if "image_text" in names else ""
        raise ValueError(f"the probes score token pairs across two modalities; the {manifest['dataset']} feature "
                         f"set has {len(names)}: {', '.join(names)}{hint}")


def select_candidates(whole_map: Tensor, mask: Tensor, slices: dict[str, slice], per_modality: int | str) -> Tensor:
    """Candidate token slots [n] int64, ascending: per modality, its `per_modality` real tokens with the
    largest whole-model attribution (ties to the lower slot; all of them when it has fewer), or "all" of
    its real tokens.

    whole_map [T], mask [T] (padded slots are never selected), slices: the model's `modality_slices`.
    """
    if per_modality != "all" and not (isinstance(per_modality, int) and per_modality > 0):
        raise ValueError(f"candidates per modality must be a positive integer or 'all', got {per_modality!r}")
    whole_map, mask = whole_map.detach().cpu(), mask.cpu()
    chosen = []
    for s in slices.values():
        slots = torch.arange(s.start, s.stop)[mask[s]]  # real tokens of the modality, ascending
        if per_modality != "all":
            # A stable sort keeps equal scores in slot order, so ties go to the lower slot.
            order = torch.sort(whole_map[slots], descending=True, stable=True).indices
            slots = slots[order[:per_modality]].sort().values
        chosen.append(slots)
    return torch.cat(chosen)


@dataclass(frozen=True)
class ProbeResult:
    """The probe of one example: n candidates, P cross-modal pairs (player indices into the candidates).

    The candidates are ascending token slots and the modalities occupy consecutive slot ranges in config
    order, so in every pair (i, j) of `interactions.pairs` (i < j) player i has the lower modality id.
    """

    index: int  # the example's index in its split
    candidates: Tensor  # [n] int64 token slots
    positions: Tensor  # [n] int64 index of each candidate within its modality (slot - modality start)
    interactions: PairInteractions  # .modality [n] holds the candidates' modality ids
    seconds: float  # wall time of the estimator, model evaluations included
    degenerate: str | None = None  # why the estimates mean nothing (`game_degeneracy`), None when they do

    @property
    def evaluations(self) -> int:
        return self.interactions.evaluations


def game_degeneracy(values: Tensor) -> str | None:
    """Why a game whose evaluated coalitions gave `values` [B] has no meaningful interactions, or None:
    a non-finite value (its estimates would be NaN), or a constant game (every index is exactly 0)."""
    finite = torch.isfinite(values)
    if not finite.all():
        return f"the target score is NaN or inf on {int((~finite).sum())} of {len(values)} coalitions"
    if (values == values[0]).all():
        return "constant game: removing candidates never changes the target score"
    return None


def split_degenerate(results_by_seed: Sequence[Sequence[ProbeResult]], seeds: Sequence[int],
                     ids: Sequence[str]) -> tuple[list[list[ProbeResult]], list[dict]]:
    """Per seed, the results of the examples whose game is meaningful for every seed's model (so that every
    seed covers the same examples), and {example, id, reason} of the others (ids indexed by the example
    index; the reason names the first seed whose game is degenerate)."""
    reasons = {}
    for seed, results in zip(seeds, results_by_seed, strict=True):
        for r in results:
            if r.degenerate is not None and r.index not in reasons:
                reasons[r.index] = f"seed {seed}: {r.degenerate}"
    kept = [[r for r in results if r.index not in reasons] for results in results_by_seed]
    return kept, [{"example": index, "id": ids[index], "reason": reason} for index, reason in reasons.items()]


def example_seed(seed: int, index: int) -> int:
    """The Monte Carlo seed of example `index`: independent streams per example, reproducible from `seed`
    whatever subset of examples is probed and in which order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def contexts_per_example(mask: Tensor, slices: dict[str, slice], candidates_per_modality: int | str, evaluations: int,
                         indices: Sequence[str] = DEFAULT_INDICES, rg_keep: float = 1.0,
                         scheme: str = "outside", ids: Sequence[str] | None = None, *,
                         estimator: str = "montecarlo", contenders: int = DEFAULT_CONTENDERS,
                         screen_share: float = DEFAULT_SCREEN_SHARE) -> list[int]:
    """Monte Carlo contexts per example [N] that a budget of `evaluations` per example buys
    (`interactions.contexts_for_budget`; for estimator "screen_and_refine", the screen's coalitions after
    checking that the refinement's share buys two contexts, `interactions.screen_and_refine_plan`) for the candidates
    `select_candidates` gives each example of mask [N, T]: their count per modality does not depend on the
    attribution, so this runs before any model evaluation, and the same budget buys fewer contexts for an
    example with more candidates.

    Raises:
        ValueError: the budget does not buy two contexts for some example (naming it, by its id in `ids` [N]
            when given, and the cost).
    """
    counts = []
    for b in range(len(mask)):
        real = torch.stack([mask[b, s].sum() for s in slices.values()]).cpu()  # [M] real tokens per modality
        sizes = real if candidates_per_modality == "all" else real.clamp(max=candidates_per_modality)
        modality = torch.repeat_interleave(torch.arange(len(sizes)), sizes)  # [n] as `select_candidates` picks
        try:
            if estimator == "screen_and_refine":
                counts.append(screen_and_refine_plan(modality, evaluations, indices=indices, rg_keep=rg_keep,
                                                     contenders=contenders, screen_share=screen_share)[0])
            else:
                counts.append(contexts_for_budget(modality, evaluations, indices=indices, rg_keep=rg_keep,
                                                  scheme=scheme))
        except ValueError as e:
            raise ValueError(f"example {ids[b]!r}: {e}" if ids is not None else f"example {b}: {e}") from None
    return counts


def probe_examples(context: ExplanationContext, projected: Tensor, mask: Tensor, targets: Tensor, maps: Tensor, *,
                   candidates_per_modality: int | str, estimator: str = "montecarlo",
                   indices: Sequence[str] = DEFAULT_INDICES, evaluations: int = 1000, rg_keep: float = 1.0,
                   scheme: str = "outside", contenders: int = DEFAULT_CONTENDERS,
                   screen_share: float = DEFAULT_SCREEN_SHARE, seed: int = 0,
                   example_index: Sequence[int] | None = None, workers: int = 1) -> list[ProbeResult]:
    """The interaction `indices` (names of `interactions.INDICES`) of the cross-modal candidate pairs of N
    examples, one `ProbeResult` each.

    projected [N, T, H], mask [N, T], targets [N, C] bool, maps [N, T] whole-model attributions (they pick
    the candidates, `select_candidates`). estimator "exact" (2^n evaluations, n <= 16), "montecarlo"
    (a budget of about `evaluations` coalitions per example for all indices together, `contexts_per_example`;
    `scheme`, seed `example_seed(seed, index)`) or "screen_and_refine" (the same budget and seed, owen contexts,
    `contenders` and `screen_share`: `interactions.screen_and_refine`); rg_keep as in `interactions`.
    `example_index` [N] are the examples' indices in their split (default 0..N-1): they are recorded and
    seed the Monte Carlo draws, so an example gets the same estimate in any batch. Each result's
    `degenerate` says when its game has no meaningful interactions (`game_degeneracy`).

    `workers` > 1 probes the examples in that many processes of one CPU thread each: the models' small tensor
    ops scale badly over threads, so on a 2-core CPU 2 processes x 1 thread probe faster than 1 process x 2
    threads (benchmarks/probe_workers.py). Each example's draws depend on its index only and every forward
    pass has the same shape, so the estimates do not depend on `workers` (tested bitwise); `seconds` is each
    example's own wall time in its worker.

    Raises:
        ValueError: an unknown estimator or index, example_index not of length N, workers < 1, or a budget that
            does not buy two contexts for some example (before any model evaluation).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"probe estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    example_index = list(range(len(projected))) if example_index is None else [int(i) for i in example_index]
    if len(example_index) != len(projected):
        raise ValueError(f"example_index: {len(example_index)} for {len(projected)} examples")
    slices = context.model.modality_slices
    if estimator == "exact":
        num_contexts = [0] * len(projected)
    else:  # checks every example's budget before any model evaluation
        num_contexts = contexts_per_example(mask, slices, candidates_per_modality, evaluations, indices, rg_keep,
                                            scheme, estimator=estimator, contenders=contenders,
                                            screen_share=screen_share)
    examples = (projected, mask, targets,
                [select_candidates(maps[b], mask[b], slices, candidates_per_modality) for b in range(len(projected))])
    jobs = list(enumerate(zip(example_index, num_contexts)))
    probe = partial(_probe_example, estimator=estimator, indices=tuple(indices), evaluations=evaluations,
                    rg_keep=rg_keep, scheme=scheme, contenders=contenders, screen_share=screen_share, seed=seed)
    if workers == 1 or len(jobs) == 1:
        return [probe(context, examples, b, *job) for b, job in jobs]
    # spawn, not fork: a forked child of a process whose OpenMP threads already ran can deadlock. The examples
    # go to each worker once; a result comes back as plain pickle bytes, not through torch's shared-memory
    # tensor passing, which holds a file descriptor per tensor.
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(context, examples)) as pool:
        return [pickle.loads(result) for result in pool.map(partial(_probe_in_worker, probe), jobs)]


def _probe_example(context: ExplanationContext, examples: tuple, b: int, index: int, num_contexts: int, *,
                   estimator: str, indices: tuple[str, ...], evaluations: int, rg_keep: float, scheme: str,
                   contenders: int, screen_share: float, seed: int) -> ProbeResult:
    """Example b of `probe_examples`' (projected [N, T, H], mask [N, T], targets [N, C], candidates [N][n])."""
    projected, mask, targets, candidates = (tensors[b] for tensors in examples)
    game, modality = coalition_game(context, projected, mask, targets, candidates)
    values = []

    def value(coalitions: Tensor) -> Tensor:
        values.append(game(coalitions).cpu())
        return values[-1]

    start = time.perf_counter()
    if estimator == "exact":
        interactions = exact(value, modality, indices=indices, rg_keep=rg_keep, max_batch=GAME_CALL_ROWS)
    elif estimator == "screen_and_refine":
        interactions = screen_and_refine(value, modality, evaluations, example_seed(seed, index), indices=indices,
                                         rg_keep=rg_keep, max_batch=GAME_CALL_ROWS, contenders=contenders,
                                         screen_share=screen_share)
    else:
        interactions = montecarlo(value, modality, num_contexts, example_seed(seed, index), indices=indices,
                                  rg_keep=rg_keep, max_batch=GAME_CALL_ROWS, scheme=scheme)
    seconds = time.perf_counter() - start
    starts = torch.tensor([s.start for s in context.model.modality_slices.values()])  # [M]
    return ProbeResult(index, candidates, candidates - starts[modality], interactions, seconds,
                       game_degeneracy(torch.cat(values)))


_worker: tuple | None = None  # a `probe_examples` worker's (context, examples), sent once per process


def _start_worker(context: ExplanationContext, examples: tuple) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = (context, examples)


def _probe_in_worker(probe: Callable[..., ProbeResult], job: tuple[int, tuple[int, int]]) -> bytes:
    b, (index, num_contexts) = job
    return pickle.dumps(probe(*_worker, b, index, num_contexts))


# --- recovery of the planted pairs (synthetic benchmark) ---------------------------------------------

def planted_pair_recovery(positions, scores: Mapping[str, np.ndarray], planted: Mapping[str, Sequence[int]],
                          ks: Sequence[int] = PRECISION_KS, errors: Mapping[str, np.ndarray] | None = None,
                          ranking: Mapping[str, np.ndarray] | None = None) -> dict:
    """How one example's estimates rank its planted pairs.

    positions [P, 2]: the estimated cross-modal pairs as (position in modality a, position in modality b);
    scores: {kind: [P] the estimates of the index that ranks the planted pair of that kind} (kind
    "synergy" or "redundancy"; the paper's pairing is `PLANTED`: SII for synergy, RG for redundancy);
    planted: {kind: (pos_a, pos_b)} for the same kinds. Each kind is ranked by its scores, descending, or by
    `ranking` ({kind: [P]}, `Estimate.ranking_score`) when given. For each kind the dict holds:

        {kind}_found           the planted pair is among the estimated pairs (both tokens were candidates)
        {kind}_rank            1 + #{pairs ranked above it}, None when not found. Ties count against it:
                               rank = #{p : score_p >= score_planted}, so a constant estimate ranks last.
                               A NaN estimate (a Monte Carlo pair never sampled) ranks below every number.
        {kind}_precision@k     rank <= k (False when not found): the planted pair is among the top k
        {kind}_sign_correct    score of the planted pair > 0 (every index is signed so that a positive
                               value means its kind, `InteractionIndex.positive`), None when not found
        {kind}_within_noise    with `errors` ({kind: [P] standard errors of the scores}), for a planted pair
                               found but not ranked first: the top pair's estimate exceeds it by at most
                               1.96 sqrt(se_top^2 + se_planted^2), so the estimator's noise alone could
                               have swapped them (False for a NaN error); None otherwise
    and "pairs" = P, for the chance level min(k, P) / P.
    """
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    row = {"pairs": len(positions)}
    for kind, pair in planted.items():
        score = np.nan_to_num(np.asarray(scores[kind], dtype=np.float64), nan=-np.inf)
        order = score if ranking is None else np.nan_to_num(np.asarray(ranking[kind], dtype=np.float64), nan=-np.inf)
        match = (positions == np.asarray(pair, dtype=np.int64)).all(1)
        found = bool(match.any())
        rank = int((order >= order[match][0]).sum()) if found else None
        row[f"{kind}_found"] = found
        row[f"{kind}_rank"] = rank
        row |= {f"{kind}_precision@{k}": found and rank <= k for k in ks}
        row[f"{kind}_sign_correct"] = bool(score[match][0] > 0) if found else None
        if errors is not None:
            within = None
            if found and rank > 1:
                se = np.asarray(errors[kind], dtype=np.float64)
                top = int(order.argmax())
                gap = score[top] - score[match][0]
                within = bool(gap <= SIGNIFICANCE_Z * np.hypot(se[top], se[match][0]))  # NaN compares False
            row[f"{kind}_within_noise"] = within
    return row


def aggregate_recovery(rows_by_seed: Sequence[Sequence[dict]], kinds: Sequence[str] = tuple(PLANTED),
                       ks: Sequence[int] = PRECISION_KS, seeds: Sequence[int] | None = None, resamples: int = 1000,
                       seed: int = 0) -> dict:
    """`planted_pair_recovery` rows summarised over the trained seeds (one list of rows per seed, the same
    examples in the same order), per planted kind of `kinds`:

        {kind}_precision@k       over all examples (a missing pair counts as a miss: end-to-end rate), as
                                 the mean over seeds and examples with its `faithfulness.seed_example_ci` over
                                 both: {mean, std (seed spread), low, high, n, seeds}, plus seed_<s> (that
                                 seed's rate) for each of `seeds` (default 0, 1, ...)
        {kind}_examples, {kind}_found, {kind}_missing     examples per seed; found / missing: mean over seeds
        {kind}_missing_share     share of examples whose planted pair is not among the candidates
        {kind}_mean_rank         over the examples where it was found
        {kind}_chance_precision@k  the same for a random ranking: mean of found * min(k, P) / P
        {kind}_sign_accuracy     over the examples where it was found
        {kind}_misses_within_noise  of the examples where it was found but not ranked first, the share
                                 whose top pair beat it by no more than the estimator's noise
                                 (`planted_pair_recovery`'s within_noise; rows with that field only)
    plus mean_pairs; every plain number is pooled over seeds and examples. Means over no example are None.
    """
    def mean(values) -> float | None:
        return float(np.mean(values)) if len(values) else None

    seeds = list(range(len(rows_by_seed))) if seeds is None else list(seeds)
    rows = [r for per_seed in rows_by_seed for r in per_seed]
    out = {"mean_pairs": mean([r["pairs"] for r in rows])}
    for kind in kinds:
        found = [r for r in rows if r[f"{kind}_found"]]
        out[f"{kind}_examples"] = len(rows_by_seed[0])
        out[f"{kind}_found"] = len(found) / len(rows_by_seed)
        out[f"{kind}_missing"] = (len(rows) - len(found)) / len(rows_by_seed)
        out[f"{kind}_missing_share"] = mean([not r[f"{kind}_found"] for r in rows])
        out[f"{kind}_mean_rank"] = mean([r[f"{kind}_rank"] for r in found])
        for k in ks:
            hits = np.array([[r[f"{kind}_precision@{k}"] for r in per_seed] for per_seed in rows_by_seed], float)
            out[f"{kind}_precision@{k}"] = seed_example_ci(hits, resamples, seed) | {
                f"{SEED_PREFIX}{s}": float(h.mean()) for s, h in zip(seeds, hits, strict=True)}
            out[f"{kind}_chance_precision@{k}"] = mean(
                [r[f"{kind}_found"] * min(k, r["pairs"]) / r["pairs"] for r in rows])
        out[f"{kind}_sign_accuracy"] = mean([r[f"{kind}_sign_correct"] for r in found])
        if rows and f"{kind}_within_noise" in rows[0]:
            out[f"{kind}_misses_within_noise"] = mean([r[f"{kind}_within_noise"] for r in found
                                                       if r[f"{kind}_within_noise"] is not None])
    return out


def synthetic_recovery(results: Sequence[ProbeResult], ground_truth: dict, scoring: Mapping[str, str] = PLANTED,
                       ks: Sequence[int] = PRECISION_KS) -> list[dict]:
    """`planted_pair_recovery` of every probed example against the manifest's `ground_truth[split]`
    ({"synergy": [[pos_a, pos_b], ...], "redundancy": [...], ...}, indexed by the example's index), each
    planted kind of `scoring` ranked by the index it names ({kind: index name})."""
    rows = []
    for result in results:
        positions = result.positions[result.interactions.pairs]  # [P, 2] (position in a, position in b)
        rows.append({"example": result.index, **planted_pair_recovery(
            positions.numpy(), {kind: result.interactions[name].value.numpy() for kind, name in scoring.items()},
            {kind: ground_truth[kind][result.index] for kind in scoring}, ks,
            {kind: result.interactions[name].se.numpy() for kind, name in scoring.items()},
            {kind: result.interactions[name].ranking_score().numpy() for kind, name in scoring.items()})})
    return rows


def recovery_metrics(results_by_seed: Sequence[Sequence[ProbeResult]], ground_truth: dict, indices: Sequence[str],
                     seeds: Sequence[int], resamples: int = 1000, seed: int = 0) -> dict:
    """The probe metrics' planted-pair recovery over the trained `seeds` (one list of results per seed, same
    examples; `aggregate_recovery`) for the probed `indices`:

        recovery          the paper's pairing (`PLANTED`: synergy by SII, redundancy by RG), for the
                          kinds whose index is probed
        recovery_<index>  for every other probed index: the planted pair of the kind a positive value
                          of it means (`InteractionIndex.positive`; BII: synergy)

    Empty when no index can rank a planted pair.
    """
    scorings = {"recovery": {kind: name for kind, name in PLANTED.items() if name in indices}}
    scorings |= {f"recovery_{name}": {INDICES[name].positive: name} for name in indices
                 if name not in PLANTED.values()}
    return {key: aggregate_recovery([synthetic_recovery(results, ground_truth, scoring) for results in results_by_seed],
                                    tuple(scoring), seeds=seeds, resamples=resamples, seed=seed)
            for key, scoring in scorings.items() if scoring}


# --- stage summaries ---------------------------------------------------------------------------------

def significant(estimate: Estimate, level: float = 0.95) -> Tensor:
    """bool [P]: the pair's Student-t interval at `level` (`Estimate.interval`, on the SE's own degrees of
    freedom) excludes 0. False for a pair without an interval (sampled fewer than twice): a NaN SE never
    passes as a number. Exact estimates have SE 0: every nonzero one counts."""
    low, high = estimate.interval(level)
    return (low > 0) | (high < 0)


def pair_rows(results: Sequence[ProbeResult], ids: Sequence[str], modality_names: Sequence[str]) -> list[dict]:
    """One row per estimated pair: example index and id, both tokens' modality, slot and position within
    its modality (the lower modality id first), then per probed index <name> (in probe order) its value,
    <name>_se and its 95% t-interval <name>_low, <name>_high (`Estimate.interval`, NaN without one), then every
    <name>_samples, <name>_refined for an index `screen_and_refine` refined, and `significant` (SII's 95%
    t-interval excludes 0,
    `significant`; absent when SII is not probed). ids are indexed by the example index."""
    rows = []
    for result in results:
        pi = result.interactions
        slots, positions, modality = (t[pi.pairs].tolist() for t in (result.candidates, result.positions, pi.modality))
        flags = significant(pi["sii"]).tolist() if "sii" in pi.estimates else None
        intervals = {name: estimate.interval() for name, estimate in pi.estimates.items()}
        for p in range(len(pi.pairs)):
            row = {
                "example": result.index, "id": ids[result.index],
                "modality_i": modality_names[modality[p][0]], "slot_i": slots[p][0], "position_i": positions[p][0],
                "modality_j": modality_names[modality[p][1]], "slot_j": slots[p][1], "position_j": positions[p][1],
            }
            for name, (low, high) in intervals.items():
                estimate = pi[name]
                row |= {name: estimate.value[p].item(), f"{name}_se": estimate.se[p].item(),
                        f"{name}_low": low[p].item(), f"{name}_high": high[p].item()}
            row |= {f"{name}_samples": int(estimate.samples[p]) for name, estimate in pi.estimates.items()}
            row |= {f"{name}_refined": bool(estimate.refined[p]) for name, estimate in pi.estimates.items()
                    if estimate.refined is not None}
            rows.append(row | ({"significant": flags[p]} if flags is not None else {}))
    return rows


def probe_metrics(results_by_seed: Sequence[Sequence[ProbeResult]], resamples: int = 1000, seed: int = 0) -> dict:
    """Summary of a probe run over the trained seeds (one list of results per seed, the same examples in the
    same order): examples, seeds, pairs (over seeds), mean candidates, mean evaluations and seconds per
    example and seed, and per probed index <name> (scalars, so that DVC shows each):

        pairs_without_<name>   pairs without an estimate (NaN: a Monte Carlo pair never sampled), over seeds
        mean_abs_<name>        per example and seed the mean |estimate| over its pairs with one, summarised
                               by `faithfulness.seed_example_ci` over seeds and examples: {mean, std (seed
                               spread), low, high, n, seeds}
        significant_share      for SII, the headline index; significant_share_<name> for the others:
                               share of pairs whose 95% t-interval excludes 0 (`significant`) among those
                               with an interval, over seeds (None when there is none)
    """
    results = [r for per_seed in results_by_seed for r in per_seed]
    names = list(results[0].interactions.estimates)
    out = {"examples": len(results_by_seed[0]), "seeds": len(results_by_seed),
           "pairs": sum(len(r.interactions.pairs) for r in results)}
    for name in names:
        out[f"pairs_without_{name}"] = int(sum(r.interactions[name].value.isnan().sum() for r in results))
    out["mean_candidates"] = float(np.mean([len(r.candidates) for r in results]))
    for name in names:
        # An example none of whose pairs has an estimate is a missing cell of the [seeds, examples] table.
        per_example = [[example_mean_abs(r.interactions[name].value) for r in per_seed] for per_seed in results_by_seed]
        out[f"mean_abs_{name}"] = seed_example_ci(np.array(per_example), resamples, seed)
    for name in names:
        pooled = Estimate(*(torch.cat([getattr(r.interactions[name], field) for r in results])
                            for field in ("value", "se", "samples", "df")))
        tested = ~pooled.interval()[0].isnan()
        share = significant(pooled)[tested].double().mean().item() if tested.any() else None
        out["significant_share" if name == "sii" else f"significant_share_{name}"] = share
    return out | {"mean_evaluations": float(np.mean([r.evaluations for r in results])),
                  "mean_seconds": float(np.mean([r.seconds for r in results]))}


def example_mean_abs(values: Tensor) -> float:
    """Mean |estimate| over one example's pairs that have one; NaN (a missing value) when none has."""
    estimated = values[~values.isnan()]
    return estimated.abs().mean().item() if len(estimated) else float("nan")


def interaction_tensors(results: Sequence[ProbeResult]) -> dict[str, Tensor]:
    """The probes as tensors for a safetensors file, for two-modality models; n_a, n_b the most candidates
    of each modality over the examples (smaller examples are padded with NaN and slot -1):

        "<name>", "<name>_se"   per probed index (e.g. "sii", "sii_se", "rg", "rg_se"), float64
                                [N, n_a, n_b]: [b, r, c] is the pair (r-th candidate of modality a, c-th
                                candidate of modality b) of example b
        "<name>_ranking"        the same for an index that `screen_and_refine` refined: its
                                `Estimate.ranking_score`, by which the ablation ranks the pairs
        "slots_a", "slots_b"    int64 [N, n_a], [N, n_b]: the candidates' token slots
        "index"                 int64 [N]: the examples' indices in their split
    """
    names = list(results[0].interactions.estimates)
    matrices = {f"{name}{suffix}": [r.interactions.matrix(name, field) for r in results]
                for name in names for suffix, field in (("", "value"), ("_se", "se"))}
    matrices |= {f"{name}_ranking": [r.interactions.matrix(name, "ranking_score") for r in results]
                 for name in names if results[0].interactions[name].refined is not None}
    n_a = max(m.shape[0] for m in matrices[names[0]])
    n_b = max(m.shape[1] for m in matrices[names[0]])
    out = {}
    for name, values in matrices.items():
        padded = torch.full((len(results), n_a, n_b), float("nan"), dtype=torch.float64)
        for b, m in enumerate(values):
            padded[b, : m.shape[0], : m.shape[1]] = m
        out[name] = padded
    for side, (size, modality_id) in enumerate(((n_a, 0), (n_b, 1))):
        slots = torch.full((len(results), size), -1, dtype=torch.int64)
        for b, r in enumerate(results):
            own = r.candidates[r.interactions.modality == torch.unique(r.interactions.modality)[modality_id]]
            slots[b, : len(own)] = own
        out["slots_" + "ab"[side]] = slots
    out["index"] = torch.tensor([r.index for r in results], dtype=torch.int64)
    return out
