"""The one masking operator of every explanation (docs/design.md section 5), and the target it scores.

A token is *removed* by replacing its projected vector with a baseline vector of its slot:

    remove(x, keep)[t] = x[t] if keep[t] else baseline[t]        x [T, H], baseline [T, H]

before the modality and position embeddings are added, so a removed token keeps its slot (position and
modality) and only loses its content; one shared token front means it is removed for every expert at
once. Padded slots (mask False) are never replaced: removing one is a no-op, and the models ignore
what a padded slot holds anyway. Baselines (`explain.baseline`): "mean" = per-modality mean of the
projected real training tokens (the same vector in every slot of a modality), "zero" = zeros.

The target (fixed on the unmasked input, then held for every masked variant of it):
- multiclass: the predicted class;
- multilabel: the predicted-positive labels (logit > 0), or the top-1 label when none is positive.
A score is the mean over the target labels of a quantity q: "logit", or "prob" (softmax probability
for multiclass, sigmoid for multilabel):  score(x) = mean_{c in target} q(x)_c.
The contribution of expert e is w_e * mean_{c in target} logit_e(x)_c, always on the logit scale
(an expert has no probability of its own).

`masked_scores` evaluates one model on many (example, keep-mask) pairs in chunked batched forward
passes, deterministically: the score of a mask is bitwise independent of the chunk it lands in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from fli2moe.features import SplitTensors

BASELINES = ("mean", "zero")
QUANTITIES = ("logit", "prob")
TASKS = ("multiclass", "multilabel")
DEFAULT_MAX_ROWS = 64  # masked inputs per forward pass (params.yaml explain.max_batch)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside (no dropout: an explanation must not be random), the previous mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def modality_ids(model) -> Tensor:
    """[T] int64: the index (in config order) of the modality that owns each token slot."""
    sizes = torch.tensor([s.stop - s.start for s in model.modality_slices.values()])
    return torch.repeat_interleave(torch.arange(len(sizes)), sizes)


@torch.no_grad()
def baseline_vectors(model, split: SplitTensors, kind: str, batch_size: int = 256) -> Tensor:
    """The baseline of every token slot in projected space, [T, W] (W = `model.front.width`), on the model's device.

    mean: baseline[t] = sum over the split's real tokens u of modality m(t) of project(u), divided by their
    count (every real token weighs the same, whatever its example's length); a modality without any real
    token gets zeros. zero: baseline = 0. Chunked (`batch_size` examples at a time), float64 sums.
    """
    if kind not in BASELINES:
        raise ValueError(f"explain.baseline must be one of {list(BASELINES)}, got {kind!r}")
    weight = next(model.parameters())
    ids = modality_ids(model).to(weight.device)  # [T]
    T, W, M = len(ids), model.front.width, len(model.modality_slices)
    if kind == "zero":
        return torch.zeros(T, W, dtype=weight.dtype, device=weight.device)
    sums = torch.zeros(M, W, dtype=torch.float64, device=weight.device)
    counts = torch.zeros(M, dtype=torch.float64, device=weight.device)
    for index in torch.arange(len(split)).split(batch_size):
        tokens, mask, _ = split.batch(index, weight.device)
        projected, real = model.project(tokens), model.concat_mask(mask)  # [b, T, W], [b, T]
        per_slot = projected.masked_fill(~real[..., None], 0.0).sum(0).double()  # [T, W]
        sums.index_add_(0, ids, per_slot)
        counts.index_add_(0, ids, real.sum(0).double())
    means = sums / counts.clamp(min=1)[:, None]  # [M, W]
    return means[ids].to(weight.dtype)  # [T, W]


def remove_tokens(projected: Tensor, keep: Tensor, baseline: Tensor, mask: Tensor | None = None) -> Tensor:
    """projected [..., T, H], keep [..., T] bool, baseline [T, H] -> [..., T, H].

    Slots with keep False get the baseline vector; the others are returned untouched. With `mask`
    ([..., T], True = real token), padded slots are never replaced, so removing one is a no-op.
    """
    if mask is not None:
        keep = keep | ~mask
    return torch.where(keep[..., None], projected, baseline.to(projected.dtype))


def target_labels(logits: Tensor, task: str) -> Tensor:
    """logits [B, C] -> target [B, C] bool: one-hot argmax (multiclass); logit > 0, else the top-1 (multilabel)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    top1 = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.argmax(-1, keepdim=True), True)
    if task == "multiclass":
        return top1
    positive = logits > 0
    return torch.where(positive.any(-1, keepdim=True), positive, top1)


