"""Notebook 08 (convergence): learning curves of every run, and the training study's figure.

:func:`learning_curves_figure` draws one column per run (every fold thin, the fold mean
thick, the epoch where the mean reaches 95 % of its final value, the rule's verdict in the
title); :func:`study_figure` overlays the training study's probes. The rule itself and the
tables are in :mod:`mtloca_lib.evaluation.convergence` (``convergence_table`` re-exported).

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt

from mtloca_lib.evaluation.convergence import (
    RISING,
    convergence_status,
    convergence_table,  # noqa: F401  (re-exported for notebook 08)
    epoch_reaching,
    load_histories,
    mean_curve,
)
from mtloca_lib.experiments import model_color

CURVE_PANELS = (
    ("val_dice", "validation Dice (all images)"),
    ("val_dice_lesion", "validation Dice (lesion images)"),
    ("val_accuracy", "validation accuracy (3 classes)"),
    ("total", "loss (training —, validation --)"),
)


def learning_curves_figure(runs: Mapping[str, str | Path], title: str = ""):
    """Learning curves of several runs: one column per run, one row per curve.

    Each panel shows every fold (thin) and the fold mean (thick); a dotted vertical line
    marks the epoch where the mean reaches 95 % of its final value (rising curves), and
    the column title says whether the run converged by the rule. The loss row shows the
    training total (solid) and, where recorded, the validation total (dashed).

    Args:
        runs: column label -> run directory.
        title: the figure's suptitle (e.g. the protocol).

    Returns:
        a matplotlib Figure.
    """
    labels = list(runs)
    fig, axes = plt.subplots(len(CURVE_PANELS), len(labels), figsize=(3.2 * len(labels), 2.4 * len(CURVE_PANELS)),
                             squeeze=False, sharex="col")
    for j, label in enumerate(labels):
        h = load_histories(runs[label])
        status = convergence_status(histories=h)
        verdict = {True: "converged", False: "NOT converged", None: "no validation curve"}[status["converged"]]
        if status["converged"] is not None:
            verdict += f" (rise {status['rise']:+.3f})"
        axes[0, j].set_title(f"{label}\n{verdict}", fontsize=9, color=model_color(label, "black"))
        mean_color = model_color(label, "C0")  # the model's colour, where the column is a model
        for i, (metric, ylabel) in enumerate(CURVE_PANELS):
            ax = axes[i, j]
            series = [(metric, "-")] + ([("val_total", "--")] if metric == "total" else [])
            drawn = False
            for col, style in series:
                if col not in h or h[col].isna().all():
                    continue
                for _, g in h.groupby("fold"):
                    ax.plot(g["epoch"], g[col], style, color="0.6", lw=0.7)
                mean = mean_curve(h, col)
                ax.plot(mean.index, mean.to_numpy(), style, color=mean_color if style == "-" else "0.25", lw=2)
                drawn = True
                if col in RISING:
                    e95 = epoch_reaching(mean)
                    if not math.isnan(e95):
                        ax.axvline(e95, color="C3", ls=":", lw=1)
                        ax.text(e95, ax.get_ylim()[0], f" 95 % @ {e95:.0f}", color="C3", fontsize=7,
                                va="bottom")
            if not drawn:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes,
                        color="0.5")
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            if i == len(CURVE_PANELS) - 1:
                ax.set_xlabel("epoch")
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def study_figure(runs: Mapping[str, str | Path], metrics=("val_dice_lesion", "val_accuracy", "seg")):
    """Overlaid fold-mean curves of several probes (the training study's figure).

    Args:
        runs: probe name -> run directory.
        metrics: history columns, one panel each ("seg" is the training final-mask loss).

    Returns:
        a matplotlib Figure.
    """
    labels = {"val_dice": "validation Dice (all images)", "val_dice_lesion": "validation Dice (lesion images)",
              "val_accuracy": "validation accuracy", "seg": "training loss, final mask (CE)",
              "val_seg": "validation loss, final mask (CE)"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (name, rd) in enumerate(runs.items()):
            curve = mean_curve(load_histories(rd), metric)
            if len(curve):
                ax.plot(curve.index, curve.to_numpy(), color=f"C{i % 10}", lw=1.4, label=name)
        ax.set_xlabel("epoch")
        ax.set_title(labels.get(metric, metric), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
