"""What one timed training step is: the benchmark's sizes, the execution paths, a fixed batch, a trainer.

:class:`BenchSizes` says what a benchmark run measures (``FULL`` and the tests' ``QUICK``);
:class:`PathSpec` is an execution path (autocast dtype, memory format); :func:`bench_config` the
run config timed for a preset (a DynUNet fitted to the benchmark's size); :func:`make_trainer` is
a closure doing one engine training step on a path; :func:`train_step_flops` counts its FLOPs.
The benchmark's row builders (``benchmark``, ``benchmark_pipeline``, ``benchmark_replicas``) all
start from these.

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtloca_lib.config.run_config import RunConfig, make_config
from mtloca_lib.models.build import ModelConfig
from mtloca_lib.models.dynunet import nnunet_plan_2d
from mtloca_lib.models.losses import MultiTaskLoss
from mtloca_lib.training.loop import autocast_dtype, build_for_run, prepare_memory_format, train_step, use_channels_last

#: The models timed for training (keys of ``config.MODEL_PRESETS``); ``dynunet`` is the
#: nnU-Net reference, not one of the paper's models.
BENCH_MODELS = ("mtl_oca", "unet_st", "mt_dunet", "dynunet")
#: The models whose paths are also timed at one torch thread (``BenchSizes.one_thread``): MTL-OCA,
#: and DynUNet, whose cost is weighed against MTL-OCA's (the project's CPU runs use one thread).
ONE_THREAD_MODELS = ("mtl_oca", "dynunet")


@dataclass
class BenchSizes:
    """What one benchmark run measures and for how long."""

    profile: str = "cpu"
    size: int = 128
    batch: int = 16
    rounds: int = 5  # interleaved timing rounds per comparison
    steps_per_round: int = 2  # training steps per path per round
    warmup_steps: int = 2
    matmul_n: int = 1024
    matmul_seconds: float = 0.25  # per sample; best of ``rounds`` samples per dtype
    infer_calls: int = 10  # batch-1 calls per round
    pipeline_batches: int = 20  # per round and thread setting
    phantom_kwargs: dict = field(default_factory=dict)
    models: tuple[str, ...] = BENCH_MODELS
    one_thread: bool = True  # also time the paths of ONE_THREAD_MODELS at one torch thread
    detector_per_class: tuple[int, int, int] = (20, 50, 30)  # phantom images for the detector row
    replicas: int = 3  # folds in one vmapped step for the replica rows (0: no replica rows)


FULL = BenchSizes()
QUICK = BenchSizes(profile="smoke", size=32, batch=4, rounds=2, steps_per_round=1, warmup_steps=1,
                   matmul_n=128, matmul_seconds=0.02, infer_calls=2, pipeline_batches=2,
                   phantom_kwargs={"n_per_class": (2, 3, 3)}, one_thread=False,
                   detector_per_class=(2, 4, 3), replicas=2)


@dataclass
class PathSpec:
    """An execution path: autocast dtype and memory format."""

    name: str
    amp_dtype: torch.dtype | None
    channels_last: bool

    def describe(self) -> str:
        prec = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.amp_dtype]
        layout = "channels-last (GroupNorm backward on NCHW copies)" if self.channels_last else "NCHW"
        return f"{prec}, eager, {layout}"


def engine_paths(device: torch.device) -> tuple[PathSpec, PathSpec]:
    """The plain path and the engine's default ("auto") path on ``device``."""
    amp = autocast_dtype("auto", device)
    return (PathSpec("plain", None, False),
            PathSpec("fast", amp, use_channels_last("auto", device, amp)))


def bench_config(model: str, sizes: BenchSizes) -> RunConfig:
    """The run config timed for the preset ``model``: ``sizes.profile`` at ``sizes.size`` and ``sizes.batch``.

    A DynUNet keeps as many of its stages as nnU-Net's planner gives that size
    (:func:`~mtloca_lib.models.dynunet.nnunet_plan_2d`: all six at 128 px; the quick run's 32 px
    keeps four, whose bottleneck is 4x4 rather than a 1x1 map InstanceNorm cannot train on).
    """
    cfg = make_config(model, sizes.profile, {"size": sizes.size, "batch_size": sizes.batch})
    if cfg.model.get("arch") == "dynunet":
        filters = ModelConfig.from_dict(cfg.model).resolved_filters
        stages = len(nnunet_plan_2d(sizes.size).strides)
        if stages < len(filters):
            cfg.model["filters"] = list(filters[:stages])
            cfg.model["deep_supervision"] = min(int(cfg.model.get("deep_supervision", 0)), stages - 2)
    return cfg


def make_batch(cfg, batch: int, device: torch.device, seed: int = 0):
    """A fixed synthetic batch: inputs (B, C, S, S), masks (B, S, S), labels (B,)."""
    g = torch.Generator().manual_seed(seed)
    c = int(cfg.model.get("in_channels", 2))
    x = torch.rand(batch, c, cfg.size, cfg.size, generator=g)
    yy, xx = torch.meshgrid(torch.arange(cfg.size), torch.arange(cfg.size), indexing="ij")
    r = cfg.size / 4
    y = (((yy - cfg.size / 2) ** 2 + (xx - cfg.size / 2) ** 2) < r * r).long().expand(batch, -1, -1).clone()
    labels = torch.arange(batch) % 3
    return x.to(device), y.to(device), labels.to(device)


def make_trainer(cfg, path: PathSpec, device: torch.device, batch: int,
                 wrap: Callable[[torch.nn.Module], Callable] | None = None):
    """A closure doing one engine training step of ``cfg``'s model on ``path``.

    ``wrap`` (e.g. ``torch.compile``) turns the prepared model into what the step calls;
    the optimiser still holds the model's own parameters.
    """
    torch.manual_seed(0)
    model = build_for_run(cfg, 3).to(device)
    model = prepare_memory_format(model, path.channels_last, device)
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = MultiTaskLoss(**cfg.loss)
    x, y, labels = make_batch(cfg, batch, device)
    net = wrap(model) if wrap is not None else model

    def step():
        train_step(net, optim, loss_fn, x, y, labels, path.amp_dtype, path.channels_last)
    return step, model


def train_step_flops(cfg, device: torch.device, batch: int) -> int:
    """FLOPs of one training step (forward + backward, fp32), counted by ``FlopCounterMode``."""
    torch.manual_seed(0)
    model = build_for_run(cfg, 3).to(device).train()
    loss_fn = MultiTaskLoss(**cfg.loss)
    x, y, labels = make_batch(cfg, batch, device)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        loss, _ = loss_fn({k: v.float() for k, v in out.items()}, y, labels)
        loss.backward()
    return int(counter.get_total_flops())
