"""Learning curves and the convergence rule: has a run finished learning?

Every fold's ``history.csv`` holds one row per epoch: the mean training losses and, when
a validation part is held out of each training fold (``RunConfig.val_fraction``), the
validation curve (Dice over all images and over lesion images, accuracy, losses).

The rule (:func:`convergence_status`): a run has converged when the mean over its folds
of its validation Dice rises by less than ``tol`` = 0.01 over the last 20 % of its epochs,
the rise read off a least-squares line through that window (:func:`tail_rise`), so one noisy
epoch neither hides nor fakes a trend. A run without a validation curve cannot be judged and
counts as not converged ("unknown"). :func:`study_table` summarises the training study's
probes. The figures of these curves are in :mod:`mtloca_lib.report.convergence`.

This module only reads run directories; it never trains. May import: its own folder, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.runio import read_json

RULE_METRIC = "val_dice"


RULE_TAIL = 0.2


RULE_TOL = 0.01


RISING = ("val_dice", "val_dice_lesion", "val_accuracy")


def load_histories(run_dir: str | Path) -> pd.DataFrame:
    """Every finished (or running) fold's history of a run, with a ``fold`` column.

    Returns:
        DataFrame with columns ``fold``, ``epoch`` and the history's metrics; empty
        when the run has no history yet.
    """
    frames = []
    for path in sorted(Path(run_dir).glob("fold*/history.csv"), key=lambda p: int(p.parent.name[4:])):
        h = pd.read_csv(path)
        h.insert(0, "fold", int(path.parent.name[4:]))
        frames.append(h)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["fold", "epoch"])


def mean_curve(histories: pd.DataFrame, metric: str) -> pd.Series:
    """The fold-mean of ``metric`` per epoch (epochs every fold reached), indexed by epoch."""
    if metric not in histories:
        return pd.Series(dtype=float, name=metric)
    wide = histories.pivot_table(index="epoch", columns="fold", values=metric)
    return wide.dropna().mean(axis=1).rename(metric)


def tail_window(n_epochs: int, tail: float = RULE_TAIL) -> int:
    """Number of epochs in the rule's window: ``ceil(tail * n)``, at least 2 (when n >= 2)."""
    return min(n_epochs, max(2, math.ceil(tail * n_epochs)))


def tail_rise(curve: pd.Series, tail: float = RULE_TAIL) -> float:
    """Rise of a curve over its last ``tail`` share of epochs, on a least-squares line.

    Returns:
        fitted value at the last epoch minus fitted value at the window's first; NaN for
        fewer than 2 points.
    """
    values = curve.dropna().to_numpy(dtype=float)
    if len(values) < 2:
        return float("nan")
    w = tail_window(len(values), tail)
    y = values[-w:]
    x = np.arange(w, dtype=float)
    slope = np.polyfit(x, y, 1)[0]
    return float(slope * (w - 1))


def epoch_reaching(curve: pd.Series, fraction: float = 0.95, tail: float = RULE_TAIL) -> float:
    """First epoch at which a rising curve reaches ``fraction`` of its final value.

    The final value is the curve's mean over the rule's window (its last ``tail`` share of
    epochs), so one noisy last epoch does not move it. NaN for an empty curve or a final
    value <= 0.
    """
    c = curve.dropna()
    if c.empty:
        return float("nan")
    final = float(c.iloc[-tail_window(len(c), tail):].mean())
    if not final > 0:
        return float("nan")
    reached = c.index[c.to_numpy() >= fraction * final]
    return float(reached[0]) if len(reached) else float("nan")


