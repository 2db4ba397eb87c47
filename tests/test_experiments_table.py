"""`python -m fli2moe.experiments`: the narrow experiments table built from `dvc exp show --json` (the shape DVC
3 prints: baseline rows, each with `experiments: [{revs: [...]}]`; the real command is run in test_experiments)."""

from fli2moe.experiments import changed_params, experiments, figures, render, verdict_table


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
