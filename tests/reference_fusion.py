"""The fusion experts as they were computed before the batched implementation (issue 15): one expert at a
time, attention written out, `nn.Dropout` on the residual branches. Kept as the per-expert reference that
`tests/test_batched_experts.py` checks the batched experts against and `benchmarks/train.py` times.

`per_expert_reference()` swaps it in for `fusion.run_experts`, the one function every model calls.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from fli2moe.models import fusion


def attention(attn, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """x [B, T, H], mask [B, T] -> (output [B, T, H], probabilities [B, heads, T, T])."""
    B, T, H = x.shape
    q, k, v = attn.qkv(x).view(B, T, 3, attn.heads, H // attn.heads).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-2, -1) / math.sqrt(H // attn.heads)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    has_key = mask.any(-1)[:, None, None, None]
    probs = scores.masked_fill(~has_key, 0.0).softmax(-1) * has_key
    y = (probs @ v).transpose(1, 2).reshape(B, T, H)
    return attn.out(y), probs


def expert_forward(expert, x: Tensor, mask: Tensor, dropout: float):
    """One expert: x [B, T, H] embedded tokens -> (logits [B, C], latent [B, M*H], attentions per layer)."""
    attentions = []
    for block in expert.blocks:
        attended, probs = attention(block.attn, block.ln_attn(x), mask)
        x = x + F.dropout(attended, dropout, expert.training)
        x = x + F.dropout(block.mlp(block.ln_mlp(x)), dropout, expert.training)
        attentions.append(probs)
    z = fusion.masked_modality_mean(expert.ln_final(x), mask, expert.slices).flatten(1)
    return expert.head(z), z, attentions


def run_experts_per_expert(experts, x: Tensor, mask: Tensor, return_attention: bool = False) -> fusion.ExpertOutput:
    outputs = [expert_forward(e, x, mask, e.dropout) for e in experts]
    return fusion.ExpertOutput(torch.stack([o[0] for o in outputs], 1), torch.stack([o[1] for o in outputs], 1),
                               [o[2] for o in outputs] if return_attention else None)


@contextmanager
def per_expert_reference():
    """Inside, every model runs its experts one at a time with the reference code above."""
    batched = fusion.run_experts
    fusion.run_experts = run_experts_per_expert
    try:
        yield
    finally:
        fusion.run_experts = batched
