"""Notebook 00 (the data): Table 1, Figure 3 (the Gaussian derivative), the near-duplicates.

Figure 3's example cases are chosen by a rule (:func:`example_cases`): per class, the image
whose native lesion area is closest to the class median (a class without lesions: its first
image). :func:`sigma_figure` and :func:`sigma_table` show how the derivative's scale was
chosen. The near-duplicate pairs (:func:`near_duplicate_pairs`, :func:`spread_pairs`) are
shown at evenly spaced ranks of the score, from the best to the one closest to the threshold
(:func:`duplicate_pairs_figure`). Re-exports what the notebook needs from the data stage
(``load_raw``, ``load_prepared``, ``data_summary``, ``group_table``, ``DEFAULT_SIGMA``).

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import ndimage

# what notebook 00 calls from the data stage, re-exported so it imports from here only
from mtloca_lib.data.datasets import load_prepared, load_raw  # noqa: F401
from mtloca_lib.data.duplicates import group_table  # noqa: F401
from mtloca_lib.data.preprocess import (
    DEFAULT_SIGMA,  # noqa: F401
    make_input,
)
from mtloca_lib.data.summary import data_summary  # noqa: F401
from mtloca_lib.inference import overlay as plotting_overlay
from mtloca_lib.training import protocol


def example_cases(labels, lesion_area, class_names: Sequence[str],
                  order: Sequence[str] = ("benign", "malignant", "normal")) -> dict[str, int]:
    """One example image per class, chosen by rule.

    Rule: per class, the image whose native lesion area is closest to the median
    lesion area of that class (ties: the first in dataset order). For a class
    without lesions (normal) every area is 0, so it is the class's first image.

    Args:
        labels: (N,) class indices.
        lesion_area: (N,) lesion area (pixels).
        class_names: names of the indices.
        order: classes to return, in this order (absent classes are skipped).

    Returns:
        class name -> index into the dataset.
    """
    labels = np.asarray(labels)
    area = np.asarray(lesion_area, dtype=float)
    out = {}
    for name in order:
        if name not in class_names:
            continue
        idx = np.flatnonzero(labels == list(class_names).index(name))
        if idx.size == 0:
            continue
        median = np.median(area[idx])
        out[name] = int(idx[np.argmin(np.abs(area[idx] - median))])
    return out


def derivative_channel(images, sigma: float) -> np.ndarray:
    """The network's second input channel (normalised |grad (G_sigma * f)|) of (N, H, W) images."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
    return make_input(x, sigma=float(sigma))[:, 1].numpy()


def figure3(images, titles: Sequence[str], sigma: float, masks=None) -> Figure:
    """Figure 3: images (top row) and their Gaussian-derivative magnitude (bottom row).

    Args:
        images: (N, H, W) float images in [0, 1] (the resized network input).
        titles: one title per image (e.g. the class and the case id).
        sigma: Gaussian std in pixels of these images.
        masks: optional (N, H, W) lesion masks, drawn as contours on the image row.

    Returns:
        the Figure (2 rows, N columns).
    """
    images = np.asarray(images, dtype=np.float32)
    deriv = derivative_channel(images, sigma)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.0), squeeze=False)
    for j in range(n):
        if masks is not None:
            plotting_overlay.overlay_mask(axes[0, j], images[j], masks[j], legend=False, linewidth=0.8)
        else:
            plotting_overlay.show_image(axes[0, j], images[j])
        axes[0, j].set_title(titles[j], fontsize="small")
        plotting_overlay.show_image(axes[1, j], deriv[j])
    axes[0, 0].text(-0.06, 0.5, "image", transform=axes[0, 0].transAxes, rotation=90,
                    ha="right", va="center", fontsize="small")
    axes[1, 0].text(-0.06, 0.5, f"|grad(G * f)|, sigma = {sigma:g} px", transform=axes[1, 0].transAxes,
                    rotation=90, ha="right", va="center", fontsize="small")
    fig.tight_layout()
    return fig


def sigma_figure(image, sigmas: Sequence[float], chosen: float, mask=None) -> Figure:
    """One image and its derivative channel at several sigmas (the choice of sigma).

    Args:
        image: (H, W) float image in [0, 1].
        sigmas: the sigmas to show, in pixels.
        chosen: the sigma the runs use (marked in its panel's title).
        mask: optional (H, W) lesion mask, drawn as a contour on every panel.

    Returns:
        the Figure (1 row: the image, then one panel per sigma).
    """
    image = np.asarray(image, dtype=np.float32)
    panels = [derivative_channel(image[None], s)[0] for s in sigmas]
    fig, axes = plt.subplots(1, len(sigmas) + 1, figsize=(2.4 * (len(sigmas) + 1), 2.7), squeeze=False)
    axes = axes[0]
    for ax, img, title in zip(axes, [image, *panels],
                              ["image", *[f"sigma = {s:g} px" + (" (used)" if np.isclose(s, chosen) else "")
                                          for s in sigmas]]):
        if mask is not None:
            plotting_overlay.overlay_mask(ax, img, mask, legend=False, linewidth=0.8)
        else:
            plotting_overlay.show_image(ax, img)
        ax.set_title(title, fontsize="small")
    fig.tight_layout()
    return fig


