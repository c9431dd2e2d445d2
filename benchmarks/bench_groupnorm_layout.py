"""A/B of the two ways the CPU fast path keeps GroupNorm off PyTorch's slow channels-last backward.

Usage: .venv/bin/python benchmarks/bench_groupnorm_layout.py [--models mtl_oca mt_dunet unet_st]
       [--threads 2 1] [--rounds 8] [--out docs/benchmark_results/groupnorm_layout_ab.json]

Times one engine training step (``train.train_step``, ``cpu`` profile, 128x128, batch 16)
on three paths, interleaved round by round in one process (median images/s over rounds):

- ``plain``: fp32, NCHW (the benchmark's plain path);
- ``copy_hooks``: bf16 autocast + channels-last, every GroupNorm wrapped in layout copies
  (NCHW copy in, channels-last copy out, the same two copies for the gradients): the
  engine's method until 2026-11-26, rebuilt here for the comparison;
- ``engine``: bf16 autocast + channels-last with ``channels_last.ChannelsLastGroupNorm``
  (what ``prepare_memory_format`` does now).

Writes a JSON with the rates, the machine (``runio.environment_info``) and the load.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from mtloca_lib.perf.benchmark import _batch
from mtloca_lib.training.channels_last import prepare_memory_format
from mtloca_lib.config.run_config import make_config
from mtloca_lib.models.losses import MultiTaskLoss
from mtloca_lib.runio import environment_info, git_commit
from mtloca_lib.training.loop import build_for_run, train_step

CL = torch.channels_last


class _ToNCHW(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t.contiguous()

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=CL)


class _ToCL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t.contiguous(memory_format=CL)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


def copy_hooks(model: nn.Module) -> nn.Module:
    """The previous method: GroupNorm on an NCHW copy, via forward hooks."""
    model = model.to(memory_format=CL)
    for mod in model.modules():
        if isinstance(mod, nn.GroupNorm):
            mod.register_forward_pre_hook(lambda m, a: (_ToNCHW.apply(a[0]),) if a[0].dim() == 4 else None)
            mod.register_forward_hook(lambda m, a, out: _ToCL.apply(out) if out.dim() == 4 else None)
    return model


def trainer(model_name: str, path: str):
    cfg = make_config(model_name, "cpu", {"size": 128, "batch_size": 16})
    torch.manual_seed(0)
    model = build_for_run(cfg, 3)
    amp, channels_last = (None, False) if path == "plain" else (torch.bfloat16, True)
    if path == "copy_hooks":
        model = copy_hooks(model)
    elif path == "engine":
        model = prepare_memory_format(model, True, torch.device("cpu"))
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = MultiTaskLoss(**cfg.loss)
    x, y, labels = _batch(cfg, 16, torch.device("cpu"))
    return lambda: train_step(model, optim, loss_fn, x, y, labels, amp, channels_last)


def measure(model_name: str, rounds: int, steps: int = 4) -> dict:
    fns = {p: trainer(model_name, p) for p in ("plain", "copy_hooks", "engine")}
    for fn in fns.values():
        fn(), fn()
    rates = {p: [] for p in fns}
    order = list(fns)
    for r in range(rounds):
        for p in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            for _ in range(steps):
                fns[p]()
            rates[p].append(16 * steps / (time.perf_counter() - t0))
    med = {p: statistics.median(v) for p, v in rates.items()}
    return {"median_images_per_s": {p: round(v, 2) for p, v in med.items()},
            "best_images_per_s": {p: round(max(v), 2) for p, v in rates.items()},
            "engine_over_copy_hooks": round(med["engine"] / med["copy_hooks"], 3),
            "engine_over_plain": round(med["engine"] / med["plain"], 3),
            "copy_hooks_over_plain": round(med["copy_hooks"] / med["plain"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mtl_oca", "mt_dunet", "unet_st"])
    ap.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t_start = time.perf_counter()
    result = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "git": git_commit(),
              "environment": environment_info("cpu"), "settings": vars(args) | {"out": str(args.out)},
              "load_start": list(os.getloadavg()), "rows": []}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.models:
            row = {"model": name, "threads": threads, **measure(name, args.rounds)}
            result["rows"].append(row)
            print(f"{name:9s} {threads} thread(s): " + ", ".join(
                f"{p} {v:.1f}" for p, v in row["median_images_per_s"].items())
                + f" images/s; engine / copy_hooks {row['engine_over_copy_hooks']:.3f}, "
                f"engine / plain {row['engine_over_plain']:.2f}", flush=True)
    result["load_end"] = list(os.getloadavg())
    result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
