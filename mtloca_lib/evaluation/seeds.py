"""Seed noise against model differences.

A paired test over images (``report.compare_runs``) asks whether two *runs* differ on the
same images. Two runs of the *same* model with different seeds also differ, and with 624
images such a difference can pass a per-image test. So, given several seeds per model,
this module asks the question at the level where the randomness lives:

- :func:`seed_table`: one row per run, the means over its folds;
- :func:`seed_level_test`: the difference between two models' seed means against the
  spread of those means (Welch's t-test over seeds, and the difference in units of the
  larger seed standard deviation);
- :func:`same_model_tests`: the per-image paired tests between seeds of *one* model: a
  calibration; where they come out "significant", per-image tests between models
  overstate what is known;
- :func:`compare_seeds`: :func:`seed_level_test` for several model pairs at once, each pair
  where both models have two or more seeds (MTL-OCA against UNet (ST); against the ablation
  variant (1) without OCA, Table 6's question as the paper asks it; and against our (1b), the
  same network without OCA, which asks it with nothing else changed).

Each run's convergence verdict (``evaluation.convergence``) travels with it: a seed-level
difference is only called a test of the paper's claim when every seed run of both models
converged by the rule; otherwise :func:`describe` says "not tested".

May import: its own folder, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from mtloca_lib.config.presets import DISPLAY
from mtloca_lib.config.registry import RunKey, run_path
from mtloca_lib.evaluation.convergence import convergence_status
from mtloca_lib.evaluation.runs import compare_runs, run_complete
from mtloca_lib.runio import read_json

METRICS = ("dice", "dice_lesion", "accuracy")
#: The model pairs compared over seeds: the paper's main claim, and Table 6's question (does OCA
#: help?) against variant (1) and against our (1b) (``ablation_no_oca_same_cls``: only OCA removed).
SEED_PAIRS = (("mtl_oca", "unet_st"), ("mtl_oca", "ablation_no_oca"), ("mtl_oca", "ablation_no_oca_same_cls"))


def run_seed(run_dir: str | Path) -> int:
    """The training seed recorded in a run's config.json."""
    return int(read_json(Path(run_dir) / "config.json")["seed"])


