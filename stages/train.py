"""train@<dataset>-<model>: the model on features/<dataset>, one run per seed -> checkpoints/<dataset>-<model>/."""

import logging
import sys

import torch
from safetensors.torch import save_file

from fli2moe.artifacts import atomic_folder, write_csv, write_json
from fli2moe.features import load_split_tensors, read_manifest
from fli2moe.models import build_model, num_parameters
from fli2moe.runtime import pick_device
from fli2moe.stage_args import open_stage, refusals
from fli2moe.task_metrics import aggregate, per_seed
from fli2moe.training import TrainingError, model_config, train_seed


def main() -> int:
    args, params = open_stage("train", __doc__, model=True)
    key = args.key
    with refusals(args.label):
        device = pick_device(params.device)
        manifest = read_manifest(f"features/{args.dataset}")
        config = model_config(args.model, manifest, params.model, params.moe)
        splits = {s: load_split_tensors(f"features/{args.dataset}", s, manifest) for s in ("train", "val", "test")}
    torch.use_deterministic_algorithms(True)

    train_params = params.train.for_dataset(args.dataset)
    with refusals(args.label, (TrainingError,)):  # nothing is written: a diverged seed invalidates the run
        runs = [train_seed(args.model, config, splits, manifest["task"], train_params, seed, device)
                for seed in train_params.seeds]

    with atomic_folder(f"checkpoints/{key}") as folder:
        write_json(folder / "config.json", {"model": args.model, "dataset": args.dataset,
                                            "config": config.to_dict(), "seeds": train_params.seeds})
        for seed, run in zip(train_params.seeds, runs):
            save_file(run.state_dict, folder / f"seed{seed}.safetensors")
        save_file({"weights": torch.stack([r.test_weights for r in runs]).contiguous(),  # [S, N_test, E]
                   "seeds": torch.tensor(train_params.seeds)}, folder / "test_routing.safetensors")
    parameters = num_parameters(build_model(args.model, config))
    write_json(f"metrics/train/{key}.json", {
        "model": args.model, "dataset": args.dataset, "parameters": parameters,
        "best_epoch": per_seed(train_params.seeds, [r.best_epoch for r in runs]),
        "epochs_run": per_seed(train_params.seeds, [len(r.curves) for r in runs]),  # < train.epochs: stopped early
        "test": aggregate([r.test for r in runs]), "val": aggregate([r.val for r in runs]),
    })
    write_csv(f"metrics/train/curves/{key}.csv",
              [{"seed": seed, **row} for seed, run in zip(train_params.seeds, runs) for row in run.curves])
    # Timings vary run to run: kept apart so that the metrics above are byte-identical across runs.
    write_json(f"timing/train/{key}.json", {
        "seconds_per_seed": aggregate([{"seconds": r.seconds} for r in runs])["seconds"],
        "seconds_total": sum(r.seconds for r in runs)})
    summary = aggregate([r.test for r in runs])
    logging.info("%s: %d parameters, test %s", key, parameters,
                 ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
