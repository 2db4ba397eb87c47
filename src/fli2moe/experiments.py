"""The experiments at a glance: headline figures and verdicts of every `dvc exp` experiment, in 120 columns;
and named experiment sets (experiments.yaml), queued and judged claim by claim.

    python -m fli2moe.experiments            # the workspace, HEAD and HEAD's experiments
    python -m fli2moe.experiments -A         # every commit and its experiments (any `dvc exp show` flag)
    python -m fli2moe.experiments queue sensitivity            # dvc exp run --queue each experiment of the set
    python -m fli2moe.experiments claims sensitivity -o reports/sensitivity.md   # claim x experiment -> verdict

`dvc exp show` has one column per param and metric (hundreds) under long names. This reads its JSON
(`dvc exp show --json`, DVC's own rendering of each experiment's params.yaml and reports/summary.json)
and prints two narrow tables: per experiment, the claims' verdict counts and the params that differ
from the first row; per experiment, dataset and model, the headline figures of reports/summary.json
at the smallest pair-masking budget. Rows without a summary (failed or queued experiments) are listed
with their state.

`claims` reads the same JSON and writes, for the experiments of one set, a markdown table with one row per
claim and subject and one column per experiment: the verdict of the report's rule and the headline figure
behind it (mean ± seed std), then, for each claim the set's first experiment does not support, the experiments
that do. Nothing in it is typed by hand: rerun the command after the experiments to refresh it.
With `-o reports/<set>.md` it also keeps the results it tabled in `reports/<set>.json` (each experiment's rev,
baseline commit, overrides and summary.json) and reads them back next time: experiment refs are local to one
clone, so without the record a fresh clone could neither rebuild the committed table nor add one experiment to it
without re-running the others. A recorded result is used only while its overrides are still the set's, and only
when `dvc exp show` has no finished result of that name.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from dvc.utils.serialize import YAMLError, parse_yaml

from fli2moe.artifacts import atomic_open
from fli2moe.params import Params, load_params
from fli2moe.validation import ParamsError

# summary.json key (under <dataset>.<model>) -> column; the probed indices' columns are added per run
# (mean_abs_<index> -> |<index>|, budget_<b>.<index>_vs_random_candidates -> <index>@<b>, see `figures`).
FIGURES = {"test_accuracy": "acc", "test_macro_f1": "macro_f1", "routing_std": "rout_std", "gini": "gini",
           "synergy_precision@1": "syn_p@1", "redundancy_precision@1": "red_p@1"}
GAP_PREFIX = "comprehensiveness_gap_"  # one figure per modality: comp_gap is their mean
VERDICTS = ("supported", "mixed", "not_supported", "inconclusive")


def experiments(show: list[dict]) -> list[dict]:
    """Flatten `dvc exp show --json` into one record per row: name, rev, state, params, summary (or None).

    state: an experiment's executor state ("success", "running", "queued", "failed"; DVC 3 puts it beside the
    revs, under `executor`), "error" for a row DVC could not read, "" for a commit or the workspace.
    baseline: the commit an experiment was run from ("" for a commit or the workspace).
    """
    records = []
    for row in show:
        entries = [(row, None), *((rev, exp.get("executor")) for exp in row.get("experiments") or []
                                  for rev in exp["revs"])]
        for entry, executor in entries:
            baseline = "" if entry is row else row["rev"]
            data = entry.get("data") or {}
            summary = ((data.get("metrics") or {}).get("reports/summary.json") or {}).get("data")
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
            rev = entry["rev"]
            state = (executor or {}).get("state") or (data.get("meta") or {}).get("status") or ""
            records.append({"name": entry.get("name") or (rev if rev == "workspace" else rev[:7]), "rev": rev,
                            "baseline": baseline, "state": "error" if entry.get("error") else state,
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
    columns = ["experiment", "dataset", "model", *(c for c in ("acc", "macro_f1", "rout_std", "comp_gap", "gini",
                                                              "syn_p@1", "red_p@1") if any(c in row for row in rows))]
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


# --- named experiment sets -------------------------------------------------------------------------------

SETS_FILE = Path("experiments.yaml")
SUPPORTED = "supported"


def experiment_set(name: str, sets_file: Path = SETS_FILE, params_file: Path = Path("params.yaml")) -> dict[str, dict]:
    """{experiment: {dotted params key: value}} of set `name` in `sets_file`, each experiment's params.yaml
    (params_file with its overrides) validated as a stage would validate it.

    Raises ParamsError, naming the file, set, experiment and key: a missing or malformed file, an unknown set,
    a key params.yaml does not have, a value the stages would refuse.
    """
    try:  # DVC's YAML 1.2 parser, as for params.yaml: 1e-4 is a number, not a string
        sets = parse_yaml(sets_file.read_text(), str(sets_file))
    except (OSError, YAMLError) as e:
        raise ParamsError(f"{sets_file}: not a readable YAML file ({e})") from e
    if not isinstance(sets, dict) or name not in sets:
        known = ", ".join(sets) if isinstance(sets, dict) else "none"
        raise ParamsError(f"{sets_file}: no experiment set {name!r} (sets: {known})")
    chosen = sets[name]
    if not isinstance(chosen, dict) or not chosen:
        raise ParamsError(f"{sets_file}: {name} must map experiment names to params overrides, got {chosen!r}")
    load_params(params_file)  # the base file itself must be valid first
    base = parse_yaml(params_file.read_text(), str(params_file))
    for experiment, overrides in chosen.items():
        where = f"{sets_file}: {name}.{experiment}"
        if not isinstance(overrides, dict):
            raise ParamsError(f"{where} must map params keys to values, got {overrides!r}")
        try:
            Params.from_dict(overridden(base, overrides, where))
        except ParamsError as e:
            raise ParamsError(f"{where}: {e}") from e
    return chosen


def overridden(params: dict, overrides: dict, where: str) -> dict:
    """A copy of the nested `params` with each dotted key of `overrides` set, as `dvc exp run -S key=value` sets it;
    ParamsError for a key whose parent is not a mapping of params.yaml or that params.yaml does not hold."""
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise ParamsError(f"{where}: {key} is not a key of params.yaml")
        node[leaf] = value
    return out


def queue_commands(name: str, chosen: dict[str, dict]) -> list[list[str]]:
    """`dvc exp run --queue -n <set>-<experiment> -S key=value ...` per experiment; values as JSON, which the
    YAML that DVC parses them with reads back as the same value (a list stays a list, a string a string)."""
    return [["dvc", "exp", "run", "--queue", "-n", f"{name}-{experiment}",
             *(arg for key, value in overrides.items() for arg in ("-S", f"{key}={json.dumps(value)}"))]
            for experiment, overrides in chosen.items()]


# claim (a `verdicts` key of summary.json) -> (label, model or None for the subject's own, summary key) of the
# headline figures behind its verdict; a key ending in "_" is a prefix: every figure whose key starts with it.
CLAIM_FIGURES = {
    "task_performance": [("FL", "fl_i2moe", "test_"), ("dense", "dense", "test_"), ("plain", "moe_plain", "test_")],
    "reweighting_model": [("routing std", "fl_i2moe", "routing_std")],
    "faithfulness_of_the_expert-wise_attributions": [("comp. gap", "fl_i2moe", GAP_PREFIX)],
    "concentration": [("Gini", "fl_i2moe", "gini"), ("dense", "dense", "gini")],
    "planted-pair_recovery": [("syn P@1", None, "synergy_precision@1"), ("red P@1", None, "redundancy_precision@1")],
}


def subject_entry(summary: dict, subject: str) -> tuple[str, str | None]:
    """A verdict's subject ("enrico" or "enrico-fl_i2moe") -> (dataset, model or None)."""
    if subject in summary:
        return subject, None
    for dataset, models in summary.items():
        if isinstance(models, dict) and subject.startswith(f"{dataset}-") and subject[len(dataset) + 1:] in models:
            return dataset, subject[len(dataset) + 1:]
    return subject, None


