"""The report's tables, built from the metrics files: one `Table`, rendered as markdown and as HTML.

Faithfulness and pair-masking figures are differences of the target's probability (or logit, by the
stage's `quantity` param); the tables give them x100, i.e. in probability points.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from fli2moe.ablation import SELECTIONS, budget_key, summary_budgets, summary_rankings
from fli2moe.interactions import INDICES
from fli2moe.report.outputs import RunOutputs
from fli2moe.task_metrics import seed_values

DASH = "–"


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    align_left: int = 1  # the first columns are labels (left-aligned); the rest are numbers

    def markdown(self) -> str:
        align = [":--" if i < self.align_left else "--:" for i in range(len(self.columns))]
        lines = [f"**{self.title}**", "", row_markdown(self.columns), row_markdown(align)]
        lines += [row_markdown(row) for row in self.rows]
        if self.note:
            lines += ["", f"_{self.note}_"]
        return "\n".join(lines)

    def html(self) -> str:
        def cells(tag: str, row: list[str]) -> str:
            return "".join(f'<{tag} class="{"label" if i < self.align_left else "num"}">{html.escape(c)}</{tag}>'
                           for i, c in enumerate(row))

        body = "".join(f"<tr>{cells('td', row)}</tr>" for row in self.rows)
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return (f'<table><caption>{html.escape(self.title)}</caption><thead><tr>{cells("th", self.columns)}</tr>'
                f"</thead><tbody>{body}</tbody></table>{note}")


def metric_label(name: str) -> str:
    """"macro_f1" -> "macro-F1", "auroc" -> "AUROC"."""
    return {"auroc": "AUROC"}.get(name, name.replace("_f1", "-F1"))


def row_markdown(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def number(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    return f"{x:.{digits}f}"


def mean_std(stats: dict | None, digits: int = 3) -> str:
    """"0.506 ± 0.023" from {"mean", "std"}."""
    return DASH if stats is None else f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def with_ci(value, low, high, scale: float = 1.0, digits: int = 1, signed: bool = False, std=None) -> str:
    """"+8.1 ± 1.2 [7.2, 9.1]": a value, its seed standard deviation (when given) and its 95% confidence
    interval, times `scale`."""
    if value is None:
        return DASH
    sign = "+" if signed else ""
    spread = f" ± {std * scale:.{digits}f}" if std is not None else ""
    return f"{value * scale:{sign}.{digits}f}{spread} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


def summary_ci(stats: dict | None, scale: float = 1.0, digits: int = 3, signed: bool = False) -> str:
    """`with_ci` of a `faithfulness.seed_example_ci` dict over seeds and examples: {mean, std, low, high}."""
    if stats is None:
        return DASH
    return with_ci(stats["mean"], stats["low"], stats["high"], scale, digits, signed, stats.get("std"))


def seeds_note(seeds: int) -> str:
    """How many trained seeds a stage's figures average, for a table note."""
    return (f"mean ± seed std over {seeds} trained seeds [95% CI over seeds and examples]" if seeds > 1
            else "one trained seed [95% bootstrap CI over examples]")


def p_value(p) -> str:
    return DASH if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def task_table(run: RunOutputs, dataset: str) -> Table:
    """Test metrics mean ± std over seeds, parameter counts, and the majority / linear-probe baselines."""
    trained = {m: run.metrics("train", f"{dataset}-{m}") for m in run.trained(dataset)}
    names = sorted({name for metrics in trained.values() for name in metrics["test"]})
    seeds = len(next(iter(trained.values()))["best_epoch"]) if trained else 0
    # One seed has no spread: its "± 0.000" would read as a measured zero.
    shown = mean_std if seeds > 1 else lambda stats: number(stats and stats["mean"])
    rows = [[model, f"{metrics['parameters']:,}", *(shown(metrics["test"].get(n)) for n in names),
             ", ".join(map(str, seed_values(metrics["best_epoch"])))] for model, metrics in trained.items()]
    baselines = run.metrics("baselines", dataset) or {"test": {}}
    rows += [[name.replace("_", " "), DASH, *(number(scores.get(n)) for n in names), DASH]
             for name, scores in baselines["test"].items()]
    spread = f"mean ± sample std over {seeds} seeds" if seeds > 1 else "one seed (train.overrides), no spread"
    return Table(f"{dataset}: test metrics", ["model", "parameters", *map(metric_label, names),
                                              "best epoch per seed"], rows,
                 f"{spread}; baselines are deterministic (one value).")


