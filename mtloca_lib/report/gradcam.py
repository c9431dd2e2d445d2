"""Figure 6 (Grad-CAM heat maps of the classification head) and the mass-in-lesion check.

Every heat map is computed with the model of the fold in which the image was a
*test* image (read from the run's ``folds.csv``), so no map comes from a model
that trained on the image. The maps explain the classification head through the
layer the head reads (``model.gradcam_layer``, see ``docs/models.md``).

Case rule (:func:`select_cases`): for each class, among the test images of one
fold (fold 0 by default) that the model classified correctly, the one with the
highest probability of its class (ties: case id). A class without a correctly
classified test image in that fold falls back to its image with the highest
probability of the true class, and the table says so.

Quantitative check (:func:`lesion_mass`): for each image with a lesion, the
fraction of the heat map's mass (sum of the map's values) that lies inside the
true lesion, and inside the lesion dilated by a few pixels. A map spread
uniformly over the image would put exactly the lesion's area fraction inside it,
so the table shows that fraction beside it.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import ndimage

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.experiments import DISPLAY, model_color
from mtloca_lib.inference import overlay as plotting_overlay
from mtloca_lib.inference.gradcam import grad_cam
from mtloca_lib.inference.predict import load_weights
from mtloca_lib.runio import read_json
from mtloca_lib.training.cv import load_data
from mtloca_lib.training.loop import network_inputs

__all__ = [
    "run_data", "select_cases", "folds_with_weights", "case_maps", "mass_fraction", "lesion_mass",
    "lesion_mass_summary", "figure6", "figure6_from_runs",
]


def run_data(run_dir: str | Path):
    """The run's config, fold table and prepared data (from the cache when possible)."""
    run_dir = Path(run_dir)
    cfg = RunConfig.from_dict(read_json(run_dir / "config.json"))
    folds = pd.read_csv(run_dir / "folds.csv", dtype={"case_id": str})
    return cfg, folds, load_data(cfg)


def select_cases(run_dir: str | Path, fold: int = 0, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Figure 6's cases, one per class, by the rule in the module docstring.

    Args:
        run_dir: a finished run (its ``predictions.csv``).
        fold: the fold whose test images are searched.
        classes: classes in row order (default: the run's class order).

    Returns:
        DataFrame with ``case_id, true_class, pred_class, prob_true, fold, reason``.
    """
    pred = pd.read_csv(Path(run_dir) / "predictions.csv", dtype={"case_id": str})
    names = [c[5:] for c in pred.columns if c.startswith("prob_")]
    if not names:
        raise ValueError(f"{run_dir}: the model has no classification output")
    sub = pred[pred["fold"] == fold].copy()
    if sub.empty:
        raise ValueError(f"{run_dir}: fold {fold} has no test images")
    sub["prob_true"] = [row[f"prob_{row['true_class']}"] for _, row in sub.iterrows()]
    sub["correct"] = sub["pred_label"] == sub["true_label"]
    rows = []
    for c in (classes or names):
        cand = sub[sub["true_class"] == c]
        if cand.empty:
            continue
        ok = cand[cand["correct"]]
        if len(ok):
            pick = ok.sort_values(["prob_true", "case_id"], ascending=[False, True], kind="stable").iloc[0]
            reason = f"correct, highest p({c}) in fold {fold}"
        else:
            pick = cand.sort_values(["prob_true", "case_id"], ascending=[False, True], kind="stable").iloc[0]
            reason = f"none correct in fold {fold}: highest p({c})"
        rows.append({"case_id": pick["case_id"], "true_class": c, "pred_class": pick["pred_class"],
                     "prob_true": float(pick["prob_true"]), "fold": int(pick["fold"]), "reason": reason})
    return pd.DataFrame(rows, columns=["case_id", "true_class", "pred_class", "prob_true", "fold", "reason"])


def folds_with_weights(run_dirs: Sequence[str | Path] | str | Path) -> tuple[list[int], list[int]]:
    """The test folds whose saved weights (``fold<k>/model.pt``) every given run has.

    A run trained here keeps every fold's weights; a committed run keeps only some (weights
    are large), so a notebook on committed runs explains the test images of those folds.

    Args:
        run_dirs: one finished run, or several (the folds all of them have).

    Returns:
        ``(present, missing)``: sorted fold indices with and without weights in all runs.

    Raises:
        FileNotFoundError: when no fold has weights in every run, naming the files and the fix.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(r) for r in run_dirs]
    all_folds: set[int] = set()
    present: set[int] | None = None
    for rd in dirs:
        folds = set(pd.read_csv(rd / "folds.csv")["fold"].astype(int))
        all_folds |= folds
        have = {f for f in folds if (rd / f"fold{f}" / "model.pt").exists()}
        present = have if present is None else present & have
    present = present or set()
    if not present:
        names = ", ".join(str(rd / "fold<k>" / "model.pt") for rd in dirs)
        raise FileNotFoundError(
            f"no fold has saved weights in every run ({names}): Grad-CAM needs the model of the fold "
            "in which an image was a test image. Train the run here (its folds keep model.pt), or "
            "copy the weights beside the committed fold files.")
    return sorted(present), sorted(all_folds - present)


