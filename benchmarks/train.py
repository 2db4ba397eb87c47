"""Training throughput, batched experts against the per-expert reference: `python benchmarks/train.py [dataset ...]`.

FL-I2MoE, moe_plain and the dense model share H, L and heads (params.yaml) and run on the same batches of each
feature set (ENRICO and synthetic unless named; run `dvc repro extract` first), each with the batched experts (`fusion.run_experts`)
and with the per-expert computation they replaced (tests/reference_fusion.py), measured side by side in this
run. FL-I2MoE's interaction losses cost M extra (perturbed) passes per expert, so one training step costs about
K * (M + 1) dense passes in theory; moe_plain costs K. The script prints each speed-up and the measured cost
ratios beside those theoretical ones.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from fli2moe.features import load_split_tensors, read_manifest
from fli2moe.models import build_model
from fli2moe.params import load_params
from fli2moe.training import model_config, task_loss

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from reference_fusion import per_expert_reference  # noqa: E402

STEPS = 30  # 12 steps left the ratios +-7% from run to run


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


def benchmark(dataset: str) -> None:
    params = load_params(REPO / "params.yaml")
    manifest = read_manifest(REPO / "features" / dataset)
    train = load_split_tensors(REPO / "features" / dataset, "train", manifest)
    K, M = params.moe.num_experts, len(manifest["modalities"])
    print(f"\n{dataset} features ({manifest['modalities'][0]['tokens']} + {manifest['modalities'][1]['tokens']} tokens), H {params.model.hidden}, L {params.model.layers}, heads {params.model.heads}, "
          f"K {K}, M {M}, batch {params.train.batch_size}, torch threads {torch.get_num_threads()}")
    speeds = {}
    for path, context in (("reference", per_expert_reference), ("batched", nullcontext)):
        with context():
            speeds[path] = {name: samples_per_second(name, manifest, train, params)
                            for name in ("dense", "moe_plain", "fl_i2moe")}
    print(f"{'model':10s} {'reference':>10s} {'batched':>10s} {'speed-up':>9s}   cost vs dense: "
          f"reference  batched  theory   (samples/s)")
    for name, theory in (("dense", 1), ("moe_plain", K), ("fl_i2moe", K * (M + 1))):
        ref, new = speeds["reference"][name], speeds["batched"][name]
        print(f"{name:10s} {ref:10.1f} {new:10.1f} {new / ref:8.2f}x   {' ' * 15}"
              f"{speeds['reference']['dense'] / ref:9.2f} {speeds['batched']['dense'] / new:8.2f} {theory:7d}")


def main() -> None:
    for dataset in sys.argv[1:] or ["enrico", "synthetic"]:
        benchmark(dataset)


if __name__ == "__main__":
    main()
