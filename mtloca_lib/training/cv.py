"""Cross-validation runs: one call trains and evaluates a config on every fold.

A run directory holds::

    config.json          the full RunConfig (rerunning with a different one is refused)
    folds.csv            case_id, label, group, fold
    manifest.json        config, data fingerprint, git commit, packages, hardware, wall times
    fold_metrics.csv     one row per finished fold
    predictions.csv      one row per image: probabilities, Dice, IoU, HD95, areas
    fold<k>/             metrics.json, predictions.csv, pred_masks.npz, history.csv
                         (the learning curves), val_cases.csv (the validation part,
                         when the config holds one out), model.pt (final weights),
                         checkpoint.pt while the fold runs

Rerunning the same call resumes: finished folds are skipped, a fold that was
interrupted restarts from its last epoch checkpoint.

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

from mtloca_lib.evaluation import metrics as M
from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.records import PreparedDataset
from mtloca_lib.runio import (
    atomic_torch_save,
    atomic_write_bytes,
    environment_info,
    git_commit,
    read_json,
    write_csv,
    write_json,
)


class RunConfigMismatch(ValueError):
    """The run directory already holds a run of another configuration."""


def load_data(cfg: RunConfig) -> PreparedDataset:
    from mtloca_lib.data.datasets import load_prepared

    return load_prepared(cfg.dataset, cfg.data_root, size=cfg.size, **cfg.dataset_kwargs)


def fold_table(cfg: RunConfig, data: PreparedDataset) -> pd.DataFrame:
    """Fold assignment for the run's protocol: case_id, label, group, fold."""
    from mtloca_lib.training.protocol import assign_folds

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
    from mtloca_lib.data.splits import validation_split

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
    """Hold an exclusive lock on ``run_dir/.lock`` (POSIX), so several processes may
    run different folds of one run (``cfg.folds``) and update its manifest safely."""
    try:
        import fcntl
    except ImportError:  # Windows: one process per run directory
        yield
        return
    with open(run_dir / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_run_config(run_dir: Path, cfg: RunConfig) -> None:
    """Raise :class:`RunConfigMismatch` when ``run_dir`` already holds a run of another config."""
    cfg_path = Path(run_dir) / "config.json"
    if cfg_path.exists():
        old = RunConfig.from_dict(read_json(cfg_path))
        if old.digest() != cfg.digest():
            diff = {
                k: (old.identity()[k], cfg.identity()[k])
                for k in cfg.identity()
                if old.identity()[k] != cfg.identity()[k]
            }
            raise RunConfigMismatch(
                f"{run_dir} already holds a run with a different configuration "
                f"(differs in {diff}); choose another run directory or delete it"
            )


def run_cv(
    cfg: RunConfig,
    run_dir: str | Path,
    log: Callable[[str], None] = print,
    stop_after_epochs: int | None = None,
    data: PreparedDataset | None = None,
) -> pd.DataFrame:
    """Train and evaluate ``cfg`` on every fold (or ``cfg.folds``), resuming where possible.

    Args:
        cfg: the run configuration.
        run_dir: where everything goes (created if needed).
        log: receives progress lines when not interactive.
        stop_after_epochs: test hook, see :func:`mtloca_lib.training.loop.train_fold`.
        data: an already prepared dataset (skips loading; must match ``cfg``).

    Returns:
        The per-fold metrics table.

    Raises:
        RunConfigMismatch: ``run_dir`` holds a run of a different configuration.
    """
    from mtloca_lib.training.loop import interactive, select_device, train_fold

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    check_run_config(run_dir, cfg)
    wanted = cfg.folds if cfg.folds is not None else list(range(cfg.k))
    if all((run_dir / f"fold{f}" / "metrics.json").exists() for f in wanted):
        # Nothing to train: leave config and manifest (they describe where the run was made).
        log(f"{run_dir}: all {len(wanted)} requested folds finished earlier")
        with run_lock(run_dir):
            return collect(run_dir)
    data = data if data is not None else load_data(cfg)
    folds = fold_table(cfg, data)
    run_dir.mkdir(parents=True, exist_ok=True)
    # ``folds`` only says which folds this call trains (several processes may share a
    # run, each with its own folds); the run directory describes the whole run.
    saved_cfg = {**cfg.to_dict(), "folds": None}
    write_json(cfg_path, saved_cfg)
    write_csv(run_dir / "folds.csv", folds)

    manifest_path = run_dir / "manifest.json"
    device = str(select_device(cfg.device))
    with run_lock(run_dir):
        manifest = read_json(manifest_path) if manifest_path.exists() else {}
        manifest.update(
            {
                "config": saved_cfg,
                "config_digest": cfg.digest(),
                "data": {
                    "name": data.name,
                    "fingerprint": data.fingerprint,
                    "n_images": len(data),
                    "class_counts": {c: int((data.labels == i).sum()) for i, c in enumerate(data.class_names)},
                    "params": data.params,
                },
                "model_selection": model_selection(cfg),
                "git": git_commit(),
                # the folds set torch's threads from the config when they start (train_fold)
                "environment": {**environment_info(device),
                                **({"torch_threads": cfg.num_threads} if cfg.num_threads else {})},
            }
        )
        manifest.setdefault("folds", {})
        write_json(manifest_path, manifest)

    fold_ids = folds["fold"].to_numpy()
    todo = [f for f in wanted if not (run_dir / f"fold{f}" / "metrics.json").exists()]
    for fold in sorted(set(wanted) - set(todo)):
        log(f"fold {fold}: finished earlier, skipped")
    plans = {}
    for fold in todo:
        train_idx, val_idx = split_train_val(cfg, folds, fold)
        plans[fold] = (train_idx, val_idx, np.flatnonzero(fold_ids == fold))
    if cfg.replicas > 1:
        from mtloca_lib.training.replicas import group_by_steps

        groups = group_by_steps(cfg, {f: len(p[0]) for f, p in plans.items()}, cfg.replicas)
    else:
        groups = [[f] for f in todo]
    if interactive():
        from tqdm.auto import tqdm

        groups = tqdm(groups, desc=f"{cfg.name} folds", unit="group" if cfg.replicas > 1 else "fold")
    for group in groups:
        t0 = time.perf_counter()
        for fold in group:
            train_idx, val_idx, test_idx = plans[fold]
            fdir = run_dir / f"fold{fold}"
            log(f"fold {fold}: {len(train_idx)} train / {len(val_idx)} validation / {len(test_idx)} test images")
            if len(val_idx):
                fdir.mkdir(parents=True, exist_ok=True)
                write_csv(fdir / "val_cases.csv", folds.iloc[val_idx][["case_id", "label", "group"]])
        if len(group) > 1:
            from mtloca_lib.training.replicas import ReplicaJob, train_replicas

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
                         len(group), manifest_path, log)
    with run_lock(run_dir):
        return collect(run_dir)


