"""Segment and classify image files with a trained fold model (``mtloca predict``).

For each input image this writes ``<stem>_mask.png`` (the lesion mask at the
image's native size), ``<stem>_overlay.png`` (the image with the predicted contour
and the class probabilities in the title) and one ``probabilities.csv`` for all
images. Every input is read and checked before anything is written.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from mtloca_lib.data.busi import open_verified, grey_array
from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.errors import DataError
from mtloca_lib.data.preprocess import resize_image
from mtloca_lib.runio import atomic_write_bytes, write_csv


def load_weights(path: str | Path) -> tuple[torch.nn.Module, RunConfig, list[str]]:
    """Load a fold's ``model.pt`` (weights + its run config + class names).

    Raises:
        DataError: the file is missing, is not an mtloca weights file, or its
            weights do not fit the model its config describes.
    """
    from mtloca_lib.training.loop import build_for_run

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: weights file not found; pass a fold's model.pt from a run directory")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise DataError(f"{path}: not a PyTorch weights file ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or not {"model", "run_config", "class_names"} <= set(state):
        raise DataError(
            f"{path}: not an mtloca model file (expected keys model, run_config, class_names); "
            "use the model.pt that `mtloca train` writes in each fold folder"
        )
    cfg = RunConfig.from_dict(state["run_config"])
    model = build_for_run(cfg, len(state["class_names"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise DataError(
            f"{path}: these weights do not fit the model its config describes "
            f"({cfg.model}): {first}. The file was written for another model configuration."
        ) from e
    return model.eval(), cfg, list(state["class_names"])


def _overlay_png(image: np.ndarray, mask: np.ndarray, title: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mtloca_lib.inference.overlay import overlay_mask

    h, w = image.shape
    fig, ax = plt.subplots(figsize=(4, 4 * h / max(w, 1)))
    overlay_mask(ax, image / 255.0, np.zeros_like(mask), pred=mask, legend=False, title=title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def predict_files(images: list[str | Path], weights: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """Predict masks and class probabilities for image files.

    Args:
        images: image files (any format Pillow reads; colour is converted to grey).
        weights: a fold's ``model.pt``.
        out_dir: output folder (created).

    Returns:
        One row per image: file, predicted class, probability per class, lesion area (px).
    """
    from mtloca_lib.training.loop import predict_arrays

    model, cfg, class_names = load_weights(weights)
    greys = []
    for p in map(Path, images):
        if not p.is_file():
            raise DataError(f"{p}: image file not found")
        greys.append(grey_array(open_verified(p, fix="pass an image file (PNG, JPEG, BMP, TIFF)."), p))  # raises DataError naming a non-image
    batch = np.stack([resize_image(g, cfg.size) for g in greys]).astype(np.float32)  # [0, 1]
    masks, probs = predict_arrays(model, batch, cfg)
    out_dir = Path(out_dir)
    rows = []
    for p, grey, mask, prob in zip(map(Path, images), greys, masks, probs if probs is not None else [None] * len(masks)):
        native = np.asarray(Image.fromarray(mask * 255).resize(grey.shape[::-1], Image.NEAREST)) > 127
        buf = _png_bytes(native)
        atomic_write_bytes(out_dir / f"{p.stem}_mask.png", buf)
        row = {"file": str(p), "lesion_area_px": int(native.sum())}
        title = p.name
        if prob is not None:
            row["pred_class"] = class_names[int(prob.argmax())]
            row.update({f"prob_{c}": float(v) for c, v in zip(class_names, prob)})
            title += "\n" + ", ".join(f"{c} {v:.2f}" for c, v in zip(class_names, prob))
        atomic_write_bytes(out_dir / f"{p.stem}_overlay.png", _overlay_png(grey, native, title))
        rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(out_dir / "probabilities.csv", table)
    return table


def _png_bytes(mask: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()
