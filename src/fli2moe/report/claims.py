"""Does this run support each claim of the paper? One rule per claim, stated in its sentence.

A verdict is "supported", "not supported", "mixed" (holds in some cases, fails in others) or
"inconclusive" (the difference is within the run's own uncertainty). The rules are deliberately
plain: confidence intervals that exclude zero, differences larger than a seed standard deviation. Every
explanation figure is a mean over the trained seeds (explain.seeds) and the examples, and its interval is
over both (`faithfulness.seed_example_ci`), so the seed spread widens the interval a rule reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from fli2moe.ablation import budget_key, summary_budgets, summary_rankings
from fli2moe.probing import PLANTED
from fli2moe.report.outputs import RunOutputs
from fli2moe.report.tables import (metric_label, modality_names, seed_range, seeds_note, seeds_of, summary_ci,
                                   with_ci)
from fli2moe.task_metrics import selection_metric

SUPPORTED, NOT_SUPPORTED, MIXED, INCONCLUSIVE = "supported", "not supported", "mixed", "inconclusive"
MAJORITY = 0.5  # "in most samples"
ROUTING_SPREAD = 0.05  # a routing weight that varies less than this across samples is a constant
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Verdict:
    subject: str  # what was judged: "enrico" or "synthetic, fl_i2moe"
    status: str
    sentence: str  # the numbers and the rule that decide the status


def tally(passed: list[bool]) -> str:
    return SUPPORTED if all(passed) else NOT_SUPPORTED if not any(passed) else MIXED


def accuracy_claim(run: RunOutputs, dataset: str) -> Verdict:
    """FL-I2MoE is at least as accurate as the dense baseline, and its interaction losses help (vs moe_plain)."""
    metric = selection_metric(run.manifests[dataset]["task"])
    test = {m: run.metrics("train", f"{dataset}-{m}")["test"][metric] for m in run.trained(dataset)}
    if "fl_i2moe" not in test:
        return Verdict(dataset, INCONCLUSIVE, f"fl_i2moe was not trained in this run.")
    seeds = min(len(run.metrics("train", f"{dataset}-{m}")["best_epoch"]) for m in test)  # one entry per seed
    if seeds < 2:
        return Verdict(dataset, INCONCLUSIVE, f"one seed was trained on {dataset}: no seed spread to judge a "
                       "difference in test " + metric_label(metric) + " by.")
    fl = test["fl_i2moe"]
    parts, statuses = [], []
    for other, rule in (("dense", "at least as good as"), ("moe_plain", "better than")):
        if other not in test:
            continue
        o = test[other]
        difference, spread = fl["mean"] - o["mean"], max(fl["std"], o["std"])
        if rule == "better than":
            status = SUPPORTED if difference > spread else NOT_SUPPORTED if difference < -spread else INCONCLUSIVE
        else:
            status = SUPPORTED if difference >= -spread else NOT_SUPPORTED
        statuses.append(status)
        parts.append(f"{rule} {other}: {fl['mean']:.3f} vs {o['mean']:.3f} ({difference:+.3f}, largest seed std "
                     f"{spread:.3f}) - {status}")
    status = statuses[0] if len(set(statuses)) == 1 else MIXED
    return Verdict(dataset, status, f"test {metric_label(metric)}, FL-I2MoE " + "; ".join(parts) + ".")


def routing_claim(run: RunOutputs, dataset: str) -> Verdict:
    """The reweighting model gives sample-specific weights rather than a constant mixture."""
    routing = run.routing(dataset, "fl_i2moe")
    if routing is None:
        return Verdict(dataset, INCONCLUSIVE, f"no FL-I2MoE routing weights in this run.")
    spread = routing.spread().mean(axis=0)  # [E]: std across samples, mean over seeds
    means = routing.weights.mean(axis=(0, 1))
    varied = [name for name, s in zip(routing.experts, spread) if s >= ROUTING_SPREAD]
    status = SUPPORTED if varied else NOT_SUPPORTED
    top = int(means.argmax())
    expert, most = routing.most_varied()
    most_text = summary_ci(most) if "low" in most else f"{most['mean']:.3f} (one seed)"
    return Verdict(dataset, status, f"{len(varied)} of {len(routing.experts)} experts have routing weights that "
                           f"vary across test samples by at least {ROUTING_SPREAD} (std); the most varied, {expert}, "
                           f"by {most_text}; the largest mean weight is {means[top]:.2f} "
                           f"({routing.experts[top]}) - {status}.")


def faithfulness_claim(run: RunOutputs, dataset: str) -> Verdict:
    """FL-I2MoE's maps are faithful: their top tokens matter more than random tokens, in every modality."""
    metrics = run.metrics("attribution", f"{dataset}-fl_i2moe")
    if metrics is None:
        return Verdict(dataset, INCONCLUSIVE, f"fl_i2moe was not explained in this run.")
    passed, parts = [], []
    for modality in modality_names(run, dataset):
        c = metrics["faithfulness"][f"whole/prediction/{modality}/comprehensiveness"]
        s = metrics["faithfulness"][f"whole/prediction/{modality}/sufficiency"]
        passed += [c["gap_low"] > 0, s["gap_high"] < 0]
        parts.append(f"{modality} comprehensiveness gap {100 * c['gap']:+.1f} [{100 * c['gap_low']:.1f}, "
                     f"{100 * c['gap_high']:.1f}], sufficiency gap {100 * s['gap']:+.1f} [{100 * s['gap_low']:.1f}, "
                     f"{100 * s['gap_high']:.1f}]")
    status = tally(passed)
    return Verdict(dataset, status, "; ".join(parts) + f" (points, {seeds_note(seeds_of(metrics))}; the CI must exclude 0 in "
                                                       f"the right direction) - {status}." + run.removal_note(dataset))


