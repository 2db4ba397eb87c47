"""The experiments at a glance: headline figures and verdicts of every `dvc exp` experiment, in 120 columns.

    python -m fli2moe.experiments            # the workspace, HEAD and HEAD's experiments
    python -m fli2moe.experiments -A         # every commit and its experiments (any `dvc exp show` flag)

`dvc exp show` has one column per param and metric (hundreds) under long names. This reads its JSON
(`dvc exp show --json`, DVC's own rendering of each experiment's params.yaml and reports/summary.json)
and prints two narrow tables: per experiment, the claims' verdict counts and the params that differ
from the first row; per experiment, dataset and model, the headline figures of reports/summary.json
at the smallest pair-masking budget. Rows without a summary (failed or queued experiments) are listed
with their state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pandas as pd

# summary.json key (under <dataset>.<model>) -> column; the probed indices' columns are added per run
# (mean_abs_<index> -> |<index>|, budget_<b>.<index>_vs_random_candidates -> <index>@<b>, see `figures`).
FIGURES = {"test_accuracy": "acc", "test_macro_f1": "macro_f1", "gini": "gini", "synergy_precision@1": "syn_p@1",
           "redundancy_precision@1": "red_p@1"}
GAP_PREFIX = "comprehensiveness_gap_"  # one figure per modality: comp_gap is their mean
VERDICTS = ("supported", "mixed", "not_supported", "inconclusive")


def experiments(show: list[dict]) -> list[dict]:
    """Flatten `dvc exp show --json` into one record per row: name, rev, state, params, summary (or None)."""
    records = []
    for row in show:
        for entry in [row, *(rev for exp in row.get("experiments") or [] for rev in exp["revs"])]:
            data = entry.get("data") or {}
            summary = ((data.get("metrics") or {}).get("reports/summary.json") or {}).get("data")
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
            rev = entry["rev"]
            records.append({"name": entry.get("name") or (rev if rev == "workspace" else rev[:7]), "rev": rev,
                            "state": (data.get("meta") or {}).get("status") or ("error" if entry.get("error") else ""),
                            "params": params, "summary": summary})
    return records


def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-4}} -> {"train.lr": 1e-4}; lists stay values."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_params(params: dict, reference: dict) -> str:
    """`key=value` for every param that differs from `reference` (both nested), sorted by key."""
    ours, theirs = flat(params), flat(reference)
    return " ".join(f"{k}={ours.get(k)}" for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k))


def verdict_table(records: list[dict]) -> pd.DataFrame:
    reference = records[0]["params"] if records else {}
    rows = []
    for r in records:
        claims = (r["summary"] or {}).get("claims", {})
        rows.append({"experiment": r["name"], **{v: claims.get(v, "") for v in VERDICTS},
                     "changed params": changed_params(r["params"], reference) or r["state"]})
    return pd.DataFrame(rows, columns=["experiment", *VERDICTS, "changed params"])


def figures(records: list[dict]) -> pd.DataFrame:
    """One row per (experiment, dataset, model): the mean over seeds of the FIGURES, of the comprehensiveness gap
    over modalities (comp_gap), of each probed index's mean |value| and of its ranked - random-candidate
    pair-masking gain at the smallest budget (sii@b, rg@b, ...); blank where a model has no such figure."""
    rows = []
    for r in records:
        for dataset, models in (r["summary"] or {}).items():
            if dataset in ("claims", "verdicts"):
                continue
            for model, entry in models.items():
                row = {"experiment": r["name"], "dataset": dataset, "model": model}
                row.update({column: mean(entry[key]) for key, column in FIGURES.items() if key in entry})
                gaps = [mean(value) for key, value in entry.items() if key.startswith(GAP_PREFIX)]
                if gaps:
                    row["comp_gap"] = sum(gaps) / len(gaps)
                row.update({f"|{key.removeprefix('mean_abs_')}|": mean(value) for key, value in entry.items()
                            if key.startswith("mean_abs_")})
                budgets = sorted((k for k in entry if k.startswith("budget_")), key=lambda k: int(k.split("_")[1]))
                if budgets:
                    b = budgets[0].split("_")[1]
                    row.update({f"{key.removesuffix('_vs_random_candidates')}@{b}": mean(value)
                                for key, value in entry[budgets[0]].items()})
                rows.append(row)
    columns = ["experiment", "dataset", "model", *(c for c in ("acc", "macro_f1", "comp_gap", "gini", "syn_p@1",
                                                              "red_p@1") if any(c in row for row in rows))]
    frame = pd.DataFrame(rows)
    return frame[columns + [c for c in frame.columns if c not in columns]] if rows else frame


def mean(figure) -> float:
    """A headline figure's mean over seeds ({mean, std, seeds, ...}); a summary written before issue 19 holds
    the number itself."""
    return figure["mean"] if isinstance(figure, dict) else figure


def render(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    return frame.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.3f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    result = subprocess.run(["dvc", "exp", "show", "--json", *argv], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"experiments: dvc exp show failed: {result.stderr.strip()}", file=sys.stderr)
        return 2
    records = experiments(json.loads(result.stdout))
    print(render(verdict_table(records)))
    print()
    print(render(figures(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
