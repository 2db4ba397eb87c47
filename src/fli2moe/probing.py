"""Interaction probes of one model on real examples (docs/design.md section 5, `probe`).

Per example x with target labels (fixed on x) and candidate tokens N = {c_1, ..., c_n} (token slots of
every modality), the game is

    v(S) = score(remove(x, keep_S)),   keep_S[t] = (t not in N) or (t in S)          S subset of N

the target score (`masking.target_score`, quantity "logit" or "prob") of the model when the candidates
outside S are removed by the one masking operator and every other token stays present. The estimators
of `interactions.py` turn v into SII and RG of every cross-modal candidate pair.

Parts:
- `coalition_game`: v for a [B, n] coalition matrix through `masking.masked_scores` (chunked fixed-shape
  batched forward passes: memory bounded by max_batch, bitwise batch-invariant);
- `select_candidates`: the top tokens of each modality by the whole-model attribution;
- `probe_examples`: candidates, game and estimator for many examples, with evaluations and seconds;
- `planted_pair_recovery`, `aggregate_recovery`, `synthetic_recovery`: how well the probes find the
  planted pairs of the synthetic benchmark (docs/design.md section 3);
- `pair_rows`, `probe_metrics`: the per-pair table and summary numbers of the stage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fli2moe.interactions import Game, PairInteractions, exact, montecarlo
from fli2moe.masking import DEFAULT_MAX_ROWS, masked_scores, modality_ids

ESTIMATORS = ("exact", "montecarlo")
PLANTED = {"synergy": "sii", "redundancy": "rg"}  # planted mechanism -> the index that should rank it first
PRECISION_KS = (1, 5)
SIGNIFICANCE_Z = 1.96
# Coalitions handed to the game per call. A call costs the bool keep-masks [B, T] (a few MB at this size)
# while the forward passes stay at max_batch rows; few calls matter because every call of masked_scores
# pays one extra max_batch chunk for the routing weights on the unmasked input.
GAME_CALL_ROWS = 1 << 16


def coalition_game(model, projected: Tensor, mask: Tensor, target: Tensor, candidates, baseline: Tensor,
                   task: str, quantity: str = "logit",
                   max_batch: int = DEFAULT_MAX_ROWS) -> tuple[Game, Tensor]:
    """The game of one example over its candidate tokens, and the candidates' modality ids.

    projected [T, H], mask [T], target [C] bool, candidates [n] distinct real token slots, baseline [T, H].
    Returns (value, modality): value(coalitions bool [B, n]) -> float [B] with
    value[b] = v({c_k : coalitions[b, k]}) as in the module docstring, and modality [n] int64.

    All B coalitions go through one `masked_scores` call: forward passes of exactly max_batch rows, so a
    coalition's value is bitwise the same whichever batch it is evaluated in.
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
        return masked_scores(model, projected, mask, keeps, baseline, target, task, quantity, max_batch).whole

    return value, modality_ids(model)[candidates]


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


def split_degenerate(results: Sequence[ProbeResult], ids: Sequence[str]) -> tuple[list[ProbeResult], list[dict]]:
    """The results with a meaningful game, and {example, id, reason} of the others (ids indexed by the
    example index)."""
    kept = [r for r in results if r.degenerate is None]
    skipped = [{"example": r.index, "id": ids[r.index], "reason": r.degenerate} for r in results if r.degenerate]
    return kept, skipped


def example_seed(seed: int, index: int) -> int:
    """The Monte Carlo seed of example `index`: independent streams per example, reproducible from `seed`
    whatever subset of examples is probed and in which order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def probe_examples(model, projected: Tensor, mask: Tensor, targets: Tensor, maps: Tensor, baseline: Tensor,
                   task: str, candidates_per_modality: int | str, estimator: str = "montecarlo",
                   num_contexts: int = 256, rg_keep: float = 1.0, seed: int = 0, quantity: str = "logit",
                   max_batch: int = DEFAULT_MAX_ROWS, scheme: str = "outside",
                   indices: Sequence[int] | None = None) -> list[ProbeResult]:
    """SII and RG of the cross-modal candidate pairs of N examples, one `ProbeResult` each.

    projected [N, T, H], mask [N, T], targets [N, C] bool, maps [N, T] whole-model attributions (they pick
    the candidates, `select_candidates`), baseline [T, H]. estimator "exact" (2^n evaluations, n <= 16) or
    "montecarlo" (`num_contexts`, `scheme`, seed `example_seed(seed, index)`); rg_keep as in
    `interactions`. `indices` [N] are the examples' indices in their split (default 0..N-1): they are
    recorded and seed the Monte Carlo draws, so an example gets the same estimate in any batch. Each
    result's `degenerate` says when its game has no meaningful interactions (`game_degeneracy`).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"probe estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    indices = list(range(len(projected))) if indices is None else [int(i) for i in indices]
    if len(indices) != len(projected):
        raise ValueError(f"indices: {len(indices)} for {len(projected)} examples")
    starts = torch.tensor([s.start for s in model.modality_slices.values()])  # [M]
    results = []
    for b, index in enumerate(indices):
        candidates = select_candidates(maps[b], mask[b], model.modality_slices, candidates_per_modality)
        game, modality = coalition_game(model, projected[b], mask[b], targets[b], candidates, baseline, task,
                                        quantity, max_batch)
        values = []

        def value(coalitions: Tensor, game=game, values=values) -> Tensor:
            values.append(game(coalitions).cpu())
            return values[-1]

        start = time.perf_counter()
        if estimator == "exact":
            interactions = exact(value, modality, rg_keep, GAME_CALL_ROWS)
        else:
            interactions = montecarlo(value, modality, num_contexts, example_seed(seed, index), rg_keep,
                                      GAME_CALL_ROWS, scheme)
        seconds = time.perf_counter() - start
        results.append(ProbeResult(index, candidates, candidates - starts[modality], interactions, seconds,
                                   game_degeneracy(torch.cat(values))))
    return results


