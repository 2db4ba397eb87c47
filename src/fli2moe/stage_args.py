"""The command line shared by the per-(dataset, model) stages: train, attribute, probe, ablate."""

from __future__ import annotations

import argparse
import logging

from fli2moe.models import MODEL_NAMES


def model_stage_arguments(description: str) -> argparse.Namespace:
    """--dataset, --model, --params, plus `key` = "<dataset>-<model>"; configures logging."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True, choices=MODEL_NAMES)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.key = f"{args.dataset}-{args.model}"
    return args
