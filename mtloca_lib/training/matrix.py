"""Run a matrix of cross-validation runs (models x protocols x seeds) in parallel processes.

This is how the committed BUSI results were produced on a GPU machine: a small
network at 128 px leaves one GPU mostly idle, so several training processes share
it, each training one fold of one run (``--split-folds``) or one whole run. Every
process is an ordinary ``mtloca train`` call into the usual run-directory layout
(``<run_root>/<dataset>/<profile>/<protocol>/<model>-seed<seed>``, the one the
notebooks read), so a matrix resumes like a single run: finished folds are
skipped, an interrupted fold restarts from its last epoch checkpoint. Folds of
one run written by different processes are merged under a file lock
(:func:`mtloca_lib.training.cv.run_cv`).

Example (GPU machine, data copied as a prepared cache file)::

    python -m mtloca_lib matrix --profile paper --dataset busi \\
        --data /work/shared/data/BUSI/Dataset_BUSI_with_GT \\
        --prepared .cache/mtloca/busi-128-4cad684820ed6b68.npz \\
        --models mtl_oca unet_st --protocols grouped --seeds 0 --workers 10 --split-folds

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import pandas as pd

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from mtloca_lib.config.presets import ALL_MODELS, MODEL_PRESETS
from mtloca_lib.config.profiles import DEFAULT_PROFILE, PROFILES
from mtloca_lib.config.run_config import make_config


@dataclass(frozen=True)
class Job:
    """One training process: a run (model, protocol, seed) and optionally one fold."""

    model: str
    protocol: str
    seed: int
    fold: int | None = None

    @property
    def label(self) -> str:
        fold = "" if self.fold is None else f"-fold{self.fold}"
        return f"{self.model}-{self.protocol}-seed{self.seed}{fold}"


def run_directory(run_root, dataset: str, profile: str, model: str, protocol: str, seed: int) -> Path:
    """The run directory of the notebooks' layout (see ``mtloca_lib.experiments.run_dir``)."""
    return Path(run_root) / dataset / profile / protocol / f"{model}-seed{seed}"


def plan_jobs(models, protocols, seeds, k: int, split_folds: bool) -> list[Job]:
    """Every (model, protocol, seed[, fold]) combination, in a stable order."""
    for m in models:
        if m not in MODEL_PRESETS:
            raise ValueError(f"unknown model {m!r}; choose from {sorted(MODEL_PRESETS)}")
    for p in protocols:
        if p not in ("image", "grouped"):
            raise ValueError(f"unknown protocol {p!r}; choose image or grouped")
    folds = list(range(k)) if split_folds else [None]
    return [Job(m, p, int(s), f) for p in protocols for m in models for s in seeds for f in folds]


def job_command(job: Job, args, run_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "mtloca_lib", "train", "--model", job.model, "--profile", args.profile,
           "--dataset", args.dataset, "--protocol", job.protocol, "--seed", str(job.seed),
           "--run-dir", str(run_dir)]
    if args.data:
        cmd += ["--data", args.data]
    if args.prepared:
        cmd += ["--prepared", str(args.prepared)]
    if args.device:
        cmd += ["--device", args.device]
    if job.fold is not None:
        cmd += ["--set", f"folds=[{job.fold}]"]
    if args.threads:
        cmd += ["--set", f"num_threads={args.threads}"]
    replicas = getattr(args, "resolved_replicas", 1)
    if replicas > 1:
        cmd += ["--set", f"replicas={replicas}"]
    for item in args.overrides:
        cmd += ["--set", item]
    return cmd


def resolve_replicas(option: str, device: str | None, k: int, split_folds: bool) -> int:
    """Folds per batched step (RunConfig.replicas) for every run of the matrix.

    ``"auto"``: all k folds of a run in one step on CUDA, where a small model's step is
    bound by kernel launches; 1 on a CPU, where replicas (mapped by a loop there) were
    measured no faster than separate steps (0.98x, docs/benchmarks.md, 2026-12-04), and
    jobs side by side use the cores better. A number is used as given.

    Raises:
        ValueError: replicas > 1 together with ``--split-folds`` (one fold per process
            leaves nothing to train together), or an option that is neither.
    """
    from mtloca_lib.training.loop import select_device

    if option == "auto":
        n = k if select_device(device or "auto").type == "cuda" else 1
    else:
        try:
            n = int(option)
        except ValueError:
            raise ValueError(f"--replicas takes 'auto' or a positive number, not {option!r}") from None
        if n < 1:
            raise ValueError(f"--replicas must be at least 1, not {n}")
    if n > 1 and split_folds:
        if option == "auto":
            return 1
        raise ValueError("--replicas > 1 trains the folds of a run together in one process; "
                         "leave out --split-folds (one fold per process)")
    return n


