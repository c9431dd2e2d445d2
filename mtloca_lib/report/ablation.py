"""Notebook 06 (the ablation): Table 6.

:func:`ablation_table` lays out the three configurations (no OCA; OCA with classification
from the OCA mask; the proposed MTL-OCA) with segmentation and per-class classification
numbers, from :func:`ablation_fold_table` per run. The paired tests are the engine's
(``paired_tests``, ``holm``) and the sentences those of ``report.reproduction_report``
(``describe_test``), re-exported here. :func:`classifier_source_caveat` is the sentence that
says when a profile's MTL-OCA and the variants classify from different features (the
README's Table 6 caption uses it too). :func:`gap_split` and :func:`describe_gap_split` split
MTL-OCA's Dice gap over variant (1) with our variant (1b) (no OCA, classifier where MTL-OCA's is):
the part that comes with the classifier's place and the part that comes with the OCA module.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from mtloca_lib.config.profiles import proposed_cls_source

# what notebook 06 calls from elsewhere, re-exported so it imports from here only
from mtloca_lib.evaluation.comparisons import holm, paired_tests  # noqa: F401
from mtloca_lib.evaluation.stats import fold_summary
from mtloca_lib.experiments import DISPLAY
from mtloca_lib.report.reproduction_report import describe_test  # noqa: F401


def _f1(tp: int, fp: int, fn: int) -> float:
    den = 2 * tp + fp + fn
    return 2 * tp / den if den else np.nan


def ablation_fold_table(run_dir: str | Path) -> pd.DataFrame:
    """Per fold: Dice, IoU, accuracy and per-class F1 (2TP / (2TP + FP + FN); 0 for a
    class present but never predicted correctly, NaN for a class neither present nor predicted)."""
    pred = pd.read_csv(Path(run_dir) / "predictions.csv")
    names = [c[5:] for c in pred.columns if c.startswith("prob_")]
    rows = []
    for fold, g in pred.groupby("fold"):
        row = {"fold": int(fold), "dice": g["dice"].mean(), "iou": g["iou"].mean()}
        if names:
            t, p = g["true_label"].to_numpy(), g["pred_label"].to_numpy()
            row["accuracy"] = float((t == p).mean())
            for k, c in enumerate(names):
                row[f"f1_{c}"] = _f1(int(((t == k) & (p == k)).sum()), int(((t != k) & (p == k)).sum()),
                                     int(((t == k) & (p != k)).sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_table(runs: Mapping[str, str | Path], decimals: int = 4) -> pd.DataFrame:
    """Table 6: Dice, IoU, accuracy and per-class F1, mean ± std over folds, one row per configuration."""
    rows = []
    for model, rd in runs.items():
        f = ablation_fold_table(rd)
        tidy = fold_summary(f, metrics=[c for c in f.columns if c != "fold"], decimals=decimals)
        rows.append(pd.Series(dict(zip(tidy["metric"], tidy["text"])), name=DISPLAY.get(model, model)))
    table = pd.DataFrame(rows)
    table.index.name = "configuration"
    return table


def classifier_source_caveat(profile: str) -> str:
    """What Table 6's gap measures when ``profile``'s MTL-OCA classifier reads the bottleneck.

    Returns:
        One paragraph for such profiles (``config.proposed_cls_source``), "" for the others
        (where MTL-OCA classifies from the mask features like the variants).
    """
    if proposed_cls_source(profile) != "bottleneck":
        return ""
    return (f"In the `{profile}` profile MTL-OCA's classifier reads the bottleneck, while the two "
            "variants classify from mask features as the paper describes them, so (1) against MTL-OCA "
            "changes both the OCA module and where the classification gradient enters the network "
            "(the training study measured the classifier's source alone at +0.13 validation lesion "
            "Dice on fold 0, `cos_bs8` against `cos_bs8_bneck` in `docs/training.md`). UNet (ST), "
            "a plain UNet without OCA whose classification probe cannot reach the segmentation, "
            "gives a second no-OCA reference for segmentation.")


#: Ours, not the paper's: MTL-OCA without OCA, its classifier where MTL-OCA's is (``docs/models.md``).
TWIN = "ablation_no_oca_same_cls"


def gap_split(runs: Mapping[str, str | Path]) -> dict[str, float] | None:
    """MTL-OCA's mean Dice gap over variant (1), split with (1b).

    (1b) differs from variant (1) only in where the classifier reads and from MTL-OCA only in the
    OCA module, so ``place + oca == total`` (means over folds of each run's ``fold_metrics.csv``).

    Args:
        runs: model key -> finished run directory; needs ``mtl_oca``, :data:`TWIN` and
            ``ablation_no_oca`` (of one profile, protocol and seed).

    Returns:
        ``{"total": MTL-OCA - (1), "place": (1b) - (1), "oca": MTL-OCA - (1b)}``, or None when one
        of the three runs is not in ``runs``.
    """
    if not all(m in runs for m in ("mtl_oca", TWIN, "ablation_no_oca")):
        return None
    mtl, twin, v1 = (float(pd.read_csv(Path(runs[m]) / "fold_metrics.csv")["dice"].mean())
                     for m in ("mtl_oca", TWIN, "ablation_no_oca"))
    return {"total": mtl - v1, "place": twin - v1, "oca": mtl - twin}


def describe_gap_split(runs: Mapping[str, str | Path]) -> str:
    """:func:`gap_split` in words ("" when it cannot be computed)."""
    split = gap_split(runs)
    if split is None:
        return ""
    return (f"of MTL-OCA's {split['total']:+.3f} Dice over variant (1), {split['place']:+.3f} comes with the "
            f"classifier's place ((1b) against (1), which differ in nothing else) and {split['oca']:+.3f} "
            "with the OCA module")