def routing_table(run: RunOutputs, dataset: str) -> Table:
    """Mean routing weight per expert over seeds and test samples, and its spread across samples."""
    rows = []
    for model in run.trained(dataset):
        routing = run.routing(dataset, model)
        if routing is None:
            continue
        w = routing.weights  # [seeds, N, E]
        for e, expert in enumerate(routing.experts):
            rows.append([model, expert, number(w[..., e].mean()), number(routing.spread()[:, e].mean()),
                         number((w.argmax(-1) == e).mean())])
    return Table(f"{dataset}: routing weights on the test split",
                 ["model", "expert", "mean weight", "std across samples", "share of samples where top"], rows,
                 "weights of the reweighting model (softmax with temperature tau); seeds pooled.", align_left=2)


def faithfulness_table(run: RunOutputs, dataset: str) -> Table:
    """Whole-map comprehensiveness and sufficiency (AOPC over K) against random tokens, with 95% CIs."""
    rows = []
    for model in run.explained(dataset, "attribution"):
        faith = run.metrics("attribution", f"{dataset}-{model}")["faithfulness"]
        for modality in modality_names(run, dataset):
            c = faith[f"whole/prediction/{modality}/comprehensiveness"]
            s = faith[f"whole/prediction/{modality}/sufficiency"]
            rows.append([model, modality,
                         with_ci(c["aopc"], c["aopc_low"], c["aopc_high"], 100, std=c["aopc_std"]),
                         number(100 * c["random_aopc"], 1),
                         with_ci(c["gap"], c["gap_low"], c["gap_high"], 100, signed=True, std=c["gap_std"]),
                         with_ci(s["aopc"], s["aopc_low"], s["aopc_high"], 100, std=s["aopc_std"]),
                         number(100 * s["random_aopc"], 1),
                         with_ci(s["gap"], s["gap_low"], s["gap_high"], 100, signed=True, std=s["gap_std"])])
    return Table(f"{dataset}: faithfulness of the whole-model map (top-K% masking, AOPC over K)",
                 ["model", "modality", "comprehensiveness", "random", "gap", "sufficiency", "random", "gap"], rows,
                 "x100 (probability points); comprehensiveness: higher is better, sufficiency: lower is better; "
                 f"gap = identified - random tokens; {explained_seeds_note(run, dataset, 'attribution')}.",
                 align_left=2)


def expert_faithfulness_table(run: RunOutputs, dataset: str) -> Table:
    """Per expert: comprehensiveness gap of the expert's own contribution when its top tokens go, per modality."""
    rows = []
    for model in run.explained(dataset, "attribution"):
        faith = run.metrics("attribution", f"{dataset}-{model}")["faithfulness"]
        experts = sorted({key.split("/")[0] for key in faith if key.split("/")[1] == "contribution"})
        for expert in experts:
            rows.append([model, expert, *(with_ci(*(faith[f"{expert}/contribution/{m}/comprehensiveness"][k]
                                                    for k in ("gap", "gap_low", "gap_high")), 100, signed=True,
                                                  std=faith[f"{expert}/contribution/{m}/comprehensiveness"]["gap_std"])
                                          for m in modality_names(run, dataset))])
    return Table(f"{dataset}: per-expert comprehensiveness gap of the expert's own contribution",
                 ["model", "expert", *modality_names(run, dataset)], rows,
                 "x100; the drop of w_e * logit_e[target] when the expert's own top-K% tokens are removed, minus "
                 f"the drop for random tokens; {explained_seeds_note(run, dataset, 'attribution')}.", align_left=2)


def concentration_table(run: RunOutputs, dataset: str) -> Table:
    """Entropy / log T, Gini and top-10% mass of each map (the whole model's and each expert's)."""
    rows = []
    for model in run.explained(dataset, "attribution"):
        for name, stats in run.metrics("attribution", f"{dataset}-{model}")["concentration"].items():
            rows.append([model, name, *(summary_ci(stats[k]) for k in ("entropy", "gini", "top10_mass"))])
    return Table(f"{dataset}: concentration of the attribution maps",
                 ["model", "map", "entropy / log T", "Gini", "top-10% mass"], rows,
                 "normalised |scores|; lower entropy, higher Gini and top-10% mass = more concentrated; "
                 f"{explained_seeds_note(run, dataset, 'attribution')}.", align_left=2)


