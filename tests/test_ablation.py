"""Pair-level masking ablation: keep-masks, matching, seeding, known drops and the paired statistics.

Known answers come from `PairModel`, hand-made: its target depends only on one cross-modal pair being
present (an AND), so removing that pair moves the target probability to its floor and a random pair
does so exactly when it touches the pair, with a probability known in closed form.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import wilcoxon
from torch import nn

from fli2moe.ablation import (
    SELECTIONS,
    ablation_summary,
    ablation_table,
    budget_key,
    cohens_dz,
    example_masks,
    pair_ablation,
    paired_comparison,
    plot_rows,
    rank_biserial,
    random_token_sets,
    ranked_pairs,
    selection_rows,
    sign_flip_pvalue,
    summary_budgets,
    wilcoxon_greater,
)
from fli2moe.explaining import ExplanationContext
from fli2moe.masking import masked_scores, target_labels, target_score
from fli2moe.models import FLI2MoEConfig, ModalitySpec, ModelOutput, build_model
from fli2moe.probing import interaction_tensors, probe_examples
from conftest import assert_scalar_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
RANKINGS = ("sii", "rg")  # the indices `pair_inputs` probes, in registry order

SLICES = {"a": slice(0, 6), "b": slice(6, 12)}
T, H = 12, 4
GATE = (1, 8)  # the synergistic pair: slot 1 of a, slot 8 of b


class PairModel(nn.Module):
    """Logits (5 AND(slot 1 present, slot 8 present) - 1, 0): class 0 on the full input, where
    p = sigmoid(4); with either token removed (= equal to the zero baseline) the logits are (-1, 0) and
    p(class 0) = sigmoid(-1), its floor. One expert of weight 1."""

    def __init__(self):
        super().__init__()
        self.modality_slices = SLICES

    def forward(self, projected, mask):
        present = (projected[:, list(GATE)] != 0).any(-1).to(projected.dtype)  # [B, 2]
        first = 5 * present.prod(1) - 1  # [B]
        logits = torch.stack([first, torch.zeros_like(first)], -1)  # [B, 2]
        return ModelOutput(logits, logits[:, None], logits[:, None], torch.ones(len(logits), 1))


FULL, FLOOR = 1 / (1 + math.exp(-4)), 1 / (1 + math.exp(1))


def pair_inputs(n: int, seed: int = 0):
    """n examples for PairModel with candidates a: slots 0-2, b: slots 7-9 (slot 9 padded in odd
    examples, so b has only 2 candidates there), SII ranking the gate pair first and RG a pair away
    from it ((slot 0, slot 7)) first; the other scores uniform in (-1, 0.5)."""
    g = torch.Generator().manual_seed(seed)
    projected = torch.rand(n, T, H, generator=g) + 0.5  # no entry equals the zero baseline
    mask = torch.ones(n, T, dtype=torch.bool)
    mask[1::2, 9] = False
    slots_a = torch.tensor([0, 1, 2]).expand(n, 3).clone()
    slots_b = torch.tensor([7, 8, 9]).expand(n, 3).clone()
    slots_b[1::2, 2] = -1
    sii, rg = (torch.rand(n, 3, 3, generator=g, dtype=torch.float64) * 1.5 - 1 for _ in range(2))
    sii[:, 1, 1] = rg[:, 0, 0] = 1.0
    for m in (sii, rg):
        m[1::2, :, 2] = float("nan")  # padding
    probe = {"sii": sii, "rg": rg, "slots_a": slots_a, "slots_b": slots_b, "index": torch.arange(n) + 100}
    return projected, mask, probe


def run(n=40, budgets=(1,), repeats=20, seed=0):
    projected, mask, probe = pair_inputs(n)
    model = PairModel()
    target = target_labels(model(projected, mask).logits, "multiclass")
    context = ExplanationContext(model, torch.zeros(T, H), "multiclass", "prob", max_batch=64)
    return pair_ablation(context, projected, mask, target, probe, budgets=budgets, random_repeats=repeats, seed=seed)


def removed(keeps: np.ndarray, mask: np.ndarray) -> list[set]:
    """Removed real slots of each keep-mask row: keeps [..., T] -> flat list of sets."""
    return [set(np.flatnonzero(mask & ~k).tolist()) for k in keeps.reshape(-1, keeps.shape[-1])]


# --- known drops -------------------------------------------------------------------------------------

def test_removing_the_top_sii_pair_drops_the_probability_to_its_floor_and_random_pairs_rarely_do():
    ablation = run()
    assert np.allclose(ablation.score, FULL)
    rows = selection_rows(ablation.repeats)
    sii, rg = ablation.drop[:, 0, 0], ablation.drop[:, 0, 1]  # [N, 1 + 2R]
    np.testing.assert_allclose(sii[:, 0], FULL - FLOOR)  # every example, fully
    np.testing.assert_allclose(rg[:, 0], 0.0, atol=1e-7)  # the RG top pair does not touch the gate
    # A random matched set (1 token of a, 1 of b) hits the gate with probability 1 - (1 - 1/n_a)(1 - 1/n_b):
    # candidates: n_a = 3 and n_b = 3 or 2 (half the examples); all tokens: n_a = 6 and n_b = 6 or 5.
    hit_candidates = np.mean([1 - (2 / 3) * (2 / 3), 1 - (2 / 3) * (1 / 2)])
    hit_all = np.mean([1 - (5 / 6) * (5 / 6), 1 - (5 / 6) * (4 / 5)])
    for selection, hit in ((1, hit_candidates), (2, hit_all)):
        random = sii[:, rows[selection]]
        assert np.isin(np.round(random / (FULL - FLOOR), 6), [0, 1]).all()  # a random set hits or misses
        assert abs(random.mean() / (FULL - FLOOR) - hit) < 0.07  # 800 draws: 3 standard errors
    assert sii[:, rows[2]].mean() < 0.5 * sii[:, 0].mean()


def test_summary_table_and_plot_rows_report_the_known_ablation():
    ablation = run(budgets=(1, 20), repeats=5)
    labels = np.zeros(len(ablation.index), dtype=np.int64)  # class 0, predicted on every full input
    summary = ablation_summary([ablation], labels, "multiclass", permutations=2000, resamples=200)
    assert summary["unmasked"]["accuracy"] == 1.0
    assert_scalar_metrics(summary)
    assert set(summary) == {"unmasked", "budget_1", "budget_20"}
    row = {(b, r, s): summary[f"budget_{b}"][r][s] for b in (1, 20) for r in RANKINGS for s in SELECTIONS}
    assert all(set(summary[f"budget_{b}"][r]) == {*SELECTIONS, "vs_random_candidates", "vs_random_all"}
               for b in (1, 20) for r in RANKINGS)
    assert row[1, "sii", "ranked"]["accuracy"] == 0.0  # removing the gate flips every prediction
    assert row[1, "rg", "ranked"]["accuracy"] == 1.0
    assert row[1, "sii", "ranked"]["drop"] == pytest.approx(FULL - FLOOR)
    assert row[1, "sii", "ranked"]["clipped"] == 0 and row[20, "sii", "ranked"]["clipped"] == 40
    assert row[20, "sii", "ranked"]["mean_pairs"] == 7.5  # 9 or 6 candidate pairs
    assert all(r["unmatched"] == 0 for r in row.values())
    compare = summary["budget_1"]["sii"]["vs_random_all"]
    assert compare["permutation_p"] < 0.001 and compare["wilcoxon_p"] < 0.001 and compare["n"] == 40
    compare = summary["budget_1"]["rg"]["vs_random_all"]
    assert compare["difference"] < 0  # random pairs hit the gate, the RG top pair never
    assert compare["permutation_p"] > 0.5
    table = ablation_table(ablation)
    assert len(table["drop"]) == 40 * 2 * len(RANKINGS) * len(SELECTIONS)
    assert set(table["example"].tolist()) == set(range(100, 140))
    first = (table["budget"] == 1) & (table["ranking"] == "sii") & (table["selection"] == "ranked")
    np.testing.assert_allclose(table["drop"][first], FULL - FLOOR)
    assert (table["tokens"][first] == 2).all() and table["matched"].all()
    assert table["clipped"][table["budget"] == 20].all() and not table["clipped"][table["budget"] == 1].any()

    plots = plot_rows(summary)
    assert plots[0] == {"budget": 1, "series": "sii/ranked", "drop": row[1, "sii", "ranked"]["drop"],
                        "low": row[1, "sii", "ranked"]["low"], "high": row[1, "sii", "ranked"]["high"]}
    assert [(p["budget"], p["series"]) for p in plots] == [(b, f"{r}/{s}") for b in (1, 20) for r in RANKINGS
                                                           for s in SELECTIONS]


def test_summary_over_seeds_averages_the_seeds_and_gives_their_spread():
    first = run(n=10, repeats=2)
    # A second seed whose ranked pairs drop 0.1 more on every example, its random pairs as the first's.
    drop = first.drop.copy()
    drop[..., 0] += 0.1
    second = dataclasses.replace(first, drop=drop)
    one = ablation_summary([first], np.zeros(10, dtype=np.int64), "multiclass", permutations=50, resamples=20)
    two = ablation_summary([first, second], np.zeros(10, dtype=np.int64), "multiclass", permutations=50, resamples=20)
    ranked, compare = two["budget_1"]["sii"]["ranked"], two["budget_1"]["sii"]["vs_random_candidates"]
    base = one["budget_1"]["sii"]["vs_random_candidates"]["difference"]
    assert (ranked["seeds"], compare["seeds"], compare["n"]) == (2, 2, 10)
    assert ranked["drop"] == pytest.approx(one["budget_1"]["sii"]["ranked"]["drop"] + 0.05)
    assert compare["difference"] == pytest.approx(base + 0.05)
    assert compare["std"] == pytest.approx(0.1 / math.sqrt(2))  # two per-seed means 0.1 apart
    assert compare["low"] < compare["difference"] < compare["high"]
    assert two["budget_1"]["sii"]["random_candidates"]["std"] == 0.0  # the seeds' random drops are equal
    with pytest.raises(ValueError, match="differ"):
        ablation_summary([first, run(n=9, repeats=2)], np.zeros(10, dtype=np.int64), "multiclass")


def test_summary_keys_budgets_by_value_and_refuses_a_repeated_budget():
    ablation = run(n=6, budgets=(10, 2), repeats=2)
    summary = ablation_summary([ablation], np.zeros(6, dtype=np.int64), "multiclass", permutations=50, resamples=20)
    keys = json.loads(json.dumps(summary, sort_keys=True))  # as the metrics file holds them: sorted as strings
    assert list(keys)[:2] == ["budget_10", "budget_2"] and summary_budgets(keys) == [2, 10]
    assert budget_key(2) == "budget_2" and [p["budget"] for p in plot_rows(keys)][::6] == [2, 10]
    with pytest.raises(ValueError, match="distinct"):
        run(n=2, budgets=(1, 1), repeats=2)


def tiny_model_and_inputs():
    """A real FL-I2MoE (random weights; a: 4 slots, b: 5) and 3 examples, b padded in the second."""
    torch.manual_seed(0)
    config = FLI2MoEConfig(modalities=[ModalitySpec("a", dim=5, tokens=4), ModalitySpec("b", dim=4, tokens=5)],
                           num_classes=3, hidden=8, layers=1, heads=2, mlp_ratio=2, dropout=0.0, num_experts=4,
                           router_hidden=8)
    model = build_model("fl_i2moe", config).eval()
    g = torch.Generator().manual_seed(1)
    projected, baseline = torch.randn(3, 9, 8, generator=g), torch.randn(9, 8, generator=g)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 7:] = False
    return model, projected, mask, baseline, target_labels(model(projected, mask).logits, "multiclass")


def test_masked_logits_give_the_scores_of_masked_scores():
    model, projected, mask, baseline, target = tiny_model_and_inputs()
    keeps = torch.rand(3, 11, 9, generator=torch.Generator().manual_seed(2)) < 0.6
    logits = ExplanationContext(model, baseline, "multiclass", "prob", max_batch=8).logits(projected, mask, keeps)
    expected = masked_scores(model, projected, mask, keeps, baseline, target, "multiclass", "prob", 8).whole
    assert torch.equal(target_score(logits, target[:, None], "multiclass", "prob"), expected)


def test_ablation_of_a_real_model_reads_the_probe_output_and_gives_json_ready_metrics():
    model, projected, mask, baseline, target = tiny_model_and_inputs()
    maps = torch.zeros(3, 9)  # "all" candidates: the map does not matter
    results = probe_examples(ExplanationContext(model, baseline, "multiclass", "logit", max_batch=64), projected,
                             mask, target, maps, candidates_per_modality="all", estimator="exact",
                             example_index=[5, 6, 7])
    probe = interaction_tensors(results)  # example 6 has 3 candidates of b: padded
    ablation = pair_ablation(ExplanationContext(model, baseline, "multiclass", "prob", max_batch=64), projected, mask,
                             target, probe, budgets=[1, 3, 50], random_repeats=4, seed=0)
    assert ablation.available.tolist() == [20, 12, 20] and ablation.pairs[:, 2].tolist() == [20, 12, 20]
    assert ablation.matched.all() and np.isfinite(ablation.drop).all()
    # Budget 50 removes every candidate, so every real token: ranked and random sets are the same.
    np.testing.assert_allclose(ablation.drop[:, 2], ablation.drop[:, 2, :, :1].repeat(9, -1), atol=1e-6)
    summary = ablation_summary([ablation], np.array([0, 1, 2]), "multiclass", permutations=100, resamples=50)
    json.dumps(summary, allow_nan=False)  # the metrics file refuses NaN
    assert_scalar_metrics(summary)
    assert summary["budget_50"]["rg"]["random_all"]["mean_pairs"] == pytest.approx(52 / 3)


def test_a_refined_probe_is_ablated_in_its_ranking_order_not_its_value_order():
    model, projected, mask, baseline, target = tiny_model_and_inputs()
    context = ExplanationContext(model, baseline, "multiclass", "prob", max_batch=64)
    results = probe_examples(context, projected, mask, target, torch.zeros(3, 9), candidates_per_modality="all",
                             estimator="exact", example_index=[5, 6, 7])
    probe = interaction_tensors(results)
    reversed_order = probe | {"sii_ranking": -probe["sii"]}  # as if the refinement had ranked them upside down
    by_ranking = pair_ablation(context, projected, mask, target, reversed_order, budgets=[1, 2], random_repeats=2,
                               rankings=["sii"])
    by_value = pair_ablation(context, projected, mask, target, probe | {"sii": -probe["sii"]}, budgets=[1, 2],
                             random_repeats=2, rankings=["sii"])
    unranked = pair_ablation(context, projected, mask, target, probe, budgets=[1, 2], random_repeats=2,
                             rankings=["sii"])
    np.testing.assert_array_equal(by_ranking.drop, by_value.drop)
    assert not np.array_equal(by_ranking.drop[:, :, :, 0], unranked.drop[:, :, :, 0])


# --- keep-masks --------------------------------------------------------------------------------------

def hand_example():
    """a: slots 0-3, b: slots 4-8 (8 padded); candidates a {0, 2, 3}, b {4, 6} (third slot padding).

    SII valid pairs in rank order: (1,0) 0.9; the 0.5 ties in row-major order (0,0), (1,1), (2,0);
    (2,1) 0.2; (0,1) NaN last. RG = -SII: (2,1), (0,0), (1,1), (2,0), (1,0), then (0,1) NaN.
    """
    mask = np.ones(9, dtype=bool)
    mask[8] = False
    nan = np.nan
    sii = np.array([[0.5, nan, nan], [0.9, 0.5, nan], [0.5, 0.2, nan]])
    return mask, [slice(0, 4), slice(4, 9)], np.array([0, 2, 3]), np.array([4, 6, -1]), {"sii": sii, "rg": -sii}


def test_ranked_pairs_sort_descending_with_ties_in_slot_order_and_nan_last():
    _, _, _, _, scores = hand_example()
    assert ranked_pairs(scores["sii"], 3, 2).tolist() == [[1, 0], [0, 0], [1, 1], [2, 0], [2, 1], [0, 1]]
    assert ranked_pairs(scores["rg"], 3, 2).tolist() == [[2, 1], [0, 0], [1, 1], [2, 0], [1, 0], [0, 1]]


def test_ranked_masks_remove_the_top_pairs_tokens_with_clipped_budgets():
    mask, slices, slots_a, slots_b, scores = hand_example()
    masks = example_masks(mask, slices, slots_a, slots_b, scores, [1, 2, 3, 4, 10], 3, np.random.default_rng(0))
    assert masks.keeps.shape == (5, 2, 7, 9)
    assert masks.pairs.tolist() == [1, 2, 3, 4, 6]  # 10 clipped to the 3 x 2 pairs
    assert removed(masks.keeps[:, 0, 0], mask) == [{2, 4}, {0, 2, 4}, {0, 2, 4, 6}, {0, 2, 3, 4, 6}, {0, 2, 3, 4, 6}]
    assert masks.tokens[:, 0, 0].tolist() == [[1, 1], [2, 1], [2, 2], [3, 2], [3, 2]]  # 3 pairs, 4 tokens
    assert removed(masks.keeps[:, 1, 0], mask) == [{3, 6}, {0, 3, 4, 6}, {0, 2, 3, 4, 6}, {0, 2, 3, 4, 6},
                                                   {0, 2, 3, 4, 6}]
    assert masks.tokens[:, 1, 0].tolist() == [[1, 1], [2, 2], [3, 2], [3, 2], [3, 2]]


def test_random_masks_match_the_ranked_tokens_per_modality_within_their_pools():
    mask, slices, slots_a, slots_b, scores = hand_example()
    R = 50
    masks = example_masks(mask, slices, slots_a, slots_b, scores, [1, 2, 3], R, np.random.default_rng(0))
    rows = selection_rows(R)
    assert masks.matched.all()
    np.testing.assert_array_equal(masks.tokens[:, :, 1], masks.tokens[:, :, 0])
    np.testing.assert_array_equal(masks.tokens[:, :, 2], masks.tokens[:, :, 0])
    for j in range(3):
        for r in range(2):
            d_a, d_b = masks.tokens[j, r, 0]
            for s, pool in ((1, {0, 2, 3, 4, 6}), (2, {0, 1, 2, 3, 4, 5, 6, 7})):
                sets = removed(masks.keeps[j, r, rows[s]], mask)
                assert all(len(u & {0, 1, 2, 3}) == d_a and len(u & {4, 5, 6, 7}) == d_b for u in sets)
                assert set().union(*sets) == pool  # 50 draws reach every token of the pool, nothing else
    # Random sets differ from the ranked one: the draws are not a copy of it.
    assert len({frozenset(u) for u in removed(masks.keeps[0, 0, rows[2]], mask)}) > 5


def test_a_pool_too_small_is_taken_whole():
    rng = np.random.default_rng(0)
    sets = random_token_sets(rng, np.array([3, 5]), 3, 4)
    assert sets.shape == (4, 2) and (np.sort(sets, 1) == [3, 5]).all()
    sets = random_token_sets(rng, np.array([3, 5, 7, 9]), 3, 4)
    assert sets.shape == (4, 3) and all(len(set(s)) == 3 for s in sets.tolist())


def test_candidates_must_be_real_tokens():
    mask, slices, slots_a, slots_b, scores = hand_example()
    with pytest.raises(ValueError, match="real tokens"):
        example_masks(mask, slices, slots_a, np.array([4, 8, -1]), scores, [1], 2, np.random.default_rng(0))


def test_random_draws_are_reproducible_with_their_seed_and_differ_across_seeds_and_examples():
    same, again, other = (run(n=6, budgets=(1, 2), repeats=4, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(same.keeps, again.keeps)
    np.testing.assert_array_equal(same.drop, again.drop)
    assert not np.array_equal(same.keeps, other.keeps)
    np.testing.assert_array_equal(same.keeps[:, :, :, 0], other.keeps[:, :, :, 0])  # ranked sets: no draw
    # Examples 0 and 2 have the same candidates, pools and budget-1 token counts, yet their own streams.
    assert not np.array_equal(same.keeps[0, 0, :, 1:], same.keeps[2, 0, :, 1:])
    mask, slices, slots_a, slots_b, scores = hand_example()
    draw = [example_masks(mask, slices, slots_a, slots_b, scores, [2], 5, np.random.default_rng([s, 7])).keeps
            for s in (0, 0, 1)]
    np.testing.assert_array_equal(draw[0], draw[1])
    assert not np.array_equal(draw[0], draw[2])


# --- statistics --------------------------------------------------------------------------------------

def test_sign_flip_test_is_small_for_a_clearly_positive_difference_and_large_for_a_symmetric_one():
    rng = np.random.default_rng(0)
    positive = rng.normal(1.0, 0.5, 30)
    assert sign_flip_pvalue(positive, 5000, seed=1) == pytest.approx(1 / 5001)  # Monte Carlo floor
    symmetric = np.array([-3.0, -2, -1, 1, 2, 3])
    assert sign_flip_pvalue(symmetric, 5000) > 0.5  # exact: 64 sign vectors
    assert sign_flip_pvalue([1.0, 2, 3], 100) == 1 / 8  # exact: only the observed signs reach 6
    # Here the matrix product sums the observed signs 2e-16 below d.sum(): rounding must not drop them.
    assert sign_flip_pvalue([0.26, 0.62, 0.17, 0.08], 100) == 1 / 16
    noisy = rng.normal(0.0, 1.0, 40)
    assert sign_flip_pvalue(noisy, 2000, seed=2) == sign_flip_pvalue(noisy, 2000, seed=2)
    # Wilcoxon agrees in direction.
    assert wilcoxon_greater(positive)["p"] < 0.001
    assert wilcoxon_greater(symmetric)["p"] > 0.5
    assert wilcoxon_greater(-positive)["p"] > 0.99
    # One example whose difference is 0 (both drops 0, e.g. a saturated probability): no evidence, no error.
    assert wilcoxon_greater([0.0])["p"] == sign_flip_pvalue([0.0]) == 1.0


def test_effect_sizes_equal_their_hand_computed_values():
    assert cohens_dz([1.0, 2, 3, 4, 5]) == pytest.approx(3 / math.sqrt(2.5))
    assert cohens_dz([2.0, 2, 2]) is None and cohens_dz([1.0]) is None
    assert rank_biserial([1.0, 2, -3, 4]) == pytest.approx((7 - 3) / 10)
    assert rank_biserial([0.0, 1, -2]) == pytest.approx((2.5 - 3.5) / 6)  # the zero's rank 1 split in halves
    assert rank_biserial([1.0, 1, -1]) == pytest.approx((4 - 2) / 6)  # average ranks of ties: 2, 2, 2
    d = np.array([0.0, 0.5, -0.2, 1.5, 0.0, 2.0, -0.1])
    w_plus = wilcoxon(d, alternative="greater", zero_method="zsplit").statistic
    assert rank_biserial(d) == pytest.approx(2 * w_plus / (7 * 8 / 2) - 1)


def test_paired_comparison_averages_random_repeats_and_its_interval_shrinks_with_more_examples():
    rng = np.random.default_rng(0)
    ranked = np.array([1.0, 2.0, 3.0])
    random = np.array([[0.0, 2.0], [1.0, 1.0], [3.0, 5.0]])  # means 1, 1, 4 -> d = 0, 1, -1
    result = paired_comparison(ranked[None], random[None], permutations=100, resamples=100)
    assert result["difference"] == 0.0 and result["n"] == 3
    assert result["cohens_dz"] == 0.0 and result["rank_biserial"] == 0.0

    def width(n):
        d = rng.normal(0.3, 1.0, n)
        r = paired_comparison(d[None], np.zeros((1, n, 1)), permutations=1000, resamples=500)
        assert r["low"] <= r["difference"] <= r["high"]
        return r["high"] - r["low"]

    assert width(2000) < width(20) / 5  # ~ 1 / sqrt(n): 10 times narrower
