"""The benchmark's replica rows alone (k replicas in one step, vmapped and looped, against k separate steps).

    .venv/bin/python benchmarks/bench_replicas.py [--threads 1] [--replicas 3] [--rounds 5]

Prints the three rows of :func:`mtloca_lib.perf.benchmark_replicas.replica_rows` (what
``mtloca benchmark`` includes in its table), for a quick measurement while other jobs run:
compare only the ratios of one run.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mtloca_lib.perf.benchmark import FULL, engine_paths, train_step_flops  # noqa: E402
from mtloca_lib.perf.benchmark_replicas import replica_rows  # noqa: E402
from mtloca_lib.config.run_config import make_config  # noqa: E402
from mtloca_lib.training.loop import select_device  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = select_device(args.device)
    _, fast = engine_paths(dev)
    sizes = replace(FULL, replicas=args.replicas, rounds=args.rounds)
    cfg = make_config("mtl_oca", sizes.profile, {"size": sizes.size, "batch_size": sizes.batch})
    rows: list[dict] = []
    t0 = time.perf_counter()
    replica_rows(sizes, dev, fast, train_step_flops(cfg, dev, sizes.batch) / 1e9,
                 lambda gflops: (float("nan"), float("nan")), lambda **kw: rows.append(kw), print)
    for r in rows:
        print(f"{r['path']:14s} {r['images_per_s']:8.2f} images/s  x{r['speedup_vs_plain']:.2f}  {r['setting']}")
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
