"""What the processor can do fast: the one place that decides a dtype from the hardware.

Imports nothing from the package, so every stage (data preparation, the engine) may use it.

May import: the standard library, third-party packages and ``settings`` (a base module: nothing else of the package).
"""
from __future__ import annotations

import os

import torch


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matrix units (AVX512-BF16 or AMX) and may use them.

    Elsewhere (e.g. AVX2-only CPUs) bf16 arithmetic is emulated and far slower than fp32:
    a 1024x1024 bf16 matrix product was measured at 0.9 GFLOP/s against 52.8 in fp32.
    The units must also be allowed: ``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's kernels, seen in
    ``torch.backends.cpu.get_cpu_capability()``) or ``ONEDNN_MAX_CPU_ISA`` /
    ``DNNL_MAX_CPU_ISA`` below AVX-512 (oneDNN's) turn them off, as on an AVX2-only machine;
    ``benchmarks/bench_avx2_paths.py`` uses that to measure the fp32 path on a bf16 CPU.
    """
    if not _isa_allows_avx512():
        return False
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def _isa_allows_avx512() -> bool:
    """False when PyTorch's kernels or oneDNN were capped below AVX-512 through the environment."""
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if capability in ("DEFAULT", "NO AVX", "AVX", "AVX2"):
        return False
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = os.environ.get(var, "").strip().upper()
        if cap and cap != "ALL" and not cap.startswith(("AVX512", "AVX10", "AMX")):
            return False
    return True


def fast_matmul_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """bf16 where the device multiplies bf16 natively (CUDA with bf16, bf16 CPUs), else fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32
