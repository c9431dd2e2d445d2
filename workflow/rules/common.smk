# Names shared by the rules: where a run's files, the prepared data and the executed notebooks are.

import hashlib
import json
import math
import re
import shlex
import sys
from pathlib import Path

from mtloca_lib.config.profiles import PROFILE_TABLE
from mtloca_lib.data.datasets import default_cache_dir
from mtloca_lib.runio import REPO_ROOT
from mtloca_lib.training.jobs import fold_seconds, benchmark_rates

PY = shlex.quote(sys.executable)
RATES = benchmark_rates()
#: every planned run folder, as a wildcard constraint (nothing else matches the training rules)
RUN_PATTERN = "|".join(re.escape(path) for path in PLAN.runs) or "(?!)"
EXECUTED_DIR = Path(str(S.get("executed_dir") or "notebooks/executed"))
README_STAMP = str(EXECUTED_DIR / "readme_blocks.done")


def run_done(path):
    """A finished, merged run: its fold_metrics.csv and every fold's marker (a fold_metrics.csv of
    some folds, written when a run was trained fold by fold, does not make a run finished)."""
    k = PLAN.runs[path].k
    return [str(Path(path) / "fold_metrics.csv")] + [fold_done(path, f) for f in range(k)]


def fold_done(path, fold):
    """A finished fold: its metrics.json, which training writes last (the fold's completeness marker)."""
    return str(Path(path) / f"fold{fold}" / "metrics.json")


def executed(stem):
    return str(EXECUTED_DIR / f"{stem}.ipynb")


def prepare_tag(cfg):
    """One prepare job per dataset, data, size and reader arguments."""
    kwargs = json.dumps(cfg.dataset_kwargs, sort_keys=True)
    digest = hashlib.sha256(f"{cfg.data_root}|{kwargs}".encode()).hexdigest()[:12]
    return f"{cfg.dataset}-{cfg.size}-{digest}"


PREPARE_DIR = default_cache_dir() / "workflow-prepared"
PREPARE = {prepare_tag(run.config): run.config for run in PLAN.runs.values()}


def prepared_stamp(cfg):
    return str(PREPARE_DIR / f"{prepare_tag(cfg)}.json")


def fold_minutes(run):
    """SLURM's time limit of one fold of ``run``: twice the estimate, at least 10 minutes."""
    n = {"phantom": 300}.get(run.config.dataset, 800)
    return max(10, math.ceil(2 * fold_seconds(run.config, n, RATES) / 60))


def fold_mem_mb(run):
    """Memory of one fold job of ``run``: the prepared arrays, the model and a batch, with room."""
    return 1500 if run.config.size <= 64 else 4000


def fold_gpus(run):
    """1 when the run's profile is meant for a GPU (``Profile.gpu``), else 0."""
    return int(PROFILE_TABLE[run.key.profile].gpu)
