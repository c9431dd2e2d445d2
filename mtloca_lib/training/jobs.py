"""The workflow's jobs: prepare a dataset, train one fold of one run, merge a run's folds.

``workflow/Snakefile`` calls these through ``python -m mtloca_lib.training.jobs``::

    jobs prepare    --config-json CFG --stamp FILE              # the prepared cache of CFG's data
    jobs train-fold --config-json CFG --run-dir RUN --fold K    # fold K of the run in RUN
    jobs merge      --run-dir RUN --k K                         # fold_metrics.csv, predictions.csv, verdict

A fold job is :func:`mtloca_lib.training.cv.run_cv` with ``folds=[K]``: it resumes from the
fold's epoch checkpoint, and its ``metrics.json`` (written last) is the fold's completeness
marker, the file the workflow asks for. The merge combines the finished folds under the run's
lock and writes the convergence verdict into the manifest.

It also holds what the workflow needs to know before anything runs: the data's fingerprint
(:func:`data_fingerprint`, cached by the folder's byte hash) and an estimate of a fold's time
(:func:`fold_seconds`).

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

from mtloca_lib.config.run_config import RunConfig
from mtloca_lib.data.datasets import default_cache_dir, hash_folder, load_prepared, load_raw
from mtloca_lib.evaluation.convergence import convergence_status
from mtloca_lib.runio import REPO_ROOT, cpu_model, read_json, write_json
from mtloca_lib.training.cv import check_run_config, collect, run_cv, run_lock

#: Training images per second at 128 px on one job, measured on a 2-core Intel Xeon (AMX) with
#: ``mtloca train`` on the phantom (demo profile, 64 px: 208 images x 10 epochs in 15.6 s, i.e. 133
#: images/s, taken to scale with the input's pixels); used when ``docs/benchmark_results`` has no
#: figure for this machine's processor.
DEFAULT_IMAGES_PER_S_128PX = 208 * 10 / 15.6 / 4
#: A fold job's fixed cost: interpreter, imports, data from the cache, evaluation (measured, same machine).
DEFAULT_JOB_OVERHEAD_S = 5.0


def data_fingerprint(dataset: str, root: str | Path | None) -> str:
    """The content fingerprint of a dataset folder (``RawDataset.fingerprint``, what a run's manifest
    records), cached under the folder's byte hash so that only the first call decodes the images.
    The phantom has none (its content follows from its parameters): returns ""."""
    if dataset == "phantom" or not root:
        return ""
    byte_hash = hash_folder(root)
    cached = default_cache_dir() / "fingerprints" / f"{dataset}-{byte_hash[:32]}.txt"
    if cached.is_file():
        return cached.read_text().strip()
    fingerprint = load_raw(dataset, root).fingerprint()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(fingerprint + "\n")
    return fingerprint


def data_key(dataset: str, root: str | Path | None, reference: str | None) -> str:
    """``RunKey.data`` for runs on this data: "" for the reference copy (the data of the committed
    runs, whose fingerprint is ``reference``) and for the phantom, else the fingerprint's first 12
    hex digits, so runs on other data get folders of their own."""
    fingerprint = data_fingerprint(dataset, root)
    if not fingerprint or (reference and fingerprint == reference):
        return ""
    return fingerprint[:12]


def benchmark_rates(results: Path = REPO_ROOT / "docs" / "benchmark_results") -> dict[str, float]:
    """Training images per second at 128 px per model architecture, from ``mtloca benchmark``'s
    ``benchmark.json`` when it was measured on this machine's processor; {} otherwise."""
    path = results / "benchmark.json"
    try:
        bench = read_json(path)
    except (OSError, ValueError):
        return {}
    if not isinstance(bench, dict) or bench.get("environment", {}).get("cpu") != cpu_model():
        return {}
    rates = {}
    for model, row in (bench.get("summary") or {}).items():
        rate = row.get("fast_images_per_s") or row.get("plain_images_per_s") if isinstance(row, dict) else None
        if rate:
            rates[model] = float(rate)
    return rates


def fold_seconds(cfg: RunConfig, n_images: int, rates: dict[str, float] | None = None) -> float:
    """An estimate of one fold's wall time: training images x epochs at the throughput of the
    model's architecture at the config's size (pixels scale the time), plus a job's fixed cost.

    Args:
        cfg: the run's configuration.
        n_images: images in the dataset (a fold trains on (k-1)/k of them).
        rates: images/s at 128 px per architecture (:func:`benchmark_rates`); missing ones take
            :data:`DEFAULT_IMAGES_PER_S_128PX`.
    """
    rate = (rates or {}).get(cfg.model.get("arch", ""), DEFAULT_IMAGES_PER_S_128PX)
    rate *= (128 / cfg.size) ** 2
    train_images = n_images * (cfg.k - 1) / cfg.k
    return train_images * cfg.epochs / rate + DEFAULT_JOB_OVERHEAD_S


