"""The committed BUSI runs as the README's blocks read them: where a run is, and how it is described.

Both README writers (:mod:`~mtloca_lib.report.results_section` and
:mod:`~mtloca_lib.report.findings`) find runs through :func:`busi_run` (the run registry, under a
repository root) and describe them with the same few words: :func:`verdict` (the convergence
rule), :func:`machine` (where and how long it trained), :func:`device`, :func:`means`.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtloca_lib.config.registry import RunKey, run_path
from mtloca_lib.evaluation.convergence import convergence_status
from mtloca_lib.runio import read_json

#: How the README names the two split protocols.
PROTOCOL_NAMES = {"image": "image-level (paper)", "grouped": "grouped (leakage-free)"}


def busi_run(root: Path, profile: str, protocol: str, model: str, seed: int = 0) -> Path:
    """The folder of a committed BUSI run under the repository ``root`` (the reference 624-image subset)."""
    return run_path(RunKey("busi", profile, protocol, model, seed), Path(root) / "runs")


def device(run_dir: Path) -> str:
    """The device a run trained on, e.g. "NVIDIA H200" or "CPU (2 cores)"."""
    env = read_json(Path(run_dir) / "manifest.json").get("environment", {})
    if env.get("gpu"):
        return env["gpu"]
    if str(env.get("device", "cpu")).startswith("cpu"):
        return f"CPU ({env.get('cpu_count', '?')} cores)"
    return str(env.get("device"))


def machine(run_dir: Path) -> str:
    """Where a run trained and how long a fold took, e.g. "AMD EPYC, 1 thread; 19-24 min per fold"."""
    manifest = read_json(Path(run_dir) / "manifest.json")
    env = manifest.get("environment", {})
    if env.get("gpu"):
        where = env["gpu"]
    else:
        cpu = str(env.get("cpu") or "CPU").split(" with ")[0]
        # manifests before 2026-12-04 recorded torch's default threads, not the config's
        threads = manifest.get("config", {}).get("num_threads") or env.get("torch_threads")
        where = f"{cpu}, {threads} thread{'s' if threads != 1 else ''}" if threads else cpu
    walls = [f.get("wall_seconds") for f in manifest.get("folds", {}).values() if f.get("wall_seconds")]
    if not walls:
        return where
    lo, hi = min(walls) / 60, max(walls) / 60
    span = f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"
    return f"{where}; {span} min per fold"


def verdict(run_dir: Path) -> str:
    """The convergence rule's verdict in a word and the rise, e.g. "yes (+0.005)"."""
    status = convergence_status(run_dir)
    if status["converged"] is None:
        return "unknown (no validation curve)"
    return f"{'yes' if status['converged'] else 'no'} ({status['rise']:+.3f})"


def mean_std(values, decimals: int = 3) -> str:
    """"0.654 ± 0.015" over the finite values (sample sd; 0 for one value), "n/a" for none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "n/a"
    return f"{v.mean():.{decimals}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{decimals}f}"


def means(run_dir: Path) -> dict[str, float]:
    """Means over folds of Dice, lesion Dice and accuracy."""
    f = pd.read_csv(Path(run_dir) / "fold_metrics.csv")
    return {m: float(f[m].mean()) for m in ("dice", "dice_lesion", "accuracy")}
