"""``mtloca matrix``: a matrix of runs (models x protocols x seeds), trained by the workflow.

The home-made process pool that was here is gone: ``mtloca matrix`` is a thin call of the
Snakemake workflow (``workflow/Snakefile``) with its notebooks off, one job per fold, as many side
by side as ``--workers`` (times ``--threads``) cores allow, every run folder laid out by the run
registry. It resumes like the workflow: finished folds are skipped, an interrupted fold restarts
from its last epoch checkpoint. For a cluster, call snakemake with the SLURM profile instead (the
command is printed with ``--print-command``)::

    mtloca matrix --profile smoke --models unet_st mtl_oca --protocols image --seeds 0 1 --workers 2

:func:`fold_metrics_from_logs` still reads per-fold metrics back from training logs, for a run
whose folder was lost.

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mtloca_lib.config.presets import ALL_MODELS, MODEL_PRESETS
from mtloca_lib.config.profiles import DEFAULT_PROFILE, PROFILES
from mtloca_lib.config.run_config import parse_value
from mtloca_lib.runio import REPO_ROOT


def workflow_command(args) -> list[str]:
    """The snakemake command that trains the matrix ``args`` describes (no notebooks)."""
    if getattr(args, "prepared", None):
        raise ValueError("--prepared: the workflow prepares the data itself (its prepare rule); "
                         "copy the prepared cache folder (.cache/mtloca) instead")
    replicas = str(getattr(args, "replicas", "1"))
    if replicas not in ("1", "auto"):
        raise ValueError("--replicas: the workflow trains one fold per job; leave it at 1")
    overrides = {}
    for item in args.overrides:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = parse_value(v)
    threads = int(args.threads or 1)
    config = {
        "dataset": args.dataset, "data_root": args.data or "", "profile": args.profile,
        "models": list(args.models), "protocols": list(args.protocols), "seeds": [int(s) for s in args.seeds],
        "run_root": str(Path(args.run_root).resolve()), "device": args.device or "auto", "threads": threads,
        "notebooks": [], "readme": False, "overrides": overrides,
    }
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "workflow" / "Snakefile"),
           "--directory", str(REPO_ROOT), "--cores", str(max(1, int(args.workers)) * threads), "--config"]
    cmd += [f"{k}={json.dumps(v)}" for k, v in config.items()]
    return cmd


def run_matrix(args) -> int:
    """Train the matrix through the workflow; returns snakemake's exit code (the CLI's)."""
    for m in args.models:
        if m not in MODEL_PRESETS:
            raise ValueError(f"unknown model {m!r}; choose from {sorted(MODEL_PRESETS)}")
    cmd = workflow_command(args)
    print("mtloca matrix: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if getattr(args, "print_command", False):
        return 0
    return subprocess.call(cmd, cwd=REPO_ROOT)


def add_arguments(p) -> None:
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES), help="run profile (default: %(default)s)")
    p.add_argument("--dataset", default="phantom", choices=["phantom", "busi", "udiat", "folder"])
    p.add_argument("--data", default=None, help="dataset root (recorded in each run's config)")
    p.add_argument("--prepared", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--models", nargs="+", default=list(ALL_MODELS), choices=sorted(MODEL_PRESETS))
    p.add_argument("--protocols", nargs="+", default=["image", "grouped"], choices=["image", "grouped"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--workers", type=int, default=1, help="fold jobs at a time (default: %(default)s)")
    p.add_argument("--split-folds", action="store_true", help="(always: the workflow runs one job per fold)")
    p.add_argument("--replicas", default="1", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help="CPU threads per fold job (RunConfig.num_threads)")
    p.add_argument("--device", default=None, help="device for every job (default: auto)")
    p.add_argument("--run-root", default="runs", help="root of the run registry's layout (default: %(default)s)")
    p.add_argument("--log-dir", default=None, help="(unused: each fold's log is fold<k>/train.log in its run)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="RunConfig override passed to every job (repeatable)")
    p.add_argument("--print-command", action="store_true", help="print the snakemake command and stop")


def fold_metrics_from_logs(log_dir) -> pd.DataFrame:
    """Per-fold metrics read back from training logs named ``<model>-<protocol>-seed<s>-fold<k>.log``.

    Each finished fold logs one line ``fold K: dice=... iou=... ...`` (see
    :func:`mtloca_lib.training.cv.run_cv`). This recovers fold-level numbers when a run
    directory itself was lost; per-image predictions cannot be recovered this way.

    Returns:
        One row per finished fold: model, protocol, seed, fold and the logged metrics
        (folds whose log has no such line, i.e. unfinished ones, are left out).
    """
    name_re = re.compile(r"^(?P<model>.+)-(?P<protocol>image|grouped)-seed(?P<seed>\d+)-fold(?P<fold>\d+)\.log$")
    rows = []
    for path in sorted(Path(log_dir).glob("*.log")):
        m = name_re.match(path.name)
        if not m:
            continue
        fold = int(m["fold"])
        for line in path.read_text().splitlines():
            if line.startswith(f"fold {fold}: ") and "dice=" in line:
                values = dict(kv.split("=", 1) for kv in line.split(": ", 1)[1].split())
                rows.append({"model": m["model"], "protocol": m["protocol"], "seed": int(m["seed"]), "fold": fold,
                             **{k: float(v) for k, v in values.items()}})
                break
    return pd.DataFrame(rows)
