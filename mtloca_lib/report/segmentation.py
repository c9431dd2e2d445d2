"""Notebook 02 (segmentation): Table 2 and Figure 4.

:func:`comparison_table` (mean +- std over folds per model), :func:`dice_by_case` (each
image's Dice from the fold where it was a test image), :func:`pick_cases` (Figure 4's rule:
per class, the image at the median Dice of the reference model, plus the image(s) where
the models' Dice differ most), :func:`figure4` / :func:`figure4_from_runs` (image, truth,
one column per model).

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.evaluation.runs import TABLE2_METRICS, run_summary
from mtloca_lib.experiments import DISPLAY, model_color
from mtloca_lib.inference import overlay as plotting_overlay
from mtloca_lib.runio import read_json
from mtloca_lib.training.cv import load_data, load_pred_masks


def comparison_table(runs: Mapping[str, Path], metrics=None) -> pd.DataFrame:
    """Table 2: mean +- std over folds per model (rows in the order of ``runs``).

    Args:
        runs: model key -> finished run directory.
        metrics: metric columns (default :data:`mtloca_lib.evaluation.runs.TABLE2_METRICS`).

    Returns:
        DataFrame indexed by display name; one text column (``"mean ± std"``) per metric.
    """
    metrics = TABLE2_METRICS if metrics is None else metrics
    frames = []
    for model, rd in runs.items():
        row = run_summary([rd], metrics=metrics).reset_index(drop=True)
        row.index = pd.Index([DISPLAY.get(model, model)], name="model")
        frames.append(row)
    table = pd.concat(frames)
    table.columns.name = None
    return table[[m for m in metrics if m in table.columns]].fillna("n/a")


def dice_by_case(runs: Mapping[str, Path]) -> pd.DataFrame:
    """Per-image Dice of several runs on the same images.

    Returns:
        DataFrame indexed by case_id (the first run's order): ``true_class``, then one
        Dice column per model key.

    Raises:
        ValueError: the runs were not evaluated on the same images.
    """
    table = None
    for model, rd in runs.items():
        p = pd.read_csv(Path(rd) / "predictions.csv", dtype={"case_id": str})
        p = p.set_index("case_id")
        if table is None:
            table = p[["true_class"]].copy()
            names = [c[5:] for c in p.columns if c.startswith("prob_")]
            table.attrs["class_names"] = names or list(dict.fromkeys(p["true_class"]))
        elif set(p.index) != set(table.index):
            raise ValueError(f"{model}: evaluated on other images than {next(iter(runs))}")
        table[model] = p["dice"].reindex(table.index)
    return table


def pick_cases(dice: pd.DataFrame, reference: str = "mtl_oca", class_order: Sequence[str] | None = None,
               n_disagree: int = 1) -> pd.DataFrame:
    """Figure 4's cases, by rule (the same cases for every model).

    Rule: for every class, the image at the median Dice of ``reference`` within that
    class (sorted by Dice, then case_id; the lower median for an even count); then the
    ``n_disagree`` images, among the rest, whose Dice differs most between the models
    (max minus min; ties: case_id).

    Args:
        dice: from :func:`dice_by_case`.
        reference: the model whose Dice defines the median.
        class_order: classes in row order (default: ``dice.attrs["class_names"]``, else the
            order of first appearance).
        n_disagree: how many largest-disagreement cases to add.

    Returns:
        DataFrame with ``case_id``, ``true_class``, ``reason`` and the Dice columns.
    """
    models = [c for c in dice.columns if c != "true_class"]
    if reference not in models:
        raise ValueError(f"reference model {reference!r} not in {models}")
    d = dice.reset_index().rename(columns={dice.index.name or "index": "case_id"})
    if class_order is None:
        class_order = dice.attrs.get("class_names") or list(dict.fromkeys(d["true_class"]))
    classes = [c for c in class_order if c in set(d["true_class"])]
    chosen = []
    for c in classes:
        sub = d[d["true_class"] == c].sort_values([reference, "case_id"], kind="stable")
        if len(sub):
            row = sub.iloc[(len(sub) - 1) // 2]
            chosen.append({**row.to_dict(), "reason": f"median {DISPLAY.get(reference, reference)} Dice ({c})"})
    rest = d[~d["case_id"].isin([r["case_id"] for r in chosen])].copy()
    if n_disagree > 0 and len(rest) and len(models) > 1:
        rest["_spread"] = rest[models].max(axis=1) - rest[models].min(axis=1)
        rest = rest.sort_values(["_spread", "case_id"], ascending=[False, True], kind="stable")
        for _, row in rest.head(n_disagree).iterrows():
            chosen.append({**row.drop("_spread").to_dict(),
                           "reason": f"largest Dice spread across models ({row['_spread']:.2f})"})
    out = pd.DataFrame(chosen)
    return out[["case_id", "true_class", "reason", *models]]


def case_arrays(run_dir: Path, case_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The network-size images and true masks of some cases of a run (from its config's data)."""
    cfg = RunConfig.from_dict(read_json(Path(run_dir) / "config.json"))
    data = load_data(cfg)
    index = {c: i for i, c in enumerate(data.case_ids)}
    idx = [index[str(c)] for c in case_ids]
    return data.images[idx], data.masks[idx]


def figure4(images, truths, preds: Mapping[str, Sequence[np.ndarray]], dice: Mapping[str, Sequence[float]],
            row_labels: Sequence[str], title: str | None = None) -> Figure:
    """Figure 4: image, ground truth and each model's segmentation, one case per row.

    Args:
        images: (N, H, W) images in [0, 1].
        truths: (N, H, W) true masks.
        preds: column title (model) -> N predicted masks (H, W).
        dice: column title -> N Dice values (written in each panel).
        row_labels: one label per case.
        title: optional figure title.

    Returns:
        the Figure (N rows, 2 + len(preds) columns).
    """
    n, cols = len(images), ["image", "ground truth", *preds]
    top = 0.35 if title else 0.0
    height = 2.1 * n + 0.4 + top
    fig, axes = plt.subplots(n, len(cols), figsize=(2.0 * len(cols), height), squeeze=False)
    for i in range(n):
        plotting_overlay.show_image(axes[i, 0], images[i])
        plotting_overlay.overlay_mask(axes[i, 1], images[i], truths[i], legend=False)
        for j, name in enumerate(preds, start=2):
            ax = axes[i, j]
            plotting_overlay.overlay_mask(ax, images[i], truths[i], preds[name][i], legend=False)
            ax.text(0.03, 0.03, f"Dice {dice[name][i]:.2f}", transform=ax.transAxes, fontsize="x-small",
                    color="white", va="bottom", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.5, "lw": 0})
        axes[i, 0].text(-0.06, 0.5, row_labels[i], transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize="x-small")
    for j, c in enumerate(cols):
        axes[0, j].set_title(c, fontsize="small", color=model_color(c, "black"))
    handles = [Line2D([], [], color=plotting_overlay.TRUTH_COLOR, label="ground truth"),
               Line2D([], [], color=plotting_overlay.PRED_COLOR, label="prediction")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize="small", frameon=False)
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - top / height))
    return fig


def figure4_from_runs(runs: Mapping[str, Path], picks: pd.DataFrame, title: str | None = None) -> Figure:
    """Figure 4 for the cases in ``picks`` (from :func:`pick_cases`), read from the runs."""
    ids = picks["case_id"].astype(str).tolist()
    images, truths = case_arrays(next(iter(runs.values())), ids)
    preds, dice = {}, {}
    for model, rd in runs.items():
        masks = load_pred_masks(rd)
        name = DISPLAY.get(model, model)
        preds[name] = [masks[c] for c in ids]
        dice[name] = picks[model].tolist()
    labels = [f"{c}\n{r}" for c, r in zip(ids, picks["reason"])]
    return figure4(images, truths, preds, dice, labels, title=title)

