"""The benchmark's data-pipeline rows: augmentation, derivative, cache reads, the near-duplicate detector.

Each row times one stage of the data pipeline in the same run as the training rows of
:mod:`mtloca_lib.perf.benchmark` (the detector's coarse search in the dtype the CPU runs
natively).

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from mtloca_lib.data.augment import augment_then_input
from mtloca_lib.data.datasets import load_prepared, load_raw
from mtloca_lib.data.duplicates import find_near_duplicates
from mtloca_lib.hardware import fast_matmul_dtype
from mtloca_lib.perf.benchmark_output import COLUMNS
from mtloca_lib.perf.roofline import interleaved, load1, rss_peak_mib
from mtloca_lib.perf.steps import BenchSizes


def detector_row(sizes: BenchSizes, log: Callable[[str], None]) -> dict:
    """Wall time of the near-duplicate detector on phantom images at their native size.

    One timing (it is seconds to minutes), on the CPU, with the coarse-search dtype that
    :func:`mtloca_lib.hardware.fast_matmul_dtype` picks for this CPU.
    """
    raw = load_raw("phantom", n_per_class=sizes.detector_per_class)
    images = [c.image for c in raw.cases]
    dtype = str(fast_matmul_dtype("cpu")).replace("torch.", "")
    log(f"near-duplicate detector ({len(images)} images, coarse search in {dtype}) ...")
    t0 = time.perf_counter()
    find_near_duplicates(images, raw.case_ids, progress=False)
    wall = time.perf_counter() - t0
    r = {c: float("nan") for c in COLUMNS}
    r.update(section="pipeline", model="-", path="near_duplicates",
             setting=f"find_near_duplicates on {len(images)} phantom images (native size), coarse search in "
                     f"{dtype}, {torch.get_num_threads()} torch threads",
             batch=len(images), images_per_s=round(len(images) / wall, 2), ms_per_batch=round(1000 * wall, 1),
             rounds=1, rss_peak_mib=rss_peak_mib(), load1=load1())
    return r

def pipeline_rows(sizes: BenchSizes, dev: torch.device, default_threads: int,
                  log: Callable[[str], None]) -> list[dict]:
    """Cache read, then per batch: index the in-memory arrays + augment + derivative channel."""
    load_prepared("phantom", size=sizes.size, **sizes.phantom_kwargs)  # builds the cache entry once
    t0 = time.perf_counter()
    data = load_prepared("phantom", size=sizes.size, **sizes.phantom_kwargs)
    read_s = time.perf_counter() - t0
    n = len(data.labels)
    out = [{c: float("nan") for c in COLUMNS}]
    out[0].update(section="pipeline", model="-", path="cache_read",
                  setting=f"load_prepared('phantom', size={sizes.size}) from the cache, {n} images",
                  batch=n, images_per_s=round(n / read_s, 1), ms_per_batch=round(1000 * read_s, 1),
                  rss_peak_mib=rss_peak_mib(), load1=load1(), rounds=1)
    images = torch.from_numpy(data.images).unsqueeze(1).float().to(dev)
    masks = torch.from_numpy(data.masks).unsqueeze(1).float().to(dev)
    gen = torch.Generator().manual_seed(0)
    batch = min(sizes.batch, n)

    def run():
        for _ in range(sizes.pipeline_batches):
            idx = torch.randperm(n, generator=gen)[:batch].to(dev)
            augment_then_input(images[idx], masks[idx], gen)

    fns = {"1thread": run}
    before = {"1thread": lambda: torch.set_num_threads(1)}
    if default_threads > 1:
        fns[f"{default_threads}threads"] = run
        before[f"{default_threads}threads"] = lambda: torch.set_num_threads(default_threads)
    run()
    log("data pipeline ...")
    times = interleaved(fns, sizes.rounds, dev, before)
    torch.set_num_threads(default_threads)
    for name, ts in times.items():
        rates = [batch * sizes.pipeline_batches / t for t in ts]
        m = statistics.median(rates)
        r = {c: float("nan") for c in COLUMNS}
        r.update(section="pipeline", model="-", path=name,
                 setting=f"index + augment_then_input (rotate/flip/crop/contrast + derivative), "
                         f"{name.replace('thread', ' torch thread')}",
                 batch=batch, images_per_s=round(m, 1), images_per_s_best=round(max(rates), 1),
                 ms_per_batch=round(1000 * batch / m, 2), rounds=len(rates),
                 rss_peak_mib=rss_peak_mib(), load1=load1())
        out.append(r)
    return out
