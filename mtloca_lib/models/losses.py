"""The multi-task loss of MTL-OCA (paper Eqs. 4-5) for every model's output dict.

    L = cls_weight * L_cls + alpha * L_soft + L_aug,  alpha = 0.4,

every term a cross-entropy (optionally plus ``dice_weight`` times a soft Dice loss
on the final mask: a departure from the paper, off by default; and optionally with
``lesion_weight`` > 1 on lesion pixels in both mask terms, a weighted cross-entropy:
still the paper's kind of loss, but a weighting it does not state, off by default). Terms are named after the output keys they read:

- "seg": the final mask "seg" (the paper's L_aug; for models without OCA, the
  only segmentation term);
- "seg_soft": the soft object regions "seg_soft" (L_soft; OCA models only);
- "cls": the classification logits "cls" (L_cls; when the model has them and
  labels are given);
- "seg_ds": with deep supervision (``ModelConfig.deep_supervision``; not in the paper), the
  coarser decoder levels' masks "seg_ds1" (H/2), "seg_ds2" (H/4), ... against the mask
  downsampled to their size, each with the final mask's loss (cross-entropy, plus the
  Dice term when ``dice_weight`` > 0), weighted 1/2, 1/4, ... and added to the total.
  With ``ds_normalise`` (off by default) the mask terms' total is divided by the weights' sum
  ``1 + 1/2 + 1/4 + ...``, so the mask outputs' weights sum to 1 as nnU-Net's do (its weights
  for k = 3 levels: 0.533, 0.267, 0.133, 0.067); the logged "seg_ds" stays the undivided sum.

For the imbalance the paper's discussion mentions, the classification term can
use class weights and/or a focal loss (Lin et al., ICCV 2017); both are off by
default, which is the paper's plain cross-entropy.

May import: its own folder and the base modules; never a stage above it or beside it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def focal_cross_entropy(logits: torch.Tensor, target: torch.Tensor, gamma: float = 0.0,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Focal loss ``-(1 - p_t)^gamma log p_t``, averaged like weighted cross-entropy.

    With ``gamma = 0`` this is exactly ``F.cross_entropy(logits, target, weight)``
    (with class weights, the mean is ``sum_n w_{y_n} l_n / sum_n w_{y_n}``).

    Args:
        logits: (N, C) or (N, C, H, W).
        target: (N,) or (N, H, W) integer classes.
        gamma: focusing parameter, >= 0.
        weight: optional (C,) class weights.

    Returns:
        scalar loss.
    """
    log_p = F.log_softmax(logits, dim=1)
    log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    loss = -log_pt
    if gamma:
        loss = loss * (1.0 - log_pt.exp()).clamp(min=0.0).pow(gamma)
    if weight is None:
        return loss.mean()
    w = weight.to(logits.dtype)[target]
    return (w * loss).sum() / w.sum()


def inverse_frequency_weights(labels: Sequence[int] | np.ndarray, n_classes: int) -> torch.Tensor:
    """Class weights ``N / (n_classes * count_c)`` ("balanced"); absent classes get 0.

    Args:
        labels: training labels.
        n_classes: number of classes.

    Returns:
        (n_classes,) float32 tensor.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(weights, dtype=torch.float32)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of the lesion channel, pooled over the batch.

    Pooling over the whole batch (not per image) keeps images without a lesion from
    dominating the term: a batch's Dice is defined as long as one image has a lesion,
    and ``eps`` keeps an all-empty batch finite.

    Args:
        logits: (B, 2, H, W) mask logits (channel 1 = lesion).
        target: (B, H, W) integer mask in {0, 1}.

    Returns:
        scalar loss in [0, 1].
    """
    prob = torch.softmax(logits, dim=1)[:, 1]
    t = target.to(prob.dtype)
    inter = (prob * t).sum()
    return 1.0 - (2.0 * inter + eps) / (prob.sum() + t.sum() + eps)


def deep_supervision_weight_sum(outputs: Mapping[str, torch.Tensor]) -> float:
    """``1 + sum_k 2**-k`` over the deep-supervision outputs "seg_ds{k}" in ``outputs``: the sum of
    the mask outputs' weights (the final mask's 1 included) that ``ds_normalise`` divides by."""
    return 1.0 + sum(0.5 ** int(k[6:]) for k in outputs if k.startswith("seg_ds"))