def concentration_claim(run: RunOutputs, dataset: str) -> Verdict:
    """FL-I2MoE's maps are more concentrated than the dense model's (higher Gini of the whole map)."""
    fl, dense = (run.metrics("attribution", f"{dataset}-{m}") for m in ("fl_i2moe", "dense"))
    if fl is None or dense is None:
        return Verdict(dataset, INCONCLUSIVE, f"needs both fl_i2moe and dense attributions.")
    a, b = fl["concentration"]["whole"]["gini"], dense["concentration"]["whole"]["gini"]
    status = SUPPORTED if a["low"] > b["high"] else NOT_SUPPORTED if a["high"] < b["low"] else INCONCLUSIVE
    return Verdict(dataset, status, f"Gini of the whole map, FL-I2MoE {summary_ci(a)} vs dense {summary_ci(b)} "
                           f"({seeds_note(seeds_of(fl))}; supported if the intervals are disjoint with FL-I2MoE higher, not "
                           f"supported if disjoint with it lower) - {status}.")


def specificity_claim(run: RunOutputs, dataset: str) -> Verdict:
    """Each uniqueness expert puts most of its attribution on its own modality."""
    metrics = run.metrics("attribution", f"{dataset}-fl_i2moe")
    shares = {k: v for k, v in (metrics or {}).get("specificity", {}).items() if k.startswith("own_share")}
    if not shares:
        return Verdict(dataset, INCONCLUSIVE, f"no uniqueness-expert maps in this run.")
    status = tally([s["low"] > 0.5 for s in shares.values()])
    parts = [f"{k.removeprefix('own_share_')} {summary_ci(s)}" for k, s in shares.items()]
    return Verdict(dataset, status, f"own-modality share of the uniqueness experts' maps, " + "; ".join(parts)
                   + f" ({seeds_note(seeds_of(metrics))}; the CI must lie above 0.5) - {status}.")


def recovery_claim(run: RunOutputs, dataset: str, model: str = "fl_i2moe") -> Verdict:
    """On the planted benchmark, SII ranks the synergistic pair first and RG the redundant pair first, in most
    examples: the CI of P@1 over seeds and examples lies above 50%."""
    metrics = run.metrics("probe", f"{dataset}-{model}") or {}
    recovery = metrics.get("recovery")
    if recovery is None:
        return Verdict(f"{dataset}, {model}", INCONCLUSIVE, "no planted-pair recovery.")
    p_syn, p_red = recovery["synergy_precision@1"], recovery["redundancy_precision@1"]
    status = tally([p_syn["low"] > MAJORITY, p_red["low"] > MAJORITY])
    return Verdict(f"{dataset}, {model}", status, f"the planted synergistic pair is ranked first by SII in "
                           f"{summary_ci(p_syn, 100, 0)}% of examples (per seed {seed_range(p_syn)}; chance "
                           f"{100 * recovery['synergy_chance_precision@1']:.1f}%), the planted redundant pair first by "
                           f"RG in {summary_ci(p_red, 100, 0)}% (per seed {seed_range(p_red)}; chance "
                           f"{100 * recovery['redundancy_chance_precision@1']:.1f}%) ({seeds_note(seeds_of(metrics))}; the CI "
                           f"must lie above {100 * MAJORITY:.0f}%) - {status}." + run.removal_note(dataset))


def ablation_claim(run: RunOutputs, dataset: str, model: str = "fl_i2moe") -> Verdict:
    """Removing the top-ranked pairs hurts more than removing random candidate pairs at the same budget."""
    metrics = run.metrics("ablate", f"{dataset}-{model}")
    if metrics is None:
        return Verdict(f"{dataset}, {model}", INCONCLUSIVE, "not ablated in this run.")
    passed, parts = [], []
    # The paper's claim is about its two indices, SII and RG (`probing.PLANTED`), whatever else was ranked.
    for ranking in (name for name in summary_rankings(metrics) if name in PLANTED.values()):
        rows = {b: metrics[budget_key(b)][ranking]["vs_random_candidates"] for b in summary_budgets(metrics)}
        passed += [c["low"] > 0 and c["permutation_p"] < SIGNIFICANCE for c in rows.values()]
        parts.append(f"by {ranking.upper()} at b = " + ", ".join(
            f"{b}: {with_ci(c['difference'], c['low'], c['high'], 100, signed=True, std=c['std'])} "
            f"(p {c['permutation_p']:.3f})" for b, c in rows.items()))
    status = tally(passed)
    return Verdict(f"{dataset}, {model}", status, "ranked minus random-candidate drop (points, "
                   f"{seeds_note(seeds_of(metrics))}): " + "; ".join(parts)
                   + f" (each needs a CI above 0 and p < {SIGNIFICANCE}) - {status}."
                   + run.removal_note(dataset))

