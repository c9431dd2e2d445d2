"""How a run executes on this machine: the device, the autocast dtype, the memory format, compiling,
seeding and whether progress bars are shown. None of these change what a run is meant to compute;
the fast paths were each measured against the plain one (``docs/benchmarks.md``).

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

from mtloca_lib.hardware import cpu_has_fast_bf16


def select_device(name: str = "auto") -> torch.device:
    """CUDA, then Apple MPS, then CPU for ``"auto"``; otherwise the named device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device='cpu'")
    return dev


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training, or None for plain fp32.

    ``"auto"`` enables bf16 only where it was measured faster (see docs/benchmarks.md):
    CUDA devices with bf16 support and CPUs with native bf16 units.
    """
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp != "auto":
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', not {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def use_channels_last(option: str, device: torch.device, amp_dtype: torch.dtype | None = None) -> bool:
    """Whether to train in channels-last memory format.

    ``"auto"`` turns it on where it was measured faster (docs/benchmarks.md): on
    CUDA, and on a CPU in bf16 autocast or in fp32 (there oneDNN's convolutions and
    the bilinear upsampling run faster channels-last: several times in bf16, x1.15-1.30
    in fp32, the latter measured on an AVX-512 CPU and on the same CPU capped to AVX2 by
    ``benchmarks/bench_avx2_paths.py``; GroupNorm's backward runs in the standard layout:
    :mod:`mtloca_lib.training.channels_last`). fp16 autocast on a CPU stays in NCHW (not measured).
    """
    if option == "on":
        return True
    if option == "off":
        return False
    if option != "auto":
        raise ValueError(f"channels_last must be 'auto', 'on' or 'off', not {option!r}")
    if device.type == "cuda":
        return True
    return device.type == "cpu" and amp_dtype in (None, torch.bfloat16)


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """A (possibly autocast bf16/fp16) output in the default float dtype (float32 unless a
    test asks for float64), where the losses are computed."""
    return t.to(torch.get_default_dtype()) if t.is_floating_point() else t


def compile_mode(option: str, device: torch.device) -> str | None:
    """The ``torch.compile`` mode a run's training forward uses, or None for eager.

    ``"auto"`` is "reduce-overhead" (the step captured in CUDA graphs and replayed, which
    removes the kernel-launch cost of a small model's step) on CUDA, and eager elsewhere.
    """
    if option == "off":
        return None
    if option == "auto":
        return "reduce-overhead" if device.type == "cuda" else None
    return option


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed torch and numpy; optionally ask for deterministic kernels."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        if hasattr(torch.backends, "cudnn"):
            torch.backends.cudnn.deterministic = True


def interactive() -> bool:
    """Progress bars in a terminal; one plain line per epoch elsewhere (papermill, CI)."""
    return sys.stderr.isatty() and not os.environ.get("CI")