def evidence(summary: dict, claim: str, subject: str) -> str:
    """The headline figures behind one verdict, "label mean ± std" joined by commas ("" when the summary holds
    none: the specificity claim's shares live in the attribution metrics)."""
    dataset, subject_model = subject_entry(summary, subject)
    models = summary.get(dataset) or {}
    if claim == "pair-level_masking":
        entry = models.get(subject_model) or {}
        budgets = sorted((k for k in entry if k.startswith("budget_")), key=lambda k: int(k.split("_")[1]))
        if not budgets:
            return ""
        b = budgets[0]
        return ", ".join(f"{key.removesuffix('_vs_random_candidates')}@{b.split('_')[1]} {spread(value, True)}"
                         for key, value in entry[b].items())
    parts = []
    for label, model, key in CLAIM_FIGURES.get(claim, []):
        entry = models.get(model or subject_model) or {}
        if key.endswith("_"):  # one figure per matching key, named by what follows the prefix
            parts += [f"{label} {k.removeprefix(key)} {spread(v)}" for k, v in entry.items() if k.startswith(key)]
        elif key in entry:
            parts.append(f"{label} {spread(entry[key])}")
    return ", ".join(parts)


def spread(figure, signed: bool = False) -> str:
    value = mean(figure)
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return f"{text} ± {figure['std']:.3f}" if isinstance(figure, dict) and "std" in figure else text