def _fold_model(run_dir: Path, fold: int):
    path = run_dir / f"fold{fold}" / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no saved weights for fold {fold}; Grad-CAM explains each image "
                                "with its test fold's model (see folds_with_weights)")
    model, cfg, class_names = load_weights(path)
    return model.cpu().eval(), cfg, class_names


def case_maps(run_dir: str | Path, case_ids: Sequence[str] | None = None, target: str = "pred",
              batch_size: int = 16, folds: Sequence[int] | None = None) -> dict:
    """Grad-CAM maps of some (or all) images of a run, each from its own test fold's model.

    Args:
        run_dir: a finished run whose model classifies.
        case_ids: the images (default: every image of the run, or of ``folds``).
        target: which class to explain: ``"pred"`` (the predicted class, as in the
            paper's figure) or ``"true"``.
        batch_size: images per Grad-CAM call.
        folds: with ``case_ids`` None, only the test images of these folds.

    Returns:
        dict with ``case_ids`` (list), ``images`` and ``masks`` (N, S, S) at network
        size, ``cams`` (N, S, S) in [0, 1], ``folds`` (N,), ``labels`` (N,),
        ``pred`` (N,) predicted class indices and ``prob`` (N, n_classes), and
        ``class_names``.
    """
    if target not in ("pred", "true"):
        raise ValueError(f"target must be 'pred' or 'true', not {target!r}")
    run_dir = Path(run_dir)
    cfg, fold_table, data = run_data(run_dir)
    index = {c: i for i, c in enumerate(data.case_ids)}
    fold_of = dict(zip(fold_table["case_id"], fold_table["fold"]))
    if case_ids is not None:
        ids = [str(c) for c in case_ids]
    elif folds is not None:
        keep = {int(f) for f in folds}
        ids = [c for c in data.case_ids if c in fold_of and int(fold_of[c]) in keep]
    else:
        ids = list(data.case_ids)
    missing = [c for c in ids if c not in index or c not in fold_of]
    if missing:
        raise KeyError(f"{run_dir}: no such case(s) {missing[:5]}")
    n = len(ids)
    size = data.images.shape[-1]
    cams = np.zeros((n, size, size), np.float32)
    pred = np.zeros(n, np.int64)
    prob = np.zeros((n, len(data.class_names)), np.float32)
    fold_arr = np.array([int(fold_of[c]) for c in ids])
    for fold in sorted(set(fold_arr.tolist())):
        model, fcfg, _ = _fold_model(run_dir, fold)
        where = np.flatnonzero(fold_arr == fold)
        for s in range(0, len(where), batch_size):
            pos = where[s:s + batch_size]
            rows = [index[ids[p]] for p in pos]
            # the fold model never saw these images: they are this fold's test images
            assert all(int(fold_of[ids[p]]) == fold for p in pos)
            x = network_inputs(torch.from_numpy(data.images[rows]).unsqueeze(1).float(), fcfg)
            with torch.no_grad():
                logits = model(x)["cls"].float()
            p = torch.softmax(logits, 1).numpy()
            cls = p.argmax(1) if target == "pred" else data.labels[rows]
            cams[pos] = grad_cam(model, x, model.gradcam_layer, class_index=torch.as_tensor(cls))
            pred[pos], prob[pos] = p.argmax(1), p
    rows = [index[c] for c in ids]
    return {"case_ids": ids, "images": data.images[rows], "masks": data.masks[rows], "cams": cams,
            "folds": fold_arr, "labels": data.labels[rows], "pred": pred, "prob": prob,
            "class_names": list(data.class_names)}


