"""Probing examples in single-threaded worker processes against one process with all the threads.

    python benchmarks/probe_workers.py [--examples 16] [--candidates 6] [--evaluations 1000] [--repeats 2]

On the first test examples of ENRICO and the FL-I2MoE of seed 0 of the default run (features/enrico,
checkpoints/ and results/attribution/ from `dvc repro`), `probing.probe_examples` with the probe section of
params.yaml runs as the probe stage runs it (`workers` = the CPU threads, one thread each) and, as the
reference in the same run, in one process with all the threads (workers = 1); the two alternate --repeats
times. Printed: wall seconds per example of each (best of the repeats), their ratio, and whether the
estimates are bitwise the same. The models' small tensor ops (H = 64, 64 tokens) scale badly over threads,
so processes win on a CPU with few cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from fli2moe.explaining import explained_examples, seed_folder
from fli2moe.params import load_params
from fli2moe.probing import probe_examples

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--candidates", default="6", help="tokens per modality, or all")
    parser.add_argument("--evaluations", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    probe = params.probe.for_dataset("enrico")
    maps = REPO / "results" / "attribution" / "enrico-fl_i2moe"
    if not (maps / "skipped.json").exists():
        raise SystemExit("no attribution maps: run `dvc repro attribute@enrico-fl_i2moe` first")
    ex = explained_examples("enrico", "fl_i2moe", params.explain, args.examples, 0, str(REPO / "features"),
                            str(REPO / "checkpoints"))
    whole = load_file(seed_folder(maps, 0) / "maps.safetensors")
    rows = {int(index): row for row, index in enumerate(whole["index"].tolist())}
    whole = whole["whole"][[rows[index] for index in ex.index.tolist()]]  # [N, T]
    context = ex.context(probe.quantity, params.explain.max_batch)
    candidates = args.candidates if args.candidates == "all" else int(args.candidates)
    threads = torch.get_num_threads()

    def run(workers: int) -> tuple[float, list]:
        start = time.perf_counter()
        results = probe_examples(context, ex.projected, ex.mask, ex.target, whole, candidates_per_modality=candidates,
                                 estimator=probe.estimator, indices=probe.indices, evaluations=args.evaluations,
                                 rg_keep=probe.rg_keep, scheme=probe.scheme, contenders=probe.contenders,
                                 screen_share=probe.screen_share, seed=params.seed, example_index=ex.index.tolist(),
                                 workers=workers)
        return (time.perf_counter() - start) / len(results), results

    print(f"ENRICO FL-I2MoE seed 0, {len(ex.index)} test examples, {args.candidates} candidates per modality, "
          f"{probe.estimator} ({probe.scheme}) at {args.evaluations} evaluations per example, {threads} CPU threads")
    seconds = {1: [], threads: []}
    results = {}
    for _ in range(args.repeats):
        for workers in seconds:
            elapsed, results[workers] = run(workers)
            seconds[workers].append(elapsed)
    same = all(torch.equal(getattr(a.interactions[name], field), getattr(b.interactions[name], field))
               for a, b in zip(results[1], results[threads], strict=True) for name in probe.indices
               for field in ("value", "se", "samples"))
    reference, processes = min(seconds[1]), min(seconds[threads])
    evaluations = sum(r.evaluations for r in results[1]) / len(results[1])
    print(f"1 process x {threads} threads: {reference:.2f} s per example ({evaluations / reference:.0f} evaluations/s)")
    print(f"{threads} processes x 1 thread: {processes:.2f} s per example ({evaluations / processes:.0f} evaluations/s),"
          f" {reference / processes:.2f}x faster; estimates bitwise the same: {same}")


if __name__ == "__main__":
    main()
