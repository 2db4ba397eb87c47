"""Training throughput of FL-I2MoE and moe_plain against the dense model: `python benchmarks/train.py`.

All three share H, L and heads (params.yaml) and run on the same batches of the ENRICO feature set
(run `dvc repro extract` first). FL-I2MoE's interaction losses cost M extra (perturbed) passes per
expert, so one training step costs about K * (M + 1) dense passes in theory; moe_plain costs K. The
script prints the measured ratios beside those theoretical ones.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from fli2moe.features import read_manifest
from fli2moe.models import build_model
from fli2moe.params import load_params
from fli2moe.training import load_split_tensors, model_config, task_loss

REPO = Path(__file__).resolve().parents[1]
STEPS = 12


def samples_per_second(name: str, manifest: dict, train, params) -> float:
    torch.manual_seed(0)
    model = build_model(name, model_config(name, manifest, params.model, params.moe))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.lr)
    generator = torch.Generator().manual_seed(0)
    batches = torch.arange(len(train)).split(params.train.batch_size)
    elapsed = 0.0
    for step in range(STEPS + 2):
        tokens, mask, labels = train.batch(batches[step % len(batches)], torch.device("cpu"))
        start = time.perf_counter()
        projected, mask_cat = model.project(tokens), model.concat_mask(mask)
        out = model(projected, mask_cat)
        loss = task_loss(out.logits, labels, manifest["task"])
        loss = loss + model.lambda_int * model.interaction_loss(projected, mask_cat, out, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 2:  # the first steps warm up allocators and kernels
            elapsed += time.perf_counter() - start
    return STEPS * params.train.batch_size / elapsed


def main() -> None:
    params = load_params(REPO / "params.yaml")
    manifest = read_manifest(REPO / "features" / "enrico")
    train = load_split_tensors(REPO / "features" / "enrico", "train", manifest)
    K, M = params.moe.num_experts, len(manifest["modalities"])
    print(f"ENRICO features, H {params.model.hidden}, L {params.model.layers}, heads {params.model.heads}, "
          f"K {K}, M {M}, batch {params.train.batch_size}, torch threads {torch.get_num_threads()}")
    dense = samples_per_second("dense", manifest, train, params)
    print(f"dense      {dense:8.1f} samples/s")
    for name, theory in (("moe_plain", K), ("fl_i2moe", K * (M + 1))):
        speed = samples_per_second(name, manifest, train, params)
        print(f"{name:10s} {speed:8.1f} samples/s   cost vs dense {dense / speed:5.2f}x (theory {theory}x)")


if __name__ == "__main__":
    main()
