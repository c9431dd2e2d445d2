"""Notebook 03 (classification): Table 3 and Figure 5.

:func:`classification_results` (per-class metrics and confusion matrices pooled over the
folds of each run), :func:`per_class_table`, :func:`overall_table` and :func:`figure5`
(one confusion matrix per model).

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from mtloca_lib.evaluation.runs import classification_table
from mtloca_lib.experiments import DISPLAY, model_color
from mtloca_lib.report import common as plotting


def classification_results(runs: Mapping[str, Path]) -> dict[str, dict]:
    """display name -> :func:`mtloca_lib.evaluation.runs.classification_table` of each run that classifies."""
    out = {}
    for model, rd in runs.items():
        try:
            out[DISPLAY.get(model, model)] = classification_table(rd)
        except ValueError as err:  # a model without a classification output
            print(f"skipped {DISPLAY.get(model, model)}: {err}")
    return out


def figure5(confusions: Mapping[str, pd.DataFrame], normalize: str | None = "true",
            title: str | None = None) -> Figure:
    """Figure 5: one confusion matrix per model, side by side.

    Args:
        confusions: title -> counts (rows true class, columns predicted class).
        normalize: passed to :func:`mtloca_lib.report.common.plot_confusion` (``"true"``:
            the diagonal is each class's sensitivity; every cell also shows its count).
        title: optional figure title.

    Returns:
        the Figure.
    """
    if not confusions:
        raise ValueError("no confusion matrix to draw")
    k = len(confusions)
    top = 0.35 if title else 0.0
    fig, axes = plt.subplots(1, k, figsize=(3.4 * k, 3.3 + top), squeeze=False)
    for ax, (name, cm) in zip(axes[0], confusions.items()):
        plotting.plot_confusion(ax, cm, normalize=normalize, title=f"{name} (n = {int(cm.to_numpy().sum())})")
        ax.title.set_color(model_color(name, "black"))
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0, 1, 1 - top / (3.3 + top)))
    return fig


def per_class_table(results: Mapping[str, dict], decimals: int = 4) -> pd.DataFrame:
    """Table 3: precision, sensitivity, specificity, F1 (and support) per model and class."""
    cols = ["precision", "sensitivity", "specificity", "f1", "support"]
    table = pd.concat({name: r["per_class"][cols] for name, r in results.items()}, names=["model", "class"])
    return table.round(decimals)


def overall_table(results: Mapping[str, dict], decimals: int = 4) -> pd.DataFrame:
    """Accuracy, balanced accuracy, macro F1 and macro AUC per model (pooled over folds)."""
    keys = ["n", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc"]
    table = pd.DataFrame({name: {k: r[k] for k in keys} for name, r in results.items()}).T
    table.index.name = "model"
    table["n"] = table["n"].astype(int)
    return table.round(decimals)

