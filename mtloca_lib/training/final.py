"""One final model trained on a whole dataset (no test folds): ``mtloca train --holdout none``.

Cross-validation (:mod:`mtloca_lib.training.cv`) answers "how good is this recipe"; a user who
wants a model to apply to new images (``mtloca predict``) or to another dataset
(``mtloca evaluate RUN --dataset ...``) trains one on every image. The run directory::

    config.json        the full RunConfig
    manifest.json      config, data fingerprint, git commit, packages, hardware, wall time,
                       ``"holdout": "none"``
    train_cases.csv    case_id, label, group, part ("train" or "validation")
    history.csv        the per-epoch losses (and the validation curve, when one is held out)
    model.pt           the final weights, with the config and class names (what predict loads)
    checkpoint.pt      while it trains; rerunning the same command resumes from it
    .final.lock        held by the process training it

As for cross-validation (:mod:`mtloca_lib.training.identity`), a rerun resumes only the same
content (config without ``data_root``, data fingerprint, the train/validation parts, the
settings that change the numbers, recorded in ``manifest.json["final"]``), everything is
checked before the first file is written, one process trains the model at a time, and
Ctrl-C stops with :class:`~mtloca_lib.training.identity.TrainingInterrupted`.

With ``val_fraction`` > 0 a validation part (stratified, grouped by near-duplicate group
under the grouped protocol) is still held out, for the learning curve only; the last
epoch is kept. The training seed is that of fold ``k`` of a cross-validation run with the
same config (one past its last fold), so it never repeats a fold's seed.

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.data.splits import validation_split
from mtloca_lib.runio import read_json, write_csv, write_json
from mtloca_lib.training.cv import fold_table, load_data
from mtloca_lib.training.identity import (
    TrainingInterrupted,
    check_run,
    check_run_config,
    check_run_data,
    fold_record,
    interrupted_message,
    refuse_other_kind,
    training_locks,
    validate_run,
)
from mtloca_lib.training.loop import select_device, train_fold
from mtloca_lib.training.manifest import run_header, save_model


def is_final_run(run_dir: str | Path) -> bool:
    """True for a run directory made by :func:`train_final` (it has ``model.pt`` at the top)."""
    run_dir = Path(run_dir)
    if (run_dir / "manifest.json").exists():
        return read_json(run_dir / "manifest.json").get("holdout") == "none"
    return False


def train_final(
    cfg: RunConfig,
    run_dir: str | Path,
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
    data: PreparedDataset | None = None,
    wait: bool = False,
) -> Path:
    """Train ``cfg`` on the whole dataset and write the final weights to ``run_dir/model.pt``.

    Args:
        cfg: the run configuration (``k`` and ``folds`` are not used, apart from the seed).
        run_dir: the output folder (created if needed).
        log: receives progress lines when not interactive.
        stop_after_epochs: test hook, see :func:`mtloca_lib.training.loop.train_fold`.
        data: an already prepared dataset (skips loading; must match ``cfg``).
        wait: wait for another process training this model instead of raising ``RunBusy``.

    Returns:
        The path of ``model.pt``.

    Raises:
        RunConfigMismatch: ``run_dir`` holds a run of another configuration, data or settings.
        RunBusy: another process is training it (and ``wait`` is false).
        TrainingInterrupted: Ctrl-C while training.
        ValueError: ``run_dir`` holds a cross-validation run.
    """
    run_dir = Path(run_dir)
    weights = run_dir / "model.pt"
    check_run_config(run_dir, cfg)
    refuse_other_kind(run_dir, final=True)
    if weights.exists():
        if data is not None:
            check_run_data(run_dir, data)
        log(f"{run_dir}: the final model was trained earlier ({weights})")
        return weights
    data = data if data is not None else load_data(cfg)
    table = fold_table(cfg, data)[["case_id", "label", "group"]].copy()
    everything = np.arange(len(table))
    if cfg.val_fraction:
        is_val = validation_split(table["label"].to_numpy(), table["group"].to_numpy(), cfg.val_fraction,
                                  seed=cfg.split_seed * 1000 + cfg.k)
    else:
        is_val = np.zeros(len(table), dtype=bool)
    table["part"] = np.where(is_val, "validation", "train")
    settings = validate_run(cfg, data, [])
    assignment = ("train_cases.csv", table, "part")
    check_run(run_dir, cfg, data, settings, assignment)

    # Everything is checked: from here on the run directory is written.
    with training_locks(run_dir, ["final"], wait=wait, log=log):
        check_run(run_dir, cfg, data, settings, assignment)  # again: another process may have trained it
        if weights.exists():
            log(f"{run_dir}: the final model was trained by another process meanwhile ({weights})")
            return weights
        saved_cfg = {**cfg.to_dict(), "folds": None}
        write_json(run_dir / "config.json", saved_cfg)
        write_csv(run_dir / "train_cases.csv", table)
        device = str(select_device(cfg.device))
        old = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}
        record = fold_record(cfg, data, settings)
        if isinstance(old.get("final"), dict) and (run_dir / "checkpoint.pt").exists():
            record["started"] = old["final"].get("started")  # resumed: it started then
        record.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        selection = ("last epoch; trained on every image" if not cfg.val_fraction else
                     f"last epoch; trained on every image but a {cfg.val_fraction:.0%} validation "
                     "part held out for the learning curve only")
        manifest = {**run_header(cfg, data, device, selection), "holdout": "none", "final": record}
        write_json(run_dir / "manifest.json", manifest)

        t0 = time.perf_counter()
        log(f"final model: {int((~is_val).sum())} train / {int(is_val.sum())} validation images, no test images")
        try:
            model, history = train_fold(cfg, data, everything[~is_val], run_dir / "checkpoint.pt", cfg.k, log=log,
                                        stop_after_epochs=stop_after_epochs, val_index=everything[is_val])
            write_csv(run_dir / "history.csv", pd.DataFrame(history))
            save_model(weights, model, cfg, data.class_names)
        except KeyboardInterrupt:
            raise TrainingInterrupted(interrupted_message(cfg, {"the final model": run_dir / "checkpoint.pt"})) from None
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
        manifest["wall_seconds"] = round(time.perf_counter() - t0, 2)
        manifest["epochs"] = cfg.epochs
        manifest["device"] = device
        manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json(run_dir / "manifest.json", manifest)
    log(f"final model written: {weights}")
    return weights