def _mask_target(masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) masks in {0, 1} (bool, int or float) -> (B, H, W) long."""
    if masks.dim() == 4:
        if masks.shape[1] != 1:
            raise ValueError(f"masks must be (B, H, W) or (B, 1, H, W), got {tuple(masks.shape)}")
        masks = masks[:, 0]
    if masks.is_floating_point():
        masks = masks > 0.5
    return masks.long()


class MultiTaskLoss(nn.Module):
    """L = cls_weight * L_cls + alpha * L_soft + L_seg over a model's output dict.

    Args:
        alpha: weight of the soft-object-region term (paper: 0.4).
        cls_weight: weight of the classification term (paper: 1).
        class_weights: optional (n_classes,) weights for the classification term
            (e.g. :func:`inverse_frequency_weights`); default off.
        focal_gamma: > 0 switches the classification term to a focal loss; 0
            (default) is cross-entropy.
        dice_weight: > 0 adds this times :func:`soft_dice_loss` of the final mask
            (logged as "seg_dice"); 0 (default) is the paper's loss.
        lesion_weight: class weight of lesion pixels (background: 1) in the cross-entropy
            of both mask terms; 1 (default) is the paper's unweighted loss. PyTorch's
            weighted mean (divided by the summed pixel weights) keeps the scale.
        ds_normalise: with deep-supervision outputs ("seg_ds1", ...), divide the final mask's
            terms plus "seg_ds" by ``1 + sum_k 2**-k`` (nnU-Net's normalised weights); False
            (default) adds them undivided. No effect on outputs without "seg_ds" keys.

    Args (forward):
        outputs: the model's dict: "seg" (B, 2, H, W), optionally "seg_soft"
            (B, 2, H, W) and "cls" (B, n_classes).
        masks: (B, H, W) or (B, 1, H, W) lesion masks in {0, 1}.
        labels: (B,) class indices, or None to skip the classification term.

    Returns:
        (total, terms): the scalar loss to backpropagate, and a dict of detached
        Python floats, keys among "seg", "seg_soft", "cls" and always "total".
    """

    def __init__(self, alpha: float = 0.4, cls_weight: float = 1.0,
                 class_weights: Sequence[float] | torch.Tensor | None = None,
                 focal_gamma: float = 0.0, dice_weight: float = 0.0, lesion_weight: float = 1.0,
                 ds_normalise: bool = False):
        super().__init__()
        self.ds_normalise = bool(ds_normalise)
        if lesion_weight <= 0:
            raise ValueError(f"lesion_weight must be > 0, got {lesion_weight}")
        self.lesion_weight = float(lesion_weight)
        pixel = None if lesion_weight == 1.0 else torch.tensor([1.0, float(lesion_weight)])
        self.register_buffer("pixel_weights", pixel, persistent=False)
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        if dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        self.dice_weight = float(dice_weight)
        self.alpha = float(alpha)
        self.cls_weight = float(cls_weight)
        self.focal_gamma = float(focal_gamma)
        weights = None if class_weights is None else torch.as_tensor(class_weights,
                                                                     dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def terms(self, outputs: Mapping[str, torch.Tensor], masks: torch.Tensor,
              labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The unweighted loss terms as tensors (still in the graph), by name."""
        target = _mask_target(masks).to(outputs["seg"].device)
        pw = None if self.pixel_weights is None else self.pixel_weights.to(outputs["seg"].dtype)
        terms = {"seg": F.cross_entropy(outputs["seg"], target, weight=pw)}
        if self.dice_weight:
            terms["seg_dice"] = soft_dice_loss(outputs["seg"], target)
        if "seg_soft" in outputs:
            terms["seg_soft"] = F.cross_entropy(outputs["seg_soft"], target, weight=pw)
        ds_keys = sorted((k for k in outputs if k.startswith("seg_ds")), key=lambda k: int(k[6:]))
        if ds_keys:
            terms["seg_ds"] = sum(0.5 ** int(k[6:]) * self._mask_loss(outputs[k], masks, pw) for k in ds_keys)
        if "cls" in outputs and labels is not None:
            logits = outputs["cls"]
            terms["cls"] = focal_cross_entropy(logits, labels.long().to(logits.device),
                                               self.focal_gamma, self.class_weights)
        return terms

    def _mask_loss(self, logits: torch.Tensor, masks: torch.Tensor, pw: torch.Tensor | None) -> torch.Tensor:
        """The final mask's loss (cross-entropy, plus the Dice term) at the logits' size."""
        m = masks if masks.dim() == 4 else masks.unsqueeze(1)
        m = m.to(device=logits.device, dtype=torch.float32)
        if m.shape[-2:] != logits.shape[-2:]:  # a pixel is lesion when most of it was
            m = (F.adaptive_avg_pool2d(m, logits.shape[-2:]) >= 0.5).float()
        target = _mask_target(m)
        loss = F.cross_entropy(logits, target, weight=pw)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target)
        return loss

    def total_and_terms(self, outputs: Mapping[str, torch.Tensor], masks: torch.Tensor,
                        labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Like :meth:`forward`, but the logged terms stay detached 0-d tensors on the device.

        The training loop sums them on the device and reads them back once per epoch: on a
        GPU, converting each term to a Python float forces a host-device synchronisation per
        term and step.
        """
        terms = self.terms(outputs, masks, labels)
        total = terms["seg"]
        if "seg_dice" in terms:
            total = total + self.dice_weight * terms["seg_dice"]
        if "seg_ds" in terms and self.ds_normalise:  # nnU-Net: the mask outputs' weights sum to 1
            total = (total + terms["seg_ds"]) / deep_supervision_weight_sum(outputs)
        if "seg_soft" in terms:
            total = total + self.alpha * terms["seg_soft"]
        if "seg_ds" in terms and not self.ds_normalise:
            total = total + terms["seg_ds"]
        if "cls" in terms:
            total = total + self.cls_weight * terms["cls"]
        logged = {name: value.detach() for name, value in terms.items()}
        logged["total"] = total.detach()
        return total, logged

    def forward(self, outputs: Mapping[str, torch.Tensor], masks: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        total, logged = self.total_and_terms(outputs, masks, labels)
        return total, {name: float(value) for name, value in logged.items()}

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, cls_weight={self.cls_weight}, "
                f"focal_gamma={self.focal_gamma}, class_weights={self.class_weights}, "
                f"dice_weight={self.dice_weight}, lesion_weight={self.lesion_weight}"
                + (", ds_normalise=True" if self.ds_normalise else ""))
