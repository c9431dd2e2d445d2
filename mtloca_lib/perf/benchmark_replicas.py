"""The benchmark's replica rows: k folds in one step against k separate steps.

Four ways to make one optimiser step for each of k MTL-OCA replicas, timed in
interleaved rounds in the same run as the other rows of :mod:`mtloca_lib.perf.benchmark`:

- ``separate_fast``: k ordinary steps on the engine's default path (what a run does
  with ``replicas=1``): the reference of the ``speedup_vs_plain`` column;
- ``separate_nchw``: k ordinary steps in the precision and layout vmapped replicas run in
  (NCHW; fp32 on a CPU, see :func:`mtloca_lib.training.replicas.replica_amp_dtype`), which
  tells batching's share apart from the precision's and the layout's;
- ``replicas_vmap``: one step of :func:`mtloca_lib.training.replicas.replica_step` over
  stacked weights, mapped by ``vmap`` (the CUDA mapping);
- ``replicas_loop``: the same step mapped by a loop over the stacked weights' slices, on
  the engine's fast path (the CPU mapping).

``replicas`` in the summary is the row of the device's own mapping
(:func:`mtloca_lib.training.replicas.replica_mapping`). Images/s counts all k replicas'
images. The roofline columns use the fraction of the matrix-multiply peak measured in the
same run, for the dtype the step runs in.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import statistics
from typing import Callable

import torch

from mtloca_lib.config.run_config import make_config
from mtloca_lib.models.losses import MultiTaskLoss
from mtloca_lib.perf.roofline import interleaved
from mtloca_lib.perf.steps import BenchSizes, PathSpec, make_batch, make_trainer
from mtloca_lib.training.channels_last import prepare_memory_format
from mtloca_lib.training.loop import build_for_run
from mtloca_lib.training.replicas import StackedReplicas, replica_amp_dtype, replica_step


def replica_rows(sizes: BenchSizes, device: torch.device, fast: PathSpec, gflop_per_step: float,
                 roof: Callable[[float], tuple[float, float]], row: Callable[..., dict],
                 log: Callable[[str], None]) -> None:
    """Time the three ways and add one row each through ``row`` (the benchmark's row maker)."""

    k, b = sizes.replicas, sizes.batch
    cfg = make_config("mtl_oca", sizes.profile, {"size": sizes.size, "batch_size": b})
    vmap_dtype = replica_amp_dtype(fast.amp_dtype, device, "vmap")
    nchw = PathSpec("separate_nchw", vmap_dtype, False)
    loop_path = PathSpec("replicas_loop", replica_amp_dtype(fast.amp_dtype, device, "loop"), fast.channels_last)
    steps = {"separate_fast": [make_trainer(cfg, fast, device, b)[0] for _ in range(k)],
             "separate_nchw": [make_trainer(cfg, nchw, device, b)[0] for _ in range(k)]}
    batches = [make_batch(cfg, b, device, seed=i) for i in range(k)]
    x = torch.stack([bt[0] for bt in batches])
    masks, labels = [bt[1] for bt in batches], [bt[2] for bt in batches]

    def stacked_step(mapping: str, channels_last: bool, amp_dtype):
        models = []
        for i in range(k):
            torch.manual_seed(i)
            models.append(prepare_memory_format(build_for_run(cfg, 3).to(device), channels_last, device).train())
        stack = StackedReplicas(models, mapping=mapping)
        optim = torch.optim.Adam(stack.parameters(), lr=cfg.lr)
        loss_fns = [MultiTaskLoss(**cfg.loss) for _ in range(k)]
        return lambda: replica_step(stack, optim, loss_fns, x, masks, labels, amp_dtype)

    fns = {name: (lambda s=s: [step() for step in s]) for name, s in steps.items()}
    fns["replicas_vmap"] = stacked_step("vmap", False, vmap_dtype)
    fns["replicas_loop"] = stacked_step("loop", loop_path.channels_last, loop_path.amp_dtype)
    for fn in fns.values():
        for _ in range(sizes.warmup_steps):
            fn()
    log(f"replicas: {k} x mtl_oca ({cfg.size}x{cfg.size}, batch {b}): {', '.join(fns)} ...")
    times = interleaved(fns, sizes.rounds, device)
    rates = {name: [k * b / t for t in ts] for name, ts in times.items()}
    med = {name: statistics.median(r) for name, r in rates.items()}
    settings = {"separate_fast": f"{k} separate steps, {fast.describe()}",
                "separate_nchw": f"{k} separate steps, {nchw.describe()}",
                "replicas_vmap": f"one vmapped step of {k} stacked replicas, {nchw.describe()}",
                "replicas_loop": f"one step of {k} stacked replicas mapped by a loop, {loop_path.describe()}"}
    for name, r in rates.items():
        achieved = gflop_per_step * med[name] / b
        r32, r16 = roof(achieved)  # the summary reads the column of the dtype each path runs in
        row(section="replicas", model="mtl_oca", path=name,
            setting=settings[name] + f", {torch.get_num_threads()} torch threads", batch=b,
            images_per_s=round(med[name], 2), images_per_s_best=round(max(r), 2),
            ms_per_batch=round(1000 * k * b / med[name], 1),
            speedup_vs_plain=round(med[name] / med["separate_fast"], 2),
            gflop_per_step=round(gflop_per_step * k, 2), achieved_gflops=round(achieved, 1),
            roofline_fp32_pct=r32, roofline_bf16_pct=r16, rounds=len(r))
