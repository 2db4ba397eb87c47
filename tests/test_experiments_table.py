"""`python -m fli2moe.experiments`: the narrow experiments table built from `dvc exp show --json` (the shape DVC
3 prints: baseline rows, each with `experiments: [{revs: [...]}]`; the real command is run in test_experiments)."""

import json
from pathlib import Path

import pytest
import yaml

from fli2moe.experiments import (changed_params, claims_markdown, evidence, experiment_set, experiments, figures, main,
                                 overridden, queue_commands, render, set_results, verdict_table)
from fli2moe.validation import ParamsError


def rev(rev, name, summary, params):
    return {"rev": rev, "name": name, "error": None, "experiments": None,
            "data": {"rev": rev, "meta": {}, "params": {"params.yaml": {"data": params}},
                     "metrics": {"reports/summary.json": {"data": summary}} if summary else {}}}


PARAMS = {"seed": 42, "moe": {"num_experts": 4, "tau": 2.0}, "train": {"lr": 0.0003, "seeds": [0, 1, 2]}}
def fig(mean):
    return {"mean": mean, "std": 0.01, "seeds": 3, "low": mean - 0.02, "high": mean + 0.02}


SUMMARY = {"claims": {"supported": 7, "mixed": 4, "not_supported": 4, "inconclusive": 1},
           "verdicts": {"concentration": {"enrico": "not supported"}},
           "enrico": {"fl_i2moe": {"test_accuracy": fig(0.5057), "gini": fig(0.317), "mean_abs_sii": fig(0.002),
                                   "mean_abs_bii": fig(0.003), "comprehensiveness_gap_screenshot": fig(0.06),
                                   "comprehensiveness_gap_wireframe": fig(0.08),
                                   "budget_3": {"sii_vs_random_candidates": fig(-0.5),
                                                "rg_vs_random_candidates": fig(0.5),
                                                "bii_vs_random_candidates": fig(0.25)},
                                   "budget_10": {"sii_vs_random_candidates": fig(-0.9),
                                                 "rg_vs_random_candidates": fig(0.9)}},
                      "moe_plain": {"test_accuracy": fig(0.524)}}}
# A summary committed before issue 19 held plain numbers: `dvc exp show -A` still shows such commits.
OLD_SUMMARY = {"claims": {"supported": 7}, "enrico": {"fl_i2moe": {"test_accuracy": 0.5, "gini": 0.3}}}


def show_json():
    five = {**PARAMS, "moe": {"num_experts": 5, "tau": 2.0}}
    baseline = rev("0123456789abcdef", "main", SUMMARY, PARAMS)
    baseline["experiments"] = [{"revs": [rev("fedcba9876543210", "five-experts", SUMMARY, five)]},
                               {"revs": [rev("aaaaaaaaaaaaaaaa", "queued-one", None, {**PARAMS, "seed": 1})]}]
    return [rev("workspace", None, SUMMARY, PARAMS), baseline, rev("1111111111111111", "old", OLD_SUMMARY, PARAMS)]


def test_rows_name_every_experiment_and_what_it_changed():
    records = experiments(show_json())
    assert [r["name"] for r in records] == ["workspace", "main", "five-experts", "queued-one", "old"]
    table = verdict_table(records)
    assert table["changed params"].tolist() == ["", "", "moe.num_experts=5", "seed=1", ""]
    assert table["supported"].tolist() == [7, 7, 7, "", 7] and table["not_supported"].tolist() == [4, 4, 4, "", ""]


def test_figures_take_the_smallest_budget_by_number_not_by_text():
    frame = figures(experiments(show_json()))
    assert len(frame) == 7  # three experiments with a summary x two models, and the old commit's one model
    row = frame[(frame.experiment == "five-experts") & (frame.model == "fl_i2moe")].iloc[0]
    assert (row["acc"], row["gini"], row["sii@3"], row["rg@3"], row["bii@3"]) == (0.5057, 0.317, -0.5, 0.5, 0.25)
    assert (row["|sii|"], row["|bii|"]) == (0.002, 0.003) and row["comp_gap"] == 0.07
    old = frame[frame.experiment == "old"].iloc[0]
    assert (old["acc"], old["gini"]) == (0.5, 0.3)
    assert frame[frame.model == "moe_plain"]["gini"].isna().all()


def test_changed_params_compares_nested_values_and_lists():
    assert changed_params({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1]}}) == "a.c=[1, 2]"
    assert changed_params({"a": 1}, {"a": 1, "b": 2}) == "b=None"


def test_the_table_fits_120_columns():
    records = experiments(show_json())
    for text in (render(verdict_table(records)), render(figures(records))):
        assert max(map(len, text.splitlines())) <= 120, text


# --- named experiment sets (experiments.yaml) --------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_every_committed_set_is_valid_against_params_yaml():
    for name in ("sensitivity", "papers"):
        chosen = experiment_set(name, ROOT / "experiments.yaml", ROOT / "params.yaml")
        assert chosen and all(isinstance(overrides, dict) for overrides in chosen.values())