def seed_table(runs: Mapping[str, Sequence[str | Path]], metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Fold means of each run.

    Args:
        runs: model key -> run directories of that model (one per seed), each with a
            ``fold_metrics.csv``.
        metrics: columns of ``fold_metrics.csv`` to average.

    Returns:
        One row per run: ``model, seed, n_folds``, ``converged`` (the convergence rule's
        verdict: True, False, or None without a validation curve) and the metric means over folds.
    """
    rows = []
    for model, dirs in runs.items():
        seeds = [run_seed(rd) for rd in dirs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{model}: two run directories have the same seed {seeds}; give one run per seed")
        for rd, seed in zip(dirs, seeds):
            folds = pd.read_csv(Path(rd) / "fold_metrics.csv")
            missing = [m for m in metrics if m not in folds]
            if missing:
                raise ValueError(f"{rd}/fold_metrics.csv has no column(s) {missing}")
            rows.append({"model": model, "seed": seed, "n_folds": len(folds),
                         "converged": convergence_status(rd)["converged"],
                         **{m: float(folds[m].mean()) for m in metrics}})
    return pd.DataFrame(rows)


def seed_level_test(table: pd.DataFrame, a: str, b: str, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Model a against model b with each seed's run as one observation.

    Args:
        table: the output of :func:`seed_table`.
        a, b: model keys; differences are a - b.

    Returns:
        One row per metric: the mean and standard deviation over seeds of each model, the
        difference of the means, ``difference_in_seed_sd`` (|difference| over the larger of
        the two seed standard deviations: above ~2-3 the gap is well outside seed noise) and
        Welch's t-test over the seed means (``p_value``); both NaN unless each model has two or more seeds.
        ``converged_a`` / ``converged_b`` count each model's seed runs that converged by the
        rule (when ``table`` has a ``converged`` column).
    """
    rows = []
    ta, tb = table[table["model"] == a], table[table["model"] == b]
    if ta.empty or tb.empty:
        raise ValueError(f"no runs of {a!r} or {b!r} in the seed table (models: {sorted(table['model'].unique())})")
    for m in metrics:
        xa, xb = ta[m].to_numpy(float), tb[m].to_numpy(float)
        sd_a = xa.std(ddof=1) if len(xa) > 1 else np.nan
        sd_b = xb.std(ddof=1) if len(xb) > 1 else np.nan
        diff = xa.mean() - xb.mean()
        both = len(xa) > 1 and len(xb) > 1
        sd = max(sd_a, sd_b) if both else np.nan
        p = float(sps.ttest_ind(xa, xb, equal_var=False).pvalue) if both else np.nan
        conv = ({"converged_a": int((ta["converged"] == True).sum()),  # noqa: E712 (None counts as not)
                 "converged_b": int((tb["converged"] == True).sum())}  # noqa: E712
                if "converged" in table else {})
        rows.append({"metric": m, "model_a": a, "model_b": b, "n_seeds_a": len(xa), "n_seeds_b": len(xb), **conv,
                     "mean_a": xa.mean(), "sd_a": sd_a, "mean_b": xb.mean(), "sd_b": sd_b,
                     "difference": diff, "difference_in_seed_sd": abs(diff) / sd if sd > 0 else np.nan,
                     "p_value": p})
    return pd.DataFrame(rows)


def complete_seed_runs(key: RunKey, root: str | Path | None = None, models: Sequence[str] | None = None,
                       seeds: Sequence[int] = (0, 1, 2)) -> dict[str, list[Path]]:
    """model -> its complete runs (all folds finished) of ``key``'s dataset, profile and protocol, in
    seed order.

    Args:
        key: any run key of the runs wanted (its model and seed are replaced).
        root: the runs root (the registry's default if None).
        models: model keys (default: every model of :data:`SEED_PAIRS`).
    """
    models = sorted({m for pair in SEED_PAIRS for m in pair}) if models is None else models
    return {m: [rd for s in seeds if run_complete(rd := run_path(key.replace(model=m, seed=s), root))]
            for m in models}


def compare_seeds(runs: Mapping[str, Sequence[str | Path]], pairs: Sequence[tuple[str, str]] = SEED_PAIRS,
                  metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """:func:`seed_level_test` for each pair whose two models both have two or more runs.

    Args:
        runs: model key -> run directories of that model, one per seed (models absent or with
            fewer than two seeds are skipped with their pairs).
        pairs: (a, b) model keys; differences are a - b.

    Returns:
        The rows of :func:`seed_level_test` for every pair measured, one after another
        (empty when no pair has two seeds on both sides).
    """
    frames = [seed_level_test(seed_table({a: runs[a], b: runs[b]}, metrics), a, b, metrics)
              for a, b in pairs if len(runs.get(a, ())) >= 2 and len(runs.get(b, ())) >= 2]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def same_model_tests(runs: Mapping[str, Sequence[str | Path]]) -> pd.DataFrame:
    """Per-image paired tests between every two seeds of the same model.

    Returns:
        The rows of :func:`mtloca_lib.evaluation.runs.compare_runs` (Wilcoxon on Dice, McNemar on
        correctness) with ``model, seed_a, seed_b`` in front.
    """
    frames = []
    for model, dirs in runs.items():
        for ra, rb in itertools.combinations(dirs, 2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a device mismatch is recorded in same_device
                t = compare_runs(ra, rb)
            t.insert(0, "seed_b", run_seed(rb))
            t.insert(0, "seed_a", run_seed(ra))
            t.insert(0, "model", model)
            frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def describe(level: pd.DataFrame, same: pd.DataFrame | None = None, alpha: float = 0.05,
             names: Mapping[str, str] | None = None) -> str:
    """Plain sentences from :func:`seed_level_test` (and :func:`same_model_tests`) results.

    A difference is called "beyond seed noise" when Welch's p over seeds is below ``alpha``,
    and only when every seed run of both models converged by the rule (where ``level`` says,
    in ``converged_a`` / ``converged_b``); otherwise the line says "not tested" and why.
    Nothing here is typed by hand, so the text follows whatever the runs give.
    """
    names = DISPLAY if names is None else names
    lines = []
    for _, r in level.iterrows():
        a, b = names.get(r["model_a"], r["model_a"]), names.get(r["model_b"], r["model_b"])
        head = (f"- {r['metric']}: {a} {r['mean_a']:.3f} vs {b} {r['mean_b']:.3f} "
                f"(mean over {r['n_seeds_a']} and {r['n_seeds_b']} seeds), difference {r['difference']:+.3f}")
        if np.isnan(r["p_value"]):
            lines.append(head + "; fewer than two seeds of a model: seed noise unknown.")
            continue
        head += (f", {r['difference_in_seed_sd']:.1f} times the larger seed standard deviation, "
                 f"Welch p = {r['p_value']:.2g}")
        short = [f"{name} {int(r[c])} of {int(r[n])}" for name, c, n in
                 ((a, "converged_a", "n_seeds_a"), (b, "converged_b", "n_seeds_b"))
                 if c in r.index and pd.notna(r[c]) and r[c] < r[n]]
        if short:
            lines.append(head + f"; not tested: not every seed run converged by the rule "
                                f"(converged: {', '.join(short)} seeds).")
            continue
        verdict = "beyond seed noise" if r["p_value"] < alpha else "not distinguishable from seed noise"
        lines.append(head + f": {verdict} at {alpha:g}.")
    if same is not None and len(same):
        sig = same["p_value"] < alpha
        w = same[same["test"] == "wilcoxon"]
        lines.append(f"- Calibration: per-image paired tests between two seeds of the same model came out "
                     f"significant (p < {alpha:g}, unadjusted) in {int(sig.sum())} of {len(same)} cases"
                     + (f"; the largest same-model mean Dice difference was {w['mean_difference'].abs().max():.3f}"
                        if len(w) else "") + ".")
    return "\n".join(lines)