# --- recovery of the planted pairs (synthetic benchmark) ---------------------------------------------

def planted_pair_recovery(positions, sii, rg, synergy, redundancy, ks: Sequence[int] = PRECISION_KS) -> dict:
    """How one example's estimates rank its planted pairs.

    positions [P, 2]: the estimated cross-modal pairs as (position in modality a, position in modality b);
    sii, rg [P]; synergy, redundancy: the planted pairs (pos_a, pos_b). The synergistic pair is ranked by
    SII, the redundant one by RG, both descending. For each `kind` the dict holds:

        {kind}_found           the planted pair is among the estimated pairs (both tokens were candidates)
        {kind}_rank            1 + #{pairs ranked above it}, None when not found. Ties count against it:
                               rank = #{p : score_p >= score_planted}, so a constant estimate ranks last.
                               A NaN estimate (a Monte Carlo pair never sampled) ranks below every number.
        {kind}_precision@k     rank <= k (False when not found): the planted pair is among the top k
        {kind}_sign_correct    score of the planted pair > 0 (synergy: SII > 0; redundancy: RG > 0), None
                               when not found
    and "pairs" = P, for the chance level min(k, P) / P.
    """
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    scores = {"sii": np.asarray(sii, dtype=np.float64), "rg": np.asarray(rg, dtype=np.float64)}
    row = {"pairs": len(positions)}
    for kind, planted in (("synergy", synergy), ("redundancy", redundancy)):
        score = np.nan_to_num(scores[PLANTED[kind]], nan=-np.inf)
        match = (positions == np.asarray(planted, dtype=np.int64)).all(1)
        found = bool(match.any())
        rank = int((score >= score[match][0]).sum()) if found else None
        row[f"{kind}_found"] = found
        row[f"{kind}_rank"] = rank
        row |= {f"{kind}_precision@{k}": found and rank <= k for k in ks}
        row[f"{kind}_sign_correct"] = bool(score[match][0] > 0) if found else None
    return row


def aggregate_recovery(rows: Sequence[dict], ks: Sequence[int] = PRECISION_KS) -> dict:
    """Means over examples of `planted_pair_recovery` rows, per planted kind:

        {kind}_examples, {kind}_missing (planted pair not among the candidates), {kind}_missing_share
        {kind}_mean_rank         over the examples where it was found ({kind}_found of them)
        {kind}_precision@k       over all examples: a missing pair counts as a miss (end-to-end rate)
        {kind}_chance_precision@k  the same for a random ranking: mean of found * min(k, P) / P
        {kind}_sign_accuracy     over the examples where it was found
    plus mean_pairs. Means over no example are None.
    """
    def mean(values) -> float | None:
        return float(np.mean(values)) if len(values) else None

    out = {"mean_pairs": mean([r["pairs"] for r in rows])}
    for kind in PLANTED:
        found = [r for r in rows if r[f"{kind}_found"]]
        out[f"{kind}_examples"] = len(rows)
        out[f"{kind}_found"] = len(found)
        out[f"{kind}_missing"] = len(rows) - len(found)
        out[f"{kind}_missing_share"] = mean([not r[f"{kind}_found"] for r in rows])
        out[f"{kind}_mean_rank"] = mean([r[f"{kind}_rank"] for r in found])
        for k in ks:
            out[f"{kind}_precision@{k}"] = mean([r[f"{kind}_precision@{k}"] for r in rows])
            out[f"{kind}_chance_precision@{k}"] = mean(
                [r[f"{kind}_found"] * min(k, r["pairs"]) / r["pairs"] for r in rows])
        out[f"{kind}_sign_accuracy"] = mean([r[f"{kind}_sign_correct"] for r in found])
    return out


