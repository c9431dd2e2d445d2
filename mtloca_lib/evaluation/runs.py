"""Reading finished run directories: fold metrics, summaries, per-image predictions.

``mtloca summary`` and the notebooks call these: :func:`run_summary` (mean +- std over
folds), :func:`fold_metrics`, :func:`predictions`, :func:`classification_table` (pooled
over folds), :func:`bootstrap_summary` (CIs over images), :func:`compare_runs` (paired
tests between two runs on the same images), :func:`run_device`, :func:`run_complete` and
:func:`run_status` (how far a run is). They compute from what
the run wrote; they never train.

May import: its own folder, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterable

import pandas as pd

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.evaluation import metrics as M
from mtloca_lib.evaluation.stats import bootstrap_ci, fold_summary, paired_comparison
from mtloca_lib.runio import read_json

TABLE2_METRICS = ("dice", "iou", "dice_lesion", "iou_lesion", "hd95_lesion", "accuracy")


def run_label(run_dir: str | Path) -> str:
    cfg = read_json(Path(run_dir) / "config.json")
    return f"{cfg['name']} [{cfg['protocol']}, seed {cfg['seed']}]"


def fold_metrics(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Per-fold metrics of several runs, one row per (run, fold)."""
    frames = []
    for rd in run_dirs:
        rd = Path(rd)
        path = rd / "fold_metrics.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: {rd} has no finished fold; run `mtloca train` first")
        cfg = read_json(rd / "config.json")
        df = pd.read_csv(path)
        df.insert(0, "model", cfg["name"])
        df.insert(1, "protocol", cfg["protocol"])
        df.insert(2, "seed", cfg["seed"])
        df.insert(3, "run", str(rd))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def run_summary(run_dirs: Iterable[str | Path], metrics=TABLE2_METRICS) -> pd.DataFrame:
    """Mean +- std over folds of each run: one row per run, one column per metric.

    Rows are indexed by (model, protocol, seed); when two runs share those (e.g. the same
    model under two profiles) the run directory joins the index, so no two runs are pooled.
    """
    table = fold_metrics(run_dirs)
    metrics = [m for m in metrics if m in table.columns]
    keys = ["model", "protocol", "seed"]
    if table.groupby(keys)["run"].nunique().max() > 1:
        keys = ["run", *keys]
    tidy = fold_summary(table, by=keys, metrics=metrics)
    wide = tidy.pivot_table(index=keys, columns="metric", values="text", aggfunc="first")
    return wide[[m for m in metrics if m in wide.columns]]


def predictions(run_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "predictions.csv")


def classification_table(run_dir: str | Path) -> dict:
    """Classification metrics over all images of a run (pooled over folds)."""
    df = predictions(run_dir)
    cfg = read_json(Path(run_dir) / "config.json")
    class_names = [c[5:] for c in df.columns if c.startswith("prob_")]
    if not class_names:
        raise ValueError(f"{run_dir}: the model ({cfg['name']}) has no classification output")
    prob = df[[f"prob_{c}" for c in class_names]].to_numpy()
    return M.classification_metrics(df["true_label"].to_numpy(), prob, class_names)


def bootstrap_summary(run_dir: str | Path, seed: int = 0) -> pd.DataFrame:
    """95 % bootstrap CIs over images for Dice (all, lesion) and accuracy."""
    df = predictions(run_dir)
    rows = {"dice": df["dice"], "dice_lesion": df.loc[df["true_area"] > 0, "dice"]}
    if "pred_label" in df:
        rows["accuracy"] = (df["pred_label"] == df["true_label"]).astype(float)
    out = [{"metric": k, **bootstrap_ci(v.to_numpy(dtype=float), seed=seed)} for k, v in rows.items()]
    return pd.DataFrame(out)


def compare_runs(run_a: str | Path, run_b: str | Path) -> pd.DataFrame:
    """Paired tests between two runs on the same images (Wilcoxon on Dice, McNemar on correctness)."""
    a, b = predictions(run_a), predictions(run_b)
    merged = a.merge(b, on="case_id", suffixes=("_a", "_b"))
    if len(merged) != len(a) or len(merged) != len(b):
        raise ValueError(f"{run_a} and {run_b} were not evaluated on the same images")
    correct_a = correct_b = None
    if "pred_label_a" in merged and "pred_label_b" in merged:
        correct_a = (merged["pred_label_a"] == merged["true_label_a"]).to_numpy()
        correct_b = (merged["pred_label_b"] == merged["true_label_b"]).to_numpy()
    table = paired_comparison(
        merged["dice_a"].to_numpy(), merged["dice_b"].to_numpy(), correct_a, correct_b,
        names=(run_label(run_a), run_label(run_b)),
    )
    dev_a, dev_b = run_device(run_a), run_device(run_b)
    table["same_device"] = dev_a == dev_b
    if dev_a != dev_b:
        warnings.warn(
            f"comparing runs made on different devices ({dev_a} vs {dev_b}): their random draws "
            "and numerics differ, so a difference may be the device's, not the model's",
            RuntimeWarning, stacklevel=2)
    return table


def run_device(run_dir: str | Path) -> str | None:
    """The device a run was trained on (GPU name, or "cpu"), from its manifest; None if unknown."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return None
    env = json.loads(path.read_text()).get("environment", {})
    return env.get("gpu") or (str(env["device"]).split(":")[0] if env.get("device") else None)


def run_complete(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a finished run: ``fold_metrics.csv`` with all ``k`` folds."""
    run_dir = Path(run_dir)
    metrics = run_dir / "fold_metrics.csv"
    if not metrics.exists():
        return False
    return len(pd.read_csv(metrics)) == RunConfig.from_dict(read_json(run_dir / "config.json")).k


def run_status(run_dir: str | Path) -> str:
    """"complete", "not run yet" or "k of K folds" (folds with a ``metrics.json``) for a run directory."""
    run_dir = Path(run_dir)
    if run_complete(run_dir):
        return "complete"
    done = len(list(run_dir.glob("fold*/metrics.json")))
    if not done or not (run_dir / "config.json").exists():
        return "not run yet"
    k = RunConfig.from_dict(read_json(run_dir / "config.json")).k
    return f"{done} of {k} folds"
