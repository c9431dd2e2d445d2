"""Statistics over folds and images: summaries, bootstrap CIs, paired tests.

All functions return plain dicts or tidy DataFrames so notebooks can tabulate them.
Randomness only through an explicit ``seed``.

May import: its own folder, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.stats import bootstrap
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

__all__ = [
    "fold_summary",
    "bootstrap_ci",
    "bootstrap_table",
    "wilcoxon_paired",
    "mcnemar",
    "paired_comparison",
]


def _as_list(by) -> list:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def fold_summary(
    df: pd.DataFrame, by: str | Sequence[str] | None = None,
    metrics: Sequence[str] | None = None, decimals: int = 4,
) -> pd.DataFrame:
    """Mean ± standard deviation (ddof=1) of metrics over folds.

    Args:
        df: one row per fold (and per group), e.g. columns ``model, fold, dice, accuracy``.
        by: grouping column(s), e.g. ``"model"``; None summarises the whole table.
        metrics: metric columns; default every numeric column except ``by`` and ``"fold"``.
        decimals: rounding of the ``text`` column.

    Returns:
        tidy DataFrame, one row per (group, metric): columns ``*by, metric, mean, std,
        n, text`` with ``text`` like ``"0.8123 ± 0.0210"``; NaNs are ignored.
    """
    keys = _as_list(by)
    if metrics is None:
        metrics = [c for c in df.select_dtypes("number").columns if c not in keys and c != "fold"]
    metrics = list(metrics)
    groups = df.groupby(keys, sort=True) if keys else [((), df)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            v = pd.to_numeric(g[m], errors="coerce").dropna().to_numpy(dtype=float)
            mean = float(v.mean()) if v.size else float("nan")
            std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
            rows.append({**dict(zip(keys, key)), "metric": m, "mean": mean, "std": std,
                         "n": int(v.size), "text": f"{mean:.{decimals}f} ± {std:.{decimals}f}"})
    return pd.DataFrame(rows, columns=[*keys, "metric", "mean", "std", "n", "text"])


def bootstrap_ci(
    values, statistic: Callable = np.mean, n_boot: int = 2000, ci: float = 0.95,
    seed: int = 0, chunk: int = 500,
) -> dict[str, float]:
    """Percentile bootstrap confidence interval over images (``scipy.stats.bootstrap``, percentile method).

    Args:
        values: (N,) per-image values; NaNs (e.g. undefined HD95) are dropped first.
        statistic: reduces along an ``axis`` keyword, e.g. ``np.mean``, ``np.median``.
        n_boot: number of bootstrap resamples.
        ci: coverage, e.g. 0.95.
        seed: seed for ``numpy.random.default_rng``; the same seed gives the same CI.
        chunk: resamples drawn per vectorised batch (bounds memory at chunk x N).

    Returns:
        dict with ``estimate`` (statistic on the data), ``low``, ``high``, ``n``
        (non-NaN values), ``n_boot``, ``ci``. NaN bounds when fewer than 2 values.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    n = v.size
    out = {"estimate": float(statistic(v)) if n else float("nan"),
           "low": float("nan"), "high": float("nan"), "n": int(n), "n_boot": int(n_boot), "ci": ci}
    if n < 2:
        return out
    res = bootstrap((v,), statistic, n_resamples=n_boot, batch=chunk, confidence_level=ci,
                    method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    out["low"], out["high"] = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return out


def bootstrap_table(
    df: pd.DataFrame, metrics: Sequence[str], by: str | Sequence[str] | None = None, **kw
) -> pd.DataFrame:
    """:func:`bootstrap_ci` for several per-image metric columns, optionally per group.

    Args:
        df: one row per image (e.g. the output of ``metrics.segmentation_per_image``
            plus a ``model`` column).
        metrics: columns to bootstrap.
        by: grouping column(s) or None.
        **kw: passed to :func:`bootstrap_ci` (``n_boot``, ``ci``, ``seed``, ``statistic``).

    Returns:
        tidy DataFrame: ``*by, metric, estimate, low, high, n, n_boot, ci``.
    """
    keys = _as_list(by)
    groups = df.groupby(keys, sort=True) if keys else [((), df)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            rows.append({**dict(zip(keys, key)), "metric": m, **bootstrap_ci(g[m].to_numpy(), **kw)})
    return pd.DataFrame(rows)


def wilcoxon_paired(a, b) -> dict:
    """Wilcoxon signed-rank test of paired per-image values (e.g. Dice of two runs).

    Pairs with a NaN on either side are dropped. Zero differences are discarded
    (scipy's ``zero_method="wilcox"``). When every difference is zero the runs are
    indistinguishable: statistic NaN, p-value 1.

    Args:
        a, b: (N,) paired values on the same images.

    Returns:
        dict with ``test``, ``statistic``, ``p_value``, ``n`` (pairs used),
        ``n_nonzero``, ``median_difference`` and ``mean_difference`` (a - b).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.size} vs {b.size}")
    ok = ~(np.isnan(a) | np.isnan(b))
    d = a[ok] - b[ok]
    nz = int(np.count_nonzero(d))
    out = {"test": "wilcoxon", "statistic": float("nan"), "p_value": 1.0 if d.size else float("nan"),
           "n": int(d.size), "n_nonzero": nz,
           "median_difference": float(np.median(d)) if d.size else float("nan"),
           "mean_difference": float(d.mean()) if d.size else float("nan")}
    if nz > 0:
        r = sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        out["statistic"], out["p_value"] = float(r.statistic), float(r.pvalue)
    return out


def mcnemar(correct_a, correct_b, exact: bool | None = None, exact_below: int = 25) -> dict:
    """McNemar's test of paired per-image correctness of two classifiers.

    Args:
        correct_a, correct_b: (N,) booleans, image classified correctly by run a / b.
        exact: force the exact binomial test (True) or the chi-square test with
            continuity correction (False); None picks exact when the discordant
            count is below ``exact_below``.
        exact_below: threshold on the discordant count for the automatic choice.

    Returns:
        dict with ``test``, ``method`` ("exact binomial" or "chi2 continuity"),
        ``statistic`` (discordant count b for exact; chi-square otherwise),
        ``p_value`` (two-sided; 1 when there are no discordant pairs), ``n``,
        ``a_only`` (a right, b wrong), ``b_only`` (a wrong, b right), ``discordant``,
        ``accuracy_difference`` (acc_a - acc_b).
    """
    ca = np.asarray(correct_a).astype(bool).ravel()
    cb = np.asarray(correct_b).astype(bool).ravel()
    if ca.shape != cb.shape:
        raise ValueError(f"paired arrays differ in length: {ca.size} vs {cb.size}")
    n10 = int((ca & ~cb).sum())
    n01 = int((~ca & cb).sum())
    nd = n10 + n01
    use_exact = (nd < exact_below) if exact is None else bool(exact)
    out = {"test": "mcnemar", "method": "exact binomial" if use_exact else "chi2 continuity",
           "statistic": float("nan"), "p_value": 1.0, "n": int(ca.size),
           "a_only": n10, "b_only": n01, "discordant": nd,
           "accuracy_difference": float(ca.mean() - cb.mean()) if ca.size else float("nan")}
    if nd == 0:
        return out

    table = [[int((ca & cb).sum()), n10], [n01, int((~ca & ~cb).sum())]]
    res = sm_mcnemar(table, exact=use_exact, correction=True)
    out["p_value"] = float(min(1.0, res.pvalue))
    # statsmodels reports min(b, c) in exact mode; we keep b = "a right, b wrong" there
    out["statistic"] = float(n10) if use_exact else float(res.statistic)
    return out


def paired_comparison(
    dice_a=None, dice_b=None, correct_a=None, correct_b=None,
    names: tuple[str, str] = ("a", "b"),
) -> pd.DataFrame:
    """Both paired tests of two runs on the same images, as one tidy table.

    Args:
        dice_a, dice_b: (N,) per-image Dice of each run (Wilcoxon), or None to skip.
        correct_a, correct_b: (N,) per-image correctness of each run (McNemar), or None.
        names: labels of the two runs, stored in columns ``run_a`` and ``run_b``.

    Returns:
        DataFrame with one row per test: ``run_a, run_b, test, method, statistic,
        p_value, n, effect, effect_name`` and the test-specific counts.
    """
    rows = []
    if dice_a is not None and dice_b is not None:
        w = wilcoxon_paired(dice_a, dice_b)
        rows.append({**w, "method": "signed-rank", "effect": w["median_difference"],
                     "effect_name": "median Dice difference (a - b)"})
    if correct_a is not None and correct_b is not None:
        m = mcnemar(correct_a, correct_b)
        rows.append({**m, "effect": m["accuracy_difference"],
                     "effect_name": "accuracy difference (a - b)"})
    df = pd.DataFrame(rows)
    df.insert(0, "run_b", names[1])
    df.insert(0, "run_a", names[0])
    return df