def specificity_table(run: RunOutputs, dataset: str) -> Table:
    """How different the experts' maps are, and each uniqueness expert's share on its own modality."""
    rows = [[model, name.replace("_", " "), summary_ci(stats)]
            for model in run.explained(dataset, "attribution")
            for name, stats in run.metrics("attribution", f"{dataset}-{model}")["specificity"].items()]
    return Table(f"{dataset}: specificity of the experts", ["model", "measure", "value"], rows,
                 "expert JS distance: mean pairwise Jensen-Shannon distance between the experts' maps; own share: "
                 "a uniqueness expert's attribution mass on its own modality (0.5 = no preference); "
                 f"{explained_seeds_note(run, dataset, 'attribution')}.", align_left=2)


def probe_table(run: RunOutputs, dataset: str) -> Table:
    """One row per probed model; a mean |index| column per index probed by any of them (registry order)."""
    models = run.explained(dataset, "probe")
    metrics = {model: run.metrics("probe", f"{dataset}-{model}") for model in models}
    indices = [name for name in INDICES if any(f"mean_abs_{name}" in m for m in metrics.values())]
    rows = []
    for model in models:
        timing = run.timing("probe", f"{dataset}-{model}") or {}
        m = metrics[model]
        rows.append([model, m["estimator"], str(m["examples"]), number(m["mean_candidates"], 1), str(m["pairs"]),
                     *(summary_ci(m.get(f"mean_abs_{name}"), digits=4) for name in indices),
                     number(m.get("significant_share"), 2), number(m["mean_evaluations"], 0),
                     number(timing.get("seconds_per_example"), 2)])
    return Table(f"{dataset}: interaction probes on cross-modal candidate pairs",
                 ["model", "estimator", "examples", "candidates", "pairs",
                  *(f"mean |{name.upper()}|" for name in indices), "significant SII", "evaluations / example",
                  "s / example"], rows,
                 f"{', '.join(name.upper() for name in indices)} in units of the game's value (probe.quantity), "
                 f"per example the mean over its pairs; significant SII: share of pairs whose 95% Student-t interval "
                 f"excludes 0; s / example: the estimator's seconds on one example in its one-thread worker "
                 f"process (the stage runs `threads` at once); {explained_seeds_note(run, dataset, 'probe')}.",
                 align_left=2)


def recovery_table(run: RunOutputs, dataset: str) -> Table:
    """Planted-pair recovery (synthetic): rank of the planted synergy pair by SII, redundant pair by RG."""
    rows = []
    for model in run.explained(dataset, "probe"):
        recovery = run.metrics("probe", f"{dataset}-{model}").get("recovery")
        if recovery is None:
            continue
        for kind, score in (("synergy", "SII"), ("redundancy", "RG")):
            rows.append([model, f"{kind} by {score}", summary_ci(recovery[f"{kind}_precision@1"], digits=2),
                         seed_range(recovery[f"{kind}_precision@1"]), number(recovery[f"{kind}_chance_precision@1"], 3),
                         summary_ci(recovery[f"{kind}_precision@5"], digits=2),
                         number(recovery[f"{kind}_chance_precision@5"], 3),
                         number(recovery[f"{kind}_mean_rank"], 1), number(recovery[f"{kind}_missing_share"], 2),
                         number(recovery.get(f"{kind}_misses_within_noise"), 2),
                         number(recovery[f"{kind}_sign_accuracy"], 2), str(recovery[f"{kind}_examples"])])
    return Table(f"{dataset}: recovery of the planted pairs",
                 ["model", "pair", "P@1", "P@1 per seed", "chance", "P@5", "chance", "mean rank", "not a candidate",
                  "misses within noise", "sign accuracy", "examples"], rows,
                 "P@k: share of examples whose planted pair is among the k top-ranked cross-modal pairs (a pair "
                 "whose tokens are not both candidates counts as a miss); mean rank over the examples where it is "
                 "a candidate pair; misses within noise: share of the examples whose planted pair is a candidate "
                 "but not first where the top pair beats it by at most 1.96 combined standard errors (the "
                 "estimator's noise could explain the miss); sign accuracy: SII > 0 for synergy, RG > 0 for "
                 "redundancy; "
                 f"{explained_seeds_note(run, dataset, 'probe')}.", align_left=2)


