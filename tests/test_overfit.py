"""Every model can fit a batch of 8 phantom images: the losses and heads are wired to learn.

The 8 images (2 normal, 3 benign, 3 malignant) come from the phantom, prepared at
64x64 and cropped to 32x32 around the lesion (the centre for normal images), so
that lesions cover 6-30 % of the pixels and a few hundred steps of a tiny model
run in seconds.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtloca_lib.models.losses import MultiTaskLoss
from mtloca_lib.models import build_model
from mtloca_lib.data.phantom import make_phantom
from mtloca_lib.data.preprocess import make_input, prepare

TINY = {"widths": (8, 16, 16), "gn_groups": 4, "cls_hidden": 32, "dropout": 0.0}
MAX_STEPS = 600
ALL = [{"arch": "mtl_oca", "variant": v} for v in ("proposed", "no_oca", "oca_cls_from_mask")] \
    + [{"arch": "unet_st"}, {"arch": "mt_dunet"}]




@pytest.fixture(scope="module")
def batch():
    data = prepare(make_phantom(n_per_class=(2, 3, 3), seed=0, size_range=(64, 80)), size=64)
    crop = 32
    images, masks = [], []
    for image, mask in zip(data.images, data.masks):
        centre = np.argwhere(mask).mean(0).round().astype(int) if mask.any() else (32, 32)
        r0, c0 = (int(np.clip(c - crop // 2, 0, 64 - crop)) for c in centre)
        images.append(image[r0:r0 + crop, c0:c0 + crop])
        masks.append(mask[r0:r0 + crop, c0:c0 + crop])
        assert masks[-1].sum() == mask.sum()  # the whole lesion is inside the crop
    x = make_input(torch.from_numpy(np.stack(images))[:, None], sigma=1.0)
    return x, torch.from_numpy(np.stack(masks)).long(), torch.from_numpy(data.labels)


def dice(seg_logits: torch.Tensor, masks: torch.Tensor) -> float:
    pred = seg_logits.argmax(1)
    return float(2 * (pred * masks).sum() / (pred.sum() + masks.sum()))


@pytest.mark.parametrize("spec", ALL, ids=[d.get("variant", d["arch"]) for d in ALL])
def test_model_overfits_eight_images(spec, batch):
    x, masks, labels = batch
    assert x.shape == (8, 2, 32, 32) and set(labels.tolist()) == {0, 1, 2}
    torch.manual_seed(0)
    model = build_model({**spec, **TINY})
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = MultiTaskLoss()
    first = None
    for step in range(MAX_STEPS):
        out = model(x)
        loss, terms = loss_fn(out, masks, labels)
        first = first if first is not None else terms["total"]
        if terms["total"] <= 0.1 * first and dice(out["seg"], masks) > 0.9:
            break
        optim.zero_grad()
        loss.backward()
        optim.step()
    else:
        pytest.fail(f"{spec}: after {MAX_STEPS} steps loss {terms['total']:.3f} "
                    f"(start {first:.3f}), Dice {dice(out['seg'], masks):.3f}")
    accuracy = float((out["cls"].argmax(1) == labels).float().mean())
    assert accuracy == 1.0, f"{spec}: training accuracy {accuracy} at step {step}"
