"""Cross-validation runs: one call trains and evaluates a config on every fold.

A run directory holds::

    config.json          the full RunConfig (rerunning with a different one is refused)
    folds.csv            case_id, label, group, fold
    manifest.json        config, data fingerprint, git commit, packages, hardware, wall times;
                         per fold what made its numbers (below)
    fold_metrics.csv     one row per finished fold
    predictions.csv      one row per image: probabilities, Dice, IoU, HD95, areas
    fold<k>/             metrics.json, predictions.csv, pred_masks.npz, history.csv
                         (the learning curves), val_cases.csv (the validation part,
                         when the config holds one out), model.pt (final weights),
                         checkpoint.pt while the fold runs
    .fold<k>.lock        held by the process training fold k (see Locks)

Rerunning the same call resumes: finished folds are skipped, a fold that was
interrupted restarts from its last epoch checkpoint. Ctrl-C stops with
:class:`TrainingInterrupted`, which says where it stopped.

A run is its content, not its path, and one process trains a fold at a time: before anything
is written the call checks the config, the data's fingerprint, the fold assignment and the
settings that change the numbers against what the run recorded, and takes the training lock
of each fold it will train (:mod:`mtloca_lib.training.identity`). Each finished fold records
in ``manifest.json["folds"][k]`` what made its numbers.

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import contextlib
import io
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.datasets import load_prepared
from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.data.splits import validation_split
from mtloca_lib.errors import DataError
from mtloca_lib.evaluation import metrics as M
from mtloca_lib.runio import (
    atomic_write_bytes,
    exclusive_lock,
    git_commit,
    read_json,
    write_csv,
    write_json,
)
from mtloca_lib.training.identity import (  # noqa: F401  (RunBusy, TrainingInterrupted: callers import them from here)
    RunBusy,
    RunConfigMismatch,
    TrainingInterrupted,
    check_run,
    check_run_config,
    check_run_data,
    fold_record,
    interrupted_message,
    refuse_other_kind,
    training_locks,
    unrecorded_notes,
    validate_run,
)
from mtloca_lib.training.loop import evaluate_fold, interactive, select_device, train_fold
from mtloca_lib.training.manifest import run_header, save_model
from mtloca_lib.training.protocol import assign_folds
from mtloca_lib.training.replicas import ReplicaJob, group_by_steps, train_replicas


def load_data(cfg: RunConfig) -> PreparedDataset:
    return load_prepared(cfg.dataset, cfg.data_root, size=cfg.size, **cfg.dataset_kwargs)


def fold_table(cfg: RunConfig, data: PreparedDataset) -> pd.DataFrame:
    """Fold assignment for the run's protocol: case_id, label, group, fold."""
    return assign_folds(cfg, data)


def model_selection(cfg: RunConfig) -> str:
    """How the evaluated model was chosen, in words, for the manifest."""
    if cfg.val_fraction:
        return (f"last epoch; {cfg.val_fraction:.0%} of each training fold held out as a validation "
                f"part ({'grouped by near-duplicate group, ' if cfg.protocol == 'grouped' else ''}"
                "stratified) for the learning curves only; the test fold is never seen in training")
    return "last epoch; trained on the whole training fold (no validation curve)"


