"""What the validation-part probes in this folder share: loading a fold's weights and its
validation part (never its test fold), and the command line. Used by ``flip_tta_probe.py`` and
``postprocess_probe.py``."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from mtloca_lib.training.cv import load_data, split_train_val
from mtloca_lib.inference.predict import load_weights
from mtloca_lib.training.loop import network_inputs


@dataclass
class ValidationPart:
    """A fold's trained model and its validation images.

    Attributes:
        model: the fold's network (eval mode), from ``fold<k>/model.pt``.
        x: network inputs (N, C, S, S) of the validation images.
        truth: true masks (N, S, S); labels: classes (N,); lesion: true mask non-empty (N,).
    """

    model: torch.nn.Module
    x: torch.Tensor
    truth: np.ndarray
    labels: np.ndarray
    lesion: np.ndarray


def validation_part(run_dir: Path, fold: int, data_root: str | None, what: str) -> ValidationPart:
    """Load ``run_dir``'s fold ``fold`` and its validation part; ``what`` names the probe in errors."""
    model, cfg, _ = load_weights(run_dir / f"fold{fold}" / "model.pt")
    if not cfg.val_fraction:
        raise SystemExit(f"{run_dir}: trained without a validation part (val_fraction=0); "
                         f"{what} can only be judged on held-out training images")
    if data_root:
        cfg.data_root = data_root
    data = load_data(cfg)
    folds = pd.read_csv(run_dir / "folds.csv")
    if list(folds["case_id"]) != list(data.case_ids):
        raise SystemExit(f"{run_dir}/folds.csv does not list the dataset's cases in order; wrong --data?")
    _, val = split_train_val(cfg, folds, fold)
    x = network_inputs(torch.from_numpy(data.images[val]).unsqueeze(1).float(), cfg)
    truth = data.masks[val]
    return ValidationPart(model, x, truth, data.labels[val], truth.reshape(len(truth), -1).sum(1) > 0)


def main(doc: str, probe: Callable[[Path, int, str | None], list[dict]]) -> None:
    """``RUN_DIR... [--fold K] [--data DIR]``: print ``probe``'s rows for each run as one Markdown table."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--data", default=os.environ.get("MTLOCA_DATA"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [r for rd in args.runs for r in probe(rd, args.fold, args.data)]
    print(pd.DataFrame(rows).to_markdown(index=False))
