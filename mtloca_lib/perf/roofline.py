"""Timing helpers and the matrix-multiply roofline of the benchmark (:mod:`mtloca_lib.perf.benchmark`).

:func:`interleaved` times several candidates in alternating rounds on the same device (so a
slow neighbour or a turbo change hits all of them alike); :func:`matmul_peak` measures the
machine's matrix-multiply peak in each dtype it runs natively (the roofline every
throughput is set against); small helpers read the load average, the peak memory and
synchronise CUDA.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from typing import Callable
import torch


# ---------------------------------------------------------------- helpers
def load1() -> float:
    """The 1-minute load average (nan where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return float("nan")

def rss_peak_mib() -> float:
    """The process's resident-set high-water mark so far, MiB (monotone: never goes down)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

def cuda_peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

def cuda_peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return float("nan")

def interleaved(fns: dict[str, Callable[[], None]], rounds: int, device: torch.device,
                before: dict[str, Callable[[], None]] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, timed round-robin (a, b, a, b, ...).

    Round-robin keeps the comparison fair on a shared machine: a burst of load
    from another process slows every path of that round, so per-path medians
    and ratios stay meaningful even when absolute numbers do not.

    Args:
        fns: name -> a callable doing one unit of work.
        rounds: number of rounds; each calls every function once.
        before: optional name -> setup called (untimed) before that function's turn
            (e.g. ``torch.set_num_threads``).

    Returns:
        name -> list of seconds, one per round.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]  # alternate who goes first
        for name in order:
            if before and name in before:
                before[name]()
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times

# ---------------------------------------------------------------- matmul roofline
def matmul_peak(device: torch.device, n: int, seconds: float, rounds: int) -> dict[str, dict]:
    """Measured matrix-multiply throughput, GFLOP/s, in fp32 and bf16 (best and median sample).

    Each sample multiplies two n x n matrices repeatedly for about ``seconds``;
    fp32 and bf16 samples are interleaved.
    """
    out = {}
    mats = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g).to(device, dtype)
        b = torch.randn(n, n, generator=g).to(device, dtype)
        for _ in range(3):
            torch.mm(a, b)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b)
        sync(device)
        reps = max(1, int(3 * seconds / max(time.perf_counter() - t0, 1e-6)))
        mats[name] = (a, b, reps)

    def runner(name):
        a, b, reps = mats[name]

        def run():
            for _ in range(reps):
                torch.mm(a, b)
        return run

    threads = torch.get_num_threads()
    fns, before = {}, {}
    for name in mats:
        fns[name] = runner(name)
        before[name] = lambda: torch.set_num_threads(threads)
        if device.type == "cpu" and threads > 1:
            fns[f"{name}_1thread"] = runner(name)
            before[f"{name}_1thread"] = lambda: torch.set_num_threads(1)
    times = interleaved(fns, max(rounds, 3), device, before)
    torch.set_num_threads(threads)
    for key, ts in times.items():
        reps = mats[key.split("_")[0]][2]
        rates = [2 * n**3 * reps / t / 1e9 for t in ts]
        out[key] = {"best": max(rates), "median": statistics.median(rates), "rounds": len(rates)}
    return out