def _finish_fold(cfg, data, run_dir: Path, fold: int, test_idx, model, history, wall: float,
                 device: str, replicas: int, manifest_path: Path, log) -> None:
    """Evaluate a trained fold on its test part and write its files (metrics.json last)."""
    from mtloca_lib.training.loop import evaluate_fold

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
    atomic_torch_save(
        fdir / "model.pt",
        {"model": {k: v.cpu() for k, v in model.state_dict().items()},
         "run_config": cfg.to_dict(), "class_names": list(data.class_names)},
    )
    wall += time.perf_counter() - t0
    metrics["wall_seconds_this_call"] = round(wall, 2)
    write_json(fdir / "metrics.json", metrics)  # written last: marks the fold finished
    (fdir / "checkpoint.pt").unlink(missing_ok=True)
    with run_lock(run_dir):  # other processes may be running other folds of this run
        manifest = read_json(manifest_path)
        entry = {
            "wall_seconds": round(wall, 2),
            "epochs": cfg.epochs,
            "device": device,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git": git_commit(),  # a resumed run's folds may come from different commits
        }
        if replicas > 1:
            entry["trained_with_replicas"] = replicas
        manifest.setdefault("folds", {})[str(fold)] = entry
        write_json(manifest_path, manifest)
    log(f"fold {fold}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))


def collect(run_dir: str | Path) -> pd.DataFrame:
    """Combine finished folds into ``fold_metrics.csv`` and ``predictions.csv``."""
    run_dir = Path(run_dir)
    rows, preds = [], []
    for fdir in sorted(run_dir.glob("fold*/"), key=lambda p: int(p.name[4:])):
        if (fdir / "metrics.json").exists():
            m = read_json(fdir / "metrics.json")
            m.pop("wall_seconds_this_call", None)
            rows.append({"fold": int(fdir.name[4:]), **m})
            preds.append(pd.read_csv(fdir / "predictions.csv"))
    table = pd.DataFrame(rows)
    if rows:
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
