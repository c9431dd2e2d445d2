"""Plot helpers for the notebooks: mask and heat-map overlays, confusion matrices,
image grids, and deterministic atomic figure saving.

Nothing here picks a backend; notebooks use the inline one, tests use Agg.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["overlay_mask", "overlay_heatmap", "plot_confusion", "image_grid", "save_figure"]

TRUTH_COLOR = "#00e000"
PRED_COLOR = "#ff3030"

# Metadata that would otherwise hold a timestamp or a version string.
_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _image2d(image) -> np.ndarray:
    """(H, W), (1, H, W) or (H, W, 1) -> (H, W)."""
    a = np.squeeze(_np(image))
    if a.ndim != 2:
        raise ValueError(f"expected a single-channel image, got shape {np.shape(image)}")
    return a


def _show(ax, image, vmin=0.0, vmax=1.0):
    ax.imshow(_image2d(image), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()


def _contour(ax, mask, color, linewidth):
    m = _image2d(mask).astype(float)
    if m.any():
        ax.contour(m, levels=[0.5], colors=[color], linewidths=linewidth)


def overlay_mask(
    ax, image, mask, pred=None, linewidth: float = 1.2, legend: bool = True,
    title: str | None = None,
):
    """Contours of the true mask (green) and optionally the prediction (red) on the image.

    Args:
        ax: matplotlib Axes.
        image: (H, W) greyscale in [0, 1] (a leading/trailing channel of 1 is accepted).
        mask: (H, W) true mask in {0, 1}.
        pred: (H, W) predicted mask in {0, 1}, or None.
        linewidth: contour width in points.
        legend: add a small legend naming the contours.
        title: optional axes title.

    Returns:
        the Axes.
    """
    _show(ax, image)
    _contour(ax, mask, TRUTH_COLOR, linewidth)
    handles = [Line2D([], [], color=TRUTH_COLOR, lw=linewidth, label="truth")]
    if pred is not None:
        _contour(ax, pred, PRED_COLOR, linewidth)
        handles.append(Line2D([], [], color=PRED_COLOR, lw=linewidth, label="prediction"))
    if legend:
        ax.legend(handles=handles, loc="lower right", fontsize="x-small", framealpha=0.6)
    if title:
        ax.set_title(title, fontsize="small")
    return ax


def overlay_heatmap(ax, image, cam, alpha: float = 0.45, cmap: str = "jet", title: str | None = None):
    """A heat map (e.g. Grad-CAM, values in [0, 1]) blended over the greyscale image.

    Args:
        ax: matplotlib Axes.
        image: (H, W) greyscale in [0, 1].
        cam: (H, W) heat map in [0, 1], same size as the image.
        alpha: opacity of the heat map.
        cmap: colormap of the heat map.
        title: optional axes title.

    Returns:
        the heat-map AxesImage (pass it to ``fig.colorbar`` if wanted).
    """
    img, c = _image2d(image), _image2d(cam)
    if img.shape != c.shape:
        raise ValueError(f"image {img.shape} and heat map {c.shape} differ in size")
    _show(ax, img)
    im = ax.imshow(c, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    if title:
        ax.set_title(title, fontsize="small")
    return im


def plot_confusion(
    ax, cm_df: pd.DataFrame, normalize: str | None = None, cmap: str = "Blues",
    title: str | None = None,
):
    """Annotated confusion matrix.

    Args:
        ax: matplotlib Axes.
        cm_df: counts, rows = true class, columns = predicted class (as returned by
            ``metrics.classification_metrics(...)["confusion"]``).
        normalize: None (counts), ``"true"`` (rows sum to 1: sensitivity on the
            diagonal), ``"pred"`` (columns sum to 1: precision on the diagonal) or
            ``"all"``. Normalised cells also show the count.
        cmap: colormap.
        title: optional axes title.

    Returns:
        the Axes.
    """
    counts = cm_df.to_numpy(dtype=float)
    if normalize is None:
        vals = counts
    elif normalize == "true":
        vals = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    elif normalize == "pred":
        vals = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    elif normalize == "all":
        vals = counts / max(counts.sum(), 1)
    else:
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    vmax = 1.0 if normalize else max(vals.max(), 1)
    ax.imshow(vals, cmap=cmap, vmin=0, vmax=vmax)
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            txt = f"{int(counts[i, j])}" if normalize is None else f"{vals[i, j]:.2f}\n({int(counts[i, j])})"
            dark = vals[i, j] > 0.6 * vmax
            ax.text(j, i, txt, ha="center", va="center", fontsize="small",
                    color="white" if dark else "black")
    ax.set_xticks(range(vals.shape[1]), [str(c) for c in cm_df.columns])
    ax.set_yticks(range(vals.shape[0]), [str(c) for c in cm_df.index])
    ax.set_xlabel(cm_df.columns.name or "predicted")
    ax.set_ylabel(cm_df.index.name or "true")
    if title:
        ax.set_title(title, fontsize="small")
    return ax


def image_grid(
    rows: Sequence[Sequence], titles=None, row_titles: Sequence[str] | None = None,
    cell_size: float = 2.0, cmap: str = "gray", vmin: float | None = 0.0, vmax: float | None = 1.0,
) -> Figure:
    """A grid of images without axes.

    Args:
        rows: list of rows, each a list of (H, W) arrays (None leaves a cell blank);
            rows may differ in length.
        titles: column titles (one per column) or per-cell titles (same nesting as rows).
        row_titles: one label per row, written at the left.
        cell_size: inches per cell.
        cmap, vmin, vmax: passed to ``imshow`` (vmin/vmax None: autoscale per image).

    Returns:
        the Figure.
    """
    nr = len(rows)
    nc = max((len(r) for r in rows), default=0)
    if nr == 0 or nc == 0:
        raise ValueError("image_grid needs at least one image")
    fig, axes = plt.subplots(nr, nc, figsize=(cell_size * nc, cell_size * nr), squeeze=False)
    per_cell = titles is not None and len(titles) > 0 and not isinstance(titles[0], str)
    for i in range(nr):
        for j in range(nc):
            ax = axes[i, j]
            ax.set_axis_off()
            img = rows[i][j] if j < len(rows[i]) else None
            if img is not None:
                ax.imshow(_image2d(img), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            t = None
            if per_cell:
                t = titles[i][j] if j < len(titles[i]) else None
            elif titles is not None and i == 0 and j < len(titles):
                t = titles[j]
            if t:
                ax.set_title(t, fontsize="small")
        if row_titles is not None and i < len(row_titles):
            axes[i, 0].text(-0.06, 0.5, row_titles[i], transform=axes[i, 0].transAxes,
                            rotation=90, ha="right", va="center", fontsize="small")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path_stem, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write the figure as ``<path_stem>.png`` and ``.pdf``, atomically and reproducibly.

    Each file is written to a temporary file in the target folder and moved into
    place with ``os.replace``, so a reader never sees a half-written figure.
    Timestamps and version strings are left out of the metadata, so rerunning the
    same figure code gives byte-identical files.

    Args:
        fig: the Figure.
        path_stem: output path without extension (parent folders are created).
        formats: file formats (``png``, ``pdf``, ``svg``).
        dpi: resolution of raster output.

    Returns:
        the paths written.
    """
    stem = Path(path_stem)
    if stem.suffix.lower().lstrip(".") in _METADATA:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        fmt = fmt.lower()
        target = stem.parent / f"{stem.name}.{fmt}"
        fd, tmp = tempfile.mkstemp(prefix=f".{stem.name}.", suffix=f".{fmt}.tmp", dir=stem.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=dpi, metadata=_METADATA.get(fmt))
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(target)
    return written
