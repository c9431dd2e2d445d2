"""Does flip test-time augmentation help? Measured on a fold's *validation* part, never its test fold.

For each run directory given (it must keep ``fold<k>/model.pt`` and have held out a validation
part, ``val_fraction > 0``), the fold's weights predict the validation images twice, as they are
and mirrored left-right; the mirrored class and mask probabilities are flipped back and averaged
with the plain ones. Prints all-image Dice, lesion Dice and accuracy with and without the flip.
The plain row equals the last epoch of the fold's history.csv (a check that this is the same
evaluation). Used for docs/training.md (round 5).

    python scripts/flip_tta_probe.py runs/busi/cpu_light/grouped/mtl_oca-seed0 [...] [--fold 0]
        [--data /path/to/Dataset_BUSI_with_GT]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtloca_lib.engine import metrics as M
from mtloca_lib.engine.cv import load_data, split_train_val
from mtloca_lib.engine.predict import load_weights
from mtloca_lib.engine.train import network_inputs


def probe(run_dir: Path, fold: int, data_root: str | None) -> list[dict]:
    model, cfg, _ = load_weights(run_dir / f"fold{fold}" / "model.pt")
    if not cfg.val_fraction:
        raise SystemExit(f"{run_dir}: trained without a validation part (val_fraction=0); "
                         "flip TTA can only be judged on held-out training images")
    if data_root:
        cfg.data_root = data_root
    data = load_data(cfg)
    folds = pd.read_csv(run_dir / "folds.csv")
    if list(folds["case_id"]) != list(data.case_ids):
        raise SystemExit(f"{run_dir}/folds.csv does not list the dataset's cases in order; wrong --data?")
    _, val = split_train_val(cfg, folds, fold)
    x = network_inputs(torch.from_numpy(data.images[val]).unsqueeze(1).float(), cfg)
    with torch.no_grad():
        plain, mirrored = model(x), model(torch.flip(x, dims=[3]))
    seg_plain = torch.softmax(plain["seg"], 1)
    seg_flip = torch.flip(torch.softmax(mirrored["seg"], 1), dims=[3])
    truth, labels = data.masks[val], data.labels[val]
    lesion = truth.reshape(len(truth), -1).sum(1) > 0
    rows = []
    for name, seg, cls in (("plain", seg_plain, plain.get("cls")),
                           ("flip TTA", (seg_plain + seg_flip) / 2,
                            None if "cls" not in plain else
                            (torch.softmax(plain["cls"], 1) + torch.softmax(mirrored["cls"], 1)) / 2)):
        dice = np.asarray(M.segmentation_per_image(seg.argmax(1).numpy().astype(np.uint8), truth)["dice"], float)
        rows.append({"run": str(run_dir), "fold": fold, "evaluation": name, "n": len(val),
                     "dice": round(dice.mean(), 4), "dice_lesion": round(dice[lesion].mean(), 4),
                     "accuracy": round(float((cls.argmax(1).numpy() == labels).mean()), 4) if cls is not None else None})
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
