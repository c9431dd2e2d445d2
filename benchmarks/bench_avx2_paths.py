"""Which training path is fastest on a CPU without bf16 units? Measured by capping this CPU to AVX2.

Usage: .venv/bin/python benchmarks/bench_avx2_paths.py [--isa avx2|native] [--threads 2]
           [--rounds 4] [--compile] [--out FILE.json]

With ``--isa avx2`` (the default) the script runs itself again with ``ATEN_CPU_CAPABILITY=avx2``
(PyTorch's own kernels) and ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's convolutions and matrix
products), so a CPU with AVX-512 and bf16 units behaves as an AVX2-only one: the engine's
``auto`` choice (``mtloca_lib.hardware``) then falls back to fp32, as it does there. It times
one MTL-OCA training step (``cpu`` profile, 128x128, batch 16, ``train.train_step``) on each
path, round-robin, 5 steps a turn (1 for bf16 where it is emulated), and reports the median images/s and the ratio to the fp32
NCHW path of the same run:

- ``fp32_nchw``: fp32, standard layout (what ``auto`` picks without bf16 units);
- ``fp32_channels_last``: fp32, channels-last (oneDNN's blocked convolutions);
- ``bf16_channels_last``: bf16 autocast + channels-last (emulated without bf16 units);
- ``fp32_nchw_compiled``: fp32 NCHW under ``torch.compile`` (inductor; ``--compile``).

Plus square 1024x1024 matrix products in fp32 and bf16 (GFLOP/s). ``--isa native`` measures the
same paths uncapped, for comparison. Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CAPPED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def measure(args) -> dict:
    import torch

    from mtloca_lib import hardware
    from mtloca_lib.perf.benchmark import PathSpec, engine_paths, make_trainer
    from mtloca_lib.config.run_config import make_config
    from mtloca_lib.perf.roofline import matmul_peak
    from mtloca_lib.runio import environment_info

    torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    cfg = make_config(args.model, "cpu", {"size": 128, "batch_size": 16})
    paths = [PathSpec("fp32_nchw", None, False), PathSpec("fp32_channels_last", None, True),
             PathSpec("bf16_channels_last", torch.bfloat16, True)]
    steps = {p.name: make_trainer(cfg, p, dev, 16)[0] for p in paths}
    compile_s = None
    if args.compile:
        t0 = time.perf_counter()
        compiled = make_trainer(cfg, paths[0], dev, 16, wrap=torch.compile)[0]
        compiled()
        compile_s = round(time.perf_counter() - t0, 1)
        steps["fp32_nchw_compiled"] = compiled
    emulated_bf16 = not hardware.cpu_has_fast_bf16()

    def steps_per_turn(name: str) -> int:  # emulated bf16 runs near 1 image/s: one step a turn
        return 1 if emulated_bf16 and name.startswith("bf16") else 5

    rates: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            fn, n = steps[name], steps_per_turn(name)
            fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            rates[name].append(16 * n / (time.perf_counter() - t0))
            print(f"round {r} {name}: {rates[name][-1]:.1f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    auto = engine_paths(dev)[1]
    return {
        "isa": args.isa, "threads": args.threads, "model": args.model,
        "env": {k: os.environ.get(k) for k in CAPPED_ENV},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "engine_auto_path": auto.describe(), "fast_matmul_dtype": str(hardware.fast_matmul_dtype()),
        "images_per_s": {k: round(v, 2) for k, v in med.items()},
        "x_fp32_nchw": {k: round(v / med["fp32_nchw"], 2) for k, v in med.items()},
        "compile_seconds": compile_s,
        "matmul_gflops": {k: round(v["best"], 1) for k, v in matmul_peak(dev, 1024, 0.2, 3).items()},
        "load_end": os.getloadavg(), "machine": environment_info(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", choices=("avx2", "native"), default="avx2")
    ap.add_argument("--model", default="mtl_oca")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--compile", action="store_true", help="also time fp32 NCHW under torch.compile")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args()
    if args.isa == "avx2" and any(os.environ.get(k) != v for k, v in CAPPED_ENV.items()):
        # the caps are read when torch loads: run again in a process that has them from the start
        env = {**os.environ, **CAPPED_ENV}
        sys.exit(subprocess.call([sys.executable, *sys.argv], env=env))
    result = measure(args)
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
