"""The multi-task loss: its value, its terms, and which parameters each term trains."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtloca_lib.models.losses import MultiTaskLoss, focal_cross_entropy, inverse_frequency_weights, soft_dice_loss
from mtloca_lib.models import build_model

SMALL = {"widths": (4, 8, 8), "bottleneck_width": 8, "gn_groups": 2, "cls_hidden": 8,
         "dropout": 0.0}
MODELS = {
    "proposed": {"arch": "mtl_oca", "variant": "proposed"},
    "no_oca": {"arch": "mtl_oca", "variant": "no_oca"},
    "oca_cls_from_mask": {"arch": "mtl_oca", "variant": "oca_cls_from_mask"},
    "unet_st": {"arch": "unet_st"},
    "mt_dunet": {"arch": "mt_dunet"},
    "no_oca_same_cls_bneck": {"arch": "mtl_oca", "variant": "no_oca_same_cls", "cls_source": "bottleneck"},
}




def _batch(seed: int = 0, b: int = 4, size: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 2, size, size, generator=g)
    masks = torch.zeros(b, 1, size, size)
    masks[:, :, 4:10, 5:12] = 1.0
    masks[0] = 0.0  # one normal image
    labels = torch.tensor([0, 1, 2, 1][:b])
    return x, masks, labels


def _model(name: str):
    torch.manual_seed(0)
    return build_model({**MODELS[name], **SMALL}).double()


# ---- values -----------------------------------------------------------------
def test_total_is_cls_plus_alpha_soft_plus_seg():
    model = _model("proposed")
    x, masks, labels = _batch()
    out = model(x.double())
    total, terms = MultiTaskLoss(alpha=0.4)(out, masks, labels)
    target = masks[:, 0].long()
    seg = F.cross_entropy(out["seg"], target)
    soft = F.cross_entropy(out["seg_soft"], target)
    cls = F.cross_entropy(out["cls"], labels)
    torch.testing.assert_close(total, cls + 0.4 * soft + seg)
    assert set(terms) == {"seg", "seg_soft", "cls", "total"}
    assert all(type(v) is float for v in terms.values())
    assert terms["seg_soft"] == pytest.approx(soft.item())
    assert terms["total"] == pytest.approx(total.item())


def test_lesion_weight_weights_lesion_pixels_in_both_mask_terms():
    model = _model("proposed")
    x, masks, labels = _batch()
    out = model(x.double())
    target = masks[:, 0].long()
    _, plain = MultiTaskLoss()(out, masks, labels)
    _, one = MultiTaskLoss(lesion_weight=1.0)(out, masks, labels)
    assert one == plain  # 1 is the paper's unweighted loss, bit for bit
    _, w3 = MultiTaskLoss(lesion_weight=3.0)(out, masks, labels)
    for key in ("seg", "seg_soft"):  # weighted mean: sum_i w_i l_i / sum_i w_i, by hand
        nll = F.cross_entropy(out[key], target, reduction="none")
        w = 1.0 + 2.0 * target.double()
        assert w3[key] == pytest.approx(((w * nll).sum() / w.sum()).item())
        assert w3[key] != pytest.approx(plain[key])
    assert w3["cls"] == pytest.approx(plain["cls"])  # the classification term is untouched
    with pytest.raises(ValueError, match="lesion_weight"):
        MultiTaskLoss(lesion_weight=0.0)


def test_total_and_terms_keeps_detached_tensors_equal_to_the_floats():
    # the training loop sums these on the device and reads them back once per epoch
    x, masks, labels = _batch()
    out = _model("proposed")(x.double())
    loss = MultiTaskLoss(alpha=0.4)
    total_t, tensors = loss.total_and_terms(out, masks, labels)
    total_f, floats = loss(out, masks, labels)
    torch.testing.assert_close(total_t, total_f)
    assert total_t.requires_grad and set(tensors) == set(floats)
    for k, v in tensors.items():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
        assert float(v) == floats[k]


@pytest.mark.parametrize("name,keys", [
    ("no_oca", {"seg", "cls", "total"}),
    ("unet_st", {"seg", "cls", "total"}),
    ("mt_dunet", {"seg", "cls", "total"}),
    ("oca_cls_from_mask", {"seg", "seg_soft", "cls", "total"}),
])
def test_terms_follow_the_outputs(name, keys):
    x, masks, labels = _batch()
    out = _model(name)(x.double())
    total, terms = MultiTaskLoss()(out, masks, labels)
    assert set(terms) == keys
    _, no_labels = MultiTaskLoss()(out, masks, None)
    assert "cls" not in no_labels
    expected = terms["seg"] + 0.4 * terms.get("seg_soft", 0.0) + terms["cls"]
    assert terms["total"] == pytest.approx(expected)


def test_mask_formats_agree():
    x, masks, labels = _batch()
    out = _model("proposed")(x.double())
    loss = MultiTaskLoss()
    a, _ = loss(out, masks, labels)                       # (B,1,H,W) float
    b, _ = loss(out, masks[:, 0].long(), labels)          # (B,H,W) long
    c, _ = loss(out, masks[:, 0].bool(), labels)          # (B,H,W) bool
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_focal_and_class_weights():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(32, 3, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (32,), generator=g)
    w = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(focal_cross_entropy(logits, target), F.cross_entropy(logits, target))
    torch.testing.assert_close(focal_cross_entropy(logits, target, 0.0, w),
                               F.cross_entropy(logits, target, weight=w))
    focal = focal_cross_entropy(logits, target, 2.0)
    p_t = torch.softmax(logits, 1).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(focal, (-(1 - p_t) ** 2 * p_t.log()).mean())
    assert focal < F.cross_entropy(logits, target)
    # the loss module uses them for the classification term only
    out = {"seg": torch.randn(4, 2, 8, 8, dtype=torch.float64), "cls": logits[:4]}
    masks = torch.zeros(4, 8, 8, dtype=torch.long)
    _, plain = MultiTaskLoss()(out, masks, target[:4])
    _, weighted = MultiTaskLoss(class_weights=w, focal_gamma=2.0)(out, masks, target[:4])
    assert weighted["seg"] == plain["seg"] and weighted["cls"] != plain["cls"]
    with pytest.raises(ValueError):
        MultiTaskLoss(focal_gamma=-1)


def test_inverse_frequency_weights():
    w = inverse_frequency_weights([0, 1, 1, 1, 2, 2], 4)
    torch.testing.assert_close(w, torch.tensor([6 / 4, 6 / 12, 6 / 8, 0.0]))


# ---- gradient routing ----------------------------------------------------------
def _reach(model, term: torch.Tensor, prefix: str) -> bool:
    """True when ``term`` gives a non-zero gradient to some parameter under ``prefix``."""
    named = [(n, p) for n, p in model.named_parameters() if n.startswith(prefix)]
    assert named, f"no parameters under {prefix!r}"
    grads = torch.autograd.grad(term, [p for _, p in named], retain_graph=True, allow_unused=True)
    return any(g is not None and bool(g.abs().max() > 0) for g in grads)


# (model, term) -> (prefixes the term must reach, prefixes it must not reach)
ROUTES = {
    ("proposed", "cls"): (["backbone.", "cls_head."], ["oca."]),
    ("proposed", "seg_soft"): (["oca.region_head.", "backbone."],
                               ["oca.attention.", "oca.fuse.", "oca.seg_conv.", "cls_head."]),
    ("proposed", "seg"): (["oca.region_head.", "oca.attention.", "oca.fuse.", "oca.seg_conv.",
                           "backbone."], ["cls_head."]),
    ("no_oca", "cls"): (["mask_head.", "backbone.", "cls_head."], []),
    ("no_oca", "seg"): (["mask_head.", "backbone."], ["cls_head."]),
    # the no-OCA twin of the proposed model with a bottleneck classifier: the classification loss
    # reaches the encoder but neither the decoder nor the mask head, as in the proposed model
    ("no_oca_same_cls_bneck", "cls"): (["backbone.encoder.", "backbone.bottleneck.", "cls_head."],
                                       ["backbone.decoder.", "mask_head."]),
    ("no_oca_same_cls_bneck", "seg"): (["mask_head.", "backbone."], ["cls_head."]),
    ("oca_cls_from_mask", "cls"): (["oca.seg_conv.", "oca.attention.", "oca.region_head.",
                                    "backbone.", "cls_head."], []),
    ("oca_cls_from_mask", "seg_soft"): (["oca.region_head."], ["oca.seg_conv.", "cls_head."]),
    ("unet_st", "cls"): (["cls_head."], ["backbone.", "seg_head."]),
    ("unet_st", "seg"): (["backbone.", "seg_head."], ["cls_head."]),
    ("mt_dunet", "cls"): (["backbone.encoder.", "backbone.bottleneck.", "cls_head."],
                          ["backbone.decoder.", "seg_head."]),
    ("mt_dunet", "seg"): (["backbone.", "seg_head."], ["cls_head."]),
}


@pytest.mark.parametrize("name,term", sorted(ROUTES))
def test_each_term_trains_what_it_should(name, term):
    model = _model(name)
    x, masks, labels = _batch(seed=1)
    terms = MultiTaskLoss().terms(model(x.double()), masks, labels)
    must, must_not = ROUTES[(name, term)]
    for prefix in must:
        assert _reach(model, terms[term], prefix), f"{name}: L_{term} does not reach {prefix}"
    for prefix in must_not:
        assert not _reach(model, terms[term], prefix), f"{name}: L_{term} reaches {prefix}"


def test_unet_st_probe_leaves_segmentation_untouched_by_training():
    """An optimiser step on the classification loss alone changes only the probe."""
    model = _model("unet_st")
    x, masks, labels = _batch(seed=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    MultiTaskLoss().terms(model(x.double()), masks, labels)["cls"].backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("cls_head.") for n in changed)


# ---- deep supervision (not in the paper; off by default) ----------------------
@pytest.mark.parametrize("name", ["proposed", "no_oca", "unet_st", "mt_dunet"])
def test_deep_supervision_outputs_and_loss(name):
    torch.manual_seed(0)
    model = build_model({**MODELS[name], **SMALL, "deep_supervision": 2}).double()
    x, masks, labels = _batch()
    out = model(x.double())
    assert out["seg_ds1"].shape == (4, 2, 8, 8) and out["seg_ds2"].shape == (4, 2, 4, 4)
    assert "seg_ds3" not in out
    loss = MultiTaskLoss(dice_weight=0.5)
    total, terms = loss(out, masks, labels)
    by_hand = 0.0
    for k in (1, 2):
        logits = out[f"seg_ds{k}"]
        small = (F.adaptive_avg_pool2d(masks.double(), logits.shape[-2:]) >= 0.5).long()[:, 0]
        by_hand += 0.5 ** k * (F.cross_entropy(logits, small) + 0.5 * soft_dice_loss(logits, small))
    assert terms["seg_ds"] == pytest.approx(by_hand.item())
    without = {k: v for k, v in out.items() if not k.startswith("seg_ds")}
    total_plain, _ = loss(without, masks, labels)
    torch.testing.assert_close(total.detach(), (total_plain + by_hand).detach())
    total.backward()
    head = model.backbone.ds_heads[1].weight
    assert head.grad is not None and head.grad.abs().sum() > 0


def test_deep_supervision_off_by_default_and_bounded():
    out = _model("proposed")(_batch()[0].double())
    assert not any(k.startswith("seg_ds") for k in out)
    with pytest.raises(ValueError, match="deep_supervision"):
        build_model({**MODELS["proposed"], **SMALL, "deep_supervision": 3})  # 3 levels: at most 2
