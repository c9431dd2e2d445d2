"""Training cost on this machine: throughput of the engine's paths against a measured roofline.

``mtloca benchmark`` (or ``python -m mtloca_lib.perf.benchmark``) measures, in one
process and one run:

- the machine's matrix-multiply peak in fp32 and bf16 (square ``torch.mm``);
- training throughput (images/s) of MTL-OCA, UNet (ST), MT-DUNet and DynUNet (nnU-Net's
  network, the reference model) in the ``cpu`` profile (128x128, batch 16) on two paths,
  timed in interleaved rounds so that a change in machine load hits both alike:

  - ``plain``: fp32, eager, standard (NCHW) layout;
  - ``fast``: what the engine does by default on this device
    (:func:`mtloca_lib.training.loop.autocast_dtype` and
    :func:`mtloca_lib.training.loop.use_channels_last` with ``"auto"``), through the
    engine's own :func:`mtloca_lib.training.loop.train_step`;

- FLOPs per training step (``FlopCounterMode`` over forward + backward:
  convolutions and matrix products, 2 x multiply-adds) and the fraction of the
  fp32 and bf16 matrix-multiply rooflines each path reaches;
- inference (MTL-OCA): latency for one image and throughput at batch 16;
- the data pipeline: reading the prepared arrays from the cache, and per batch
  indexing + the paper's augmentation + the derivative channel, at one torch
  thread and at torch's default;
- peak memory: the process's resident-set high-water mark after each
  measurement (on CUDA also ``torch.cuda.max_memory_allocated`` per path).

Every row carries the 1-minute load average at its end. It writes
``benchmark.csv``, ``benchmark.md`` and ``benchmark.json`` (machine, load,
settings) into ``--out`` (``benchmark_quick.*`` with ``--quick``, the tiny
sizes the tests use).

``python -m mtloca_lib.perf.benchmark --dynunet-widths`` runs DynUNet's width study instead
(:mod:`mtloca_lib.perf.dynunet_widths`): training images/s of MTL-OCA and of DynUNet at several filter widths,
each on its own CPU recipe (profiles ``cpu_light60`` and ``cpu_light60_dice``, batch 8), at one and
two torch threads, every trainer timed in every round; the cost of a 5-fold run relative to
MTL-OCA's is the ratio of their rates (same epochs, same data). Written to ``dynunet_widths.csv`` /
``dynunet_widths.md``.

``python -m mtloca_lib.perf.benchmark --convergence`` runs the convergence check
instead: a short cross-validation run of the plain path and of the fast path
(and of the plain path with another seed, the noise reference) on the phantom,
written to ``convergence.csv`` / ``convergence.md``.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from mtloca_lib.config.run_config import make_config
from mtloca_lib.perf.benchmark_convergence import convergence
from mtloca_lib.perf.benchmark_output import COLUMNS, print_table, write_results
from mtloca_lib.perf.benchmark_pipeline import detector_row, pipeline_rows
from mtloca_lib.perf.benchmark_replicas import replica_rows
from mtloca_lib.perf.dynunet_widths import WIDTH_BASES, dynunet_widths, write_widths
from mtloca_lib.perf.roofline import cuda_peak_mib, cuda_peak_reset, interleaved, load1, matmul_peak, rss_peak_mib
from mtloca_lib.perf.steps import (
    FULL,
    ONE_THREAD_MODELS,
    QUICK,
    BenchSizes,
    bench_config,
    engine_paths,
    make_trainer,
    train_step_flops,
)
from mtloca_lib.runio import environment_info, git_commit
from mtloca_lib.training.loop import (
    build_for_run,
    prepare_memory_format,
    select_device,
)
from mtloca_lib.training.replicas import replica_mapping

#: Where ``mtloca benchmark`` writes its tables unless told otherwise.
DEFAULT_OUT = Path("docs/benchmark_results")


# ---------------------------------------------------------------- the run
def run_benchmark(quick: bool = False, device: str = "auto", sizes: BenchSizes | None = None,
                  log: Callable[[str], None] = print) -> tuple[pd.DataFrame, dict]:
    """Measure everything; return the table and the run's metadata (machine, load, settings)."""
    sizes = sizes or (QUICK if quick else FULL)
    dev = select_device(device)
    default_threads = torch.get_num_threads()
    t_start = time.perf_counter()
    meta = {
        "quick": quick,
        "sizes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(sizes).items()},
        "environment": environment_info(str(dev)),
        "load_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git": git_commit(),
    }
    plain, fast = engine_paths(dev)
    meta["paths"] = {"plain": plain.describe(), "fast": fast.describe()}
    rows: list[dict] = []

    def row(**kw):
        r = {c: kw.get(c, float("nan")) for c in COLUMNS}
        r["rss_peak_mib"] = rss_peak_mib()
        r["load1"] = load1()
        rows.append(r)
        return r

    # 1. roofline
    log(f"matmul peak ({sizes.matmul_n}x{sizes.matmul_n}) ...")
    peaks = matmul_peak(dev, sizes.matmul_n, sizes.matmul_seconds, sizes.rounds)
    for name, p in peaks.items():
        row(section="matmul", model="-", path=name,
            setting=(f"torch.mm {sizes.matmul_n}x{sizes.matmul_n}, {name.split('_')[0]}, "
                     f"{'1 torch thread' if name.endswith('_1thread') else str(torch.get_num_threads()) + ' torch threads'}"
                     f"; best sample {p['best']:.0f} GFLOP/s"),
            achieved_gflops=round(p["median"], 1), rounds=p["rounds"])
    # the roofline uses the best sample: the machine's capability when not disturbed
    peak32 = max(v["best"] for k, v in peaks.items() if k.startswith("fp32"))
    peak16 = max(v["best"] for k, v in peaks.items() if k.startswith("bf16"))
    meta["matmul_peak_gflops"] = {"fp32": round(peak32, 1), "bf16": round(peak16, 1)}
    meta["matmul_samples_gflops"] = {k: {"best": round(v["best"], 1), "median": round(v["median"], 1)}
                                     for k, v in peaks.items()}

    def roof(gflops: float) -> tuple[float, float]:
        return round(100 * gflops / peak32, 1), round(100 * gflops / peak16, 1)

    # 2. training
    train_rates: dict[str, dict[str, float]] = {}
    for model_name in sizes.models:
        cfg = bench_config(model_name, sizes)
        gflop = train_step_flops(cfg, dev, sizes.batch) / 1e9
        fns, peaks_mem = {}, {}
        specs = {"plain": plain, "fast": fast}
        for name, spec in specs.items():
            cuda_peak_reset(dev)
            step, _ = make_trainer(cfg, spec, dev, sizes.batch)
            for _ in range(sizes.warmup_steps):
                step()
            peaks_mem[name] = cuda_peak_mib(dev)
            fns[name] = (lambda s=step: [s() for _ in range(sizes.steps_per_round)])
        before = {}
        if sizes.one_thread and model_name in ONE_THREAD_MODELS and dev.type == "cpu" and default_threads > 1:
            for name in ("plain", "fast"):  # the same trainers, at one torch thread
                fns[f"{name}_1thread"] = fns[name]
                specs[f"{name}_1thread"] = specs[name]
                before[name] = lambda: torch.set_num_threads(default_threads)
                before[f"{name}_1thread"] = lambda: torch.set_num_threads(1)
        log(f"training {model_name} ({cfg.size}x{cfg.size}, batch {sizes.batch}): {', '.join(fns)} ...")
        times = interleaved(fns, sizes.rounds, dev, before)
        torch.set_num_threads(default_threads)
        rates = {k: [sizes.batch * sizes.steps_per_round / t for t in ts] for k, ts in times.items()}
        med = {k: statistics.median(v) for k, v in rates.items()}
        train_rates[model_name] = med
        for name, r in rates.items():
            m = med[name]
            achieved = gflop * m / sizes.batch
            r32, r16 = roof(achieved)
            spec = specs[name]
            one = name.endswith("_1thread")
            setting = spec.describe() + (", 1 torch thread" if one else f", {torch.get_num_threads()} torch threads")
            ref = med["plain_1thread" if one else "plain"]  # speed-up at the same thread count
            row(section="train", model=model_name, path=name, setting=setting, batch=sizes.batch,
                images_per_s=round(m, 2), images_per_s_best=round(max(r), 2),
                ms_per_batch=round(1000 * sizes.batch / m, 1),
                speedup_vs_plain=round(m / ref, 2), gflop_per_step=round(gflop, 2),
                achieved_gflops=round(achieved, 1), roofline_fp32_pct=r32, roofline_bf16_pct=r16,
                cuda_peak_mib=peaks_mem.get(name.replace("_1thread", ""), float("nan")),
                rounds=len(r))

    # 2b. k replicas in one step (vmapped, and looped) against k separate steps (training/replicas.py)
    if sizes.replicas > 1 and "mtl_oca" in sizes.models:

        cfg = make_config("mtl_oca", sizes.profile, {"size": sizes.size, "batch_size": sizes.batch})
        replica_rows(sizes, dev, fast, train_step_flops(cfg, dev, sizes.batch) / 1e9, roof, row, log)

    # 3. inference (MTL-OCA)
    cfg = make_config("mtl_oca", sizes.profile, {"size": sizes.size, "batch_size": sizes.batch})
    fwd_gflop_img = None
    with torch.no_grad():
        torch.manual_seed(0)
        m0 = build_for_run(cfg, 3).eval()
        x1 = torch.rand(1, 2, cfg.size, cfg.size)
        with FlopCounterMode(display=False) as counter:
            m0(x1)
        fwd_gflop_img = counter.get_total_flops() / 1e9
    for batch, section in ((1, "infer_latency"), (sizes.batch, "infer_throughput")):
        fns, mem = {}, {}
        for spec in (plain, fast):
            torch.manual_seed(0)
            model = prepare_memory_format(build_for_run(cfg, 3).to(dev), spec.channels_last, dev).eval()
            x = torch.rand(batch, 2, cfg.size, cfg.size, device=dev)
            if spec.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            calls = sizes.infer_calls if batch == 1 else 1

            def run(model=model, x=x, spec=spec, calls=calls):
                with torch.no_grad(), (torch.autocast(dev.type, dtype=spec.amp_dtype)
                                       if spec.amp_dtype is not None else contextlib.nullcontext()):
                    for _ in range(calls):
                        model(x)
            cuda_peak_reset(dev)
            run()
            mem[spec.name] = cuda_peak_mib(dev)
            fns[spec.name] = run
        log(f"inference batch {batch} ...")
        times = interleaved(fns, sizes.rounds, dev)
        calls = sizes.infer_calls if batch == 1 else 1
        rates = {k: [batch * calls / t for t in ts] for k, ts in times.items()}
        med = {k: statistics.median(v) for k, v in rates.items()}
        for spec in (plain, fast):
            m = med[spec.name]
            achieved = fwd_gflop_img * m
            r32, r16 = roof(achieved)
            row(section=section, model="mtl_oca", path=spec.name, setting=spec.describe() + ", no_grad",
                batch=batch, images_per_s=round(m, 2), images_per_s_best=round(max(rates[spec.name]), 2),
                ms_per_batch=round(1000 * batch / m, 2), speedup_vs_plain=round(m / med["plain"], 2),
                gflop_per_step=round(fwd_gflop_img * batch, 3), achieved_gflops=round(achieved, 1),
                roofline_fp32_pct=r32, roofline_bf16_pct=r16, cuda_peak_mib=mem[spec.name],
                rounds=len(rates[spec.name]))

    # 4. data pipeline, and the near-duplicate detector (its coarse search's dtype follows the CPU)
    rows.extend(pipeline_rows(sizes, dev, default_threads, log))
    rows.append(detector_row(sizes, log))
    fast_train = train_rates.get("mtl_oca", {}).get("fast")
    if fast_train:
        for r in rows:
            if r["section"] == "pipeline" and r["path"] not in ("cache_read", "near_duplicates"):
                r["speedup_vs_plain"] = round(r["images_per_s"] / fast_train, 1)

    meta["load_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    meta["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    df = pd.DataFrame(rows, columns=COLUMNS)
    meta["summary"] = summarise(df, dev)
    return df, meta


def summarise(df: pd.DataFrame, device: torch.device | None = None) -> dict:
    """The headline numbers: fast/plain speed-up, roofline fraction, pipeline margin.

    ``device`` (default CPU) picks the replica row of the device's own mapping.
    """
    s: dict = {}
    tr = df[df.section == "train"]
    for model, g in tr.groupby("model", sort=False):
        p = g.set_index("path")
        # the fast path's roofline is that of the dtype it runs in: bf16 only where autocast is
        # on (on a CPU without bf16 units the bf16 "peak" is an emulation and means nothing)
        fast_bf16 = "bf16" in str(p.loc["fast", "setting"])
        s[model] = {
            "plain_images_per_s": float(p.loc["plain", "images_per_s"]),
            "fast_images_per_s": float(p.loc["fast", "images_per_s"]),
            "speedup": float(p.loc["fast", "speedup_vs_plain"]),
            "fast_dtype": "bf16" if fast_bf16 else "fp32",
            "fast_roofline_native_pct": float(p.loc["fast", "roofline_bf16_pct" if fast_bf16 else "roofline_fp32_pct"]),
            "plain_roofline_fp32_pct": float(p.loc["plain", "roofline_fp32_pct"]),
        }
    pipe = df[(df.section == "pipeline") & ~df.path.isin(["cache_read", "near_duplicates"])]
    if len(pipe) and "mtl_oca" in s:
        best = pipe.loc[pipe.images_per_s.idxmax()]
        s["pipeline"] = {"best_setting": best.path, "images_per_s": float(best.images_per_s),
                         "x_fast_training": round(float(best.images_per_s) / s["mtl_oca"]["fast_images_per_s"], 1)}
    rep = df[df.section == "replicas"].set_index("path")
    if len(rep):
        mapping = replica_mapping(device or torch.device("cpu"))
        own = f"replicas_{mapping}"
        s["replicas"] = {"mapping": mapping, "images_per_s": float(rep.loc[own, "images_per_s"]),
                         "separate_images_per_s": float(rep.loc["separate_fast", "images_per_s"]),
                         "x_separate": float(rep.loc[own, "speedup_vs_plain"])}
    det = df[(df.section == "pipeline") & (df.path == "near_duplicates")]
    if len(det):
        r = det.iloc[0]
        s["near_duplicates"] = {"images": int(r.batch), "seconds": round(float(r.ms_per_batch) / 1000, 2),
                                "dtype": "bf16" if "in bfloat16" in str(r.setting) else "fp32"}
    return s


# ---------------------------------------------------------------- entry points
def main(args=None) -> int:
    """Entry point for ``mtloca benchmark`` (an argparse Namespace with ``quick``, ``out``) or a list of strings."""
    if args is None or isinstance(args, (list, tuple)):
        args = build_parser().parse_args(args)
    quick = bool(getattr(args, "quick", False))
    out = Path(getattr(args, "out", None) or DEFAULT_OUT)
    device = getattr(args, "device", "auto") or "auto"
    if getattr(args, "dynunet_widths", False):
        df, meta = dynunet_widths(bases=tuple(getattr(args, "bases", None) or WIDTH_BASES),
                                  threads=tuple(getattr(args, "threads", None) or (1, 2)),
                                  rounds=getattr(args, "rounds", 7) or 7,
                                  log=lambda s: print(s, file=sys.stderr, flush=True))
        paths = write_widths(df, meta, out)
        print(df.to_string(index=False))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        return 0
    if getattr(args, "convergence", False):
        df = convergence(profile="smoke" if quick else getattr(args, "profile", "demo"),
                         epochs=getattr(args, "epochs", None), folds=getattr(args, "folds", None), out=out)
        print(df.to_string(index=False))
        return 0
    df, meta = run_benchmark(quick=quick, device=device, log=lambda s: print(s, file=sys.stderr, flush=True))
    paths = write_results(df, meta, out)
    print_table(df)
    for k, v in meta["summary"].items():
        print(f"{k}: {v}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtloca_lib.perf.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds (for tests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the results (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: %(default)s)")
    p.add_argument("--convergence", action="store_true",
                   help="run the plain-vs-fast convergence check instead (minutes)")
    p.add_argument("--dynunet-widths", action="store_true",
                   help="run DynUNet's width study against MTL-OCA's cost instead (minutes)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the width study (default: %(default)s)")
    p.add_argument("--bases", type=int, nargs="+", default=list(WIDTH_BASES),
                   help="base filters of the width study (default: %(default)s)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch thread counts of the width study (default: %(default)s)")
    p.add_argument("--profile", default="demo", help="profile of the convergence check (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the convergence check (default: the profile's)")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="folds of the convergence check (default: all)")
    return p


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
