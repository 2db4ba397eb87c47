"""The report: tables, verdict rules, the offline page, and the page as headless Chromium renders it."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fli2moe.report import claims, figures, tables
from fli2moe.report.build import ablation_caption, build_report, headline
from fli2moe.report.outputs import RunOutputs
from fli2moe.report.page import Section, markdown, page
from fli2moe.report.tables import Table, task_table, with_ci
from conftest import assert_scalar_metrics

REPO = Path(__file__).resolve().parents[1]


def write(root: Path, relative: str, obj) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def ci(mean, low, high) -> dict:
    return {"mean": mean, "low": low, "high": high, "n": 10}


def toy_run(tmp_path: Path, models=("fl_i2moe", "dense"), moe_plain_datasets=("toy",),
            token_dropout=0.15) -> RunOutputs:
    """A run with one two-modality dataset `toy`, trained with `token_dropout`: only the files a test writes exist."""
    write(tmp_path, "features/toy/manifest.json", {
        "dataset": "toy", "task": "multiclass", "label_names": ["x", "y"], "splits": {"test": 2},
        "modalities": [{"name": "a", "tokens": 2, "dim": 3, "grid": None},
                       {"name": "b", "tokens": 2, "dim": 3, "grid": None}],
        "skipped": [], "ids": {"test": ["t0", "t1"]}})
    return RunOutputs(tmp_path, ("toy",), tuple(models), tuple(moe_plain_datasets), {"toy": token_dropout})


def faithfulness_entry(gap, low, high) -> dict:
    return {"aopc": 0.1, "aopc_low": 0.0, "aopc_high": 0.2, "random_aopc": 0.05, "gap": gap, "gap_low": low,
            "gap_high": high, "n": 10}


def test_table_renders_markdown_and_escaped_html():
    table = Table("t <1>", ["model", "value"], [["a|b", "1.0"], ["<c>", "2.0"]], note="x & y")
    md = table.markdown().splitlines()
    assert md[2:5] == ["| model | value |", "| :-- | --: |", "| a\\|b | 1.0 |"] and md[-1] == "_x & y_"
    html = table.html()
    assert "<caption>t &lt;1&gt;</caption>" in html and '<td class="label">&lt;c&gt;</td>' in html
    assert '<td class="num">2.0</td>' in html and "x &amp; y" in html


def test_with_ci_scales_and_signs():
    assert with_ci(0.081, 0.072, 0.091, 100, signed=True) == "+8.1 [7.2, 9.1]"
    assert with_ci(-0.5, -0.6, -0.4, digits=2) == "-0.50 [-0.60, -0.40]"


def test_task_table_lists_trained_models_then_baselines(tmp_path):
    run = toy_run(tmp_path)
    for model, acc in (("fl_i2moe", 0.5), ("dense", 0.4)):
        write(tmp_path, f"metrics/train/toy-{model}.json", {
            "parameters": 1234, "best_epoch": {"seed_1": 4, "seed_0": 3},
            "test": {"accuracy": {"mean": acc, "std": 0.01}, "macro_f1": {"mean": acc / 2, "std": 0.02}}})
    write(tmp_path, "metrics/baselines/toy.json", {"test": {"majority": {"accuracy": 0.25, "macro_f1": 0.1}}})
    table = task_table(run, "toy")
    assert [row[0] for row in table.rows] == ["fl_i2moe", "dense", "majority"]  # moe_plain: not trained here
    assert table.rows[0][1:] == ["1,234", "0.500 ± 0.010", "0.250 ± 0.020", "3, 4"]
    assert table.rows[2][2:4] == ["0.250", "0.100"]
    # A moe_plain file left over from a run that trained it on toy is not this run's.
    write(tmp_path, "metrics/train/toy-moe_plain.json", json.loads((tmp_path / "metrics/train/toy-dense.json").read_text()))
    assert toy_run(tmp_path, moe_plain_datasets=()).trained("toy") == ["fl_i2moe", "dense"]
    assert toy_run(tmp_path).trained("toy") == ["fl_i2moe", "moe_plain", "dense"]


def test_task_table_shows_no_spread_for_one_seed(tmp_path):
    write(tmp_path, "metrics/train/toy-fl_i2moe.json", {
        "parameters": 10, "best_epoch": {"seed_0": 3}, "test": {"accuracy": {"mean": 0.5, "std": 0.0}}})
    table = task_table(toy_run(tmp_path), "toy")
    assert table.rows[0][2] == "0.500" and "one seed" in table.note


@pytest.mark.parametrize("gaps, expected", [
    ({"a": (0.1, 0.05, 0.15, -0.1, -0.15, -0.05), "b": (0.1, 0.05, 0.15, -0.1, -0.15, -0.05)}, claims.SUPPORTED),
    ({"a": (0.1, 0.05, 0.15, -0.1, -0.15, -0.05), "b": (0.1, -0.01, 0.15, -0.1, -0.15, 0.01)}, claims.MIXED),
    ({"a": (0.0, -0.05, 0.05, 0.1, 0.05, 0.15), "b": (0.0, -0.05, 0.05, 0.0, -0.1, 0.1)}, claims.NOT_SUPPORTED),
])
def test_faithfulness_verdict_needs_every_interval_on_the_right_side_of_zero(tmp_path, gaps, expected):
    run = toy_run(tmp_path)
    faith = {}
    for modality, (c, c_low, c_high, s, s_low, s_high) in gaps.items():
        faith[f"whole/prediction/{modality}/comprehensiveness"] = faithfulness_entry(c, c_low, c_high)
        faith[f"whole/prediction/{modality}/sufficiency"] = faithfulness_entry(s, s_low, s_high)
    write(tmp_path, "metrics/attribution/toy-fl_i2moe.json", {"faithfulness": faith})
    verdict = claims.faithfulness_claim(run, "toy")
    assert verdict.status == expected and verdict.sentence.endswith(f"- {expected}.")
    # Models never trained on removed tokens: the verdict stands, and its sentence says what it rests on.
    verdict = claims.faithfulness_claim(toy_run(tmp_path, token_dropout=0.0), "toy")
    assert verdict.status == expected and verdict.sentence.endswith("outside their training distribution.")


@pytest.mark.parametrize("fl, dense, expected", [
    ((0.40, 0.38, 0.42), (0.30, 0.28, 0.32), claims.SUPPORTED),
    ((0.30, 0.28, 0.32), (0.40, 0.38, 0.42), claims.NOT_SUPPORTED),
    ((0.35, 0.30, 0.40), (0.37, 0.33, 0.41), claims.INCONCLUSIVE),
])
def test_concentration_verdict_compares_gini_intervals(tmp_path, fl, dense, expected):
    run = toy_run(tmp_path)
    for model, gini in (("fl_i2moe", fl), ("dense", dense)):
        write(tmp_path, f"metrics/attribution/toy-{model}.json", {"concentration": {"whole": {"gini": ci(*gini)}}})
    assert claims.concentration_claim(run, "toy").status == expected


def precision(mean, low, per_seed=(0.6, 0.7, 0.8)) -> dict:
    """A P@1 figure over three seeds: {mean, std, low, high, n, seeds, seed_<s>}."""
    return {"mean": mean, "std": 0.05, "low": low, "high": mean + 0.1, "n": 100, "seeds": 3,
            **{f"seed_{s}": value for s, value in enumerate(per_seed)}}


@pytest.mark.parametrize("synergy, redundancy, expected", [
    ((0.7, 0.55), (0.8, 0.7), claims.SUPPORTED),
    ((0.7, 0.55), (0.6, 0.45), claims.MIXED),  # a mean above 50% whose interval reaches below it: not enough
    ((0.5, 0.4), (0.1, 0.05), claims.NOT_SUPPORTED)])
def test_recovery_verdict_needs_the_interval_above_a_majority_of_examples(tmp_path, synergy, redundancy, expected):
    run = toy_run(tmp_path)
    write(tmp_path, "metrics/probe/toy-fl_i2moe.json", {"seeds": 3, "recovery": {
        "synergy_precision@1": precision(*synergy), "redundancy_precision@1": precision(*redundancy),
        "synergy_chance_precision@1": 0.02, "redundancy_chance_precision@1": 0.03}})
    verdict = claims.recovery_claim(run, "toy")
    assert verdict.status == expected
    assert f"{100 * synergy[0]:.0f} ± 5 [{100 * synergy[1]:.0f}, {100 * synergy[0] + 10:.0f}]%" in verdict.sentence
    assert "per seed 0.60, 0.70, 0.80" in verdict.sentence and "over 3 trained seeds" in verdict.sentence


def ablation_metrics(comparisons: dict) -> dict:
    """An ablate metrics file: comparisons {(budget, ranking, random): (low, p)}, the rest made up around them."""
    metrics = {}
    for (budget, ranking, random), (low, p) in comparisons.items():
        drops = metrics.setdefault(f"budget_{budget}", {}).setdefault(ranking, {})
        drops.update({selection: {"drop": 0.1, "std": 0.01, "low": 0.05, "high": 0.15, "n": 10, "seeds": 3}
                      for selection in ("ranked", "random_candidates", "random_all")})
        drops[f"vs_{random}"] = {"difference": low + 0.01, "std": 0.002, "low": low, "high": low + 0.02,
                                 "n": 10, "seeds": 3, "permutation_p": p, "wilcoxon_p": p, "cohens_dz": 0.5}
    return metrics


def test_ablation_verdict_uses_random_candidates_and_every_budget(tmp_path):
    run = toy_run(tmp_path)
    write(tmp_path, "metrics/ablate/toy-fl_i2moe.json", ablation_metrics({
        (10, "sii", "random_candidates"): (0.02, 0.001), (1, "sii", "random_candidates"): (0.01, 0.01),
        (1, "rg", "random_candidates"): (0.01, 0.2),  # CI above 0 but not significant: fails
        (10, "rg", "random_candidates"): (0.01, 0.01),
        (1, "rg", "random_all"): (-0.5, 0.9)}))  # other reference set: not part of the rule
    verdict = claims.ablation_claim(run, "toy")
    assert verdict.status == claims.MIXED and "random_all" not in verdict.sentence
    assert ("by SII at b = 1: +2.0 ± 0.2 [1.0, 3.0] (p 0.010), 10: +3.0 ± 0.2 [2.0, 4.0] (p 0.001); by RG at b = 1"
            in verdict.sentence)


def test_ablation_table_and_headline_order_budgets_by_value(tmp_path):
    run = toy_run(tmp_path, models=("fl_i2moe",))
    write(tmp_path, "metrics/ablate/toy-fl_i2moe.json", ablation_metrics(
        {(budget, ranking, random): (0.01 * budget, 0.01) for budget in (10, 2) for ranking in ("rg", "sii")
         for random in ("random_candidates", "random_all")}))
    table = tables.ablation_table(run, "toy")
    assert [row[1:4] for row in table.rows] == [[r, f"random {pool}", str(b)] for b in (2, 10) for r in ("SII", "RG")
                                                for pool in ("candidates", "all")]
    assert table.rows[0][4:] == ["10.0 ± 1.0 [5.0, 15.0]", "10.0 ± 1.0 [5.0, 15.0]", "+3.0 ± 0.2 [2.0, 4.0]",
                                 "0.010", "0.010", "0.50"]
    write(tmp_path, "metrics/train/toy-fl_i2moe.json", {"best_epoch": {"seed_0": 1, "seed_1": 2},
                                                        "test": {"accuracy": {"mean": 0.5, "std": 0.1}}})
    summary = headline(run, [])
    assert_scalar_metrics(summary, "summary.json")
    # Every budget, keyed as in the ablate metrics; the difference is low + 0.01 in `ablation_metrics`.
    assert summary["toy"]["fl_i2moe"] == {"test_accuracy": {"mean": 0.5, "std": 0.1, "seeds": 2}, **{
        f"budget_{b}": {f"{r}_vs_random_candidates": {"mean": 0.01 * b + 0.01, "std": 0.002, "seeds": 3,
                                                      "low": 0.01 * b, "high": 0.01 * b + 0.02}
                        for r in ("sii", "rg")} for b in (2, 10)}}


@pytest.mark.parametrize("candidates, coincide", [(("all", "all"), True), (("all", 6), False)])
def test_ablation_caption_says_when_the_random_references_coincide(tmp_path, candidates, coincide):
    for model, count in zip(("fl_i2moe", "dense"), candidates):
        write(tmp_path, f"metrics/probe/toy-{model}.json", {"candidates_per_modality": count})
    caption = ablation_caption(toy_run(tmp_path), "toy", ["fl_i2moe", "dense"])
    assert ("references coincide" in caption) == coincide


def test_accuracy_verdict_against_dense_and_moe_plain(tmp_path):
    run = toy_run(tmp_path)
    for model, mean in (("fl_i2moe", 0.50), ("dense", 0.52), ("moe_plain", 0.40)):
        write(tmp_path, f"metrics/train/toy-{model}.json",
              {"best_epoch": {"seed_0": 1, "seed_1": 1}, "test": {"accuracy": {"mean": mean, "std": 0.03}}})
    verdict = claims.accuracy_claim(run, "toy")
    # -0.02 against dense is within one seed std: "at least as good"; +0.10 over moe_plain: "better".
    assert verdict.status == claims.SUPPORTED
    write(tmp_path, "metrics/train/toy-moe_plain.json",
          {"best_epoch": {"seed_0": 1, "seed_1": 1}, "test": {"accuracy": {"mean": 0.49, "std": 0.03}}})
    run = toy_run(tmp_path)  # a RunOutputs reads each file once: a changed run is a new one
    assert claims.accuracy_claim(run, "toy").status == claims.MIXED  # dense supported, moe_plain inconclusive
    write(tmp_path, "metrics/train/toy-moe_plain.json",
          {"best_epoch": {"seed_0": 1}, "test": {"accuracy": {"mean": 0.2, "std": 0}}})
    verdict = claims.accuracy_claim(toy_run(tmp_path), "toy")  # one seed: a spread of 0 would decide anything
    assert verdict.status == claims.INCONCLUSIVE and "one seed" in verdict.sentence


def test_report_keeps_the_experiment_tables_committed_beside_it(tmp_path):
    # The report folder is replaced whole (atomically); the tables of `python -m fli2moe.experiments claims`
    # live in it too and must survive a `dvc repro` of the report, while its own stale files are replaced.
    out = tmp_path / "reports"
    out.mkdir()
    (out / "sensitivity.md").write_text("| claim | e1 |\n")
    (out / "sensitivity.json").write_text("{}\n")
    (out / "report.md").write_text("stale\n")
    build_report(toy_run(tmp_path), out, {})
    assert (out / "sensitivity.md").read_text() == "| claim | e1 |\n" and (out / "sensitivity.json").exists()
    assert (out / "report.md").read_text() != "stale\n" and (out / "summary.json").exists()


def test_routing_verdict_detects_constant_weights(tmp_path):
    run = toy_run(tmp_path)
    folder = tmp_path / "checkpoints" / "toy-fl_i2moe"
    write(tmp_path, "checkpoints/toy-fl_i2moe/config.json", {"config": {
        "modalities": [{"name": "a"}, {"name": "b"}], "num_experts": 4}})
    from safetensors.numpy import save_file

    constant = np.full((2, 50, 4), 0.25, dtype=np.float32)
    save_file({"weights": constant}, folder / "test_routing.safetensors")
    assert claims.routing_claim(run, "toy").status == claims.NOT_SUPPORTED
    varied = np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 50)).astype(np.float32)
    save_file({"weights": varied}, folder / "test_routing.safetensors")
    run = toy_run(tmp_path)
    verdict = claims.routing_claim(run, "toy")
    assert verdict.status == claims.SUPPORTED and "4 of 4 experts" in verdict.sentence
    assert run.routing("toy", "fl_i2moe").experts == ["expert0_uniqueness_a", "expert1_uniqueness_b",
                                                      "expert2_synergy", "expert3_redundancy"]


def test_most_varied_expert_and_its_seed_interval_by_hand():
    from fli2moe.report.outputs import Routing

    # expert 1 alternates 0.2 / 0.6 (std 0.2) in seed 0 and 0.3 / 0.5 (std 0.1) in seed 1; expert 0 is constant
    w1 = np.array([[0.2, 0.6] * 5, [0.3, 0.5] * 5])  # [2 seeds, 10 samples]
    weights = np.stack([np.full((2, 10), 0.1), w1, 1 - 0.1 - w1], -1)  # [2, 10, 3]
    expert, figure = Routing(weights, ["u", "s", "r"]).most_varied()
    assert expert in ("s", "r")  # s and r vary alike; either is the most varied
    half = 12.7062047 * np.std([0.2, 0.1], ddof=1) / np.sqrt(2)  # t_{0.975, 1} = 12.706
    assert figure["mean"] == pytest.approx(0.15) and figure["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert figure["low"] == pytest.approx(0.15 - half) and figure["high"] == pytest.approx(0.15 + half)
    _, one_seed = Routing(weights[:1], ["u", "s", "r"]).most_varied()
    assert one_seed == {"mean": pytest.approx(0.2), "std": 0.0, "seeds": 1}


def test_patch_centre_is_row_major():
    # A 2 x 3 grid over a 200 x 300 image: token 4 is row 1, column 1.
    assert figures.patch_centre(4, (2, 3), (200, 300, 3)) == (150.0, 150.0)


def small_report(folder: Path) -> Path:
    """A page with two real figures and a table, as build_report writes it."""
    (folder / "figures").mkdir(parents=True)
    rng = np.random.default_rng(0)
    curves = pd.DataFrame([{"model": m, "series": f"{r}/{s}", "budget": b, "drop": d, "low": d - 0.05,
                            "high": d + 0.05} for m in ("fl_i2moe", "dense") for r in ("sii", "rg")
                           for s in ("ranked", "random_candidates") for b, d in ((1, 0.1), (3, 0.2))])
    figures.ablation_curves(curves, folder / "figures" / "ablation.png", "ablation")
    figures.interaction_example({"SII": rng.normal(size=(3, 3)), "RG": rng.normal(size=(3, 3))}, ["0", "1", "2"], ["0", "1", "2"],
                                ("a", "b"), folder / "figures" / "pairs.png", "pairs")
    section = Section("A claim", "Something holds.", [claims.Verdict("toy", claims.SUPPORTED, "it holds <here>.")],
                      [("figures/ablation.png", "ablation"), ("figures/pairs.png", "pairs")],
                      [Table("numbers", ["x", "y"], [["a", "1"]])])
    (folder / "report.md").write_text(markdown("Title", "Intro.", [section]))
    (folder / "index.html").write_text(page("Title", "Intro.", [section]))
    return folder / "index.html"


def test_the_intros_markdown_links_become_relative_links_and_the_rest_stays_escaped():
    html = page("Title", "See [the table](sensitivity.md) <b>now</b> [not a link] (x).", [])
    assert '<p>See <a href="sensitivity.md">the table</a> &lt;b&gt;now&lt;/b&gt; [not a link] (x).</p>' in html


def test_page_is_offline_and_names_only_existing_relative_images(tmp_path):
    index = small_report(tmp_path / "reports")
    html = index.read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images == ["figures/ablation.png", "figures/pairs.png"]
    assert all((index.parent / image).stat().st_size > 1000 for image in images)
    assert "toy: it holds &lt;here&gt;." in html and '<p class="verdict supported">' in html
    assert "| A claim | toy | supported |" in (index.parent / "report.md").read_text()
    assert "![ablation](figures/ablation.png)" in (index.parent / "report.md").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: `apt-get install chromium` (Debian; "
                                    ".ci/run installs it)")
# Appended to a copy of the page: after load, write how many images failed to decode into the DOM.
IMAGE_CHECK = ("<script>window.addEventListener('load', () => { const images = [...document.images]; "
               "document.title = 'images ' + images.length + ' broken ' + "
               "images.filter(i => !i.complete || i.naturalWidth === 0).length; });</script>")


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=120)


def rendered_image_counts(index: Path) -> tuple[int, int]:
    probe = index.with_name("image-check.html")
    probe.write_text(index.read_text().replace("</body>", IMAGE_CHECK + "</body>"))
    dom = chromium("--dump-dom", probe.as_uri()).stdout
    probe.unlink()
    match = re.search(r"<title>images (\d+) broken (\d+)</title>", dom)
    assert match, dom[:500]
    return int(match.group(1)), int(match.group(2))


@needs_chromium
def test_page_renders_in_headless_chromium_with_every_image(tmp_path):
    index = small_report(tmp_path / "reports")
    assert rendered_image_counts(index) == (2, 0)
    (index.parent / "figures" / "pairs.png").write_bytes(b"not a png")  # the check can fail
    assert rendered_image_counts(index) == (2, 1)


@needs_chromium
def test_committed_report_renders_with_every_image(tmp_path):
    index = REPO / "reports" / "index.html"
    if not index.is_file():
        pytest.skip("no committed report yet")
    copy = tmp_path / "reports"
    shutil.copytree(index.parent, copy)
    total, broken = rendered_image_counts(copy / "index.html")
    assert total >= 8 and broken == 0
    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1200,2400", (copy / "index.html").as_uri())
    assert screenshot.stat().st_size > 10_000