def set_results(records: list[dict], name: str, chosen: dict[str, dict],
                recorded: dict[str, dict] | None = None) -> list[tuple[str, dict | None]]:
    """(experiment, record) for each experiment of set `name`, in the set's order: the newest finished record
    of `<name>-<experiment>` in `records` (`dvc exp show` lists the newest first), else the `recorded` result
    (see `read_record`) when its overrides are still `chosen[experiment]`, else the newest unfinished record (for
    its state), else None."""
    out = []
    for e, overrides in chosen.items():
        mine = [r for r in records if r["name"] == f"{name}-{e}"]
        kept = (recorded or {}).get(e)
        if kept is not None and kept.get("overrides") != overrides:
            kept = None  # the set changed since: that result answers another question
        out.append((e, next((r for r in mine if finished(r)), None) or kept or next(iter(mine), None)))
    return out


def claims_markdown(columns: list[tuple[str, dict | None]], name: str, chosen: dict[str, dict]) -> str:
    """The markdown table of set `name` (module docstring) from its `set_results`. Raises ValueError when no
    experiment of the set has a result."""
    done = [(e, r) for e, r in columns if finished(r)]
    if not done:
        raise ValueError(f"no experiment of set {name!r} has results in `dvc exp show` or its record (queued from "
                         f"an earlier commit? add -A or --rev): queue them with `python -m fli2moe.experiments queue "
                         f"{name}`, then `dvc queue start -j 1`")
    rows = {}  # (claim, subject) -> None, in order of first appearance
    for _, r in done:
        for claim, subjects in r["summary"].get("verdicts", {}).items():
            for subject in subjects:
                rows.setdefault((claim, subject), None)
    lines = [f"# Verdicts across the `{name}` experiments", "",
             f"Made by `python -m fli2moe.experiments claims {name}` from `dvc exp show --json` and the results "
             f"it recorded earlier (`{name}.json` beside this file; each experiment below names its run): each "
             "cell is the verdict of the report's rule for that claim (reports/report.md) and the headline figures "
             "behind it, mean ± std over the trained seeds (pair-masking: ranked minus random-candidate drop at the "
             "smallest budget). The experiments and what they change (experiments.yaml):", ""]
    lines += [f"- **{e}**: " + (", ".join(f"`{k}={json.dumps(v)}`" for k, v in chosen[e].items()) or "params.yaml")
              + (f" (experiment {r['rev'][:7]} of commit {r['baseline'][:7]})" if finished(r) else
                 f" (no results: {(r['state'] or 'no summary') if r else 'not run'})")
              for e, r in columns]
    lines += ["", "| claim | subject | " + " | ".join(e for e, _ in done) + " |",
              "| :-- | :-- |" + " :-- |" * len(done)]
    for claim, subject in rows:
        cells = []
        for _, r in done:
            verdict = r["summary"].get("verdicts", {}).get(claim, {}).get(subject)
            figure = evidence(r["summary"], claim, subject) if verdict else ""
            cells.append(f"{verdict or '–'}" + (f" ({figure})" if figure else ""))
        lines.append(f"| {claim.replace('_', ' ')} | {subject} | " + " | ".join(cells) + " |")
    reference, others = done[0], done[1:]
    lines += ["", f"## What makes a claim hold that `{reference[0]}` does not support", ""]
    failing = [(c, s) for c, s in rows if reference[1]["summary"].get("verdicts", {}).get(c, {}).get(s) != SUPPORTED]
    for claim, subject in failing:
        holds = [f"{e} ({evidence(r['summary'], claim, subject) or SUPPORTED})" for e, r in others
                 if r["summary"].get("verdicts", {}).get(claim, {}).get(subject) == SUPPORTED]
        lines.append(f"- {claim.replace('_', ' ')}, {subject}: " + ("supported under " + "; ".join(holds) if holds
                     else f"supported under none of the {len(others)} other settings tried"))
    if not failing:
        lines.append(f"- none: `{reference[0]}` supports every claim it judges")
    return "\n".join(lines) + "\n"


