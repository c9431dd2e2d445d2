"""Seed noise against model differences (mtloca_lib.evaluation.seeds), on hand-made run directories."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mtloca_lib.config.registry import RunKey, run_path
from mtloca_lib.evaluation import seeds

#: Where the hand-made runs live in a test's run tree: any dataset, profile and protocol.
KEY = RunKey("busi", "smoke", "grouped", "mtl_oca")


def _run(root, name, seed, fold_dice, image_dice=None, correct=None, curve=None):
    """A hand-made run; ``curve`` "flat" or "rising" writes a 10-epoch validation Dice history."""
    rd = run_path(KEY.replace(model=name, seed=seed), root)
    rd.mkdir(parents=True)
    if curve is not None:
        (rd / "fold0").mkdir()
        val = [0.5] * 10 if curve == "flat" else [0.3 + 0.03 * e for e in range(10)]
        pd.DataFrame({"epoch": range(1, 11), "val_dice": val}).to_csv(rd / "fold0" / "history.csv", index=False)
    (rd / "config.json").write_text(json.dumps({"name": name, "protocol": "grouped", "seed": seed}))
    pd.DataFrame({"fold": range(len(fold_dice)), "dice": fold_dice, "dice_lesion": fold_dice,
                  "accuracy": [0.5] * len(fold_dice)}).to_csv(rd / "fold_metrics.csv", index=False)
    if image_dice is not None:
        n = len(image_dice)
        pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "dice": image_dice, "true_label": [1] * n,
                      "pred_label": np.where(correct, 1, 0)}).to_csv(rd / "predictions.csv", index=False)
    return rd


def test_seed_table_averages_folds_and_rejects_duplicate_seeds(tmp_path):
    a0 = _run(tmp_path, "a", 0, [0.4, 0.6])
    a1 = _run(tmp_path, "a", 1, [0.5, 0.7])
    t = seeds.seed_table({"a": [a0, a1]})
    assert list(t["seed"]) == [0, 1] and t["dice"].tolist() == pytest.approx([0.5, 0.6])
    assert set(t["n_folds"]) == {2}
    with pytest.raises(ValueError, match="same seed"):
        seeds.seed_table({"a": [a0, a0]})
    with pytest.raises(ValueError, match="no column"):
        seeds.seed_table({"a": [a0]}, metrics=("hd95",))


def test_seed_level_test_separates_a_real_gap_from_seed_noise(tmp_path):
    # model a: seed means 0.50, 0.52, 0.48 (sd 0.02); model b: 0.30, 0.31, 0.29 (sd 0.01)
    runs = {"a": [_run(tmp_path, "a", s, [m, m]) for s, m in enumerate((0.50, 0.52, 0.48))],
            "b": [_run(tmp_path, "b", s, [m, m]) for s, m in enumerate((0.30, 0.31, 0.29))],
            "c": [_run(tmp_path, "c", s, [m, m]) for s, m in enumerate((0.51, 0.47, 0.50))]}
    t = seeds.seed_table(runs, metrics=("dice",))
    far = seeds.seed_level_test(t, "a", "b", metrics=("dice",)).set_index("metric").loc["dice"]
    assert far["difference"] == pytest.approx(0.20)
    assert far["sd_a"] == pytest.approx(0.02) and far["difference_in_seed_sd"] == pytest.approx(10.0)
    assert far["p_value"] < 0.01
    near = seeds.seed_level_test(t, "a", "c", metrics=("dice",)).set_index("metric").loc["dice"]
    assert near["difference_in_seed_sd"] < 1 and near["p_value"] > 0.5
    with pytest.raises(ValueError, match="no runs"):
        seeds.seed_level_test(t, "a", "zzz")


def test_seed_level_test_with_one_seed_gives_no_p_value(tmp_path):
    t = seeds.seed_table({"a": [_run(tmp_path, "a", 0, [0.5])], "b": [_run(tmp_path, "b", 0, [0.3])]})
    row = seeds.seed_level_test(t, "a", "b").iloc[0]
    assert np.isnan(row["p_value"]) and np.isnan(row["difference_in_seed_sd"])


def test_same_model_tests_pair_every_two_seeds(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 200)
    dirs = [_run(tmp_path, "a", s, [0.5], base + rng.normal(0, 0.05, 200) + 0.1 * (s == 2),
                 rng.uniform(size=200) < 0.6) for s in range(3)]
    t = seeds.same_model_tests({"a": dirs})
    pairs = t[t["test"] == "wilcoxon"][["seed_a", "seed_b"]].values.tolist()
    assert pairs == [[0, 1], [0, 2], [1, 2]]
    assert set(t["test"]) == {"wilcoxon", "mcnemar"} and (t["model"] == "a").all()
    # seeds 0 and 1 draw the same distribution; seed 2 is shifted by 0.1
    w = t[t["test"] == "wilcoxon"].set_index(["seed_a", "seed_b"])["p_value"]
    assert w[(0, 2)] < 1e-6 and w[(1, 2)] < 1e-6 and w[(0, 1)] > 1e-3


def test_seed_table_carries_each_runs_convergence_verdict(tmp_path):
    runs = {"a": [_run(tmp_path, "a", 0, [0.5], curve="flat"), _run(tmp_path, "a", 1, [0.5], curve="rising"),
                  _run(tmp_path, "a", 2, [0.5])]}
    t = seeds.seed_table(runs)
    assert t["converged"].tolist() == [True, False, None]
    both = seeds.seed_table({**runs, "b": [_run(tmp_path, "b", s, [0.4], curve="flat") for s in (0, 1)]})
    row = seeds.seed_level_test(both, "a", "b").iloc[0]
    assert (row["converged_a"], row["n_seeds_a"], row["converged_b"], row["n_seeds_b"]) == (1, 3, 2, 2)


def test_compare_seeds_measures_only_pairs_with_two_seeds_each(tmp_path):
    runs = {"mtl_oca": [_run(tmp_path, "m", s, [0.5 + 0.01 * s]) for s in (0, 1)],
            "unet_st": [_run(tmp_path, "u", s, [0.4 + 0.01 * s]) for s in (0, 1, 2)],
            "ablation_no_oca": [_run(tmp_path, "n", 0, [0.3])]}
    t = seeds.compare_seeds(runs)
    assert set(zip(t["model_a"], t["model_b"])) == {("mtl_oca", "unet_st")}
    assert len(t) == len(seeds.METRICS)
    runs["ablation_no_oca"].append(_run(tmp_path, "n", 1, [0.32]))
    t = seeds.compare_seeds(runs)
    assert set(zip(t["model_a"], t["model_b"])) == {("mtl_oca", "unet_st"), ("mtl_oca", "ablation_no_oca")}
    assert seeds.compare_seeds({"mtl_oca": runs["mtl_oca"]}).empty


def test_describe_follows_the_numbers(tmp_path):
    runs = {"mtl_oca": [_run(tmp_path, "a", s, [m], curve="flat") for s, m in enumerate((0.40, 0.42, 0.38))],
            "unet_st": [_run(tmp_path, "b", s, [m], curve="flat") for s, m in enumerate((0.50, 0.49, 0.51))]}
    level = seeds.seed_level_test(seeds.seed_table(runs, metrics=("dice",)), "mtl_oca", "unet_st", metrics=("dice",))
    text = seeds.describe(level)
    assert "MTL-OCA 0.400 vs UNet (ST) 0.500" in text and "beyond seed noise" in text
    close = seeds.seed_level_test(seeds.seed_table({"mtl_oca": runs["mtl_oca"], "unet_st": runs["mtl_oca"]},
                                                   metrics=("dice",)), "mtl_oca", "unet_st", metrics=("dice",))
    assert "not distinguishable from seed noise" in seeds.describe(close)
    # the same gap, with one UNet (ST) seed still learning, is not a test of the claim
    runs["unet_st"][2] = _run(tmp_path / "x", "b", 2, [0.51], curve="rising")
    level = seeds.seed_level_test(seeds.seed_table(runs, metrics=("dice",)), "mtl_oca", "unet_st", metrics=("dice",))
    text = seeds.describe(level)
    assert "not tested" in text and "UNet (ST) 2 of 3" in text and "beyond seed noise" not in text


def test_finished_seeds_finds_complete_runs_only(tmp_path):
    from mtloca_lib import experiments
    from mtloca_lib.config.run_config import make_config

    P = experiments.notebook_params(dataset="phantom", data_root="", protocol="grouped", profile="smoke",
                                    run_root=str(tmp_path), seed=0, device="", figures_dir="", tables_dir="",
                                    udiat_root="")
    cfg = make_config("mtl_oca", "smoke", {"protocol": "grouped"})
    for seed, n_folds in ((0, cfg.k), (1, cfg.k - 1), (3, cfg.k)):  # seed 1 unfinished, seed 2 absent
        rd = experiments.run_dir(P, "mtl_oca", "grouped", seed)
        rd.mkdir(parents=True)
        (rd / "config.json").write_text(json.dumps(cfg.to_dict()))
        pd.DataFrame({"fold": range(n_folds), "dice": 0.5}).to_csv(rd / "fold_metrics.csv", index=False)
    found = experiments.finished_seeds(P, "mtl_oca", "grouped")
    assert [p.name for p in found] == ["mtl_oca-seed0", "mtl_oca-seed3"]
    assert experiments.finished_seeds(P, "unet_st", "grouped") == []


def test_complete_seed_runs_keeps_only_finished_runs_in_seed_order(tmp_path):
    from mtloca_lib.config.run_config import make_config

    cfg = make_config("mtl_oca", "smoke", {})
    for seed, n_folds in ((2, cfg.k), (0, cfg.k), (1, cfg.k - 1)):
        rd = run_path(KEY.replace(seed=seed), tmp_path)
        rd.mkdir(parents=True)
        (rd / "config.json").write_text(json.dumps(cfg.to_dict()))
        pd.DataFrame({"fold": range(n_folds), "dice": 0.5}).to_csv(rd / "fold_metrics.csv", index=False)
    found = seeds.complete_seed_runs(KEY, tmp_path, ["mtl_oca", "unet_st"])
    assert [p.name for p in found["mtl_oca"]] == ["mtl_oca-seed0", "mtl_oca-seed2"] and found["unet_st"] == []
    assert set(seeds.complete_seed_runs(KEY, tmp_path)) == {m for pair in seeds.SEED_PAIRS for m in pair}
