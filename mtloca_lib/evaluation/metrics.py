"""Segmentation and classification metrics.

Segmentation works on binary masks (N, H, W) given as numpy arrays or torch tensors
(anything non-zero is foreground). Use :func:`masks_from_logits` to turn a model's
``"seg"`` output (B, 2, H, W) into masks first.

Empty-mask rule (normal-class images have an empty true mask):

- Dice and IoU: an image whose true AND predicted masks are both empty scores 1
  (a correct "no lesion"); if exactly one of them is empty it scores 0. This is
  MONAI's ``ignore_empty=False`` convention.
- HD95 is undefined (NaN) when either mask is empty; :func:`segmentation_summary`
  reports how many images that affects (``hd95_n_undefined``) and averages HD95
  over the others only.
- :func:`segmentation_summary` reports Dice/IoU over all images and over lesion
  images alone (true mask non-empty), plus pooled (dataset-level) Dice/IoU from
  summed TP/FP/FN, which are unaffected by the rule.

HD95 surface definition (matches MONAI's ``HausdorffDistanceMetric(percentile=95)``
exactly): the boundary of a mask is ``mask & ~binary_erosion(mask)`` with the
4-connected cross structuring element and background outside the image; distances
are Euclidean, in pixels, from every boundary pixel of one mask to the nearest
boundary pixel of the other (``scipy.ndimage.distance_transform_edt``); HD95 is the
larger of the two directed 95th percentiles (linear interpolation).

May import: its own folder, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

__all__ = [
    "masks_from_logits",
    "confusion_counts",
    "dice_per_image",
    "iou_per_image",
    "hd95_per_image",
    "pooled_dice_iou",
    "segmentation_per_image",
    "segmentation_summary",
    "classification_metrics",
]


def _to_numpy(x) -> np.ndarray:
    """Torch tensor or array-like -> numpy array (detached, on CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_masks(x, name: str) -> np.ndarray:
    """Binary masks as a bool array (N, H, W); a single (H, W) mask becomes (1, H, W)."""
    a = _to_numpy(x)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name}: expected masks of shape (N, H, W), got {a.shape}")
    return a != 0


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_masks(pred, "pred"), _as_masks(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred and true masks differ in shape: {p.shape} vs {t.shape}")
    return p, t


def masks_from_logits(seg_logits) -> np.ndarray:
    """Foreground masks from 2-class segmentation logits.

    Args:
        seg_logits: (B, 2, H, W) logits or probabilities (tensor or array).

    Returns:
        uint8 array (B, H, W) in {0, 1}: 1 where channel 1 beats channel 0.
    """
    a = _to_numpy(seg_logits)
    if a.ndim != 4 or a.shape[1] != 2:
        raise ValueError(f"expected (B, 2, H, W) logits, got {a.shape}")
    return (a[:, 1] > a[:, 0]).astype(np.uint8)


def confusion_counts(pred, true) -> dict[str, np.ndarray]:
    """Per-image pixel counts.

    Args:
        pred, true: binary masks (N, H, W).

    Returns:
        dict of int64 arrays (N,): ``tp``, ``fp``, ``fn``, ``true_area``, ``pred_area``.
    """
    p, t = _pair(pred, true)
    tp = (p & t).sum(axis=(1, 2)).astype(np.int64)
    pa = p.sum(axis=(1, 2)).astype(np.int64)
    ta = t.sum(axis=(1, 2)).astype(np.int64)
    return {"tp": tp, "fp": pa - tp, "fn": ta - tp, "true_area": ta, "pred_area": pa}


def _ratio_empty_rule(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0/0 (both masks empty) scored 1."""
    out = np.ones(num.shape, dtype=np.float64)
    nz = den > 0
    out[nz] = num[nz] / den[nz]
    return out


def dice_per_image(pred, true) -> np.ndarray:
    """Dice 2TP / (2TP + FP + FN) per image; 1 when both masks are empty.

    Args:
        pred, true: binary masks (N, H, W).

    Returns:
        float64 array (N,).
    """
    c = confusion_counts(pred, true)
    return _ratio_empty_rule(2.0 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])


def iou_per_image(pred, true) -> np.ndarray:
    """IoU TP / (TP + FP + FN) per image; 1 when both masks are empty.

    Args:
        pred, true: binary masks (N, H, W).

    Returns:
        float64 array (N,).
    """
    c = confusion_counts(pred, true)
    return _ratio_empty_rule(c["tp"].astype(np.float64), c["tp"] + c["fp"] + c["fn"])


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: foreground pixels with a 4-neighbour in the background (or off-image)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _hd95_one(p: np.ndarray, t: np.ndarray, percentile: float) -> float:
    if not p.any() or not t.any():
        return float("nan")
    bp, bt = _boundary(p), _boundary(t)
    # distance_transform_edt gives, at every pixel, the distance to the nearest zero pixel.
    d_to_t = ndimage.distance_transform_edt(~bt)[bp]
    d_to_p = ndimage.distance_transform_edt(~bp)[bt]
    return float(max(np.percentile(d_to_t, percentile), np.percentile(d_to_p, percentile)))


def hd95_per_image(pred, true, percentile: float = 95.0) -> np.ndarray:
    """95th-percentile symmetric Hausdorff distance in pixels per image.

    Args:
        pred, true: binary masks (N, H, W).
        percentile: the percentile (95 gives HD95, 100 the plain Hausdorff distance).

    Returns:
        float64 array (N,); NaN where either mask is empty (see the module docstring
        for the surface definition).
    """
    p, t = _pair(pred, true)
    return np.array([_hd95_one(p[i], t[i], percentile) for i in range(len(p))], dtype=np.float64)


def pooled_dice_iou(pred, true) -> dict[str, float]:
    """Dataset-level Dice and IoU from TP/FP/FN summed over all images.

    Args:
        pred, true: binary masks (N, H, W).

    Returns:
        dict with ``dice_pooled`` and ``iou_pooled`` (1.0 if every mask is empty).
    """
    c = confusion_counts(pred, true)
    tp, fp, fn = (int(c[k].sum()) for k in ("tp", "fp", "fn"))
    if tp + fp + fn == 0:
        return {"dice_pooled": 1.0, "iou_pooled": 1.0}
    return {"dice_pooled": 2 * tp / (2 * tp + fp + fn), "iou_pooled": tp / (tp + fp + fn)}


def segmentation_per_image(pred, true, with_hd95: bool = True) -> pd.DataFrame:
    """One row per image: dice, iou, hd95, areas and emptiness flags.

    Args:
        pred, true: binary masks (N, H, W).
        with_hd95: compute HD95 (the slowest part); NaN column if False.

    Returns:
        DataFrame (N rows) with columns ``dice, iou, hd95, true_area, pred_area,
        true_empty, pred_empty``.
    """
    c = confusion_counts(pred, true)
    dice = _ratio_empty_rule(2.0 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])
    iou = _ratio_empty_rule(c["tp"].astype(np.float64), c["tp"] + c["fp"] + c["fn"])
    hd = hd95_per_image(pred, true) if with_hd95 else np.full(len(dice), np.nan)
    return pd.DataFrame({
        "dice": dice, "iou": iou, "hd95": hd,
        "true_area": c["true_area"], "pred_area": c["pred_area"],
        "true_empty": c["true_area"] == 0, "pred_empty": c["pred_area"] == 0,
    })


def segmentation_summary(pred, true, with_hd95: bool = True) -> dict[str, float]:
    """Dataset summary of segmentation quality.

    Args:
        pred, true: binary masks (N, H, W).
        with_hd95: include HD95 statistics.

    Returns:
        dict with ``n_images``, ``n_lesion`` (true mask non-empty), ``dice_all`` /
        ``iou_all`` (mean over all images, empty-mask rule applied), ``dice_lesion`` /
        ``iou_lesion`` (mean over lesion images; NaN if none), ``dice_pooled`` /
        ``iou_pooled``, ``hd95_mean`` / ``hd95_median`` (over images where it is
        defined), ``hd95_n_undefined`` (images where either mask is empty) and
        ``n_false_positive_empty`` (true empty, prediction not).
    """
    df = segmentation_per_image(pred, true, with_hd95=with_hd95)
    les = ~df["true_empty"].to_numpy()
    out: dict[str, float] = {
        "n_images": int(len(df)),
        "n_lesion": int(les.sum()),
        "dice_all": float(df["dice"].mean()),
        "iou_all": float(df["iou"].mean()),
        "dice_lesion": float(df["dice"][les].mean()) if les.any() else float("nan"),
        "iou_lesion": float(df["iou"][les].mean()) if les.any() else float("nan"),
    }
    out.update(pooled_dice_iou(pred, true))
    out["n_false_positive_empty"] = int((df["true_empty"] & ~df["pred_empty"]).sum())
    if with_hd95:
        hd = df["hd95"].to_numpy()
        ok = ~np.isnan(hd)
        out["hd95_mean"] = float(hd[ok].mean()) if ok.any() else float("nan")
        out["hd95_median"] = float(np.median(hd[ok])) if ok.any() else float("nan")
        out["hd95_n_undefined"] = int((~ok).sum())
    return out


def _nanmean(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def classification_metrics(
    y_true, prob, class_names: Sequence[str], y_pred=None
) -> dict:
    """Multi-class classification metrics.

    Args:
        y_true: (N,) integer labels in ``range(len(class_names))``.
        prob: (N, C) class scores (probabilities; any monotone score works for AUC).
        class_names: the C class names in label order, e.g. ``("normal", "benign", "malignant")``.
        y_pred: optional (N,) predicted labels; default ``argmax(prob, axis=1)``.

    Returns:
        dict with
        ``accuracy``, ``balanced_accuracy`` (mean sensitivity over classes present),
        ``macro_auc`` (mean one-vs-rest AUC over classes where it is defined; a class
        with no positive or no negative sample in ``y_true`` gets AUC NaN and a
        warning), ``macro_precision``, ``macro_sensitivity``, ``macro_specificity``,
        ``macro_f1`` (means over the classes where each is defined), ``n``,
        ``per_class``: DataFrame indexed by class name with columns ``precision,
        sensitivity, specificity, f1, support, auc`` (one vs rest; NaN where undefined:
        sensitivity of a class absent from ``y_true``, precision of a class never
        predicted), and
        ``confusion``: DataFrame of counts, index "true" class names, columns
        "predicted" class names.
    """
    y_true = _to_numpy(y_true).astype(np.int64).ravel()
    prob = _to_numpy(prob).astype(np.float64)
    names = list(class_names)
    k = len(names)
    if prob.ndim != 2 or prob.shape != (len(y_true), k):
        raise ValueError(f"prob must be (N, {k}) = ({len(y_true)}, {k}), got {prob.shape}")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= k):
        raise ValueError(f"y_true labels must lie in 0..{k - 1}")
    y_pred = prob.argmax(axis=1) if y_pred is None else _to_numpy(y_pred).astype(np.int64).ravel()
    labels = list(range(k))

    cm = confusion_matrix(y_true, y_pred, labels=labels)
    prec, rec, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=np.nan
    )
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan)

    auc = np.full(k, np.nan)
    for c in labels:
        pos = y_true == c
        if pos.all() or not pos.any():
            warnings.warn(
                f"class {names[c]!r} has {'no' if not pos.any() else 'only'} samples in y_true: "
                "its one-vs-rest AUC is undefined (NaN) and left out of macro_auc",
                RuntimeWarning, stacklevel=2,
            )
            continue
        auc[c] = roc_auc_score(pos, prob[:, c])

    present = support > 0
    per_class = pd.DataFrame(
        {"precision": prec, "sensitivity": rec, "specificity": spec, "f1": f1,
         "support": support.astype(np.int64), "auc": auc},
        index=pd.Index(names, name="class"),
    )
    confusion = pd.DataFrame(
        cm, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted")
    )
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
        "balanced_accuracy": _nanmean(rec[present]),
        "macro_auc": _nanmean(auc),
        "macro_precision": _nanmean(prec),
        "macro_sensitivity": _nanmean(rec),
        "macro_specificity": _nanmean(spec),
        "macro_f1": _nanmean(f1),
        "per_class": per_class,
        "confusion": confusion,
    }
