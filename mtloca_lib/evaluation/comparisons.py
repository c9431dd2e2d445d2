"""Comparisons between runs: paired tests per image, protocol effects, bootstrap tables.

What notebooks 06 and 07 (and the README's results block) test: :func:`paired_tests`
(Wilcoxon on per-image Dice, McNemar on per-image correctness, between two models
trained on the same folds), :func:`protocol_tests` (the same model under the two
protocols), :func:`holm` (Holm's step-down adjustment, from statsmodels),
:func:`model_numbers` and :func:`bootstrap_table` (means over folds, bootstrap CIs over
images), :func:`convergence_by_run`. The sentences that state the results are written
in :mod:`mtloca_lib.report.reproduction_report`.

May import: its own folder, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from mtloca_lib.config.presets import DISPLAY
from mtloca_lib.evaluation.convergence import convergence_table, is_converged
from mtloca_lib.evaluation.runs import bootstrap_summary, compare_runs, fold_metrics

ALPHA = 0.05


def model_numbers(runs: Mapping[str, Mapping[str, str | Path]],
                  metrics: Sequence[str] = ("dice", "iou", "accuracy")) -> pd.DataFrame:
    """Mean and std over folds per (protocol, model).

    Args:
        runs: protocol -> model key -> finished run directory.

    Returns:
        DataFrame indexed by (protocol, model) with ``<metric>_mean``, ``<metric>_std``
        and ``folds`` columns (numbers, not text).
    """
    rows = []
    for protocol, per_model in runs.items():
        for model, rd in per_model.items():
            f = fold_metrics([rd])
            row = {"protocol": protocol, "model": model, "folds": len(f)}
            for m in metrics:
                v = f[m].astype(float) if m in f else pd.Series(dtype=float)
                row[f"{m}_mean"] = float(v.mean()) if len(v.dropna()) else np.nan
                row[f"{m}_std"] = float(v.std(ddof=1)) if len(v.dropna()) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows).set_index(["protocol", "model"])


def bootstrap_table(runs: Mapping[str, Mapping[str, str | Path]], seed: int = 0) -> pd.DataFrame:
    """95 % bootstrap CIs over images (pooled over folds) per protocol and model."""
    frames = []
    for protocol, per_model in runs.items():
        for model, rd in per_model.items():
            b = bootstrap_summary(rd, seed=seed)
            b.insert(0, "model", model)
            b.insert(0, "protocol", protocol)
            frames.append(b)
    return pd.concat(frames, ignore_index=True)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN).

    ``statsmodels.stats.multitest.multipletests(method="holm")`` over the non-NaN values.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def paired_tests(runs: Mapping[str, Mapping[str, str | Path]], pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Paired tests (Wilcoxon on per-image Dice, McNemar on correctness) per protocol.

    Args:
        runs: protocol -> model key -> run directory.
        pairs: (model a, model b) keys; effects are a - b.

    Returns:
        The rows of :func:`mtloca_lib.evaluation.runs.compare_runs` with ``protocol``,
        ``model_a`` and ``model_b`` (keys) in front, and ``converged_a`` /
        ``converged_b``: whether each run converged by the rule of
        :mod:`mtloca_lib.evaluation.convergence` (a claim is only tested between converged runs).
    """
    frames = []
    for protocol, per_model in runs.items():
        for a, b in pairs:
            if a in per_model and b in per_model:
                t = compare_runs(per_model[a], per_model[b])
                t.insert(0, "model_b", b)
                t.insert(0, "model_a", a)
                t.insert(0, "protocol", protocol)
                t["converged_a"] = is_converged(per_model[a])
                t["converged_b"] = is_converged(per_model[b])
                frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def protocol_tests(runs: Mapping[str, Mapping[str, str | Path]], model: str = "mtl_oca") -> pd.DataFrame:
    """Paired tests of one model between the protocols: grouped (a) vs image-level (b).

    Both runs evaluate every image once (from the fold where it was a test image),
    so the per-image pairs are the same images under the two fold assignments.
    """
    if not {"image", "grouped"} <= set(runs) or model not in runs["image"] or model not in runs["grouped"]:
        return pd.DataFrame()
    t = compare_runs(runs["grouped"][model], runs["image"][model])
    t.insert(0, "model_b", model)
    t.insert(0, "model_a", model)
    t.insert(0, "protocol", "grouped vs image")
    return t


def convergence_by_run(runs: Mapping[str, Mapping[str, str | Path]]) -> pd.DataFrame:
    """The convergence rule's verdict for every run of a protocol -> model -> run mapping.

    Returns:
        :func:`mtloca_lib.evaluation.convergence.convergence_table` rows indexed by
        "<protocol> / <model display name>".
    """
    labelled = {f"{protocol} / {DISPLAY.get(m, m)}": rd for protocol, per_model in runs.items()
                for m, rd in per_model.items()}
    return convergence_table(labelled)

