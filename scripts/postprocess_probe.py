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

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from mtloca_lib.engine import metrics as M
from mtloca_lib.engine.cv import load_data, split_train_val
from mtloca_lib.engine.predict import load_weights
from mtloca_lib.engine.train import network_inputs


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
    model, cfg, _ = load_weights(run_dir / f"fold{fold}" / "model.pt")
    if not cfg.val_fraction:
        raise SystemExit(f"{run_dir}: trained without a validation part (val_fraction=0); "
                         "post-processing can only be judged on held-out training images")
    if data_root:
        cfg.data_root = data_root
    data = load_data(cfg)
    folds = pd.read_csv(run_dir / "folds.csv")
    if list(folds["case_id"]) != list(data.case_ids):
        raise SystemExit(f"{run_dir}/folds.csv does not list the dataset's cases in order; wrong --data?")
    _, val = split_train_val(cfg, folds, fold)
    x = network_inputs(torch.from_numpy(data.images[val]).unsqueeze(1).float(), cfg)
    with torch.no_grad():
        pred = model(x)["seg"].argmax(1).numpy().astype(np.uint8)
    truth = data.masks[val]
    lesion = truth.reshape(len(truth), -1).sum(1) > 0
    variants = {"plain": pred,
                "largest component": np.stack([largest_component(p) for p in pred]),
                "largest component, holes filled": np.stack([largest_component(p, True) for p in pred])}
    rows = []
    for name, masks in variants.items():
        dice = np.asarray(M.segmentation_per_image(masks, truth, with_hd95=False)["dice"], float)
        rows.append({"run": str(run_dir), "fold": fold, "evaluation": name, "n": len(val),
                     "dice": round(dice.mean(), 4), "dice_lesion": round(dice[lesion].mean(), 4),
                     "components per predicted mask": round(float(np.mean(
                         [ndimage.label(m, structure=np.ones((3, 3), bool))[1] for m in masks
                          if m.any()])), 2)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--data", default=os.environ.get("MTLOCA_DATA"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [r for rd in args.runs for r in probe(rd, args.fold, args.data)]
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
