"""Task metrics (docs/design.md section 4) and their aggregation over seeds.

multiclass: accuracy and macro-F1 (plus AUROC when there are two classes);
multilabel: micro- and macro-F1 at threshold 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score


def task_metrics(scores: np.ndarray, labels: np.ndarray, task: str) -> dict[str, float]:
    """scores [N, C]: logits (or any monotone score); labels [N] int (multiclass) or [N, C] 0/1 (multilabel).

    A score of -inf is allowed: a class the scorer can never predict (a linear probe's class that is absent
    from its training split). Raises ValueError when a score is NaN or +inf: argmax and thresholds would
    turn it into a prediction.
    """
    bad = np.isnan(scores) | np.isposinf(scores)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise ValueError(f"task_metrics: scores of {len(rows)} of {len(scores)} samples are NaN or +inf "
                         f"(first: row {rows[0]})")
    if task == "multiclass":
        predicted = scores.argmax(1)
        num_classes = scores.shape[1]
        metrics = {
            "accuracy": float((predicted == labels).mean()),
            # Macro over all classes of the label set, so a class absent from a small split counts as 0.
            "macro_f1": float(f1_score(labels, predicted, labels=np.arange(num_classes), average="macro",
                                       zero_division=0)),
        }
        if num_classes == 2 and len(np.unique(labels)) == 2:  # undefined when a split holds one class only
            margin = scores[:, 1] - scores[:, 0]
            # An infinite margin comes from a class never predicted (-inf for every sample), so the margin is
            # the same for all samples: every positive-negative pair is a tie.
            metrics["auroc"] = float(roc_auc_score(labels, margin)) if np.isfinite(margin).all() else 0.5
        return metrics
    predicted = (scores > 0).astype(int)  # logit > 0 <=> probability > 0.5
    return {
        "micro_f1": float(f1_score(labels, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }


def selection_metric(task: str) -> str:
    """The validation metric that selects the epoch: accuracy (multiclass), macro-F1 (multilabel)."""
    return "accuracy" if task == "multiclass" else "macro_f1"


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) over seeds."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{metric: {mean, std}} over a list of per-seed metric dicts with the same keys."""
    return {name: mean_std([m[name] for m in per_seed]) for name in per_seed[0]}


SEED_PREFIX = "seed_"


def per_seed(seeds: Sequence[int], values: Sequence) -> dict:
    """{"seed_<s>": value}: per-seed values as scalars under stable keys, for a metrics file (DVC shows
    nothing inside a JSON list)."""
    return {f"{SEED_PREFIX}{seed}": value for seed, value in zip(seeds, values, strict=True)}


def seed_values(by_seed: Mapping) -> list:
    """The values of a `per_seed` dict in ascending seed order (a metrics file sorts "seed_10" before "seed_2")."""
    return [by_seed[key] for key in sorted(by_seed, key=lambda key: int(key.removeprefix(SEED_PREFIX)))]
