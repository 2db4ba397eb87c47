"""What every explanation stage (attribute, probe, ablate) starts from, and the attribute stage's summaries.

`explained_examples` loads the trained model of one seed (`explain.model_seed`), the masking baseline
computed on the training split (`explain.baseline`), and the first test examples with their projected
tokens and targets (the predicted class; docs/design.md section 5), so that all stages explain the same inputs the
same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fli2moe.attribution import Attributions
from fli2moe.faithfulness import (
    Faithfulness,
    bootstrap_ci,
    concentration,
    expert_divergence,
    expert_names,
    own_modality_share,
)
from fli2moe.features import read_manifest
from fli2moe.masking import baseline_vectors, target_labels
from fli2moe.training import load_split_tensors, load_trained_model


@dataclass
class ExplainedExamples:
    model: torch.nn.Module
    manifest: dict
    index: torch.Tensor  # [N] positions in the test split
    ids: list[str]  # [N]
    projected: torch.Tensor  # [N, T, H] projected tokens (no grad)
    mask: torch.Tensor  # [N, T] bool
    target: torch.Tensor  # [N, C] bool, fixed on the unmasked input
    labels: torch.Tensor  # [N] or [N, C]: the true labels
    baseline: torch.Tensor  # [T, H] the masking baseline


@torch.no_grad()
def explained_examples(dataset: str, model_name: str, explain_params, examples: int | None,
                       features_root: str = "features", models_root: str = "checkpoints") -> ExplainedExamples:
    """The first `examples` test examples (all when None) of `dataset`, for the trained `model_name`."""
    folder = f"{features_root}/{dataset}"
    manifest = read_manifest(folder)
    model = load_trained_model(f"{models_root}/{dataset}-{model_name}", explain_params.model_seed)
    baseline = baseline_vectors(model, load_split_tensors(folder, "train", manifest), explain_params.baseline)
    test = load_split_tensors(folder, "test", manifest)
    index = torch.arange(min(examples or len(test), len(test)))
    tokens, mask, labels = test.batch(index, torch.device("cpu"))
    projected, mask = model.project(tokens), model.concat_mask(mask)  # [N, T, H], [N, T]
    logits = torch.cat([model(projected[chunk], mask[chunk]).logits
                        for chunk in index.split(explain_params.max_batch)])  # [N, C]
    return ExplainedExamples(model, manifest, index, [manifest["ids"]["test"][i] for i in index.tolist()],
                             projected, mask, target_labels(logits, manifest["task"]), labels, baseline)


def map_names(model) -> list[str]:
    """Names of the maps an attribution holds: "whole", then one per expert of a mixture."""
    names = expert_names(model)
    return ["whole"] + (names if len(names) > 1 else [])


def concentration_table(model, attributions: Attributions, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """One row per (example, map): entropy, Gini, top-10% mass; plus, for mixtures, per example the mean
    pairwise JS distance between expert maps and each uniqueness expert's share on its own modality."""
    maps, mask_np = attributions.stacked().numpy(), mask.numpy()
    N, S, _ = maps.shape
    stats = concentration(maps, mask_np[:, None])  # each [N, S]
    columns = {"example": np.repeat(np.arange(N), S), "map": np.tile(map_names(model), N),
               **{name: value.ravel() for name, value in stats.items()}}
    if attributions.expert.shape[1] > 1:
        expert = attributions.expert.numpy()
        columns["expert_js_distance"] = np.repeat(expert_divergence(expert, mask_np), S)
        for name, share in own_modality_share(model, expert, mask_np).items():
            columns[f"own_share_{name}"] = np.repeat(share, S)
    return columns


def attribution_metrics(faith: Faithfulness, table: dict[str, np.ndarray], resamples: int, seed: int) -> dict:
    """The attribute stage's metrics: faithfulness AOPC and gaps with bootstrap CIs per view, modality and
    kind; mean concentration per map and specificity, each with a bootstrap CI over examples."""
    faithfulness = {f"{r['map']}/{r['measure']}/{r['modality']}/{r['kind']}": r
                    for r in faith.summary(resamples, seed)}
    for row in faithfulness.values():
        for key in ("map", "measure", "modality", "kind"):
            del row[key]
    maps = table["map"]
    concentration_ci = {name: {stat: bootstrap_ci(table[stat][maps == name], resamples, seed)
                               for stat in ("entropy", "gini", "top10_mass")}
                        for name in dict.fromkeys(maps)}
    specificity = {column: bootstrap_ci(table[column][maps == "whole"], resamples, seed)
                   for column in table if column == "expert_js_distance" or column.startswith("own_share_")}
    return {"faithfulness": faithfulness, "concentration": concentration_ci, "specificity": specificity,
            "examples": int(faith.k.shape[0])}


def faithfulness_curves(faith: Faithfulness) -> list[dict]:
    """DVC plot rows: mean whole-model drop per modality and K, identified and random, both kinds."""
    view = faith.maps.index("whole")
    rows = []
    for m, modality in enumerate(faith.modalities):
        for j, k_percent in enumerate(faith.k_percents):
            row = {"modality": modality, "k_percent": float(k_percent)}
            for i, kind in enumerate(("comprehensiveness", "sufficiency")):
                row[kind] = float(faith.identified[view, :, m, j, i].mean())
                row[f"random_{kind}"] = float(faith.random[view, :, m, j, i].mean())
            rows.append(row)
    return rows
