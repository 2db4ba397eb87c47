"""Training and evaluation of the models on a feature set (the `train` stage's logic).

One run per seed: Adam on the task loss (cross-entropy or BCE) plus `lambda_int` times the model's
interaction loss, the epoch with the best validation score kept (accuracy for multiclass, macro-F1
for multilabel; ties keep the earlier epoch), the test split evaluated once with that epoch's weights.
With `train.patience` p, a run stops after p epochs without a better validation score (early stopping);
it keeps the same epoch as the full run whenever that epoch comes before such a stretch.
Everything is seeded: shuffling, dropout and the gaussian perturbations of the interaction losses.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from fli2moe.features import SplitTensors
from fli2moe.masking import modality_ids, remove_tokens
from fli2moe.models import MODELS, ModalitySpec, MultimodalModel, build_model
from fli2moe.task_metrics import selection_metric, task_metrics

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """Training that cannot go on (a non-finite loss); the message names the seed, epoch and batch."""


def model_config(name: str, manifest: dict, model_params, moe_params):
    """The model's config dataclass from a feature-set manifest and the `model` and `moe` params (None for a model
    without moe fields): each field of the registered config that one of the sections holds (the others keep the
    config's default)."""
    modalities = [ModalitySpec(m["name"], m["dim"], m["tokens"]) for m in manifest["modalities"]]
    config_class = MODELS[name].config
    names = {f.name for f in fields(config_class)}
    sections = {**vars(model_params), **(vars(moe_params) if moe_params is not None else {})}
    return config_class(modalities=modalities, num_classes=len(manifest["label_names"]),
                        **{k: v for k, v in sections.items() if k in names})


def task_loss(logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    if task == "multiclass":
        return F.cross_entropy(logits, labels)
    return F.binary_cross_entropy_with_logits(logits, labels)


@torch.no_grad()
def predict(model: MultimodalModel, data: SplitTensors, batch_size: int, device: torch.device):
    """Logits [N, C] and routing weights [N, E] of `data`, in order, in eval mode."""
    model.eval()
    logits, weights = [], []
    for start in range(0, len(data), batch_size):
        tokens, mask, _ = data.batch(torch.arange(start, min(start + batch_size, len(data))), device)
        out = model.forward_tokens(tokens, mask)
        logits.append(out.logits.cpu())
        weights.append(out.weights.cpu())
    return torch.cat(logits), torch.cat(weights)


def drop_tokens(model: MultimodalModel, projected: torch.Tensor, mask: torch.Tensor, p: float,
                generator: torch.Generator) -> torch.Tensor:
    """Training-time token removal: each real token is removed with probability p, as `explain.baseline: mean`
    removes it at explain time (its projected vector becomes its modality's mean, here over the batch's real
    tokens, detached). A model that never saw a removed token answers arbitrarily when explanations remove
    some; this makes removal in-distribution. projected [b, T, H], mask [b, T] -> [b, T, H]."""
    ids = modality_ids(model).to(projected.device)  # [T]
    real = mask.to(projected.dtype)  # [b, T]
    M, H = len(model.modality_slices), projected.shape[-1]
    sums = projected.new_zeros(M, H).index_add_(0, ids, (projected * real[..., None]).sum(0))  # [M, H]
    counts = projected.new_zeros(M).index_add_(0, ids, real.sum(0))  # [M]
    baseline = (sums / counts.clamp(min=1)[:, None]).detach()[ids]  # [T, H]
    keep = torch.rand(mask.shape, generator=generator, device=projected.device) >= p
    return remove_tokens(projected, keep, baseline, mask)


@dataclass
class SeedRun:
    state_dict: dict[str, torch.Tensor]  # weights of the selected epoch
    best_epoch: int  # 1-based
    curves: list[dict]  # one row per epoch run (fewer than train.epochs after an early stop)
    val: dict[str, float]
    test: dict[str, float]
    test_weights: torch.Tensor  # [N_test, E] routing weights
    seconds: float


def train_seed(name: str, config, splits: dict[str, SplitTensors], task: str, train_params, seed: int,
               device: torch.device) -> SeedRun:
    """One seed's run (module docstring).

    Raises:
        TrainingError: a batch's loss is NaN or inf; it stops training before the weights are updated with it.
    """
    torch.manual_seed(seed)
    model = build_model(name, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_params.lr, weight_decay=train_params.weight_decay)
    shuffle = torch.Generator().manual_seed(seed)
    perturb = torch.Generator(device=device).manual_seed(seed + 1)  # gaussian modality removal
    dropout = torch.Generator(device=device).manual_seed(seed + 2)  # token removal (train.token_dropout)
    metric = selection_metric(task)
    train, val = splits["train"], splits["val"]
    best_score, best_epoch, best_state, curves = -np.inf, 0, None, []
    start = time.perf_counter()
    for epoch in range(1, train_params.epochs + 1):
        model.train()
        sums = {"loss": 0.0, "task_loss": 0.0, "interaction_loss": 0.0}
        for batch, index in enumerate(torch.randperm(len(train), generator=shuffle).split(train_params.batch_size), 1):
            tokens, mask, labels = train.batch(index, device)
            projected, mask_cat = model.project(tokens), model.concat_mask(mask)  # [b, T, H], [b, T]
            if train_params.token_dropout > 0:
                projected = drop_tokens(model, projected, mask_cat, train_params.token_dropout, dropout)
            out = model(projected, mask_cat)
            loss_task = task_loss(out.logits, labels, task)
            loss_int = model.interaction_loss(projected, mask_cat, out, generator=perturb)
            loss = loss_task + model.lambda_int * loss_int
            if not torch.isfinite(loss):
                raise TrainingError(f"{name} seed {seed}, epoch {epoch}, batch {batch}: the loss is {loss.item()} "
                                    f"(task {loss_task.item()}, interaction {loss_int.item()}) on train rows "
                                    f"{sorted(index.tolist())[:8]}; lower train.lr or check the features")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in (("loss", loss), ("task_loss", loss_task), ("interaction_loss", loss_int)):
                sums[key] += value.item() * len(index)
        val_scores = task_metrics(predict(model, val, train_params.batch_size, device)[0].numpy(),
                                  val.labels.numpy(), task)
        # val_score is the selection metric under one name for every task, so that one plot serves them all.
        row = {"epoch": epoch, **{k: v / len(train) for k, v in sums.items()}, "val_score": val_scores[metric],
               **{f"val_{k}": v for k, v in val_scores.items()}}
        curves.append(row)
        log.info("%s seed %d epoch %d/%d: loss %.4f (task %.4f, interaction %.4f), val %s %.4f", name, seed, epoch,
                 train_params.epochs, row["loss"], row["task_loss"], row["interaction_loss"], metric, val_scores[metric])
        if val_scores[metric] > best_score:
            best_score, best_epoch = val_scores[metric], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif train_params.patience is not None and epoch - best_epoch >= train_params.patience:
            log.info("%s seed %d: no better validation score in %d epochs, stopped", name, seed, train_params.patience)
            break
    seconds = time.perf_counter() - start

    model.load_state_dict(best_state)
    val_logits, _ = predict(model, val, train_params.batch_size, device)
    test_logits, test_weights = predict(model, splits["test"], train_params.batch_size, device)
    return SeedRun(
        state_dict={k: v.detach().cpu().contiguous() for k, v in best_state.items()},
        best_epoch=best_epoch,
        curves=curves,
        val=task_metrics(val_logits.numpy(), val.labels.numpy(), task),
        test=task_metrics(test_logits.numpy(), splits["test"].labels.numpy(), task),
        test_weights=test_weights,
        seconds=seconds,
    )
