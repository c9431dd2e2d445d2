"""Folds trained together in one batched step (training/replicas.py) equal folds trained alone."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from mtloca_lib.config.run_config import make_config
from mtloca_lib.training.cv import run_cv
from mtloca_lib.training import replicas as replicas_module
from mtloca_lib.training.channels_last import prepare_memory_format
from mtloca_lib.training.replicas import (
    StackedReplicas,
    replica_amp_dtype,
    replica_mapping,
    group_by_steps,
    replica_optimizer_state,
    stack_optimizer_states,
)
from mtloca_lib.training.loop import StopRequested
from mtloca_lib.models import build_model

COLS = ["dice", "iou", "prob_normal", "prob_benign", "prob_malignant"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def float64():
    # in float32 the grouped convolutions of vmap sum in another order, and 3 epochs of a
    # tiny model amplify that rounding to ~1e-3; in float64 the runs agree to ~1e-12
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def smoke(**over):
    # dropout off: replicas share the generator dropout draws from (see replicas.py)
    return make_config("mtl_oca", "smoke", {"model.dropout": 0.0, "amp": "off", "epochs": 3, **over})


@pytest.fixture(params=["vmap", "loop"])
def mapping(request, monkeypatch):
    """Both ways of mapping over replicas, on this CPU (CUDA picks vmap, a CPU the loop)."""
    monkeypatch.setattr(replicas_module, "replica_mapping", lambda device: request.param)
    return request.param


@pytest.mark.parametrize("mapping_", ["vmap", "loop"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_stacked_forward_and_gradients_equal_each_model(mapping_, channels_last, float64):
    if channels_last and mapping_ == "vmap":
        pytest.skip("vmapped replicas run NCHW")
    torch.manual_seed(0)
    spec = {"widths": (4, 8, 8), "bottleneck_width": 16, "gn_groups": 2, "cls_hidden": 8, "dropout": 0.0}
    models = [prepare_memory_format(build_model(spec), channels_last, torch.device("cpu")) for _ in range(3)]
    x = torch.rand(3, 2, 2, 32, 32)
    stack = StackedReplicas(models, mapping=mapping_)
    assert stack.channels_last == channels_last
    out = stack(x)
    sum(v.pow(2).sum() for v in out.values()).backward()
    for i, m in enumerate(models):
        ref = m(x[i].contiguous(memory_format=torch.channels_last) if channels_last else x[i])
        for key in ref:
            torch.testing.assert_close(out[key][i], ref[key], rtol=1e-9, atol=1e-10)
        sum(v.pow(2).sum() for v in ref.values()).backward()
        for name, p in m.named_parameters():
            torch.testing.assert_close(stack.params[name].grad[i], p.grad, rtol=1e-9, atol=1e-10)
        for name, w in stack.state_dict(i).items():  # a replica's weights come back in the model's layout
            assert w.stride() == dict(m.named_parameters())[name].stride(), name


def test_mapping_follows_the_device():
    assert replica_mapping(torch.device("cpu")) == "loop"
    assert replica_mapping(torch.device("cuda")) == "vmap"
    # vmapped replicas lose CPU autocast (pytorch/functorch#305); the loop keeps it
    assert replica_amp_dtype(torch.bfloat16, torch.device("cpu"), "vmap") is None
    assert replica_amp_dtype(torch.bfloat16, torch.device("cpu"), "loop") is torch.bfloat16
    assert replica_amp_dtype(torch.bfloat16, torch.device("cuda")) is torch.bfloat16
    with pytest.raises(ValueError, match="mapping"):
        StackedReplicas([torch.nn.Linear(2, 2)], mapping="scan")


def test_optimizer_state_round_trip():
    states = []
    for seed in range(2):
        torch.manual_seed(seed)
        q = [torch.nn.Parameter(torch.rand(3, 4))]
        opt = torch.optim.Adam(q)
        q[0].sum().backward()
        opt.step()
        states.append(opt.state_dict())
    stacked = stack_optimizer_states(states)
    assert stacked["state"][0]["exp_avg"].shape == (2, 3, 4)
    for i, s in enumerate(states):
        back = replica_optimizer_state(stacked, i)
        torch.testing.assert_close(back["state"][0]["exp_avg_sq"], s["state"][0]["exp_avg_sq"])


def test_group_by_steps():
    cfg = make_config("mtl_oca", "smoke", {"batch_size": 8})
    assert group_by_steps(cfg, {0: 40, 1: 41, 2: 39, 3: 47, 4: 40}, 2) == [[0, 1], [2], [3, 4]]
    assert group_by_steps(cfg, {0: 40, 1: 40, 2: 40}, 5) == [[0, 1, 2]]


def test_replicas_give_the_metrics_of_separate_runs(tmp_path, cache, float64, mapping):
    alone = run_cv(smoke(), tmp_path / "alone", log=lambda s: None)
    lines = []
    together = run_cv(smoke(replicas=3), tmp_path / "together", log=lines.append)
    assert any("for folds [" in line and "," in line.split("for folds")[1] for line in lines), \
        "no two folds were trained together"
    assert any(line.endswith(f"mapped by {mapping}") for line in lines)
    a = pd.read_csv(tmp_path / "alone" / "predictions.csv")
    t = pd.read_csv(tmp_path / "together" / "predictions.csv")
    assert list(a["case_id"]) == list(t["case_id"])
    pd.testing.assert_frame_equal(a[COLS], t[COLS], rtol=1e-8, atol=1e-9)
    pd.testing.assert_frame_equal(alone, together, rtol=1e-8, atol=1e-9, check_dtype=False)
    for fold in range(3):
        ha = pd.read_csv(tmp_path / "alone" / f"fold{fold}" / "history.csv")
        ht = pd.read_csv(tmp_path / "together" / f"fold{fold}" / "history.csv")
        for col in ("seg", "cls", "total", "val_total"):
            pd.testing.assert_series_equal(ha[col], ht[col], rtol=1e-8, atol=1e-9)


def test_replicas_resume_after_interruption(tmp_path, cache, float64, mapping):
    cfg = smoke(replicas=3)
    ref = run_cv(cfg, tmp_path / "ref", log=lambda s: None)
    run = tmp_path / "resumed"
    with pytest.raises(StopRequested):
        run_cv(cfg, run, log=lambda s: None, stop_after_epochs=1)
    assert list(run.glob("fold*/checkpoint.pt"))
    lines = []
    resumed = run_cv(cfg, run, log=lines.append)
    assert any("resuming from epoch 1" in line for line in lines)
    pd.testing.assert_frame_equal(ref, resumed, rtol=1e-8, atol=1e-9)


def test_a_fold_started_together_resumes_alone(tmp_path, cache, float64, mapping):
    """The checkpoint replicas write is the one a separate run reads."""
    ref = run_cv(smoke(), tmp_path / "ref", log=lambda s: None)
    run = tmp_path / "mixed"
    with pytest.raises(StopRequested):
        run_cv(smoke(replicas=3), run, log=lambda s: None, stop_after_epochs=1)
    (run / "config.json").unlink()  # the same folds, now finished one by one
    lines = []
    resumed = run_cv(smoke(), run, log=lines.append)
    assert sum("resuming from epoch 1" in line for line in lines) >= 2
    pd.testing.assert_frame_equal(ref, resumed, rtol=1e-8, atol=1e-9)


def test_replicas_is_part_of_the_run_identity():
    assert smoke(replicas=2).digest() != smoke().digest()
    assert "replicas" not in smoke().identity()
    with pytest.raises(ValueError, match="replicas"):
        smoke(replicas=0)


def test_looped_replicas_equal_separate_runs_exactly_on_the_fast_path(tmp_path, cache):
    """On a CPU the loop runs each replica through the same kernels a separate run uses:
    in the engine's fast path (fp32 weights, bf16 autocast, channels-last) the predictions
    are bit for bit those of folds trained one by one."""
    fast = {"amp": "bf16", "channels_last": "on", "epochs": 2}
    alone = run_cv(smoke(**fast), tmp_path / "alone", log=lambda s: None)
    lines = []
    together = run_cv(smoke(replicas=3, **fast), tmp_path / "together", log=lines.append)
    assert any(line.endswith("mapped by loop") for line in lines)
    a = pd.read_csv(tmp_path / "alone" / "predictions.csv")
    t = pd.read_csv(tmp_path / "together" / "predictions.csv")
    pd.testing.assert_frame_equal(a[COLS], t[COLS], check_exact=True)
    pd.testing.assert_frame_equal(alone, together, check_exact=True, check_dtype=False)


def test_replica_compile_is_guarded_by_device(tmp_path, cache, monkeypatch):
    """As for one fold: compile="auto" leaves CPU replicas eager; a named mode (on CUDA "auto"
    means reduce-overhead, the CUDA graphs) compiles the stacked forward once per group."""
    calls = []

    def fake_compile(fn, mode=None):  # stands in for inductor: records, returns the callable
        calls.append((type(fn).__name__, mode))
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    ref = run_cv(smoke(replicas=3, epochs=1), tmp_path / "eager", log=lambda s: None)
    auto = run_cv(smoke(replicas=3, epochs=1, compile="auto"), tmp_path / "auto", log=lambda s: None)
    assert calls == []
    lines = []
    named = run_cv(smoke(replicas=3, epochs=1, compile="reduce-overhead"), tmp_path / "named", log=lines.append)
    groups = sum("in one step, mapped by" in line for line in lines)
    assert groups >= 1 and calls == [("StackedReplicas", "reduce-overhead")] * groups
    assert any("forward compiled" in line for line in lines)
    pd.testing.assert_frame_equal(ref, auto)
    pd.testing.assert_frame_equal(ref, named)
