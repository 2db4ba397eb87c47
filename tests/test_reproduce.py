"""`fli2moe.reproduce`: the comparison of a fresh run's headline figures and verdicts with the committed ones."""

import json
import math

import pytest

from fli2moe.reproduce import compare, headline_figures, main, tolerance


def summary(gini: float, recovery: float, verdict: str = "supported") -> dict:
    """A summary.json as `report.build.headline` writes it, with two figures and one verdict."""
    return {"claims": {"supported": 1},
            "verdicts": {"concentration": {"enrico": verdict}},
            "enrico": {"fl_i2moe": {
                "gini": {"mean": gini, "std": 0.02, "seeds": 3, "low": gini - 0.03, "high": gini + 0.03},
                "budget_1": {"sii_vs_random_candidates": {"mean": recovery, "std": 0.0, "seeds": 3}}}}}


def test_tolerance_is_the_95_percent_range_of_a_difference_of_two_seed_means():
    assert tolerance({"mean": 0.3, "std": 0.05, "seeds": 3}) == pytest.approx(1.96 * math.sqrt(2 / 3) * 0.05)
    assert tolerance({"mean": 0.3, "std": 0.0, "seeds": 1}) == 0.0


def test_headline_figures_are_the_dicts_with_mean_std_and_seeds():
    names = [name for name, _ in headline_figures(summary(0.3, 0.1))]
    assert names == ["enrico.fl_i2moe.gini", "enrico.fl_i2moe.budget_1.sii_vs_random_candidates"]


def test_compare_passes_a_figure_within_its_tolerance_and_flags_one_beyond():
    limit = 1.96 * math.sqrt(2 / 3) * 0.02  # 0.032
    rows = {r.figure: r for r in compare(summary(0.30, 0.1), summary(0.30 + 0.9 * limit, 0.1))}
    assert rows["enrico.fl_i2moe.gini"].within and rows["enrico.fl_i2moe.gini"].tolerance == pytest.approx(limit)
    assert rows["verdict concentration.enrico"].within
    rows = {r.figure: r for r in compare(summary(0.30, 0.1), summary(0.30 - 1.1 * limit, 0.1))}
    assert not rows["enrico.fl_i2moe.gini"].within
    # No seed spread: only the same number passes.
    rows = {r.figure: r for r in compare(summary(0.30, 0.1), summary(0.30, 0.1 + 1e-6))}
    assert not rows["enrico.fl_i2moe.budget_1.sii_vs_random_candidates"].within


def test_compare_flags_a_changed_verdict_and_a_missing_figure():
    fresh = summary(0.30, 0.1, verdict="mixed")
    del fresh["enrico"]["fl_i2moe"]["gini"]
    rows = {r.figure: r for r in compare(summary(0.30, 0.1), fresh)}
    assert not rows["verdict concentration.enrico"].within and rows["verdict concentration.enrico"].fresh == "mixed"
    assert not rows["enrico.fl_i2moe.gini"].within and rows["enrico.fl_i2moe.gini"].fresh is None


def test_main_prints_the_table_and_exits_with_the_outcome(tmp_path, capsys):
    committed, fresh = tmp_path / "committed.json", tmp_path / "fresh.json"
    committed.write_text(json.dumps(summary(0.30, 0.1)))
    fresh.write_text(json.dumps(summary(0.31, 0.1)))
    assert main([str(committed), str(fresh)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["figure", "committed", "fresh", "tolerance", "within"]
    assert out[1].split() == ["enrico.fl_i2moe.gini", "0.3000", "0.3100", "0.0320", "yes"]
    assert out[-1] == "3 of 3 within"
    fresh.write_text(json.dumps(summary(0.40, 0.1)))
    assert main([str(committed), str(fresh)]) == 1
    assert "NO" in capsys.readouterr().out
    fresh.write_text("{not json")
    assert main([str(committed), str(fresh)]) == 2
    assert "fresh.json" in capsys.readouterr().err