def prepare(cfg: RunConfig, stamp: Path) -> dict:
    """Build (or find) the prepared cache of ``cfg``'s data at ``cfg.size``; ``stamp`` records it."""
    t0 = time.perf_counter()
    data = load_prepared(cfg.dataset, cfg.data_root, size=cfg.size, **cfg.dataset_kwargs)
    info = {"dataset": cfg.dataset, "data_root": cfg.data_root, "size": cfg.size,
            "dataset_kwargs": cfg.dataset_kwargs, "n_images": len(data), "fingerprint": data.fingerprint,
            "cache_file": data.params.get("cache_file", ""), "seconds": round(time.perf_counter() - t0, 2)}
    write_json(stamp, info)
    return info


def config_for_run(cfg: RunConfig, run_dir: Path) -> tuple[RunConfig, str | None]:
    """The configuration to train ``run_dir`` with, and the folder to read its data from when that
    is not the configuration's own ``data_root`` (else None).

    A run already begun keeps its recorded configuration when the two differ only in where the data
    was read from (``data_root``: a clone elsewhere, the shared folder mounted at another path; the
    workflow has checked the data's fingerprint, which the run's folder name carries): the folds then
    train with the recorded config on the data found at ``cfg.data_root``. Any other difference is
    refused, as :func:`mtloca_lib.training.cv.check_run_config` does.
    """
    recorded_path = run_dir / "config.json"
    if not recorded_path.exists():
        return cfg, None
    recorded = RunConfig.from_dict(read_json(recorded_path))
    if recorded.data_root != cfg.data_root:
        moved = RunConfig.from_dict({**cfg.to_dict(), "data_root": recorded.data_root})
        if moved.digest() == recorded.digest():
            return moved, cfg.data_root
    check_run_config(run_dir, cfg)  # raises RunConfigMismatch naming the difference
    return cfg, None


def train_fold(cfg: RunConfig, run_dir: Path, fold: int, threads: int | None = None, log=print) -> dict:
    """Train (or resume, or find finished) fold ``fold`` of the run in ``run_dir``; returns its metrics."""
    run_dir = Path(run_dir)
    changes = {"folds": [int(fold)]}
    if threads:
        changes["num_threads"] = int(threads)
    cfg = RunConfig.from_dict({**cfg.to_dict(), **changes})
    cfg, read_from = config_for_run(cfg, run_dir)
    data = None
    if read_from is not None:
        log(f"{run_dir}: recorded data root {cfg.data_root}; reading the same data from {read_from}")
        data = load_prepared(cfg.dataset, read_from, size=cfg.size, **cfg.dataset_kwargs)
    kwargs = {"log": log, "data": data}
    # cv.run_cv merges the run's files after its folds unless told not to (the merge job does it)
    if "merge" in inspect.signature(run_cv).parameters:
        kwargs["merge"] = False
    run_cv(cfg, run_dir, **kwargs)
    metrics = run_dir / f"fold{fold}" / "metrics.json"
    if not metrics.is_file():
        raise RuntimeError(f"{run_dir}: fold {fold} ended without {metrics.name}")
    return read_json(metrics)


def merge(run_dir: Path, k: int) -> dict:
    """Combine the run's finished folds (``fold_metrics.csv``, ``predictions.csv``) and write the
    convergence verdict into its manifest; all ``k`` folds must be finished."""
    run_dir = Path(run_dir)
    missing = [f for f in range(k) if not (run_dir / f"fold{f}" / "metrics.json").is_file()]
    if missing:
        raise RuntimeError(f"{run_dir}: fold(s) {missing} not finished; nothing to merge")
    with run_lock(run_dir):
        table = collect(run_dir)
        verdict = convergence_status(run_dir)
        manifest_path = run_dir / "manifest.json"
        manifest = read_json(manifest_path) if manifest_path.exists() else {}
        if manifest.get("convergence") != verdict:
            manifest["convergence"] = verdict
            write_json(manifest_path, manifest)
    return {"folds": len(table), "convergence": verdict["reason"]}


def _read_config(text: str) -> RunConfig:
    path = Path(text)
    if not text.lstrip().startswith("{") and path.is_file():
        return RunConfig.load(path)
    return RunConfig.from_dict(json.loads(text))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mtloca_lib.training.jobs", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="job", required=True)
    q = sub.add_parser("prepare", help="the prepared cache of a config's data")
    q.add_argument("--config-json", required=True, help="a RunConfig as JSON text or a file")
    q.add_argument("--stamp", type=Path, required=True, help="file that records the cache entry")
    q = sub.add_parser("train-fold", help="one fold of one run")
    q.add_argument("--config-json", required=True, help="a RunConfig as JSON text or a file")
    q.add_argument("--run-dir", type=Path, required=True)
    q.add_argument("--fold", type=int, required=True)
    q.add_argument("--threads", type=int, default=None, help="torch threads (RunConfig.num_threads)")
    q = sub.add_parser("merge", help="merge a run's finished folds")
    q.add_argument("--run-dir", type=Path, required=True)
    q.add_argument("--k", type=int, required=True)
    args = p.parse_args(argv)
    if args.job == "prepare":
        info = prepare(_read_config(args.config_json), args.stamp)
        print(f"prepared {info['dataset']} at {info['size']} px: {info['n_images']} images ({info['seconds']} s)")
    elif args.job == "train-fold":
        train_fold(_read_config(args.config_json), args.run_dir, args.fold, args.threads)
    else:
        out = merge(args.run_dir, args.k)
        print(f"{args.run_dir}: {out['folds']} folds merged; {out['convergence']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
