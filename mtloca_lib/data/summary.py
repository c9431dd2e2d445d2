"""Table 1: what is in a dataset, per class and in total.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mtloca_lib.data.records import RawDataset

COUNT_COLUMNS = (
    "n_images", "n_with_lesion", "n_multi_mask",
    "height_min", "height_max", "width_min", "width_max",
)
COLUMNS = (
    "n_images", "n_with_lesion", "n_multi_mask",
    "height_min", "height_median", "height_max",
    "width_min", "width_median", "width_max",
    "lesion_px_median", "lesion_px_q1", "lesion_px_q3",
    "lesion_frac_median", "lesion_frac_q1", "lesion_frac_q3",
)


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile) with linear interpolation; NaN when empty."""
    if values.size == 0:
        return (float("nan"),) * 3
    q1, median, q3 = np.percentile(values.astype(np.float64), [25, 50, 75])
    return float(median), float(q1), float(q3)


def _row(heights: np.ndarray, widths: np.ndarray, areas: np.ndarray, n_masks: np.ndarray) -> dict:
    """Statistics of one group of images (a class, or all of them)."""
    has_lesion = areas > 0
    fractions = areas / np.maximum(heights * widths, 1)
    px_median, px_q1, px_q3 = _quartiles(areas[has_lesion])
    fr_median, fr_q1, fr_q3 = _quartiles(fractions[has_lesion])
    empty = heights.size == 0
    return {
        "n_images": int(heights.size),
        "n_with_lesion": int(has_lesion.sum()),
        "n_multi_mask": int((n_masks > 1).sum()),
        "height_min": None if empty else int(heights.min()),
        "height_median": float("nan") if empty else float(np.median(heights)),
        "height_max": None if empty else int(heights.max()),
        "width_min": None if empty else int(widths.min()),
        "width_median": float("nan") if empty else float(np.median(widths)),
        "width_max": None if empty else int(widths.max()),
        "lesion_px_median": px_median,
        "lesion_px_q1": px_q1,
        "lesion_px_q3": px_q3,
        "lesion_frac_median": fr_median,
        "lesion_frac_q1": fr_q1,
        "lesion_frac_q3": fr_q3,
    }


def data_summary(raw: RawDataset, decimals: int = 4) -> pd.DataFrame:
    """Per-class data summary (the paper's Table 1), plus a "total" row.

    Lesion statistics are over images whose mask is not empty (a normal class
    therefore gets NaN there); the fraction is lesion pixels / image pixels at
    native size. ``n_multi_mask`` counts images whose mask is the union of more
    than one mask file. Counts, minima and maxima are integers (``<NA>`` for a
    class without images); medians and quartiles are floats rounded to
    ``decimals``, so the table prints identically on every run.

    Args:
        raw: the dataset, as returned by a reader or the phantom.
        decimals: rounding of the float columns.

    Returns:
        DataFrame indexed by class name (in ``raw.class_names`` order, then "total")
        with the columns in ``COLUMNS``.
    """
    heights = np.array([c.image.shape[0] for c in raw.cases], dtype=np.int64)
    widths = np.array([c.image.shape[1] for c in raw.cases], dtype=np.int64)
    areas = np.array([int(np.count_nonzero(c.mask)) for c in raw.cases], dtype=np.int64)
    n_masks = np.array([len(c.mask_paths) for c in raw.cases], dtype=np.int64)
    labels = raw.labels

    rows = {}
    for index, name in enumerate(raw.class_names):
        keep = labels == index
        rows[name] = _row(heights[keep], widths[keep], areas[keep], n_masks[keep])
    rows["total"] = _row(heights, widths, areas, n_masks)

    table = pd.DataFrame.from_dict(rows, orient="index")[list(COLUMNS)]
    table.index.name = "class"
    for column in COLUMNS:
        if column in COUNT_COLUMNS:
            table[column] = table[column].astype("Int64")
        else:
            table[column] = table[column].astype(np.float64).round(decimals)
    return table
