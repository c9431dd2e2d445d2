"""Grad-CAM on a run that kept only some folds' weights (as committed runs do)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtloca_lib.config.run_config import make_config
from mtloca_lib.training.cv import run_cv
from mtloca_lib.report import gradcam


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradcam_folds")
    mp = pytest.MonkeyPatch()
    mp.setenv("MTLOCA_CACHE", str(root / "cache"))
    try:
        cfg = make_config("mtl_oca", "smoke", {"size": 32})
        run_cv(cfg, root / "run", log=lambda s: None)
        yield root / "run"
    finally:
        mp.undo()


def test_folds_with_weights_and_fold_limited_maps(smoke_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MTLOCA_CACHE", str(smoke_run.parent / "cache"))
    folds = sorted(pd.read_csv(smoke_run / "folds.csv")["fold"].unique().tolist())
    assert gradcam.folds_with_weights(smoke_run) == (folds, [])

    full = gradcam.lesion_mass(smoke_run)
    # drop the weights of every fold but the last one: only its test images are explained
    kept = folds[-1]
    for f in folds[:-1]:
        (smoke_run / f"fold{f}" / "model.pt").rename(smoke_run / f"fold{f}" / "model.pt.away")
    try:
        assert gradcam.folds_with_weights([smoke_run, smoke_run]) == ([kept], folds[:-1])
        part = gradcam.lesion_mass(smoke_run, folds=[kept])
        assert len(part) and set(part["fold"]) == {kept}
        same = full[full["fold"] == kept].set_index("case_id").loc[part["case_id"]]
        np.testing.assert_allclose(part["mass_in_lesion"].to_numpy(), same["mass_in_lesion"].to_numpy(), atol=1e-6)
        with pytest.raises(FileNotFoundError, match="model.pt"):
            gradcam.lesion_mass(smoke_run)  # every fold asked for: a missing weight file is named
        (smoke_run / f"fold{kept}" / "model.pt").rename(smoke_run / f"fold{kept}" / "model.pt.away")
        with pytest.raises(FileNotFoundError, match="no fold has saved weights"):
            gradcam.folds_with_weights(smoke_run)
    finally:
        for f in folds:
            away = smoke_run / f"fold{f}" / "model.pt.away"
            if away.exists():
                away.rename(smoke_run / f"fold{f}" / "model.pt")


def test_model_colours_are_one_per_model_and_used_in_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.colors as mcolors

    from mtloca_lib.config.presets import DISPLAY, MODEL_COLORS, MODEL_PRESETS, model_color
    from mtloca_lib.report.segmentation import figure4

    presets = tuple(MODEL_PRESETS)  # every preset, the reference model (DynUNet) included
    assert set(MODEL_COLORS) == set(presets) == set(DISPLAY) and len(set(MODEL_COLORS.values())) == len(presets)
    for preset in presets:
        assert model_color(preset) == model_color(DISPLAY[preset]) == MODEL_COLORS[preset]
    assert model_color("ground truth") is None and model_color("image", "black") == "black"
    img = np.zeros((1, 8, 8), np.float32)
    fig = figure4(img, img > 0, {"MTL-OCA": [img[0] > 0], "UNet (ST)": [img[0] > 0]},
                  {"MTL-OCA": [1.0], "UNet (ST)": [1.0]}, ["case"])
    titles = {ax.get_title(): ax.title.get_color() for ax in fig.axes if ax.get_title()}
    assert mcolors.same_color(titles["MTL-OCA"], MODEL_COLORS["mtl_oca"])
    assert mcolors.same_color(titles["UNet (ST)"], MODEL_COLORS["unet_st"])
    assert mcolors.same_color(titles["image"], "black")