def record(columns: list[tuple[str, dict | None]], name: str, chosen: dict[str, dict]) -> dict:
    """The JSON kept beside a set's table: {"set": name, "experiments": {experiment: {rev, baseline, overrides,
    summary}}} for each finished experiment of `columns` (`set_results`)."""
    return {"set": name, "experiments": {e: {"rev": r["rev"], "baseline": r["baseline"], "overrides": chosen[e],
                                             "summary": r["summary"]} for e, r in columns if finished(r)}}


def read_record(path: Path, name: str) -> dict[str, dict]:
    """{experiment: record} of the set's record file (`record`) at `path`, each as `experiments` shapes a
    finished one; {} when there is no file. ValueError naming the file when it is not such a record of set `name`."""
    if not path.exists():
        return {}
    try:
        kept = json.loads(path.read_text())
        if kept["set"] != name:
            raise ValueError(f"it records set {kept['set']!r}")
        return {e: {"name": f"{name}-{e}", "rev": str(r["rev"]), "baseline": str(r["baseline"]), "state": "success",
                    "overrides": dict(r["overrides"]), "params": {}, "summary": dict(r["summary"])}
                for e, r in kept["experiments"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a record of experiment set {name!r} ({e}); move it away to start afresh") from e


def finished(record: dict | None) -> bool:
    """A record with results of its own: `dvc exp show` gives a running, queued or failed experiment the
    metrics of its baseline commit."""
    return record is not None and bool(record["summary"]) and record["state"].lower() in ("", "success")


def exp_show(flags: list[str]) -> list[dict]:
    """The records of `dvc exp show --json <flags>`; RuntimeError with DVC's message when it fails."""
    result = subprocess.run(["dvc", "exp", "show", "--json", *flags], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dvc exp show failed: {result.stderr.strip()}")
    return experiments(json.loads(result.stdout))


def sets_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m fli2moe.experiments")
    commands = parser.add_subparsers(dest="command", required=True)
    queue = commands.add_parser("queue", help="queue every experiment of a set (dvc exp run --queue)")
    queue.add_argument("set")
    queue.add_argument("--dry-run", action="store_true", help="print the dvc commands instead of running them")
    table = commands.add_parser("claims", help="claim x experiment -> verdict and figures, as markdown")
    table.add_argument("set")
    table.add_argument("-o", "--output", type=Path, help="write the table here and its results beside it as .json "
                       "(atomically; read back next time) instead of printing it")
    table.add_argument("-A", "--all-commits", action="store_true", help="look at every commit's experiments")
    table.add_argument("--rev", help="look at the experiments of this commit (the one they were queued from)")
    args = parser.parse_args(argv)
    try:
        chosen = experiment_set(args.set)
        if args.command == "queue":
            for command in queue_commands(args.set, chosen):
                print(shlex.join(command))
                if not args.dry_run:
                    subprocess.run(command, check=True)
            return 0
        kept_at = args.output.with_suffix(".json") if args.output is not None else None
        recorded = read_record(kept_at, args.set) if kept_at is not None else {}
        flags = (["-A"] if args.all_commits else []) + (["--rev", args.rev] if args.rev else [])
        columns = set_results(exp_show(flags), args.set, chosen, recorded)
        text = claims_markdown(columns, args.set, chosen)
    except (ParamsError, ValueError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"experiments: {e}", file=sys.stderr)
        return 2
    if args.output is None:
        print(text, end="")
        return 0
    with atomic_open(kept_at) as f:
        json.dump(record(columns, args.set, chosen), f, indent=1)
        f.write("\n")
    with atomic_open(args.output) as f:
        f.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["queue"], ["claims"]):
        return sets_main(argv)
    try:
        records = exp_show(argv)
    except RuntimeError as e:
        print(f"experiments: {e}", file=sys.stderr)
        return 2
    print(render(verdict_table(records)))
    print()
    print(render(figures(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
