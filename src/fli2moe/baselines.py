"""Reference baselines measured on the same feature set as the models (the `baselines` stage).

- majority: the most frequent training class (multiclass) or, per label, the majority value (multilabel);
- linear probes: logistic regression on the standardised masked mean of each modality's tokens, and
  on the concatenation of all modalities' means. They show what the frozen features carry before any
  token-level fusion, so a fusion model that does not beat them has learned nothing from the tokens.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fli2moe.features import SplitTensors
from fli2moe.task_metrics import task_metrics


def mean_pooled(split: SplitTensors, modality: str) -> np.ndarray:
    """Masked mean of the modality's tokens: [N, T, D] -> [N, D] float64."""
    tokens = split.tokens[modality].double()
    mask = split.mask[modality][..., None].double()  # [N, T, 1]
    return ((tokens * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()


def majority_scores(train_labels: np.ndarray, n: int, task: str) -> np.ndarray:
    """Constant scores [n, C] that predict the majority class (or, per label, the majority value)."""
    if task == "multiclass":
        counts = np.bincount(train_labels)
        scores = np.zeros((n, len(counts)))
        scores[:, counts.argmax()] = 1.0
        return scores
    return np.tile(np.where(train_labels.mean(0) > 0.5, 1.0, -1.0), (n, 1))


def linear_probe_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, task: str,
                        num_classes: int, seed: int) -> np.ndarray:
    """Decision scores [n_test, C] of a logistic regression (one-vs-rest for multilabel)."""
    logistic = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    model = make_pipeline(StandardScaler(), logistic if task == "multiclass" else OneVsRestClassifier(logistic))
    model.fit(x_train, y_train)
    decision = model.decision_function(x_test)
    if task == "multiclass":  # classes absent from training get -inf, so scores keep all C columns
        scores = np.full((len(x_test), num_classes), -np.inf)
        scores[:, model.classes_] = decision if decision.ndim == 2 else np.stack([-decision, decision], 1)
        return scores
    return decision


def reference_baselines(train: SplitTensors, test: SplitTensors, task: str, num_classes: int,
                        seed: int) -> dict[str, dict[str, float]]:
    """{name: test metrics} for majority and the linear probes of each modality and of all together."""
    y_train, y_test = train.labels.numpy(), test.labels.numpy()
    results = {"majority": task_metrics(majority_scores(y_train, len(y_test), task), y_test, task)}
    features = {m: (mean_pooled(train, m), mean_pooled(test, m)) for m in train.tokens}
    features["+".join(train.tokens)] = tuple(np.concatenate([f[i] for f in features.values()], 1) for i in (0, 1))
    for name, (x_train, x_test) in features.items():
        scores = linear_probe_scores(x_train, y_train, x_test, task, num_classes, seed)
        results[f"linear_probe_{name}"] = task_metrics(scores, y_test, task)
    return results