def run_matrix(args) -> int:
    """Run the jobs ``args`` describes; returns 0 when all succeeded (the CLI's exit code)."""
    from mtloca_lib.training.cv import run_lock, collect

    if args.profile not in PROFILES:
        raise ValueError(f"unknown profile {args.profile!r}; choose one of {sorted(PROFILES)}")
    k = make_config("mtl_oca", args.profile).k
    args.resolved_replicas = resolve_replicas(getattr(args, "replicas", "1"), args.device, k,
                                              args.split_folds)
    if args.resolved_replicas > 1:
        print(f"each run trains up to {args.resolved_replicas} folds in one step (replicas)", flush=True)
    jobs = plan_jobs(args.models, args.protocols, args.seeds, k, args.split_folds)
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    dirs = {j: run_directory(args.run_root, args.dataset, args.profile, j.model, j.protocol, j.seed) for j in jobs}
    print(f"{len(jobs)} job(s), {args.workers} at a time; logs in {log_dir}", flush=True)
    t_start = time.perf_counter()

    def run_one(job: Job) -> tuple[Job, int, float]:
        t0 = time.perf_counter()
        with open(log_dir / f"{job.label}.log", "w") as fh:
            rc = subprocess.run(job_command(job, args, dirs[job]), stdout=fh, stderr=subprocess.STDOUT).returncode
        return job, rc, time.perf_counter() - t0

    failed = []
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = [pool.submit(run_one, j) for j in jobs]
        for i, fut in enumerate(as_completed(futures), 1):
            job, rc, secs = fut.result()
            status = "ok" if rc == 0 else f"FAILED (exit {rc}; see {log_dir / (job.label + '.log')})"
            print(f"[{i}/{len(jobs)}] {job.label}: {status} in {secs:.0f} s "
                  f"({time.perf_counter() - t_start:.0f} s elapsed)", flush=True)
            if rc != 0:
                failed.append(job)
    for rd in sorted(set(dirs.values())):
        if rd.exists():
            with run_lock(rd):
                table = collect(rd)
            print(f"{rd}: {len(table)} fold(s) finished", flush=True)
    print(f"matrix done in {time.perf_counter() - t_start:.0f} s; {len(failed)} failed", flush=True)
    for job in failed:
        tail = (log_dir / f"{job.label}.log").read_text().splitlines()[-15:]
        print(f"--- {job.label} (last lines) ---\n" + "\n".join(tail), file=sys.stderr)
    return 1 if failed else 0


def add_arguments(p) -> None:
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES), help="run profile (default: %(default)s)")
    p.add_argument("--dataset", default="phantom", choices=["phantom", "busi", "udiat", "folder"])
    p.add_argument("--data", default=None, help="dataset root (recorded in each run's config)")
    p.add_argument("--prepared", type=Path, default=None,
                   help="prepared-data cache file to train from instead of the raw folder (see `mtloca train --prepared`)")
    p.add_argument("--models", nargs="+", default=list(ALL_MODELS), choices=sorted(MODEL_PRESETS))
    p.add_argument("--protocols", nargs="+", default=["image", "grouped"], choices=["image", "grouped"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--workers", type=int, default=1, help="training processes at a time (default: %(default)s)")
    p.add_argument("--split-folds", action="store_true", help="one process per fold instead of per run")
    p.add_argument("--replicas", default="1",
                   help="folds of a run trained together in one batched step: a number, or 'auto' "
                        "(all folds on CUDA, 1 on a CPU, where it was measured slower); default %(default)s")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process (RunConfig.num_threads)")
    p.add_argument("--device", default=None, help="device for every process (default: auto)")
    p.add_argument("--run-root", default="runs", help="root of the run-directory layout (default: %(default)s)")
    p.add_argument("--log-dir", default="runs/logs", help="one log file per job (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="RunConfig override passed to every job (repeatable)")


def fold_metrics_from_logs(log_dir) -> "pd.DataFrame":
    """Per-fold metrics read back from a matrix's job logs (``<model>-<protocol>-seed<s>-fold<k>.log``).

    Each finished fold logs one line ``fold K: dice=... iou=... ...`` (see
    :func:`mtloca_lib.training.cv.run_cv`). This recovers fold-level numbers when a run
    directory itself was lost; per-image predictions cannot be recovered this way.

    Returns:
        One row per finished fold: model, protocol, seed, fold and the logged metrics
        (folds whose log has no such line, i.e. unfinished ones, are left out).
    """
    import re

    import pandas as pd

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
