"""The report's sentence generators say what the numbers say (constructed tables)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtloca_lib.evaluation import comparisons as R_comparisons
from mtloca_lib.report import (
    ablation as R_ablation,
    reproduction_report as R_reproduction_report,
    udiat as R_udiat,
)
from mtloca_lib.evaluation.stats import paired_comparison


def _rows(dice_a, dice_b, correct_a=None, correct_b=None, a="mtl_oca", b="unet_st"):
    t = paired_comparison(dice_a, dice_b, correct_a, correct_b)
    t["model_a"], t["model_b"], t["protocol"] = a, b, "image"
    return {r["test"]: r for _, r in t.iterrows()}


rng = np.random.default_rng(0)
BASE = rng.uniform(0.4, 0.8, 60)


@pytest.mark.parametrize("shift, word", [(0.05, "higher"), (-0.05, "lower")])
def test_wilcoxon_significant_both_directions(shift, word):
    # its own generator and zero-mean noise: the mean difference is the shift whatever order the
    # parametrised cases run in (a shared generator made the draw depend on pytest-xdist's order)
    noise = np.random.default_rng(2).normal(0, 0.005, 60)
    row = _rows(BASE + shift + noise - noise.mean(), BASE)["wilcoxon"]
    s = R_reproduction_report.describe_test(row)
    assert s.startswith(f"MTL-OCA's Dice is {word} than UNet (ST)'s by 0.05")
    assert s.endswith("significant at 0.05.") and "not significant" not in s
    claim = R_reproduction_report.describe_claim(row)
    assert ("holds" in claim) == (shift > 0) and ("contradicted" in claim) == (shift < 0)
    # significant alone, but not after Holm's correction over the tests it was made with
    corrected = R_reproduction_report.describe_claim({**dict(row), "p_holm": 0.2})
    assert "not supported after Holm's correction" in corrected and "Holm p = 0.2" in corrected
    assert "holds" not in corrected and "contradicted" not in corrected
    assert R_reproduction_report.describe_claim({**dict(row), "p_holm": 0.01}) == claim


@pytest.mark.parametrize("sign, word", [(1, "higher"), (-1, "lower")])
def test_wilcoxon_not_significant_both_directions(sign, word):
    noise = np.random.default_rng(1).normal(0, 0.05, 60)
    noise = noise - noise.mean() + sign * 0.002   # large noise, tiny mean shift
    row = _rows(BASE + noise, BASE)["wilcoxon"]
    assert row["p_value"] > 0.05
    s = R_reproduction_report.describe_test(row)
    assert f"Dice is {word} than" in s and s.endswith("not significant at 0.05.")
    assert "is not supported" in R_reproduction_report.describe_claim(row)


def test_wilcoxon_identical_runs():
    row = _rows(BASE, BASE)["wilcoxon"]
    s = R_reproduction_report.describe_test(row)
    assert "are the same on average" in s and "not significant" in s
    assert "no difference" in R_reproduction_report.describe_claim(row)


def test_mcnemar_directions_and_significance():
    n = 100
    truth_a = np.ones(n, bool)
    many = np.r_[np.zeros(30, bool), np.ones(70, bool)]       # b wrong on 30 images a gets right
    row = _rows(BASE[:1].repeat(n), BASE[:1].repeat(n), truth_a, many)["mcnemar"]
    s = R_reproduction_report.describe_test(row)
    assert s.startswith("MTL-OCA's accuracy is higher than UNet (ST)'s by 30.0 points")
    assert "30 images right only by MTL-OCA, 0 only by UNet (ST)" in s and s.endswith(" significant at 0.05.")
    row = _rows(BASE[:1].repeat(n), BASE[:1].repeat(n), many, truth_a)["mcnemar"]
    assert R_reproduction_report.describe_test(row).startswith("MTL-OCA's accuracy is lower than UNet (ST)'s by 30.0 points")
    assert "contradicted" in R_reproduction_report.describe_claim(row)
    few = np.r_[np.zeros(2, bool), np.ones(98, bool)]
    row = _rows(BASE[:1].repeat(n), BASE[:1].repeat(n), truth_a, few)["mcnemar"]
    assert R_reproduction_report.describe_test(row).endswith("not significant at 0.05.")


def _numbers(img_dice, grp_dice, img_acc=0.8, grp_acc=0.8):
    rows = [{"protocol": "image", "model": "mtl_oca", "folds": 5, "dice_mean": img_dice, "dice_std": 0.01,
             "iou_mean": img_dice - 0.1, "iou_std": 0.01, "accuracy_mean": img_acc, "accuracy_std": 0.01},
            {"protocol": "grouped", "model": "mtl_oca", "folds": 5, "dice_mean": grp_dice, "dice_std": 0.01,
             "iou_mean": grp_dice - 0.1, "iou_std": 0.01, "accuracy_mean": grp_acc, "accuracy_std": 0.01}]
    return pd.DataFrame(rows).set_index(["protocol", "model"])


def test_protocol_effect_sentences():
    tests = pd.DataFrame([{"test": "wilcoxon", "p_value": 0.001}, {"test": "mcnemar", "p_value": 0.4}])
    dice, acc = R_reproduction_report.describe_protocol_effect(_numbers(0.80, 0.70, 0.9, 0.75), tests=tests)
    assert dice.startswith("The leakage-free (grouped) protocol lowers MTL-OCA's mean Dice by 0.1000 "
                           "(from 0.8000 to 0.7000)")
    assert "Wilcoxon p = 0.001: significant at 0.05" in dice
    assert "lowers MTL-OCA's mean accuracy by 0.1500" in acc and "not significant" in acc
    up = R_reproduction_report.describe_protocol_effect(_numbers(0.70, 0.75))[0]
    assert "raises MTL-OCA's mean Dice by 0.0500" in up
    only_one = _numbers(0.7, 0.7).drop(index=("grouped", "mtl_oca"))
    assert "needs runs under both protocols" in R_reproduction_report.describe_protocol_effect(only_one)[0]


def test_reference_sentences_busi_and_not():
    numbers = _numbers(0.90, 0.60, 0.95, 0.70)
    boot = pd.DataFrame([{"protocol": "image", "model": "mtl_oca", "metric": "dice", "low": 0.85, "high": 0.95},
                         {"protocol": "grouped", "model": "mtl_oca", "metric": "dice", "low": 0.55, "high": 0.65}])
    s = R_reproduction_report.describe_reference(numbers, boot, "busi")
    img_dice = next(x for x in s if x.startswith("image-level") and " Dice " in x)
    assert "0.9000 is above the MTL-OCA paper" in img_dice and "(0.8375) by 0.0625" in img_dice
    assert "lies outside our 95 % bootstrap CI [0.8500, 0.9500]" in img_dice
    grp_dice = next(x for x in s if x.startswith("grouped") and " Dice " in x)
    assert "0.6000 is below the independent" in grp_dice and "inside our 95 % bootstrap CI" in grp_dice
    assert not any("IoU" in x and x.startswith("grouped") for x in s)  # no IoU reported there
    phantom = R_reproduction_report.describe_reference(numbers, boot, "phantom")
    assert phantom == ["No comparison with the reference numbers: these runs are on phantom, not BUSI."]


def test_phantom_report_says_not_busi():
    numbers = _numbers(0.5, 0.4)
    text = R_reproduction_report.report_text("phantom", "smoke", numbers, None, pd.DataFrame(), pd.DataFrame())
    assert "THESE ARE NOT BUSI NUMBERS" in text.splitlines()[2]
    assert "NOT meaningful" in text
    assert "BUSI" in R_reproduction_report.report_text("busi", "paper", numbers, None, pd.DataFrame(), pd.DataFrame())
    assert "NOT BUSI" not in R_reproduction_report.report_text("busi", "paper", numbers, None, pd.DataFrame(), pd.DataFrame())


def test_holm():
    adj = R_comparisons.holm([0.01, 0.04, 0.03, np.nan])
    np.testing.assert_allclose(adj[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adj[3])


def test_strip_data_images_removes_only_dataset_pictures(tmp_path):
    import nbformat

    from mtloca_lib.reproduce import strip_data_images

    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("fig = figures.figure4_from_runs(runs, picks)",
                                  outputs=[nbformat.v4.new_output("display_data", data=png),
                                           nbformat.v4.new_output("stream", name="stdout", text="Dice table\n")]),
        nbformat.v4.new_code_cell("fig = figures.figure5(confusions)",
                                  outputs=[nbformat.v4.new_output("display_data", data=png)]),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    assert strip_data_images(path) == 1
    out = nbformat.read(str(path), as_version=4)
    first = out.cells[0].outputs
    assert [o.get("text", "") for o in first] == ["Dice table\n", first[1]["text"]]
    assert "removed" in first[1]["text"]
    assert "image/png" in out.cells[1].outputs[0]["data"]  # plots of numbers stay


def test_scrub_paths_replaces_longest_first(tmp_path):
    from mtloca_lib.reproduce import scrub_paths

    nb = tmp_path / "nb.ipynb"
    nb.write_text('{"a": "/srv/repo/notebooks", "b": "/srv/repo/data/BUSI", "c": "/elsewhere"}')
    n = scrub_paths(nb, {"/srv/repo": "<repo>", "/srv/repo/data/BUSI": "<data_root>", "": "x"})
    assert n == 2
    assert nb.read_text() == '{"a": "<repo>/notebooks", "b": "<data_root>", "c": "/elsewhere"}'
