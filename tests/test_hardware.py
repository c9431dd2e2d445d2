"""The dtype choice follows what the CPU may use, including an instruction set capped by the environment."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from mtloca_lib import hardware
from mtloca_lib.training.loop import autocast_dtype, use_channels_last


def test_a_onednn_cap_below_avx512_means_fp32(monkeypatch):
    monkeypatch.setattr(hardware.torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(hardware.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert hardware.cpu_has_fast_bf16() and hardware.fast_matmul_dtype() == torch.bfloat16
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert hardware.cpu_has_fast_bf16()
    for cap in ("AVX2", "avx2_vnni", "SSE41"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert not hardware.cpu_has_fast_bf16(), cap
        assert hardware.fast_matmul_dtype() == torch.float32
        cpu = torch.device("cpu")
        assert autocast_dtype("auto", cpu) is None and use_channels_last("auto", cpu, None)  # fp32 channels-last
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert not hardware.cpu_has_fast_bf16()


def test_aten_capability_avx2_means_fp32():
    """PyTorch reads ATEN_CPU_CAPABILITY when it loads, so a fresh interpreter checks it."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    code = "from mtloca_lib.hardware import fast_matmul_dtype as f; print(f())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch.float32"