def convergence_status(run_dir: str | Path | None = None, histories: pd.DataFrame | None = None,
                       metric: str = RULE_METRIC, tail: float = RULE_TAIL, tol: float = RULE_TOL) -> dict:
    """Whether a run converged by the project's rule.

    Args:
        run_dir: a run directory (its folds' ``history.csv``), or
        histories: the table of :func:`load_histories`.
        metric, tail, tol: the rule (defaults: validation Dice, last 20 %, rise < 0.01).

    Returns:
        dict with ``converged`` (True, False, or None when there is no validation curve),
        ``rise`` (over the window), ``epochs``, ``window`` (epochs in it), ``folds``,
        ``final`` (the curve's mean over the window) and ``reason`` (one line of words).
    """
    if histories is None:
        if run_dir is None:
            raise ValueError("give run_dir or histories")
        histories = load_histories(run_dir)
    folds = sorted(histories["fold"].unique().tolist()) if len(histories) else []
    out = {"converged": None, "rise": float("nan"), "epochs": 0, "window": 0, "folds": len(folds),
           "final": float("nan"), "metric": metric}
    if metric not in histories or histories[metric].isna().all():
        out["reason"] = "unknown: the run has no validation curve (trained without val_fraction)"
        return out
    curve = mean_curve(histories, metric)
    out["epochs"] = int(len(curve))
    if len(curve) < 5:
        out["reason"] = f"unknown: only {len(curve)} epochs of validation curve"
        return out
    out["window"] = tail_window(len(curve), tail)
    out["rise"] = tail_rise(curve, tail)
    out["final"] = float(curve.iloc[-out["window"]:].mean())
    out["converged"] = bool(out["rise"] < tol)
    word = "converged" if out["converged"] else "not converged"
    out["reason"] = (f"{word}: mean {metric} over {len(folds)} fold(s) rose {out['rise']:+.3f} over the last "
                     f"{out['window']} of {out['epochs']} epochs (rule: < {tol:g})")
    return out


def convergence_table(runs: Mapping[str, str | Path]) -> pd.DataFrame:
    """One row per run: the rule's verdict and the epochs at which curves reach 95 %.

    Args:
        runs: label -> run directory.

    Returns:
        DataFrame indexed by label with ``converged``, ``rise``, ``final``, ``epochs``,
        ``folds``, ``epoch95_<metric>`` for each rising curve, and ``reason``.
    """
    rows = {}
    for label, run_dir in runs.items():
        h = load_histories(run_dir)
        status = convergence_status(histories=h)
        row = {k: status[k] for k in ("converged", "rise", "final", "epochs", "folds")}
        for metric in RISING:
            row[f"epoch95_{metric}"] = epoch_reaching(mean_curve(h, metric)) if metric in h else float("nan")
        row["reason"] = status["reason"]
        rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "run"
    return table


def is_converged(run_dir: str | Path) -> bool:
    """True only when the run converged by the rule (unknown counts as not converged)."""
    return convergence_status(run_dir)["converged"] is True


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(run_dir: str | Path, base_dir: str | Path) -> str:
    """The config fields in which a run differs from a base run, as ``field=value`` text."""
    a = _flat(RunConfig.from_dict(read_json(Path(run_dir) / "config.json")).to_dict())
    b = _flat(RunConfig.from_dict(read_json(Path(base_dir) / "config.json")).to_dict())
    skip = {"name", "folds", "num_threads", "device", "eval_batch_size"}
    diff = [f"{k}={a.get(k)!r}" for k in sorted(set(a) | set(b)) if k not in skip and a.get(k) != b.get(k)]
    return ", ".join(diff) if diff else "(base)"


def study_table(runs: Mapping[str, str | Path], base: str) -> pd.DataFrame:
    """The training study's table: each probe's validation results and how it differs from ``base``.

    Only validation curves are read (the probes' test folds are never used to choose).
    Each value is the fold-mean curve's mean over the rule's window (the last 20 % of
    epochs), so one noisy epoch does not decide.

    Args:
        runs: probe name -> run directory; ``base`` must be one of the names.

    Returns:
        DataFrame indexed by probe: ``changes``, ``epochs``, ``val_dice``, ``val_dice_lesion``,
        ``val_accuracy``, ``rise`` (of val_dice, the rule), ``converged``, ``minutes``
        (training wall time of the probe's folds, from its manifest).
    """
    rows = {}
    for name, rd in runs.items():
        h = load_histories(rd)
        status = convergence_status(histories=h)
        w = status["window"] or 1
        row = {"changes": config_changes(rd, runs[base]), "epochs": status["epochs"]}
        for metric in RISING:
            curve = mean_curve(h, metric)
            row[metric] = float(curve.iloc[-w:].mean()) if len(curve) else float("nan")
        row["rise"] = status["rise"]
        row["converged"] = status["converged"]
        manifest = read_json(Path(rd) / "manifest.json")
        row["minutes"] = round(sum(f["wall_seconds"] for f in manifest.get("folds", {}).values()) / 60, 1)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "probe"
    return table

