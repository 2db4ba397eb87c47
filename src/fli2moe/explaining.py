"""What every explanation stage (attribute, probe, ablate) starts from, and the attribute stage's summaries.

`ExplanationContext` binds, once per stage, what every masked evaluation shares (model, baseline, task,
score quantity, batch limit), so the explanation functions take it and keyword-only options instead of
repeating them. `explained_examples` loads the model trained with one seed (each of `explain.seeds`), the
masking baseline computed on the training split (`explain.baseline`), and the first test examples with their projected
tokens and targets (the predicted class; docs/design.md section 5), so that all stages explain the same inputs the
same way. An example with no real token in some modality has nothing to attribute, probe or remove there:
every explanation stage skips it and records it (`write_skipped`), and explains the others.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fli2moe.artifacts import write_json
from fli2moe.attribution import Attributions
from fli2moe.faithfulness import (
    Faithfulness,
    seed_example_ci,
    concentration,
    expert_divergence,
    expert_names,
    faithfulness_summary,
    own_modality_share,
)
from fli2moe.checkpoints import load_trained_model
from fli2moe.features import load_split_tensors, read_manifest
from fli2moe.masking import (DEFAULT_MAX_ROWS, MaskedScores, baseline_vectors, evaluating, masked_forward,
                             masked_scores, target_labels, target_score)
from fli2moe.task_metrics import SEED_PREFIX


@dataclass(frozen=True)
class ExplanationContext:
    """The model explained and how every masked input of one stage is built and scored (`masking`), bound
    once: remove(x, keep) with `baseline` [T, H]; score = mean over the target labels of `quantity`
    ("logit" or "prob") for `task` ("multiclass" or "multilabel"); forward passes of exactly `max_batch` rows.
    """

    model: torch.nn.Module
    baseline: torch.Tensor
    task: str
    quantity: str
    max_batch: int = DEFAULT_MAX_ROWS

    def scores(self, projected: torch.Tensor, mask: torch.Tensor, keeps: torch.Tensor,
               target: torch.Tensor) -> MaskedScores:
        """`masking.masked_scores` of B examples under K keep-masks each: projected [B, T, H], mask [B, T],
        keeps [B, K, T] bool, target [B, C] bool (or one example without the B axis)."""
        return masked_scores(self.model, projected, mask, keeps, self.baseline, target, self.task, self.quantity,
                             self.max_batch)

    @torch.no_grad()
    def logits(self, projected: torch.Tensor, mask: torch.Tensor, keeps: torch.Tensor) -> torch.Tensor:
        """logits [B, K, C] of the model on remove(x_b, keeps[b, k]): projected [B, T, H], mask [B, T],
        keeps [B, K, T] bool.

        The same forward passes (`masking.masked_forward`) as `scores`, so `score` of these logits is its
        whole-model score, bitwise; one pass gives both the drops and the predictions for a task metric.
        Eval mode inside.
        """
        B, K, _ = keeps.shape
        with evaluating(self.model):
            logits = [chunk for _, chunk, _ in masked_forward(self.model, projected, mask, keeps, self.baseline,
                                                              self.max_batch)]
        return torch.cat(logits).view(B, K, -1)

    def score(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`masking.target_score` with this task and quantity: logits [..., C], target [..., C] bool -> [...]."""
        return target_score(logits, target, self.task, self.quantity)


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
    examined: int  # the first `examined` test examples were considered: these N and the skipped ones
    skipped: list[dict]  # {example, id, reason} of the examined examples that are not explained

    def context(self, quantity: str, max_batch: int) -> ExplanationContext:
        """The stage's `ExplanationContext`: this model, baseline and task, with the stage's quantity and batch limit."""
        return ExplanationContext(self.model, self.baseline, self.manifest["task"], quantity, max_batch)

    def select(self, keep: torch.Tensor) -> "ExplainedExamples":
        """The examples at positions `keep` [n] int64 (into these N), same model, baseline and skips."""
        return replace(self, index=self.index[keep], ids=[self.ids[i] for i in keep.tolist()],
                       projected=self.projected[keep], mask=self.mask[keep], target=self.target[keep],
                       labels=self.labels[keep])


def empty_modalities(model, mask: torch.Tensor) -> list[str | None]:
    """Per example of mask [N, T]: why it cannot be explained ("no real token in <modality>") or None."""
    empty = torch.stack([~mask[:, s].any(1) for s in model.modality_slices.values()], 1)  # [N, M]
    names = list(model.modality_slices)
    return [f"no real token in {', '.join(n for n, e in zip(names, row) if e)}" if any(row) else None
            for row in empty.tolist()]


