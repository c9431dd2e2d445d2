"""What the step benchmarks in this folder share: their command line and their training step."""
from __future__ import annotations

import argparse

import torch

from mtloca_lib.perf.benchmark import PathSpec, engine_paths, make_trainer
from mtloca_lib.config.run_config import make_config


def step_parser(doc: str, **extra: int) -> argparse.ArgumentParser:
    """``--model`` and ``--threads``, plus one integer option per ``extra`` name (its default)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", default="mtl_oca", help="model preset (default mtl_oca)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    for name, default in extra.items():
        ap.add_argument(f"--{name}", type=int, default=default, help=f"default {default}")
    return ap


def fast_trainer(args: argparse.Namespace, wrap=None) -> tuple:
    """Set torch's thread count from ``args``; return (one training step on the engine's fast
    path of ``args.model``, ``cpu`` profile, 128x128, batch 16, on the CPU; that path).

    ``wrap`` goes to :func:`mtloca_lib.perf.benchmark.make_trainer` (e.g. ``torch.compile``).
    """
    torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    cfg = make_config(args.model, "cpu", {"size": 128, "batch_size": 16})
    fast: PathSpec = engine_paths(dev)[1]
    step, _ = make_trainer(cfg, fast, dev, 16, wrap=wrap)
    return step, fast