def sigma_table(images, masks, sigmas: Sequence[float], band: int = 2) -> pd.DataFrame:
    """How well the derivative channel marks lesion edges, per sigma.

    For every image with a lesion: the mean of the (normalised) derivative channel
    on a band of ``band`` pixels either side of the lesion boundary, divided by its
    mean elsewhere. Larger means the channel picks out the lesion's edge rather
    than speckle or tissue texture.

    Args:
        images: (N, H, W) float images in [0, 1].
        masks: (N, H, W) lesion masks.
        sigmas: the sigmas to compare.
        band: half-width of the boundary band in pixels.

    Returns:
        DataFrame indexed by sigma: ``edge_to_background`` (median over images),
        ``q1``, ``q3`` and ``n_images``.
    """
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks).astype(bool)
    keep = masks.reshape(len(masks), -1).any(1)
    images, masks = images[keep], masks[keep]
    struct = np.ones((3, 3), bool)
    bands = np.stack([ndimage.binary_dilation(m, struct, band) & ~ndimage.binary_erosion(m, struct, band)
                      for m in masks]) if len(masks) else np.zeros_like(masks)
    rows = []
    for s in sigmas:
        ratios = []
        if len(images):
            d = derivative_channel(images, s)
            for di, bi in zip(d, bands):
                inside, outside = di[bi].mean(), di[~bi].mean()
                ratios.append(inside / outside if outside > 0 else np.nan)
        r = np.asarray(ratios, dtype=float)
        q1, med, q3 = (np.nanpercentile(r, [25, 50, 75]) if r.size and np.isfinite(r).any()
                       else (np.nan, np.nan, np.nan))
        rows.append({"sigma_px": float(s), "edge_to_background": round(float(med), 4),
                     "q1": round(float(q1), 4), "q3": round(float(q3), 4), "n_images": int(r.size)})
    return pd.DataFrame(rows).set_index("sigma_px")


def near_duplicate_pairs(cfg, data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The near-duplicate pairs and groups the grouped protocol uses for this run config.

    Both come from :mod:`mtloca_lib.training.protocol` (computed once, cached).

    Args:
        cfg: a RunConfig (its dataset, data_root and dataset_kwargs are used).
        data: the PreparedDataset of ``cfg``.

    Returns:
        (pairs, groups): pairs with columns ``case_a, case_b, score, ..., kind``;
        groups with columns ``case_id, group`` in the order of ``data``.
    """
    groups = protocol.near_duplicate_groups(cfg.dataset, cfg.data_root, data, cfg.dataset_kwargs)
    pairs = protocol.near_duplicate_pairs(cfg.dataset, cfg.data_root, data, cfg.dataset_kwargs)
    return pairs, groups


def spread_pairs(pairs: pd.DataFrame, n: int = 4) -> pd.DataFrame:
    """``n`` pairs at evenly spaced ranks of the score (the best first, the weakest last)."""
    if len(pairs) <= n:
        return pairs.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    ranked = pairs.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    idx = np.unique(np.round(np.linspace(0, len(ranked) - 1, n)).astype(int))
    return ranked.iloc[idx].reset_index(drop=True)


def duplicate_pairs_figure(images: Mapping[str, np.ndarray], pairs: pd.DataFrame,
                           classes: Mapping[str, str] | None = None) -> Figure:
    """Near-duplicate pairs side by side at native aspect ratio, one pair per row.

    Args:
        images: case_id -> greyscale image (uint8 or float in [0, 1]).
        pairs: rows with ``case_a``, ``case_b``, ``score`` and ``kind``.
        classes: optional case_id -> class name, added to the titles.

    Returns:
        the Figure.

    Raises:
        ValueError: no pairs.
    """
    if len(pairs) == 0:
        raise ValueError("no near-duplicate pairs to show")
    fig, axes = plt.subplots(len(pairs), 2, figsize=(6.0, 2.8 * len(pairs)), squeeze=False)
    for i, row in enumerate(pairs.itertuples(index=False)):
        for j, cid in enumerate((row.case_a, row.case_b)):
            img = np.asarray(images[str(cid)])
            img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img
            ax = axes[i, j]
            ax.imshow(np.squeeze(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
            cls = f" ({classes[str(cid)]})" if classes else ""
            ax.set_title(f"{cid}{cls}", fontsize="x-small")
        axes[i, 0].text(-0.06, 0.5, f"score {row.score:.3f}\n{row.kind}", transform=axes[i, 0].transAxes,
                        rotation=90, ha="right", va="center", fontsize="x-small")
    fig.tight_layout()
    return fig