@pytest.mark.parametrize(("text", "message"), [
    ("toy: {bad: {moe.num_expert: 5}}", r"toy\.bad: moe\.num_expert is not a key of params\.yaml"),
    ("toy: {bad: {moe.tau: 0}}", r"toy\.bad: .*moe\.tau must be"),
    ("toy: {bad: {moe.router_input: tokens}}", r"toy\.bad: .*moe\.router_input must be one of"),
    ("toy: {bad: {datasets: [enrico], moe_plain_datasets: [synthetic]}}", r"toy\.bad: moe_plain_datasets"),
    ("toy: {bad: [1, 2]}", r"toy\.bad must map params keys to values"),
    ("toy: {}", r"toy must map experiment names"),
    ("other: {a: {seed: 1}}", r"no experiment set 'toy' \(sets: other\)"),
    ("toy: {a: [", r"not a readable YAML file"),
])
def test_a_bad_set_is_refused_naming_the_set_experiment_and_key(tmp_path, text, message):
    (tmp_path / "experiments.yaml").write_text(text)
    with pytest.raises(ParamsError, match=message):
        experiment_set("toy", tmp_path / "experiments.yaml", ROOT / "params.yaml")


def test_the_command_refuses_a_bad_set_with_exit_code_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "experiments.yaml").write_text("toy: {bad: {moe.num_expert: 5}}")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["queue", "toy"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "toy.bad: moe.num_expert" in error


def test_overrides_set_nested_keys_and_leave_the_base_alone():
    base = {"moe": {"tau": 2.0}, "datasets": ["enrico", "synthetic"]}
    out = overridden(base, {"moe.tau": 1.0, "datasets": ["enrico"]}, "here")
    assert out == {"moe": {"tau": 1.0}, "datasets": ["enrico"]} and base["moe"]["tau"] == 2.0


def test_queue_commands_pass_values_that_yaml_reads_back_unchanged():
    commands = queue_commands("s", {"a": {"datasets": ["enrico"], "moe.router_input": "encoder", "train.lr": 0.0001,
                                          "train.patience": None}})
    assert commands[0][:6] == ["dvc", "exp", "run", "--queue", "-n", "s-a"]
    pairs = dict(arg.split("=", 1) for arg in commands[0][7::2])
    assert {k: yaml.safe_load(v) for k, v in pairs.items()} == {
        "datasets": ["enrico"], "moe.router_input": "encoder", "train.lr": 0.0001, "train.patience": None}


def sensitivity_records():
    def run(name, verdict, routing, gini):
        summary = {**json.loads(json.dumps(SUMMARY)),
                   "verdicts": {"reweighting_model": {"enrico": verdict}, "concentration": {"enrico": "inconclusive"},
                                "pair-level_masking": {"enrico-fl_i2moe": "mixed"}}}
        summary["enrico"]["fl_i2moe"] |= {"routing_std": fig(routing), "gini": fig(gini)}
        summary["enrico"]["dense"] = {"gini": fig(0.33)}
        return rev(name * 4, f"s-{name}", summary, PARAMS)

    running = run("eeee", "supported", 0.5, 0.5)  # exp show gives a running experiment its baseline's metrics
    return experiments([rev("workspace", None, SUMMARY, PARAMS) | {
        "experiments": [{"revs": [run("aaaa", "not supported", 0.012, 0.317)]},
                        {"revs": [run("bbbb", "supported", 0.081, 0.35)]},
                        {"revs": [rev("cccc" * 4, "s-cccc", None, PARAMS)]},
                        {"revs": [running], "executor": {"state": "running", "name": "dvc-task"}}]}])


def test_claims_table_gives_each_verdict_with_its_figures_and_what_makes_a_failing_claim_hold():
    chosen = {"aaaa": {"datasets": ["enrico"]}, "bbbb": {"moe.tau": 1.0}, "cccc": {"moe.tau": 0.5}, "dddd": {},
              "eeee": {"moe.tau": 0.25}}
    text = claims_markdown(set_results(sensitivity_records(), "s", chosen), "s", chosen)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["reweighting model"] == ("| reweighting model | enrico | not supported (routing std 0.012 ± 0.010) "
                                         "| supported (routing std 0.081 ± 0.010) |")
    assert "Gini 0.317 ± 0.010, dense 0.330 ± 0.010" in rows["concentration"]
    assert "sii@3 -0.500 ± 0.010, rg@3 +0.500 ± 0.010, bii@3 +0.250 ± 0.010" in rows["pair-level masking"]
    assert "- **cccc**: `moe.tau=0.5` (no results: no summary)" in text and "- **dddd**: params.yaml (no results: not run)" in text
    assert "- **eeee**: `moe.tau=0.25` (no results: running)" in text and "| claim | subject | aaaa | bbbb |\n" in text
    answers = text.split("## ")[1].splitlines()
    assert "- reweighting model, enrico: supported under bbbb (routing std 0.081 ± 0.010)" in answers
    assert "- concentration, enrico: supported under none of the 1 other settings tried" in answers


def test_claims_table_without_any_result_says_how_to_get_them():
    with pytest.raises(ValueError, match="queue them with `python -m fli2moe.experiments queue s`"):
        claims_markdown(set_results(sensitivity_records(), "s", {"cccc": {}}), "s", {"cccc": {}})


def test_evidence_names_each_modalitys_gap_and_finds_the_subjects_model():
    assert evidence(SUMMARY, "faithfulness_of_the_expert-wise_attributions", "enrico") == \
        "comp. gap screenshot 0.060 ± 0.010, comp. gap wireframe 0.080 ± 0.010"
    assert evidence(SUMMARY, "task_performance", "enrico") == "FL accuracy 0.506 ± 0.010, plain accuracy 0.524 ± 0.010"
    assert evidence(SUMMARY, "specificity_of_the_experts", "enrico") == ""


def test_recorded_results_fill_in_what_exp_show_lacks_and_never_outrank_a_fresh_one():
    chosen = {"aaaa": {"datasets": ["enrico"]}, "bbbb": {"moe.tau": 1.0}, "cccc": {"moe.tau": 0.5},
              "eeee": {"moe.tau": 0.25}}
    live = sensitivity_records()
    by_name = {r["name"]: r for r in live}
    old = {**by_name["s-bbbb"], "rev": "9" * 16, "summary": {**by_name["s-bbbb"]["summary"], "marker": 1}}
    kept = {"bbbb": old | {"overrides": {"moe.tau": 1.0}}, "cccc": by_name["s-aaaa"] | {"overrides": {"moe.tau": 0.5}},
            "eeee": by_name["s-aaaa"] | {"overrides": {"moe.tau": 0.3}}}
    columns = dict(set_results(live, "s", chosen, kept))
    assert columns["aaaa"] is by_name["s-aaaa"]  # nothing recorded: exp show's
    assert columns["bbbb"] is by_name["s-bbbb"]  # exp show's finished result beats the recorded one
    assert columns["cccc"]["overrides"] == {"moe.tau": 0.5}  # exp show has no summary for it: the record's
    assert columns["eeee"]["state"] == "running"  # recorded under other overrides: not this experiment's result
    text = claims_markdown(set_results(live, "s", chosen, kept), "s", chosen)
    assert "- **cccc**: `moe.tau=0.5` (experiment aaaaaaa of commit workspa)" in text


def test_a_fresh_clone_rebuilds_the_table_from_the_record_and_adds_new_results(tmp_path, monkeypatch):
    (tmp_path / "experiments.yaml").write_text("s: {aaaa: {datasets: [enrico]}, bbbb: {moe.tau: 1.0}}")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "reports").mkdir()
    monkeypatch.chdir(tmp_path)
    live = [r for r in sensitivity_records() if r["name"] != "s-bbbb"]
    monkeypatch.setattr("fli2moe.experiments.exp_show", lambda flags: live)
    assert main(["claims", "s", "-o", "reports/s.md"]) == 0
    first = (tmp_path / "reports" / "s.md").read_text()
    kept = json.loads((tmp_path / "reports" / "s.json").read_text())
    assert list(kept["experiments"]) == ["aaaa"]
    assert kept["experiments"]["aaaa"]["summary"] == next(r for r in live if r["name"] == "s-aaaa")["summary"]

    monkeypatch.setattr("fli2moe.experiments.exp_show", lambda flags: [])  # a fresh clone: no experiment refs
    assert main(["claims", "s", "-o", "reports/s.md"]) == 0
    assert (tmp_path / "reports" / "s.md").read_text() == first

    monkeypatch.setattr("fli2moe.experiments.exp_show", lambda flags: sensitivity_records())  # bbbb ran there
    assert main(["claims", "s", "-o", "reports/s.md"]) == 0
    assert "| claim | subject | aaaa | bbbb |" in (tmp_path / "reports" / "s.md").read_text()
    assert list(json.loads((tmp_path / "reports" / "s.json").read_text())["experiments"]) == ["aaaa", "bbbb"]


@pytest.mark.parametrize("text, message", [("{", "Expecting property name"), ('{"set": "t", "experiments": {}}',
                                           "it records set 't'"), ('{"set": "s"}', "'experiments'"),
                                           ('{"set": "s", "experiments": {"aaaa": {"rev": "x"}}}', "'baseline'")])
def test_a_broken_record_is_refused_naming_the_file_and_nothing_is_written(tmp_path, monkeypatch, capsys, text,
                                                                           message):
    (tmp_path / "experiments.yaml").write_text("s: {aaaa: {datasets: [enrico]}}")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "s.json").write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("fli2moe.experiments.exp_show", lambda flags: sensitivity_records())
    assert main(["claims", "s", "-o", "reports/s.md"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "reports/s.json: not a record of experiment set 's'" in error and message in error
    assert not (tmp_path / "reports" / "s.md").exists() and (tmp_path / "reports" / "s.json").read_text() == text
