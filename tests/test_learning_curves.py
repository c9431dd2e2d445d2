"""Learning curves, the convergence rule and the training-recipe options of the engine."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mtloca_lib.evaluation import convergence as C
from mtloca_lib.report import convergence as C_convergence
from mtloca_lib.data.augment import augment_batch
from mtloca_lib.config.run_config import RunConfig, make_config
from mtloca_lib.training.cv import run_cv
from mtloca_lib.models.losses import MultiTaskLoss, soft_dice_loss
from mtloca_lib.data.preprocess import make_input, scale_magnitude
from mtloca_lib.report.reproduction_report import describe_claim
from mtloca_lib.data.splits import validation_split
from mtloca_lib.training.loop import StopRequested, lr_factor


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLOCA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------- validation part
def test_validation_split_keeps_groups_whole_and_stratifies():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [60, 120, 60])
    groups = rng.integers(0, 80, size=len(labels))
    val = validation_split(labels, groups, 0.2, seed=3)
    assert 0.1 < val.mean() < 0.3
    assert not set(groups[val]) & set(groups[~val]), "a group was split between training and validation"
    for c in (0, 1, 2):
        assert val[labels == c].any(), f"class {c} missing from the validation part"
    np.testing.assert_array_equal(val, validation_split(labels, groups, 0.2, seed=3))
    assert not np.array_equal(val, validation_split(labels, groups, 0.2, seed=4))


def test_validation_split_rejects_bad_fraction_and_too_few_groups():
    labels = np.array([0, 1] * 10)
    with pytest.raises(ValueError, match="fraction"):
        validation_split(labels, np.arange(20), 0.6)
    with pytest.raises(ValueError, match="lower val_fraction"):
        validation_split(labels, np.array([0, 1, 2] * 6 + [0, 1]), 0.2)


def test_run_with_validation_part_records_curves(tmp_path, cache):
    over = {"val_fraction": 0.2, "lr_schedule": "cosine", "warmup_epochs": 1, "epochs": 3,
            "loss.class_weights": "balanced"}
    table = run_cv(make_config("mtl_oca", "smoke", over), tmp_path / "a", log=lambda s: None)
    run = tmp_path / "a"
    folds = pd.read_csv(run / "folds.csv", dtype={"case_id": str})
    for f in range(len(table)):
        h = pd.read_csv(run / f"fold{f}" / "history.csv")
        for col in ("val_dice", "val_dice_lesion", "val_accuracy", "val_seg", "val_seg_soft", "val_cls",
                    "val_total", "lr_last"):
            assert col in h and h[col].notna().all(), col
        assert h["val_dice"].between(0, 1).all()
        val = pd.read_csv(run / f"fold{f}" / "val_cases.csv", dtype={"case_id": str})
        test_cases = set(folds.loc[folds["fold"] == f, "case_id"])
        assert len(val) > 0 and not set(val["case_id"]) & test_cases, "validation part overlaps the test fold"
        # the validation images were held out of training: the fold trained on the rest
        preds = pd.read_csv(run / f"fold{f}" / "predictions.csv", dtype={"case_id": str})
        assert set(preds["case_id"]) == test_cases
    manifest = json.loads((run / "manifest.json").read_text())
    assert "validation part" in manifest["model_selection"] and "last epoch" in manifest["model_selection"]
    # another model on the same split gets the same validation parts
    run_cv(make_config("unet_st", "smoke", {"val_fraction": 0.2, "epochs": 1}), tmp_path / "b",
           log=lambda s: None)
    for f in range(len(table)):
        a = pd.read_csv(run / f"fold{f}" / "val_cases.csv")
        b = pd.read_csv(tmp_path / "b" / f"fold{f}" / "val_cases.csv")
        pd.testing.assert_frame_equal(a, b)


def test_resume_with_schedule_and_validation_matches_uninterrupted(tmp_path, cache):
    cfg = make_config("mtl_oca", "smoke", {"val_fraction": 0.2, "lr_schedule": "cosine", "epochs": 3,
                                           "folds": [0]})
    ref = run_cv(cfg, tmp_path / "ref", log=lambda s: None)
    with pytest.raises(StopRequested):
        run_cv(cfg, tmp_path / "res", log=lambda s: None, stop_after_epochs=2)
    resumed = run_cv(cfg, tmp_path / "res", log=lambda s: None)
    pd.testing.assert_frame_equal(ref, resumed)
    cols = ["val_dice", "val_total", "lr_last", "total"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ref" / "fold0" / "history.csv")[cols],
                                  pd.read_csv(tmp_path / "res" / "fold0" / "history.csv")[cols])


def test_without_validation_part_the_manifest_says_so(tmp_path, cache):
    run_cv(make_config("mtl_oca", "smoke", {"epochs": 1, "folds": [0], "val_fraction": 0.0}), tmp_path / "r",
           log=lambda s: None)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["model_selection"].startswith("last epoch; trained on the whole training fold")
    assert not (tmp_path / "r" / "fold0" / "val_cases.csv").exists()
    assert C.convergence_status(tmp_path / "r")["converged"] is None


# ---------------------------------------------------------------- schedule
def test_lr_factor_schedules():
    assert lr_factor(0, 100, 0, "constant") == 1.0
    assert lr_factor(0, 100, 10, "constant") == pytest.approx(0.01)
    assert lr_factor(5, 100, 10, "constant") == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(50, 100, 0, "poly") == pytest.approx(0.5 ** 0.9)
    factors = [lr_factor(s, 200, 20, "cosine") for s in range(20, 200)]
    assert all(a >= b for a, b in zip(factors, factors[1:])), "cosine decay must not rise"


# ---------------------------------------------------------------- config checks
@pytest.mark.parametrize("field,value,match", [
    ("lr_schedule", "step", "lr_schedule"),
    ("warmup_epochs", -1, "warmup_epochs"),
    ("val_fraction", 0.7, "val_fraction"),
    ("deriv_norm", "median", "deriv_norm"),
    ("deriv_norm", -2.0, "deriv_norm"),
    ("augment_options", {"rotate": 10}, "augment_options"),
])
def test_bad_recipe_fields_are_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        make_config("mtl_oca", "smoke", {field: value})


def test_late_fields_at_default_leave_the_digest_unchanged():
    base = make_config("mtl_oca", "cpu20")
    d = base.to_dict()
    for key in ("lr_schedule", "warmup_epochs", "val_fraction", "augment_options", "deriv_norm"):
        d.pop(key)
    assert RunConfig.from_dict(d).digest() == base.digest()
    assert "val_fraction" not in base.identity()
    assert make_config("mtl_oca", "cpu20", {"lr_schedule": "cosine"}).digest() != base.digest()
    assert make_config("mtl_oca", "cpu", {"augment_options.crop_p": 0}).augment_options == {"crop_p": 0}



@pytest.mark.parametrize("model", ["mtl_oca", "unet_st", "mt_dunet"])
def test_cpu_light60_is_cpu_light_trained_longer(model):
    """The longer schedule changes the epoch count and nothing else, for every compared model,
    so a 40- against 60-epoch comparison measures the schedule alone (the cosine decay spans
    all epochs, so its shape is the same, stretched)."""
    short, long = make_config(model, "cpu_light").to_dict(), make_config(model, "cpu_light60").to_dict()
    assert (short.pop("epochs"), long.pop("epochs")) == (40, 60)
    assert short == long
    assert long["lr_schedule"] == "cosine"

# ---------------------------------------------------------------- inputs, augmentation, loss
def test_derivative_normalisations():
    torch.manual_seed(0)
    img = torch.rand(3, 1, 32, 32)
    mag = torch.rand(3, 1, 32, 32) * 0.2
    by_max = scale_magnitude(mag, "max")
    assert torch.allclose(by_max.flatten(1).amax(1), torch.ones(3))
    fixed = scale_magnitude(mag, 0.1)
    assert torch.allclose(fixed, (mag / 0.1).clamp(0, 1))
    p99 = scale_magnitude(mag, "p99")
    assert (p99 == 1).float().mean() >= 0.009  # the top 1 % is clipped at 1
    assert torch.equal(make_input(img, 1.0, 2, "p99"), make_input(img, 1.0))
    # a fixed scale keeps a weak image weak; a per-image scale stretches it to full range
    faint = torch.full((1, 1, 32, 32), 0.5) + 0.01 * torch.rand(1, 1, 32, 32)
    assert make_input(faint, 1.0, 2, 0.1)[:, 1].max() < 0.5
    assert make_input(faint, 1.0, 2, "max")[:, 1].max() == pytest.approx(1.0)


def test_border_padding_fills_the_corners():
    images = torch.full((1, 1, 32, 32), 0.7)
    masks = torch.zeros(1, 1, 32, 32)
    kw = dict(rotation_deg=45.0, hflip_p=0.0, crop_p=0.0, contrast_p=0.0)
    gen = torch.Generator().manual_seed(1)
    zeros, _ = augment_batch(images, masks, gen, **kw)
    gen = torch.Generator().manual_seed(1)
    border, _ = augment_batch(images, masks, gen, padding_mode="border", **kw)
    assert zeros[0, 0, 0, 0] == 0 and border[0, 0, 0, 0] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="padding_mode"):
        augment_batch(images, masks, torch.Generator(), padding_mode="wrap")


def test_dice_term():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    perfect = torch.stack([1 - target, target], 1).float() * 40 - 20
    assert soft_dice_loss(perfect, target) == pytest.approx(0.0, abs=1e-4)
    assert soft_dice_loss(-perfect, target) > 0.99
    out = {"seg": perfect}
    _, plain = MultiTaskLoss().total_and_terms(out, target)
    total, terms = MultiTaskLoss(dice_weight=1.0).total_and_terms({"seg": -perfect}, target)
    assert "seg_dice" not in plain and "seg_dice" in terms
    assert float(total) == pytest.approx(float(terms["seg"] + terms["seg_dice"]), rel=1e-6)
    with pytest.raises(ValueError, match="dice_weight"):
        MultiTaskLoss(dice_weight=-1)


# ---------------------------------------------------------------- the convergence rule
def _histories(curves: dict[int, list[float]]) -> pd.DataFrame:
    rows = [{"fold": f, "epoch": e + 1, "val_dice": v, "val_accuracy": 0.5 + v / 4}
            for f, vals in curves.items() for e, v in enumerate(vals)]
    return pd.DataFrame(rows)


def test_rule_flat_tail_converged_rising_tail_not():
    plateau = [1 - math.exp(-e / 3) for e in range(40)]
    status = C.convergence_status(histories=_histories({0: plateau, 1: plateau}))
    assert status["converged"] is True and status["window"] == 8 and abs(status["rise"]) < 0.01
    rising = [0.02 * e for e in range(20)]
    status = C.convergence_status(histories=_histories({0: rising, 1: rising}))
    assert status["converged"] is False
    assert status["rise"] == pytest.approx(0.02 * 3)  # window of 4 epochs: 3 steps of 0.02
    assert "not converged" in status["reason"]


def test_rule_reads_the_fold_mean_not_one_fold():
    # one fold still rising, one falling as much: the mean is flat
    up = [0.5 + 0.01 * e for e in range(20)]
    down = [0.7 - 0.01 * e for e in range(20)]
    assert C.convergence_status(histories=_histories({0: up, 1: down}))["converged"] is True
    assert C.convergence_status(histories=_histories({0: up}))["converged"] is False


def test_rule_without_curve_is_unknown():
    h = pd.DataFrame({"fold": [0, 0], "epoch": [1, 2], "total": [1.0, 0.9]})
    status = C.convergence_status(histories=h)
    assert status["converged"] is None and status["reason"].startswith("unknown")


def test_epoch_reaching_95_percent():
    curve = pd.Series([0.1, 0.5, 0.8, 0.9, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0], index=range(1, 11))
    assert C.epoch_reaching(curve) == 5.0
    assert math.isnan(C.epoch_reaching(pd.Series(dtype=float)))


def test_convergence_table_from_run_dirs(tmp_path):
    for name, vals in (("flat", [0.6] * 10), ("rising", [0.05 * e for e in range(10)])):
        (tmp_path / name / "fold0").mkdir(parents=True)
        pd.DataFrame({"epoch": range(1, 11), "val_dice": vals}).to_csv(
            tmp_path / name / "fold0" / "history.csv", index=False)
    table = C.convergence_table({"flat": tmp_path / "flat", "rising": tmp_path / "rising"})
    assert table.loc["flat", "converged"] and not table.loc["rising", "converged"]
    assert table.loc["flat", "epoch95_val_dice"] == 1.0
    assert C.is_converged(tmp_path / "flat") and not C.is_converged(tmp_path / "rising")


def test_claim_between_unconverged_runs_is_not_tested():
    row = {"model_a": "mtl_oca", "model_b": "unet_st", "test": "wilcoxon", "p_value": 1e-12,
           "mean_difference": -0.1, "converged_a": False, "converged_b": True}
    text = describe_claim(row)
    assert "not tested: not converged" in text and "contradicted" not in text
    row["converged_a"] = True
    assert "contradicted" in describe_claim(row)


def test_classifier_can_read_the_bottleneck():
    from mtloca_lib.inference.gradcam import grad_cam
    from mtloca_lib.models import build_model

    torch.manual_seed(0)
    model = build_model({"arch": "mtl_oca", "widths": (8, 16, 32), "cls_source": "bottleneck"})
    assert model.gradcam_layer == "backbone.bottleneck"
    x = torch.rand(2, 2, 64, 64, requires_grad=True)
    out = model(x)
    # the classification loss reaches the encoder, not the decoder
    out["cls"].sum().backward()
    assert model.backbone.encoder[0].conv1[0].weight.grad.abs().sum() > 0
    assert model.backbone.decoder[-1].block.conv1[0].weight.grad is None
    cams = grad_cam(model.eval(), x.detach(), model.gradcam_layer)
    assert cams.shape[-2:] == (64, 64)
    with pytest.raises(ValueError, match="cls_source"):
        build_model({"arch": "mtl_oca", "variant": "no_oca", "cls_source": "bottleneck"})
