"""Does ``torch.compile`` speed up the CPU fast path? Eager against compiled, one process.

Usage: .venv/bin/python benchmarks/bench_compile.py [--model mtl_oca] [--threads 2] [--rounds 4]

Builds two identical models on the engine's CPU fast path (bf16 autocast + channels-last,
``prepare_memory_format``), compiles one with ``torch.compile`` (inductor, default mode;
needs a C++ compiler), and times ``train.train_step`` on both, alternating, 5 steps per
round (``cpu`` profile, 128x128, batch 16). Prints the compile time and images/s per round.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtloca_lib.benchmark import _batch
from mtloca_lib.channels_last import prepare_memory_format
from mtloca_lib.config import make_config
from mtloca_lib.losses import MultiTaskLoss
from mtloca_lib.train import build_for_run, train_step


def trainer(cfg, compiled: bool):
    torch.manual_seed(0)
    model = prepare_memory_format(build_for_run(cfg, 3), True, torch.device("cpu")).train()
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = MultiTaskLoss(**cfg.loss)
    x, y, labels = _batch(cfg, 16, torch.device("cpu"))
    net = torch.compile(model) if compiled else model
    return lambda: train_step(net, optim, loss_fn, x, y, labels, torch.bfloat16, True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mtl_oca")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = make_config(args.model, "cpu", {"size": 128, "batch_size": 16})
    eager = trainer(cfg, False)
    t0 = time.perf_counter()
    compiled = trainer(cfg, True)
    compiled()
    print(f"compile + first step: {time.perf_counter() - t0:.0f} s", flush=True)
    rates = {"eager": [], "compiled": []}
    for r in range(args.rounds):
        for name, fn in (("eager", eager), ("compiled", compiled)):
            fn()
            t0 = time.perf_counter()
            for _ in range(5):
                fn()
            rates[name].append(80 / (time.perf_counter() - t0))
            print(f"round {r} {name}: {rates[name][-1]:.1f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"median: eager {med['eager']:.1f}, compiled {med['compiled']:.1f} images/s "
          f"(compiled / eager {med['compiled'] / med['eager']:.2f})")


if __name__ == "__main__":
    main()
