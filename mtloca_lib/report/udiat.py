"""Notebook 05 (UDIAT Dataset B): Tables 4-5 and Figure 7.

:func:`udiat_banner` says whether real UDIAT or its two-class phantom stand-in is shown;
:func:`figure7` / :func:`figure7_from_runs` draw segmentation examples above each model's
confusion matrix. Tables 4-5 reuse Tables 2-3's functions (re-exported from
``report.segmentation`` and ``report.classification``). UDIAT is licensed on request: its
figures are never committed (``reproduce`` strips them; ``.gitignore`` keeps ``*udiat*``
figures out of git).

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtloca_lib.experiments import DISPLAY
from mtloca_lib.inference import overlay as plotting_overlay
from mtloca_lib.report import common as plotting

# notebook 05 lays out Tables 4-5 as Tables 2-3: the same functions, re-exported
from mtloca_lib.report.classification import (  # noqa: F401
    classification_results,
    overall_table,
    per_class_table,
)
from mtloca_lib.report.segmentation import case_arrays, comparison_table, dice_by_case, pick_cases  # noqa: F401
from mtloca_lib.training.cv import load_pred_masks


def udiat_banner(real: bool) -> str:
    """Notebook 05's banner: real UDIAT or the two-class phantom stand-in."""
    if real:
        text = ("REAL DATA: UDIAT Dataset B (read from udiat_root / MTLOCA_UDIAT; licensed on request, "
                "never copied into the repository).")
    else:
        text = ("NO UDIAT CONFIGURED: set udiat_root (or MTLOCA_UDIAT) to the folder holding original/, GT/ "
                "and DatasetB.xlsx. Below, the TWO-CLASS PHANTOM (benign vs malignant, synthetic) stands in; "
                "its numbers say nothing about UDIAT or the paper.")
    bar = "=" * min(len(text), 100)
    return f"{bar}\n{text}\n{bar}"


def figure7(images, truths, preds: Mapping[str, Sequence[np.ndarray]], dice: Mapping[str, Sequence[float]],
            row_labels: Sequence[str], confusions: Mapping[str, pd.DataFrame], title: str = "") -> Figure:
    """Figure 7: segmentation examples (as Figure 4) above the confusion matrices (as Figure 5).

    Args:
        images, truths: (N, H, W) images and true masks.
        preds: model -> N predicted masks; dice: model -> N Dice values.
        row_labels: one label per case.
        confusions: model -> confusion counts (rows true, columns predicted).
    """
    n, k = len(images), len(preds)
    ncol = max(k + 1, len(confusions))
    fig = plt.figure(figsize=(2.1 * ncol, 2.1 * n + 3.0))
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.1 * n, 3.0])
    axes = top.subplots(n, k + 1, squeeze=False)
    for i in range(n):
        plotting_overlay.overlay_mask(axes[i, 0], images[i], truths[i], legend=False)
        axes[i, 0].text(-0.06, 0.5, row_labels[i], transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize="x-small")
        for j, name in enumerate(preds, start=1):
            ax = axes[i, j]
            plotting_overlay.overlay_mask(ax, images[i], truths[i], preds[name][i], legend=False)
            ax.text(0.03, 0.03, f"Dice {dice[name][i]:.2f}", transform=ax.transAxes, fontsize="x-small",
                    color="white", va="bottom", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.5, "lw": 0})
    for j, c in enumerate(["image + ground truth", *preds]):
        axes[0, j].set_title(c, fontsize="small")
    if title:
        top.suptitle(title, fontsize="small")
    if confusions:
        caxes = bottom.subplots(1, len(confusions), squeeze=False, gridspec_kw={"wspace": 0.8})[0]
        for ax, (name, cm) in zip(caxes, confusions.items()):
            plotting.plot_confusion(ax, cm, normalize="true", title=f"{name} (n = {int(cm.to_numpy().sum())})")
    return fig


def figure7_from_runs(runs: Mapping[str, str | Path], picks: pd.DataFrame, title: str = "") -> Figure:
    """Figure 7 from the runs: the cases in ``picks`` (``report.segmentation.pick_cases``) and each
    classifying model's pooled confusion matrix."""
    ids = picks["case_id"].astype(str).tolist()
    images, truths = case_arrays(Path(next(iter(runs.values()))), ids)
    preds, dice = {}, {}
    for model, rd in runs.items():
        masks = load_pred_masks(rd)
        name = DISPLAY.get(model, model)
        preds[name] = [masks[c] for c in ids]
        dice[name] = picks[model].tolist()
    confusions = {name: r["confusion"] for name, r in classification_results(runs).items()}
    labels = [f"{c}\n{cid}" for c, cid in zip(picks["true_class"], ids)]
    return figure7(images, truths, preds, dice, labels, confusions, title)
