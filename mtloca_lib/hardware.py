"""What the processor can do fast: the one place that decides a dtype from the hardware.

Imports nothing from the package, so every stage (data preparation, the engine) may use it.

May import: the standard library and third-party packages only (a base module: nothing of the package).
"""
from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matrix units (AVX512-BF16 or AMX).

    Elsewhere (e.g. AVX2-only CPUs) bf16 arithmetic is emulated and far slower than fp32:
    a 1024x1024 bf16 matrix product was measured at 0.9 GFLOP/s against 52.8 in fp32.
    """
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def fast_matmul_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """bf16 where the device multiplies bf16 natively (CUDA with bf16, bf16 CPUs), else fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32