def synthetic_recovery(results: Sequence[ProbeResult], ground_truth: dict,
                       ks: Sequence[int] = PRECISION_KS) -> list[dict]:
    """`planted_pair_recovery` of every probed example against the manifest's `ground_truth[split]`
    ({"synergy": [[pos_a, pos_b], ...], "redundancy": [...], ...}, indexed by the example's index)."""
    rows = []
    for result in results:
        positions = result.positions[result.interactions.pairs]  # [P, 2] (position in a, position in b)
        rows.append({"example": result.index, **planted_pair_recovery(
            positions.numpy(), result.interactions.sii.numpy(), result.interactions.rg.numpy(),
            ground_truth["synergy"][result.index], ground_truth["redundancy"][result.index], ks)})
    return rows


# --- stage summaries ---------------------------------------------------------------------------------

def significant(estimate: Tensor, se: Tensor) -> Tensor:
    """|estimate| > 1.96 SE (bool, False for NaN). Exact estimates have SE 0: every nonzero one counts."""
    return estimate.abs() > SIGNIFICANCE_Z * se


def pair_rows(results: Sequence[ProbeResult], ids: Sequence[str], modality_names: Sequence[str]) -> list[dict]:
    """One row per estimated pair: example index and id, both tokens' modality, slot and position within
    its modality (the lower modality id first), sii, sii_se, rg, rg_se, their sample counts and
    `significant` (|sii| > 1.96 sii_se). ids are indexed by the example index."""
    rows = []
    for result in results:
        pi = result.interactions
        slots, positions, modality = (t[pi.pairs].tolist() for t in (result.candidates, result.positions, pi.modality))
        flags = significant(pi.sii, pi.sii_se).tolist()
        for p in range(len(pi.pairs)):
            rows.append({
                "example": result.index, "id": ids[result.index],
                "modality_i": modality_names[modality[p][0]], "slot_i": slots[p][0], "position_i": positions[p][0],
                "modality_j": modality_names[modality[p][1]], "slot_j": slots[p][1], "position_j": positions[p][1],
                "sii": pi.sii[p].item(), "sii_se": pi.sii_se[p].item(), "rg": pi.rg[p].item(),
                "rg_se": pi.rg_se[p].item(), "sii_samples": int(pi.sii_samples[p]),
                "rg_samples": int(pi.rg_samples[p]), "significant": flags[p],
            })
    return rows


def probe_metrics(results: Sequence[ProbeResult]) -> dict:
    """Summary of a probe run: examples, pairs, mean candidates, mean |SII| and |RG| over the pairs with
    an estimate (NaN only for a Monte Carlo pair never sampled: `pairs_without_sii`, `pairs_without_rg`
    count them), share of pairs with |SII| > 1.96 SE among those with an SII and a finite SE, mean
    evaluations and seconds per example."""
    sii = torch.cat([r.interactions.sii for r in results])
    rg = torch.cat([r.interactions.rg for r in results])
    se = torch.cat([r.interactions.sii_se for r in results])
    tested = ~sii.isnan() & ~se.isnan()
    return {
        "examples": len(results),
        "pairs": len(sii),
        "pairs_without_sii": int(sii.isnan().sum()),
        "pairs_without_rg": int(rg.isnan().sum()),
        "mean_candidates": float(np.mean([len(r.candidates) for r in results])),
        "mean_abs_sii": sii.abs().nanmean().item(),
        "mean_abs_rg": rg.abs().nanmean().item(),
        "significant_share": significant(sii[tested], se[tested]).double().mean().item() if tested.any() else None,
        "mean_evaluations": float(np.mean([r.evaluations for r in results])),
        "mean_seconds": float(np.mean([r.seconds for r in results])),
    }


def interaction_tensors(results: Sequence[ProbeResult]) -> dict[str, Tensor]:
    """The probes as tensors for a safetensors file, for two-modality models; n_a, n_b the most candidates
    of each modality over the examples (smaller examples are padded with NaN and slot -1):

        "sii", "sii_se", "rg", "rg_se"   float64 [N, n_a, n_b]: [b, r, c] is the pair (r-th candidate
                                          of modality a, c-th candidate of modality b) of example b
        "slots_a", "slots_b"             int64 [N, n_a], [N, n_b]: the candidates' token slots
        "index"                          int64 [N]: the examples' indices in their split
    """
    matrices = {name: [r.interactions.matrix(name) for r in results] for name in ("sii", "sii_se", "rg", "rg_se")}
    n_a = max(m.shape[0] for m in matrices["sii"])
    n_b = max(m.shape[1] for m in matrices["sii"])
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
