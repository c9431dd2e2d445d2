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

from pathlib import Path

import numpy as np
import torch

from _validation_probe import main, validation_part
from mtloca_lib.evaluation import metrics as M


def probe(run_dir: Path, fold: int, data_root: str | None) -> list[dict]:
    part = validation_part(run_dir, fold, data_root, "flip TTA")
    model, x, truth, labels, lesion = part.model, part.x, part.truth, part.labels, part.lesion
    with torch.no_grad():
        plain, mirrored = model(x), model(torch.flip(x, dims=[3]))
    seg_plain = torch.softmax(plain["seg"], 1)
    seg_flip = torch.flip(torch.softmax(mirrored["seg"], 1), dims=[3])
    rows = []
    for name, seg, cls in (("plain", seg_plain, plain.get("cls")),
                           ("flip TTA", (seg_plain + seg_flip) / 2,
                            None if "cls" not in plain else
                            (torch.softmax(plain["cls"], 1) + torch.softmax(mirrored["cls"], 1)) / 2)):
        dice = np.asarray(M.segmentation_per_image(seg.argmax(1).numpy().astype(np.uint8), truth)["dice"], float)
        rows.append({"run": str(run_dir), "fold": fold, "evaluation": name, "n": len(x),
                     "dice": round(dice.mean(), 4), "dice_lesion": round(dice[lesion].mean(), 4),
                     "accuracy": round(float((cls.argmax(1).numpy() == labels).mean()), 4) if cls is not None else None})
    return rows


if __name__ == "__main__":
    main(__doc__, probe)
