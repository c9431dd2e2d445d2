"""One final model on a whole dataset (``--holdout none``): files, resume, guards, predict."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from mtloca_lib.cli import main
from mtloca_lib.config.run_config import make_config
from mtloca_lib.training.cv import RunConfigMismatch, run_cv
from mtloca_lib.training.final import is_final_run, train_final
from mtloca_lib.training.loop import StopRequested
from mtloca_lib.runio import REPO_ROOT


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def smoke(**over):
    return make_config("mtl_oca", "smoke", over)


def test_final_model_uses_every_image_and_resumes(tmp_path, cache):
    cfg = smoke(epochs=2)
    ref = train_final(cfg, tmp_path / "ref", log=lambda s: None)
    cases = pd.read_csv(tmp_path / "ref" / "train_cases.csv")
    assert len(cases) == 24 and set(cases["part"]) == {"train", "validation"}  # smoke: 6+9+9 phantom images
    assert (cases["part"] == "validation").sum() == pytest.approx(0.2 * 24, abs=2)
    manifest = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    assert manifest["holdout"] == "none" and manifest["data"]["n_images"] == 24 and "wall_seconds" in manifest
    assert is_final_run(tmp_path / "ref") and not (tmp_path / "ref" / "checkpoint.pt").exists()
    history = pd.read_csv(tmp_path / "ref" / "history.csv")
    assert len(history) == 2 and "val_dice" in history

    run = tmp_path / "resumed"
    with pytest.raises(StopRequested):
        train_final(cfg, run, log=lambda s: None, stop_after_epochs=1)
    assert (run / "checkpoint.pt").exists() and not (run / "model.pt").exists()
    lines = []
    train_final(cfg, run, log=lines.append)
    assert any("resuming from epoch 1" in line for line in lines)
    a = torch.load(ref, weights_only=False)["model"]
    b = torch.load(run / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # an interrupted run ends where an uninterrupted one does
    lines = []
    train_final(cfg, run, log=lines.append)
    assert any("trained earlier" in line for line in lines)


def test_final_run_guards(tmp_path, cache):
    cfg = smoke(epochs=1, k=2)
    train_final(cfg, tmp_path / "f", log=lambda s: None)
    with pytest.raises(RunConfigMismatch):
        train_final(smoke(epochs=2, k=2), tmp_path / "f", log=lambda s: None)
    run_cv(cfg, tmp_path / "cv", log=lambda s: None)
    assert not is_final_run(tmp_path / "cv")
    with pytest.raises(ValueError, match="cross-validation run"):
        train_final(cfg, tmp_path / "cv", log=lambda s: None)


def test_cli_holdout_none_then_predict(tmp_path, cache, capsys):
    from PIL import Image

    from mtloca_lib.data.phantom import make_phantom

    run = tmp_path / "final"
    assert main(["train", "--profile", "smoke", "--holdout", "none", "--run-dir", str(run),
                 "--set", "epochs=1", "--set", "val_fraction=0"]) == 0
    assert (pd.read_csv(run / "train_cases.csv")["part"] == "train").all()
    case = make_phantom(n_per_class=(0, 1, 0), seed=5).cases[0]
    Image.fromarray(case.image).save(tmp_path / "scan.png")
    assert main(["predict", "--weights", str(run / "model.pt"), "--out", str(tmp_path / "out"),
                 str(tmp_path / "scan.png")]) == 0
    assert (tmp_path / "out" / "probabilities.csv").exists()


def test_readme_predict_example_weights_are_committed_and_load(tmp_path):
    """The README's `mtloca predict --weights ...` examples name weights that exist and predict."""
    import re

    from PIL import Image

    from mtloca_lib.inference.predict import load_weights
    from mtloca_lib.data.phantom import make_phantom

    repo = REPO_ROOT
    paths = sorted(set(re.findall(r"mtloca predict --weights (\S+)", (repo / "README.md").read_text())))
    assert paths, "the README shows no predict example"
    case = make_phantom(n_per_class=(0, 1, 0), seed=1).cases[0]
    Image.fromarray(case.image).save(tmp_path / "scan.png")
    for rel in paths:
        weights = repo / rel
        assert weights.exists(), f"README's predict example names {rel}, which is not committed"
        model, cfg, classes = load_weights(weights)
        assert classes and cfg.size > 0
        assert main(["predict", "--weights", str(weights), "--out", str(tmp_path / weights.parent.name),
                     str(tmp_path / "scan.png")]) == 0