def ablation_table(run: RunOutputs, dataset: str) -> Table:
    """Ranked pairs against random pairs at the same budget: drops, paired difference, tests."""
    rows = []
    for model in run.explained(dataset, "ablate"):
        metrics = run.metrics("ablate", f"{dataset}-{model}")
        for budget in summary_budgets(metrics):
            for ranking in summary_rankings(metrics):
                drops = metrics[budget_key(budget)][ranking]
                for random in SELECTIONS[1:]:
                    ranked, c = drops["ranked"], drops[f"vs_{random}"]
                    rows.append([model, ranking.upper(), random.replace("_", " "), str(budget),
                                 with_ci(ranked["drop"], ranked["low"], ranked["high"], 100, std=ranked["std"]),
                                 with_ci(drops[random]["drop"], drops[random]["low"], drops[random]["high"], 100,
                                         std=drops[random]["std"]),
                                 with_ci(c["difference"], c["low"], c["high"], 100, signed=True, std=c["std"]),
                                 p_value(c["permutation_p"]), p_value(c["wilcoxon_p"]), number(c["cohens_dz"], 2)])
    return Table(f"{dataset}: pair-level masking, ranked against random pairs",
                 ["model", "ranking", "random pairs from", "pairs b", "ranked drop", "random drop", "difference",
                  "permutation p", "Wilcoxon p", "d_z"], rows,
                 "x100: drop of the target's probability when both tokens of the top-b pairs are removed; random "
                 "sets match the ranked set's distinct tokens per modality; one-sided tests of ranked > random "
                 "(sign-flip permutation and Wilcoxon signed-rank) of each example's difference averaged over the "
                 f"seeds; {explained_seeds_note(run, dataset, 'ablate')}.", align_left=4)


COST_STAGES = ("extract", "train", "attribution", "probe", "ablate")  # their timing/ folders


def cost_table(run: RunOutputs) -> Table:
    """Wall seconds of each stage run, from timing/ (they vary run to run, so they are not DVC metrics)."""
    rows, total = [], 0.0
    for stage in COST_STAGES:
        for dataset in run.datasets:
            keys = [dataset] if stage == "extract" else [f"{dataset}-{m}" for m in (
                run.trained(dataset) if stage == "train" else run.models)]
            for key in keys:
                timing = run.timing(stage, key)
                if timing is not None:
                    probe = run.metrics("probe", key) if stage == "probe" else None
                    rows.append([stage, key, number(timing["seconds_total"], 1),
                                 number(probe["mean_evaluations"], 0) if probe else DASH])
                    total += timing["seconds_total"]
    rows.append(["all", DASH, number(total, 1), DASH])
    return Table("Cost per stage (wall seconds on this machine)", ["stage", "key", "seconds", "model evaluations / example"],
                 rows, "measured by the stages themselves; `dvc repro` adds a few seconds of bookkeeping per stage.",
                 align_left=2)


def explained_seeds_note(run: RunOutputs, dataset: str, stage: str) -> str:
    """`seeds_note` of the most seeds a stage's metrics on `dataset` average (the same for every model)."""
    seeds = max((seeds_of(run.metrics(stage, f"{dataset}-{m}")) for m in run.explained(dataset, stage)), default=1)
    return seeds_note(seeds)


def seeds_of(metrics: dict) -> int:
    """Trained seeds behind an explanation stage's metrics (its top-level `seeds`)."""
    return int(metrics.get("seeds", 1))


def seed_range(stats: dict) -> str:
    """"0.91, 0.88, 0.94": the per-seed values (seed_<s> keys) of a figure, in seed order."""
    by_seed = {key: value for key, value in stats.items() if key.startswith("seed_")}
    return ", ".join(number(value, 2) for value in seed_values(by_seed)) if by_seed else DASH


def modality_names(run: RunOutputs, dataset: str) -> list[str]:
    return [m["name"] for m in run.manifests[dataset]["modalities"]]