def split_train_val(cfg: RunConfig, folds: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices of ``fold`` (validation empty when ``val_fraction`` is 0).

    The validation part depends on the split seed and the fold only, so every model
    compared on a split sees the same one.
    """
    train_idx = np.flatnonzero(folds["fold"].to_numpy() != fold)
    if not cfg.val_fraction:
        return train_idx, train_idx[:0]
    is_val = validation_split(folds["label"].to_numpy()[train_idx], folds["group"].to_numpy()[train_idx],
                              cfg.val_fraction, seed=cfg.split_seed * 1000 + fold)
    return train_idx[~is_val], train_idx[is_val]


def fold_metrics_of(df: pd.DataFrame, class_names) -> dict:
    """Summary metrics of one fold's per-image table."""
    out = {"n": int(len(df))}
    lesion = df["true_area"] > 0
    out["dice"] = float(df["dice"].mean())
    out["iou"] = float(df["iou"].mean())
    out["dice_lesion"] = float(df.loc[lesion, "dice"].mean()) if lesion.any() else float("nan")
    out["iou_lesion"] = float(df.loc[lesion, "iou"].mean()) if lesion.any() else float("nan")
    out["hd95_lesion"] = float(np.nanmean(df.loc[lesion, "hd95"])) if lesion.any() and np.isfinite(df.loc[lesion, "hd95"]).any() else float("nan")
    if "pred_label" in df:
        prob = df[[f"prob_{c}" for c in class_names]].to_numpy()
        cm = M.classification_metrics(df["true_label"].to_numpy(), prob, list(class_names))
        out["accuracy"] = float(cm["accuracy"])
        out["balanced_accuracy"] = float(cm.get("balanced_accuracy", np.nan))
        out["macro_auc"] = float(cm.get("macro_auc", np.nan))
    return out


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold an exclusive lock on ``run_dir/.lock`` (POSIX) for a short update of the run's shared
    files (manifest, config, folds.csv, the merged tables), so several processes may run
    different folds of one run (``cfg.folds``) safely. It waits; it is never held while training."""
    with exclusive_lock(Path(run_dir) / ".lock", wait=True):
        yield


def _finished(run_dir: Path, folds) -> list[int]:
    return [f for f in folds if (run_dir / f"fold{f}" / "metrics.json").exists()]


def run_cv(
    cfg: RunConfig,
    run_dir: str | Path,
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
    data: PreparedDataset | None = None,
    wait: bool = False,
    merge: bool = True,
) -> pd.DataFrame:
    """Train and evaluate ``cfg`` on every fold (or ``cfg.folds``), resuming where possible.

    Args:
        cfg: the run configuration.
        run_dir: where everything goes (created if needed).
        log: receives progress lines when not interactive.
        stop_after_epochs: test hook, see :func:`mtloca_lib.training.loop.train_fold`.
        data: an already prepared dataset (skips loading; must match ``cfg``).
        wait: when another process trains some of the folds wanted here, wait for it instead of
            raising :class:`RunBusy`.
        merge: write the run's merged ``fold_metrics.csv`` and ``predictions.csv`` at the end
            (False: a workflow's fold job, whose merge job does it; the table is still returned).

    Returns:
        The per-fold metrics table.

    Raises:
        RunConfigMismatch: ``run_dir`` holds a run of another configuration, data or settings.
        RunBusy: another process trains folds this call wants (and ``wait`` is false).
        TrainingInterrupted: Ctrl-C while training (a ``KeyboardInterrupt``).
    """
    run_dir = Path(run_dir)
    wanted = cfg.folds if cfg.folds is not None else list(range(cfg.k))
    refuse_other_kind(run_dir, final=False)
    check_run_config(run_dir, cfg)
    if len(_finished(run_dir, wanted)) == len(wanted) and set(wanted) <= set(range(cfg.k)):
        # Nothing to train: leave config and manifest (they describe where the run was made).
        if data is None:
            try:
                data = load_data(cfg)
            except DataError as err:
                log(f"{run_dir}: the data could not be read to check it against the run ({err}); "
                    "the finished folds are collected as they are")
        if data is not None:
            check_run_data(run_dir, data)
        log(f"{run_dir}: all {len(wanted)} requested folds finished earlier")
        with run_lock(run_dir):
            return collect(run_dir, write=merge)
    data = data if data is not None else load_data(cfg)
    folds = fold_table(cfg, data)
    settings = validate_run(cfg, data, wanted)
    assignment = ("folds.csv", folds, "fold")
    check_run(run_dir, cfg, data, settings, assignment)
    fold_ids = folds["fold"].to_numpy()
    plans = {}
    for fold in wanted:
        train_idx, val_idx = split_train_val(cfg, folds, fold)
        plans[fold] = (train_idx, val_idx, np.flatnonzero(fold_ids == fold))
    todo = [f for f in wanted if f not in _finished(run_dir, wanted)]

    # Everything is checked: from here on the run directory is written.
    with training_locks(run_dir, todo, wait=wait, log=log):
        manifest_path = run_dir / "manifest.json"
        record = fold_record(cfg, data, settings)
        device = str(select_device(cfg.device))
        with run_lock(run_dir):
            check_run(run_dir, cfg, data, settings, assignment)  # again: another process may have started
            done = _finished(run_dir, wanted)
            todo = [f for f in wanted if f not in done]  # ... or finished some while this one waited
            notes = unrecorded_notes(run_dir, settings)  # before the environment below is replaced
            if todo:
                # ``folds`` only says which folds this call trains (several processes may share a
                # run, each with its own folds); the run directory describes the whole run.
                saved_cfg = {**cfg.to_dict(), "folds": None}
                write_json(run_dir / "config.json", saved_cfg)
                write_csv(run_dir / "folds.csv", folds)
                manifest = read_json(manifest_path) if manifest_path.exists() else {}
                # the folds set torch's threads from the config when they start (train_fold)
                manifest.update(run_header(cfg, data, device, model_selection(cfg), settings.get("threads")))
                manifest.setdefault("folds", {})
                started = manifest.setdefault("folds_started", {})
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                for f in todo:
                    if not (str(f) in started and (run_dir / f"fold{f}" / "checkpoint.pt").exists()):
                        started[str(f)] = {**record, "started": now}
                write_json(manifest_path, manifest)
        for fold in done:
            log(f"fold {fold}: finished earlier, skipped")
        for note in notes if todo else []:
            log(f"note: {note}")
        if todo:
            walls = [e["wall_seconds"] for e in read_json(manifest_path).get("folds", {}).values()
                     if e.get("wall_seconds")]
            log(f"{run_dir}: training fold(s) {todo} of {cfg.k}, {cfg.epochs} epochs each, on {len(data)} images"
                + (f" (the finished folds took {np.mean(walls) / 60:.0f} min each where they were trained)" if walls else ""))
            _train_folds(cfg, data, run_dir, todo, plans, folds, device, record, log, stop_after_epochs)
    with run_lock(run_dir):
        return collect(run_dir, write=merge)


def _train_folds(cfg, data, run_dir: Path, todo, plans, folds, device: str, record, log, stop_after_epochs) -> None:
    """Train the folds ``todo`` (grouped into replicas when the config asks) and write their results."""
    if cfg.replicas > 1:
        groups = group_by_steps(cfg, {f: len(plans[f][0]) for f in todo}, cfg.replicas)
    else:
        groups = [[f] for f in todo]
    if interactive():
        groups = tqdm(groups, desc=f"{cfg.name} folds", unit="group" if cfg.replicas > 1 else "fold")
    manifest_path = run_dir / "manifest.json"
    for group in groups:
        t0 = time.perf_counter()
        try:
            for fold in group:
                train_idx, val_idx, test_idx = plans[fold]
                fdir = run_dir / f"fold{fold}"
                log(f"fold {fold}: {len(train_idx)} train / {len(val_idx)} validation / {len(test_idx)} test images")
                if len(val_idx):
                    fdir.mkdir(parents=True, exist_ok=True)
                    write_csv(fdir / "val_cases.csv", folds.iloc[val_idx][["case_id", "label", "group"]])
            if len(group) > 1:
                jobs = [ReplicaJob(f, plans[f][0], plans[f][1], run_dir / f"fold{f}" / "checkpoint.pt")
                        for f in group]
                trained = train_replicas(cfg, data, jobs, log=log, stop_after_epochs=stop_after_epochs)
            else:
                f = group[0]
                trained = [train_fold(cfg, data, plans[f][0], run_dir / f"fold{f}" / "checkpoint.pt", f,
                                      log=log, stop_after_epochs=stop_after_epochs, val_index=plans[f][1])]
            wall = (time.perf_counter() - t0) / len(group)  # a group's folds share its time
            for fold, (model, history) in zip(group, trained):
                _finish_fold(cfg, data, run_dir, fold, plans[fold][2], model, history, wall, device,
                             len(group), manifest_path, log, record)
        except KeyboardInterrupt:
            left = [f for f in group if not (run_dir / f"fold{f}" / "metrics.json").exists()]
            raise TrainingInterrupted(interrupted_message(
                cfg, {f"fold {f}": run_dir / f"fold{f}" / "checkpoint.pt" for f in left})) from None


def _finish_fold(cfg, data, run_dir: Path, fold: int, test_idx, model, history, wall: float,
                 device: str, replicas: int, manifest_path: Path, log, record: dict) -> None:
    """Evaluate a trained fold on its test part and write its files (metrics.json last)."""
    fdir = run_dir / f"fold{fold}"
    t0 = time.perf_counter()
    per_image, pred_masks = evaluate_fold(model, cfg, data, test_idx, fold)
    metrics = fold_metrics_of(per_image, data.class_names)
    write_csv(fdir / "predictions.csv", per_image)
    write_csv(fdir / "history.csv", pd.DataFrame(history))
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        case_ids=np.array(per_image["case_id"].tolist()),
        packed=np.packbits(pred_masks.astype(bool), axis=-1),
        shape=np.array(pred_masks.shape),
    )
    atomic_write_bytes(fdir / "pred_masks.npz", buf.getvalue())
    save_model(fdir / "model.pt", model, cfg, data.class_names)
    wall += time.perf_counter() - t0
    metrics["wall_seconds_this_call"] = round(wall, 2)
    write_json(fdir / "metrics.json", metrics)  # written last: marks the fold finished
    (fdir / "checkpoint.pt").unlink(missing_ok=True)
    with run_lock(run_dir):  # other processes may be running other folds of this run
        manifest = read_json(manifest_path)
        started = manifest.get("folds_started", {}).pop(str(fold), {})
        entry = {
            "wall_seconds": round(wall, 2),
            "epochs": cfg.epochs,
            "device": device,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git": git_commit(),  # a resumed run's folds may come from different commits
            **record,
        }
        if started.get("started"):
            entry["started"] = started["started"]
        if replicas > 1:
            entry["trained_with_replicas"] = replicas
        manifest.setdefault("folds", {})[str(fold)] = entry
        write_json(manifest_path, manifest)
    log(f"fold {fold}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))


def collect(run_dir: str | Path, write: bool = True) -> pd.DataFrame:
    """Combine finished folds into ``fold_metrics.csv`` and ``predictions.csv`` (``write``), and
    return the per-fold table."""
    run_dir = Path(run_dir)
    rows, preds = [], []
    for fdir in sorted(run_dir.glob("fold*/"), key=lambda p: int(p.name[4:])):
        if (fdir / "metrics.json").exists():
            m = read_json(fdir / "metrics.json")
            m.pop("wall_seconds_this_call", None)
            rows.append({"fold": int(fdir.name[4:]), **m})
            preds.append(pd.read_csv(fdir / "predictions.csv"))
    table = pd.DataFrame(rows)
    if rows and write:
        write_csv(run_dir / "fold_metrics.csv", table)
        write_csv(run_dir / "predictions.csv", pd.concat(preds, ignore_index=True))
    return table


def load_predictions(run_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "predictions.csv")


def load_pred_masks(run_dir: str | Path) -> dict[str, np.ndarray]:
    """case_id -> predicted mask (uint8 (S, S)) over all finished folds."""
    out = {}
    for f in sorted(Path(run_dir).glob("fold*/pred_masks.npz")):
        z = np.load(f)
        masks = np.unpackbits(z["packed"], axis=-1)[..., : int(z["shape"][-1])]
        out.update(dict(zip(z["case_ids"].tolist(), masks)))
    return out
