"""Does ``torch.compile`` speed up the CPU fast path? Eager against compiled, one process.

Usage: .venv/bin/python benchmarks/bench_compile.py [--model mtl_oca] [--threads 2] [--rounds 4]

Builds two identical models on the engine's fast path (on this CPU bf16 autocast + channels-last,
``benchmark.make_trainer``), compiles one with ``torch.compile`` (inductor, default mode;
needs a C++ compiler), and times ``train.train_step`` on both, alternating, 5 steps per
round (``cpu`` profile, 128x128, batch 16). Prints the compile time and images/s per round.
"""
from __future__ import annotations

import statistics
import time

import torch

from _cli import fast_trainer, step_parser


def main() -> None:
    args = step_parser(__doc__, rounds=4).parse_args()
    eager, _ = fast_trainer(args)
    t0 = time.perf_counter()
    compiled, _ = fast_trainer(args, wrap=torch.compile)
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
