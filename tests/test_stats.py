"""Statistics: fold summaries, bootstrap CIs, Wilcoxon and McNemar on known examples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mtloca_lib.evaluation import stats as S


def test_fold_summary_mean_std():
    df = pd.DataFrame({"model": ["x"] * 3 + ["y"] * 3, "fold": [0, 1, 2] * 2,
                       "dice": [0.7, 0.8, 0.9, 0.5, 0.5, 0.5], "acc": [1.0, 0.0, 0.5, 0.2, 0.4, 0.6]})
    s = S.fold_summary(df, by="model")
    assert set(s["metric"]) == {"dice", "acc"}          # "fold" excluded
    r = s[(s.model == "x") & (s.metric == "dice")].iloc[0]
    assert r["mean"] == pytest.approx(0.8) and r["std"] == pytest.approx(0.1) and r["n"] == 3
    assert r["text"] == "0.8000 ± 0.1000"
    r = s[(s.model == "y") & (s.metric == "dice")].iloc[0]
    assert r["std"] == pytest.approx(0.0)
    whole = S.fold_summary(df, metrics=["dice"])
    assert len(whole) == 1 and whole["mean"].iloc[0] == pytest.approx(np.mean(df.dice))


def test_bootstrap_ci_covers_true_mean_and_is_deterministic():
    rng = np.random.default_rng(123)
    x = rng.normal(loc=2.0, scale=1.0, size=3000)
    a = S.bootstrap_ci(x, seed=7)
    b = S.bootstrap_ci(x, seed=7)
    assert a == b
    assert a["low"] < 2.0 < a["high"]
    assert a["low"] < a["estimate"] < a["high"]
    # width close to the normal-theory 2 * 1.96 * sigma / sqrt(n)
    assert (a["high"] - a["low"]) == pytest.approx(2 * 1.96 / np.sqrt(3000), rel=0.15)
    c = S.bootstrap_ci(x, seed=8)
    assert c["low"] != a["low"]


def test_bootstrap_ci_nan_and_median_and_chunks():
    x = np.array([1.0, 2.0, np.nan, 3.0, 4.0, 10.0])
    r = S.bootstrap_ci(x, statistic=np.median, n_boot=500, seed=0)
    assert r["n"] == 5 and r["estimate"] == 3.0
    # the chunk size only batches the same stream of draws: same seed, same CI
    r2 = S.bootstrap_ci(x, statistic=np.median, n_boot=500, seed=0, chunk=7)
    assert r2["low"] == r["low"] and r2["high"] == r["high"]
    assert np.isnan(S.bootstrap_ci([1.0])["low"])


def test_bootstrap_table_groups():
    df = pd.DataFrame({"model": ["a"] * 50 + ["b"] * 50,
                       "dice": np.r_[np.full(50, 0.9), np.full(50, 0.1)]})
    t = S.bootstrap_table(df, ["dice"], by="model", n_boot=200)
    assert list(t["model"]) == ["a", "b"]
    assert t["low"].iloc[0] == pytest.approx(0.9) and t["high"].iloc[1] == pytest.approx(0.1)


def test_wilcoxon_identical_runs():
    x = np.linspace(0, 1, 20)
    r = S.wilcoxon_paired(x, x)
    assert r["p_value"] == 1.0 and np.isnan(r["statistic"]) and r["n_nonzero"] == 0
    assert r["median_difference"] == 0.0


def test_wilcoxon_clearly_different():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.5, 0.8, 40)
    a = b + rng.uniform(0.05, 0.15, 40)
    r = S.wilcoxon_paired(a, b)
    assert r["p_value"] < 1e-6 and r["n"] == 40
    assert 0.05 <= r["median_difference"] <= 0.15
    ref = sps.wilcoxon(a, b)
    assert r["p_value"] == pytest.approx(ref.pvalue)
    # NaN pairs are dropped
    a2 = a.copy(); a2[0] = np.nan
    assert S.wilcoxon_paired(a2, b)["n"] == 39


def test_mcnemar_exact_hand_example():
    # 10 a-only, 2 b-only, 8 both right
    ca = np.r_[np.ones(10), np.zeros(2), np.ones(8)].astype(bool)
    cb = np.r_[np.zeros(10), np.ones(2), np.ones(8)].astype(bool)
    r = S.mcnemar(ca, cb)
    assert r["method"] == "exact binomial" and r["discordant"] == 12
    assert r["a_only"] == 10 and r["b_only"] == 2
    # two-sided exact: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert r["p_value"] == pytest.approx(2 * 79 / 4096)
    assert r["accuracy_difference"] == pytest.approx(0.4)


def test_mcnemar_chi2_and_identical():
    ca = np.r_[np.ones(40), np.zeros(20)].astype(bool)
    cb = np.r_[np.zeros(40), np.ones(20)].astype(bool)
    r = S.mcnemar(ca, cb)
    assert r["method"] == "chi2 continuity"
    assert r["statistic"] == pytest.approx((40 - 20 - 1) ** 2 / 60)
    assert r["p_value"] == pytest.approx(sps.chi2.sf((19 ** 2) / 60, 1))
    same = S.mcnemar(ca, ca)
    assert same["p_value"] == 1.0 and same["discordant"] == 0
    big = S.mcnemar(np.ones(100, bool), np.r_[np.zeros(60), np.ones(40)].astype(bool))
    assert big["p_value"] < 1e-10


def test_paired_comparison_table():
    rng = np.random.default_rng(2)
    da, db = rng.uniform(size=30), rng.uniform(size=30)
    t = S.paired_comparison(da, db, da > 0.5, db > 0.5, names=("mtl", "unet"))
    assert list(t["test"]) == ["wilcoxon", "mcnemar"]
    assert (t["run_a"] == "mtl").all()
    assert {"statistic", "p_value", "n", "effect"} <= set(t.columns)


def test_library_statistics_match_the_hand_written_ones():
    """bootstrap_ci (scipy.stats.bootstrap), holm (statsmodels) and mcnemar (statsmodels) give the
    numbers of the project's earlier hand-written versions, written out here."""
    from scipy import stats as sps

    from mtloca_lib.evaluation.comparisons import holm

    def hand_bootstrap(v, statistic, n_boot, seed, chunk=500, ci=0.95):
        rng, boots = np.random.default_rng(seed), np.empty(n_boot)
        for s in range(0, n_boot, chunk):
            m = min(chunk, n_boot - s)
            boots[s:s + m] = statistic(v[rng.integers(0, v.size, size=(m, v.size))], axis=1)
        return np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2])

    x = np.random.default_rng(3).random(80)
    for stat, n_boot in ((np.mean, 2000), (np.median, 300)):
        got = S.bootstrap_ci(x, statistic=stat, n_boot=n_boot, seed=5)
        np.testing.assert_allclose([got["low"], got["high"]], hand_bootstrap(x, stat, n_boot, 5), rtol=1e-12)

    def hand_holm(p):
        p = np.asarray(p, float); out = np.full(p.shape, np.nan); ok = np.flatnonzero(~np.isnan(p))
        order, running = ok[np.argsort(p[ok], kind="stable")], 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (len(order) - rank) * p[i])); out[i] = running
        return out

    for p in ([0.01, 0.04, np.nan, 0.03], [0.5, 0.2, 0.001, 0.049, 0.9], [np.nan]):
        np.testing.assert_allclose(holm(p), hand_holm(p), equal_nan=True)

    rng = np.random.default_rng(0)
    for n_diff in (5, 40):
        ca = rng.random(200) < 0.7
        cb = ca.copy(); cb[:n_diff] = ~cb[:n_diff]
        r = S.mcnemar(ca, cb)
        n10, n01 = int((ca & ~cb).sum()), int((~ca & cb).sum())
        if r["method"] == "exact binomial":
            want = sps.binomtest(n10, n10 + n01, 0.5).pvalue
        else:
            want = sps.chi2.sf((abs(n10 - n01) - 1.0) ** 2 / (n10 + n01), df=1)
        assert r["p_value"] == pytest.approx(want, rel=1e-9)
