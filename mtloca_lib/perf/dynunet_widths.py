"""DynUNet's width against MTL-OCA's cost: the study behind the ``dynunet`` preset's filters (issue 41).

``python -m mtloca_lib.perf.benchmark --dynunet-widths`` runs it: training images/s of MTL-OCA and
of DynUNet at several base filter widths on the CPU recipe, interleaved in one process so that the
machine's load hits every trainer alike, written to ``dynunet_widths.csv`` / ``dynunet_widths.md``.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from mtloca_lib.config.presets import MODEL_PRESETS
from mtloca_lib.config.run_config import make_config
from mtloca_lib.models.dynunet import NNUNET_BASE_FILTERS, nnunet_plan_2d
from mtloca_lib.perf.benchmark_output import fmt, load_str
from mtloca_lib.perf.roofline import interleaved
from mtloca_lib.perf.steps import (
    engine_paths,
    make_trainer,
    train_step_flops,
)
from mtloca_lib.runio import atomic_write_text, environment_info, git_commit, write_csv

#: Base filters the width study times: stage i gets ``min(base * 2**i, 512)``; 32 is nnU-Net's own.
WIDTH_BASES = (8, 12, 16, 24, NNUNET_BASE_FILTERS)


def dynunet_widths(bases: tuple[int, ...] = WIDTH_BASES, threads: tuple[int, ...] = (1, 2), rounds: int = 7,
                   log: Callable[[str], None] = print) -> tuple[pd.DataFrame, dict]:
    """Training images/s of MTL-OCA and of DynUNet at each base width, on the CPU recipe, interleaved.

    MTL-OCA trains under the profile of record (``cpu_light60``), DynUNet under its own
    (``cpu_light60_dice``: nnU-Net's loss), each at its profile's size and batch on the engine's
    fast path, and every (model, thread count) trainer takes one step in every round, so a change
    in machine load hits all alike. Both profiles train the same epochs on the same data, so
    ``cost_x_mtl_oca`` (the median over rounds of the model's step time over MTL-OCA's in the same
    round, at the same thread count: a ratio of neighbours in time, robust to a load that drifts) is
    the cost of a 5-fold run relative to MTL-OCA's.

    Returns:
        (table, metadata): one row per model and thread count (``model``, ``filters``,
        ``threads``, ``batch``, ``images_per_s`` (median over rounds), ``images_per_s_best``,
        ``cost_x_mtl_oca``, ``gflop_per_step``, ``params_M``, ``rounds``); the metadata names
        the machine and the load averages at the start and the end.
    """
    dev = torch.device("cpu")
    _, fast = engine_paths(dev)
    default_threads = torch.get_num_threads()
    meta = {"environment": environment_info(str(dev)), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "path": fast.describe(), "rounds": rounds, "bases": list(bases), "threads": list(threads),
            "git": git_commit()}
    configs = {"mtl_oca": make_config("mtl_oca", "cpu_light60")}
    for base in bases:
        filters = list(nnunet_plan_2d(configs["mtl_oca"].size, base_filters=base).filters)
        configs[f"dynunet_{base}"] = make_config({**MODEL_PRESETS["dynunet"], "filters": filters}, "cpu_light60_dice")
    fns, before, info = {}, {}, {}
    for name, cfg in configs.items():
        step, model = make_trainer(cfg, fast, dev, cfg.batch_size)
        info[name] = {"filters": "-".join(str(w) for w in cfg.model.get("filters", cfg.model.get("widths", []))),
                      "batch": cfg.batch_size, "gflop_per_step": round(train_step_flops(cfg, dev, cfg.batch_size) / 1e9, 2),
                      "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}
        for t in threads:
            torch.set_num_threads(t)
            step()  # warm-up at this thread count
            fns[f"{name}@{t}"] = step
            before[f"{name}@{t}"] = lambda t=t: torch.set_num_threads(t)
    log(f"DynUNet widths: {', '.join(fns)}, {rounds} rounds ...")
    times = interleaved(fns, rounds, dev, before)
    torch.set_num_threads(default_threads)
    med = {k: statistics.median(info[k.split("@")[0]]["batch"] / t for t in ts) for k, ts in times.items()}
    rows = []
    for t in threads:
        for name in configs:
            key, batch = f"{name}@{t}", info[name]["batch"]
            rows.append({"model": name, "filters": info[name]["filters"], "threads": t, "batch": batch,
                         "images_per_s": round(med[key], 2),
                         "images_per_s_best": round(max(batch / x for x in times[key]), 2),
                         "cost_x_mtl_oca": round(statistics.median(
                             a / b for a, b in zip(times[key], times[f"mtl_oca@{t}"])), 2),
                         "gflop_per_step": info[name]["gflop_per_step"], "params_M": info[name]["params_M"],
                         "rounds": len(times[key])})
    meta["load_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return pd.DataFrame(rows), meta


def write_widths(df: pd.DataFrame, meta: dict, out: Path) -> dict[str, Path]:
    """``dynunet_widths.csv`` and ``dynunet_widths.md`` (the table with the machine and the load) in ``out``."""
    out = Path(out)
    env = meta["environment"]
    paths = {"csv": out / "dynunet_widths.csv", "md": out / "dynunet_widths.md"}
    header = [
        "# DynUNet's width against MTL-OCA's cost", "",
        f"Generated by `python -m mtloca_lib.perf.benchmark --dynunet-widths --bases {' '.join(map(str, meta['bases']))} "
        f"--threads {' '.join(map(str, meta['threads']))} --rounds {meta['rounds']}` on {meta['started']} "
        f"(git commit {meta.get('git', {}).get('commit', '?')}).", "",
        f"- machine: {env['cpu']}, {env['cpu_count']} logical CPUs, torch {env['packages'].get('torch')}; "
        f"path: {meta['path']}",
        f"- load average (1, 5, 15 min): start {load_str(meta.get('load_start'))}, end {load_str(meta.get('load_end'))}"
        " (other processes' CPU time lowers every rate alike; the ratios of one run stay fair)",
        f"- {meta['rounds']} interleaved rounds, one training step per trainer per round; images/s are medians; "
        "`cost_x_mtl_oca` = median over rounds of the model's step time / MTL-OCA's in the same round, same thread count", "",
        "| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|",
    ]
    body = ["| " + " | ".join(fmt(v) for v in r) + " |" for r in df.itertuples(index=False)]
    write_csv(paths["csv"], df)
    atomic_write_text(paths["md"], "\n".join(header + body) + "\n")
    return paths
