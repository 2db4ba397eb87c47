"""Interaction probes: coalition engine, candidate selection, probe runs, planted-pair recovery.

Known answers come from `GateModel`, hand-made: its target logit is an AND (or an OR) of tokens being
present, so SII and RG are known in closed form. The real FL-I2MoE (tiny, random weights) checks what
must hold for it: batch invariance, chunking, exact vs Monte Carlo agreement, reproducibility.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from fli2moe.attribution import attribute
from fli2moe.explaining import ExplanationContext
from fli2moe.interactions import Estimate, PairInteractions, cross_pairs, exact
from fli2moe.masking import remove_tokens, target_labels, target_score
from fli2moe.models import FLI2MoEConfig, ModalitySpec, ModelOutput, build_model
from fli2moe.probing import (
    ProbeResult,
    aggregate_recovery,
    check_pair_modalities,
    coalition_game,
    interaction_tensors,
    pair_rows,
    planted_pair_recovery,
    probe_examples,
    probe_metrics,
    recovery_metrics,
    select_candidates,
    significant,
    synthetic_recovery,
)

pytestmark = pytest.mark.usefixtures("one_thread")

MODALITIES = [ModalitySpec("a", dim=5, tokens=4), ModalitySpec("b", dim=4, tokens=5)]
T, H = 9, 8
SLICES = {"a": slice(0, 4), "b": slice(4, 9)}


class GateModel(nn.Module):
    """Target logit = AND (product) or OR (1 - product of absences) of the presence of `gate` tokens.

    A token is present when its projected vector differs from the baseline (zeros here). Logits are
    (g, -1) with g in {0, 1}, so class 0 is the target on the full input; one expert of weight 1.
    """

    def __init__(self, gate: list[int], kind: str):
        super().__init__()
        self.gate, self.kind = gate, kind
        self.modality_slices = SLICES

    def project(self, tokens: dict) -> torch.Tensor:
        return torch.cat([tokens[m] for m in self.modality_slices], 1)

    def concat_mask(self, mask: dict) -> torch.Tensor:
        return torch.cat([mask[m] for m in self.modality_slices], 1)

    def forward(self, projected, mask):
        present = (projected[:, self.gate] != 0).any(-1).to(projected.dtype)  # [B, len(gate)]
        g = present.prod(1) if self.kind == "and" else 1 - (1 - present).prod(1)  # [B]
        expert_logits = torch.stack([g, -torch.ones_like(g)], -1)[:, None]  # [B, 1, 2]
        weights = torch.ones(len(g), 1)
        return ModelOutput(expert_logits[:, 0], expert_logits, expert_logits, weights)


def tiny_model():
    torch.manual_seed(0)
    config = FLI2MoEConfig(modalities=MODALITIES, num_classes=3, hidden=H, layers=2, heads=2, mlp_ratio=2,
                           dropout=0.0, num_experts=4, router_hidden=8)
    return build_model("fl_i2moe", config).eval()


def tiny_inputs(lengths_b=(5, 3, 4), seed=1):
    """projected [B, T, H], mask [B, T] (b padded at the end), baseline [T, H], predicted targets [B, C]."""
    g = torch.Generator().manual_seed(seed)
    projected = torch.randn(len(lengths_b), T, H, generator=g)
    mask = torch.ones(len(lengths_b), T, dtype=torch.bool)
    for i, n in enumerate(lengths_b):
        mask[i, 4 + n:] = False
    return projected, mask, torch.randn(T, H, generator=g)


def predicted(model, projected, mask):
    with torch.no_grad():
        return target_labels(model(projected, mask).logits, "multiclass")


# --- coalition engine --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, sii, rg", [("and", 1.0, -1.0), ("or", -1.0, 1.0)])
def test_gate_model_has_the_known_sii_and_rg(kind, sii, rg):
    # Gate of slot 1 (a), slot 6 (b) and slot 3 (a, not a candidate: it must stay present throughout).
    model = GateModel([1, 6] if kind == "or" else [1, 6, 3], kind)
    projected = torch.randn(T, H).abs() + 0.5  # no entry equals the zero baseline
    mask = torch.ones(T, dtype=torch.bool)
    mask[8] = False
    target = predicted(model, projected[None], mask[None])[0]
    candidates = torch.tensor([0, 1, 2, 4, 5, 6, 7])  # not 3 (non-candidate), not 8 (padding)
    context = ExplanationContext(model, torch.zeros(T, H), "multiclass", "logit", max_batch=16)
    value, modality = coalition_game(context, projected, mask, target, candidates)
    assert modality.tolist() == [0, 0, 0, 1, 1, 1, 1]
    result = exact(value, modality)
    expected = torch.zeros(2, 3, 4, dtype=torch.float64)
    expected[:, 1, 2] = torch.tensor([sii, rg])  # slot 1 is a's 2nd candidate, slot 6 is b's 3rd
    torch.testing.assert_close(result.matrix("sii"), expected[0])
    torch.testing.assert_close(result.matrix("rg"), expected[1])


def test_engine_is_batch_invariant_chunked_and_scores_the_masked_input():
    model = tiny_model()
    projected, mask, baseline = tiny_inputs()
    projected, mask = projected[1], mask[1]  # b has 3 real tokens
    target = predicted(model, projected[None], mask[None])[0]
    candidates = torch.tensor([0, 2, 3, 4, 5, 6])
    max_batch = 8
    value, _ = coalition_game(ExplanationContext(model, baseline, "multiclass", "prob", max_batch), projected, mask,
                              target, candidates)
    coalitions = torch.rand(37, 6, generator=torch.Generator().manual_seed(0)) < 0.5

    rows = []
    hook = model.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    together = value(coalitions)
    hook.remove()
    # Fixed-shape chunks only: no extra pass for routing weights that the game does not use.
    assert rows == [max_batch] * -(-37 // max_batch)
    assert together.std() > 0
    keeps = torch.ones(37, T, dtype=torch.bool)
    keeps[:, candidates] = coalitions
    context = ExplanationContext(model, baseline, "multiclass", "prob", max_batch)
    assert torch.equal(together, context.scores(projected, mask, keeps, target).whole)
    for k in range(len(coalitions)):
        assert torch.equal(value(coalitions[k:k + 1]), together[k:k + 1])

    # The value of a coalition is the score of the input with its absent candidates removed.
    keep = torch.ones(T, dtype=torch.bool)
    keep[candidates[~coalitions[5]]] = False
    with torch.no_grad():
        out = model(remove_tokens(projected, keep, baseline)[None], mask[None])
    torch.testing.assert_close(together[5], target_score(out.logits, target[None], "multiclass", "prob")[0])


def test_engine_rejects_padded_or_repeated_candidates():
    model = tiny_model()
    projected, mask, baseline = tiny_inputs()
    target = predicted(model, projected, mask)
    with pytest.raises(ValueError, match="padding"):
        coalition_game(ExplanationContext(model, baseline, "multiclass", "logit"), projected[1], mask[1], target[1], [0, 8])
    with pytest.raises(ValueError, match="distinct"):
        coalition_game(ExplanationContext(model, baseline, "multiclass", "logit"), projected[1], mask[1], target[1],
                       [0, 0, 4])


# --- candidate selection -----------------------------------------------------------------------------

def test_select_candidates_takes_the_top_real_tokens_per_modality():
    #                        a: 0    1    2    3  | b: 4    5    6    7    8 (padded)
    whole = torch.tensor([0.1, 0.5, 0.5, 0.2, 0.3, 0.0, 0.7, 0.3, 9.0])
    mask = torch.tensor([True] * 8 + [False])
    assert select_candidates(whole, mask, SLICES, 1).tolist() == [1, 6]  # tie 1/2 -> 1; 8 is padding
    assert select_candidates(whole, mask, SLICES, 2).tolist() == [1, 2, 4, 6]  # tie 4/7 -> 4
    assert select_candidates(whole, mask, SLICES, "all").tolist() == list(range(8))
    assert select_candidates(whole, mask, SLICES, 10).tolist() == list(range(8))
    with pytest.raises(ValueError):
        select_candidates(whole, mask, SLICES, 0)


# --- recovery metrics --------------------------------------------------------------------------------

POSITIONS = [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]]


def test_planted_pair_recovery_on_hand_made_estimates():
    sii = [0.1, 0.2, 0.9, -0.3, 1.5, float("nan")]  # planted synergy (1, 0): 2nd
    rg = [0.4, -0.2, 0.0, 0.1, 0.0, 0.3]  # planted redundancy (2, 0): 0.0, tied with (1, 0) -> rank 5
    row = planted_pair_recovery(POSITIONS, {"synergy": sii, "redundancy": rg}, {"synergy": [1, 0], "redundancy": [2, 0]})
    assert row == {"pairs": 6,
                   "synergy_found": True, "synergy_rank": 2, "synergy_precision@1": False,
                   "synergy_precision@5": True, "synergy_sign_correct": True,
                   "redundancy_found": True, "redundancy_rank": 5, "redundancy_precision@1": False,
                   "redundancy_precision@5": True, "redundancy_sign_correct": False}
    # An unsampled (NaN) planted pair ranks last; a planted pair outside the candidates is missing.
    row = planted_pair_recovery(POSITIONS, {"synergy": sii, "redundancy": rg}, {"synergy": [2, 1], "redundancy": [3, 0]})
    assert row["synergy_rank"] == 6 and row["synergy_sign_correct"] is False
    assert not row["redundancy_found"] and row["redundancy_rank"] is None
    assert row["redundancy_sign_correct"] is None and not row["redundancy_precision@5"]


def test_aggregate_recovery_counts_missing_pairs_as_misses():
    sii = [0.1, 0.2, 0.9, -0.3, 1.5, 0.0]
    rg = [0.4, -0.2, 0.0, 0.1, 0.0, 0.3]
    rows = [planted_pair_recovery(POSITIONS, {"synergy": sii, "redundancy": rg}, {"synergy": [2, 0], "redundancy": [0, 0]}),  # synergy rank 1, redundancy rank 1
            planted_pair_recovery(POSITIONS, {"synergy": sii, "redundancy": rg}, {"synergy": [1, 1], "redundancy": [2, 1]}),  # synergy rank 6 (SII < 0), rg rank 2
            planted_pair_recovery(POSITIONS, {"synergy": sii, "redundancy": rg}, {"synergy": [5, 5], "redundancy": [5, 5]})]  # both missing
    agg = aggregate_recovery([rows])
    assert agg["synergy_examples"] == 3 and agg["synergy_missing"] == 1 and agg["synergy_found"] == 2
    assert agg["synergy_missing_share"] == pytest.approx(1 / 3)
    assert agg["synergy_mean_rank"] == pytest.approx(3.5)
    assert agg["synergy_precision@1"]["mean"] == pytest.approx(1 / 3)
    assert agg["synergy_precision@5"]["mean"] == pytest.approx(1 / 3)
    assert agg["synergy_sign_accuracy"] == pytest.approx(0.5)
    assert agg["synergy_chance_precision@1"] == pytest.approx(2 / 3 / 6)
    assert agg["redundancy_mean_rank"] == pytest.approx(1.5)
    assert agg["redundancy_precision@5"]["mean"] == pytest.approx(2 / 3)
    assert agg["redundancy_sign_accuracy"] == pytest.approx(1.0)
    assert aggregate_recovery([[planted_pair_recovery(POSITIONS, {"synergy": sii, "redundancy": rg}, {"synergy": [5, 5], "redundancy": [5, 5]})]])["synergy_mean_rank"] is None


def test_a_miss_within_the_estimators_noise_is_told_apart_from_a_clear_one():
    sii = np.array([0.1, 0.2, 0.9, -0.3, 1.5, 0.0])  # the top pair is (2, 0) at 1.5; (1, 0) is second at 0.9
    planted = {"synergy": [1, 0]}
    wide, narrow = np.full(6, 0.3), np.full(6, 0.1)  # the gap 0.6 against 1.96 sqrt(2) se: 0.83 and 0.28
    assert planted_pair_recovery(POSITIONS, {"synergy": sii}, planted, errors={"synergy": wide})["synergy_within_noise"]
    assert not planted_pair_recovery(POSITIONS, {"synergy": sii}, planted,
                                     errors={"synergy": narrow})["synergy_within_noise"]
    assert planted_pair_recovery(POSITIONS, {"synergy": sii}, {"synergy": [2, 0]},
                                 errors={"synergy": wide})["synergy_within_noise"] is None  # ranked first
    assert "synergy_within_noise" not in planted_pair_recovery(POSITIONS, {"synergy": sii}, planted)
    rows = [planted_pair_recovery(POSITIONS, {"synergy": sii}, p, errors={"synergy": e})
            for p, e in ((planted, wide), (planted, narrow), ({"synergy": [2, 0]}, wide))]
    assert aggregate_recovery([rows], kinds=("synergy",))["synergy_misses_within_noise"] == 0.5


def test_aggregate_recovery_over_seeds_gives_each_seed_its_rate_and_the_spread():
    sii, rg = [0.1, 0.2, 0.9, -0.3, 1.5, 0.0], [0.4, -0.2, 0.0, 0.1, 0.0, 0.3]
    hit = planted_pair_recovery(POSITIONS, {"synergy": sii, "redundancy": rg}, {"synergy": [2, 0], "redundancy": [0, 0]})
    miss = planted_pair_recovery(POSITIONS, {"synergy": sii, "redundancy": rg}, {"synergy": [1, 1], "redundancy": [2, 1]})
    agg = aggregate_recovery([[hit, miss, miss], [hit, hit, hit]], seeds=[3, 7])
    p1 = agg["synergy_precision@1"]
    assert (p1["seed_3"], p1["seed_7"]) == (pytest.approx(1 / 3), 1.0)
    assert p1["mean"] == pytest.approx(2 / 3) and p1["std"] == pytest.approx((2 / 3) / 2 ** 0.5)
    assert (p1["seeds"], p1["n"]) == (2, 3) and p1["low"] < p1["mean"] < p1["high"]
    assert agg["synergy_examples"] == 3 and agg["synergy_found"] == 3.0
    assert agg["synergy_mean_rank"] == pytest.approx((4 * 1 + 2 * 6) / 6)  # pooled over seeds and examples


# --- probing real examples ---------------------------------------------------------------------------

@pytest.fixture
def probed(one_thread):  # function scope: a module-scoped fixture would run before one_thread
    """Three tiny examples, the first duplicated as the last: exact and two Monte Carlo runs."""
    model = tiny_model()
    projected, mask, baseline = tiny_inputs((5, 3, 4))
    projected, mask = torch.cat([projected, projected[:1]]), torch.cat([mask, mask[:1]])
    targets = predicted(model, projected, mask)
    maps = attribute(model, projected, mask, targets).whole
    args = (ExplanationContext(model, baseline, "multiclass", "logit", max_batch=64), projected, mask, targets, maps)
    run = dict(candidates_per_modality=3, evaluations=2**6, rg_keep=0.5, indices=("sii", "rg", "bii"))
    return dict(exact=probe_examples(*args, estimator="exact", **run),
                mc=probe_examples(*args, estimator="montecarlo", seed=7, **run),
                again=probe_examples(*args, estimator="montecarlo", seed=7, **run),
                parallel=probe_examples(*args, estimator="montecarlo", seed=7, workers=2, **run),
                other=probe_examples(*args, estimator="montecarlo", seed=8, **run), maps=maps, mask=mask)


def test_exact_and_montecarlo_agree_within_four_standard_errors(probed):
    for ex, mc, map_, mask in zip(probed["exact"], probed["mc"], probed["maps"], probed["mask"]):
        assert torch.equal(ex.candidates, select_candidates(map_, mask, SLICES, 3))
        assert torch.equal(ex.candidates, mc.candidates)
        assert torch.equal(ex.positions, ex.candidates - torch.where(ex.candidates >= 4, 4, 0))
        a, b = ex.interactions, mc.interactions
        assert torch.equal(a.pairs, b.pairs) and len(a.pairs) == 3 * 3
        assert a["sii"].value.abs().max() > 1e-3
        for index in ("sii", "rg", "bii"):
            assert (b[index].se > 0).all()
            assert ((b[index].value - a[index].value).abs() <= 4 * b[index].se + 1e-6).all(), index
        # rg_keep = 1/2: RG and BII weigh the same contexts with opposite signs.
        torch.testing.assert_close(a["rg"].value, -a["bii"].value, atol=1e-12, rtol=0)
        assert ex.evaluations == 2**6 and ex.seconds > 0


def test_same_seed_same_result_and_examples_draw_their_own_contexts(probed):
    for mc, again, other in zip(probed["mc"], probed["again"], probed["other"]):
        assert torch.equal(mc.interactions["sii"].value, again.interactions["sii"].value)
        assert torch.equal(mc.interactions["rg"].se, again.interactions["rg"].se)
        assert not torch.equal(mc.interactions["sii"].value, other.interactions["sii"].value)
    # Two single-threaded worker processes give every example bitwise the same result, in the same order.
    for mc, parallel in zip(probed["mc"], probed["parallel"], strict=True):
        assert parallel.index == mc.index and torch.equal(parallel.candidates, mc.candidates)
        assert parallel.evaluations == mc.evaluations and parallel.seconds > 0
        for name, estimate in mc.interactions.estimates.items():
            for field in ("value", "se", "samples", "df"):
                assert torch.equal(getattr(parallel.interactions[name], field), getattr(estimate, field)), (name, field)
    first, duplicate = probed["mc"][0], probed["mc"][3]  # the same input at two example indices
    assert torch.equal(probed["exact"][0].interactions["sii"].value, probed["exact"][3].interactions["sii"].value)
    assert not torch.equal(first.interactions["sii"].value, duplicate.interactions["sii"].value)


@pytest.mark.parametrize("change, message", [
    (dict(estimator="sampling"), "probe estimator must be one of"),
    (dict(workers=0), "workers must be >= 1, got 0"),
    (dict(example_index=[0, 1]), "example_index: 2 for 3 examples"),
    (dict(evaluations=20), "example 0: a budget of 20 evaluations"),
])
def test_probe_examples_refuses_bad_arguments_before_any_evaluation(change, message):
    model = tiny_model()
    projected, mask, baseline = tiny_inputs((5, 3, 4))
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    targets = torch.zeros(3, 3, dtype=torch.bool)
    args = (ExplanationContext(model, baseline, "multiclass", "logit"), projected, mask, targets, torch.rand(3, T))
    with pytest.raises(ValueError, match=message):
        probe_examples(*args, **dict(candidates_per_modality=3, estimator="montecarlo", evaluations=64) | change)
    assert calls == []


def test_pair_rows_metrics_and_synthetic_recovery(probed):
    results = probed["mc"]
    rows = pair_rows(results, ids=["x0", "x1", "x2", "x3"], modality_names=["a", "b"])
    assert len(rows) == 4 * 9
    first = results[0]
    pair = first.interactions.pairs[0]
    assert rows[0]["id"] == "x0" and rows[0]["modality_i"] == "a" and rows[0]["modality_j"] == "b"
    assert rows[0]["slot_i"] == first.candidates[pair[0]] and rows[0]["position_j"] == first.positions[pair[1]]
    assert rows[0]["sii"] == first.interactions["sii"].value[0].item()
    # Significant: the Student-t interval on the SE's own df excludes 0; it is wider than 1.96 SE.
    assert all(r["significant"] == (r["sii_low"] > 0 or r["sii_high"] < 0) for r in rows)
    sii = first.interactions["sii"]
    half = stats.t.ppf(0.975, sii.df[0].item()) * sii.se[0].item()
    assert rows[0]["sii_high"] - rows[0]["sii"] == pytest.approx(half) and half > 1.96 * rows[0]["sii_se"]
    assert [k for k in rows[0] if k.startswith(("sii", "rg", "bii"))] == [
        "sii", "sii_se", "sii_low", "sii_high", "rg", "rg_se", "rg_low", "rg_high", "bii", "bii_se", "bii_low",
        "bii_high", "sii_samples", "rg_samples", "bii_samples"]
    metrics = probe_metrics([results])
    assert metrics["pairs"] == 36 and metrics["examples"] == 4
    assert metrics["mean_abs_bii"]["mean"] == pytest.approx(sum(abs(r["bii"]) for r in rows) / 36)
    assert metrics["significant_share_bii"] == pytest.approx(
        sum(r["bii_low"] > 0 or r["bii_high"] < 0 for r in rows) / 36)
    assert "significant_share_sii" not in metrics
    assert metrics["significant_share"] == pytest.approx(sum(r["significant"] for r in rows) / 36)
    assert metrics["mean_abs_sii"]["mean"] == pytest.approx(sum(abs(r["sii"]) for r in rows) / 36)

    # Plant, in example 1, the top-SII pair as the synergy and the lowest-RG pair as the redundancy.
    ex = probed["exact"][1]
    positions = ex.positions[ex.interactions.pairs]
    truth = {"synergy": [[9, 9]] * 4, "redundancy": [[9, 9]] * 4}
    truth["synergy"][1] = positions[ex.interactions["sii"].value.argmax()].tolist()
    truth["redundancy"][1] = positions[ex.interactions["rg"].value.argmin()].tolist()
    rows = synthetic_recovery(probed["exact"], truth)
    assert [r["example"] for r in rows] == [0, 1, 2, 3]
    assert rows[1]["synergy_rank"] == 1 and rows[1]["redundancy_rank"] == 9
    assert not rows[0]["synergy_found"]
    # BII, an extra index, ranks the planted pair of the kind its positive values mean (synergy).
    recovery = recovery_metrics([probed["exact"]], truth, ("sii", "rg", "bii"), seeds=[0])
    assert set(recovery) == {"recovery", "recovery_bii"}
    assert recovery["recovery"]["synergy_found"] == 1 and "redundancy_examples" not in recovery["recovery_bii"]
    bii_rank = int((ex.interactions["bii"].value >= ex.interactions["bii"].value[ex.interactions["sii"].value.argmax()]).sum())
    assert recovery["recovery_bii"]["synergy_mean_rank"] == bii_rank


def test_screen_and_refine_probes_rank_their_refined_pairs_first_everywhere(one_thread):
    model = tiny_model()
    projected, mask, baseline = tiny_inputs((5, 3, 4))
    targets = predicted(model, projected, mask)
    maps = attribute(model, projected, mask, targets).whole
    args = (ExplanationContext(model, baseline, "multiclass", "logit", max_batch=64), projected, mask, targets, maps)
    truth = probe_examples(*args, candidates_per_modality=3, estimator="exact")
    results = probe_examples(*args, candidates_per_modality=3, estimator="screen_and_refine", evaluations=128,
                             contenders=2, seed=7)  # 9 cross pairs: at most 2 refined
    for ex, sr in zip(truth, results):
        sii = sr.interactions["sii"]
        assert int(sii.refined.sum()) == 2 and sr.interactions["rg"].refined is None  # RG at rg_keep 1 is exact
        error = (sii.value - ex.interactions["sii"].value).abs()
        assert (error <= 4 * sii.se + 1e-6)[sii.refined].all() and sii.se[~sii.refined].isnan().all()
        order = torch.nan_to_num(sii.ranking_score(), nan=-torch.inf).argsort(descending=True)
        assert sii.refined[order[:2]].all()
    rows = pair_rows(results, ids=["x0", "x1", "x2"], modality_names=["a", "b"])
    assert sum(r["sii_refined"] for r in rows) == 6 and "rg_refined" not in rows[0]
    tensors = interaction_tensors(results)
    assert set(tensors) >= {"sii", "sii_ranking", "rg"} and "rg_ranking" not in tensors
    torch.testing.assert_close(tensors["sii_ranking"][0], results[0].interactions.matrix("sii", "ranking_score"))
    # The planted synergy is the surrogate's best unrefined pair: it ranks after the 2 refined ones (3rd, or
    # later when the Lasso left other unrefined pairs at the same value: ties rank pessimistically), even
    # when its surrogate value is above theirs.
    first = results[0].interactions
    unrefined = torch.where(~first["sii"].refined)[0]
    best = unrefined[first["sii"].value[unrefined].argmax()]
    planted = results[0].positions[first.pairs[best]].tolist()
    rows = synthetic_recovery(results[:1], {"synergy": [planted], "redundancy": [[9, 9]]})
    assert rows[0]["synergy_rank"] == 2 + int((first["sii"].value[unrefined] >= first["sii"].value[best]).sum())


def test_a_pair_without_an_interval_is_never_significant():
    # A Monte Carlo pair sampled once has a NaN SE: no interval, and not significant however large it is.
    nan, inf = float("nan"), float("inf")
    estimate = Estimate(value=torch.tensor([5.0, 5.0, 0.0, 0.3], dtype=torch.float64),
                        se=torch.tensor([nan, 0.1, 0.0, 0.0], dtype=torch.float64),
                        samples=torch.tensor([1, 2, 1, 3]), df=torch.tensor([nan, 1.0, inf, 2.0], dtype=torch.float64))
    low, high = estimate.interval()
    assert low[0].isnan() and high[0].isnan()
    # df 1: t_{1, 0.975} = 12.71, so 5 +- 1.27 excludes 0; SE 0 gives a zero-width interval.
    assert low[1].item() == pytest.approx(5 - 1.2706, abs=1e-4) and low[3] == high[3] == 0.3
    assert significant(estimate).tolist() == [False, True, False, True]
    assert probe_metrics_share(estimate) == pytest.approx(2 / 3)


def probe_metrics_share(estimate):
    """significant_share of `probe_metrics` for one example whose only index is SII."""
    modality = torch.tensor([0, 0, 1, 1])
    result = ProbeResult(0, torch.arange(4), torch.tensor([0, 1, 0, 1]),
                         PairInteractions(cross_pairs(modality), {"sii": estimate}, 4, modality), 0.1)
    return probe_metrics([[result]])["significant_share"]


def test_interaction_tensors_hold_each_example_matrix_with_padding():
    def game(weights):
        return lambda coalitions: coalitions.double() @ weights + coalitions[:, 0].double() * coalitions[:, -1].double()

    results = []
    for b, (n_a, n_b) in enumerate(((2, 3), (1, 2))):
        modality = torch.tensor([0] * n_a + [1] * n_b)
        pi = exact(game(torch.arange(n_a + n_b, dtype=torch.float64)), modality)
        candidates = torch.cat([torch.arange(n_a), 10 + torch.arange(n_b)])
        results.append(ProbeResult(b, candidates, candidates, pi, 0.0))
    tensors = interaction_tensors(results)
    assert tensors["sii"].shape == (2, 2, 3)
    # The only interaction is the AND of the first candidate of a and the last of b.
    assert tensors["sii"][0].tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert tensors["sii"][1, 0].tolist()[:2] == [0.0, 1.0] and torch.isnan(tensors["sii"][1, 1]).all()
    assert tensors["slots_a"].tolist() == [[0, 1], [0, -1]]
    assert tensors["slots_b"].tolist() == [[10, 11, 12], [10, 11, -1]]
    assert tensors["index"].tolist() == [0, 1]


def test_probes_refuse_a_feature_set_without_exactly_two_modalities():
    manifest = {"dataset": "mmhs150k", "modalities": [{"name": "tweet"}, {"name": "image"}, {"name": "image_text"}]}
    with pytest.raises(ValueError, match=r"has 3: tweet, image, image_text \(for mmhs150k, set data.mmhs150k.ocr"):
        check_pair_modalities(manifest)
    check_pair_modalities({"dataset": "enrico", "modalities": [{"name": "screenshot"}, {"name": "wireframe"}]})
