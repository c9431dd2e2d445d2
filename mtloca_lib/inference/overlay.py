"""Drawing masks and heat maps over an image (matplotlib axes).

The primitives that both the engine (``predict`` writes ``<name>_overlay.png``) and the
report figures use: :func:`overlay_mask` (truth and prediction contours),
:func:`overlay_heatmap` (a Grad-CAM map over the image), their colours. Nothing here
picks a backend.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

TRUTH_COLOR = "#00e000"


PRED_COLOR = "#ff3030"


def as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def image2d(image) -> np.ndarray:
    """(H, W), (1, H, W) or (H, W, 1) -> (H, W)."""
    a = np.squeeze(as_numpy(image))
    if a.ndim != 2:
        raise ValueError(f"expected a single-channel image, got shape {np.shape(image)}")
    return a


def show_image(ax, image, vmin=0.0, vmax=1.0):
    ax.imshow(image2d(image), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()


def draw_contour(ax, mask, color, linewidth):
    m = image2d(mask).astype(float)
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
    show_image(ax, image)
    draw_contour(ax, mask, TRUTH_COLOR, linewidth)
    handles = [Line2D([], [], color=TRUTH_COLOR, lw=linewidth, label="truth")]
    if pred is not None:
        draw_contour(ax, pred, PRED_COLOR, linewidth)
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
    img, c = image2d(image), image2d(cam)
    if img.shape != c.shape:
        raise ValueError(f"image {img.shape} and heat map {c.shape} differ in size")
    show_image(ax, img)
    im = ax.imshow(c, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    if title:
        ax.set_title(title, fontsize="small")
    return im

