"""Throughput of the training input pipeline on CPU: cached arrays -> augmentation -> derivative.

Usage: .venv/bin/python benchmarks/bench_augment.py [--batch 16] [--size 128] [--seconds 5] [--threads 1,2]

Loads the prepared phantom (from the cache after the first run), then repeatedly
takes a random batch, converts it to tensors, runs ``augment_then_input`` and
reports images per second for each torch thread count asked for (default: 1 and
torch's default). Numbers on a shared machine are noisy; on a loaded 2-core
machine one thread is often faster than two.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from mtloca_lib.data.augment import augment_then_input
from mtloca_lib.data.datasets import load_prepared
from mtloca_lib.data.preprocess import DEFAULT_SIGMA


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}",
                        help="comma-separated torch thread counts to measure")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA)
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = load_prepared("phantom", size=args.size)
    print(f"load_prepared('phantom', size={args.size}): {time.perf_counter() - t0:.2f} s, {len(data)} images")
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}")

    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = rng.choice(len(data), args.batch, replace=False)
        images = torch.from_numpy(data.images[idx]).unsqueeze(1)
        masks = torch.from_numpy(data.masks[idx])
        augment_then_input(images, masks, generator, sigma=args.sigma)

    for threads in sorted({int(t) for t in args.threads.split(",")}):
        torch.set_num_threads(threads)
        for _ in range(5):  # warm-up
            step()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            step()
            n += args.batch
        elapsed = time.perf_counter() - t0
        print(f"{threads} torch thread(s): augment + derivative, batch {args.batch}, {args.size}x{args.size}: "
              f"{n / elapsed:.0f} images/s ({1000 * elapsed / (n / args.batch):.1f} ms per batch)")


if __name__ == "__main__":
    main()
