"""The opening every stage script shares: its command line, logging, validated params, and one rule for bad
input: a stage refuses it with one line `<stage> <key>: <message>` on stderr and exit status 2, nothing written.

    args, params = open_stage("attribute", __doc__, model=True)
    with refusals(args.label):
        ...  # read the inputs; a ValueError (ParamsError, FeatureSetError, DataError...) or a missing file refuses
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fli2moe.params import KNOWN_MODELS, Params
from fli2moe.runtime import load_stage_params

# Every error of the library that means bad input is a ValueError (ParamsError, FeatureSetError, DataError,
# EncoderError, TrainingError); a missing upstream output is a FileNotFoundError.
REFUSED = (ValueError, FileNotFoundError)


@contextmanager
def refusals(label: str, errors: tuple[type[Exception], ...] = REFUSED) -> Iterator[None]:
    """Inside, one of `errors` prints `<label>: <message>` to stderr and exits with status 2."""
    try:
        yield
    except errors as e:
        print(f"{label}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def open_stage(stage: str, description: str, *, dataset: bool = True, model: bool = False,
               options: Callable[[argparse.ArgumentParser], None] | None = None) -> tuple[argparse.Namespace, Params]:
    """Parse `--dataset` (when `dataset`), `--model` (when `model`), `--params` and the stage's own `options`,
    configure logging and load the params (CPU threads set from `threads`).

    Returns (args, params); args.key is "<dataset>-<model>", "<dataset>" or None, args.label "<stage> <key>".
    Raises SystemExit(2) with one line on stderr for invalid params.
    """
    parser = argparse.ArgumentParser(description=description)
    if dataset:
        parser.add_argument("--dataset", required=True)
    if model:
        parser.add_argument("--model", required=True, choices=KNOWN_MODELS)
    parser.add_argument("--params", default="params.yaml")
    if options is not None:
        options(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.key = None if not dataset else f"{args.dataset}-{args.model}" if model else args.dataset
    args.label = stage if args.key is None else f"{stage} {args.key}"
    with refusals(args.label):
        params = load_stage_params(args.params)
    return args, params
