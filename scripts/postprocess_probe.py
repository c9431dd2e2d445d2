"""Does keeping only the largest lesion component help? Measured on a fold's *validation* part.

nnU-Net's usual post-processing keeps the largest connected component of the predicted
foreground (and fills its holes) when that helps on held-out training data. For each run
directory given (it must keep ``fold<k>/model.pt`` and have held out a validation part,
``val_fraction > 0``), the fold's weights predict the validation images; the predicted mask is
scored as it is, with only its largest 8-connected component, and with that component's holes
filled (``scipy.ndimage``). Prints all-image Dice, lesion Dice and, per variant, how many lesion
images lose every predicted pixel (never: the largest component of a non-empty mask is
non-empty). The plain row equals the last epoch of the fold's history.csv. The test fold is
never read. Used for docs/training.md (round 6).

    python scripts/postprocess_probe.py runs/busi/cpu_light/grouped/mtl_oca-seed0 [...] [--fold 0]
        [--data /path/to/Dataset_BUSI_with_GT]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from _validation_probe import main, validation_part
from mtloca_lib.evaluation import metrics as M


def largest_component(mask: np.ndarray, fill_holes: bool = False) -> np.ndarray:
    """The largest 8-connected foreground component of a binary (H, W) mask (empty stays empty)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        out = mask.astype(bool)
    else:
        sizes = np.bincount(labels.ravel())[1:]
        out = labels == (1 + int(np.argmax(sizes)))
    if fill_holes:
        out = ndimage.binary_fill_holes(out)
    return out.astype(np.uint8)


def probe(run_dir: Path, fold: int, data_root: str | None) -> list[dict]:
    part = validation_part(run_dir, fold, data_root, "post-processing")
    with torch.no_grad():
        pred = part.model(part.x)["seg"].argmax(1).numpy().astype(np.uint8)
    variants = {"plain": pred,
                "largest component": np.stack([largest_component(p) for p in pred]),
                "largest component, holes filled": np.stack([largest_component(p, True) for p in pred])}
    rows = []
    for name, masks in variants.items():
        dice = np.asarray(M.segmentation_per_image(masks, part.truth, with_hd95=False)["dice"], float)
        rows.append({"run": str(run_dir), "fold": fold, "evaluation": name, "n": len(pred),
                     "dice": round(dice.mean(), 4), "dice_lesion": round(dice[part.lesion].mean(), 4),
                     "components per predicted mask": round(float(np.mean(
                         [ndimage.label(m, structure=np.ones((3, 3), bool))[1] for m in masks
                          if m.any()])), 2)})
    return rows


if __name__ == "__main__":
    main(__doc__, probe)
