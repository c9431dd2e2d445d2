"""Metrics: hand-computed cases and cross-checks against MONAI and scikit-learn."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from mtloca_lib.evaluation import metrics as M

monai_metrics = pytest.importorskip("monai.metrics")


def _onehot(masks: np.ndarray) -> torch.Tensor:
    """(N,H,W) {0,1} -> (N,2,H,W) float one-hot, as MONAI expects."""
    t = torch.as_tensor(masks.astype(np.int64))
    return torch.stack([1 - t, t], dim=1).float()


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)


def _random_masks(rng, n=12, h=32, w=40):
    """Smoothed random blobs: structured-ish masks, some touching the border."""
    from scipy import ndimage
    noise = rng.normal(size=(n, h, w))
    sm = np.stack([ndimage.gaussian_filter(x, 2.5) for x in noise])
    return (sm > 0.05).astype(np.uint8)


@pytest.fixture(scope="module")
def mask_pairs():
    rng = np.random.default_rng(0)
    true = _random_masks(rng)
    pred = _random_masks(rng)
    # structured cases: shifted discs, nested discs, identical, disjoint
    h, w = 32, 40
    true = np.concatenate([true, np.stack([_disc(h, w, 16, 20, 8), _disc(h, w, 16, 20, 10),
                                           _disc(h, w, 10, 10, 5), _disc(h, w, 8, 8, 4)])])
    pred = np.concatenate([pred, np.stack([_disc(h, w, 18, 23, 8), _disc(h, w, 16, 20, 5),
                                           _disc(h, w, 10, 10, 5), _disc(h, w, 24, 30, 4)])])
    # pure i.i.d. noise masks (many small components)
    noise_t = (rng.random((4, h, w)) < 0.3).astype(np.uint8)
    noise_p = (rng.random((4, h, w)) < 0.3).astype(np.uint8)
    return np.concatenate([pred, noise_p]), np.concatenate([true, noise_t])


def test_dice_iou_hand_example():
    t = np.zeros((1, 4, 4), np.uint8); t[0, :2, :2] = 1          # 4 pixels
    p = np.zeros((1, 4, 4), np.uint8); p[0, :2, :3] = 1          # 6 pixels, TP 4, FP 2
    assert M.dice_per_image(p, t)[0] == pytest.approx(8 / 10)
    assert M.iou_per_image(p, t)[0] == pytest.approx(4 / 6)
    # torch input, non-{0,1} foreground values count as foreground
    assert M.dice_per_image(torch.as_tensor(p * 255), torch.as_tensor(t))[0] == pytest.approx(0.8)


def test_empty_mask_rule():
    z = np.zeros((1, 8, 8), np.uint8)
    o = z.copy(); o[0, 2:4, 2:4] = 1
    pred = np.concatenate([z, o, z])
    true = np.concatenate([z, z, o])
    np.testing.assert_array_equal(M.dice_per_image(pred, true), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(M.iou_per_image(pred, true), [1.0, 0.0, 0.0])
    assert np.isnan(M.hd95_per_image(pred, true)).all()
    s = M.segmentation_summary(pred, true)
    assert s["n_lesion"] == 1 and s["hd95_n_undefined"] == 3
    assert s["dice_all"] == pytest.approx(1 / 3) and s["dice_lesion"] == 0.0
    assert s["n_false_positive_empty"] == 1
    assert np.isnan(s["hd95_mean"])


def test_summary_lesion_vs_all_and_pooled():
    t = np.zeros((3, 6, 6), np.uint8); t[1, :2, :2] = 1; t[2, :3, :3] = 1
    p = np.zeros((3, 6, 6), np.uint8); p[1, :2, :2] = 1; p[2, :3, :2] = 1
    s = M.segmentation_summary(p, t)
    d2 = 2 * 6 / (6 + 9)
    assert s["dice_lesion"] == pytest.approx((1 + d2) / 2)
    assert s["dice_all"] == pytest.approx((1 + 1 + d2) / 3)
    # pooled: TP 4+6, FP 0, FN 3
    assert s["dice_pooled"] == pytest.approx(20 / 23)
    assert s["iou_pooled"] == pytest.approx(10 / 13)
    assert s["hd95_n_undefined"] == 1


def test_masks_from_logits():
    lg = torch.zeros(2, 2, 3, 3); lg[0, 1, 0, 0] = 1.0; lg[1, 0] = -1.0
    m = M.masks_from_logits(lg)
    assert m.shape == (2, 3, 3) and m[0].sum() == 1 and m[1].sum() == 9
    with pytest.raises(ValueError):
        M.masks_from_logits(torch.zeros(2, 3, 4, 4))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        M.dice_per_image(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_dice_iou_match_monai(mask_pairs):
    pred, true = mask_pairs
    # include images with empty truth/prediction to check the empty rule matches ignore_empty=False
    z = np.zeros_like(pred[:1])
    pred = np.concatenate([pred, z, pred[:1], z]); true = np.concatenate([true, z, z, true[:1]])
    dm = monai_metrics.DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    im = monai_metrics.MeanIoU(include_background=False, reduction="none", ignore_empty=False)
    md = dm(_onehot(pred), _onehot(true)).numpy().ravel()
    mi = im(_onehot(pred), _onehot(true)).numpy().ravel()
    np.testing.assert_allclose(M.dice_per_image(pred, true), md, atol=1e-6)
    np.testing.assert_allclose(M.iou_per_image(pred, true), mi, atol=1e-6)


def test_hd95_matches_monai_exactly(mask_pairs):
    pred, true = mask_pairs
    assert all(p.any() and t.any() for p, t in zip(pred, true))
    hm = monai_metrics.HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = hm(_onehot(pred), _onehot(true)).numpy().ravel()
    ours = M.hd95_per_image(pred, true)
    assert np.isfinite(ours).all()
    # same surface definition -> identical up to MONAI's float32 output
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-5)
    # and the plain Hausdorff distance
    hm100 = monai_metrics.HausdorffDistanceMetric(include_background=False, reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref100 = hm100(_onehot(pred), _onehot(true)).numpy().ravel()
    np.testing.assert_allclose(M.hd95_per_image(pred, true, percentile=100), ref100, atol=1e-5)


def test_hd95_known_values():
    h = w = 40
    a = np.zeros((1, h, w), np.uint8); a[0, 10:20, 10:20] = 1
    b = np.zeros((1, h, w), np.uint8); b[0, 10:20, 13:23] = 1    # shifted by 3 columns
    assert M.hd95_per_image(a, b)[0] == pytest.approx(3.0)
    assert M.hd95_per_image(a, a)[0] == 0.0


# ---------------------------------------------------------------- classification

NAMES = ("normal", "benign", "malignant")


def _probs(pred, k=3, conf=0.8):
    p = np.full((len(pred), k), (1 - conf) / (k - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_classification_hand_example():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    yp = np.array([0, 1, 1, 1, 2, 2, 2, 2, 0, 1])
    r = M.classification_metrics(y, _probs(yp), NAMES)
    assert r["accuracy"] == pytest.approx(6 / 10)
    cm = r["confusion"]
    assert list(cm.index) == list(NAMES) and cm.index.name == "true"
    assert cm.loc["malignant", "benign"] == 1 and cm.loc["benign", "benign"] == 2
    pc = r["per_class"]
    # class benign: TP 2, FP 2 (one normal, one malignant), FN 1, TN 5
    assert pc.loc["benign", "precision"] == pytest.approx(2 / 4)
    assert pc.loc["benign", "sensitivity"] == pytest.approx(2 / 3)
    assert pc.loc["benign", "specificity"] == pytest.approx(5 / 7)
    assert pc.loc["benign", "f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # class malignant: TP 3, FP 1, FN 2, TN 4
    assert pc.loc["malignant", "specificity"] == pytest.approx(4 / 5)
    assert pc.loc["normal", "support"] == 2
    assert r["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, yp))


def test_auc_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    r = M.classification_metrics(torch.as_tensor(y), torch.as_tensor(prob), NAMES)
    ref = roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert r["macro_auc"] == pytest.approx(ref, abs=1e-12)
    assert 0.5 < r["macro_auc"] <= 1


def test_missing_class_gives_nan_auc_with_warning():
    y = np.array([1, 1, 2, 2, 1, 2])
    prob = _probs(np.array([1, 2, 2, 2, 1, 1]))
    with pytest.warns(RuntimeWarning, match="normal"):
        r = M.classification_metrics(y, prob, NAMES)
    assert np.isnan(r["per_class"].loc["normal", "auc"])
    assert np.isfinite(r["macro_auc"])
    assert r["per_class"].loc["normal", "support"] == 0
    assert np.isnan(r["per_class"].loc["normal", "sensitivity"])
    # undefined entries are left out of the macro means, not counted as 0
    assert r["macro_sensitivity"] == pytest.approx(r["per_class"]["sensitivity"].iloc[1:].mean())
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, prob.argmax(1)))


def test_classification_bad_shape():
    with pytest.raises(ValueError):
        M.classification_metrics([0, 1], np.zeros((2, 2)), NAMES)