@torch.no_grad()
def explained_examples(dataset: str, model_name: str, explain_params, examples: int | None, seed: int,
                       features_root: str = "features", models_root: str = "checkpoints") -> ExplainedExamples:
    """The first `examples` test examples (all when None) of `dataset`, for `model_name` trained with `seed`,
    less those with a modality without a real token (`skipped`: the same for every seed).

    Raises:
        FeatureSetError: the feature set breaks the contract.
        ValueError: the model's seed is missing, or every examined example is skipped.
    """
    folder = f"{features_root}/{dataset}"
    manifest = read_manifest(folder)
    model = load_trained_model(f"{models_root}/{dataset}-{model_name}", seed)
    baseline = baseline_vectors(model, load_split_tensors(folder, "train", manifest), explain_params.baseline)
    test = load_split_tensors(folder, "test", manifest)
    index = torch.arange(min(examples or len(test), len(test)))
    tokens, mask, labels = test.batch(index, torch.device("cpu"))
    projected, mask = model.project(tokens), model.concat_mask(mask)  # [N, T, H], [N, T]
    logits = torch.cat([model(projected[chunk], mask[chunk]).logits
                        for chunk in index.split(explain_params.max_batch)])  # [N, C]
    ids = [manifest["ids"]["test"][i] for i in index.tolist()]
    reasons = empty_modalities(model, mask)
    skipped = [{"example": i, "id": ids[i], "reason": r} for i, r in enumerate(reasons) if r is not None]
    if len(skipped) == len(index):
        raise ValueError(f"none of the first {len(index)} test examples of {folder} can be explained: "
                         f"{skipped[0]['id']!r}: {skipped[0]['reason']}")
    ex = ExplainedExamples(model, manifest, index, ids, projected, mask, target_labels(logits, manifest["task"]),
                           labels, baseline, len(index), skipped)
    return ex.select(torch.tensor([i for i, r in enumerate(reasons) if r is None], dtype=torch.long))


def seed_folder(folder, seed: int) -> Path:
    """Where an explanation stage keeps the results of the model trained with `seed`: <folder>/seed_<seed>."""
    return Path(folder) / f"{SEED_PREFIX}{seed}"


def write_skipped(path, examined: int, skipped: list[dict]) -> None:
    """A stage's record of its skipped examples: {"examples": examined, "skipped": [{example, id, reason}]}."""
    write_json(path, {"examples": examined, "skipped": sorted(skipped, key=lambda s: s["example"])})


def read_skipped(path) -> dict:
    """The record written by `write_skipped`."""
    return json.loads(Path(path).read_text())


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


def attribution_metrics(faiths: Sequence[Faithfulness], tables: Sequence[dict[str, np.ndarray]], resamples: int,
                        seed: int) -> dict:
    """The attribute stage's metrics over its trained seeds (one `Faithfulness` and `concentration_table` per
    seed, same examples): faithfulness AOPC and gaps per view, modality and kind (`faithfulness_summary`);
    mean concentration per map and specificity, each a `seed_example_ci` over seeds and examples (mean, std
    over seeds, low, high, n, seeds)."""
    faithfulness = {f"{r['map']}/{r['measure']}/{r['modality']}/{r['kind']}": r
                    for r in faithfulness_summary(faiths, resamples, seed)}
    for row in faithfulness.values():
        for key in ("map", "measure", "modality", "kind"):
            del row[key]
    maps = tables[0]["map"]

    def over_seeds(column: str, rows: np.ndarray) -> np.ndarray:  # [S, N]
        return np.stack([table[column][rows] for table in tables])

    concentration_ci = {name: {stat: seed_example_ci(over_seeds(stat, maps == name), resamples, seed)
                               for stat in ("entropy", "gini", "top10_mass")}
                        for name in dict.fromkeys(maps)}
    specificity = {column: seed_example_ci(over_seeds(column, maps == "whole"), resamples, seed)
                   for column in tables[0] if column == "expert_js_distance" or column.startswith("own_share_")}
    return {"faithfulness": faithfulness, "concentration": concentration_ci, "specificity": specificity,
            "examples": int(faiths[0].k.shape[0]), "seeds": len(faiths)}


def faithfulness_curves(faiths: Sequence[Faithfulness]) -> list[dict]:
    """DVC plot rows: the mean whole-model drop per modality and K over the seeds' examples, identified and
    random, both kinds (one line per modality)."""
    view = faiths[0].maps.index("whole")
    identified = np.stack([f.identified[view] for f in faiths])  # [S, N, M, nK, 2]
    random = np.stack([f.random[view] for f in faiths])
    rows = []
    for m, modality in enumerate(faiths[0].modalities):
        for j, k_percent in enumerate(faiths[0].k_percents):
            row = {"modality": modality, "k_percent": float(k_percent)}
            for i, kind in enumerate(("comprehensiveness", "sufficiency")):
                row[kind] = float(identified[:, :, m, j, i].mean())
                row[f"random_{kind}"] = float(random[:, :, m, j, i].mean())
            rows.append(row)
    return rows
