"""Cross-validation engine: run layout, determinism, resume after an interruption or a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from mtloca_lib.config.run_config import RunConfig, make_config
from mtloca_lib.training.cv import RunConfigMismatch, load_pred_masks, run_cv
from mtloca_lib.training.loop import StopRequested
from mtloca_lib.runio import REPO_ROOT

REPO = REPO_ROOT


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def smoke(**over) -> RunConfig:
    return make_config("mtl_oca", "smoke", over)


def test_run_layout_and_contents(tmp_path, cache):
    cfg = smoke()
    table = run_cv(cfg, tmp_path / "run", log=lambda s: None)
    run = tmp_path / "run"
    assert len(table) == cfg.k
    manifest = json.loads((run / "manifest.json").read_text())
    for key in ("config", "data", "git", "environment", "folds"):
        assert key in manifest
    assert manifest["data"]["fingerprint"]
    assert set(manifest["folds"]) == {str(f) for f in range(cfg.k)}
    assert all(v["wall_seconds"] > 0 for v in manifest["folds"].values())
    assert all("commit" in v["git"] for v in manifest["folds"].values())  # each fold names its code
    assert manifest["environment"]["packages"]["torch"]
    preds = pd.read_csv(run / "predictions.csv")
    n = sum(cfg.dataset_kwargs["n_per_class"])
    assert len(preds) == n and preds["case_id"].is_unique
    for col in ("case_id", "fold", "true_class", "prob_normal", "prob_benign", "prob_malignant",
                "pred_class", "dice", "iou", "hd95", "true_area", "pred_area"):
        assert col in preds.columns, col
    assert ((preds[["prob_normal", "prob_benign", "prob_malignant"]].sum(1) - 1).abs() < 1e-4).all()
    assert preds["dice"].between(0, 1).all()
    # every image is tested exactly once, in the fold folds.csv assigned it to
    folds = pd.read_csv(run / "folds.csv")
    merged = preds.merge(folds, on="case_id")
    assert (merged["fold_x"] == merged["fold_y"]).all()
    masks = load_pred_masks(run)
    assert set(masks) == set(preds["case_id"])
    row = preds.iloc[0]
    assert masks[row["case_id"]].sum() == row["pred_area"]
    # nothing half-written, no checkpoints left behind
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("checkpoint.pt"))


def test_same_seed_same_results(tmp_path, cache):
    cfg = smoke()
    a = run_cv(cfg, tmp_path / "a", log=lambda s: None)
    b = run_cv(cfg, tmp_path / "b", log=lambda s: None)
    pd.testing.assert_frame_equal(a, b)
    pa = pd.read_csv(tmp_path / "a" / "predictions.csv")
    pb = pd.read_csv(tmp_path / "b" / "predictions.csv")
    pd.testing.assert_frame_equal(pa, pb)


def test_different_seed_differs(tmp_path, cache):
    a = run_cv(smoke(seed=0), tmp_path / "a", log=lambda s: None)
    b = run_cv(smoke(seed=1), tmp_path / "b", log=lambda s: None)
    pa = pd.read_csv(tmp_path / "a" / "predictions.csv")
    pb = pd.read_csv(tmp_path / "b" / "predictions.csv")
    assert not pa["prob_benign"].equals(pb["prob_benign"])


def test_resume_after_interruption_matches_uninterrupted(tmp_path, cache):
    cfg = smoke(epochs=3)
    ref = run_cv(cfg, tmp_path / "ref", log=lambda s: None)
    run = tmp_path / "resumed"
    with pytest.raises(StopRequested):
        run_cv(cfg, run, log=lambda s: None, stop_after_epochs=1)
    assert (run / "fold0" / "checkpoint.pt").exists()
    assert not (run / "fold0" / "metrics.json").exists()
    lines = []
    resumed = run_cv(cfg, run, log=lines.append)
    assert any("resuming from epoch 1" in line for line in lines)
    pd.testing.assert_frame_equal(ref, resumed)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "ref" / "predictions.csv"), pd.read_csv(run / "predictions.csv")
    )
    # a finished run is not trained again
    lines = []
    run_cv(cfg, run, log=lines.append)
    assert any(f"all {cfg.k} requested folds finished earlier" in line for line in lines)
    assert not any("epoch" in line and "fold" in line for line in lines)


def test_refuses_other_config_in_same_run_dir(tmp_path, cache):
    run_cv(smoke(), tmp_path / "run", log=lambda s: None)
    with pytest.raises(RunConfigMismatch, match="lr"):
        run_cv(smoke(lr=0.01), tmp_path / "run", log=lambda s: None)


@pytest.mark.slow
def test_killed_process_resumes_to_same_result(tmp_path, cache):
    """SIGKILL a real `mtloca train` process mid-run, rerun it, compare with an uninterrupted run."""
    env = dict(os.environ, MTLOCA_CACHE=str(cache), PYTHONHASHSEED="0", CI="1")
    args = [sys.executable, "-m", "mtloca_lib.cli", "train", "--profile", "smoke", "--dataset", "phantom",
            "--set", "epochs=6", "--set", "model.widths=[8,16,32]"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--run-dir", str(killed)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "fold1" / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "fold0" / "metrics.json").exists()
    assert not (killed / "fold1" / "metrics.json").exists()
    subprocess.run(args + ["--run-dir", str(killed)], cwd=REPO, env=env, check=True, capture_output=True)
    ref = tmp_path / "ref"
    subprocess.run(args + ["--run-dir", str(ref)], cwd=REPO, env=env, check=True, capture_output=True)
    pd.testing.assert_frame_equal(pd.read_csv(ref / "predictions.csv"), pd.read_csv(killed / "predictions.csv"))
    assert not list(killed.rglob("*.tmp"))


def test_compile_is_guarded_by_device(tmp_path, cache, monkeypatch):
    """compile="auto" leaves a CPU run eager; a named mode reaches torch.compile on any device."""
    import torch

    from mtloca_lib.training.loop import compile_mode

    assert compile_mode("auto", torch.device("cpu")) is None
    assert compile_mode("auto", torch.device("cuda")) == "reduce-overhead"
    assert compile_mode("off", torch.device("cuda")) is None
    assert compile_mode("default", torch.device("cpu")) == "default"
    with pytest.raises(ValueError, match="compile"):
        smoke(compile="fast")
    calls = []

    def fake_compile(model, mode=None):  # stands in for inductor: records, returns the model
        calls.append(mode)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    ref = run_cv(smoke(epochs=1), tmp_path / "eager", log=lambda s: None)
    auto = run_cv(smoke(epochs=1, compile="auto"), tmp_path / "auto", log=lambda s: None)
    assert calls == []
    lines = []
    named = run_cv(smoke(epochs=1, compile="reduce-overhead"), tmp_path / "named", log=lines.append)
    assert calls == ["reduce-overhead"] * smoke().k
    assert any("compiled" in line for line in lines)
    pd.testing.assert_frame_equal(ref, auto)
    pd.testing.assert_frame_equal(ref, named)
    assert smoke(compile="auto").digest() != smoke().digest()