def mass_fraction(cams, masks, dilate: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each heat map's mass inside its (dilated) mask, and the region's area fraction.

    Args:
        cams: (N, H, W) non-negative heat maps.
        masks: (N, H, W) lesion masks.
        dilate: grow each mask by this many pixels (3x3 cross, repeated) first.

    Returns:
        ``mass`` (N,): sum(cam * region) / sum(cam), NaN for an all-zero map or an
        empty region; ``area`` (N,): the region's fraction of the image (what a
        uniform map would score).
    """
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.asarray(masks).astype(bool)
    if cams.shape != masks.shape or cams.ndim != 3:
        raise ValueError(f"cams {cams.shape} and masks {masks.shape} must both be (N, H, W)")
    mass = np.full(len(cams), np.nan)
    area = np.zeros(len(cams))
    for i, (c, m) in enumerate(zip(cams, masks)):
        region = ndimage.binary_dilation(m, iterations=dilate) if dilate > 0 and m.any() else m
        area[i] = region.mean()
        total = c.sum()
        if total > 0 and region.any():
            mass[i] = float((c * region).sum() / total)
    return mass, area


def lesion_mass(run_dir: str | Path, dilate: int = 3, target: str = "pred",
                folds: Sequence[int] | None = None) -> pd.DataFrame:
    """Per image with a lesion: the share of the Grad-CAM mass inside the true lesion.

    Every image is explained by its own test fold's model. ``folds`` limits it to the test
    images of those folds (default: all; see :func:`folds_with_weights`).

    Returns:
        DataFrame: ``case_id, fold, true_class, pred_class, correct, mass_in_lesion,
        lesion_area, mass_in_dilated, dilated_area, empty_map``.
    """
    maps = case_maps(run_dir, target=target, folds=folds)
    has = maps["masks"].reshape(len(maps["masks"]), -1).any(1)
    m0, a0 = mass_fraction(maps["cams"][has], maps["masks"][has], 0)
    md, ad = mass_fraction(maps["cams"][has], maps["masks"][has], dilate)
    names = maps["class_names"]
    return pd.DataFrame({
        "case_id": np.array(maps["case_ids"])[has],
        "fold": maps["folds"][has],
        "true_class": [names[c] for c in maps["labels"][has]],
        "pred_class": [names[c] for c in maps["pred"][has]],
        "correct": maps["pred"][has] == maps["labels"][has],
        "mass_in_lesion": m0, "lesion_area": a0,
        "mass_in_dilated": md, "dilated_area": ad,
        "empty_map": maps["cams"][has].reshape(int(has.sum()), -1).max(1) <= 0,
    })


def lesion_mass_summary(per_image: pd.DataFrame, dilate: int = 3) -> pd.DataFrame:
    """Per class (and all lesion images): mean heat-map mass inside the lesion beside a uniform map's.

    Columns: ``n`` images, ``n_empty_map`` (no positive evidence: left out of the
    means), ``mass_in_lesion`` and ``uniform_in_lesion`` (mean lesion area
    fraction), ``ratio`` (their quotient: 1 means no better than a uniform map),
    the same for the lesion dilated by ``dilate`` px, and ``share_majority_dilated``
    (fraction of images with more than half the mass in the dilated lesion).
    """
    groups = [(c, g) for c, g in per_image.groupby("true_class", sort=False)] + [("all lesion images", per_image)]
    rows = []
    for name, g in groups:
        ok = g[~g["empty_map"] & g["mass_in_lesion"].notna()]
        row = {"class": name, "n": len(g), "n_empty_map": int(g["empty_map"].sum()),
               "mass_in_lesion": ok["mass_in_lesion"].mean(), "uniform_in_lesion": ok["lesion_area"].mean(),
               f"mass_within_{dilate}px": ok["mass_in_dilated"].mean(),
               f"uniform_within_{dilate}px": ok["dilated_area"].mean(),
               "share_majority_dilated": (ok["mass_in_dilated"] > 0.5).mean() if len(ok) else np.nan}
        row["ratio"] = row["mass_in_lesion"] / row["uniform_in_lesion"] if row["uniform_in_lesion"] else np.nan
        row[f"ratio_within_{dilate}px"] = (row[f"mass_within_{dilate}px"] / row[f"uniform_within_{dilate}px"]
                                          if row[f"uniform_within_{dilate}px"] else np.nan)
        rows.append(row)
    cols = ["class", "n", "n_empty_map", "mass_in_lesion", "uniform_in_lesion", "ratio",
            f"mass_within_{dilate}px", f"uniform_within_{dilate}px", f"ratio_within_{dilate}px",
            "share_majority_dilated"]
    return pd.DataFrame(rows)[cols].set_index("class")


def figure6(images, masks, cams: Mapping[str, Sequence[np.ndarray]], captions: Mapping[str, Sequence[str]],
            row_labels: Sequence[str]) -> Figure:
    """Figure 6: the input image, then each model's Grad-CAM heat map, one case per row.

    Args:
        images: (N, H, W) images in [0, 1].
        masks: (N, H, W) true lesion masks (drawn as a green contour).
        cams: column title (model) -> N heat maps (H, W) in [0, 1].
        captions: column title -> N short captions (e.g. predicted class and probability).
        row_labels: one label per case.
    """
    n, cols = len(images), ["input", *cams]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.0 * len(cols), 2.1 * n + 0.5), squeeze=False)
    im = None
    for i in range(n):
        plotting_overlay.overlay_mask(axes[i, 0], images[i], masks[i], legend=False)
        for j, name in enumerate(cams, start=1):
            ax = axes[i, j]
            im = plotting_overlay.overlay_heatmap(ax, images[i], cams[name][i])
            plotting_overlay.draw_contour(ax, masks[i], plotting_overlay.TRUTH_COLOR, 0.8)
            ax.text(0.03, 0.03, captions[name][i], transform=ax.transAxes, fontsize="x-small", color="white",
                    va="bottom", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.5, "lw": 0})
        axes[i, 0].text(-0.06, 0.5, row_labels[i], transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize="x-small")
    for j, c in enumerate(cols):
        axes[0, j].set_title(c, fontsize="small", color=model_color(c, "black"))
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    if im is not None:
        cax = fig.add_axes((0.945, 0.15, 0.015, 0.7))
        fig.colorbar(im, cax=cax, label="Grad-CAM (min-max scaled)")
    return fig


def figure6_from_runs(runs: Mapping[str, str | Path], cases: pd.DataFrame, target: str = "pred") -> Figure:
    """Figure 6 for the cases in ``cases`` (from :func:`select_cases`), each model's map
    from its own run's fold model (the fold in which the case was a test image)."""
    ids = cases["case_id"].astype(str).tolist()
    cams, captions, first = {}, {}, None
    for model, rd in runs.items():
        maps = case_maps(rd, ids, target=target)
        first = first or maps
        name = DISPLAY.get(model, model)
        cams[name] = list(maps["cams"])
        names = maps["class_names"]
        captions[name] = [f"pred {names[p]} {pr[p]:.2f}" for p, pr in zip(maps["pred"], maps["prob"])]
    labels = [f"{c}\n{cid}" for c, cid in zip(cases["true_class"], ids)]
    return figure6(first["images"], first["masks"], cams, captions, labels)
