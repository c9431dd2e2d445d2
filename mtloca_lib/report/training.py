"""Notebook 01 (training every run): the table of runs, and the engine calls it makes.

:func:`runs_table` lists the run directories the notebook trained or found finished, with
paths relative to the repository. ``train_runs`` and ``run_summary`` are the engine's,
re-exported so the notebook imports from here.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import pandas as pd

from mtloca_lib.evaluation.runs import run_summary  # noqa: F401

# what notebook 01 calls from the engine, re-exported so it imports from here only
from mtloca_lib.experiments import (
    DISPLAY,
    NotebookParams,
    train_runs,  # noqa: F401
)
from mtloca_lib.report.common import display_path


def runs_table(runs: pd.DataFrame, params: NotebookParams) -> pd.DataFrame:
    """The table :func:`~mtloca_lib.experiments.train_runs` returns, with display names and
    run folders relative to the run root (``<run_root>/...``)."""
    out = runs.copy()
    out.insert(0, "name", [DISPLAY.get(m, m) for m in out["model"]])
    out["run_dir"] = [display_path(p, params.path("run_root"), "run_root") for p in out["run_dir"]]
    return out
