"""Cost of each attribution method against one plain forward + backward pass: `python benchmarks/attribute.py`.

On the ENRICO feature set (run `dvc repro extract@enrico` first) with FL-I2MoE and dense models at the
params.yaml sizes (random weights: the cost does not depend on them), for a batch of test examples:
seconds per example of each method, and the ratio to one forward + backward pass of the same model on
the same batch, measured in this run.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from fli2moe.attribution import METHODS, attribute
from fli2moe.features import load_split_tensors, read_manifest
from fli2moe.masking import target_labels
from fli2moe.models import build_model
from fli2moe.params import load_params
from fli2moe.training import model_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = 16
REPEATS = 3


def best_seconds(fn) -> float:
    """Fastest of REPEATS runs after a warm-up: the least disturbed by other work on the machine."""
    fn()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    params = load_params(REPO / "params.yaml")
    manifest = read_manifest(REPO / "features" / "enrico")
    test = load_split_tensors(REPO / "features" / "enrico", "test", manifest)
    tokens, mask, _ = test.batch(torch.arange(EXAMPLES), torch.device("cpu"))
    print(f"{EXAMPLES} ENRICO test examples, H {params.model.hidden}, L {params.model.layers}, "
          f"K {params.moe.num_experts}, IG steps {params.attribution.ig_steps}, torch threads {torch.get_num_threads()}")
    for name in ("fl_i2moe", "dense"):
        torch.manual_seed(0)
        model = build_model(name, model_config(name, manifest, params.model, params.moe)).eval()
        with torch.no_grad():
            projected, mask_cat = model.project(tokens), model.concat_mask(mask)
            target = target_labels(model(projected, mask_cat).logits, manifest["task"])
        baseline = torch.zeros(projected.shape[1:])

        def forward_backward():
            x = projected.detach().requires_grad_()
            model(x, mask_cat).logits.max(1).values.sum().backward()

        reference = best_seconds(forward_backward)
        print(f"{name}: forward+backward {1000 * reference / EXAMPLES:.2f} ms/example")
        for method in METHODS:
            seconds = best_seconds(lambda: attribute(model, projected, mask_cat, target, method, baseline,
                                                     params.attribution.ig_steps))
            print(f"  {method:22s} {1000 * seconds / EXAMPLES:8.2f} ms/example  {seconds / reference:6.1f}x forward+backward")


if __name__ == "__main__":
    main()
