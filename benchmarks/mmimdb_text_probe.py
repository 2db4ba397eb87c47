"""Real-text check of the MiniLM text path: a linear genre probe on MM-IMDb's real dev plots.

    python benchmarks/mmimdb_text_probe.py [--csv ../shared/data/mmimdb/val_text.csv]

val_text.csv holds the 2608 real dev plots of MM-IMDb with their 23 genre columns (see the
PROVENANCE.md beside it). Each plot is encoded with the packaged all-MiniLM-L6-v2 (the `minilm`
text encoder of `extract`, 128 tokens) and mean-pooled over its attention mask. The films are cut
70/30 with a fixed seed; a one-vs-rest logistic regression on standardised features is trained on
the 70% and scored on the 30% (micro and macro F1, threshold 0.5), beside two references that
never look at the text:
- majority: for each genre, the value most training films have (here: Drama for everyone);
- top-k: the k most frequent training genres for everyone, k chosen on the training films.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fli2moe.datasets.mmimdb import GENRES
from fli2moe.encoders import minilm

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmimdb" / "val_text.csv"
MAX_TOKENS, BATCH, SEED, TEST_FRACTION = 128, 64, 0, 0.3


def read_plots(path: Path) -> tuple[list[str], np.ndarray]:
    """Plots and their 0/1 labels [N, 23] in the order of GENRES."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["plots"] for r in rows], np.array([[int(r[g]) for g in GENRES] for r in rows])


def embed(texts: list[str]) -> np.ndarray:
    """Mean over the attention mask of MiniLM's last hidden states: [N, 384]."""
    encoder = minilm(MAX_TOKENS)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            tokens, mask = encoder.encode(encoder.preprocessor.collate(texts[start:start + BATCH]))
            out.append(((tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy())
    return np.concatenate(out)


def f1s(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    return (f1_score(y_true, y_pred, average="micro", zero_division=0),
            f1_score(y_true, y_pred, average="macro", zero_division=0))


def top_k(y_train: np.ndarray) -> tuple[int, np.ndarray]:
    """k and the 0/1 row 'the k most frequent genres' that maximise micro-F1 on the training films."""
    order = np.argsort(-y_train.sum(0), kind="stable")
    best = None
    for k in range(1, len(order) + 1):
        row = np.isin(np.arange(y_train.shape[1]), order[:k]).astype(int)
        score = f1s(y_train, np.tile(row, (len(y_train), 1)))[0]
        if best is None or score > best[0]:
            best = (score, k, row)
    return best[1], best[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args()
    if not args.csv.is_file():
        print(f"mmimdb_text_probe: skipped, {args.csv} not found (the real MM-IMDb dev plots)", file=sys.stderr)
        return 0
    torch.set_num_threads(2)
    plots, y = read_plots(args.csv)
    start = time.perf_counter()
    x = embed(plots)
    print(f"{len(plots)} real MM-IMDb dev plots encoded with MiniLM ({MAX_TOKENS} tokens, mean-pooled) "
          f"in {time.perf_counter() - start:.0f} s")

    order = np.random.default_rng(SEED).permutation(len(plots))
    cut = int(round(len(plots) * (1 - TEST_FRACTION)))
    train, test = order[:cut], order[cut:]
    probe = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(max_iter=2000)))
    probe.fit(x[train], y[train])
    majority = (y[train].mean(0) > 0.5).astype(int)
    k, top = top_k(y[train])
    rows = [("text probe (MiniLM + one-vs-rest logistic regression)", probe.predict(x[test])),
            (f"majority per genre ({', '.join(np.array(GENRES)[majority == 1]) or 'none'} for everyone)",
             np.tile(majority, (len(test), 1))),
            (f"top-{k} most frequent genres for everyone ({', '.join(np.array(GENRES)[top == 1])})",
             np.tile(top, (len(test), 1)))]
    print(f"held-out {len(test)} of {len(plots)} films (seed {SEED}), threshold 0.5")
    print(f"{'micro-F1':>9} {'macro-F1':>9}  predictor")
    for name, pred in rows:
        micro, macro = f1s(y[test], pred)
        print(f"{micro:>9.3f} {macro:>9.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
