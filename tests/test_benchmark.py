"""The benchmark runs on a tiny size and writes well-formed output (timings are not tested)."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from mtloca_lib.cli import build_parser
from mtloca_lib.config.run_config import make_config
from mtloca_lib.perf import benchmark_output as O
from mtloca_lib.perf import dynunet_widths as W
from mtloca_lib.perf import roofline as R
from mtloca_lib.perf import steps as S
from mtloca_lib.training.loop import build_for_run, use_channels_last


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_quick_benchmark_writes_table(tmp_path, cache, capsys):
    args = build_parser().parse_args(["benchmark", "--quick", "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    out = tmp_path / "out"
    df = pd.read_csv(out / "benchmark_quick.csv")
    assert list(df.columns) == O.COLUMNS
    sections = set(df["section"])
    assert {"matmul", "train", "infer_latency", "infer_throughput", "pipeline"} <= sections
    train = df[df.section == "train"]
    assert set(train["model"]) == set(S.BENCH_MODELS) and "dynunet" in set(train["model"])
    for model, g in train.groupby("model"):
        assert {"plain", "fast"} <= set(g["path"]), model
        assert (g["images_per_s"] > 0).all() and (g["gflop_per_step"] > 0).all()
        assert (g["roofline_bf16_pct"] > 0).all()
        assert math.isclose(g.set_index("path").loc["plain", "speedup_vs_plain"], 1.0)
    assert (df[df.section == "matmul"]["achieved_gflops"] > 0).all()
    assert (df["rss_peak_mib"] > 0).all()
    assert df["load1"].notna().all()
    lat = df[(df.section == "infer_latency")]
    assert (lat["batch"] == 1).all()
    assert (df[df.section == "pipeline"]["images_per_s"] > 0).all()
    rep = df[df.section == "replicas"].set_index("path")
    assert set(rep.index) == {"separate_fast", "separate_nchw", "replicas_vmap", "replicas_loop"}
    assert (rep["images_per_s"] > 0).all() and math.isclose(rep.loc["separate_fast", "speedup_vs_plain"], 1.0)
    assert "2 stacked replicas" in rep.loc["replicas_vmap", "setting"]
    assert "mapped by a loop" in rep.loc["replicas_loop", "setting"]

    meta = json.loads((out / "benchmark_quick.json").read_text())
    assert meta["quick"] is True
    assert meta["environment"]["packages"]["torch"]
    assert meta["matmul_peak_gflops"]["fp32"] > 0 and meta["matmul_peak_gflops"]["bf16"] > 0
    assert set(S.BENCH_MODELS) | {"replicas"} <= set(meta["summary"])
    assert meta["summary"]["replicas"]["mapping"] == "loop"  # the CPU's own mapping
    md = (out / "benchmark_quick.md").read_text()
    assert "load average" in md and "| section |" in md
    assert md.count("\n| train |") == len(train)
    printed = capsys.readouterr().out
    assert "images_per_s" in printed and "wrote" in printed


def test_bench_config_fits_dynunet_to_the_size():
    """The quick run's 32 px keeps the DynUNet stages nnU-Net plans for 32 px; 128 px keeps the preset."""
    from mtloca_lib.config.presets import MODEL_PRESETS

    quick = S.bench_config("dynunet", S.QUICK)
    assert quick.model["filters"] == MODEL_PRESETS["dynunet"]["filters"][:4] and quick.model["deep_supervision"] == 2
    full = S.bench_config("dynunet", S.FULL)
    assert {k: full.model[k] for k in MODEL_PRESETS["dynunet"]} == MODEL_PRESETS["dynunet"]
    assert (full.size, full.batch_size) == (128, 16)
    assert S.bench_config("mtl_oca", S.FULL).model == make_config("mtl_oca", "cpu").model


def test_dynunet_width_study_writes_its_table(tmp_path):
    df, meta = W.dynunet_widths(bases=(2,), threads=(1,), rounds=1, log=lambda s: None)
    assert list(df["model"]) == ["mtl_oca", "dynunet_2"] and (df["images_per_s"] > 0).all()
    assert df.set_index("model").loc["mtl_oca", "cost_x_mtl_oca"] == 1.0
    assert df.set_index("model").loc["dynunet_2", "filters"] == "2-4-8-16-32-64"
    paths = W.write_widths(df, meta, tmp_path)
    md = paths["md"].read_text()
    assert "load average" in md and "| dynunet_2 | 2-4-8-16-32-64 | 1 | 8 |" in md
    assert len(pd.read_csv(paths["csv"])) == 2


def test_flops_count_forward_and_backward():
    cfg = make_config("mtl_oca", "smoke", {"size": 32})
    fwd = S.train_step_flops(cfg, torch.device("cpu"), 2)
    model = build_for_run(cfg, 3).eval()
    from mtloca_lib.perf.flops import count_flops

    one = count_flops(model, 32)
    # backward costs about twice the forward (input + weight gradients)
    assert 2.5 * 2 * one < fwd < 3.5 * 2 * one


def test_interleaved_alternates_and_times_every_path():
    calls = []
    t = R.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, torch.device("cpu"))
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert len(t["a"]) == len(t["b"]) == 3


def test_channels_last_auto_rule():
    cpu = torch.device("cpu")
    assert use_channels_last("auto", cpu, torch.bfloat16) is True
    assert use_channels_last("auto", cpu, None) is True  # fp32: x1.15-1.30 measured (bench_avx2_paths)
    assert use_channels_last("auto", cpu, torch.float16) is False
    assert use_channels_last("on", cpu, None) is True
    assert use_channels_last("off", cpu, torch.bfloat16) is False
    with pytest.raises(ValueError):
        use_channels_last("yes", cpu)