def target_logit(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over the target labels: logits [..., C], target [..., C] bool (broadcastable) -> [...]."""
    return torch.where(target, logits, 0.0).sum(-1) / target.sum(-1)


def target_score(logits: Tensor, target: Tensor, task: str, quantity: str = "logit") -> Tensor:
    """score = mean_{c in target} q_c with q = logits, softmax(logits) (multiclass) or sigmoid (multilabel)."""
    if quantity not in QUANTITIES:
        raise ValueError(f"score quantity must be one of {list(QUANTITIES)}, got {quantity!r}")
    if quantity == "logit":
        return target_logit(logits, target)
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    return target_logit(logits.softmax(-1) if task == "multiclass" else logits.sigmoid(), target)


class MaskedScores(NamedTuple):
    whole: Tensor  # [B, K]: score(remove(x_b, keeps[b, k])) of the whole model, routing recomputed
    expert: Tensor  # [B, K, E]: w_e(x_b) * mean target logit_e(remove(x_b, keeps[b, k])), routing held


@torch.no_grad()
def masked_scores(model, projected: Tensor, mask: Tensor, keeps: Tensor, baseline: Tensor, target: Tensor,
                  task: str, quantity: str = "logit", max_batch: int = DEFAULT_MAX_ROWS) -> MaskedScores:
    """Scores of B examples under K keep-masks each, in chunked batched forward passes.

    projected [B, T, H], mask [B, T], keeps [B, K, T] bool, target [B, C] bool (one example: drop the B axis
    everywhere, the outputs lose it too). Returns `MaskedScores` (whole [B, K], expert [B, K, E]).

    The whole-model score is what the model predicts on the masked input (its router sees that input). The
    expert contributions hold the routing weights at their value on the unmasked input, as the
    attributions do, so that they measure what an expert map explains.

    The B*K masked inputs are built chunk by chunk (memory O(max_batch * T * H)) and every forward pass has
    exactly `max_batch` rows (`fixed_shape_chunks`), so the score of a mask is bitwise independent of the
    chunk it lands in. Small calls pay for a whole chunk: pick max_batch for the big ones.
    Eval mode (no dropout) inside; the model's mode is restored after.
    """
    single = projected.dim() == 2
    if single:
        projected, mask, keeps, target = projected[None], mask[None], keeps[None], target[None]
    B, K, T = keeps.shape
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    whole, expert = [], []
    with evaluating(model):
        # Routing weights on the unmasked inputs, through the same fixed-shape passes.
        weights = torch.cat([model(projected[b], mask[b]).weights[:n]
                             for b, n in fixed_shape_chunks(B, max_batch, projected.device)])  # [B, E]
        for b, logits, expert_logits in masked_forward(model, projected, mask, keeps, baseline, max_batch):
            whole.append(target_score(logits, target[b], task, quantity))
            expert.append(weights[b] * target_logit(expert_logits, target[b, None]))
    scores = MaskedScores(torch.cat(whole).view(B, K), torch.cat(expert).view(B, K, -1))
    return MaskedScores(*(s[0] for s in scores)) if single else scores


def masked_forward(model, projected: Tensor, mask: Tensor, keeps: Tensor, baseline: Tensor,
                   max_batch: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The model on remove(x_b, keeps[b, k]) for every (b, k) in row-major order, chunk by chunk:
    (example index [n], logits [n, C], expert_logits [n, E, C]) per chunk. projected [B, T, H], mask [B, T],
    keeps [B, K, T] bool. Fixed-shape chunks (`fixed_shape_chunks`); the caller sets eval mode and no_grad.
    """
    B, K, T = keeps.shape
    keeps = keeps.to(projected.device).reshape(B * K, T)
    example = torch.arange(B, device=projected.device).repeat_interleave(K)  # [B*K]: row -> example
    for rows, n in fixed_shape_chunks(B * K, max_batch, projected.device):
        b = example[rows]
        out = model(remove_tokens(projected[b], keeps[rows], baseline, mask[b]), mask[b])
        yield b[:n], out.logits[:n], out.expert_logits[:n]


def fixed_shape_chunks(rows: int, max_batch: int, device=None) -> Iterator[tuple[Tensor, int]]:
    """(index [max_batch], n) per chunk of range(rows): n real rows, then the last one repeated.

    Every forward pass then has the same shape: CPU matmul kernels are picked by shape, so the same row in
    a batch of another size can round differently (~1e-7 measured); with one shape a row's output is
    bitwise the same whichever chunk, position or company it is evaluated in.
    """
    for index in torch.arange(rows, device=device).split(max_batch):
        yield torch.cat([index, index[-1:].expand(max_batch - len(index))]), len(index)
