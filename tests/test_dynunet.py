"""The DynUNet reference (nnU-Net's network): plan, shapes, deep supervision, the probe's gradient stop,
its loss, its preset and profile, one training step."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtloca_lib.config.presets import (
    ABLATION_MODELS, ALL_MODELS, COMPARISON_MODELS, DISPLAY, MODEL_COLORS, MODEL_PRESETS, display_name, model_color,
)
from mtloca_lib.config.profiles import PROFILES
from mtloca_lib.config.run_config import make_config
from mtloca_lib.models import ModelConfig, build_model, gradcam_module
from mtloca_lib.models.dynunet import NNUNET_FILTERS_128, DynUNetST, nnunet_plan_2d
from mtloca_lib.models.losses import MultiTaskLoss, soft_dice_loss
from mtloca_lib.training.loop import build_for_run, train_step
from mtloca_lib.perf.steps import engine_paths, make_batch, make_trainer

TINY = {"arch": "dynunet", "filters": [4, 8, 8, 16, 16, 16], "deep_supervision": 3, "cls_hidden": 8}
DS_KEYS = {"seg_ds1", "seg_ds2", "seg_ds3"}


def tiny(**changes) -> DynUNetST:
    torch.manual_seed(0)
    return build_model({**TINY, **changes})


def test_the_plan_is_nnunets_for_128_px():
    plan = nnunet_plan_2d(128)
    assert plan.kernels == (3,) * 6 and plan.strides == (1, 2, 2, 2, 2, 2)
    assert plan.filters == NNUNET_FILTERS_128 == (32, 64, 128, 256, 512, 512)
    assert 128 // plan.input_multiple == 4  # the bottleneck: nnU-Net pools down to a 4 px edge
    assert nnunet_plan_2d(64).strides == (1, 2, 2, 2, 2) and nnunet_plan_2d(32).strides == (1, 2, 2, 2)
    assert nnunet_plan_2d(128, base_filters=16).filters == (16, 32, 64, 128, 256, 512)
    # the default DynUNet is nnU-Net's own network
    model = build_model({"arch": "dynunet"})
    assert model.plan.filters == NNUNET_FILTERS_128 and model.net.strides == [1, 2, 2, 2, 2, 2]
    assert model.net.kernel_size == [3] * 6 and model.net.upsample_kernel_size == [2] * 5


@pytest.mark.parametrize("size", [64, 128])
def test_shapes_train_and_eval(size):
    model = tiny()
    x = torch.rand(2, 2, size, size)
    out = model.train()(x)
    assert set(out) == {"seg", "cls"} | DS_KEYS
    assert out["seg"].shape == (2, 2, size, size) and out["cls"].shape == (2, 3)
    for k in (1, 2, 3):
        assert out[f"seg_ds{k}"].shape == (2, 2, size // 2 ** k, size // 2 ** k)
    with torch.no_grad():
        ev = model.eval()(x)
    assert set(ev) == {"seg", "cls"}  # deep supervision is a training signal only
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in ev.values())
    # without deep supervision or the probe
    bare = tiny(deep_supervision=0, cls_probe=False).train()
    assert set(bare(x)) == {"seg"} and bare.gradcam_layer is None


def test_forward_composes_monais_dynunet_exactly():
    """The forward pass is ``DynUNet.forward``'s: the same final mask, and in training mode the same
    deep-supervision maps (MONAI interpolates them to full size, we keep them at their own)."""
    model = tiny()
    x = torch.rand(2, 2, 64, 64)
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(x)["seg"], model.net(x), rtol=0, atol=0)
        model.train()
        ours, monai = model(x), model.net(x)  # (B, 1 + 3, 2, H, W)
    assert monai.shape == (2, 4, 2, 64, 64)
    torch.testing.assert_close(ours["seg"], monai[:, 0], rtol=0, atol=0)
    for k in (1, 2, 3):
        torch.testing.assert_close(F.interpolate(ours[f"seg_ds{k}"], size=(64, 64)), monai[:, k], rtol=0, atol=0)


def test_probe_reads_the_bottleneck_through_a_gradient_stop():
    model = tiny().train()
    seen = {}
    model.net.bottleneck.register_forward_hook(lambda m, i, o: seen.__setitem__("bottleneck", o))
    layer = gradcam_module(model)
    layer.register_forward_hook(lambda m, i, o: seen.__setitem__("probe_in", o))
    out = model(torch.rand(2, 2, 64, 64))
    assert seen["bottleneck"].shape == (2, 16, 2, 2)  # 64 / 2**5
    torch.testing.assert_close(seen["probe_in"], seen["bottleneck"], rtol=0, atol=0)
    # classification loss: gradients on the probe only, none anywhere else
    labels = torch.tensor([0, 2])
    F.cross_entropy(out["cls"], labels).backward(retain_graph=True)
    probe = {id(p) for p in model.cls_head.parameters()}
    for name, p in model.named_parameters():
        if id(p) in probe:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None or p.grad.abs().max() == 0, name
    # and the segmentation loss never reaches the probe
    model.zero_grad(set_to_none=True)
    masks = (torch.rand(2, 64, 64) > 0.5).long()
    loss, _ = MultiTaskLoss(dice_weight=1.0, ds_normalise=True)({k: v for k, v in out.items() if k != "cls"}, masks)
    loss.backward()
    assert all(p.grad is None for p in model.cls_head.parameters())
    assert model.net.input_block.conv1.conv.weight.grad.abs().sum() > 0


def test_the_loss_weights_deep_supervision_as_nnunet():
    """Dice + cross-entropy on every output at its own size, weights 1, 1/2, 1/4, 1/8 normalised."""
    model = tiny().train()
    x = torch.rand(2, 2, 64, 64)
    masks = torch.zeros(2, 64, 64, dtype=torch.long)
    masks[:, 16:48, 8:40] = 1
    out = model(x)
    total, logged = MultiTaskLoss(dice_weight=1.0, ds_normalise=True).total_and_terms(out, masks)
    weights = torch.tensor([1, 1 / 2, 1 / 4, 1 / 8])
    weights = weights / weights.sum()
    torch.testing.assert_close(weights, torch.tensor([8, 4, 2, 1]) / 15.0)
    expected = 0.0
    for k, w in enumerate(weights.tolist()):
        logits = out["seg"] if k == 0 else out[f"seg_ds{k}"]
        target = masks if k == 0 else masks[:, ::2 ** k, ::2 ** k]  # the block is aligned: exact
        expected = expected + w * (F.cross_entropy(logits, target) + soft_dice_loss(logits, target))
    torch.testing.assert_close(total, expected)
    assert {"seg", "seg_dice", "seg_ds", "total"} <= set(logged)
    # without normalising, the same terms add up undivided (the loss every other model has)
    plain, _ = MultiTaskLoss(dice_weight=1.0).total_and_terms(out, masks)
    torch.testing.assert_close(plain, expected * 15 / 8)
    # in eval mode there are no deep-supervision outputs: the final mask's terms alone
    with torch.no_grad():
        ev = model.eval()(x)
    t_eval, _ = MultiTaskLoss(dice_weight=1.0, ds_normalise=True).total_and_terms(ev, masks)
    torch.testing.assert_close(t_eval, F.cross_entropy(ev["seg"], masks) + soft_dice_loss(ev["seg"], masks))


def test_config_fields_and_errors():
    cfg = ModelConfig(arch="dynunet", filters=(8, 16, 32, 64))
    assert cfg.input_multiple == 8 and cfg.resolved_bottleneck_width == 64 and cfg.label == "dynunet"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["filters"] == [8, 16, 32, 64]
    assert ModelConfig(arch="dynunet").resolved_filters == NNUNET_FILTERS_128
    assert ModelConfig(arch="dynunet").input_multiple == 32
    with pytest.raises(ValueError, match="only applies to arch='dynunet'"):
        ModelConfig(arch="unet_st", filters=(8, 16, 32))
    with pytest.raises(ValueError, match="at least 3"):
        ModelConfig(arch="dynunet", filters=(8, 16))
    with pytest.raises(ValueError, match="deep_supervision"):
        build_model({"arch": "dynunet", "filters": [4, 8, 8, 16], "deep_supervision": 3})
    with pytest.raises(ValueError, match="not divisible by 32"):
        tiny()(torch.rand(1, 2, 48, 48))


def test_the_preset_and_its_profile():
    assert DISPLAY["dynunet"] == display_name("dynunet") == "DynUNet (nnU-Net network)"
    assert model_color("DynUNet (nnU-Net network)") == MODEL_COLORS["dynunet"]
    assert MODEL_COLORS["dynunet"] not in {c for k, c in MODEL_COLORS.items() if k != "dynunet"}
    # a reference row: not one of the paper's comparisons
    assert "dynunet" not in COMPARISON_MODELS + ABLATION_MODELS + ALL_MODELS
    cfg = make_config("dynunet", "cpu_light60_dice")
    assert cfg.name == "dynunet" and cfg.size == 128 and cfg.epochs == PROFILES["cpu_light60"]["epochs"]
    assert cfg.loss == {"alpha": 0.4, "dice_weight": 1.0, "ds_normalise": True}
    assert cfg.model["filters"] == MODEL_PRESETS["dynunet"]["filters"] and cfg.model["deep_supervision"] == 3
    model = build_for_run(cfg, 3)
    assert isinstance(model, DynUNetST)
    assert model.plan.strides == nnunet_plan_2d(cfg.size).strides  # as many stages as nnU-Net plans
    assert len(model.plan.filters) == 6 and model.plan.filters[-1] <= 512
    assert model(torch.rand(1, 2, 128, 128))["seg_ds3"].shape == (1, 2, 16, 16)
    # the same loss for MTL-OCA (it has no deep-supervision outputs): cpu_light_dice at 60 epochs
    other = make_config("mtl_oca", "cpu_light60_dice")
    assert {k: v for k, v in other.loss.items() if k != "ds_normalise"} == PROFILES["cpu_light_dice"]["loss"]


@pytest.mark.parametrize("path", ["plain", "fast"])
def test_one_training_step(path):
    """One engine step of the preset under its profile (small filters, 64 px) on each engine path."""
    cfg = make_config("dynunet", "cpu_light60_dice", {"size": 64, "model.filters": [4, 8, 8, 16, 16, 16]})
    spec = dict(zip(("plain", "fast"), engine_paths(torch.device("cpu"))))[path]
    step, model = make_trainer(cfg, spec, torch.device("cpu"), 4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == set(before)  # every parameter learns: the network from the mask terms, the probe from L_cls
    x, y, labels = make_batch(cfg, 4, torch.device("cpu"))
    terms = train_step(model, torch.optim.Adam(model.parameters()), MultiTaskLoss(**cfg.loss), x, y, labels,
                       spec.amp_dtype, spec.channels_last)
    assert {"seg", "seg_dice", "seg_ds", "cls", "total"} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
